//! Live instrumentation of a run, and the tracing spans of the page pipeline.
//!
//! The events catalogue ([`crate::observe::events`]) feeds a [`Telemetry`] as it logs, the way
//! Vector's internal events both log and count: pages and records per stream for the
//! progress display, and the time spent waiting on rate limits, which the run copies into
//! the manifest (`rate_limit_waits_seconds`). Updates are a map lookup and a few atomic
//! adds per page, never per record.
//!
//! Spans: every page goes through `fetch` (request and body), `transform` (record
//! extraction and filtering) and `store` (the upload of the part that holds it). The JSON and
//! text log layers do not print them; an OpenTelemetry layer attached to the subscriber
//! exports them as traces (see `docs/observability.md`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::observe::progress::{Expected, Progress};

/// Name of the span around one page's request and body.
pub const SPAN_FETCH: &str = "fetch";
/// Name of the span around one page's record extraction.
pub const SPAN_TRANSFORM: &str = "transform";
/// Name of the span around storing one part.
pub const SPAN_STORE: &str = "store";

/// The span of one page's request: `fetch{stream, page}`.
pub fn fetch_span(stream: &str, page: u64) -> tracing::Span {
    tracing::info_span!("fetch", stream, page)
}

/// The span of one page's record extraction: `transform{stream, page}`.
pub fn transform_span(stream: &str, page: u64) -> tracing::Span {
    tracing::info_span!("transform", stream, page)
}

/// The span of storing one part: `store{stream}`.
pub fn store_span(stream: &str) -> tracing::Span {
    tracing::info_span!("store", stream)
}

/// What is known live about one stream.
#[derive(Debug)]
pub struct StreamLive {
    started: Instant,
    pages: AtomicU64,
    records: AtomicU64,
    rate_limit_wait_micros: AtomicU64,
    expected: Mutex<Option<Expected>>,
}

impl StreamLive {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            pages: AtomicU64::new(0),
            records: AtomicU64::new(0),
            rate_limit_wait_micros: AtomicU64::new(0),
            expected: Mutex::new(None),
        }
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    /// Records fetched so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Time since the stream started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Time spent waiting on rate limits so far.
    pub fn rate_limit_wait(&self) -> Duration {
        Duration::from_micros(self.rate_limit_wait_micros.load(Ordering::Relaxed))
    }

    /// The total the API announced, if any.
    pub fn expected(&self) -> Option<Expected> {
        *self.expected.lock().expect("expected lock")
    }
}

#[derive(Debug, Default)]
struct Inner {
    streams: Mutex<HashMap<String, Arc<StreamLive>>>,
    progress: Option<Progress>,
}

/// The live instrumentation of one run; cheap to clone. The default has no progress
/// display and only counts.
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

impl Telemetry {
    /// Telemetry that also drives `progress`.
    pub fn with_progress(progress: Progress) -> Self {
        Self {
            inner: Arc::new(Inner {
                streams: Mutex::default(),
                progress: Some(progress),
            }),
        }
    }

    /// Telemetry for a command line run: with a progress display on stderr when `mode`
    /// and the terminal allow it ([`crate::observe::progress::enabled`]).
    pub fn for_stderr(mode: crate::observe::progress::ProgressMode) -> Self {
        use std::io::IsTerminal;
        if crate::observe::progress::enabled(
            mode,
            std::io::stderr().is_terminal(),
            crate::observe::logging::json_logs(),
        ) {
            Self::with_progress(Progress::stderr())
        } else {
            Self::default()
        }
    }

    /// The live state of `stream`, created on first use.
    pub fn stream(&self, stream: &str) -> Arc<StreamLive> {
        let mut streams = self.inner.streams.lock().expect("streams lock");
        if let Some(live) = streams.get(stream) {
            return live.clone();
        }
        let live = Arc::new(StreamLive::new());
        streams.insert(stream.to_owned(), live.clone());
        live
    }

    /// A stream started: its counters start from zero.
    pub fn stream_started(&self, stream: &str) {
        let live = Arc::new(StreamLive::new());
        self.inner
            .streams
            .lock()
            .expect("streams lock")
            .insert(stream.to_owned(), live.clone());
        if let Some(progress) = &self.inner.progress {
            progress.begin(stream, live);
        }
    }

    /// A page of `records` records arrived.
    pub fn page(&self, stream: &str, records: usize) {
        let live = self.stream(stream);
        live.pages.fetch_add(1, Ordering::Relaxed);
        live.records.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// The API announced how much there is to read (offset `total_path`, page number
    /// `total_pages_path`).
    pub fn expect(&self, stream: &str, expected: Option<Expected>) {
        if let Some(expected) = expected {
            *self.stream(stream).expected.lock().expect("expected lock") = Some(expected);
        }
    }

    /// A request of `stream` waited `wait` for a rate limit.
    pub fn rate_limit_wait(&self, stream: &str, wait: Duration) {
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        self.stream(stream)
            .rate_limit_wait_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// The stream ended with `status`.
    pub fn stream_finished(&self, stream: &str, status: &str) {
        if let Some(progress) = &self.inner.progress {
            progress.end(stream, status);
        }
    }

    /// Seconds `stream` spent waiting on rate limits (0 when it never waited).
    pub fn rate_limit_wait_seconds(&self, stream: &str) -> f64 {
        self.inner
            .streams
            .lock()
            .expect("streams lock")
            .get(stream)
            .map_or(0.0, |live| live.rate_limit_wait().as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_pages_records_and_rate_limit_waits_per_stream() {
        let telemetry = Telemetry::default();
        telemetry.stream_started("orders");
        telemetry.page("orders", 100);
        telemetry.page("orders", 40);
        telemetry.page("customers", 7);
        telemetry.rate_limit_wait("orders", Duration::from_millis(1500));
        telemetry.rate_limit_wait("orders", Duration::from_millis(250));
        let orders = telemetry.stream("orders");
        assert_eq!((orders.pages(), orders.records()), (2, 140));
        assert_eq!(telemetry.stream("customers").records(), 7);
        assert!((telemetry.rate_limit_wait_seconds("orders") - 1.75).abs() < 1e-9);
        assert_eq!(telemetry.rate_limit_wait_seconds("customers"), 0.0);
        assert_eq!(telemetry.rate_limit_wait_seconds("unknown"), 0.0);
    }

    #[test]
    fn a_restarted_stream_counts_from_zero() {
        let telemetry = Telemetry::default();
        telemetry.stream_started("orders");
        telemetry.page("orders", 5);
        telemetry.stream_started("orders");
        assert_eq!(telemetry.stream("orders").records(), 0);
    }

    #[test]
    fn expected_totals_are_kept_and_absent_ones_ignored() {
        let telemetry = Telemetry::default();
        telemetry.expect("orders", Some(Expected::Records(1000)));
        telemetry.expect("orders", None);
        assert_eq!(telemetry.stream("orders").expected(), Some(Expected::Records(1000)));
    }
}
