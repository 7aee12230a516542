//! Where one run of a stream may move its checkpoint, decided without I/O.
//!
//! The writer tells the tracker what it lands (a record's cursor, the records to remember)
//! and when a part is stored or a window is complete; the tracker answers where the
//! checkpoint may go and what range to report to [`super::StateStore::advance`], which does
//! the write. The rules it keeps:
//!
//! - never backwards: a candidate at or below the committed checkpoint changes nothing;
//! - never past an unstored part: only the cursors of stored parts count;
//! - a window whose end is in the past is complete up to its end, else up to the largest
//!   stored cursor;
//! - a record at or below the starting checkpoint, stored before with the same payload, is a
//!   duplicate (absorbed, not landed again);
//! - the records remembered with the checkpoint are the last stored ones within `lookback`
//!   of it, at most [`MAX_RECENT`];
//! - a parent stream whose children run in the same run holds its checkpoint back
//!   ([`CheckpointTracker::take_deferred`]) for the run to commit once they succeeded.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{MAX_RECENT, SeenRecord, Versioned};
use crate::cursor::{self, Cursor, CursorFormat};

/// Where a run stood on its checkpoint when it started.
pub struct TrackerStart {
    /// The stream's cursor format.
    pub format: CursorFormat,
    /// The checkpoint read before the run (`None` without one).
    pub checkpoint: Option<Cursor>,
    /// The checkpoint object as read: what the first write is conditional on.
    pub stored: Option<Versioned>,
    /// Where this run's reading begins (its first window's lower bound).
    pub start: Option<Cursor>,
    /// `incremental.start`.
    pub origin: Option<Cursor>,
    /// `incremental.lookback`: how far below the checkpoint records are remembered.
    pub lookback: Duration,
    /// `--full-refresh`: nothing read before counts as a duplicate.
    pub full_refresh: bool,
}

/// The range a commit reports as stored, in the stream's format, and the records to
/// remember with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Advance {
    pub start: String,
    pub end: String,
    pub origin: String,
    pub recent: Vec<SeenRecord>,
}

/// A run's checkpoint decisions; see the module docs.
pub struct CheckpointTracker {
    format: CursorFormat,
    /// The checkpoint when the run started (`None` on a full refresh).
    at_start: Option<Cursor>,
    /// Stored records remembered by the checkpoint the run started from.
    known: HashMap<(String, String), String>,
    /// The last committed checkpoint.
    committed: Option<Cursor>,
    /// The checkpoint object as last read or written: what the next write is conditional on.
    stored: Option<Versioned>,
    start: Option<Cursor>,
    origin: Option<Cursor>,
    lookback: Duration,
    /// Whether what this run stores joins the checkpoint: its reading began at or before
    /// the checkpoint (or, without one, at or before `incremental.start`), so it continues
    /// what was read before without a gap. Checked again after every checkpoint write,
    /// since other runs move the checkpoint too. A run that does not join (a backfill of a
    /// later window) records each completed window as a range the checkpoint moves over
    /// once it reaches the range ([`super::StateStore::advance`]).
    joined: bool,
    /// The last records of the open part (at most [`MAX_RECENT`]), remembered once it is
    /// stored.
    open: VecDeque<SeenRecord>,
    /// Stored records near the top of the cursor range.
    tail: VecDeque<SeenRecord>,
    /// The largest cursor of the open part.
    open_cursor: Option<Cursor>,
    /// The largest cursor of the stored parts.
    stored_cursor: Option<Cursor>,
    /// The checkpoint this run would have written, held back for the children.
    deferred: Option<Cursor>,
    /// The source's own position, for records without a cursor (`mode: xmin`).
    source_position: Option<Cursor>,
}

impl CheckpointTracker {
    pub fn new(start: TrackerStart) -> Self {
        let joined = match &start.start {
            Some(lower) => {
                start.origin.as_ref().is_some_and(|origin| lower <= origin)
                    || start.checkpoint.as_ref().is_some_and(|reached| lower <= reached)
            }
            None => true,
        };
        let known = start
            .stored
            .as_ref()
            .map(|stored| {
                stored
                    .state
                    .recent
                    .iter()
                    .map(|seen| ((seen.id.clone(), seen.cursor.clone()), seen.sha256.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            format: start.format,
            at_start: if start.full_refresh {
                None
            } else {
                start.checkpoint.clone()
            },
            known,
            committed: start.checkpoint,
            stored: start.stored,
            start: start.start,
            origin: start.origin,
            lookback: start.lookback,
            joined,
            open: VecDeque::new(),
            tail: VecDeque::new(),
            open_cursor: None,
            stored_cursor: None,
            deferred: None,
            source_position: None,
        }
    }

    /// The stream's cursor format.
    pub fn format(&self) -> &CursorFormat {
        &self.format
    }

    /// Whether this run continues the checkpoint without a gap (see the field's docs).
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// The last committed checkpoint (as last read: other runs move it too).
    pub fn committed(&self) -> Option<&Cursor> {
        self.committed.as_ref()
    }

    /// The largest cursor among the stored parts' records.
    pub fn stored_cursor(&self) -> Option<&Cursor> {
        self.stored_cursor.as_ref()
    }

    /// The checkpoint object the next write is conditional on.
    pub fn stored(&self) -> Option<&Versioned> {
        self.stored.as_ref()
    }

    /// A record at or below the starting checkpoint that was stored before with the same
    /// payload: counted as a duplicate and not landed again.
    pub fn is_known_duplicate(
        &self,
        id: Option<&str>,
        cursor: Option<&str>,
        value: Option<&Cursor>,
        sha256: &str,
    ) -> bool {
        if self.known.is_empty() {
            return false;
        }
        let (Some(at_start), Some(id), Some(cursor), Some(value)) = (&self.at_start, id, cursor, value) else {
            return false;
        };
        value <= at_start
            && self
                .known
                .get(&(id.to_owned(), cursor.to_owned()))
                .is_some_and(|known| known == sha256)
    }

    /// A record with this cursor went into the open part.
    pub fn landed(&mut self, value: Cursor) {
        self.open_cursor = cursor::max(self.open_cursor.take(), value);
    }

    /// Keeps a landed record of the open part. Only the last [`MAX_RECENT`] can reach the
    /// checkpoint, so only they are kept: memory stays flat however large the part.
    pub fn remember(&mut self, record: SeenRecord) {
        if self.open.len() == MAX_RECENT {
            self.open.pop_front();
        }
        self.open.push_back(record);
    }

    /// The open part is stored: its cursors and records count from now on. Returns where a
    /// sorted stream that joins the checkpoint may move it (the largest stored cursor).
    pub fn part_stored(&mut self) -> Option<Cursor> {
        if let Some(cursor) = self.open_cursor.take() {
            self.stored_cursor = cursor::max(self.stored_cursor.take(), cursor);
        }
        self.tail.extend(self.open.drain(..));
        while self.tail.len() > MAX_RECENT {
            self.tail.pop_front();
        }
        if self.joined { self.stored_cursor.clone() } else { None }
    }

    /// The source's own position ([`crate::source::Item::Checkpoint`]): where the
    /// checkpoint may move when the window being read is done.
    pub fn source_position(&mut self, cursor: Cursor) {
        self.source_position = Some(cursor);
    }

    /// A window is complete and every part before is stored: the checkpoint may move to
    /// its end when that is in the past (nothing before it remains unread), else to the
    /// largest stored cursor, or to the source's own position when it gave one. Only a time
    /// cursor can be in the past; an integer or string bound never becomes the checkpoint.
    pub fn window_done(&self, upper: Option<&Cursor>, now: chrono::DateTime<chrono::Utc>) -> Option<Cursor> {
        let mut candidate = self.stored_cursor.clone();
        if let Some(position) = &self.source_position {
            candidate = cursor::max(candidate, position.clone());
        }
        if let Some(upper @ Cursor::Instant(instant)) = upper
            && *instant <= now
        {
            candidate = cursor::max(candidate, upper.clone());
        }
        candidate
    }

    /// What to write to move the checkpoint to `cursor`, or `None` when nothing is to be
    /// written: not forward, held back (`defer`, kept for [`Self::take_deferred`]), or the
    /// stream has no start to report a range from.
    pub fn advance(&mut self, cursor: &Cursor, defer: bool) -> Option<Advance> {
        if self.committed.as_ref().is_some_and(|current| current >= cursor) {
            return None;
        }
        if defer {
            self.deferred = cursor::max(self.deferred.take(), cursor.clone());
            return None;
        }
        let (Some(start), Some(origin)) = (&self.start, &self.origin) else {
            return None;
        };
        let format = &self.format;
        let floor = format.minus(cursor, self.lookback);
        self.tail
            .retain(|seen| format.parse(&seen.cursor).is_ok_and(|seen| seen >= floor));
        Some(Advance {
            start: format.render(start),
            end: format.render(cursor),
            origin: format.render(origin),
            recent: self.tail.iter().cloned().collect(),
        })
    }

    /// The checkpoint object after a write (or as found, when another run's write won):
    /// the stored checkpoint is the truth. Returns the checkpoint to announce when the
    /// write `changed` it to a new value.
    pub fn committed_as(&mut self, stored: Versioned, changed: bool) -> Option<String> {
        let previous = self.committed.clone();
        if let Some(Ok(cursor)) = stored.state.cursor.as_deref().map(|text| self.format.parse(text)) {
            self.committed = Some(cursor);
        }
        if let (Some(start), Some(origin)) = (&self.start, &self.origin) {
            self.joined = match &self.committed {
                Some(reached) => start <= reached,
                None => start <= origin,
            };
        }
        let announced = (changed && self.committed != previous)
            .then(|| stored.state.cursor.clone())
            .flatten();
        self.stored = Some(stored);
        announced
    }

    /// The checkpoint held back for a parent's children, if any.
    pub fn take_deferred(&mut self) -> Option<Cursor> {
        self.deferred.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::landing::ObjectVersion;
    use crate::state::{STATE_VERSION, StreamState};

    fn int(value: i128) -> Cursor {
        Cursor::Integer(value)
    }

    fn tracker(checkpoint: Option<i128>, start: i128) -> CheckpointTracker {
        CheckpointTracker::new(TrackerStart {
            format: CursorFormat::Integer,
            checkpoint: checkpoint.map(int),
            stored: None,
            start: Some(int(start)),
            origin: Some(int(0)),
            lookback: Duration::from_secs(5),
            full_refresh: false,
        })
    }

    fn seen(id: &str, cursor: i128, sha256: &str) -> SeenRecord {
        SeenRecord {
            id: id.to_owned(),
            cursor: cursor.to_string(),
            sha256: sha256.to_owned(),
        }
    }

    fn versioned(cursor: Option<i128>, recent: Vec<SeenRecord>) -> Versioned {
        Versioned {
            state: StreamState {
                state_version: STATE_VERSION,
                stream: "s".to_owned(),
                cursor: cursor.map(|cursor| cursor.to_string()),
                run_id: "r".to_owned(),
                updated_at: crate::clock::StoredTime::read("2024-01-01T00:00:00Z"),
                recent,
                completed: Vec::new(),
                async_job: None,
            },
            version: ObjectVersion {
                e_tag: Some("1".to_owned()),
                version: None,
            },
        }
    }

    #[test]
    fn a_run_from_the_checkpoint_joins_it_and_a_later_window_does_not() {
        assert!(tracker(Some(10), 10).joined());
        assert!(tracker(Some(10), 5).joined());
        assert!(!tracker(Some(10), 20).joined());
        // Without a checkpoint, only a run from `incremental.start` joins.
        assert!(tracker(None, 0).joined());
        assert!(!tracker(None, 1).joined());
    }

    #[test]
    fn never_past_an_unstored_part() {
        let mut tracker = tracker(None, 0);
        tracker.landed(int(42));
        assert_eq!(tracker.stored_cursor(), None);
        assert_eq!(tracker.window_done(None, chrono::Utc::now()), None);
        assert_eq!(tracker.part_stored(), Some(int(42)));
        assert_eq!(tracker.stored_cursor(), Some(&int(42)));
    }

    #[test]
    fn the_stored_cursor_is_the_largest_of_the_stored_parts() {
        let mut tracker = tracker(None, 0);
        tracker.landed(int(30));
        tracker.landed(int(7));
        tracker.part_stored();
        tracker.landed(int(12));
        assert_eq!(tracker.part_stored(), Some(int(30)));
    }

    #[test]
    fn a_run_that_does_not_join_moves_nothing_per_part() {
        let mut tracker = tracker(Some(10), 20);
        tracker.landed(int(25));
        assert_eq!(tracker.part_stored(), None);
        assert_eq!(tracker.stored_cursor(), Some(&int(25)));
    }

    #[test]
    fn never_backwards() {
        let mut tracker = tracker(Some(10), 10);
        assert_eq!(tracker.advance(&int(10), false), None);
        assert_eq!(tracker.advance(&int(3), false), None);
        assert!(tracker.advance(&int(11), false).is_some());
    }

    #[test]
    fn an_advance_reports_the_run_range_in_the_stream_format() {
        let mut tracker = tracker(Some(10), 8);
        let advance = tracker.advance(&int(20), false).unwrap();
        assert_eq!(
            advance,
            Advance {
                start: "8".to_owned(),
                end: "20".to_owned(),
                origin: "0".to_owned(),
                recent: Vec::new(),
            }
        );
    }

    #[test]
    fn without_a_start_nothing_is_written() {
        let mut tracker = CheckpointTracker::new(TrackerStart {
            format: CursorFormat::Integer,
            checkpoint: None,
            stored: None,
            start: None,
            origin: None,
            lookback: Duration::ZERO,
            full_refresh: false,
        });
        assert!(tracker.joined());
        assert_eq!(tracker.advance(&int(5), false), None);
    }

    #[test]
    fn a_deferred_checkpoint_is_held_at_its_largest_and_written_by_no_one() {
        let mut tracker = tracker(Some(10), 10);
        assert_eq!(tracker.advance(&int(15), true), None);
        assert_eq!(tracker.advance(&int(12), true), None);
        assert_eq!(tracker.take_deferred(), Some(int(15)));
        assert_eq!(tracker.take_deferred(), None);
        // Never backwards, deferred or not.
        assert_eq!(tracker.advance(&int(9), true), None);
        assert_eq!(tracker.take_deferred(), None);
    }

    #[test]
    fn records_are_remembered_only_once_their_part_is_stored() {
        let mut tracker = tracker(Some(10), 10);
        tracker.remember(seen("a", 20, "h"));
        assert_eq!(tracker.advance(&int(20), false).unwrap().recent, Vec::new());
        tracker.part_stored();
        assert_eq!(
            tracker.advance(&int(20), false).unwrap().recent,
            vec![seen("a", 20, "h")]
        );
    }

    #[test]
    fn remembered_records_are_those_within_lookback_of_the_checkpoint() {
        let mut tracker = tracker(Some(10), 10);
        for (id, cursor) in [("a", 11), ("b", 14), ("c", 15), ("d", 20)] {
            tracker.remember(seen(id, cursor, "h"));
        }
        tracker.part_stored();
        let recent = tracker.advance(&int(20), false).unwrap().recent;
        let ids: Vec<&str> = recent.iter().map(|seen| seen.id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
    }

    #[test]
    fn at_most_max_recent_records_are_remembered() {
        let mut tracker = tracker(Some(10), 10);
        for index in 0..MAX_RECENT + 3 {
            tracker.remember(seen(&index.to_string(), 20, "h"));
        }
        tracker.part_stored();
        tracker.remember(seen("last", 20, "h"));
        tracker.part_stored();
        let recent = tracker.advance(&int(20), false).unwrap().recent;
        assert_eq!(recent.len(), MAX_RECENT);
        assert_eq!(recent.last().unwrap().id, "last");
        assert_eq!(recent.first().unwrap().id, "4");
    }

    #[test]
    fn duplicates_at_the_checkpoint_are_absorbed() {
        let stored = versioned(Some(10), vec![seen("a", 10, "same"), seen("b", 9, "same")]);
        let tracker = CheckpointTracker::new(TrackerStart {
            stored: Some(stored),
            ..start(Some(10), 5)
        });
        assert!(tracker.is_known_duplicate(Some("a"), Some("10"), Some(&int(10)), "same"));
        assert!(tracker.is_known_duplicate(Some("b"), Some("9"), Some(&int(9)), "same"));
        // A new version of the record (another payload) lands.
        assert!(!tracker.is_known_duplicate(Some("a"), Some("10"), Some(&int(10)), "changed"));
        // An unknown record, or one without a key or a cursor that parses, lands.
        assert!(!tracker.is_known_duplicate(Some("c"), Some("10"), Some(&int(10)), "same"));
        assert!(!tracker.is_known_duplicate(None, Some("10"), Some(&int(10)), "same"));
        assert!(!tracker.is_known_duplicate(Some("a"), Some("10"), None, "same"));
    }

    #[test]
    fn only_records_at_or_below_the_starting_checkpoint_are_duplicates() {
        let stored = versioned(Some(10), vec![seen("a", 11, "same")]);
        let tracker = CheckpointTracker::new(TrackerStart {
            stored: Some(stored),
            ..start(Some(10), 5)
        });
        assert!(!tracker.is_known_duplicate(Some("a"), Some("11"), Some(&int(11)), "same"));
    }

    #[test]
    fn a_full_refresh_absorbs_no_duplicates() {
        let stored = versioned(Some(10), vec![seen("a", 10, "same")]);
        let tracker = CheckpointTracker::new(TrackerStart {
            stored: Some(stored),
            full_refresh: true,
            ..start(Some(10), 0)
        });
        assert!(!tracker.is_known_duplicate(Some("a"), Some("10"), Some(&int(10)), "same"));
    }

    #[test]
    fn a_past_window_end_becomes_the_checkpoint_a_future_one_does_not() {
        let now = chrono::Utc::now();
        let past = Cursor::Instant(now - chrono::Duration::hours(1));
        let future = Cursor::Instant(now + chrono::Duration::hours(1));
        let mut tracker = CheckpointTracker::new(TrackerStart {
            format: CursorFormat::Rfc3339,
            checkpoint: None,
            stored: None,
            start: Some(Cursor::Instant(now - chrono::Duration::days(1))),
            origin: Some(Cursor::Instant(now - chrono::Duration::days(1))),
            lookback: Duration::ZERO,
            full_refresh: false,
        });
        assert_eq!(tracker.window_done(Some(&past), now), Some(past.clone()));
        assert_eq!(tracker.window_done(Some(&future), now), None);
        let stored = Cursor::Instant(now - chrono::Duration::hours(2));
        tracker.landed(stored.clone());
        tracker.part_stored();
        assert_eq!(tracker.window_done(Some(&future), now), Some(stored));
        assert_eq!(tracker.window_done(Some(&past), now), Some(past));
    }

    #[test]
    fn a_source_position_becomes_the_checkpoint_when_the_window_is_done_never_backwards() {
        let mut tracker = tracker(Some(10), 10);
        assert_eq!(tracker.window_done(None, chrono::Utc::now()), None);
        tracker.source_position(int(25));
        assert_eq!(tracker.window_done(None, chrono::Utc::now()), Some(int(25)));
        assert!(tracker.advance(&int(25), false).is_some());
        // A position below the committed checkpoint writes nothing.
        tracker.committed_as(versioned(Some(25), Vec::new()), true);
        tracker.source_position(int(20));
        let candidate = tracker.window_done(None, chrono::Utc::now()).unwrap();
        assert_eq!(tracker.advance(&candidate, false), None);
    }

    #[test]
    fn integer_and_text_window_ends_never_become_the_checkpoint() {
        let tracker = tracker(None, 0);
        assert_eq!(tracker.window_done(Some(&int(100)), chrono::Utc::now()), None);
        assert_eq!(
            tracker.window_done(Some(&Cursor::Text("z".to_owned())), chrono::Utc::now()),
            None
        );
    }

    #[test]
    fn the_stored_checkpoint_is_the_truth_after_a_write() {
        let mut tracker = tracker(Some(10), 10);
        // Another run moved it further meanwhile.
        assert_eq!(
            tracker.committed_as(versioned(Some(30), Vec::new()), true),
            Some("30".to_owned())
        );
        assert_eq!(tracker.committed(), Some(&int(30)));
        assert!(tracker.stored().is_some());
        // Unchanged: nothing to announce.
        assert_eq!(tracker.committed_as(versioned(Some(30), Vec::new()), true), None);
        assert_eq!(tracker.committed_as(versioned(Some(40), Vec::new()), false), None);
    }

    #[test]
    fn a_backfill_joins_once_the_checkpoint_reaches_its_start() {
        let mut tracker = tracker(Some(10), 20);
        assert!(!tracker.joined());
        tracker.committed_as(versioned(Some(15), Vec::new()), true);
        assert!(!tracker.joined());
        tracker.committed_as(versioned(Some(20), Vec::new()), true);
        assert!(tracker.joined());
    }

    fn start(checkpoint: Option<i128>, start: i128) -> TrackerStart {
        TrackerStart {
            format: CursorFormat::Integer,
            checkpoint: checkpoint.map(int),
            stored: None,
            start: Some(int(start)),
            origin: Some(int(0)),
            lookback: Duration::ZERO,
            full_refresh: false,
        }
    }
}
