//! The events catalogue: every log event Landfall emits is declared here, with a stable
//! `event` name (documented in `docs/events.md`). Every event carries `run_id`; stream
//! events carry `stream`; page events carry `page` and `request_id`; error events carry
//! `code`, `stage` and `retryable`. The constants below are the names; `docs/events.md`
//! gives each one's level, fields and meaning, and `tests/it/observability.rs` holds the two
//! together. Log above `debug` only through these methods.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::error::{ErrorRecord, Stage};
use crate::observe::telemetry::Telemetry;

pub const RUN_STARTED: &str = "run_started";
pub const RUN_FINISHED: &str = "run_finished";
pub const STREAM_STARTED: &str = "stream_started";
pub const STREAM_FINISHED: &str = "stream_finished";
pub const STREAM_FAILED: &str = "stream_failed";
pub const PAGE_FETCHED: &str = "page_fetched";
pub const REQUEST_RETRIED: &str = "request_retried";
pub const RATE_LIMITED: &str = "rate_limited";
pub const PART_STORED: &str = "part_stored";
pub const CHECKPOINT_COMMITTED: &str = "checkpoint_committed";
pub const MANIFEST_WRITTEN: &str = "manifest_written";
pub const LEASE_ACQUIRED: &str = "lease_acquired";
pub const LEASE_HELD: &str = "lease_held";
pub const CIRCUIT_OPENED: &str = "circuit_opened";
pub const SCHEMA_DRIFT_DETECTED: &str = "schema_drift_detected";
pub const DEAD_LETTER_STORED: &str = "dead_letter_stored";
pub const CHECK_STEP: &str = "check_step";
pub const RUN_CANCELLED: &str = "run_cancelled";
pub const TOKEN_REFRESHED: &str = "token_refreshed";
pub const AUTH_STATE_IGNORED: &str = "auth_state_ignored";
pub const UPLOAD_ABORTED: &str = "upload_aborted";
pub const STALE_UPLOAD_CLEANED: &str = "stale_upload_cleaned";
pub const CONDITIONAL_WRITE_UNAVAILABLE: &str = "conditional_write_unavailable";
pub const WINDOW_END_IGNORED: &str = "window_end_ignored";
pub const CHECKPOINT_HELD: &str = "checkpoint_held";
pub const PARENT_CHECKPOINT_HELD: &str = "parent_checkpoint_held";
pub const CURSOR_UNPARSEABLE: &str = "cursor_unparseable";
pub const LEASE_RENEWAL_FAILED: &str = "lease_renewal_failed";
pub const LEASE_RELEASE_FAILED: &str = "lease_release_failed";
pub const METRICS_EXPORTED: &str = "metrics_exported";
pub const METRICS_EXPORT_FAILED: &str = "metrics_export_failed";
pub const LINEAGE_EMITTED: &str = "lineage_emitted";
pub const LINEAGE_EMIT_FAILED: &str = "lineage_emit_failed";
pub const ASYNC_JOB_CREATED: &str = "async_job_created";
pub const ASYNC_JOB_RESUMED: &str = "async_job_resumed";
pub const ASYNC_JOB_EXPIRED: &str = "async_job_expired";

/// Every event name, for docs and the runbook checks.
pub const ALL: &[&str] = &[
    RUN_STARTED,
    RUN_FINISHED,
    STREAM_STARTED,
    STREAM_FINISHED,
    STREAM_FAILED,
    PAGE_FETCHED,
    REQUEST_RETRIED,
    RATE_LIMITED,
    PART_STORED,
    CHECKPOINT_COMMITTED,
    MANIFEST_WRITTEN,
    LEASE_ACQUIRED,
    LEASE_HELD,
    CIRCUIT_OPENED,
    SCHEMA_DRIFT_DETECTED,
    DEAD_LETTER_STORED,
    CHECK_STEP,
    RUN_CANCELLED,
    TOKEN_REFRESHED,
    AUTH_STATE_IGNORED,
    UPLOAD_ABORTED,
    STALE_UPLOAD_CLEANED,
    CONDITIONAL_WRITE_UNAVAILABLE,
    WINDOW_END_IGNORED,
    CHECKPOINT_HELD,
    PARENT_CHECKPOINT_HELD,
    CURSOR_UNPARSEABLE,
    LEASE_RENEWAL_FAILED,
    LEASE_RELEASE_FAILED,
    METRICS_EXPORTED,
    METRICS_EXPORT_FAILED,
    LINEAGE_EMITTED,
    LINEAGE_EMIT_FAILED,
    ASYNC_JOB_CREATED,
    ASYNC_JOB_RESUMED,
    ASYNC_JOB_EXPIRED,
];

/// Emits the events of one run; holds what every event carries. Like Vector's internal
/// events, emitting also feeds the run's live [`Telemetry`] (progress, rate-limit waits).
#[derive(Clone, Debug)]
pub struct Events {
    run_id: Arc<str>,
    source: Arc<str>,
    telemetry: Telemetry,
}

impl Events {
    pub fn new(run_id: &str, source: &str) -> Self {
        Self {
            run_id: run_id.into(),
            source: source.into(),
            telemetry: Telemetry::default(),
        }
    }

    /// These events feeding `telemetry` instead of a private one.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The live instrumentation these events feed.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    pub fn run_started(&self, streams: usize, landing_url: &str) {
        info!(event = RUN_STARTED, run_id = %self.run_id, source = %self.source, streams, landing_url, "run started");
    }

    pub fn run_finished(&self, status: &str, exit_code: u8, duration_seconds: f64, manifest: &str) {
        info!(event = RUN_FINISHED, run_id = %self.run_id, source = %self.source, status, exit_code, duration_seconds, manifest, "run finished");
    }

    pub fn stream_started(&self, stream: &str, sync_mode: &str, cursor_start: Option<&str>) {
        self.telemetry.stream_started(stream);
        info!(event = STREAM_STARTED, run_id = %self.run_id, source = %self.source, stream, sync_mode, cursor_start, "stream started");
    }

    pub fn stream_finished(&self, stream: &str, status: &str, rows_written: u64, pages: u64, cursor_end: Option<&str>) {
        self.telemetry.stream_finished(stream, status);
        info!(event = STREAM_FINISHED, run_id = %self.run_id, source = %self.source, stream, status, rows_written, pages, cursor_end, "stream finished");
    }

    pub fn stream_failed(&self, stream: &str, stage: Stage, error: &ErrorRecord) {
        let status = if error.code == "CANCELLED" {
            "cancelled"
        } else {
            "failed"
        };
        self.telemetry.stream_finished(stream, status);
        error!(event = STREAM_FAILED, run_id = %self.run_id, source = %self.source, stream, stage = stage.as_str(), code = %error.code, retryable = error.retryable, error = %error.message, "stream failed");
    }

    #[allow(clippy::too_many_arguments)]
    pub fn page_fetched(
        &self,
        stream: &str,
        page: u64,
        request_id: &str,
        status: u16,
        records: usize,
        bytes: usize,
        elapsed_ms: u64,
    ) {
        self.telemetry.page(stream, records);
        info!(event = PAGE_FETCHED, run_id = %self.run_id, source = %self.source, stream, page, request_id, status, records, bytes, elapsed_ms, "page fetched");
    }

    #[allow(clippy::too_many_arguments)]
    pub fn request_retried(
        &self,
        stream: &str,
        page: u64,
        request_id: &str,
        attempt: u32,
        delay_ms: u64,
        code: &str,
        error: &str,
    ) {
        if code == "RATE_LIMIT" {
            // A 429's backoff (or its Retry-After) is time spent on the rate limit.
            self.telemetry
                .rate_limit_wait(stream, std::time::Duration::from_millis(delay_ms));
        }
        warn!(event = REQUEST_RETRIED, run_id = %self.run_id, source = %self.source, stream, page, request_id, attempt, delay_ms, code, stage = "fetch", retryable = true, error = %crate::redact::scrub(error), "retrying request");
    }

    /// A request waits for a rate limit: `cause` is the limit (`requests_per_second`,
    /// `requests_per_minute`, `requests_per_hour`) or the server's signal (`retry_after`,
    /// `remaining_exhausted`, `remaining_low`; for the last, `wait_ms` is the spacing
    /// between requests from now until the server's window resets).
    pub fn rate_limited(&self, stream: &str, page: u64, wait_ms: u64, cause: &str, remaining: Option<u64>) {
        warn!(event = RATE_LIMITED, run_id = %self.run_id, source = %self.source, stream, page, wait_ms, cause, remaining, "rate limited");
    }

    /// The circuit breaker opened: requests to the source fail fast for `cooldown_ms`.
    pub fn circuit_opened(&self, stream: &str, failures: u32, cooldown_ms: u64, code: &str) {
        error!(event = CIRCUIT_OPENED, run_id = %self.run_id, source = %self.source, stream, failures, cooldown_ms, code, stage = "fetch", retryable = true, "circuit opened");
    }

    /// An OAuth 2.0 access token was fetched; `rotated` when the server also sent a new
    /// refresh token (kept for the rest of the run and saved for the next).
    pub fn token_refreshed(&self, flow: &str, expires_in: Option<u64>, rotated: bool) {
        info!(event = TOKEN_REFRESHED, run_id = %self.run_id, source = %self.source, flow, expires_in, rotated, "access token fetched");
    }

    /// A saved refresh token was not used; the config's is used instead.
    pub fn auth_state_ignored(&self, reason: &str) {
        warn!(event = AUTH_STATE_IGNORED, run_id = %self.run_id, source = %self.source, reason, "saved refresh token not used");
    }

    /// `upload` is `single` (one create-only put) or `multipart` (staged, then published
    /// with a create-only copy).
    pub fn async_job_created(&self, stream: &str, job_id: &str) {
        info!(event = ASYNC_JOB_CREATED, run_id = %self.run_id, source = %self.source, stream, job_id, "async job created");
    }

    pub fn async_job_resumed(&self, stream: &str, job_id: &str, created_by: &str) {
        info!(event = ASYNC_JOB_RESUMED, run_id = %self.run_id, source = %self.source, stream, job_id, created_by, "polling the async job of an earlier run");
    }

    pub fn async_job_expired(&self, stream: &str, job_id: &str, status: u16, during: &str) {
        warn!(event = ASYNC_JOB_EXPIRED, run_id = %self.run_id, source = %self.source, stream, job_id, status, during, "async job or its result expired; creating a new job");
    }

    pub fn part_stored(&self, stream: &str, path: &str, rows: u64, bytes: u64, sha256: &str, upload: &str) {
        info!(event = PART_STORED, run_id = %self.run_id, source = %self.source, stream, path, rows, bytes, sha256, upload, "part stored");
    }

    pub fn dead_letter_stored(&self, stream: &str, path: &str, rows: u64) {
        warn!(event = DEAD_LETTER_STORED, run_id = %self.run_id, source = %self.source, stream, path, rows, "dead letters stored");
    }

    pub fn schema_drift_detected(
        &self,
        stream: &str,
        added: usize,
        removed: usize,
        changed: usize,
        breaking: bool,
        summary: &str,
    ) {
        warn!(event = SCHEMA_DRIFT_DETECTED, run_id = %self.run_id, source = %self.source, stream, added, removed, changed, breaking, summary, "schema drift detected");
    }

    pub fn checkpoint_committed(&self, stream: &str, cursor: &str) {
        info!(event = CHECKPOINT_COMMITTED, run_id = %self.run_id, source = %self.source, stream, cursor, "checkpoint committed");
    }

    pub fn manifest_written(&self, path: &str, status: &str) {
        info!(event = MANIFEST_WRITTEN, run_id = %self.run_id, source = %self.source, path, status, "manifest written");
    }

    /// `window` is set on a window's lease (a backfill), absent on the stream's lease.
    pub fn lease_acquired(&self, stream: &str, window: Option<&str>, expires_at: &str) {
        info!(event = LEASE_ACQUIRED, run_id = %self.run_id, source = %self.source, stream, window, expires_at, "lease acquired");
    }

    pub fn lease_held(&self, stream: &str, window: Option<&str>, holder: &str, expires_at: &str) {
        warn!(event = LEASE_HELD, run_id = %self.run_id, source = %self.source, stream, window, holder, expires_at, code = "LEASE_HELD", stage = "lease", retryable = true, "lease held by another run");
    }

    pub fn run_cancelled(&self, signal: &str, grace_seconds: f64) {
        warn!(event = RUN_CANCELLED, run_id = %self.run_id, source = %self.source, signal, grace_seconds, "stopping: storing what was read, then writing the manifest");
    }

    /// One step of `landfall check`; a failed step carries its error.
    pub fn check_step(&self, step: &str, detail: &str, failure: Option<&ErrorRecord>) {
        match failure {
            None => {
                info!(event = CHECK_STEP, run_id = %self.run_id, source = %self.source, step, ok = true, detail, "check step passed")
            }
            Some(error) => {
                error!(event = CHECK_STEP, run_id = %self.run_id, source = %self.source, step, ok = false, detail, code = %error.code, stage = "check", retryable = error.retryable, "check step failed")
            }
        }
    }

    /// A multipart upload was abandoned and aborted (a part or the completion failed, or
    /// the stream stopped); `error` is set when the abort itself failed.
    pub fn upload_aborted(&self, path: &str, reason: &str, error: Option<&str>) {
        warn!(event = UPLOAD_ABORTED, run_id = %self.run_id, source = %self.source, path, reason, abort_error = error, code = "STORAGE_ERROR", stage = "store", retryable = true, "multipart upload aborted");
    }

    /// An unfinished upload left by an earlier run was cleaned up.
    pub fn stale_upload_cleaned(&self, path: &str, upload_run_id: &str, age_seconds: u64) {
        info!(event = STALE_UPLOAD_CLEANED, run_id = %self.run_id, source = %self.source, path, upload_run_id, age_seconds, "stale upload cleaned");
    }

    /// The store cannot write create-only: Landfall checks that the name is free, then
    /// writes, which leaves a small race window (docs/credentials.md, conditional writes).
    pub fn conditional_write_unavailable(&self, url: &str, operation: &str) {
        warn!(event = CONDITIONAL_WRITE_UNAVAILABLE, run_id = %self.run_id, source = %self.source, url, operation, "the store cannot write create-only; falling back to check-then-write");
    }

    /// `--end` was given, but the stream can neither send nor apply an upper bound.
    pub fn window_end_ignored(&self, stream: &str, end: &str) {
        warn!(event = WINDOW_END_IGNORED, run_id = %self.run_id, source = %self.source, stream, end, "--end given but the stream has neither incremental.end_param nor client_side_filter; the upper bound is not applied");
    }

    /// A window run starts after the checkpoint: what lies between them is unread, so the
    /// run lands its window as a completed range and leaves the checkpoint where it is.
    pub fn checkpoint_held(&self, stream: &str, start: &str, checkpoint: Option<&str>) {
        warn!(event = CHECKPOINT_HELD, run_id = %self.run_id, source = %self.source, stream, start, checkpoint, "the window starts after the checkpoint; it is landed and kept as a completed range, the checkpoint stays until the gap before it is filled");
    }

    /// A parent stream's checkpoint was not moved: child stream `child` did not succeed (or
    /// did not run), so the next run reads the parent's records again and the child is
    /// fetched for every parent.
    pub fn parent_checkpoint_held(&self, stream: &str, held: &str, checkpoint: Option<&str>, child: &str) {
        warn!(event = PARENT_CHECKPOINT_HELD, run_id = %self.run_id, source = %self.source, stream, held, checkpoint, child, "a child stream did not succeed: the parent's checkpoint stays, so the next run reads those parents again for it");
    }

    /// Records carried a cursor value that does not parse in the stream's `incremental.format`:
    /// they are landed, but cannot move the checkpoint.
    pub fn cursor_unparseable(&self, stream: &str, field: &str, format: &str, rows: u64, example: &str) {
        warn!(event = CURSOR_UNPARSEABLE, run_id = %self.run_id, source = %self.source, stream, field, format, rows, example = %crate::redact::scrub(example), "cursor values do not parse in the stream's incremental.format; those records cannot move the checkpoint");
    }

    /// Renewing a stream's lease failed; the renewer tries again at its next tick.
    pub fn lease_renewal_failed(&self, stream: &str, path: &str, code: &str, error: &str) {
        warn!(event = LEASE_RENEWAL_FAILED, run_id = %self.run_id, source = %self.source, stream, path, code, stage = "lease", retryable = true, error = %crate::redact::scrub(error), "renewing the lease failed; retrying");
    }

    /// Removing a stream's lease at the end of the run failed; it expires by itself.
    pub fn lease_release_failed(&self, stream: &str, path: &str, code: &str, error: &str) {
        warn!(event = LEASE_RELEASE_FAILED, run_id = %self.run_id, source = %self.source, stream, path, code, stage = "lease", retryable = true, error = %crate::redact::scrub(error), "releasing the lease failed; it expires by itself");
    }

    /// The run's metrics went to `target` (`pushgateway` or `file`) at `destination`.
    pub fn metrics_exported(&self, target: &str, destination: &str, series: usize) {
        info!(event = METRICS_EXPORTED, run_id = %self.run_id, source = %self.source, target, destination = %crate::redact::scrub(destination), series, "metrics exported");
    }

    /// Exporting the metrics failed; the run's outcome is unchanged.
    pub fn metrics_export_failed(&self, target: &str, destination: &str, code: &str, retryable: bool, error: &str) {
        warn!(event = METRICS_EXPORT_FAILED, run_id = %self.run_id, source = %self.source, target, destination = %crate::redact::scrub(destination), code, stage = "metrics", retryable, error = %crate::redact::scrub(error), "exporting metrics failed");
    }

    /// An OpenLineage run event (`START`, `COMPLETE`, `FAIL`, `ABORT`) was sent.
    pub fn lineage_emitted(&self, event_type: &str, transport: &str, job: &str) {
        info!(event = LINEAGE_EMITTED, run_id = %self.run_id, source = %self.source, event_type, transport, job, "lineage event emitted");
    }

    /// Sending an OpenLineage event failed; the run's outcome is unchanged.
    pub fn lineage_emit_failed(&self, event_type: &str, transport: &str, code: &str, retryable: bool, error: &str) {
        warn!(event = LINEAGE_EMIT_FAILED, run_id = %self.run_id, source = %self.source, event_type, transport, code, stage = "lineage", retryable, error = %crate::redact::scrub(error), "emitting a lineage event failed");
    }
}
