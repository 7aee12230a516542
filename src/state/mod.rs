//! Checkpoints (contract §5): `_state/{stream}.json` holds the cursor the next run starts
//! from. It is replaced atomically, only after the parts holding the records up to that
//! cursor are stored, and the previous version is kept as `.prev` for rollback.
//!
//! Everything a run keeps between runs lives here: checkpoints (this module), the
//! single-writer [`lease`], rotated [`credentials`] and the typed incremental [`cursor`].

pub mod credentials;
pub mod cursor;
pub mod lease;

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
    pub updated_at: String,
    /// Stored records at the top of the cursor range (within `lookback` of the cursor,
    /// at most [`MAX_RECENT`]), so a re-read can tell an unchanged record from a new version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<SeenRecord>,
}

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

    /// Moves the checkpoint of `stream` forward to `cursor`, keeping the previous one as
    /// `.prev`. `read` is the checkpoint this writer last read or wrote (`None`: there was
    /// none). The write is fenced twice: `fence` must still confirm the writer's lease, and
    /// the object must still be at the version read. When another writer changed it since,
    /// the checkpoint is read again and kept if it is at or past `cursor` (a checkpoint
    /// never moves backwards); otherwise the write is retried on the new version. Returns
    /// the checkpoint now stored (the other writer's when it was newer).
    pub async fn commit(
        &self,
        stream: &str,
        cursor: CursorText<'_>,
        recent: Vec<SeenRecord>,
        run_id: &str,
        read: Option<&Versioned>,
        fence: &dyn Fence,
    ) -> Result<Versioned, StateError> {
        let CursorText { text: cursor, format } = cursor;
        let path = layout::state(&self.source, stream);
        let mut current = read.cloned();
        for _ in 0..MAX_CAS_ATTEMPTS {
            fence.confirm().await.map_err(|reason| StateError::LeaseLost {
                stream: stream.to_owned(),
                reason,
            })?;
            if let Some(current) = &current
                && current
                    .state
                    .cursor
                    .as_deref()
                    .is_some_and(|stored| at_or_past(format, stored, cursor))
            {
                return Ok(current.clone());
            }
            let state = new_state(stream, Some(cursor), recent.clone(), run_id);
            match self
                .write_object(&path, encode(&state), current.as_ref().map(|current| &current.version))
                .await?
            {
                Written::Stored(version) => {
                    self.keep_previous(stream, current.as_ref()).await?;
                    return Ok(Versioned { state, version });
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
        updated_at: crate::clock::now_rfc3339(),
        recent,
    }
}

fn encode(state: &StreamState) -> Bytes {
    let mut bytes = serde_json::to_vec_pretty(state).expect("state serializes");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// A cursor as it is stored (text in the stream's format), with the format that orders it.
#[derive(Clone, Copy, Debug)]
pub struct CursorText<'a> {
    pub text: &'a str,
    pub format: &'a crate::state::cursor::CursorFormat,
}

/// Whether the stored cursor is at or past `cursor`, compared as values of the stream's format.
/// A stored value that does not parse is never kept over a valid one.
fn at_or_past(format: &crate::state::cursor::CursorFormat, stored: &str, cursor: &str) -> bool {
    match (format.parse(stored), format.parse(cursor)) {
        (Ok(stored), Ok(cursor)) => stored >= cursor,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lost;

    #[async_trait::async_trait]
    impl Fence for Lost {
        async fn confirm(&self) -> Result<(), String> {
            Err("lease shop/_state/orders.lock is now held by run-b".to_owned())
        }
    }

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let landing = Landing::open(&crate::config::LandingConfig {
            url: format!("file://{}", dir.path().display()),
            ..Default::default()
        })
        .unwrap();
        (dir, StateStore::new(landing, "shop"))
    }

    #[tokio::test]
    async fn a_writer_that_lost_its_lease_writes_nothing() {
        let (_dir, store) = store();
        let fence = crate::state::lease::Unfenced;
        let first = store
            .commit(
                "orders",
                CursorText {
                    text: "2024-01-02",
                    format: &crate::state::cursor::CursorFormat::Date,
                },
                vec![],
                "run-a",
                None,
                &fence,
            )
            .await
            .unwrap();
        let error = store
            .commit(
                "orders",
                CursorText {
                    text: "2024-01-03",
                    format: &crate::state::cursor::CursorFormat::Date,
                },
                vec![],
                "run-a",
                Some(&first),
                &Lost,
            )
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
        let start = store
            .commit(
                "orders",
                CursorText {
                    text: "2024-01-01",
                    format: &crate::state::cursor::CursorFormat::Date,
                },
                vec![],
                "run-a",
                None,
                &fence,
            )
            .await
            .unwrap();
        // Run b moves the checkpoint on from what both read.
        store
            .commit(
                "orders",
                CursorText {
                    text: "2024-01-05",
                    format: &crate::state::cursor::CursorFormat::Date,
                },
                vec![],
                "run-b",
                Some(&start),
                &fence,
            )
            .await
            .unwrap();
        // Run a, still holding the version it read, commits an older cursor: refused by the
        // version check, it reads again and keeps b's.
        let kept = store
            .commit(
                "orders",
                CursorText {
                    text: "2024-01-03",
                    format: &crate::state::cursor::CursorFormat::Date,
                },
                vec![],
                "run-a",
                Some(&start),
                &fence,
            )
            .await
            .unwrap();
        assert_eq!(
            (kept.state.cursor.as_deref(), kept.state.run_id.as_str()),
            (Some("2024-01-05"), "run-b")
        );
        // A newer cursor than the stored one is written on the version just read.
        let moved = store
            .commit(
                "orders",
                CursorText {
                    text: "2024-01-09",
                    format: &crate::state::cursor::CursorFormat::Date,
                },
                vec![],
                "run-a",
                Some(&start),
                &fence,
            )
            .await
            .unwrap();
        assert_eq!(moved.state.cursor.as_deref(), Some("2024-01-09"));
        let stored = store.load("orders").await.unwrap().unwrap();
        assert_eq!(
            (stored.cursor.as_deref(), stored.run_id.as_str()),
            (Some("2024-01-09"), "run-a")
        );
        // A first commit that finds a checkpoint created meanwhile does not overwrite it.
        let (_dir, fresh) = store_with_checkpoint("2024-02-01").await;
        let kept = fresh
            .commit(
                "orders",
                CursorText {
                    text: "2024-01-15",
                    format: &crate::state::cursor::CursorFormat::Date,
                },
                vec![],
                "run-c",
                None,
                &fence,
            )
            .await
            .unwrap();
        assert_eq!(kept.state.cursor.as_deref(), Some("2024-02-01"));
    }

    async fn store_with_checkpoint(cursor: &str) -> (tempfile::TempDir, StateStore) {
        let (dir, store) = store();
        store.set("orders", cursor, "operator").await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn concurrent_writers_end_at_the_largest_cursor() {
        let (_dir, store) = store();
        let start = store
            .commit(
                "orders",
                CursorText {
                    text: "2024-01-01",
                    format: &crate::state::cursor::CursorFormat::Date,
                },
                vec![],
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
                    let cursor = format!("2024-01-{:02}", day + 1);
                    store
                        .commit(
                            "orders",
                            CursorText {
                                text: &cursor,
                                format: &crate::state::cursor::CursorFormat::Date,
                            },
                            vec![],
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
}
