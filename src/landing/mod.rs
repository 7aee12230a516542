//! The landing zone (contract §2): where parts, manifests, state and dead letters live,
//! and the only code that talks to object storage.
//!
//! [`Landing`] offers the primitives the rest of Landfall builds on, each mapped onto the
//! store's own conditional operations:
//!
//! | primitive | S3 | Azure Blob | GCS | file:// |
//! |---|---|---|---|---|
//! | [`Landing::put_new`] (create-only) | `If-None-Match: *` | `If-None-Match: *` | `x-goog-if-generation-match: 0` | hard link |
//! | [`Landing::put_if_version`] | `If-Match: <etag>` | `If-Match: <etag>` | `x-goog-if-generation-match: <generation>` | folder lock + ETag compare |
//! | [`Landing::get_versioned`] | ETag | ETag | ETag + generation | ETag (inode, mtime, size) |
//! | [`Landing::delete`] | unconditional | unconditional | unconditional | unconditional |
//!
//! Large parts are staged and published create-only by [`upload`].

pub mod blocks;
pub mod config;
pub mod error;
pub mod gcp_external_account;
pub mod layout;
mod local;
pub mod options;
pub mod part;
pub mod store;
pub mod upload;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult, UpdateVersion,
};
use serde::{Deserialize, Serialize};

use error::Site;
pub use error::{LandingError, Operation};
pub use options::Backend;

use crate::landing::config::LandingConfig;
use crate::observe::events::Events;

/// An object's version as its store reports it: what a conditional update must match.
/// S3 and Azure match on the ETag, GCS on the generation (`version`); both are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// The entity tag.
    pub e_tag: Option<String>,
    /// The version or generation, where the store has one.
    pub version: Option<String>,
}

impl ObjectVersion {
    fn describe(&self) -> String {
        match (&self.e_tag, &self.version) {
            (Some(e_tag), Some(version)) => format!("etag {e_tag}, generation {version}"),
            (Some(e_tag), None) => format!("etag {e_tag}"),
            (None, Some(version)) => format!("generation {version}"),
            (None, None) => "unknown".to_owned(),
        }
    }
}

impl From<PutResult> for ObjectVersion {
    fn from(result: PutResult) -> Self {
        Self {
            e_tag: result.e_tag,
            version: result.version,
        }
    }
}

impl From<&object_store::ObjectMeta> for ObjectVersion {
    fn from(meta: &object_store::ObjectMeta) -> Self {
        Self {
            e_tag: meta.e_tag.clone(),
            version: meta.version.clone(),
        }
    }
}

impl From<&ObjectVersion> for UpdateVersion {
    fn from(version: &ObjectVersion) -> Self {
        UpdateVersion {
            e_tag: version.e_tag.clone(),
            version: version.version.clone(),
        }
    }
}

/// An object found by a listing.
#[derive(Clone, Debug)]
pub struct ListedObject {
    /// Path relative to the landing root.
    pub path: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

/// A landing zone: an object store and the root prefix inside it.
#[derive(Clone)]
pub struct Landing {
    store: Arc<dyn ObjectStore>,
    multipart: Option<Arc<dyn MultipartStore>>,
    backend: Backend,
    root: Path,
    url: String,
    local_folder: Option<PathBuf>,
    events: Option<Events>,
    /// Whether the "no conditional writes" warning was given.
    warned: Arc<AtomicBool>,
}

impl std::fmt::Debug for Landing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Landing")
            .field("url", &self.url)
            .field("backend", &self.backend)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Landing {
    /// Opens the landing zone of `config`. Local folders are created; nothing else is
    /// contacted until the first read or write.
    pub fn open(config: &LandingConfig) -> Result<Self, LandingError> {
        let opened = store::open(config)?;
        Ok(Self {
            store: opened.store,
            multipart: opened.multipart,
            backend: opened.backend,
            root: opened.root,
            url: config.url.trim_end_matches('/').to_owned(),
            local_folder: opened.local_folder,
            events: None,
            warned: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The same landing zone, reporting its events with a run's context.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Some(events);
        self
    }

    /// The landing URL this zone was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The kind of store.
    pub fn backend(&self) -> Backend {
        self.backend
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

    pub(crate) fn multipart(&self) -> Option<&Arc<dyn MultipartStore>> {
        self.multipart.as_ref()
    }

    pub(crate) fn local_folder(&self) -> Option<&std::path::Path> {
        self.local_folder.as_deref()
    }

    pub(crate) fn events(&self) -> Events {
        self.events.clone().unwrap_or_else(|| Events::new("-", "-"))
    }

    pub(crate) fn site<'a>(&self, relative: &'a str, operation: Operation) -> Site<'a> {
        Site {
            backend: self.backend,
            path: relative,
            url: self.url_of(relative),
            operation,
        }
    }

    fn warn_unconditional(&self, relative: &str, operation: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            self.events()
                .conditional_write_unavailable(&self.url_of(relative), operation);
        }
    }

    /// Writes an object that must not exist yet, with the store's create-only put.
    ///
    /// An object that already holds exactly these bytes counts as written: a retried
    /// request may meet its own first attempt. Objects whose ownership matters (a lease)
    /// must therefore carry content unique to their writer. On a store that cannot write
    /// create-only (S3 with `conditional_put: disabled`), the name is checked first and a
    /// warning is logged once; see docs/credentials.md.
    pub async fn put_new(&self, relative: &str, bytes: Bytes) -> Result<ObjectVersion, LandingError> {
        let options = PutOptions::from(PutMode::Create);
        let path = self.path(relative);
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(bytes.clone()), options)
            .await
        {
            Ok(result) => Ok(result.into()),
            Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => {
                self.warn_unconditional(relative, "put");
                if self.exists(relative).await? {
                    return Err(self
                        .site(relative, Operation::Write)
                        .error(object_store::Error::AlreadyExists {
                            path: path.to_string(),
                            source: "the name is taken".into(),
                        }));
                }
                self.put_replace(relative, bytes).await
            }
            Err(error) => {
                let error = self.site(relative, Operation::Write).error(error);
                // A failed read leaves the conflict standing: refusing is the safe answer.
                if matches!(error, LandingError::AlreadyExists { .. })
                    && let Ok(Some((existing, version))) = self.get_versioned(relative).await
                    && existing == bytes
                {
                    return Ok(version);
                }
                Err(error)
            }
        }
    }

    /// Writes an object, replacing any previous version atomically.
    pub async fn put_replace(&self, relative: &str, bytes: Bytes) -> Result<ObjectVersion, LandingError> {
        self.store
            .put(&self.path(relative), PutPayload::from_bytes(bytes))
            .await
            .map(ObjectVersion::from)
            .map_err(|error| self.site(relative, Operation::Write).error(error))
    }

    /// Replaces an object only if it is still at `expected` (the version a read or a write
    /// returned): the compare-and-swap a lease renews and takes over with. Fails with
    /// [`LandingError::VersionMismatch`] when the object changed or disappeared.
    pub async fn put_if_version(
        &self,
        relative: &str,
        bytes: Bytes,
        expected: &ObjectVersion,
    ) -> Result<ObjectVersion, LandingError> {
        if let Some(folder) = &self.local_folder {
            return local::put_if_version(self, folder, relative, bytes, expected).await;
        }
        let options = PutOptions::from(PutMode::Update(expected.into()));
        match self
            .store
            .put_opts(&self.path(relative), PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(result) => Ok(result.into()),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::NotFound { .. },
            ) => Err(self.version_mismatch(relative, expected)),
            Err(error) => Err(self.site(relative, Operation::Write).error(error)),
        }
    }

    /// The error of a conditional update whose object changed or disappeared.
    fn version_mismatch(&self, relative: &str, expected: &ObjectVersion) -> LandingError {
        LandingError::VersionMismatch {
            path: relative.to_owned(),
            url: self.url_of(relative),
            expected: expected.describe(),
        }
    }

    /// A process-local store, for unit tests.
    #[cfg(test)]
    pub(crate) fn memory() -> Landing {
        Landing::open(&crate::landing::config::LandingConfig {
            url: "memory://".into(),
            ..Default::default()
        })
        .unwrap()
    }

    /// Reads an object, `None` when it does not exist.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>, LandingError> {
        Ok(self.get_versioned(relative).await?.map(|(bytes, _)| bytes))
    }

    /// Reads an object with the version a conditional update must match.
    pub async fn get_versioned(&self, relative: &str) -> Result<Option<(Bytes, ObjectVersion)>, LandingError> {
        let site = || self.site(relative, Operation::Read);
        match self.store.get(&self.path(relative)).await {
            Ok(result) => {
                let version = ObjectVersion::from(&result.meta);
                let bytes = result.bytes().await.map_err(|error| site().error(error))?;
                Ok(Some((bytes, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(site().error(error)),
        }
    }

    /// An object's size and version, `None` when it does not exist.
    pub async fn head(&self, relative: &str) -> Result<Option<(u64, ObjectVersion)>, LandingError> {
        match self.store.head(&self.path(relative)).await {
            Ok(meta) => Ok(Some((meta.size, ObjectVersion::from(&meta)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.site(relative, Operation::Read).error(error)),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, relative: &str) -> Result<bool, LandingError> {
        Ok(self.head(relative).await?.is_some())
    }

    /// Deletes an object; a missing object is not an error. Deletes are unconditional on
    /// every store (`object_store` has no conditional delete).
    pub async fn delete(&self, relative: &str) -> Result<(), LandingError> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.site(relative, Operation::Delete).error(error)),
        }
    }

    /// Copies `from` to `to`, which must not exist yet (a server-side, create-only copy).
    /// An existing `to` whose SHA-256 is `expected_sha256` counts as copied, as in
    /// [`Landing::put_new`].
    pub(crate) async fn copy_new(&self, from: &str, to: &str, expected_sha256: &str) -> Result<(), LandingError> {
        let options = CopyOptions {
            mode: CopyMode::Create,
            ..Default::default()
        };
        match self.store.copy_opts(&self.path(from), &self.path(to), options).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => {
                self.warn_unconditional(to, "copy");
                if self.exists(to).await? {
                    return self.already_copied(to, expected_sha256).await;
                }
                self.store
                    .copy(&self.path(from), &self.path(to))
                    .await
                    .map_err(|error| self.site(to, Operation::Write).error(error))
            }
            // Azure names the source in its conflict error: report the destination.
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                self.already_copied(to, expected_sha256).await
            }
            Err(error) => Err(self.site(to, Operation::Write).error(error)),
        }
    }

    async fn already_copied(&self, to: &str, expected_sha256: &str) -> Result<(), LandingError> {
        match self.get(to).await {
            Ok(Some(bytes)) if crate::hash::sha256_hex(&bytes) == expected_sha256 => Ok(()),
            _ => Err(LandingError::AlreadyExists {
                path: to.to_owned(),
                url: self.url_of(to),
            }),
        }
    }

    /// Paths (relative to the landing root) of every object under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, LandingError> {
        Ok(self
            .list_objects(prefix)
            .await?
            .into_iter()
            .map(|object| object.path)
            .collect())
    }

    /// Every object under `prefix`, sorted by path.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ListedObject>, LandingError> {
        let root = self.root.as_ref().len();
        let prefix_path = self.path(prefix);
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix_path))
            .try_collect()
            .await
            .map_err(|error| self.site(prefix, Operation::List).error(error))?;
        let mut listed: Vec<ListedObject> = objects
            .into_iter()
            .map(|meta| ListedObject {
                path: meta.location.as_ref()[root..].trim_start_matches('/').to_owned(),
                size: meta.size,
                last_modified: meta.last_modified,
            })
            .collect();
        listed.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listed)
    }
}
