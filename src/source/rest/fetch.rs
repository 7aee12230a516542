//! One stream's extraction: a fetcher that pages through the API window by window (and
//! parent by parent for child streams), and a writer that lands the records, joined by a
//! bounded channel so fetching and writing overlap while memory stays flat.
//!
//! The checkpoint moves only after the part holding its records is stored: after every
//! part for sorted streams, after every completed window otherwise.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::source::dead_body::DeadBody;
use crate::source::parents::{ParentKey, ParentKeys, ParentKeysWriter};
use crate::extract::prefetch::Prefetcher;
use crate::extract::request::{self, Bounds, RequestBuilder};
use crate::source::windows::{self, Window};
use crate::config::{ConnectorConfig, ParentConfig, StreamConfig};
use crate::envelope::{self, EnvelopeTemplate, PageFields, RecordFields};
use crate::error::{Classify, ErrorCode, ErrorRecord};
use crate::http::{HttpClient, HttpError, RequestContext, Response, SpilledBody};
use crate::landing::part::{PartDirs, PartLimits, PartWriter, StoredPart};
use crate::landing::{Landing, LandingError, layout};
use crate::observe::events::Events;
use crate::pagination::{PageToken, PageView, PaginationError, Paginator, RecordsDigest};
use crate::quality::dedupe::RunDeduper;
use crate::quality::drift::{self, SchemaChange, SchemaTracker};
use crate::quality::pii::Redactor;
use crate::quality::validate::{RecordValidator, ValidatorError, Violation};
use crate::records;
use crate::report::manifest::{Status, StreamReport};
use crate::state::cursor::{self, Cursor, CursorError, CursorFormat};
use crate::state::{Fence, MAX_RECENT, SeenRecord, StateError, StateStore, Versioned, Written};

/// Pages buffered between fetcher and writer.
const PAGE_BUFFER: usize = 4;

/// The records of a spilled page go to the writer in pieces of about this many bytes.
const SPILLED_PIECE: usize = 1 << 20;

/// Why a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
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
    #[error(transparent)]
    Landing(#[from] LandingError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "the checkpoint {path} cannot be used: {source}; it is not sent to the API: correct it \
         with `landfall state set` or `landfall state reset`"
    )]
    Checkpoint { path: String, source: CursorError },
    #[error("invalid stream URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("stopped by a termination signal; what was read is stored")]
    Cancelled,
    #[error(transparent)]
    Validator(#[from] ValidatorError),
    #[error(
        "{dead} of {read} records ({ratio:.4}) went to dead letters, above max_dead_letter_ratio {max}; \
         see the stream's _dead_letter/ folder"
    )]
    DeadLetterRatio { dead: u64, read: u64, ratio: f64, max: f64 },
    #[error("breaking schema drift with on_breaking_drift: fail: {0}")]
    SchemaDrift(String),
    #[error("fetcher task failed: {0}")]
    Task(String),
    /// A page spilled to a temporary file could not be read back (a local disk error).
    #[error("page {page}: reading its body back from a temporary file under {dir} failed: {message}")]
    Spill { page: u64, dir: String, message: String },
    /// The parent records kept for the children in a temporary file could not be written or
    /// read (a local disk error).
    #[error("the parent records kept for child streams in a temporary file under {dir}: {message}")]
    ParentKeys { dir: String, message: String },
}

impl StreamError {
    /// Whether the stream stopped cleanly at its last checkpoint (status `partial`) rather
    /// than failed: a rate-limit wait would have passed the run's deadline.
    pub fn stops_cleanly(&self) -> bool {
        matches!(self, StreamError::Http(error) if error.stops_cleanly())
    }

    /// The stage the stream failed in.
    pub fn stage(&self) -> &'static str {
        match self {
            StreamError::Http(_)
            | StreamError::Url(_)
            | StreamError::Cancelled
            | StreamError::Task(_)
            | StreamError::Spill { .. }
            | StreamError::ParentKeys { .. } => "fetch",
            StreamError::Records { .. } => "parse",
            StreamError::Pagination(_) => "paginate",
            StreamError::Landing(_) => "store",
            StreamError::State(_) | StreamError::Checkpoint { .. } => "checkpoint",
            StreamError::Validator(_) => "plan",
            StreamError::DeadLetterRatio { .. } | StreamError::SchemaDrift(_) => "validate",
        }
    }
}

impl Classify for StreamError {
    fn code(&self) -> ErrorCode {
        match self {
            StreamError::Http(error) => error.code(),
            StreamError::Records { .. } => ErrorCode::ParsingError,
            StreamError::Pagination(error) => error.code(),
            StreamError::Landing(error) => error.code(),
            StreamError::State(error) => error.code(),
            StreamError::Checkpoint { .. } | StreamError::Url(_) | StreamError::Validator(_) => ErrorCode::ConfigError,
            StreamError::Cancelled => ErrorCode::Cancelled,
            StreamError::DeadLetterRatio { .. } | StreamError::SchemaDrift(_) => ErrorCode::ValidationError,
            StreamError::Task(_) => ErrorCode::Unsupported,
            StreamError::Spill { .. } | StreamError::ParentKeys { .. } => ErrorCode::StorageError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            StreamError::Http(error) => error.retryable(),
            StreamError::Records { source, .. } => source.retryable(),
            StreamError::Cancelled | StreamError::Spill { .. } | StreamError::ParentKeys { .. } => true,
            StreamError::Pagination(error) => error.retryable(),
            StreamError::Landing(error) => error.retryable(),
            StreamError::State(error) => error.retryable(),
            StreamError::Checkpoint { .. }
            | StreamError::Url(_)
            | StreamError::Task(_)
            | StreamError::Validator(_)
            | StreamError::DeadLetterRatio { .. }
            | StreamError::SchemaDrift(_) => false,
        }
    }
}

/// What a stream's run produced.
pub struct StreamOutcome {
    pub report: StreamReport,
    /// The records a child stream iterates over (only when `collect_parent_fields` was set).
    pub parent_keys: ParentKeys,
    /// The checkpoint a parent stream held back for its children ([`StreamJob::defer_checkpoint`]).
    pub deferred: Option<DeferredCheckpoint>,
}

/// A parent stream's checkpoint, held back until every child stream of the run succeeded:
/// the children fetch what belongs to the parent records this run landed, so a parent
/// checkpoint committed before them would, if a child then failed (or the run was killed),
/// move past parents whose children were never fetched, and the next run would not read
/// those parents again. Held, the next run reads them again (duplicates are absorbed
/// downstream) and the children get every parent.
pub struct DeferredCheckpoint {
    job: StreamJob,
    checkpoint: Checkpoint,
    cursor: Cursor,
}

impl DeferredCheckpoint {
    /// The checkpoint held back, in the stream's format.
    pub fn cursor(&self) -> String {
        self.checkpoint.format.render(&self.cursor)
    }

    /// Commits the checkpoint (fenced by the stream's lease, as every checkpoint write);
    /// returns the stream's checkpoint after the write, in its format.
    pub async fn commit(mut self) -> Result<Option<String>, StateError> {
        self.job.defer_checkpoint = false;
        self.job.commit(&mut self.checkpoint, &self.cursor).await?;
        let format = &self.checkpoint.format;
        Ok(self.checkpoint.committed.as_ref().map(|cursor| format.render(cursor)))
    }
}

/// Everything a stream's extraction needs.
#[derive(Clone)]
pub struct StreamJob {
    pub config: Arc<ConnectorConfig>,
    pub stream: StreamConfig,
    pub client: HttpClient,
    pub landing: Landing,
    pub state: StateStore,
    /// The stream's lease, confirmed before every checkpoint write.
    pub fence: Arc<dyn Fence>,
    /// The run id was given (`--run-id`) and may be a killed run's: parts already in the
    /// run's folders are kept and new ones numbered after them.
    pub reused_run_id: bool,
    pub events: Events,
    pub run_id: String,
    pub extracted_date: String,
    /// Explicit window from `--start` / `--end`, in the stream's cursor type.
    pub window_start: Option<Cursor>,
    pub window_end: Option<Cursor>,
    /// Step `window_start` back by `incremental.lookback` (`--start-lookback`).
    pub start_lookback: bool,
    pub full_refresh: bool,
    pub cancel: CancellationToken,
    /// The parent records of a child stream.
    pub parents: Option<ParentKeys>,
    /// Set on a parent stream: the fields its children need.
    pub collect_parent_fields: Option<Vec<String>>,
    /// Set on a parent stream whose children run in this run: the checkpoint is not
    /// written but returned ([`StreamOutcome::deferred`]) and committed by the run once every
    /// child succeeded.
    pub defer_checkpoint: bool,
}

/// One run through a stream's pages: a request builder, its bounds, the parent it belongs
/// to, and the window records are filtered to (with `client_side_filter`).
struct PageSequence<'a> {
    builder: &'a RequestBuilder,
    bounds: &'a Bounds,
    parent: Option<&'a ParentKey>,
    filter: Option<&'a Window>,
    /// Fetches pages ahead (offset and page-number pagination with concurrency > 1).
    prefetch: Option<&'a mut Prefetcher<Result<Response, HttpError>>>,
}

enum Item {
    Page(FetchedPage),
    WindowDone(Window),
    /// A response that never parsed, after retries: its body goes to the dead letters.
    DeadPage(DeadPage),
}

struct DeadPage {
    number: u64,
    endpoint: String,
    extracted_at: String,
    body: DeadBody,
    error: Violation,
}

/// A fetched page on its way to the writer.
struct FetchedPage {
    number: u64,
    endpoint: String,
    extracted_at: String,
    body: Bytes,
    records: Vec<RecordMeta>,
    parent_key: Option<String>,
}

/// How a page's records were read.
enum Parsed {
    /// From the body in memory.
    InMemory(Vec<RecordMeta>),
    /// To be read from the body's temporary file, piece by piece.
    Spilled(SpilledPage),
}

/// A page whose body is in a temporary file and whose records array was found there.
struct SpilledPage {
    file: std::fs::File,
    len: u64,
    layout: records::spilled::Layout,
    digest: Option<u64>,
}

/// What opening a spilled body gave.
enum Opened {
    Served(SpilledPage),
    /// The body, read back into memory: the file reader does not serve it
    /// ([`records::spilled`]).
    InMemory(Bytes),
    /// A body that is not one JSON value, found so from its file: never read into memory.
    Invalid {
        body: DeadBody,
        error: records::RecordsError,
    },
}

/// Whether the records of a spilled page of `stream` may be read from the file: the page's
/// other lookups (pagination's pointers) must not reach into the records array, which the
/// skeleton document they run against holds empty.
fn spill_serves(stream: &StreamConfig) -> bool {
    let records_path = stream.records_path.as_str();
    let inside = format!("{records_path}/");
    !stream
        .pagination
        .body_pointers()
        .iter()
        .any(|pointer| *pointer == records_path || pointer.starts_with(&inside))
}

struct RecordMeta {
    range: Range<usize>,
    id: Option<String>,
    /// The cursor as the record holds it.
    cursor: Option<String>,
    /// The cursor parsed in the stream's format (`None` when it does not parse).
    cursor_value: Option<Cursor>,
    parent: Option<ParentKey>,
    /// Set when the record fails validation: it goes to the dead letters.
    violation: Option<Violation>,
}

#[derive(Default)]
struct FetchStats {
    pages: u64,
    requests: u64,
    retries: u64,
    rows_read: u64,
    filtered_rows: u64,
    endpoint: String,
    schema: SchemaTracker,
}

#[derive(Default)]
struct WriteStats {
    files: Vec<StoredPart>,
    dead_letter_files: Vec<StoredPart>,
    dead_letter_rows: u64,
    rows_written: u64,
    duplicate_rows: u64,
    /// Largest cursor among stored records.
    stored_cursor: Option<Cursor>,
    parent_keys: ParentKeysWriter,
    /// Stored records whose cursor value does not parse in the stream's format, and the
    /// first such value.
    cursor_unparseable_rows: u64,
    cursor_unparseable_example: Option<String>,
}

/// Where the writer stands on checkpoints.
struct Checkpoint {
    /// The stream's cursor format.
    format: CursorFormat,
    /// The checkpoint when the run started.
    at_start: Option<Cursor>,
    /// Stored records remembered by the checkpoint the run started from.
    known: HashMap<(String, String), String>,
    /// The last committed checkpoint.
    committed: Option<Cursor>,
    /// The checkpoint object as last read or written: what the next write is conditional on.
    stored: Option<Versioned>,
    /// Where this run's reading began (its first window's lower bound).
    start: Option<Cursor>,
    /// `incremental.start`.
    origin: Option<Cursor>,
    /// Whether what this run stores joins the checkpoint: its reading began at or before
    /// the checkpoint (or, without one, at or before `incremental.start`), so it continues
    /// what was read before without a gap. Checked again after every checkpoint write,
    /// since other runs move the checkpoint too. A run that does not join (a backfill of a
    /// later window) records each completed window as a range the checkpoint moves over
    /// once it reaches the range ([`StateStore::advance`]).
    joined: bool,
    /// The last records of the open part (at most [`MAX_RECENT`]), remembered once it is
    /// stored.
    open: VecDeque<SeenRecord>,
    /// Stored records near the top of the cursor range.
    tail: VecDeque<SeenRecord>,
    open_cursor: Option<Cursor>,
    /// The checkpoint this run would have written, held back for the children
    /// ([`StreamJob::defer_checkpoint`]).
    deferred: Option<Cursor>,
}

impl StreamJob {
    fn incremental_sorted(&self) -> bool {
        // A child stream's records arrive parent by parent, never in global cursor order.
        self.stream
            .incremental
            .as_ref()
            .is_some_and(|incremental| incremental.sorted)
            && self.stream.parent.is_none()
    }

    /// Runs the stream to completion, failure or cancellation and reports what happened.
    pub async fn run(self) -> StreamOutcome {
        let incremental = self.stream.incremental.clone();
        let format = incremental
            .as_ref()
            .map(|incremental| incremental.cursor_format())
            .unwrap_or(CursorFormat::Text);
        let state = match &incremental {
            Some(_) => match self.state.load_versioned(&self.stream.name).await {
                Ok(state) => state,
                Err(error) => return self.failed_before_start(StreamError::State(error)),
            },
            None => None,
        };
        // A stored cursor that is not of the stream's type never reaches a request.
        let checkpoint = match state.as_ref().and_then(|stored| stored.state.cursor.as_deref()) {
            Some(text) => match format.parse(text) {
                Ok(cursor) => Some(cursor),
                Err(source) => {
                    let path = self
                        .landing
                        .url_of(&layout::state(&self.config.source.name, &self.stream.name));
                    return self.failed_before_start(StreamError::Checkpoint { path, source });
                }
            },
            None => None,
        };
        let configured_start = incremental.as_ref().map(|incremental| {
            format
                .parse(&incremental.start)
                .unwrap_or(Cursor::Text(incremental.start.clone()))
        });
        let cursor_start = incremental
            .as_ref()
            .zip(configured_start.as_ref())
            .map(|(incremental, start)| {
                windows::lower_bound(
                    incremental,
                    &format,
                    self.window_start.as_ref(),
                    self.start_lookback,
                    checkpoint.as_ref(),
                    self.full_refresh,
                    start,
                )
            });
        let planned = match (&incremental, &cursor_start) {
            (Some(incremental), Some(lower)) => windows::plan(
                incremental,
                &format,
                lower,
                self.window_end.as_ref(),
                chrono::Utc::now(),
            ),
            _ => vec![Window {
                lower: None,
                upper: None,
            }],
        };
        // The run joins what was read before when it starts at or before the checkpoint, or
        // at or before the configured start (nothing before it is wanted).
        let may_advance = match &cursor_start {
            Some(lower) => {
                configured_start.as_ref().is_some_and(|start| lower <= start)
                    || checkpoint.as_ref().is_some_and(|reached| lower <= reached)
            }
            None => true,
        };
        let cursor_start_text = cursor_start.as_ref().map(|cursor| format.render(cursor));
        if let Some(window_end) = &self.window_end
            && incremental
                .as_ref()
                .is_some_and(|incremental| incremental.end_param.is_none() && !incremental.client_side_filter)
        {
            self.events
                .window_end_ignored(&self.stream.name, &format.render(window_end));
        }
        if !may_advance {
            self.events.checkpoint_held(
                &self.stream.name,
                cursor_start_text.as_deref().unwrap_or_default(),
                checkpoint.as_ref().map(|cursor| format.render(cursor)).as_deref(),
            );
        }
        self.events
            .stream_started(&self.stream.name, self.stream.sync_mode(), cursor_start_text.as_deref());

        let builder = match RequestBuilder::new(&self.config, &self.stream) {
            Ok(builder) => builder,
            Err(error) => return self.failed_before_start(StreamError::Url(error)),
        };
        let endpoint = request::endpoint(self.stream.method, builder.base_url());
        let validator = match RecordValidator::new(&self.stream) {
            Ok(validator) => Arc::new(validator),
            Err(error) => return self.failed_before_start(error.into()),
        };
        let (sender, receiver) = mpsc::channel(PAGE_BUFFER);
        let fetcher = tokio::spawn(self.clone().fetch(planned, sender, validator));
        let mut checkpoint_state = Checkpoint {
            format: format.clone(),
            at_start: if self.full_refresh { None } else { checkpoint.clone() },
            known: state
                .as_ref()
                .map(|stored| {
                    stored
                        .state
                        .recent
                        .clone()
                        .into_iter()
                        .map(|seen| ((seen.id, seen.cursor), seen.sha256))
                        .collect()
                })
                .unwrap_or_default(),
            committed: checkpoint.clone(),
            stored: state,
            start: cursor_start.clone(),
            origin: configured_start.clone(),
            joined: may_advance,
            open: VecDeque::new(),
            tail: VecDeque::new(),
            open_cursor: None,
            deferred: None,
        };
        let (write_stats, write_error) = self.write(receiver, &mut checkpoint_state).await;
        let (fetch_stats, fetch_error) = match fetcher.await {
            Ok(result) => result,
            Err(join_error) => (FetchStats::default(), Some(StreamError::Task(join_error.to_string()))),
        };
        // A writer failure explains a fetcher stopped by the closed channel, so it wins.
        let mut error = write_error.or(fetch_error);
        let mut schema_changes = Vec::new();
        if error.is_none() {
            error = self
                .check_dead_letter_ratio(fetch_stats.rows_read, write_stats.dead_letter_rows)
                .err();
        }
        if error.is_none() {
            match self.schema_drift(&fetch_stats.schema).await {
                Ok((changes, drift_error)) => {
                    schema_changes = changes;
                    error = drift_error;
                }
                Err(state_error) => error = Some(state_error.into()),
            }
        }
        let report = StreamReport {
            name: self.stream.name.clone(),
            sync_mode: self.stream.sync_mode().to_owned(),
            endpoint: if fetch_stats.endpoint.is_empty() {
                endpoint
            } else {
                fetch_stats.endpoint.clone()
            },
            cursor_start: cursor_start_text,
            cursor_end: checkpoint_state.committed.as_ref().map(|cursor| format.render(cursor)),
            pages: fetch_stats.pages,
            requests: fetch_stats.requests,
            retries: fetch_stats.retries,
            rows_read: fetch_stats.rows_read,
            rows_written: write_stats.rows_written,
            duplicate_rows: write_stats.duplicate_rows,
            filtered_rows: fetch_stats.filtered_rows,
            dead_letter_rows: write_stats.dead_letter_rows,
            bytes_written: write_stats.files.iter().map(|file| file.bytes).sum(),
            lag_seconds: write_stats
                .stored_cursor
                .as_ref()
                .and_then(|cursor| cursor.lag_seconds(chrono::Utc::now())),
            status: match &error {
                None => Status::Succeeded,
                Some(StreamError::Cancelled) => Status::Cancelled,
                Some(error) if error.stops_cleanly() => Status::Partial,
                Some(_) => Status::Failed,
            },
            error: error.as_ref().map(ErrorRecord::from_error),
            files: write_stats.files,
            dead_letter_files: write_stats.dead_letter_files,
            schema_changes,
            duration_seconds: 0.0,
            rate_limit_waits_seconds: 0.0,
        };
        if let (Some(incremental), Some(example)) = (
            self.stream.incremental.as_ref(),
            write_stats.cursor_unparseable_example.as_deref(),
        ) {
            self.events.cursor_unparseable(
                &self.stream.name,
                &incremental.cursor_field,
                &incremental.cursor_format().to_string(),
                write_stats.cursor_unparseable_rows,
                example,
            );
        }
        match (&error, &report.error) {
            (Some(error), Some(record)) if !error.stops_cleanly() => {
                self.events.stream_failed(&self.stream.name, error.stage(), record)
            }
            _ => self.events.stream_finished(
                &self.stream.name,
                report.status.as_str(),
                report.rows_written,
                report.pages,
                report.cursor_end.as_deref(),
            ),
        }
        let deferred = checkpoint_state.deferred.take().map(|cursor| DeferredCheckpoint {
            job: self.clone(),
            checkpoint: checkpoint_state,
            cursor,
        });
        StreamOutcome {
            report,
            parent_keys: write_stats.parent_keys.finish(),
            deferred,
        }
    }

    fn failed_before_start(&self, error: StreamError) -> StreamOutcome {
        let record = ErrorRecord::from_error(&error);
        self.events.stream_failed(&self.stream.name, error.stage(), &record);
        let status = if matches!(error, StreamError::Cancelled) {
            Status::Cancelled
        } else {
            Status::Failed
        };
        StreamOutcome {
            report: StreamReport::not_run(&self.stream, status, record),
            parent_keys: ParentKeys::default(),
            deferred: None,
        }
    }

    /// The request builder of the stream, or of one parent record's requests.
    fn builder(&self, parent: Option<&ParentKey>) -> Result<RequestBuilder, url::ParseError> {
        match parent {
            None => RequestBuilder::new(&self.config, &self.stream),
            Some(parent) => RequestBuilder::new(&self.config, &interpolate(&self.stream, &parent.values)),
        }
    }

    /// The parent records to page through (read from the parent's file, one at a time), or
    /// one pass without a parent.
    fn passes(&self) -> Box<dyn Iterator<Item = std::io::Result<Option<ParentKey>>> + Send> {
        match &self.parents {
            None => Box::new(std::iter::once(Ok(None))),
            Some(parents) => Box::new(parents.iter().map(|parent| parent.map(Some))),
        }
    }

    async fn fetch(
        self,
        planned: Vec<Window>,
        sender: mpsc::Sender<Item>,
        validator: Arc<RecordValidator>,
    ) -> (FetchStats, Option<StreamError>) {
        let mut stats = FetchStats::default();
        // A stream whose URL does not parse fails before its first request.
        if self.parents.is_none()
            && let Err(error) = self.builder(None)
        {
            return (stats, Some(error.into()));
        }
        let incremental = self.stream.incremental.clone();
        let format = incremental
            .as_ref()
            .map(|incremental| incremental.cursor_format())
            .unwrap_or(CursorFormat::Text);
        for window in planned {
            // Every bound reaches the request in the stream's cursor format.
            let bounds = Bounds {
                lower: incremental
                    .as_ref()
                    .zip(window.lower.as_ref())
                    .map(|(incremental, value)| (incremental.param.clone(), format.render(value))),
                upper: incremental.as_ref().and_then(|incremental| {
                    Some((incremental.end_param.clone()?, format.render(window.upper.as_ref()?)))
                }),
            };
            let filter = incremental
                .as_ref()
                .is_some_and(|incremental| incremental.client_side_filter);
            for parent in self.passes() {
                let parent = match parent {
                    Ok(parent) => parent,
                    Err(error) => return (stats, Some(parent_keys_error(&error))),
                };
                let builder = match self.builder(parent.as_ref()) {
                    Ok(builder) => builder,
                    Err(error) => return (stats, Some(error.into())),
                };
                let builder = &builder;
                let filter = filter.then_some(&window);
                let mut prefetch = Prefetcher::new(&self.stream.pagination, self.config.source.rate_limit.concurrency);
                let fetched = self
                    .fetch_pages(
                        PageSequence {
                            builder,
                            bounds: &bounds,
                            parent: parent.as_ref(),
                            filter,
                            prefetch: prefetch.as_mut(),
                        },
                        &sender,
                        &validator,
                        &mut stats,
                    )
                    .await;
                if let Some(prefetch) = prefetch {
                    let discarded = prefetch.finish();
                    stats.requests += discarded.requests;
                    stats.retries += discarded.retries;
                }
                if let Err(error) = fetched {
                    return (stats, error);
                }
            }
            if sender.send(Item::WindowDone(window)).await.is_err() {
                return (stats, None);
            }
        }
        (stats, None)
    }

    /// Pages through one request sequence. `Err(None)` means the writer went away.
    async fn fetch_pages(
        &self,
        sequence: PageSequence<'_>,
        sender: &mpsc::Sender<Item>,
        validator: &RecordValidator,
        stats: &mut FetchStats,
    ) -> Result<(), Option<StreamError>> {
        let PageSequence {
            builder,
            bounds,
            parent,
            filter,
            mut prefetch,
        } = sequence;
        if stats.endpoint.is_empty() {
            stats.endpoint = request::endpoint(self.stream.method, builder.base_url());
        }
        let mut paginator = Paginator::new(&self.stream.pagination, builder.base_url());
        let mut token = paginator.first();
        let cursor = self
            .stream
            .incremental
            .as_ref()
            .map(|incremental| (incremental.cursor_field.clone(), incremental.cursor_format()));
        let record_reader = RecordReader::new(
            &self.stream,
            cursor.as_ref().map(|(field, format)| (field.as_str(), format)),
            self.collect_parent_fields.as_deref(),
            validator,
        );
        loop {
            if self.cancel.is_cancelled() {
                return Err(Some(StreamError::Cancelled));
            }
            let number = stats.pages + 1;
            let spec = builder.build(&token, bounds);
            let endpoint = request::endpoint(spec.method, &spec.url);
            let context = RequestContext {
                stream: &self.stream.name,
                page: number,
            };
            // A body that does not parse may be truncated: fetch the page again, as the
            // retry policy allows, before giving up on it.
            let mut parse_attempt = 1;
            let (response, parsed, next) = loop {
                let send = async {
                    match prefetch.as_deref_mut().filter(|_| parse_attempt == 1) {
                        Some(prefetch) => {
                            let launch =
                                |token: &PageToken, ahead: u64| self.send_page(builder, bounds, token, number + ahead);
                            prefetch.next(&token, launch).await
                        }
                        None => self.client.send(&spec, context).await,
                    }
                };
                let response = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Err(Some(StreamError::Cancelled)),
                    response = send.instrument(crate::observe::telemetry::fetch_span(&self.stream.name, number)) => response,
                };
                let response = match response {
                    Ok(response) => response,
                    Err(error) => {
                        stats.requests += u64::from(error.attempt);
                        stats.retries += u64::from(error.attempt.saturating_sub(1));
                        if error.code == ErrorCode::ResponseTooLarge {
                            // The page is recorded in the dead letters (without its body,
                            // which was not kept) so it can be found and replayed.
                            let dead = DeadPage {
                                number,
                                endpoint: endpoint.clone(),
                                extracted_at: crate::clock::now_rfc3339(),
                                body: DeadBody::Whole(Bytes::new()),
                                error: Violation {
                                    code: ErrorCode::ResponseTooLarge.as_str(),
                                    message: format!("request {}: {}", error.request_id, error.message),
                                    path: String::new(),
                                },
                            };
                            let _ = sender.send(Item::DeadPage(dead)).await;
                        }
                        return Err(Some(error.into()));
                    }
                };
                stats.requests += u64::from(response.attempts);
                stats.retries += u64::from(response.attempts - 1);
                let mut response = response;
                let spilled = response.spilled.is_some();
                let mut invalid = None;
                if let Some(body) = response.spilled.take() {
                    match self.open_spilled(body, number).await.map_err(Some)? {
                        Opened::Served(page) => {
                            let document =
                                records::Document::spilled(&page.layout.skeleton, page.layout.last.as_deref());
                            let next = self.next_token(
                                &mut paginator,
                                &token,
                                &response,
                                document,
                                page.layout.records,
                                page.digest,
                            );
                            break (response, Parsed::Spilled(page), next);
                        }
                        Opened::InMemory(body) => response.body = body,
                        Opened::Invalid { body, error } => invalid = Some((error, body)),
                    }
                }
                let (source, body) = match invalid {
                    Some(invalid) => invalid,
                    None => {
                        // A page with bytes that are not UTF-8 is read with the bad sequences
                        // replaced, so its records without them still land (byte for byte as
                        // sent); its exact bytes go to the dead letters (base64).
                        let original = std::str::from_utf8(&response.body)
                            .is_err()
                            .then(|| response.body.clone());
                        if let Some(original) = &original {
                            response.body = Bytes::from(String::from_utf8_lossy(original).into_owned());
                        }
                        let parsed = {
                            let _transform =
                                crate::observe::telemetry::transform_span(&self.stream.name, number).entered();
                            parse_page(&response.body, &record_reader, &mut stats.schema)
                        };
                        match parsed {
                            Ok((mut records, document)) => {
                                if let Some(original) = &original {
                                    mark_replaced_bytes(&response.body, &mut records);
                                    let invalid = std::str::from_utf8(original)
                                        .err()
                                        .map(|e| e.to_string())
                                        .unwrap_or_default();
                                    let dead = DeadPage {
                                        number,
                                        endpoint: endpoint.clone(),
                                        extracted_at: crate::clock::now_rfc3339(),
                                        body: DeadBody::of(original.clone(), spilled),
                                        error: Violation {
                                            code: "PARSING_ERROR",
                                            message: format!(
                                                "request {}: the page is not valid UTF-8 ({invalid}); its exact bytes are in _raw_base64, its records without invalid bytes were landed",
                                                response.request_id
                                            ),
                                            path: String::new(),
                                        },
                                    };
                                    if sender.send(Item::DeadPage(dead)).await.is_err() {
                                        return Err(None);
                                    }
                                }
                                let digest = crate::pagination::records_digest(
                                    records.iter().map(|record| &response.body[record.range.clone()]),
                                );
                                let next =
                                    self.next_token(&mut paginator, &token, &response, document, records.len(), digest);
                                break (response, Parsed::InMemory(records), next);
                            }
                            Err(source) => {
                                let body = original.unwrap_or_else(|| response.body.clone());
                                (source, DeadBody::of(body, spilled))
                            }
                        }
                    }
                };
                let policy = self.client.retry_policy();
                let delay = policy.next_delay(parse_attempt, std::time::Duration::ZERO, None);
                if let Some(delay) = delay.filter(|_| parse_attempt < policy.max_attempts) {
                    self.events.request_retried(
                        &self.stream.name,
                        number,
                        &response.request_id,
                        parse_attempt,
                        delay.as_millis() as u64,
                        ErrorCode::ParsingError.as_str(),
                        &source.to_string(),
                    );
                    self.client.sleeper().sleep(delay).await;
                    stats.retries += 1;
                    parse_attempt += 1;
                    continue;
                }
                let dead = DeadPage {
                    number,
                    endpoint: endpoint.clone(),
                    extracted_at: crate::clock::now_rfc3339(),
                    body,
                    error: Violation {
                        code: "PARSING_ERROR",
                        message: format!("request {}: {source}", response.request_id),
                        path: self.stream.records_path.clone(),
                    },
                };
                let _ = sender.send(Item::DeadPage(dead)).await;
                return Err(Some(StreamError::Records {
                    page: number,
                    endpoint,
                    request_id: response.request_id,
                    source,
                }));
            };
            let extracted_at = crate::clock::now_rfc3339();
            stats.pages = number;
            let mut records = match parsed {
                Parsed::InMemory(records) => records,
                Parsed::Spilled(page) => {
                    let head = PageHead {
                        number,
                        endpoint,
                        extracted_at,
                        parent_key: parent.map(|parent| parent.key.clone()),
                    };
                    self.land_spilled(page, head, &response, filter, &record_reader, sender, stats)
                        .await?;
                    match next {
                        Ok(Some(next)) => token = next,
                        Ok(None) => return Ok(()),
                        Err(error) => return Err(Some(error.into())),
                    }
                    continue;
                }
            };
            stats.rows_read += records.len() as u64;
            stats.filtered_rows += keep_in_window(&mut records, filter);

            self.events.page_fetched(
                &self.stream.name,
                number,
                &response.request_id,
                response.status,
                records.len(),
                response.body.len(),
                response.elapsed.as_millis() as u64,
            );
            let page = FetchedPage {
                number,
                endpoint,
                extracted_at,
                body: response.body,
                records,
                parent_key: parent.map(|parent| parent.key.clone()),
            };
            // The page is handed over before a pagination error is reported: what was read
            // is landed either way.
            if sender.send(Item::Page(page)).await.is_err() {
                return Err(None);
            }
            match next {
                Ok(Some(next)) => token = next,
                Ok(None) => return Ok(()),
                Err(error) => return Err(Some(error.into())),
            }
        }
    }

    /// What a page says of the next one (and of the stream's expected total, for progress),
    /// whether its records are held in memory or in a spilled file.
    fn next_token(
        &self,
        paginator: &mut Paginator,
        token: &PageToken,
        response: &Response,
        document: records::Document<'_>,
        records: usize,
        records_digest: Option<u64>,
    ) -> Result<Option<PageToken>, PaginationError> {
        let total = crate::observe::progress::expected(&self.stream, document);
        self.events.telemetry().expect(&self.stream.name, total);
        let view = PageView {
            url: &response.url,
            headers: &response.headers,
            document: Some(document),
            records,
            records_digest,
        };
        paginator.next(token, &view)
    }

    /// Finds the records array of a spilled body, off the async threads; a body the file
    /// reader does not serve is read back into memory.
    async fn open_spilled(&self, mut spilled: SpilledBody, page: u64) -> Result<Opened, StreamError> {
        let served = spilled.utf8 && spill_serves(&self.stream);
        let records_path = self.stream.records_path.clone();
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<Opened> {
            if served {
                let mut digest = RecordsDigest::default();
                let located = records::spilled::locate(&mut spilled.file, spilled.len, &records_path, |record| {
                    digest.push(record)
                })?;
                // A repeated member on the way to the records is an error the in-memory
                // path reports (with the body, for the dead letters).
                if let records::spilled::Located::Served(layout) = located
                    && records::repeated_on_path(&layout.skeleton, &records_path).is_none()
                {
                    return Ok(Opened::Served(SpilledPage {
                        file: spilled.file,
                        len: spilled.len,
                        layout,
                        digest: digest.finish(),
                    }));
                }
            }
            // A body that is not JSON at all is found so from the file, and only its head
            // is kept for the dead letters: it never costs its size in memory.
            if let Err(error) = records::spilled::check_json(&mut spilled.file, spilled.len)? {
                let body = DeadBody::from_file(&mut spilled.file, spilled.len)?;
                return Ok(Opened::Invalid { body, error });
            }
            spilled.read_all().map(Opened::InMemory)
        })
        .await
        .map_err(|error| StreamError::Task(error.to_string()))?;
        opened.map_err(|error| spill_error(page, &error))
    }

    /// Reads the records of a spilled page from its file and hands them to the writer in
    /// pieces of about [`SPILLED_PIECE`] bytes, each a page of its own with the page's
    /// number: the writer lands them as it would land the page.
    ///
    /// The file is read on the fetcher's task: a read of the page cache takes about as
    /// long as parsing the records it holds, which runs there too.
    #[allow(clippy::too_many_arguments)]
    async fn land_spilled(
        &self,
        page: SpilledPage,
        head: PageHead,
        response: &Response,
        filter: Option<&Window>,
        reader: &RecordReader<'_>,
        sender: &mpsc::Sender<Item>,
        stats: &mut FetchStats,
    ) -> Result<(), Option<StreamError>> {
        let failed = |error: std::io::Error| Some(spill_error(head.number, &error));
        let mut records = records::spilled::Records::open(page.file, &page.layout).map_err(failed)?;
        let mut record = Vec::new();
        let mut kept = 0;
        let mut more = true;
        while more {
            let mut body = Vec::with_capacity(SPILLED_PIECE + SPILLED_PIECE / 4);
            let mut metas = Vec::new();
            while body.len() < SPILLED_PIECE {
                more = records.next_into(&mut record).map_err(failed)?;
                if !more {
                    break;
                }
                let raw = serde_json::from_slice::<&RawValue>(&record).map_err(|error| failed(error.into()))?;
                let start = body.len();
                body.extend_from_slice(&record);
                metas.push(reader.meta(raw, start..body.len(), &mut stats.schema));
            }
            stats.rows_read += metas.len() as u64;
            stats.filtered_rows += keep_in_window(&mut metas, filter);
            kept += metas.len();
            if metas.is_empty() {
                continue;
            }
            let piece = FetchedPage {
                number: head.number,
                endpoint: head.endpoint.clone(),
                extracted_at: head.extracted_at.clone(),
                body: Bytes::from(body),
                records: metas,
                parent_key: head.parent_key.clone(),
            };
            if sender.send(Item::Page(piece)).await.is_err() {
                return Err(None);
            }
        }
        self.events.page_fetched(
            &self.stream.name,
            head.number,
            &response.request_id,
            response.status,
            kept,
            page.len as usize,
            response.elapsed.as_millis() as u64,
        );
        Ok(())
    }

    /// A writer of parts into `dir`, large ones staged under `staging_dir`.
    fn part_writer(&self, dir: String, staging_dir: String) -> PartWriter {
        let landing = &self.config.landing;
        PartWriter::new(
            self.landing.clone(),
            PartDirs {
                dir,
                staging_dir,
                run_id: self.run_id.clone(),
            },
            landing.compression,
            PartLimits {
                max_records: landing.part_max_records,
                max_bytes: landing.part_max_bytes.0,
                multipart_chunk: landing.multipart_chunk.0 as usize,
                level: landing.level(),
            },
        )
    }

    /// The request for the page `token` (page `number` of the stream), as a task of its own.
    fn send_page(
        &self,
        builder: &RequestBuilder,
        bounds: &Bounds,
        token: &PageToken,
        number: u64,
    ) -> impl Future<Output = Result<Response, HttpError>> + Send + 'static + use<> {
        let spec = builder.build(token, bounds);
        let client = self.client.clone();
        let stream = self.stream.name.clone();
        async move {
            let context = RequestContext {
                stream: &stream,
                page: number,
            };
            client.send(&spec, context).await
        }
    }

    async fn write(
        &self,
        mut receiver: mpsc::Receiver<Item>,
        checkpoint: &mut Checkpoint,
    ) -> (WriteStats, Option<StreamError>) {
        let source = &self.config.source.name;
        let dead_letter_staging = format!("_dead_letter_{}", self.stream.name);
        let mut writer = self.part_writer(
            layout::parts_dir(source, &self.stream.name, &self.extracted_date, &self.run_id),
            layout::staging_dir(source, &self.run_id, &self.stream.name),
        );
        let mut dead_letters = self.part_writer(
            layout::dead_letter_dir(source, &self.stream.name, &self.extracted_date, &self.run_id),
            layout::staging_dir(source, &self.run_id, &dead_letter_staging),
        );
        let template = EnvelopeTemplate::new(
            source,
            &self.stream.name,
            &self.run_id,
            self.config.source.tenant.as_deref(),
            self.config.source.environment.as_deref(),
        );
        let redactor = Redactor::new(&self.stream.redact);
        let mut deduper = RunDeduper::default();
        let mut stats = WriteStats::default();
        if self.reused_run_id {
            for part_writer in [&mut writer, &mut dead_letters] {
                if let Err(error) = part_writer.skip_existing().await {
                    return (stats, Some(error.into()));
                }
            }
        }
        let mut line = Vec::with_capacity(4096);
        let result: Result<(), StreamError> = async {
            while let Some(item) = receiver.recv().await {
                let page = match item {
                    Item::Page(page) => page,
                    Item::WindowDone(window) => {
                        self.store_part(&mut writer, &mut stats, checkpoint).await?;
                        self.window_done(&window, &stats, checkpoint).await?;
                        continue;
                    }
                    Item::DeadPage(dead) => {
                        self.write_dead_page(&mut dead_letters, &template, &redactor, dead, &mut stats)
                            .await?;
                        continue;
                    }
                };
                let body = std::str::from_utf8(&page.body).expect("pages are checked to be UTF-8 when parsed");
                let fields = PageFields::new(&page.endpoint, &page.extracted_at, page.number);
                for record in page.records {
                    let (raw, applied) = redactor.apply(&body[record.range.clone()]);
                    let sha256 = envelope::payload_sha256(&raw);
                    let redacted = (!redactor.is_empty()).then_some(applied.as_slice());
                    // A record that failed its checks goes to the dead letters, never
                    // deduplicated; any other record lands unless it was seen already.
                    let violation = record.violation.as_ref();
                    if violation.is_none() {
                        let repeated = record
                            .id
                            .as_deref()
                            .is_some_and(|id| deduper.is_duplicate(id, record.cursor.as_deref(), &sha256));
                        if repeated || checkpoint.is_known_duplicate(&record, &sha256) {
                            stats.duplicate_rows += 1;
                            continue;
                        }
                    }
                    line.clear();
                    let fields_of_record = RecordFields {
                        record_id: record.id.as_deref(),
                        updated_at: record.cursor.as_deref(),
                        parent_key: page.parent_key.as_deref(),
                        sha256: &sha256,
                        redacted,
                        error: violation,
                        raw_base64: None,
                        raw_length: None,
                    };
                    let loaded_at = crate::clock::now_rfc3339();
                    envelope::write_line(&mut line, &template, &fields, fields_of_record, &loaded_at, &raw);
                    if violation.is_some() {
                        dead_letters.append(&line).await?;
                        stats.dead_letter_rows += 1;
                        if dead_letters.is_full() {
                            self.store_dead_letters(&mut dead_letters, &mut stats).await?;
                        }
                        continue;
                    }
                    writer.append(&line).await?;
                    if record.cursor.is_some() && record.cursor_value.is_none() {
                        stats.cursor_unparseable_rows += 1;
                        if stats.cursor_unparseable_example.is_none() {
                            stats.cursor_unparseable_example =
                                record.cursor.as_deref().map(|text| text.chars().take(64).collect());
                        }
                    }
                    if let (Some(value), Some(typed)) = (record.cursor, record.cursor_value) {
                        checkpoint.open_cursor = cursor::max(checkpoint.open_cursor.take(), typed);
                        if let Some(id) = record.id {
                            checkpoint.remember(SeenRecord {
                                id,
                                cursor: value,
                                sha256,
                            });
                        }
                    }
                    if let Some(parent) = record.parent {
                        stats
                            .parent_keys
                            .push(&parent)
                            .map_err(|error| parent_keys_error(&error))?;
                    }
                    if writer.is_full() {
                        self.store_part(&mut writer, &mut stats, checkpoint).await?;
                    }
                }
                writer.flush_chunk().await?;
            }
            self.store_dead_letters(&mut dead_letters, &mut stats).await?;
            if self.stream.deletes_of.is_some() && stats.files.is_empty() {
                // A deletes companion usually lists nothing; its table must still exist.
                writer.open_empty();
            }
            self.store_part(&mut writer, &mut stats, checkpoint).await
        }
        .await;
        if result.is_err() {
            // What was read is stored where it can be; only an unfinished upload is dropped.
            let _ = self.store_dead_letters(&mut dead_letters, &mut stats).await;
            writer.abort().await;
            dead_letters.abort().await;
        }
        (stats, result.err())
    }

    async fn write_dead_page(
        &self,
        dead_letters: &mut PartWriter,
        template: &EnvelopeTemplate,
        redactor: &Redactor,
        dead: DeadPage,
        stats: &mut WriteStats,
    ) -> Result<(), StreamError> {
        // The body cannot be redacted by pointer: a stream with redaction rules keeps only
        // its size and hash, never the bytes.
        let kept = dead.body.kept();
        let text = String::from_utf8_lossy(kept);
        let withheld = format!("<{} bytes withheld: the stream has redaction rules>", dead.body.len());
        let raw: &str = if redactor.is_empty() { &text } else { &withheld };
        // A body that is not UTF-8 is kept exactly too, so the page can be replayed and its
        // hash checked.
        let raw_base64 = (redactor.is_empty() && matches!(text, std::borrow::Cow::Owned(_)))
            .then(|| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, kept));
        let sha256 = dead.body.sha256();
        let fields = PageFields::new(&dead.endpoint, &dead.extracted_at, dead.number);
        let record = RecordFields {
            record_id: None,
            updated_at: None,
            parent_key: None,
            sha256: &sha256,
            redacted: None,
            error: Some(&dead.error),
            raw_base64: raw_base64.as_deref(),
            raw_length: dead.body.cut_from(),
        };
        let mut line = Vec::with_capacity(raw.len() + 512);
        envelope::write_line(&mut line, template, &fields, record, &crate::clock::now_rfc3339(), raw);
        dead_letters.append(&line).await?;
        stats.dead_letter_rows += 1;
        Ok(())
    }

    async fn store_dead_letters(
        &self,
        dead_letters: &mut PartWriter,
        stats: &mut WriteStats,
    ) -> Result<(), StreamError> {
        if let Some(part) = dead_letters.finish().await? {
            self.events
                .dead_letter_stored(&self.stream.name, &self.landing.url_of(&part.path), part.rows);
            stats.dead_letter_files.push(part);
        }
        Ok(())
    }

    fn check_dead_letter_ratio(&self, read: u64, dead: u64) -> Result<(), StreamError> {
        if read == 0 || dead == 0 {
            return Ok(());
        }
        let ratio = dead as f64 / read as f64;
        let max = self.stream.max_dead_letter_ratio;
        if ratio > max {
            return Err(StreamError::DeadLetterRatio { dead, read, ratio, max });
        }
        Ok(())
    }

    /// Compares this run's fields with the stored schema, records the drift, and fails the
    /// stream on breaking drift when configured to (leaving the stored schema as it was, so
    /// the next run fails too until the change is accepted).
    async fn schema_drift(
        &self,
        tracker: &SchemaTracker,
    ) -> Result<(Vec<SchemaChange>, Option<StreamError>), StateError> {
        let path = layout::schema_state(&self.config.source.name, &self.stream.name);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let stored = self.state.read_object(&path).await?;
            let previous: Option<drift::SchemaState> = stored
                .as_ref()
                .and_then(|(bytes, _)| serde_json::from_slice(bytes).ok());
            let (changes, next) = drift::compare(previous.as_ref(), tracker, &self.stream.name, &self.run_id);
            let breaking: Vec<&SchemaChange> = changes.iter().filter(|change| change.breaking).collect();
            let fail = !breaking.is_empty() && self.stream.on_breaking_drift == crate::config::DriftAction::Fail;
            if !fail && tracker.records > 0 {
                let mut bytes = serde_json::to_vec_pretty(&next).expect("schema state serializes");
                bytes.push(b'\n');
                let expected = stored.as_ref().map(|(_, version)| version);
                // Another run of the stream stored its schema since it was read: compare
                // with that one instead of overwriting it.
                if let Written::Conflict = self.state.write_object(&path, Bytes::from(bytes), expected).await? {
                    if attempts < 4 {
                        continue;
                    }
                    return Err(StateError::Contended { path, attempts });
                }
            }
            if !changes.is_empty() {
                let summary: Vec<String> = changes.iter().map(|c| format!("{} {}", c.change, c.path)).collect();
                let count = |kind: &str| changes.iter().filter(|c| c.change == kind).count();
                self.events.schema_drift_detected(
                    &self.stream.name,
                    count("added"),
                    count("removed"),
                    changes.len() - count("added") - count("removed"),
                    !breaking.is_empty(),
                    &summary.join(", "),
                );
            }
            if fail {
                let summary: Vec<String> = breaking.iter().map(|c| format!("{} {}", c.change, c.path)).collect();
                return Ok((changes, Some(StreamError::SchemaDrift(summary.join(", ")))));
            }
            return Ok((changes, None));
        }
    }

    async fn store_part(
        &self,
        writer: &mut PartWriter,
        stats: &mut WriteStats,
        checkpoint: &mut Checkpoint,
    ) -> Result<(), StreamError> {
        let Some(part) = writer
            .finish()
            .instrument(crate::observe::telemetry::store_span(&self.stream.name))
            .await?
        else {
            return Ok(());
        };
        self.events.part_stored(
            &self.stream.name,
            &self.landing.url_of(&part.path),
            part.rows,
            part.bytes,
            &part.sha256,
            if part.multipart { "multipart" } else { "single" },
        );
        stats.rows_written += part.rows;
        stats.files.push(part);
        if let Some(cursor) = checkpoint.open_cursor.take() {
            stats.stored_cursor = cursor::max(stats.stored_cursor.take(), cursor);
        }
        checkpoint.tail.extend(checkpoint.open.drain(..));
        while checkpoint.tail.len() > MAX_RECENT {
            checkpoint.tail.pop_front();
        }
        // A run that joins the checkpoint moves it after every part; one that does not
        // records its range only when a window is complete (fewer contended writes).
        if self.incremental_sorted()
            && checkpoint.joined
            && let Some(cursor) = stats.stored_cursor.clone()
        {
            self.commit(checkpoint, &cursor).await?;
        }
        Ok(())
    }

    /// A window's data is stored: its end becomes the checkpoint when it is in the past
    /// (nothing before it remains unread), else the largest stored cursor.
    async fn window_done(
        &self,
        window: &Window,
        stats: &WriteStats,
        checkpoint: &mut Checkpoint,
    ) -> Result<(), StreamError> {
        if self.stream.incremental.is_none() {
            return Ok(());
        }
        let mut candidate = stats.stored_cursor.clone();
        if let Some(upper) = &window.upper
            && upper_has_passed(upper, chrono::Utc::now())
        {
            candidate = cursor::max(candidate, upper.clone());
        }
        if let Some(candidate) = candidate {
            self.commit(checkpoint, &candidate).await?;
        }
        Ok(())
    }

    /// Reports that this run's records from its start up to `cursor` are stored: the
    /// checkpoint moves forward to it when the run joins the checkpoint, else the range
    /// waits in the state until the gap before it is filled (by this run or others). Never
    /// backwards (a backfill window that ends before the checkpoint changes nothing), and
    /// never past a gap.
    async fn commit(&self, checkpoint: &mut Checkpoint, cursor: &Cursor) -> Result<(), StateError> {
        if checkpoint.committed.as_ref().is_some_and(|current| current >= cursor) {
            return Ok(());
        }
        if self.defer_checkpoint {
            checkpoint.deferred = cursor::max(checkpoint.deferred.take(), cursor.clone());
            return Ok(());
        }
        let (Some(start), Some(origin)) = (checkpoint.start.clone(), checkpoint.origin.clone()) else {
            return Ok(());
        };
        let lookback = self
            .stream
            .incremental
            .as_ref()
            .map(|incremental| incremental.lookback.0)
            .unwrap_or_default();
        let format = &checkpoint.format;
        let floor = format.minus(cursor, lookback);
        checkpoint
            .tail
            .retain(|seen| format.parse(&seen.cursor).is_ok_and(|seen| seen >= floor));
        let recent: Vec<SeenRecord> = checkpoint.tail.iter().cloned().collect();
        let (start_text, end_text, origin_text) =
            (format.render(&start), format.render(cursor), format.render(&origin));
        let previous = checkpoint.committed.clone();
        let (stored, changed) = self
            .state
            .advance(
                &self.stream.name,
                crate::state::StoredRange {
                    start: &start_text,
                    end: &end_text,
                    origin: &origin_text,
                    format,
                },
                recent,
                &self.run_id,
                checkpoint.stored.as_ref(),
                self.fence.as_ref(),
            )
            .await?;
        let Some(stored) = stored else {
            return Ok(());
        };
        // Other runs may have moved it meanwhile: the stored checkpoint is the truth.
        if let Some(Ok(stored_cursor)) = stored.state.cursor.as_deref().map(|stored| format.parse(stored)) {
            checkpoint.committed = Some(stored_cursor);
        }
        checkpoint.joined = match &checkpoint.committed {
            Some(reached) => start <= *reached,
            None => start <= origin,
        };
        if changed
            && checkpoint.committed != previous
            && let Some(text) = stored.state.cursor.as_deref()
        {
            self.events.checkpoint_committed(&self.stream.name, text);
        }
        checkpoint.stored = Some(stored);
        Ok(())
    }
}

/// Whether a window's upper bound is in the past, so nothing before it remains unread.
/// Only a time cursor can say; an integer or string bound never becomes the checkpoint.
fn upper_has_passed(upper: &Cursor, now: chrono::DateTime<chrono::Utc>) -> bool {
    matches!(upper, Cursor::Instant(instant) if *instant <= now)
}

impl Checkpoint {
    /// Keeps a landed record of the open part. Only the last [`MAX_RECENT`] can reach the
    /// checkpoint, so only they are kept: memory stays flat however large the part.
    fn remember(&mut self, record: SeenRecord) {
        if self.open.len() == MAX_RECENT {
            self.open.pop_front();
        }
        self.open.push_back(record);
    }

    /// A record at or below the starting checkpoint that was stored before with the same
    /// payload: counted as a duplicate and not landed again.
    fn is_known_duplicate(&self, record: &RecordMeta, sha256: &str) -> bool {
        if self.known.is_empty() {
            return false;
        }
        let (Some(at_start), Some(id), Some(value), Some(typed)) =
            (&self.at_start, &record.id, &record.cursor, &record.cursor_value)
        else {
            return false;
        };
        typed <= at_start
            && self
                .known
                .get(&(id.clone(), value.clone()))
                .is_some_and(|known| known == sha256)
    }
}

/// The child stream with `{parent.<name>}` replaced in its path and params.
pub(crate) fn interpolate(stream: &StreamConfig, values: &[(String, String)]) -> StreamConfig {
    let mut stream = stream.clone();
    for (name, value) in values {
        let placeholder = format!("{{parent.{name}}}");
        let encoded = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
        stream.path = stream.path.replace(&placeholder, &encoded);
        for param in stream.params.values_mut() {
            if let serde_json::Value::String(text) = param
                && text.contains(&placeholder)
            {
                *text = text.replace(&placeholder, value);
            }
        }
    }
    stream
}

/// What the pieces of a spilled page share.
struct PageHead {
    number: u64,
    endpoint: String,
    extracted_at: String,
    parent_key: Option<String>,
}

fn parent_keys_error(error: &std::io::Error) -> StreamError {
    StreamError::ParentKeys {
        dir: std::env::temp_dir().display().to_string(),
        message: error.to_string(),
    }
}

fn spill_error(page: u64, error: &std::io::Error) -> StreamError {
    StreamError::Spill {
        page,
        dir: std::env::temp_dir().display().to_string(),
        message: error.to_string(),
    }
}

/// Drops the records outside `window` (`client_side_filter`); returns how many.
fn keep_in_window(records: &mut Vec<RecordMeta>, window: Option<&Window>) -> u64 {
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

/// Sends the records of a page read with invalid UTF-8 replaced (U+FFFD) to the dead
/// letters when they hold a replacement: their bytes are not the source's.
fn mark_replaced_bytes(body: &[u8], records: &mut [RecordMeta]) {
    const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
    for record in records.iter_mut().filter(|record| record.violation.is_none()) {
        if memchr::memmem::find(&body[record.range.clone()], REPLACEMENT).is_some() {
            record.violation = Some(Violation {
                code: "PARSING_ERROR",
                message: "the record holds bytes that are not UTF-8 (replaced by U+FFFD here); the page's exact bytes are dead-lettered with _raw_base64".to_owned(),
                path: String::new(),
            });
        }
    }
}

/// What the writer needs of each record, read the same way for pages in memory and pages
/// read from a spilled body.
struct RecordReader<'a> {
    stream: &'a StreamConfig,
    cursor: Option<(&'a str, &'a CursorFormat)>,
    parent_fields: Option<&'a [String]>,
    validator: &'a RecordValidator,
    /// The top-level names Landfall reads from each record: one of them twice in a record
    /// makes it ambiguous (readers disagree on which counts), and it goes to the dead letters.
    read_names: Vec<&'a str>,
}

impl<'a> RecordReader<'a> {
    fn new(
        stream: &'a StreamConfig,
        cursor: Option<(&'a str, &'a CursorFormat)>,
        parent_fields: Option<&'a [String]>,
        validator: &'a RecordValidator,
    ) -> Self {
        let read_names = stream
            .primary_key
            .iter()
            .map(String::as_str)
            .chain(cursor.map(|(field, _)| field))
            .filter(|name| !name.starts_with('/'))
            .collect();
        Self {
            stream,
            cursor,
            parent_fields,
            validator,
            read_names,
        }
    }

    /// The record `raw`, found at `range` of its page's body.
    fn meta(&self, raw: &RawValue, range: Range<usize>, schema: &mut SchemaTracker) -> RecordMeta {
        schema.observe(raw);
        let parent = self.parent_fields.and_then(|fields| {
            let values: Option<Vec<(String, String)>> = fields
                .iter()
                .map(|field| {
                    Some((
                        ParentConfig::placeholder(field),
                        records::scalar_text(records::field(raw, field)?)?,
                    ))
                })
                .collect();
            let values = values?;
            let key = match values.as_slice() {
                [(_, single)] => single.clone(),
                _ => serde_json::to_string(&values.iter().map(|(_, v)| v).collect::<Vec<_>>())
                    .expect("strings serialize"),
            };
            Some(ParentKey { key, values })
        });
        let id = records::primary_key_text(raw, &self.stream.primary_key);
        let text = self
            .cursor
            .and_then(|(field, _)| records::field(raw, field))
            .and_then(records::scalar_text);
        let cursor_value = self
            .cursor
            .zip(text.as_deref())
            .and_then(|((_, format), text)| format.parse(text).ok());
        let repeated = self.read_names.iter().find(|name| records::repeats_member(raw, name));
        RecordMeta {
            range,
            violation: match repeated {
                Some(name) => Some(Violation {
                    code: "VALIDATION_ERROR",
                    message: format!(
                        "member `{name}` appears more than once in the record; which one is meant is ambiguous"
                    ),
                    path: format!("/{name}"),
                }),
                None => self.validator.check(raw, id.is_some()),
            },
            id,
            cursor: text,
            cursor_value,
            parent,
        }
    }
}

/// Finds the records of a page and what the writer needs of each.
fn parse_page<'a>(
    body: &'a Bytes,
    reader: &RecordReader<'_>,
    schema: &mut SchemaTracker,
) -> Result<(Vec<RecordMeta>, records::Document<'a>), records::RecordsError> {
    let document = records::parse(body)?;
    if let Some(repeated) = records::repeated_on_path(document, &reader.stream.records_path) {
        return Err(records::RecordsError::RepeatedMember(repeated));
    }
    let (items, document) = records::page_records(document, &reader.stream.records_path)?;
    let metas = items
        .into_iter()
        .map(|raw| reader.meta(raw, records::range_in(body, raw), schema))
        .collect();
    Ok((metas, document))
}
