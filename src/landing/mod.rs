//! The landing zone (contract §2): where parts, manifests, state and dead letters live,
//! and the only code that talks to object storage.

pub mod layout;
pub mod part;
pub mod store;

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::config::LandingConfig;
use crate::error::{Classify, ErrorCode};

/// Errors from the landing zone; each names the object it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LandingError {
    #[error("invalid landing URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error("{path} already exists; parts are written create-only and never overwritten")]
    AlreadyExists { path: String },
    #[error("permission denied on {path}: {message}")]
    PermissionDenied { path: String, message: String },
    #[error("storage error on {path}: {message}")]
    Store {
        path: String,
        message: String,
        retryable: bool,
    },
    #[error("cannot encode {path}: {message}")]
    Encode { path: String, message: String },
}

impl Classify for LandingError {
    fn code(&self) -> ErrorCode {
        match self {
            LandingError::Url { .. } => ErrorCode::ConfigError,
            LandingError::PermissionDenied { .. } => ErrorCode::AuthFailed,
            _ => ErrorCode::StorageError,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, LandingError::Store { retryable: true, .. })
    }
}

impl LandingError {
    pub(crate) fn from_store(path: &str, error: object_store::Error) -> Self {
        match error {
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                LandingError::AlreadyExists { path: path.to_owned() }
            }
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => LandingError::PermissionDenied {
                path: path.to_owned(),
                message: crate::redact::scrub(&source.to_string()).into_owned(),
            },
            other => {
                let retryable = matches!(other, object_store::Error::Generic { .. });
                LandingError::Store {
                    path: path.to_owned(),
                    message: crate::redact::scrub(&crate::http::error::describe(&other)).into_owned(),
                    retryable,
                }
            }
        }
    }
}

/// A landing zone: an object store and the root prefix inside it.
#[derive(Clone, Debug)]
pub struct Landing {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

impl Landing {
    /// Opens the landing zone of `config`. Local folders are created; nothing else is
    /// contacted until the first read or write.
    pub fn open(config: &LandingConfig) -> Result<Self, LandingError> {
        let (store, root) = store::open(&config.url, &config.options)?;
        Ok(Self {
            store,
            root,
            url: config.url.trim_end_matches('/').to_owned(),
        })
    }

    /// The landing URL this zone was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The full URL of an object given by its path relative to the landing root.
    pub fn url_of(&self, relative: &str) -> String {
        format!("{}/{}", self.url, relative)
    }

    pub(crate) fn path(&self, relative: &str) -> Path {
        let mut path = self.root.clone();
        for segment in relative.split('/').filter(|segment| !segment.is_empty()) {
            path = path.join(segment);
        }
        path
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes an object that must not exist yet.
    pub async fn put_new(&self, relative: &str, bytes: Bytes) -> Result<(), LandingError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&self.path(relative), PutPayload::from_bytes(bytes), options)
            .await
            .map(|_| ())
            .map_err(|error| LandingError::from_store(relative, error))
    }

    /// Writes an object, replacing any previous version atomically.
    pub async fn put_replace(&self, relative: &str, bytes: Bytes) -> Result<(), LandingError> {
        self.store
            .put(&self.path(relative), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|error| LandingError::from_store(relative, error))
    }

    /// Reads an object, `None` when it does not exist.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>, LandingError> {
        match self.store.get(&self.path(relative)).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(|error| LandingError::from_store(relative, error)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(LandingError::from_store(relative, error)),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, relative: &str) -> Result<bool, LandingError> {
        match self.store.head(&self.path(relative)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(LandingError::from_store(relative, error)),
        }
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, relative: &str) -> Result<(), LandingError> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(LandingError::from_store(relative, error)),
        }
    }

    /// Paths (relative to the landing root) of every object under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, LandingError> {
        let root = self.root.as_ref().len();
        let prefix_path = self.path(prefix);
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix_path))
            .try_collect()
            .await
            .map_err(|error| LandingError::from_store(prefix, error))?;
        let mut paths: Vec<String> = objects
            .into_iter()
            .map(|meta| {
                let full = meta.location.as_ref();
                full[root..].trim_start_matches('/').to_owned()
            })
            .collect();
        paths.sort();
        Ok(paths)
    }
}
