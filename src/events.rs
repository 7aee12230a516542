//! The events catalogue: every log event Landfall emits is declared here, with a stable
//! `event` name (documented in `docs/events.md`). Every event carries `run_id`; stream
//! events carry `stream`; page events carry `page` and `request_id`; error events carry
//! `code`, `stage` and `retryable`.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::error::ErrorRecord;

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
];

/// Emits the events of one run; holds what every event carries.
#[derive(Clone, Debug)]
pub struct Events {
    run_id: Arc<str>,
    source: Arc<str>,
}

impl Events {
    pub fn new(run_id: &str, source: &str) -> Self {
        Self {
            run_id: run_id.into(),
            source: source.into(),
        }
    }

    pub fn run_started(&self, streams: usize, landing_url: &str) {
        info!(event = RUN_STARTED, run_id = %self.run_id, source = %self.source, streams, landing_url, "run started");
    }

    pub fn run_finished(&self, status: &str, exit_code: u8, duration_seconds: f64, manifest: &str) {
        info!(event = RUN_FINISHED, run_id = %self.run_id, source = %self.source, status, exit_code, duration_seconds, manifest, "run finished");
    }

    pub fn stream_started(&self, stream: &str, sync_mode: &str, cursor_start: Option<&str>) {
        info!(event = STREAM_STARTED, run_id = %self.run_id, source = %self.source, stream, sync_mode, cursor_start, "stream started");
    }

    pub fn stream_finished(&self, stream: &str, status: &str, rows_written: u64, pages: u64, cursor_end: Option<&str>) {
        info!(event = STREAM_FINISHED, run_id = %self.run_id, source = %self.source, stream, status, rows_written, pages, cursor_end, "stream finished");
    }

    pub fn stream_failed(&self, stream: &str, stage: &str, error: &ErrorRecord) {
        error!(event = STREAM_FAILED, run_id = %self.run_id, source = %self.source, stream, stage, code = %error.code, retryable = error.retryable, error = %error.message, "stream failed");
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

    pub fn lease_acquired(&self, stream: &str, expires_at: &str) {
        info!(event = LEASE_ACQUIRED, run_id = %self.run_id, source = %self.source, stream, expires_at, "lease acquired");
    }

    pub fn lease_held(&self, stream: &str, holder: &str, expires_at: &str) {
        warn!(event = LEASE_HELD, run_id = %self.run_id, source = %self.source, stream, holder, expires_at, code = "LEASE_HELD", stage = "lease", retryable = true, "lease held by another run");
    }

    pub fn run_cancelled(&self, signal: &str, grace_seconds: f64) {
        warn!(event = RUN_CANCELLED, run_id = %self.run_id, source = %self.source, signal, grace_seconds, "stopping: storing what was read, then writing the manifest");
    }

    pub fn check_step(&self, step: &str, ok: bool, detail: &str) {
        if ok {
            info!(event = CHECK_STEP, run_id = %self.run_id, source = %self.source, step, ok, detail, "check step passed");
        } else {
            error!(event = CHECK_STEP, run_id = %self.run_id, source = %self.source, step, ok, detail, "check step failed");
        }
    }

    /// A multipart upload was abandoned and aborted (a part or the completion failed, or
    /// the stream stopped); `error` is set when the abort itself failed.
    pub fn upload_aborted(&self, path: &str, reason: &str, error: Option<&str>) {
        warn!(event = UPLOAD_ABORTED, run_id = %self.run_id, source = %self.source, path, reason, abort_error = error, stage = "store", "multipart upload aborted");
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
}
