//! A run: every selected stream extracted and landed, then the manifest written last as
//! the commit marker.

mod error;
mod report;
mod stream;
mod write;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use crate::source::parents::{self, ParentKey};
pub(crate) use crate::source::rest::interpolate;
pub use crate::source::windows;
pub use error::StreamError;

use crate::config::LoadedConfig;
use crate::error::{Classify, ErrorCode, ErrorRecord, Exit};
use crate::http::{ClientBuildError, HttpClient, Sleeper};
use crate::landing::{Landing, LandingError, layout};
use crate::observe::events::Events;
use crate::report::manifest::{self, Connector, Manifest, Status, StreamReport};
use crate::state::StateStore;
use crate::state::lease::{Lease, LeaseError, LeaseScope};

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
    /// Step `start` back by each stream's `incremental.lookback` (the DAG's interval mode).
    pub start_lookback: bool,
    /// The orchestrator's data interval, recorded in the manifest for audit only: it does
    /// not change what is read (`--data-interval-start` / `--data-interval-end`).
    pub data_interval: Option<manifest::DataInterval>,
    /// Ignore checkpoints and read from `incremental.start`.
    pub full_refresh: bool,
    /// Replaces the retry sleeper (tests).
    pub sleeper: Option<Arc<dyn Sleeper>>,
    /// Cancelled on SIGTERM / SIGINT: stop fetching, store what was read, write the
    /// manifest with status `cancelled`.
    pub cancel: CancellationToken,
    /// Take this share of the source's rate budget (`--rate-share N`: 1/N of
    /// `source.rate_limit`). Default: the whole budget.
    pub rate_share: Option<std::num::NonZeroU32>,
    /// How long a stream lease lives without renewal. Default: 5 minutes.
    pub lease_ttl: Option<Duration>,
    /// The longest the run may take (`--max-duration`); overrides
    /// `source.max_run_duration`. A wait that would pass it stops the stream as `partial`.
    pub max_duration: Option<std::time::Duration>,
    /// Live instrumentation the run's events feed (progress display, rate-limit waits).
    /// Default: counters only.
    pub telemetry: crate::observe::telemetry::Telemetry,
}

/// Default lease lifetime; renewed every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(300);

/// Errors that stop a run before any stream starts.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("unknown stream `{0}`; the config defines: {1}")]
    UnknownStream(String, String),
    #[error("--run-id `{0}` is not a UUID")]
    InvalidRunId(String),
    #[error(
        "run {run_id} already finished ({status}; manifest {manifest}): a run id is used once; \
         start a new run without --run-id (or with a new one)"
    )]
    RunIdUsed {
        run_id: String,
        status: String,
        manifest: String,
    },
    #[error("{option} cannot be used with stream `{stream}`: {source}")]
    Bound {
        option: &'static str,
        stream: String,
        source: crate::cursor::CursorError,
    },
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    #[error(transparent)]
    Landing(#[from] LandingError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

impl Classify for RunError {
    fn code(&self) -> ErrorCode {
        match self {
            RunError::Landing(error) => error.code(),
            RunError::Lease(error) => error.code(),
            _ => ErrorCode::ConfigError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            RunError::Landing(error) => error.retryable(),
            RunError::Lease(error) => error.retryable(),
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

/// The streams to run, in order: parents before their children; a selected child brings
/// its parent along, and a selected stream its `deletes` companion.
fn select_streams(
    config: &crate::config::ConnectorConfig,
    names: &[String],
) -> Result<Vec<crate::config::StreamConfig>, RunError> {
    let known = || {
        config
            .streams
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut wanted: Vec<&str> = Vec::new();
    if names.is_empty() {
        wanted.extend(config.streams.iter().map(|s| s.name.as_str()));
    } else {
        for name in names {
            let stream = config
                .stream(name)
                .ok_or_else(|| RunError::UnknownStream(name.clone(), known()))?;
            if let Some(parent) = &stream.parent {
                wanted.push(parent.stream.as_str());
            }
            wanted.push(stream.name.as_str());
            if let Some(companion) = config.streams.iter().find(|s| s.deletes_of.as_deref() == Some(name)) {
                wanted.push(companion.name.as_str());
            }
        }
    }
    let parents = config
        .streams
        .iter()
        .filter(|s| s.parent.is_none() && wanted.contains(&s.name.as_str()));
    let children = config
        .streams
        .iter()
        .filter(|s| s.parent.is_some() && wanted.contains(&s.name.as_str()));
    Ok(parents.chain(children).cloned().collect())
}

/// A stream's `--start` and `--end`, in its cursor type.
type StreamBounds = (Option<crate::cursor::Cursor>, Option<crate::cursor::Cursor>);

/// `--start` and `--end` in each selected stream's cursor type (nothing for a stream that
/// is not incremental). A bound a stream's format cannot carry stops the run before any
/// request: it would only earn a 4xx from the API.
fn window_bounds(
    selected: &[crate::config::StreamConfig],
    options: &RunOptions,
) -> Result<Vec<StreamBounds>, RunError> {
    selected
        .iter()
        .map(|stream| {
            let Some(incremental) = &stream.incremental else {
                return Ok((None, None));
            };
            let format = incremental.cursor_format();
            let parse = |option: &'static str, value: &Option<String>| {
                value
                    .as_deref()
                    .map(|text| format.parse(text))
                    .transpose()
                    .map_err(|source| RunError::Bound {
                        option,
                        stream: stream.name.clone(),
                        source,
                    })
            };
            Ok((parse("--start", &options.start)?, parse("--end", &options.end)?))
        })
        .collect()
}

fn not_started(stream: &crate::config::StreamConfig, status: Status) -> StreamReport {
    let error = crate::error::ErrorRecord {
        code: ErrorCode::Cancelled.as_str().to_owned(),
        message: "not started: the run was stopped first".to_owned(),
        retryable: true,
    };
    StreamReport::not_run(stream, status, error)
}

/// Runs the extraction described by `loaded`.
pub async fn run(loaded: &LoadedConfig, options: RunOptions) -> Result<RunOutcome, RunError> {
    let mut config = loaded.config.clone();
    if let Some(parts) = options.rate_share {
        config.source.rate_limit = config.source.rate_limit.share(parts);
    }
    let config = Arc::new(config);
    let run_id = match &options.run_id {
        Some(id) => uuid::Uuid::parse_str(id)
            .map_err(|_| RunError::InvalidRunId(id.clone()))?
            .to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let selected = select_streams(&config, &options.streams)?;
    let bounds = window_bounds(&selected, &options)?;
    let started = crate::clock::now();
    let extracted_date = started.format("%Y-%m-%d").to_string();
    let events = Events::new(&run_id, &config.source.name).with_telemetry(options.telemetry.clone());
    let landing = Landing::open(&config.landing)?.with_events(events.clone());
    // Pages past `source.spill_threshold` go to a temporary file; the stream reads their
    // records from there one at a time.
    let mut client =
        HttpClient::new(&config.source, events.clone())?.with_spill_threshold(config.source.spill_threshold.0);
    if let Some(sleeper) = &options.sleeper {
        client = client.with_sleeper(sleeper.clone());
    }
    if let Some(max_duration) = options
        .max_duration
        .or(config.source.max_run_duration.map(|duration| duration.0))
    {
        client = client.with_max_duration(max_duration);
    }
    let client = client.with_credential_store(Arc::new(crate::state::credentials::LandingCredentialStore::new(
        landing.clone(),
        &config.source.name,
    )));
    let state = StateStore::new(landing.clone(), &config.source.name);
    let manifest_path = layout::manifest(&config.source.name, &extracted_date, &run_id);
    // A reused run id: a finished run is never redone (its manifest is the commit marker);
    // a killed one is resumed, its parts kept and new parts numbered after them.
    let reused_run_id = options.run_id.is_some();
    if reused_run_id && let Some(existing) = landing.get(&manifest_path).await? {
        let status = serde_json::from_slice::<serde_json::Value>(&existing)
            .ok()
            .and_then(|manifest| manifest["status"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown status".to_owned());
        return Err(RunError::RunIdUsed {
            run_id,
            status,
            manifest: landing.url_of(&manifest_path),
        });
    }

    // Every stream's lease first: a run either owns all its streams or touches nothing. A
    // stream read from `--start` (a backfill) leases only its window, so windows of one
    // stream run side by side; any other stream leases the whole stream.
    let ttl = options.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
    let mut leases = Vec::with_capacity(selected.len());
    for (stream, (start, end)) in selected.iter().zip(&bounds) {
        let format = stream
            .incremental
            .as_ref()
            .map(|incremental| incremental.cursor_format());
        let rendered = |bound: &Option<crate::cursor::Cursor>| {
            format
                .as_ref()
                .zip(bound.as_ref())
                .map(|(format, bound)| format.render(bound))
        };
        let (start, end) = (rendered(start), rendered(end));
        let scope = match &start {
            Some(start) => LeaseScope::Window {
                start,
                end: end.as_deref(),
            },
            None => LeaseScope::Stream,
        };
        match Lease::acquire(
            &state,
            &stream.name,
            scope,
            &run_id,
            ttl,
            &events,
            options.cancel.clone(),
        )
        .await
        {
            Ok(lease) => leases.push(lease),
            Err(error) => {
                for lease in leases {
                    lease.release().await;
                }
                return Err(error.into());
            }
        }
    }
    events.run_started(selected.len(), landing.url());
    clean_stale_uploads(
        &landing,
        &config.source.name,
        config.landing.stale_upload_after.0,
        &run_id,
    )
    .await;

    let children_fields: HashMap<&str, Vec<String>> =
        selected
            .iter()
            .filter_map(|stream| stream.parent.as_ref())
            .fold(HashMap::new(), |mut fields, parent| {
                fields
                    .entry(parent.stream.as_str())
                    .or_insert_with(Vec::new)
                    .extend(parent.fields.iter().cloned());
                fields
            });
    let reports = run_streams(
        &selected,
        bounds,
        &leases,
        &children_fields,
        StreamContext {
            config: config.clone(),
            client,
            landing: landing.clone(),
            state,
            reused_run_id,
            events: events.clone(),
            run_id: run_id.clone(),
            extracted_date,
            options: &options,
        },
    )
    .await;

    let finished = crate::clock::now();
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
        started_at: started,
        finished_at: finished,
        duration_seconds: (finished - started).num_microseconds().unwrap_or_default() as f64 / 1e6,
        status: manifest::run_status(&reports),
        data_interval: options.data_interval.clone(),
        streams: reports,
    };
    // Through the redaction layer like every log line: no registered secret is stored.
    let line = crate::redact::scrub(&String::from_utf8(manifest.to_line()).expect("JSON is UTF-8")).into_owned();
    let written = landing.put_new(&manifest_path, Bytes::from(line)).await;
    for lease in leases {
        lease.release().await;
    }
    if let Err(error) = written {
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

/// What every stream job of a run shares.
struct StreamContext<'a> {
    config: Arc<crate::config::ConnectorConfig>,
    client: HttpClient,
    landing: Landing,
    state: StateStore,
    reused_run_id: bool,
    events: Events,
    run_id: String,
    extracted_date: String,
    options: &'a RunOptions,
}

/// Extracts the selected streams, at most `source.max_concurrent_streams` at once, all
/// through the one client (one rate limiter, circuit breaker and token cache: the source's
/// budget is shared, never multiplied). A child starts only after its parent finished,
/// since it iterates over the parent's keys; the parent is extracted once. The reports
/// come back in the order of `selected`, however the streams interleaved.
async fn run_streams(
    selected: &[crate::config::StreamConfig],
    bounds: Vec<StreamBounds>,
    leases: &[Lease],
    children_fields: &HashMap<&str, Vec<String>>,
    context: StreamContext<'_>,
) -> Vec<StreamReport> {
    // A database stream holds one connection while it runs: `pool_size` caps them.
    let source = &context.config.source;
    let max_concurrent = source
        .max_concurrent_streams
        .min(source.pool_size.unwrap_or(source.max_concurrent_streams))
        .get() as usize;
    let mut pending: VecDeque<(usize, StreamBounds)> = bounds.into_iter().enumerate().collect();
    let mut reports: Vec<Option<StreamReport>> = vec![None; selected.len()];
    let mut parent_keys: HashMap<String, parents::ParentKeys> = HashMap::new();
    let mut finished: HashSet<&str> = HashSet::new();
    let mut family = Family::new(selected);
    let mut running = tokio::task::JoinSet::new();
    loop {
        if context.options.cancel.is_cancelled() {
            for (index, _) in pending.drain(..) {
                reports[index] = Some(not_started(&selected[index], Status::Cancelled));
            }
        }
        while running.len() < max_concurrent {
            // A parent outside the selection cannot hold a child back (select_streams always
            // brings it along; this only keeps the loop from waiting forever).
            let ready = pending.iter().position(|(index, _)| {
                selected[*index].parent.as_ref().is_none_or(|parent| {
                    finished.contains(parent.stream.as_str())
                        || !selected.iter().any(|stream| stream.name == parent.stream)
                })
            });
            let Some((index, (window_start, window_end))) = ready.and_then(|position| pending.remove(position)) else {
                break;
            };
            let stream = selected[index].clone();
            let parents = stream
                .parent
                .as_ref()
                .map(|parent| parent_keys.get(&parent.stream).cloned().unwrap_or_default());
            let job = stream::StreamJob {
                config: context.config.clone(),
                collect_parent_fields: children_fields.get(stream.name.as_str()).cloned(),
                stream,
                client: context.client.clone(),
                landing: context.landing.clone(),
                state: context.state.clone(),
                fence: leases[index].fence(),
                reused_run_id: context.reused_run_id,
                events: context.events.clone(),
                run_id: context.run_id.clone(),
                extracted_date: context.extracted_date.clone(),
                window_start,
                window_end,
                start_lookback: context.options.start_lookback,
                full_refresh: context.options.full_refresh,
                cancel: context.options.cancel.clone(),
                parents,
                defer_checkpoint: children_fields.contains_key(selected[index].name.as_str()),
            };
            let events = context.events.clone();
            running.spawn(
                async move {
                    let name = job.stream.name.clone();
                    let stream_started = std::time::Instant::now();
                    let mut outcome = job.run().await;
                    outcome.report.duration_seconds = stream_started.elapsed().as_secs_f64();
                    outcome.report.rate_limit_waits_seconds = events.telemetry().rate_limit_wait_seconds(&name);
                    (index, outcome)
                }
                .in_current_span(),
            );
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (index, outcome) = match joined {
            Ok(done) => done,
            // A panic stays a crash, as when streams ran inline.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        let name = selected[index].name.as_str();
        if children_fields.contains_key(name) {
            parent_keys.insert(name.to_owned(), outcome.parent_keys);
        }
        finished.insert(name);
        reports[index] = Some(outcome.report);
        family.finished(index, outcome.deferred);
        family.settle(&mut reports, &context.events).await;
    }
    family.hold_unsettled(&context.events);
    reports
        .into_iter()
        .zip(selected)
        .map(|(report, stream)| report.unwrap_or_else(|| not_started(stream, Status::Cancelled)))
        .collect()
}

/// Parent and child streams of one run, for the parents' checkpoints: a parent's
/// checkpoint is committed only once every child (and theirs, down the tree) succeeded
/// ([`stream::DeferredCheckpoint`]); otherwise it stays where it was, so the next run reads
/// those parents again and their children are fetched for all of them.
struct Family {
    /// The selected streams' children, by index.
    children: Vec<Vec<usize>>,
    /// The held checkpoints of parents that finished.
    deferred: HashMap<usize, stream::DeferredCheckpoint>,
    /// Streams that finished and are not settled yet.
    waiting: Vec<usize>,
    /// Settled streams: whether the stream and everything below it succeeded.
    settled: HashMap<usize, bool>,
    names: Vec<String>,
}

impl Family {
    fn new(selected: &[crate::config::StreamConfig]) -> Self {
        let children = selected
            .iter()
            .map(|parent| {
                selected
                    .iter()
                    .enumerate()
                    .filter(|(_, child)| child.parent.as_ref().is_some_and(|of| of.stream == parent.name))
                    .map(|(index, _)| index)
                    .collect()
            })
            .collect();
        Self {
            children,
            deferred: HashMap::new(),
            waiting: Vec::new(),
            settled: HashMap::new(),
            names: selected.iter().map(|stream| stream.name.clone()).collect(),
        }
    }

    fn finished(&mut self, index: usize, deferred: Option<stream::DeferredCheckpoint>) {
        if let Some(deferred) = deferred {
            self.deferred.insert(index, deferred);
        }
        self.waiting.push(index);
    }

    /// Settles every finished stream whose children are all settled, committing or
    /// holding its checkpoint; repeats, since settling a child may settle its parent.
    async fn settle(&mut self, reports: &mut [Option<StreamReport>], events: &Events) {
        loop {
            let Some(position) = self.waiting.iter().position(|index| {
                self.children[*index]
                    .iter()
                    .all(|child| self.settled.contains_key(child))
            }) else {
                return;
            };
            let index = self.waiting.remove(position);
            let failed_child = self.children[index]
                .iter()
                .find(|child| !self.settled[*child])
                .map(|child| self.names[*child].clone());
            let report = reports[index].as_mut().expect("a finished stream has its report");
            let mut ok = report.status == Status::Succeeded && failed_child.is_none();
            if let Some(deferred) = self.deferred.remove(&index) {
                match &failed_child {
                    Some(child) => events.parent_checkpoint_held(
                        &self.names[index],
                        &deferred.cursor(),
                        report.cursor_end.as_deref(),
                        child,
                    ),
                    None => match deferred.commit().await {
                        Ok(cursor) => report.cursor_end = cursor,
                        Err(error) => {
                            let error = StreamError::State(error);
                            let record = ErrorRecord::from_error(&error);
                            events.stream_failed(&self.names[index], error.stage(), &record);
                            report.status = Status::Failed;
                            report.error = Some(record);
                            ok = false;
                        }
                    },
                }
            }
            self.settled.insert(index, ok);
        }
    }

    /// At the end of the run: the parents still waiting (a child was cancelled before it
    /// started) keep their checkpoints.
    fn hold_unsettled(&mut self, events: &Events) {
        for (index, deferred) in self.deferred.drain() {
            let child = self.children[index]
                .iter()
                .find(|child| !self.settled.get(*child).copied().unwrap_or(false))
                .map_or("", |child| self.names[*child].as_str());
            events.parent_checkpoint_held(&self.names[index], &deferred.cursor(), None, child);
        }
    }
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
