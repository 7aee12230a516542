//! Where records come from. A source family reads a stream and sends what it read, page by
//! page, to the stream's writer ([`crate::extract`]), which does everything after a record
//! is read (envelope, checks, PII, duplicates, drift, parts, dead letters, checkpoints)
//! without knowing the family.
//!
//! - [`Source`]: the trait a family implements; [`rest`] is the first (HTTP APIs).
//! - [`Item`]: what a source sends: a [`Page`] of records, a page that never parsed
//!   ([`DeadPage`]), or the end of a window (the checkpoint may move to its end).
//! - [`record`]: a record as every family yields it, each with its exact bytes, key, cursor
//!   and position (page number and byte range), read from JSON the same way everywhere.
//! - [`windows`] (the cursor ranges an incremental stream reads), [`parents`] (the parent
//!   records a child stream iterates over), `dead_body` (what a dead page keeps).
//!
//! `docs/architecture.md` ("Adding a source family") shows how a database and a file source
//! fit, and the files to touch.

pub mod channel;
pub mod database;
pub(crate) mod dead_body;
pub mod error;
pub mod parents;
pub mod record;
pub mod rest;
pub mod windows;

use std::sync::Arc;

use bytes::Bytes;
pub use channel::{ItemReceiver, ItemSender};
pub use error::ReadError;
use futures::future::BoxFuture;
pub use record::{RecordMeta, RecordReader};

use crate::quality::drift::SchemaTracker;
use crate::quality::validate::{RecordValidator, Violation};
use dead_body::DeadBody;
use windows::Window;

/// A family of sources reading one stream. The stream's run builds it, asks it what it
/// reads ([`Source::endpoint`]), then lets it [`Source::read`] on a task of its own while
/// the writer lands what it sends.
///
/// The contract a source keeps, whatever the family:
/// - records are sent in the order they were read, in pages; each page's `body` holds the
///   records' exact bytes (what lands in `_raw`) and each [`RecordMeta`] points into it;
/// - the windows of the [`ReadPlan`] are read in order, and [`Item::WindowDone`] is sent
///   only when every record of the window was sent: the checkpoint may then move to the
///   window's end (records of a sorted stream move it part by part);
/// - what cannot be parsed is sent as a [`DeadPage`] with its exact bytes, never dropped;
/// - the channel ([`channel`]) is bounded by items and by bytes: a full channel makes the
///   source wait (memory stays flat, whatever the size of a row), and a closed one (the
///   writer failed) ends the read without an error of its own;
/// - cancellation ([`ReadError::Cancelled`]) is checked between pages.
pub trait Source: Send + 'static {
    /// What the stream reads, named in the manifest's `endpoint` when nothing was read; an
    /// error here fails the stream before its first request.
    fn endpoint(&self) -> Result<String, ReadError>;

    /// Reads the planned windows, sending what it reads to `out`; returns what it counted
    /// and why it stopped early, if it did.
    fn read(self: Box<Self>, plan: ReadPlan, out: ItemSender) -> BoxFuture<'static, ReadOutcome>;
}

/// What a source is asked to read.
pub struct ReadPlan {
    /// The windows to read, in order (one unbounded window without `incremental`).
    pub windows: Vec<Window>,
    /// The stream's record checks, run where the records are read (so the checks of one
    /// page overlap the landing of the previous one).
    pub validator: Arc<RecordValidator>,
}

/// What a read produced, and the error that stopped it (`None`: it read everything, or
/// the writer went away).
pub type ReadOutcome = (ReadStats, Option<ReadError>);

/// What a source sends to the writer.
pub enum Item {
    Page(Page),
    /// Every record of the window was sent.
    WindowDone(Window),
    /// The source's own position, for a stream whose records carry no cursor (PostgreSQL
    /// `mode: xmin`: the read snapshot's xmin): the checkpoint may move to it once the next
    /// [`Item::WindowDone`] is handled, after the parts before it are stored. Never moves it
    /// backwards.
    Checkpoint(crate::cursor::Cursor),
    /// A response that never parsed, after retries: its body goes to the dead letters.
    DeadPage(DeadPage),
    /// An asynchronous job was created (recorded in the stream's state at once), or is
    /// to be forgotten (its result landed: sent after the window's [`Item::WindowDone`];
    /// or it failed or expired).
    AsyncJob(Option<crate::state::AsyncJobState>),
}

/// A page that never parsed (or, for a body with invalid UTF-8, the exact bytes of a page
/// whose records landed with the bad bytes replaced).
pub struct DeadPage {
    pub number: u64,
    pub endpoint: String,
    pub extracted_at: String,
    pub(crate) body: DeadBody,
    pub error: Violation,
}

/// A page of records on its way to the writer.
pub struct Page {
    /// The page's position in the stream (from 1): the envelope's `_page`. The pieces of a
    /// page too large for memory share its number.
    pub number: u64,
    /// What was read, for the envelope's `_source_endpoint`.
    pub endpoint: String,
    pub extracted_at: String,
    /// The records' exact bytes (UTF-8).
    pub body: Bytes,
    pub records: Vec<RecordMeta>,
    /// The parent record this page belongs to (child streams).
    pub parent_key: Option<String>,
}

/// What a source counted while reading.
#[derive(Default)]
pub struct ReadStats {
    pub pages: u64,
    pub requests: u64,
    pub retries: u64,
    pub rows_read: u64,
    pub filtered_rows: u64,
    /// What was read, for the manifest (the first request's endpoint).
    pub endpoint: String,
    /// The fields seen in the records, for schema drift.
    pub schema: SchemaTracker,
    /// Database sources: the consistent snapshot the stream read in (its first, when a
    /// reconnect opened another), as what names it and its text (the manifest's
    /// `source_snapshot`).
    pub snapshot: Option<(String, String)>,
    /// PostgreSQL `mode: xmin`: the checkpoint the read supplies (its snapshot's xmin).
    pub xmin_checkpoint: Option<u64>,
    /// `async_job`: the last job polled, whether an earlier run created it, and how many
    /// were found expired (404 or 410) and created again.
    pub async_job_id: Option<String>,
    pub async_job_resumed: bool,
    pub async_jobs_expired: u64,
}

/// Drops the records outside `window` (`client_side_filter`); returns how many.
pub fn keep_in_window(records: &mut Vec<RecordMeta>, window: Option<&Window>) -> u64 {
    let Some(window) = window else { return 0 };
    let before = records.len();
    records.retain(|record| {
        record
            .cursor_value
            .as_ref()
            .is_none_or(|value| windows::contains(window, value))
    });
    (before - records.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cursor::Cursor;

    fn record(cursor: Option<i128>) -> RecordMeta {
        RecordMeta {
            range: 0..0,
            id: None,
            cursor: cursor.map(|value| value.to_string()),
            cursor_value: cursor.map(Cursor::Integer),
            parent: None,
            violation: None,
            source_text: None,
        }
    }

    #[test]
    fn records_outside_the_window_are_dropped_and_counted() {
        let window = Window {
            lower: Some(Cursor::Integer(10)),
            upper: Some(Cursor::Integer(20)),
        };
        let mut records: Vec<RecordMeta> = [5, 10, 15, 20, 25].map(|value| record(Some(value))).into();
        records.push(record(None));
        let dropped = keep_in_window(&mut records, Some(&window));
        let kept: Vec<Option<Cursor>> = records.into_iter().map(|record| record.cursor_value).collect();
        assert!(windows::contains(&window, &Cursor::Integer(10)));
        assert_eq!(dropped as usize, 6 - kept.len());
        // A record without a cursor value is never filtered out.
        assert!(kept.contains(&None));
        assert!(!kept.contains(&Some(Cursor::Integer(5))));
        assert!(!kept.contains(&Some(Cursor::Integer(25))));
        assert!(kept.contains(&Some(Cursor::Integer(15))));
    }

    #[test]
    fn without_a_filter_every_record_is_kept() {
        let mut records = vec![record(Some(1)), record(None)];
        assert_eq!(keep_in_window(&mut records, None), 0);
        assert_eq!(records.len(), 2);
    }
}
