//! Large parts, published create-only. A multipart upload's completion is not conditional
//! on every store (`complete()` overwrites on S3 and Azure), so a part too large for one
//! request is uploaded under a staging name in `{source}/_tmp/`, completed there, then
//! published with a create-only server-side copy (S3: multipart copy completed with
//! `If-None-Match: *`; Azure: copy with `If-None-Match: *`; GCS: copy with
//! `x-goog-if-generation-match: 0`; file://: hard link), and the staged object is deleted.
//!
//! Before the first part, a marker object records the upload id next to the staged name.
//! A failure aborts the upload, deletes what was staged and the marker. A killed process
//! runs no abort code: its upload stays open (S3, GCS) or its blocks stay uncommitted
//! (Azure, dropped by the service after 7 days), and the marker says so. A later run aborts
//! uploads whose marker is older than `landing.stale_upload_after` ([`clean_stale`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::{Landing, LandingError, Operation, layout};

/// Part uploads in flight per staged part.
const UPLOAD_CONCURRENCY: usize = 2;
/// How long a published part may take to show its full size.
const PUBLISH_WAIT: Duration = Duration::from_secs(120);

/// What a marker records about a staged upload.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadMarker {
    /// The store's multipart upload id (none for file://, whose staging is a plain file).
    pub upload_id: Option<String>,
    /// The staged object, relative to the landing root.
    pub staged: String,
    /// The part the upload publishes.
    pub target: String,
    pub run_id: String,
    pub created_at: String,
}

enum Sink {
    Multipart {
        store: Arc<dyn MultipartStore>,
        path: Path,
        id: MultipartId,
    },
    File(tokio::fs::File),
}

/// A part being uploaded under its staging name.
pub struct StagedUpload {
    landing: Landing,
    target: String,
    staged: String,
    marker: String,
    sink: Sink,
    tasks: JoinSet<(usize, Result<PartId, object_store::Error>)>,
    parts: Vec<Option<PartId>>,
    completed: bool,
}

fn io_error(landing: &Landing, relative: &str, error: std::io::Error) -> LandingError {
    landing
        .site(relative, Operation::Write)
        .error(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(error),
        })
}

impl StagedUpload {
    /// Starts the upload of `target` under `staged` and records it in `marker`.
    pub async fn begin(
        landing: &Landing,
        target: &str,
        staged: &str,
        marker: &str,
        run_id: &str,
    ) -> Result<Self, LandingError> {
        let (sink, upload_id) = match (landing.multipart(), landing.local_folder()) {
            (Some(store), _) => {
                let path = landing.path(staged);
                let id = store
                    .create_multipart(&path)
                    .await
                    .map_err(|error| landing.site(staged, Operation::Write).error(error))?;
                let upload_id = Some(id.clone());
                (
                    Sink::Multipart {
                        store: store.clone(),
                        path,
                        id,
                    },
                    upload_id,
                )
            }
            (None, Some(folder)) => {
                let file_path = folder.join(staged);
                if let Some(parent) = file_path.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|error| io_error(landing, staged, error))?;
                }
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&file_path)
                    .await
                    .map_err(|error| io_error(landing, staged, error))?;
                (Sink::File(file), None)
            }
            (None, None) => unreachable!("every store either has multipart ids or is a folder"),
        };
        let upload = Self {
            landing: landing.clone(),
            target: target.to_owned(),
            staged: staged.to_owned(),
            marker: marker.to_owned(),
            sink,
            tasks: JoinSet::new(),
            parts: Vec::new(),
            completed: false,
        };
        let record = UploadMarker {
            upload_id,
            staged: staged.to_owned(),
            target: target.to_owned(),
            run_id: run_id.to_owned(),
            created_at: crate::clock::now_rfc3339(),
        };
        let body = serde_json::to_vec(&record).expect("marker serializes");
        if let Err(error) = landing.put_new(marker, Bytes::from(body)).await {
            upload.abort("the upload marker could not be written").await;
            return Err(error);
        }
        Ok(upload)
    }

    async fn join_one(&mut self) -> Result<(), LandingError> {
        match self.tasks.join_next().await {
            None => Ok(()),
            Some(Ok((index, Ok(part)))) => {
                self.parts[index] = Some(part);
                Ok(())
            }
            Some(Ok((_, Err(error)))) => Err(self.landing.site(&self.staged, Operation::Write).error(error)),
            Some(Err(join_error)) => Err(LandingError::Store {
                path: self.staged.clone(),
                url: self.landing.url_of(&self.staged),
                operation: Operation::Write,
                message: format!("part upload task failed: {join_error}"),
                retryable: false,
            }),
        }
    }

    /// Uploads the next part; waits while [`UPLOAD_CONCURRENCY`] parts are in flight.
    /// Every part but the last must meet the store's minimum size (5 MiB on S3 and GCS).
    pub async fn put_part(&mut self, bytes: Bytes) -> Result<(), LandingError> {
        match &mut self.sink {
            Sink::File(file) => file
                .write_all(&bytes)
                .await
                .map_err(|error| io_error(&self.landing, &self.staged, error)),
            Sink::Multipart { store, path, id } => {
                let (store, path, id) = (store.clone(), path.clone(), id.clone());
                while self.tasks.len() >= UPLOAD_CONCURRENCY {
                    self.join_one().await?;
                }
                let index = self.parts.len();
                self.parts.push(None);
                // Spawned, so parts keep uploading while the writer waits for pages.
                self.tasks.spawn(async move {
                    let result = store.put_part(&path, &id, index, PutPayload::from_bytes(bytes)).await;
                    (index, result)
                });
                Ok(())
            }
        }
    }

    /// Completes the upload and publishes it create-only as the target; the staged object
    /// and the marker are then deleted. On failure everything staged is aborted.
    pub async fn finish(mut self, sha256: &str, size: u64) -> Result<(), LandingError> {
        if let Err(error) = self.complete().await {
            self.abort("completing the upload failed").await;
            return Err(error);
        }
        if let Err(error) = self.landing.copy_new(&self.staged, &self.target, sha256).await {
            self.abort("publishing the staged part failed").await;
            return Err(error);
        }
        // On failure the staged object stays: its marker lets a later run clean it up.
        self.published(size).await?;
        for relative in [&self.staged, &self.marker] {
            if let Err(error) = self.landing.delete(relative).await {
                // The part is published; a leftover costs storage only, and a later run
                // or the lifecycle rule removes it.
                self.landing.events().upload_aborted(
                    &self.landing.url_of(relative),
                    "staging object not deleted after publishing",
                    Some(&error.to_string()),
                );
            }
        }
        Ok(())
    }

    /// Waits until the published part has its full size: an Azure copy may finish after the
    /// request returns, and the staged source must outlive it.
    async fn published(&self, size: u64) -> Result<(), LandingError> {
        let mut delay = Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
        loop {
            match self.landing.head(&self.target).await? {
                Some((found, _)) if found == size => return Ok(()),
                found if tokio::time::Instant::now() >= deadline => {
                    return Err(LandingError::Store {
                        path: self.target.clone(),
                        url: self.landing.url_of(&self.target),
                        operation: Operation::Write,
                        message: format!(
                            "the published part has {} bytes, not {size}, {} s after its copy",
                            found.map_or("no".to_owned(), |(found, _)| found.to_string()),
                            PUBLISH_WAIT.as_secs()
                        ),
                        retryable: true,
                    });
                }
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn complete(&mut self) -> Result<(), LandingError> {
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        match &mut self.sink {
            Sink::File(file) => {
                file.flush()
                    .await
                    .and(file.sync_all().await)
                    .map_err(|error| io_error(&self.landing, &self.staged, error))?;
            }
            Sink::Multipart { store, path, id } => {
                let parts: Vec<PartId> = self.parts.iter().flatten().cloned().collect();
                store
                    .complete_multipart(path, id, parts)
                    .await
                    .map_err(|error| self.landing.site(&self.staged, Operation::Write).error(error))?;
            }
        }
        self.completed = true;
        Ok(())
    }

    /// Abandons the upload: parts in flight are cancelled, the upload aborted, the staged
    /// object and the marker deleted. Failures are logged (`upload_aborted`): the marker, if
    /// it survives, lets a later run finish the job.
    pub async fn abort(mut self, reason: &str) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let mut failure: Option<LandingError> = None;
        match &self.sink {
            Sink::Multipart { store, path, id } if !self.completed => {
                if let Err(error) = store.abort_multipart(path, id).await
                    && !matches!(error, object_store::Error::NotFound { .. })
                {
                    failure = Some(self.landing.site(&self.staged, Operation::Abort).error(error));
                }
            }
            _ => {
                if let Err(error) = self.landing.delete(&self.staged).await {
                    failure = Some(error);
                }
            }
        }
        if failure.is_none()
            && let Err(error) = self.landing.delete(&self.marker).await
        {
            failure = Some(error);
        }
        self.landing.events().upload_aborted(
            &self.landing.url_of(&self.staged),
            reason,
            failure.as_ref().map(ToString::to_string).as_deref(),
        );
    }
}

/// An unfinished upload found under `{source}/_tmp/`.
#[derive(Clone, Debug)]
pub struct StaleUpload {
    /// The marker, or the staged object when no marker is left.
    pub path: String,
    /// What the marker recorded, when it could be read.
    pub marker: Option<UploadMarker>,
    /// The run folder it belongs to.
    pub run_id: String,
    /// How long ago it was written.
    pub age: Duration,
}

/// Unfinished uploads under `{source}/_tmp/`, of any run but `except_run`, at least
/// `older_than` old.
pub async fn find_stale(
    landing: &Landing,
    source: &str,
    older_than: Duration,
    except_run: Option<&str>,
) -> Result<Vec<StaleUpload>, LandingError> {
    let root = layout::staging_root(source);
    let objects = landing.list_objects(&root).await?;
    let now = chrono::Utc::now();
    let markers: std::collections::HashSet<&str> = objects
        .iter()
        .filter_map(|object| object.path.strip_suffix(layout::MARKER_SUFFIX))
        .collect();
    let mut stale = Vec::new();
    for object in &objects {
        let run_id = object.path[root.len()..]
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if except_run == Some(run_id.as_str()) {
            continue;
        }
        let age = (now - object.last_modified).to_std().unwrap_or_default();
        if age < older_than {
            continue;
        }
        let marker = if object.path.ends_with(layout::MARKER_SUFFIX) {
            landing
                .get(&object.path)
                .await?
                .and_then(|bytes| serde_json::from_slice::<UploadMarker>(&bytes).ok())
        } else if let Some(name) = object.path.strip_suffix(layout::STAGED_SUFFIX)
            && !markers.contains(name)
        {
            None
        } else {
            // A staged object with a marker is handled with its marker.
            continue;
        };
        stale.push(StaleUpload {
            path: object.path.clone(),
            marker,
            run_id,
            age,
        });
    }
    Ok(stale)
}

/// Aborts the uploads other runs left under `{source}/_tmp/` that are older than
/// `older_than`, and deletes their staged objects and markers. Every upload is tried; the
/// first failure is returned after the others, with what was cleaned logged as it goes.
pub async fn clean_stale(
    landing: &Landing,
    source: &str,
    older_than: Duration,
    current_run: &str,
) -> Result<Vec<StaleUpload>, LandingError> {
    let stale = find_stale(landing, source, older_than, Some(current_run)).await?;
    let mut cleaned = Vec::with_capacity(stale.len());
    let mut first_error = None;
    for upload in stale {
        match clean_one(landing, &upload).await {
            Ok(()) => {
                landing.events().stale_upload_cleaned(
                    &landing.url_of(&upload.path),
                    &upload.run_id,
                    upload.age.as_secs(),
                );
                cleaned.push(upload);
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(cleaned),
    }
}

/// Aborts one unfinished upload and deletes its staged object and marker.
pub(crate) async fn clean_one(landing: &Landing, upload: &StaleUpload) -> Result<(), LandingError> {
    if let Some(marker) = &upload.marker {
        if let (Some(id), Some(store)) = (&marker.upload_id, landing.multipart()) {
            match store.abort_multipart(&landing.path(&marker.staged), id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(landing.site(&marker.staged, Operation::Abort).error(error)),
            }
        }
        landing.delete(&marker.staged).await?;
    }
    landing.delete(&upload.path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn killed_upload(landing: &Landing, run_id: &str) -> String {
        let staging = layout::staging_dir("shop", run_id, "orders");
        let upload = StagedUpload::begin(
            landing,
            "shop/orders/part-00000.jsonl",
            &layout::staged_part(&staging, "part-00000.jsonl"),
            &layout::upload_marker(&staging, "part-00000.jsonl"),
            run_id,
        )
        .await
        .unwrap();
        // A killed process runs no abort: drop the upload without one.
        drop(upload);
        layout::upload_marker(&staging, "part-00000.jsonl")
    }

    #[tokio::test]
    async fn stale_uploads_are_cleaned_only_when_old_enough_and_never_the_current_run() {
        let landing = Landing::memory();
        let marker = killed_upload(&landing, "r1").await;
        let recorded: UploadMarker = serde_json::from_slice(&landing.get(&marker).await.unwrap().unwrap()).unwrap();
        assert_eq!(recorded.run_id, "r1");
        assert!(recorded.upload_id.is_some());

        let young = clean_stale(&landing, "shop", Duration::from_secs(3600), "r2")
            .await
            .unwrap();
        assert!(young.is_empty(), "a young upload may belong to a live run");
        let own = clean_stale(&landing, "shop", Duration::ZERO, "r1").await.unwrap();
        assert!(own.is_empty(), "a run never cleans its own uploads");
        assert!(landing.exists(&marker).await.unwrap());

        let cleaned = clean_stale(&landing, "shop", Duration::ZERO, "r2").await.unwrap();
        assert_eq!(cleaned.len(), 1);
        assert_eq!(cleaned[0].run_id, "r1");
        assert!(landing.list("shop/_tmp").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_staged_object_without_its_marker_is_cleaned_too() {
        let landing = Landing::memory();
        landing
            .put_new("shop/_tmp/r1/orders/part-00000.jsonl.partial", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let stale = find_stale(&landing, "shop", Duration::ZERO, None).await.unwrap();
        assert_eq!(stale.len(), 1);
        assert!(stale[0].marker.is_none());
        clean_stale(&landing, "shop", Duration::ZERO, "r2").await.unwrap();
        assert!(landing.list("shop/_tmp").await.unwrap().is_empty());
    }
}
