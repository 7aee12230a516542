//! Metrics: every metric name is declared here. The values come from the run manifest, so
//! what a dashboard shows is what the manifest says was landed. They leave the process in
//! the Prometheus text format (0.0.4), with `HELP` and `TYPE` lines:
//!
//! - pushed to a Pushgateway (`--metrics-push-url`), one group per stream
//!   (`/metrics/job/landfall/source/<source>/stream/<stream>`) and one per run
//!   (`/metrics/job/landfall/source/<source>`), so batch runs of different streams do not
//!   overwrite each other. Pushes use `POST`, which replaces only the metrics pushed: a
//!   failed run leaves `landfall_last_success_timestamp_seconds` as the last success set
//!   it;
//! - written to a file for node exporter's textfile collector (`--metrics-file`),
//!   atomically (a temporary file renamed over the target). The series of streams that
//!   this run did not touch, and the last success of streams that did not succeed, are
//!   carried over from the file's previous content.
//!
//! Counters (`_total`) count what the last run did; they restart with every run.
//! Exporting never fails a run: a failure is the event `metrics_export_failed`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

use crate::error::{Classify, ErrorCode};
use crate::observe::events::Events;
use crate::report::manifest::{Manifest, Status, StreamReport};

/// The Pushgateway job every group is pushed under.
pub const JOB: &str = "landfall";

/// How long one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A metric's type line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A metric: its name, help text and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: Kind::Counter,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        help,
        kind: Kind::Gauge,
    }
}

pub const ROWS_READ: Metric = counter("landfall_rows_read_total", "Records read from the API by the last run.");
pub const ROWS_WRITTEN: Metric = counter(
    "landfall_rows_written_total",
    "Records landed in stored parts by the last run.",
);
pub const DUPLICATE_ROWS: Metric = counter(
    "landfall_duplicate_rows_total",
    "Unchanged records re-read at or below the checkpoint and not landed again, in the last run.",
);
pub const FILTERED_ROWS: Metric = counter(
    "landfall_filtered_rows_total",
    "Records dropped by client_side_filter as outside the window, in the last run.",
);
pub const DEAD_LETTER_ROWS: Metric = counter(
    "landfall_dead_letter_rows_total",
    "Records sent to the dead-letter prefix by the last run.",
);
pub const REQUESTS: Metric = counter(
    "landfall_requests_total",
    "HTTP requests sent by the last run, retries included.",
);
pub const RETRIES: Metric = counter("landfall_retries_total", "HTTP requests retried by the last run.");
pub const PAGES: Metric = counter("landfall_pages_total", "Pages read by the last run.");
pub const BYTES_WRITTEN: Metric = counter(
    "landfall_bytes_written_total",
    "Bytes of stored (compressed) parts written by the last run.",
);
pub const RATE_LIMIT_WAITS: Metric = counter(
    "landfall_rate_limit_waits_seconds_total",
    "Seconds the last run's requests waited on rate limits.",
);
pub const STREAM_DURATION: Metric = gauge(
    "landfall_stream_duration_seconds",
    "Wall-clock seconds the stream took in the last run.",
);
pub const LAG: Metric = gauge(
    "landfall_lag_seconds",
    "Seconds between the end of the last run and the newest cursor landed (timestamp cursors only).",
);
pub const STREAM_STATUS: Metric = gauge(
    "landfall_stream_status",
    "Status of the stream in the last run: 1 for the status it ended with, 0 for the others.",
);
pub const STREAM_LAST_RUN: Metric = gauge(
    "landfall_stream_last_run_timestamp_seconds",
    "Unix time the last run of the stream finished.",
);
pub const LAST_SUCCESS: Metric = gauge(
    "landfall_last_success_timestamp_seconds",
    "Unix time the last successful run of the stream finished.",
);
pub const RUN_DURATION: Metric = gauge("landfall_run_duration_seconds", "Wall-clock seconds the last run took.");
pub const RUN_STATUS: Metric = gauge(
    "landfall_run_status",
    "Status of the last run: 1 for the status it ended with, 0 for the others.",
);
pub const RUN_LAST: Metric = gauge(
    "landfall_run_last_timestamp_seconds",
    "Unix time the last run finished.",
);

/// Every metric, in exposition order.
pub const ALL: &[Metric] = &[
    ROWS_READ,
    ROWS_WRITTEN,
    DUPLICATE_ROWS,
    FILTERED_ROWS,
    DEAD_LETTER_ROWS,
    REQUESTS,
    RETRIES,
    PAGES,
    BYTES_WRITTEN,
    RATE_LIMIT_WAITS,
    STREAM_DURATION,
    LAG,
    STREAM_STATUS,
    STREAM_LAST_RUN,
    LAST_SUCCESS,
    RUN_DURATION,
    RUN_STATUS,
    RUN_LAST,
];

/// The statuses of a state-set gauge, in order.
const STATUSES: [&str; 4] = ["succeeded", "partial", "failed", "cancelled"];

/// One series' value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn new(metric: Metric, labels: &[(&str, &str)], value: f64) -> Self {
        Self {
            name: metric.name,
            labels: labels
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            value,
        }
    }

    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why exporting metrics failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics-push-url `{0}` is not an http(s) URL")]
    Url(String),
    #[error("pushing to {url} failed: {message}")]
    Push { url: String, message: String },
    #[error("the Pushgateway at {url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("writing {path} failed: {source}")]
    Write { path: String, source: std::io::Error },
}

impl Classify for MetricsError {
    fn code(&self) -> ErrorCode {
        match self {
            MetricsError::Url(_) => ErrorCode::ConfigError,
            MetricsError::Push { .. } => ErrorCode::NetworkError,
            MetricsError::Status { status, .. } if *status >= 500 => ErrorCode::ServerError,
            MetricsError::Status { .. } => ErrorCode::InvalidRequest,
            MetricsError::Write { .. } => ErrorCode::StorageError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            MetricsError::Push { .. } => true,
            MetricsError::Status { status, .. } => *status >= 500 || *status == 429,
            MetricsError::Url(_) | MetricsError::Write { .. } => false,
        }
    }
}

fn unix_seconds(instant: DateTime<Utc>) -> f64 {
    instant.timestamp_micros() as f64 / 1e6
}

/// The series of one stream of a run, labelled `source` and `stream`.
pub fn stream_samples(manifest: &Manifest, stream: &StreamReport) -> Vec<Sample> {
    let labels = [
        ("source", manifest.source_system.as_str()),
        ("stream", stream.name.as_str()),
    ];
    let mut samples = vec![
        Sample::new(ROWS_READ, &labels, stream.rows_read as f64),
        Sample::new(ROWS_WRITTEN, &labels, stream.rows_written as f64),
        Sample::new(DUPLICATE_ROWS, &labels, stream.duplicate_rows as f64),
        Sample::new(FILTERED_ROWS, &labels, stream.filtered_rows as f64),
        Sample::new(DEAD_LETTER_ROWS, &labels, stream.dead_letter_rows as f64),
        Sample::new(REQUESTS, &labels, stream.requests as f64),
        Sample::new(RETRIES, &labels, stream.retries as f64),
        Sample::new(PAGES, &labels, stream.pages as f64),
        Sample::new(BYTES_WRITTEN, &labels, stream.bytes_written as f64),
        Sample::new(RATE_LIMIT_WAITS, &labels, stream.rate_limit_waits_seconds),
        Sample::new(STREAM_DURATION, &labels, stream.duration_seconds),
    ];
    // Nothing landed this run: the lag is still measured from the newest cursor landed
    // before, which the checkpoint holds.
    let finished = manifest.finished_at;
    let lag = stream.lag_seconds.or_else(|| {
        stream
            .cursor_end
            .as_deref()
            .and_then(|cursor| crate::cursor::lag_seconds(cursor, finished))
    });
    if let Some(lag) = lag {
        samples.push(Sample::new(LAG, &labels, lag));
    }
    for status in STATUSES {
        let value = if stream.status.as_str() == status { 1.0 } else { 0.0 };
        samples.push(Sample::new(
            STREAM_STATUS,
            &[labels[0], labels[1], ("status", status)],
            value,
        ));
    }
    samples.push(Sample::new(STREAM_LAST_RUN, &labels, unix_seconds(finished)));
    if stream.status == Status::Succeeded {
        samples.push(Sample::new(LAST_SUCCESS, &labels, unix_seconds(finished)));
    }
    samples
}

/// The run-level series, labelled `source`.
pub fn run_samples(source: &str, status: &str, duration_seconds: f64, finished_at: DateTime<Utc>) -> Vec<Sample> {
    let labels = [("source", source)];
    let mut samples = vec![Sample::new(RUN_DURATION, &labels, duration_seconds)];
    for candidate in STATUSES {
        let value = if candidate == status { 1.0 } else { 0.0 };
        samples.push(Sample::new(RUN_STATUS, &[labels[0], ("status", candidate)], value));
    }
    samples.push(Sample::new(RUN_LAST, &labels, unix_seconds(finished_at)));
    samples
}

/// Every series of a run that wrote its manifest.
pub fn manifest_samples(manifest: &Manifest) -> Vec<Sample> {
    let mut samples: Vec<Sample> = manifest
        .streams
        .iter()
        .flat_map(|stream| stream_samples(manifest, stream))
        .collect();
    samples.extend(run_samples(
        &manifest.source_system,
        manifest.status.as_str(),
        manifest.duration_seconds,
        manifest.finished_at,
    ));
    samples
}

/// A float as the exposition format writes it.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// Renders `samples` in the text format, grouped by metric in [`ALL`] order, each group
/// with its `HELP` and `TYPE`. Labels named in `omit` are left out (a Pushgateway adds its
/// grouping labels itself and refuses pushed metrics that carry them).
pub fn render(samples: &[Sample], omit: &[&str]) -> String {
    let mut text = String::new();
    for metric in ALL {
        let mut family = samples.iter().filter(|sample| sample.name == metric.name).peekable();
        if family.peek().is_none() {
            continue;
        }
        text.push_str(&format!("# HELP {} {}\n", metric.name, metric.help));
        text.push_str(&format!("# TYPE {} {}\n", metric.name, metric.kind.as_str()));
        for sample in family {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .filter(|(name, _)| !omit.contains(&name.as_str()))
                .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
                .collect();
            if labels.is_empty() {
                text.push_str(metric.name);
            } else {
                text.push_str(&format!("{}{{{}}}", metric.name, labels.join(",")));
            }
            text.push(' ');
            text.push_str(&format_value(sample.value));
            text.push('\n');
        }
    }
    text
}

/// Parses the sample lines of a text this module rendered (the previous metrics file);
/// lines of unknown metrics and anything unparsable are skipped.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let metric = ALL.iter().find(|metric| metric.name == &line[..name_end])?;
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut name = String::new();
        loop {
            let (index, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[index + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut name), value));
                }
                other => name.push(other),
            }
        }
    }
    let value = match rest.split_whitespace().next()? {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name: metric.name,
        labels,
        value,
    })
}

/// The previous file's series that this run does not replace: those of other sources and
/// of streams this run did not touch, and the last success of touched streams that did
/// not succeed this time.
pub fn carried_over(previous: &[Sample], current: &[Sample]) -> Vec<Sample> {
    let sources: Vec<&str> = current.iter().filter_map(|sample| sample.label("source")).collect();
    let touched: Vec<(&str, &str)> = current
        .iter()
        .filter_map(|sample| Some((sample.label("source")?, sample.label("stream")?)))
        .collect();
    let succeeded: Vec<(&str, &str)> = current
        .iter()
        .filter(|sample| sample.name == LAST_SUCCESS.name)
        .filter_map(|sample| Some((sample.label("source")?, sample.label("stream")?)))
        .collect();
    previous
        .iter()
        .filter(|sample| {
            let Some(source) = sample.label("source") else {
                return false;
            };
            if !sources.contains(&source) {
                return true;
            }
            let Some(stream) = sample.label("stream") else {
                return false;
            };
            let key = (source, stream);
            !touched.contains(&key) || (sample.name == LAST_SUCCESS.name && !succeeded.contains(&key))
        })
        .cloned()
        .collect()
}

/// Writes `text` to `path` atomically: a temporary file in the same folder, renamed over
/// `path`, so a collector never reads half a file.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), MetricsError> {
    let failed = |source| MetricsError::Write {
        path: path.display().to_string(),
        source,
    };
    let folder = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(failed)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = folder.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(error));
    }
    Ok(())
}

/// Writes a run's series to the textfile, keeping what [`carried_over`] keeps.
pub fn write_file(path: &Path, samples: &[Sample]) -> Result<usize, MetricsError> {
    let previous = std::fs::read_to_string(path)
        .map(|text| parse_samples(&text))
        .unwrap_or_default();
    let mut all = carried_over(&previous, samples);
    all.extend(samples.iter().cloned());
    write_atomically(path, &render(&all, &[]))?;
    Ok(all.len())
}

/// The Pushgateway groups of a run's series: the grouping path and its samples.
pub fn push_groups(samples: &[Sample]) -> Vec<(String, Vec<Sample>)> {
    let mut groups: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for sample in samples {
        let Some(source) = sample.label("source") else {
            continue;
        };
        let path = match sample.label("stream") {
            Some(stream) => format!("metrics/job/{JOB}/source/{source}/stream/{stream}"),
            None => format!("metrics/job/{JOB}/source/{source}"),
        };
        groups.entry(path).or_default().push(sample.clone());
    }
    groups.into_iter().collect()
}

/// Pushes every group of `samples` to the Pushgateway at `base` with `POST`.
pub async fn push(base: &Url, samples: &[Sample]) -> Result<usize, MetricsError> {
    if !matches!(base.scheme(), "http" | "https") {
        return Err(MetricsError::Url(crate::redact::url(base)));
    }
    // A gateway that echoes its credentials in an error body must not leak them.
    if let Some(password) = base.password() {
        crate::redact::register(password);
        if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
            crate::redact::register(&decoded);
        }
    }
    let client = reqwest::Client::builder()
        // never follow a redirect: a 307/308 would replay the credentials to another host
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(crate::http::user_agent())
        .timeout(PUSH_TIMEOUT)
        .connect_timeout(PUSH_TIMEOUT.min(Duration::from_secs(5)))
        .build()
        .map_err(|error| MetricsError::Push {
            url: crate::redact::url(base),
            message: error.to_string(),
        })?;
    let root = base.as_str().trim_end_matches('/');
    let mut pushed = 0;
    for (group, group_samples) in push_groups(samples) {
        let url = format!("{root}/{group}");
        let shown = Url::parse(&url).map_or_else(|_| url.clone(), |url| crate::redact::url(&url));
        let response = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(render(&group_samples, &["source", "stream"]))
            .send()
            .await
            .map_err(|error| MetricsError::Push {
                url: shown.clone(),
                message: crate::error::describe(&error),
            })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let mut response = response;
            let body = crate::http::body::read_prefix(&mut response, crate::http::body::ERROR_BODY_LIMIT).await;
            return Err(MetricsError::Status {
                url: shown,
                status,
                body: crate::redact::excerpt_bytes(&body, crate::redact::EXCERPT_CHARS),
            });
        }
        pushed += group_samples.len();
    }
    Ok(pushed)
}

/// Where a run's metrics go (`--metrics-push-url`, `--metrics-file`).
#[derive(Clone, Debug, Default)]
pub struct MetricsTargets {
    /// Pushgateway base URL, e.g. `http://pushgateway:9091`.
    pub push_url: Option<Url>,
    /// Textfile collector path, e.g. `/var/lib/node_exporter/landfall_shop.prom`.
    pub file: Option<PathBuf>,
}

impl MetricsTargets {
    /// Whether any target is set.
    pub fn any(&self) -> bool {
        self.push_url.is_some() || self.file.is_some()
    }

    /// Exports `samples` to every target; failures become events, never errors.
    pub async fn export(&self, samples: &[Sample], events: &Events) {
        if let Some(url) = &self.push_url {
            let shown = crate::redact::url(url);
            match push(url, samples).await {
                Ok(series) => events.metrics_exported("pushgateway", &shown, series),
                Err(error) => events.metrics_export_failed(
                    "pushgateway",
                    &shown,
                    error.code().as_str(),
                    error.retryable(),
                    &error.to_string(),
                ),
            }
        }
        if let Some(path) = &self.file {
            let shown = path.display().to_string();
            match write_file(path, samples) {
                Ok(series) => events.metrics_exported("file", &shown, series),
                Err(error) => events.metrics_export_failed(
                    "file",
                    &shown,
                    error.code().as_str(),
                    error.retryable(),
                    &error.to_string(),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, status: Status) -> StreamReport {
        StreamReport {
            name: name.to_owned(),
            sync_mode: crate::config::SyncMode::Incremental,
            endpoint: "GET /orders".to_owned(),
            cursor_start: None,
            cursor_end: Some("2024-01-01T00:00:00Z".to_owned()),
            pages: 3,
            requests: 4,
            retries: 1,
            rows_read: 250,
            rows_written: 240,
            duplicate_rows: 10,
            filtered_rows: 0,
            dead_letter_rows: 0,
            bytes_written: 4096,
            lag_seconds: Some(12.5),
            status,
            error: None,
            files: vec![],
            duration_seconds: 1.25,
            rate_limit_waits_seconds: 0.5,
            dead_letter_files: vec![],
            schema_changes: vec![],
            source_snapshot: None,
            async_job: None,
        }
    }

    fn manifest(streams: Vec<StreamReport>) -> Manifest {
        crate::report::manifest::sample("0190c7a0-0000-7000-8000-000000000000", streams)
    }

    #[test]
    fn renders_help_type_and_labelled_samples() {
        let manifest = manifest(vec![report("orders", Status::Succeeded)]);
        let text = render(&manifest_samples(&manifest), &[]);
        assert!(text.contains("# HELP landfall_rows_written_total Records landed in stored parts by the last run.\n# TYPE landfall_rows_written_total counter\nlandfall_rows_written_total{source=\"shop\",stream=\"orders\"} 240\n"), "{text}");
        assert!(text.contains("landfall_lag_seconds{source=\"shop\",stream=\"orders\"} 12.5\n"));
        assert!(text.contains("landfall_stream_status{source=\"shop\",stream=\"orders\",status=\"succeeded\"} 1\n"));
        assert!(text.contains("landfall_stream_status{source=\"shop\",stream=\"orders\",status=\"failed\"} 0\n"));
        assert!(
            text.contains("landfall_last_success_timestamp_seconds{source=\"shop\",stream=\"orders\"} 1714557602\n")
        );
        assert!(text.contains("landfall_run_duration_seconds{source=\"shop\"} 2\n"));
        assert!(text.contains("# TYPE landfall_run_status gauge\n"));
        // Each family's HELP and TYPE appear once.
        assert_eq!(text.matches("# TYPE landfall_stream_status ").count(), 1);
    }

    #[test]
    fn a_failed_stream_has_no_last_success() {
        let manifest = manifest(vec![report("orders", Status::Failed)]);
        let samples = manifest_samples(&manifest);
        assert!(!samples.iter().any(|sample| sample.name == LAST_SUCCESS.name));
        assert!(samples.iter().any(|sample| sample.name == STREAM_LAST_RUN.name));
    }

    #[test]
    fn lag_falls_back_to_the_checkpoint_when_nothing_landed() {
        let mut idle = report("orders", Status::Succeeded);
        idle.lag_seconds = None;
        let manifest = manifest(vec![idle]);
        let lag = manifest_samples(&manifest)
            .into_iter()
            .find(|sample| sample.name == LAG.name)
            .unwrap();
        // 2024-05-01T10:00:02Z minus 2024-01-01T00:00:00Z.
        assert_eq!(lag.value, 10_490_402.0);
    }

    #[test]
    fn push_groups_by_source_and_stream_without_the_grouping_labels() {
        let manifest = manifest(vec![
            report("orders", Status::Succeeded),
            report("customers", Status::Failed),
        ]);
        let groups = push_groups(&manifest_samples(&manifest));
        let paths: Vec<&str> = groups.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metrics/job/landfall/source/shop",
                "metrics/job/landfall/source/shop/stream/customers",
                "metrics/job/landfall/source/shop/stream/orders"
            ]
        );
        let body = render(&groups[2].1, &["source", "stream"]);
        assert!(body.contains("landfall_rows_written_total 240\n"), "{body}");
        assert!(
            body.contains("landfall_stream_status{status=\"succeeded\"} 1\n"),
            "{body}"
        );
        assert!(!body.contains("source="), "{body}");
    }

    #[test]
    fn parses_what_it_renders() {
        let manifest = manifest(vec![report("orders", Status::Succeeded)]);
        let mut samples = manifest_samples(&manifest);
        samples.push(Sample::new(ROWS_READ, &[("source", "a\"b\\c\nd")], 1.5));
        let parsed = parse_samples(&render(&samples, &[]));
        // Rendering groups by metric, so compare as sets.
        assert_eq!(parsed.len(), samples.len());
        for sample in &samples {
            assert!(parsed.contains(sample), "{sample:?}");
        }
        assert!(parse_samples("unknown_metric 1\nlandfall_pages_total{broken 1\n").is_empty());
    }

    #[test]
    fn the_file_keeps_untouched_streams_and_earlier_successes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("landfall.prom");
        let first = manifest(vec![
            report("orders", Status::Succeeded),
            report("customers", Status::Succeeded),
        ]);
        write_file(&path, &manifest_samples(&first)).unwrap();
        // The next run touches only orders, and it fails.
        let mut second = manifest(vec![report("orders", Status::Failed)]);
        second.finished_at = crate::clock::parse_rfc3339("2024-05-02T10:00:02.000000Z").unwrap();
        second.streams[0].rows_written = 7;
        write_file(&path, &manifest_samples(&second)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let samples = parse_samples(&text);
        let value = |name: &str, stream: &str| -> Vec<f64> {
            samples
                .iter()
                .filter(|sample| sample.name == name && sample.label("stream") == Some(stream))
                .map(|sample| sample.value)
                .collect()
        };
        assert_eq!(value(ROWS_WRITTEN.name, "orders"), [7.0]);
        assert_eq!(value(ROWS_WRITTEN.name, "customers"), [240.0]);
        // The failed run's last run time is new, its last success the first run's.
        assert_eq!(value(STREAM_LAST_RUN.name, "orders"), [1_714_644_002.0]);
        assert_eq!(value(LAST_SUCCESS.name, "orders"), [1_714_557_602.0]);
        assert_eq!(value(LAST_SUCCESS.name, "customers"), [1_714_557_602.0]);
        // Run-level series are this run's only.
        assert_eq!(text.matches("landfall_run_duration_seconds{").count(), 1);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn values_use_the_exposition_spelling() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
