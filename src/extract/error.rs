//! Why a stream failed: its source's errors, and those of landing what was read.

use crate::cursor::CursorError;
use crate::error::{Classify, ErrorCode, Stage};
use crate::landing::LandingError;
use crate::quality::validate::ValidatorError;
use crate::source::ReadError;
use crate::state::StateError;

/// Why a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading from the source failed (or was cancelled).
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Landing(#[from] LandingError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "the checkpoint {path} cannot be used: {source}; it is not sent to the API: correct it \
         with `landfall state set` or `landfall state reset`"
    )]
    Checkpoint { path: String, source: CursorError },
    #[error(transparent)]
    Validator(#[from] ValidatorError),
    #[error(
        "{dead} of {read} records ({ratio:.4}) went to dead letters, above max_dead_letter_ratio {max}; \
         see the stream's _dead_letter/ folder"
    )]
    DeadLetterRatio { dead: u64, read: u64, ratio: f64, max: f64 },
    #[error("breaking schema drift with on_breaking_drift: fail: {0}")]
    SchemaDrift(String),
    /// The parent records kept for the children in a temporary file could not be written
    /// (a local disk error).
    #[error("the parent records kept for child streams in a temporary file under {dir}: {message}")]
    ParentKeys { dir: String, message: String },
}

impl StreamError {
    /// Whether the stream stopped cleanly at its last checkpoint (status `partial`) rather
    /// than failed: a rate-limit wait would have passed the run's deadline.
    pub fn stops_cleanly(&self) -> bool {
        matches!(self, StreamError::Read(error) if error.stops_cleanly())
    }

    /// Whether the stream was stopped by a termination signal (status `cancelled`).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, StreamError::Read(ReadError::Cancelled))
    }

    /// The stage the stream failed in.
    pub fn stage(&self) -> Stage {
        match self {
            StreamError::Read(error) => error.stage(),
            StreamError::ParentKeys { .. } => Stage::Fetch,
            StreamError::Landing(_) => Stage::Store,
            StreamError::State(_) | StreamError::Checkpoint { .. } => Stage::Checkpoint,
            StreamError::Validator(_) => Stage::Plan,
            StreamError::DeadLetterRatio { .. } | StreamError::SchemaDrift(_) => Stage::Validate,
        }
    }

    /// The error of the temporary file holding a parent stream's records for its children.
    pub(crate) fn parent_keys(error: &std::io::Error) -> Self {
        let (dir, message) = crate::source::error::parent_keys_message(error);
        StreamError::ParentKeys { dir, message }
    }
}

impl Classify for StreamError {
    fn code(&self) -> ErrorCode {
        match self {
            StreamError::Read(error) => error.code(),
            StreamError::Landing(error) => error.code(),
            StreamError::State(error) => error.code(),
            StreamError::Checkpoint { .. } | StreamError::Validator(_) => ErrorCode::ConfigError,
            StreamError::DeadLetterRatio { .. } | StreamError::SchemaDrift(_) => ErrorCode::ValidationError,
            StreamError::ParentKeys { .. } => ErrorCode::StorageError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            StreamError::Read(error) => error.retryable(),
            StreamError::ParentKeys { .. } => true,
            StreamError::Landing(error) => error.retryable(),
            StreamError::State(error) => error.retryable(),
            StreamError::Checkpoint { .. }
            | StreamError::Validator(_)
            | StreamError::DeadLetterRatio { .. }
            | StreamError::SchemaDrift(_) => false,
        }
    }
}
