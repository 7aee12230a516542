//! A run: every selected stream extracted and landed, then the manifest written last as
//! the commit marker.

pub mod request;
mod stream;

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;

pub use stream::StreamError;

use crate::config::LoadedConfig;
use crate::error::{Classify, ErrorCode, Exit};
use crate::events::Events;
use crate::http::{ClientBuildError, HttpClient, Sleeper};
use crate::landing::{Landing, LandingError, layout};
use crate::manifest::{self, Connector, Manifest, Status};
use crate::state::StateStore;

/// What `landfall run` was asked to do.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Streams to run; empty means all, in config order.
    pub streams: Vec<String>,
    /// A run id to use instead of a fresh UUIDv7 (must be a UUID).
    pub run_id: Option<String>,
    /// Explicit window lower bound (e.g. the Airflow data interval start).
    pub start: Option<String>,
    /// Explicit window upper bound.
    pub end: Option<String>,
    /// Ignore checkpoints and read from `incremental.start`.
    pub full_refresh: bool,
    /// Replaces the retry sleeper (tests).
    pub sleeper: Option<Arc<dyn Sleeper>>,
}

/// Errors that stop a run before any stream starts.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown stream `{0}`; the config defines: {1}")]
    UnknownStream(String, String),
    #[error("--run-id `{0}` is not a UUID")]
    InvalidRunId(String),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    #[error(transparent)]
    Landing(#[from] LandingError),
}

impl Classify for RunError {
    fn code(&self) -> ErrorCode {
        match self {
            RunError::Landing(error) => error.code(),
            _ => ErrorCode::ConfigError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            RunError::Landing(error) => error.retryable(),
            _ => false,
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunOutcome {
    pub manifest: Manifest,
    /// Full URL of the manifest.
    pub manifest_url: String,
    pub exit: Exit,
}

/// The exit code that a run's streams call for.
pub fn exit_for(manifest: &Manifest) -> Exit {
    match manifest.status {
        Status::Succeeded => Exit::Succeeded,
        Status::Partial => Exit::Partial,
        Status::Cancelled => Exit::Transient,
        Status::Failed => {
            let errors: Vec<_> = manifest
                .streams
                .iter()
                .filter_map(|stream| stream.error.as_ref())
                .collect();
            if errors.iter().any(|error| error.code == ErrorCode::AuthFailed.as_str()) {
                Exit::Auth
            } else if !errors.is_empty() && errors.iter().all(|error| error.retryable) {
                Exit::Transient
            } else {
                Exit::Failure
            }
        }
    }
}

/// Runs the extraction described by `loaded`.
pub async fn run(loaded: &LoadedConfig, options: RunOptions) -> Result<RunOutcome, RunError> {
    let config = Arc::new(loaded.config.clone());
    let run_id = match &options.run_id {
        Some(id) => uuid::Uuid::parse_str(id)
            .map_err(|_| RunError::InvalidRunId(id.clone()))?
            .to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let selected: Vec<_> = if options.streams.is_empty() {
        config.streams.clone()
    } else {
        let known = || {
            config
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        options
            .streams
            .iter()
            .map(|name| {
                config
                    .stream(name)
                    .cloned()
                    .ok_or_else(|| RunError::UnknownStream(name.clone(), known()))
            })
            .collect::<Result<_, _>>()?
    };
    let started = Utc::now();
    let extracted_date = started.format("%Y-%m-%d").to_string();
    let events = Events::new(&run_id, &config.source.name);
    let landing = Landing::open(&config.landing)?.with_events(events.clone());
    let mut client = HttpClient::new(&config.source, events.clone())?;
    if let Some(sleeper) = &options.sleeper {
        client = client.with_sleeper(sleeper.clone());
    }
    let state = StateStore::new(landing.clone(), &config.source.name);
    events.run_started(selected.len(), landing.url());
    clean_stale_uploads(
        &landing,
        &config.source.name,
        config.landing.stale_upload_after.0,
        &run_id,
    )
    .await;

    let mut reports = Vec::with_capacity(selected.len());
    for stream in selected {
        let job = stream::StreamJob {
            config: config.clone(),
            stream,
            client: client.clone(),
            landing: landing.clone(),
            state: state.clone(),
            events: events.clone(),
            run_id: run_id.clone(),
            extracted_date: extracted_date.clone(),
            window_start: options.start.clone(),
            window_end: options.end.clone(),
            full_refresh: options.full_refresh,
        };
        reports.push(job.run().await);
    }

    let finished = Utc::now();
    let mut manifest = Manifest {
        manifest_version: manifest::MANIFEST_VERSION,
        run_id: run_id.clone(),
        source_system: config.source.name.clone(),
        tenant: config.source.tenant.clone(),
        environment: config.source.environment.clone(),
        landing_url: landing.url().to_owned(),
        connector: Connector {
            name: "landfall".to_owned(),
            version: crate::VERSION.to_owned(),
            git_sha: crate::GIT_SHA.to_owned(),
        },
        config_sha256: loaded.config_sha256.clone(),
        started_at: crate::clock::rfc3339_micros(started),
        finished_at: crate::clock::rfc3339_micros(finished),
        duration_seconds: (finished - started).num_microseconds().unwrap_or_default() as f64 / 1e6,
        status: manifest::run_status(&reports),
        streams: reports,
    };
    let manifest_path = layout::manifest(&config.source.name, &extracted_date, &run_id);
    if let Err(error) = landing.put_new(&manifest_path, Bytes::from(manifest.to_line())).await {
        // Without its manifest the run is not committed: say so and fail.
        manifest.status = Status::Failed;
        return Err(RunError::Landing(error));
    }
    let manifest_url = landing.url_of(&manifest_path);
    events.manifest_written(&manifest_url, manifest.status.as_str());
    let exit = exit_for(&manifest);
    events.run_finished(
        manifest.status.as_str(),
        exit.code(),
        manifest.duration_seconds,
        &manifest_url,
    );
    Ok(RunOutcome {
        manifest,
        manifest_url,
        exit,
    })
}

/// Aborts the multipart uploads that killed runs left behind (they could not abort their
/// own). Best effort: a failure (a missing delete or abort permission, say) is logged and
/// left for the next run or the bucket's lifecycle rule; it never fails the run, which does
/// not need those permissions to land data.
async fn clean_stale_uploads(landing: &Landing, source: &str, older_than: std::time::Duration, run_id: &str) {
    if let Err(error) = crate::landing::upload::clean_stale(landing, source, older_than, run_id).await {
        landing.events().upload_aborted(
            &landing.url_of(&layout::staging_root(source)),
            "cleaning stale uploads failed",
            Some(&error.to_string()),
        );
    }
}
