//! Checkpoints (contract §5): `_state/{stream}.json` holds the cursor the next run starts
//! from. It is replaced atomically, only after the parts holding the records up to that
//! cursor are stored, and the previous version is kept as `.prev` for rollback.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::landing::{Landing, LandingError, layout};

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
}

impl crate::error::Classify for StateError {
    fn code(&self) -> crate::error::ErrorCode {
        match self {
            StateError::Landing(error) => error.code(),
            StateError::Corrupt { .. } => crate::error::ErrorCode::StorageError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            StateError::Landing(error) => error.retryable(),
            StateError::Corrupt { .. } => false,
        }
    }
}

/// Reads and writes the checkpoints of one source.
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

    /// The current checkpoint of `stream`, if any.
    pub async fn load(&self, stream: &str) -> Result<Option<StreamState>, StateError> {
        let path = layout::state(&self.source, stream);
        let Some(bytes) = self.landing.get(&path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StateError::Corrupt {
                path,
                message: error.to_string(),
            })
    }

    /// Replaces the checkpoint of `stream`, keeping the previous one as `.prev`.
    pub async fn commit(
        &self,
        stream: &str,
        cursor: Option<&str>,
        recent: Vec<SeenRecord>,
        run_id: &str,
    ) -> Result<StreamState, StateError> {
        let path = layout::state(&self.source, stream);
        if let Some(previous) = self.landing.get(&path).await? {
            self.landing
                .put_replace(&layout::state_previous(&self.source, stream), previous)
                .await?;
        }
        let state = StreamState {
            state_version: STATE_VERSION,
            stream: stream.to_owned(),
            cursor: cursor.map(str::to_owned),
            run_id: run_id.to_owned(),
            updated_at: crate::clock::now_rfc3339(),
            recent,
        };
        let mut bytes = serde_json::to_vec_pretty(&state).expect("state serializes");
        bytes.push(b'\n');
        self.landing.put_replace(&path, Bytes::from(bytes)).await?;
        Ok(state)
    }

    /// Removes the checkpoint of `stream`, keeping it as `.prev`.
    pub async fn reset(&self, stream: &str) -> Result<Option<StreamState>, StateError> {
        let previous = self.load(stream).await?;
        let path = layout::state(&self.source, stream);
        if let Some(bytes) = self.landing.get(&path).await? {
            self.landing
                .put_replace(&layout::state_previous(&self.source, stream), bytes)
                .await?;
            self.landing.delete(&path).await?;
        }
        Ok(previous)
    }
}
