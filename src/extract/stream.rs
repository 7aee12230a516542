//! One stream's extraction: its source ([`crate::source`]) reads pages on a task of its
//! own, window by window, and the writer ([`super::write`]) lands them, joined by a bounded
//! channel so reading and writing overlap while memory stays flat; the report
//! ([`super::report`]) says what happened.
//!
//! The checkpoint moves only after the part holding its records is stored: after every
//! part for sorted streams, after every completed window otherwise.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::error::StreamError;
use super::report::StreamEnd;
use crate::config::{ConnectorConfig, StreamConfig};
use crate::cursor::{Cursor, CursorFormat};
use crate::http::HttpClient;
use crate::landing::{Landing, layout};
use crate::observe::events::Events;
use crate::quality::validate::RecordValidator;
use crate::report::manifest::StreamReport;
use crate::source::database::DatabaseSource;
use crate::source::parents::ParentKeys;
use crate::source::rest::RestSource;
use crate::source::windows::{self, Window};
use crate::source::{ReadError, ReadPlan, ReadStats, Source};
use crate::state::tracker::{CheckpointTracker, TrackerStart};
use crate::state::{Fence, StateError, StateStore};

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
    checkpoint: CheckpointTracker,
    cursor: Cursor,
}

impl DeferredCheckpoint {
    /// The checkpoint held back, in the stream's format.
    pub fn cursor(&self) -> String {
        self.checkpoint.format().render(&self.cursor)
    }

    /// Commits the checkpoint (fenced by the stream's lease, as every checkpoint write);
    /// returns the stream's checkpoint after the write, in its format.
    pub async fn commit(mut self) -> Result<Option<String>, StateError> {
        self.job.defer_checkpoint = false;
        self.job.commit(&mut self.checkpoint, &self.cursor).await?;
        let format = self.checkpoint.format();
        Ok(self.checkpoint.committed().map(|cursor| format.render(cursor)))
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

impl StreamJob {
    pub(super) fn incremental_sorted(&self) -> bool {
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
        // A stream with an async job reads its state for the job an earlier run left.
        let state = match incremental.is_some() || self.stream.async_job.is_some() {
            true => match self.state.load_versioned(&self.stream.name).await {
                Ok(state) => state,
                Err(error) => return self.failed_before_start(StreamError::State(error)),
            },
            false => None,
        };
        let resume_job = state.as_ref().and_then(|stored| stored.state.async_job.clone());
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
                .parse(incremental.first_start())
                .unwrap_or(Cursor::Text(incremental.first_start().to_owned()))
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
        // The tracker decides where the checkpoint may move; the run joins what was read
        // before when it starts at or before the checkpoint, or at or before the configured
        // start (nothing before it is wanted).
        let lookback = incremental
            .as_ref()
            .map(|incremental| incremental.lookback.0)
            .unwrap_or_default();
        let mut checkpoint_state = CheckpointTracker::new(TrackerStart {
            format: format.clone(),
            checkpoint: checkpoint.clone(),
            stored: state,
            start: cursor_start.clone(),
            origin: configured_start.clone(),
            lookback,
            full_refresh: self.full_refresh,
        });
        let cursor_start_text = cursor_start.as_ref().map(|cursor| format.render(cursor));
        if let Some(window_end) = &self.window_end
            && incremental
                .as_ref()
                .is_some_and(|incremental| incremental.end_param.is_none() && !incremental.client_side_filter)
        {
            self.events
                .window_end_ignored(&self.stream.name, &format.render(window_end));
        }
        if !checkpoint_state.joined() {
            self.events.checkpoint_held(
                &self.stream.name,
                cursor_start_text.as_deref().unwrap_or_default(),
                checkpoint.as_ref().map(|cursor| format.render(cursor)).as_deref(),
            );
        }
        self.events.stream_started(
            &self.stream.name,
            self.stream.sync_mode().as_str(),
            cursor_start_text.as_deref(),
        );

        let source = self.source(resume_job);
        let endpoint = match source.endpoint() {
            Ok(endpoint) => endpoint,
            Err(error) => return self.failed_before_start(error.into()),
        };
        let validator = match RecordValidator::new(&self.stream) {
            Ok(validator) => Arc::new(validator),
            Err(error) => return self.failed_before_start(error.into()),
        };
        let (sender, receiver) = crate::source::channel::channel();
        let plan = ReadPlan {
            windows: planned,
            validator,
        };
        let reader = tokio::spawn(source.read(plan, sender));
        let (mut write_stats, write_error) = self.write(receiver, &mut checkpoint_state).await;
        let (read_stats, read_error) = match reader.await {
            Ok(result) => result,
            Err(join_error) => (ReadStats::default(), Some(ReadError::Task(join_error.to_string()))),
        };
        // A writer failure explains a source stopped by the closed channel, so it wins.
        let mut error = write_error.or(read_error.map(StreamError::from));
        let mut schema_changes = Vec::new();
        if error.is_none() {
            error = self
                .check_dead_letter_ratio(read_stats.rows_read, write_stats.dead_letter_rows)
                .err();
        }
        if error.is_none() {
            match self.schema_drift(&read_stats.schema).await {
                Ok((changes, drift_error)) => {
                    schema_changes = changes;
                    error = drift_error;
                }
                Err(state_error) => error = Some(state_error.into()),
            }
        }
        let parent_keys = std::mem::take(&mut write_stats.parent_keys);
        let end = StreamEnd {
            read: read_stats,
            write: write_stats,
            endpoint,
            cursor_start: cursor_start_text,
            cursor_end: checkpoint_state.committed().map(|cursor| format.render(cursor)),
            stored_cursor: checkpoint_state.stored_cursor().cloned(),
            schema_changes,
        };
        let report = self.report(end, error.as_ref());
        let deferred = checkpoint_state.take_deferred().map(|cursor| DeferredCheckpoint {
            job: self.clone(),
            checkpoint: checkpoint_state,
            cursor,
        });
        StreamOutcome {
            report,
            parent_keys: parent_keys.finish(),
            deferred,
        }
    }

    /// The source that reads the stream: where a source family is chosen.
    fn source(&self, resume_job: Option<crate::state::AsyncJobState>) -> Box<dyn Source> {
        if self.config.source.kind.is_database() {
            return Box::new(DatabaseSource {
                config: self.config.clone(),
                stream: self.stream.clone(),
                events: self.events.clone(),
                cancel: self.cancel.clone(),
            });
        }
        Box::new(RestSource {
            config: self.config.clone(),
            stream: self.stream.clone(),
            client: self.client.clone(),
            events: self.events.clone(),
            cancel: self.cancel.clone(),
            parents: self.parents.clone(),
            collect_parent_fields: self.collect_parent_fields.clone(),
            resume_job,
            run_id: self.run_id.clone(),
        })
    }
}
