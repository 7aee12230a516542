//! Checkpoints (contract §5): `_state/{stream}.json` holds the cursor the next run starts
//! from. It is replaced atomically, only after the parts holding the records up to that
//! cursor are stored, and the previous version is kept as `.prev` for rollback.
//!
//! Several runs of a stream may write it at once (backfill windows beside the run that
//! follows the checkpoint). Each write is a compare-and-swap on the version read, and what
//! it writes is recomputed from the version it finds ([`StateStore::advance`]): a stored
//! range joins the checkpoint only when it starts at or before it; a range that starts
//! later is kept in `completed`, and joins once the gap before it is filled.
//!
//! Everything a run keeps between runs lives here: checkpoints (this module), the
//! single-writer [`lease`] and rotated [`credentials`]. The typed incremental cursor is the
//! leaf [`crate::cursor`], since config names its formats.

pub mod credentials;

pub mod lease;
pub mod tracker;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::landing::{Landing, LandingError, ObjectVersion, layout};

/// Version of the state format.
pub const STATE_VERSION: u32 = 1;

/// A stream's checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub state_version: u32,
    pub stream: String,
    /// The cursor the next run starts from.
    pub cursor: Option<String>,
    /// The run that wrote this checkpoint.
    pub run_id: String,
    /// When it was written (informative: a text that is not RFC 3339 is kept as found).
    pub updated_at: crate::clock::StoredTime,
    /// Stored records at the top of the cursor range (within `lookback` of the cursor,
    /// at most [`MAX_RECENT`]), so a re-read can tell an unchanged record from a new version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<SeenRecord>,
    /// Ranges stored by window runs (backfills) beyond the checkpoint, with a gap before
    /// them: sorted, disjoint, each starting after `cursor` (at most [`MAX_COMPLETED`]). The
    /// checkpoint moves over one as soon as it reaches the range's start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<CompletedRange>,
    /// The asynchronous job (`async_job`) this stream created and has not landed yet:
    /// written as soon as its id is known, removed once its result is stored, so a run
    /// that was stopped polls the same job again instead of creating another. Absent in
    /// state written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_job: Option<AsyncJobState>,
}

/// A created asynchronous job whose result is not landed yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncJobState {
    /// The vendor's job id, as text.
    pub id: String,
    /// The lower bound of the window the job was created for (incremental streams), in the
    /// stream's cursor format: a run planning another window does not reuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    /// The run that created it.
    pub run_id: String,
    /// When it was created.
    pub created_at: crate::clock::StoredTime,
}

/// A cursor range `[start, end]` whose records are all stored, in the stream's format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedRange {
    pub start: String,
    pub end: String,
}

/// The most completed ranges a checkpoint keeps; past it the latest are forgotten (their
/// data stays landed; the checkpoint only reaches them later, by reading them again).
pub const MAX_COMPLETED: usize = 1_000;

/// A stored record remembered by its key, cursor and payload hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeenRecord {
    pub id: String,
    pub cursor: String,
    pub sha256: String,
}

/// The most records a checkpoint remembers.
pub const MAX_RECENT: usize = 10_000;

/// Errors reading or writing state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Landing(#[from] LandingError),
    #[error("state object {path} is not valid: {message}")]
    Corrupt { path: String, message: String },
    /// The writer no longer holds the stream's lease: another run took it over, so this
    /// run's checkpoint could move the stream backwards. Nothing was written.
    #[error(
        "checkpoint of stream `{stream}` not committed: this run lost its lease ({reason}); \
         another run took the stream over and owns its checkpoint"
    )]
    LeaseLost { stream: String, reason: String },
    /// Conditional writes kept failing: other writers changed the object every time.
    #[error("state object {path} kept changing under this run ({attempts} attempts); try again")]
    Contended { path: String, attempts: u32 },
}

impl crate::error::Classify for StateError {
    fn code(&self) -> crate::error::ErrorCode {
        match self {
            StateError::Landing(error) => error.code(),
            StateError::Corrupt { .. } | StateError::Contended { .. } => crate::error::ErrorCode::StorageError,
            StateError::LeaseLost { .. } => crate::error::ErrorCode::LeaseLost,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            StateError::Landing(error) => error.retryable(),
            StateError::Corrupt { .. } => false,
            StateError::LeaseLost { .. } | StateError::Contended { .. } => true,
        }
    }
}

/// Proof that a writer still owns what it writes (the stream's lease), checked right
/// before every checkpoint write. Implemented by [`crate::state::lease::Lease`]'s fence.
#[async_trait::async_trait]
pub trait Fence: Send + Sync {
    /// Confirms ownership (a conditional renewal of the lease), or says why it is lost.
    async fn confirm(&self) -> Result<(), String>;
}

/// How many times a conditional write re-reads and tries again before giving up.
const MAX_CAS_ATTEMPTS: u32 = 8;

/// A checkpoint as read, with the version a conditional write must match.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub state: StreamState,
    pub version: ObjectVersion,
}

/// The outcome of a conditional write of a `_state/` object.
#[derive(Debug)]
pub enum Written {
    /// Stored; the object's new version.
    Stored(ObjectVersion),
    /// Another writer changed (or created, or removed) the object since it was read.
    Conflict,
}

/// Reads and writes the `_state/` objects of one source: checkpoints, leases, schema
/// state and saved credentials. It is the only code that writes under `_state/`, and every
/// write is conditional on the version its writer read (create-only when it read nothing),
/// so a writer that lost a race never overwrites what the winner wrote.
#[derive(Clone, Debug)]
pub struct StateStore {
    landing: Landing,
    source: String,
}

impl StateStore {
    pub fn new(landing: Landing, source: &str) -> Self {
        Self {
            landing,
            source: source.to_owned(),
        }
    }

    /// The landing zone the state lives in.
    pub fn landing(&self) -> &Landing {
        &self.landing
    }

    /// The source whose state this is.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Reads a `_state/` object (a path from [`layout`]) with its version.
    pub async fn read_object(&self, path: &str) -> Result<Option<(Bytes, ObjectVersion)>, LandingError> {
        self.landing.get_versioned(path).await
    }

    /// Writes a `_state/` object if it is still at `expected` (`None`: if it does not
    /// exist). A lost race is [`Written::Conflict`], never an overwrite.
    pub async fn write_object(
        &self,
        path: &str,
        bytes: Bytes,
        expected: Option<&ObjectVersion>,
    ) -> Result<Written, LandingError> {
        debug_assert!(path.starts_with(&format!("{}/_state/", self.source)), "{path}");
        let written = match expected {
            Some(version) => self.landing.put_if_version(path, bytes, version).await,
            None => self.landing.put_new(path, bytes).await,
        };
        match written {
            Ok(version) => Ok(Written::Stored(version)),
            Err(LandingError::VersionMismatch { .. } | LandingError::AlreadyExists { .. }) => Ok(Written::Conflict),
            Err(error) => Err(error),
        }
    }

    /// Removes a `_state/` object (deletes are unconditional on every store; callers check
    /// ownership first).
    pub async fn remove_object(&self, path: &str) -> Result<(), LandingError> {
        self.landing.delete(path).await
    }

    /// The current checkpoint of `stream`, if any.
    pub async fn load(&self, stream: &str) -> Result<Option<StreamState>, StateError> {
        Ok(self.load_versioned(stream).await?.map(|versioned| versioned.state))
    }

    /// The current checkpoint of `stream` and its version.
    pub async fn load_versioned(&self, stream: &str) -> Result<Option<Versioned>, StateError> {
        let path = layout::state(&self.source, stream);
        let Some((bytes, version)) = self.read_object(&path).await? else {
            return Ok(None);
        };
        parse(&path, &bytes).map(|state| Some(Versioned { state, version }))
    }

    /// Records that the records of `stored` (a range of `stream`'s cursor) are stored, and
    /// moves the checkpoint as far as that allows, keeping the previous one as `.prev`.
    /// `read` is the checkpoint this writer last read or wrote (`None`: there was none).
    ///
    /// The rule ([`next_state`]): a range joins the checkpoint when it starts at or before
    /// it (or, without a checkpoint, at or before `incremental.start`); the checkpoint then
    /// moves to the range's end if that is further, and on over every completed range that
    /// now starts at or before it. A range that does not join is kept in `completed`. The
    /// checkpoint never moves backwards and never past a range nobody stored.
    ///
    /// The write is fenced twice: `fence` must still confirm the writer's lease, and the
    /// object must still be at the version read. When another writer changed it since, the
    /// checkpoint is read again and the new state computed again from it. Returns the state
    /// now stored (`None`: there is none) and whether this call changed it.
    pub async fn advance(
        &self,
        stream: &str,
        stored: StoredRange<'_>,
        recent: Vec<SeenRecord>,
        run_id: &str,
        read: Option<&Versioned>,
        fence: &dyn Fence,
    ) -> Result<(Option<Versioned>, bool), StateError> {
        let path = layout::state(&self.source, stream);
        let mut current = read.cloned();
        for attempt in 0..MAX_CAS_ATTEMPTS {
            if attempt > 0 {
                // Writers that collided spread out before they read again.
                let pause: u64 = rand::Rng::random_range(&mut rand::rng(), 1..=20 * u64::from(attempt));
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            fence.confirm().await.map_err(|reason| StateError::LeaseLost {
                stream: stream.to_owned(),
                reason,
            })?;
            let Some(state) = next_state(
                stream,
                current.as_ref().map(|current| &current.state),
                &stored,
                &recent,
                run_id,
            ) else {
                return Ok((current, false));
            };
            match self
                .write_object(&path, encode(&state), current.as_ref().map(|current| &current.version))
                .await?
            {
                Written::Stored(version) => {
                    self.keep_previous(stream, current.as_ref()).await?;
                    return Ok((Some(Versioned { state, version }), true));
                }
                Written::Conflict => current = self.load_versioned(stream).await?,
            }
        }
        Err(StateError::Contended {
            path,
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// Sets the checkpoint of `stream` to `cursor` whatever it was (an operator's rewind),
    /// conditional on the version just read so a concurrent writer is not overwritten.
    pub async fn set(&self, stream: &str, cursor: &str, run_id: &str) -> Result<StreamState, StateError> {
        let path = layout::state(&self.source, stream);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.load_versioned(stream).await?;
            let state = new_state(stream, Some(cursor), Vec::new(), run_id);
            if let Written::Stored(_) = self
                .write_object(&path, encode(&state), current.as_ref().map(|current| &current.version))
                .await?
            {
                self.keep_previous(stream, current.as_ref()).await?;
                return Ok(state);
            }
        }
        Err(StateError::Contended {
            path,
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// Records (`Some`) or forgets (`None`) the asynchronous job of `stream`, leaving its
    /// checkpoint as it is; fenced by the lease and conditional on the version read, as
    /// every checkpoint write.
    pub async fn set_async_job(
        &self,
        stream: &str,
        job: Option<AsyncJobState>,
        run_id: &str,
        fence: &dyn Fence,
    ) -> Result<(), StateError> {
        let path = layout::state(&self.source, stream);
        for _ in 0..MAX_CAS_ATTEMPTS {
            fence.confirm().await.map_err(|reason| StateError::LeaseLost {
                stream: stream.to_owned(),
                reason,
            })?;
            let current = self.load_versioned(stream).await?;
            let mut state = match &current {
                Some(current) if current.state.async_job == job => return Ok(()),
                Some(current) => current.state.clone(),
                None if job.is_none() => return Ok(()),
                None => new_state(stream, None, Vec::new(), run_id),
            };
            state.async_job = job.clone();
            state.updated_at = chrono::Utc::now().into();
            if let Written::Stored(_) = self
                .write_object(&path, encode(&state), current.as_ref().map(|current| &current.version))
                .await?
            {
                return Ok(());
            }
        }
        Err(StateError::Contended {
            path,
            attempts: MAX_CAS_ATTEMPTS,
        })
    }

    /// Keeps the checkpoint a write replaced as `.prev`, for rollback.
    async fn keep_previous(&self, stream: &str, previous: Option<&Versioned>) -> Result<(), StateError> {
        if let Some(previous) = previous {
            self.landing
                .put_replace(&layout::state_previous(&self.source, stream), encode(&previous.state))
                .await?;
        }
        Ok(())
    }

    /// Removes the checkpoint of `stream`, keeping it as `.prev`.
    pub async fn reset(&self, stream: &str) -> Result<Option<StreamState>, StateError> {
        let previous = self.load_versioned(stream).await?;
        let path = layout::state(&self.source, stream);
        if let Some(previous) = &previous {
            self.keep_previous(stream, Some(previous)).await?;
            self.remove_object(&path).await?;
        }
        Ok(previous.map(|previous| previous.state))
    }
}

fn parse(path: &str, bytes: &[u8]) -> Result<StreamState, StateError> {
    serde_json::from_slice(bytes).map_err(|error| StateError::Corrupt {
        path: path.to_owned(),
        message: error.to_string(),
    })
}

fn new_state(stream: &str, cursor: Option<&str>, recent: Vec<SeenRecord>, run_id: &str) -> StreamState {
    StreamState {
        state_version: STATE_VERSION,
        stream: stream.to_owned(),
        cursor: cursor.map(str::to_owned),
        run_id: run_id.to_owned(),
        updated_at: chrono::Utc::now().into(),
        recent,
        completed: Vec::new(),
        async_job: None,
    }
}

/// What a writer reports to [`StateStore::advance`]: every record of the stream with a
/// cursor from `start` up to `end` is stored (in the stream's format, as text).
#[derive(Clone, Copy, Debug)]
pub struct StoredRange<'a> {
    /// Where the writer's reading began (a window's `--start`, or the checkpoint minus
    /// `lookback` it started from).
    pub start: &'a str,
    /// How far its stored records reach: the checkpoint it proposes.
    pub end: &'a str,
    /// `incremental.start`: a range starting at or before it joins a stream that has no
    /// checkpoint yet.
    pub origin: &'a str,
    pub format: &'a crate::cursor::CursorFormat,
}

/// The state after `stored` is recorded on `current`, or `None` when nothing changes. Pure:
/// [`StateStore::advance`] calls it again on whatever version it finds after a lost race.
pub fn next_state(
    stream: &str,
    current: Option<&StreamState>,
    stored: &StoredRange<'_>,
    recent: &[SeenRecord],
    run_id: &str,
) -> Option<StreamState> {
    use crate::cursor::Cursor;
    let format = stored.format;
    let parse = |text: &str| format.parse(text).ok();
    let (Some(start), Some(end)) = (parse(stored.start), parse(stored.end)) else {
        return None;
    };
    let origin = parse(stored.origin);
    let checkpoint = current.and_then(|state| state.cursor.as_deref()).and_then(parse);
    // Ranges as read back; one that does not parse (hand-edited) is forgotten: that only
    // means reading it again.
    let ranges: Vec<(Cursor, Cursor)> = current
        .map(|state| state.completed.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|range| Some((parse(&range.start)?, parse(&range.end)?)))
        .collect();
    let before = ranges.clone();
    // The writer's own range is the last one, marked so its records are remembered when it
    // moves the checkpoint.
    let mut ranges: Vec<(Cursor, Cursor, bool)> = ranges.into_iter().map(|(start, end)| (start, end, false)).collect();
    let end = end.max(start.clone());
    ranges.push((start, end, true));
    let joins = |reached: &Option<Cursor>, start: &Cursor| match reached {
        Some(reached) => start <= reached,
        None => origin.as_ref().is_some_and(|origin| start <= origin),
    };
    let mut reached = checkpoint.clone();
    let mut moved_by_writer = false;
    while let Some(position) = ranges.iter().position(|(start, _, _)| joins(&reached, start)) {
        let (_, range_end, mine) = ranges.remove(position);
        if reached.as_ref().is_none_or(|reached| range_end > *reached) {
            moved_by_writer |= mine;
            reached = Some(range_end);
        }
    }
    ranges.sort();
    let mut merged: Vec<(Cursor, Cursor)> = Vec::with_capacity(ranges.len());
    for (start, end, _) in ranges {
        match merged.last_mut() {
            Some((_, last_end)) if start <= *last_end => {
                if end > *last_end {
                    *last_end = end;
                }
            }
            _ => merged.push((start, end)),
        }
    }
    merged.truncate(MAX_COMPLETED);
    if reached == checkpoint && merged == before {
        return None;
    }
    let cursor = reached.as_ref().map(|reached| format.render(reached));
    let recent = if moved_by_writer {
        recent.to_vec()
    } else {
        current.map(|state| state.recent.clone()).unwrap_or_default()
    };
    let mut state = new_state(stream, cursor.as_deref(), recent, run_id);
    // A job in flight stays recorded while the checkpoint moves.
    state.async_job = current.and_then(|state| state.async_job.clone());
    state.completed = merged
        .iter()
        .map(|(start, end)| CompletedRange {
            start: format.render(start),
            end: format.render(end),
        })
        .collect();
    Some(state)
}

fn encode(state: &StreamState) -> Bytes {
    let mut bytes = serde_json::to_vec_pretty(state).expect("state serializes");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// A state store for source `shop` in a fresh `file://` folder, for unit tests.
#[cfg(test)]
pub(crate) fn test_store() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(&crate::landing::config::LandingConfig {
        url: format!("file://{}", dir.path().display()),
        ..Default::default()
    })
    .unwrap();
    (dir, StateStore::new(landing, "shop"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::CursorFormat;

    struct Lost;

    #[async_trait::async_trait]
    impl Fence for Lost {
        async fn confirm(&self) -> Result<(), String> {
            Err("lease shop/_state/orders.lock is now held by run-b".to_owned())
        }
    }

    use super::test_store as store;

    const ORIGIN: &str = "2024-01-01";

    fn range<'a>(start: &'a str, end: &'a str) -> StoredRange<'a> {
        StoredRange {
            start,
            end,
            origin: ORIGIN,
            format: &CursorFormat::Date,
        }
    }

    /// Records `[start, end]` as stored by `run_id`, fenced by `fence`.
    async fn advance(
        store: &StateStore,
        (start, end): (&str, &str),
        run_id: &str,
        read: Option<&Versioned>,
        fence: &dyn Fence,
    ) -> Result<Versioned, StateError> {
        let (stored, _) = store
            .advance("orders", range(start, end), vec![], run_id, read, fence)
            .await?;
        Ok(stored.expect("a state is stored"))
    }

    fn cursor_of(state: &Versioned) -> (Option<&str>, &str) {
        (state.state.cursor.as_deref(), state.state.run_id.as_str())
    }

    #[tokio::test]
    async fn a_writer_that_lost_its_lease_writes_nothing() {
        let (_dir, store) = store();
        let fence = crate::state::lease::Unfenced;
        let first = advance(&store, (ORIGIN, "2024-01-02"), "run-a", None, &fence)
            .await
            .unwrap();
        let error = advance(&store, (ORIGIN, "2024-01-03"), "run-a", Some(&first), &Lost)
            .await
            .unwrap_err();
        assert!(matches!(error, StateError::LeaseLost { .. }), "{error}");
        assert_eq!(crate::error::Classify::code(&error), crate::error::ErrorCode::LeaseLost);
        assert_eq!(
            store.load("orders").await.unwrap().unwrap().cursor.as_deref(),
            Some("2024-01-02")
        );
    }

    #[tokio::test]
    async fn a_lost_race_keeps_the_newer_checkpoint_and_never_moves_it_back() {
        let (_dir, store) = store();
        let fence = crate::state::lease::Unfenced;
        let start = advance(&store, (ORIGIN, "2024-01-02"), "run-a", None, &fence)
            .await
            .unwrap();
        // Run b moves the checkpoint on from what both read.
        advance(&store, ("2024-01-01", "2024-01-05"), "run-b", Some(&start), &fence)
            .await
            .unwrap();
        // Run a, still holding the version it read, reports an older end: refused by the
        // version check, it reads again and keeps b's.
        let kept = advance(&store, ("2024-01-01", "2024-01-03"), "run-a", Some(&start), &fence)
            .await
            .unwrap();
        assert_eq!(cursor_of(&kept), (Some("2024-01-05"), "run-b"));
        // A further end than the stored one is written on the version just read.
        let moved = advance(&store, ("2024-01-01", "2024-01-09"), "run-a", Some(&start), &fence)
            .await
            .unwrap();
        assert_eq!(cursor_of(&moved), (Some("2024-01-09"), "run-a"));
        let stored = store.load("orders").await.unwrap().unwrap();
        assert_eq!(
            (stored.cursor.as_deref(), stored.run_id.as_str()),
            (Some("2024-01-09"), "run-a")
        );
        // A first write that finds a checkpoint created meanwhile does not overwrite it.
        let (_dir, fresh) = store_with_checkpoint("2024-02-01").await;
        let kept = advance(&fresh, (ORIGIN, "2024-01-15"), "run-c", None, &fence)
            .await
            .unwrap();
        assert_eq!(kept.state.cursor.as_deref(), Some("2024-02-01"));
    }

    #[tokio::test]
    async fn a_checkpoint_whose_updated_at_is_not_a_timestamp_reads_and_is_kept_as_written() {
        let (dir, store) = store();
        let hand_edited =
            r#"{"state_version":1,"stream":"orders","cursor":"2024-01-02","run_id":"r","updated_at":"by hand"}"#;
        let written = store
            .write_object(
                &layout::state("shop", "orders"),
                Bytes::from_static(hand_edited.as_bytes()),
                None,
            )
            .await
            .unwrap();
        assert!(matches!(written, Written::Stored(_)));
        let read = store.load("orders").await.unwrap().unwrap();
        assert_eq!((read.updated_at.as_str(), read.updated_at.instant()), ("by hand", None));
        let moved = store.set("orders", "2024-01-05", "operator").await.unwrap();
        let previous: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("shop/_state/orders.json.prev")).unwrap()).unwrap();
        assert_eq!(previous["updated_at"], "by hand");
        // What a run writes: `now_rfc3339`'s shape, microseconds and `Z`.
        let text = moved.updated_at.as_str();
        assert_eq!(
            Some(text.to_owned()),
            moved.updated_at.instant().map(crate::clock::rfc3339_micros)
        );
        assert!(text.len() == 27 && text.ends_with('Z'), "{text}");
    }

    async fn store_with_checkpoint(cursor: &str) -> (tempfile::TempDir, StateStore) {
        let (dir, store) = store();
        store.set("orders", cursor, "operator").await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn concurrent_writers_end_at_the_largest_cursor() {
        let (_dir, store) = store();
        let start = advance(
            &store,
            (ORIGIN, "2024-01-02"),
            "seed",
            None,
            &crate::state::lease::Unfenced,
        )
        .await
        .unwrap();
        let writers: Vec<_> = (1..=8)
            .map(|day| {
                let store = store.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    let end = format!("2024-01-{:02}", day + 1);
                    advance(
                        &store,
                        ("2024-01-02", &end),
                        &format!("run-{day}"),
                        Some(&start),
                        &crate::state::lease::Unfenced,
                    )
                    .await
                    .unwrap();
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        assert_eq!(
            store.load("orders").await.unwrap().unwrap().cursor.as_deref(),
            Some("2024-01-09")
        );
    }

    #[test]
    fn state_without_an_async_job_reads_and_one_with_it_survives_a_checkpoint_move() {
        // A state file written before `async_job` existed.
        let old = br#"{"state_version": 1, "stream": "orders", "cursor": "2024-01-01", "run_id": "r", "updated_at": "2024-01-01T00:00:00Z"}"#;
        let state = parse("orders.json", old).unwrap();
        assert_eq!(state.async_job, None);
        assert!(
            !String::from_utf8(encode(&state).to_vec())
                .unwrap()
                .contains("async_job")
        );

        let mut current = state;
        current.async_job = Some(AsyncJobState {
            id: "job-7".to_owned(),
            window_start: Some("2024-01-01".to_owned()),
            run_id: "r".to_owned(),
            created_at: crate::clock::StoredTime::read("2024-01-02T00:00:00Z"),
        });
        let read_back = parse("orders.json", &encode(&current)).unwrap();
        assert_eq!(read_back, current);
        let format = crate::cursor::CursorFormat::Text;
        let stored = StoredRange {
            start: "2024-01-01",
            end: "2024-01-05",
            origin: "2024-01-01",
            format: &format,
        };
        let next = next_state("orders", Some(&current), &stored, &[], "r2").unwrap();
        assert_eq!(next.cursor.as_deref(), Some("2024-01-05"));
        assert_eq!(next.async_job, current.async_job);
    }

    fn state(cursor: Option<&str>, completed: &[(&str, &str)]) -> StreamState {
        let mut state = new_state("orders", cursor, Vec::new(), "before");
        state.completed = completed
            .iter()
            .map(|(start, end)| CompletedRange {
                start: (*start).to_owned(),
                end: (*end).to_owned(),
            })
            .collect();
        state
    }

    /// A state as the tests compare it: the cursor and the completed ranges.
    type Outcome = Option<(Option<String>, Vec<(String, String)>)>;

    fn next(current: Option<&StreamState>, start: &str, end: &str) -> Outcome {
        next_state("orders", current, &range(start, end), &[], "run").map(|state| {
            (
                state.cursor,
                state
                    .completed
                    .into_iter()
                    .map(|range| (range.start, range.end))
                    .collect(),
            )
        })
    }

    fn owned(cursor: &str, completed: &[(&str, &str)]) -> Outcome {
        Some((
            Some(cursor.to_owned()),
            completed
                .iter()
                .map(|(start, end)| ((*start).to_owned(), (*end).to_owned()))
                .collect(),
        ))
    }

    #[test]
    fn a_range_after_a_gap_waits_and_joins_once_the_gap_is_filled() {
        let at_jan_3 = state(Some("2024-01-03"), &[]);
        // Starts after the checkpoint: kept aside, the checkpoint stays.
        assert_eq!(
            next(Some(&at_jan_3), "2024-01-05", "2024-01-07"),
            owned("2024-01-03", &[("2024-01-05", "2024-01-07")])
        );
        let waiting = state(
            Some("2024-01-03"),
            &[("2024-01-05", "2024-01-07"), ("2024-01-09", "2024-01-10")],
        );
        // Filling the gap before the first range moves over it, not over the second gap.
        assert_eq!(
            next(Some(&waiting), "2024-01-02", "2024-01-05"),
            owned("2024-01-07", &[("2024-01-09", "2024-01-10")])
        );
        // A range that touches or overlaps a waiting one merges with it.
        assert_eq!(
            next(Some(&waiting), "2024-01-07", "2024-01-09"),
            owned("2024-01-03", &[("2024-01-05", "2024-01-10")])
        );
        // Behind the checkpoint: nothing changes, nothing is written.
        assert_eq!(next(Some(&at_jan_3), "2024-01-01", "2024-01-02"), None);
        assert_eq!(next(Some(&waiting), "2024-01-05", "2024-01-06"), None);
        // Without a checkpoint a range joins only from incremental.start.
        assert_eq!(
            next(None, "2024-01-02", "2024-01-04"),
            Some((None, vec![("2024-01-02".to_owned(), "2024-01-04".to_owned())]))
        );
        let no_checkpoint = state(None, &[("2024-01-02", "2024-01-04")]);
        assert_eq!(
            next(Some(&no_checkpoint), ORIGIN, "2024-01-02"),
            owned("2024-01-04", &[])
        );
    }

    #[tokio::test]
    async fn racing_window_completions_end_where_the_data_is_contiguous() {
        let (_dir, store) = store();
        // Day windows [d, d+1] completing at once in any order, day 6 missing.
        let writers: Vec<_> = (1..=9)
            .filter(|day| *day != 6)
            .map(|day| {
                let store = store.clone();
                tokio::spawn(async move {
                    let (start, end) = (format!("2024-01-{day:02}"), format!("2024-01-{:02}", day + 1));
                    store
                        .advance(
                            "orders",
                            range(&start, &end),
                            vec![],
                            &format!("day-{day}"),
                            None,
                            &crate::state::lease::Unfenced,
                        )
                        .await
                        .unwrap();
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let stored = store.load("orders").await.unwrap().unwrap();
        assert_eq!(stored.cursor.as_deref(), Some("2024-01-06"));
        assert_eq!(
            stored.completed,
            [CompletedRange {
                start: "2024-01-07".to_owned(),
                end: "2024-01-10".to_owned()
            }]
        );
        // The gap filled: the checkpoint moves over everything, and an operator's rewind
        // forgets the waiting ranges.
        store
            .advance(
                "orders",
                range("2024-01-06", "2024-01-07"),
                vec![],
                "day-6",
                None,
                &crate::state::lease::Unfenced,
            )
            .await
            .unwrap();
        let stored = store.load("orders").await.unwrap().unwrap();
        assert_eq!(
            (stored.cursor.as_deref(), stored.completed.len()),
            (Some("2024-01-10"), 0)
        );
    }
}
