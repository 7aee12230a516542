//! Why reading a stream from its source failed.

use crate::error::{Classify, ErrorCode, Stage};
use crate::http::HttpError;
use crate::pagination::PaginationError;
use crate::records;

/// Why a source stopped reading a stream. A source family adds its own variants (a
/// database's connection and query errors), each with its code, whether a rerun may help,
/// and its stage.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("page {page} of {endpoint} (request {request_id}): {source}")]
    Records {
        page: u64,
        endpoint: String,
        request_id: String,
        source: records::RecordsError,
    },
    #[error(transparent)]
    Pagination(#[from] PaginationError),
    /// A database source's connection, statement or row.
    #[error(transparent)]
    Database(#[from] crate::source::database::DatabaseError),
    #[error("invalid stream URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("stopped by a termination signal; what was read is stored")]
    Cancelled,
    #[error("fetcher task failed: {0}")]
    Task(String),
    /// A page spilled to a temporary file could not be read back (a local disk error).
    #[error("page {page}: reading its body back from a temporary file under {dir} failed: {message}")]
    Spill { page: u64, dir: String, message: String },
    /// The parent records kept for the children in a temporary file could not be read (a
    /// local disk error).
    #[error("the parent records kept for child streams in a temporary file under {dir}: {message}")]
    ParentKeys { dir: String, message: String },
    /// An asynchronous job failed, is still running, expired twice or answered without
    /// what the config points at.
    #[error(transparent)]
    AsyncJob(#[from] crate::source::rest::async_job::JobError),
}

impl ReadError {
    /// Whether the stream stopped cleanly at its last checkpoint (status `partial`) rather
    /// than failed: a rate-limit wait would have passed the run's deadline.
    pub fn stops_cleanly(&self) -> bool {
        matches!(self, ReadError::Http(error) if error.stops_cleanly())
    }

    /// The stage the stream failed in.
    pub fn stage(&self) -> Stage {
        match self {
            ReadError::Http(_)
            | ReadError::Url(_)
            | ReadError::Cancelled
            | ReadError::Task(_)
            | ReadError::Spill { .. }
            | ReadError::ParentKeys { .. }
            | ReadError::AsyncJob(_) => Stage::Fetch,
            ReadError::Records { .. } => Stage::Parse,
            ReadError::Pagination(_) => Stage::Paginate,
            ReadError::Database(error) => error.stage,
        }
    }
}

impl Classify for ReadError {
    fn code(&self) -> ErrorCode {
        match self {
            ReadError::Http(error) => error.code(),
            ReadError::Records { .. } => ErrorCode::ParsingError,
            ReadError::Pagination(error) => error.code(),
            ReadError::Database(error) => error.code,
            ReadError::Url(_) => ErrorCode::ConfigError,
            ReadError::Cancelled => ErrorCode::Cancelled,
            ReadError::Task(_) => ErrorCode::Unsupported,
            ReadError::Spill { .. } | ReadError::ParentKeys { .. } => ErrorCode::StorageError,
            ReadError::AsyncJob(error) => error.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            ReadError::Http(error) => error.retryable(),
            ReadError::Records { source, .. } => source.retryable(),
            ReadError::Cancelled | ReadError::Spill { .. } | ReadError::ParentKeys { .. } => true,
            ReadError::Pagination(error) => error.retryable(),
            ReadError::Database(error) => error.retryable,
            ReadError::Url(_) | ReadError::Task(_) => false,
            ReadError::AsyncJob(error) => error.retryable(),
        }
    }
}

/// The error of a temporary file holding parent records (`std::env::temp_dir()`).
pub(crate) fn parent_keys_message(error: &std::io::Error) -> (String, String) {
    (std::env::temp_dir().display().to_string(), error.to_string())
}
