//! The run manifest (contract §4): written last, it is the commit marker of a run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SyncMode;
use crate::error::ErrorRecord;
use crate::landing::part::StoredPart;

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;

/// Status of a run or a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Succeeded,
    Partial,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Partial => "partial",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// The connector that wrote a manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connector {
    pub name: String,
    pub version: String,
    pub git_sha: String,
}

/// One stream's account of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamReport {
    pub name: String,
    pub sync_mode: SyncMode,
    pub endpoint: String,
    pub cursor_start: Option<String>,
    pub cursor_end: Option<String>,
    pub pages: u64,
    pub requests: u64,
    pub retries: u64,
    pub rows_read: u64,
    pub rows_written: u64,
    pub duplicate_rows: u64,
    /// Records dropped by `client_side_filter` as outside the window.
    #[serde(default)]
    pub filtered_rows: u64,
    pub dead_letter_rows: u64,
    pub bytes_written: u64,
    pub lag_seconds: Option<f64>,
    pub status: Status,
    pub error: Option<ErrorRecord>,
    pub files: Vec<StoredPart>,
    /// Dead-letter parts written by this stream in this run.
    #[serde(default)]
    pub dead_letter_files: Vec<StoredPart>,
    /// Differences of this run's fields and types from the previous run's.
    #[serde(default)]
    pub schema_changes: Vec<crate::quality::drift::SchemaChange>,
    /// Wall-clock seconds the stream took, from its start to its last checkpoint.
    #[serde(default)]
    pub duration_seconds: f64,
    /// Seconds its requests waited on rate limits (client-side limits and the server's
    /// `Retry-After` on 429 alike).
    #[serde(default)]
    pub rate_limit_waits_seconds: f64,
    /// Database sources: the consistent snapshot the stream read in. Absent for rest
    /// sources, and when the server names none cheaply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_snapshot: Option<SourceSnapshot>,
    /// Streams with `async_job`: the job this run polled. Absent for other streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_job: Option<AsyncJobReport>,
}

/// The asynchronous job of a stream's run (`docs/contract.md`, the manifest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncJobReport {
    /// The vendor's id of the last job the run polled.
    pub id: String,
    /// The job was created by an earlier run (read from the stream's state).
    pub resumed: bool,
    /// Jobs found expired (404 or 410) and created again in this run (at most 1).
    pub expired: u64,
}

/// The consistent snapshot a database stream read in (`docs/contract.md`, the manifest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    /// What names it: `pg_current_snapshot` (PostgreSQL), `gtid_current_pos` (MariaDB) or
    /// `gtid_executed` (MySQL).
    pub kind: String,
    /// Its text: PostgreSQL's `xmin:xmax:xip,..` (64-bit transaction ids) of the read
    /// transaction, or the GTID position read right after the snapshot opened. With a
    /// reconnect, the first transaction's.
    pub snapshot: String,
    /// `incremental.mode: xmin`: the checkpoint this read supplies (the snapshot's xmin, a
    /// full transaction id), written once every part is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmin_checkpoint: Option<u64>,
}

impl StreamReport {
    /// The report of a stream that stopped before it read anything.
    pub fn not_run(stream: &crate::config::StreamConfig, status: Status, error: ErrorRecord) -> Self {
        Self {
            name: stream.name.clone(),
            sync_mode: stream.sync_mode(),
            endpoint: String::new(),
            cursor_start: None,
            cursor_end: None,
            pages: 0,
            requests: 0,
            retries: 0,
            rows_read: 0,
            rows_written: 0,
            duplicate_rows: 0,
            filtered_rows: 0,
            dead_letter_rows: 0,
            bytes_written: 0,
            lag_seconds: None,
            status,
            error: Some(error),
            files: vec![],
            dead_letter_files: vec![],
            schema_changes: vec![],
            duration_seconds: 0.0,
            rate_limit_waits_seconds: 0.0,
            source_snapshot: None,
            async_job: None,
        }
    }
}

/// The run manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub run_id: String,
    pub source_system: String,
    pub tenant: Option<String>,
    pub environment: Option<String>,
    pub landing_url: String,
    pub connector: Connector,
    pub config_sha256: String,
    /// When the run started (UTC, written as `2026-11-21T11:12:14.123456Z`).
    #[serde(with = "crate::clock::micros")]
    pub started_at: DateTime<Utc>,
    /// When the run finished, after its last stream.
    #[serde(with = "crate::clock::micros")]
    pub finished_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub status: Status,
    /// The orchestrator's data interval the run was scheduled for (audit only; the
    /// streams' `cursor_start` says what was read). Absent when none was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_interval: Option<DataInterval>,
    pub streams: Vec<StreamReport>,
}

/// `data_interval` of a manifest: the scheduled run's interval, as the orchestrator gave it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInterval {
    pub start: Option<String>,
    pub end: Option<String>,
}

/// A manifest of source `shop` that ran two seconds on 2024-05-01, for tests.
#[cfg(test)]
pub(crate) fn sample(run_id: &str, streams: Vec<StreamReport>) -> Manifest {
    Manifest {
        manifest_version: 1,
        run_id: run_id.to_owned(),
        source_system: "shop".to_owned(),
        tenant: None,
        environment: None,
        landing_url: "memory://".to_owned(),
        connector: Connector {
            name: "landfall".to_owned(),
            version: "0".to_owned(),
            git_sha: "x".to_owned(),
        },
        config_sha256: String::new(),
        started_at: crate::clock::parse_rfc3339("2024-05-01T10:00:00.000000Z").unwrap(),
        finished_at: crate::clock::parse_rfc3339("2024-05-01T10:00:02.000000Z").unwrap(),
        duration_seconds: 2.0,
        status: run_status(&streams),
        data_interval: None,
        streams,
    }
}

impl Manifest {
    /// One compact JSON line, so the manifests also read as NDJSON.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a manifest serializes");
        line.push(b'\n');
        line
    }
}

/// The run status that follows from its streams' statuses.
pub fn run_status(streams: &[StreamReport]) -> Status {
    if streams.iter().any(|stream| stream.status == Status::Cancelled) {
        Status::Cancelled
    } else if streams.iter().any(|stream| stream.status == Status::Failed) {
        Status::Failed
    } else if streams.iter().any(|stream| stream.status == Status::Partial) {
        Status::Partial
    } else {
        Status::Succeeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as the code before typed timestamps wrote it (one compact line).
    const WRITTEN_BEFORE: &str = concat!(
        r#"{"manifest_version":1,"run_id":"0190c7a0-0000-7000-8000-000000000001","source_system":"shop","#,
        r#""tenant":null,"environment":"prod","landing_url":"file:///landing","#,
        r#""connector":{"name":"landfall","version":"0.1.0","git_sha":"abc"},"config_sha256":"00ff","#,
        r#""started_at":"2026-11-21T11:12:14.123456Z","finished_at":"2026-11-21T11:12:16.000001Z","#,
        r#""duration_seconds":1.876545,"status":"partial","#,
        r#""data_interval":{"start":"2026-11-20T00:00:00+00:00","end":null},"#,
        r#""streams":[{"name":"orders","sync_mode":"incremental","endpoint":"/orders","#,
        r#""cursor_start":"2026-11-20T00:00:00Z","cursor_end":"2026-11-21T00:00:00Z","pages":2,"#,
        r#""requests":3,"retries":1,"rows_read":10,"rows_written":9,"duplicate_rows":1,"#,
        r#""filtered_rows":0,"dead_letter_rows":0,"bytes_written":512,"lag_seconds":40334.123456,"#,
        r#""status":"partial","error":{"code":"SERVER_ERROR","message":"HTTP 503","retryable":true},"#,
        r#""files":[{"path":"shop/orders/extracted_date=2026-11-21/r-00000.jsonl.gz","rows":9,"#,
        r#""bytes":512,"sha256":"ab"}],"dead_letter_files":[],"schema_changes":[],"#,
        r#""duration_seconds":1.5,"rate_limit_waits_seconds":0.0}]}"#,
        "\n"
    );

    #[test]
    fn a_manifest_written_before_typed_timestamps_reads_and_writes_back_byte_for_byte() {
        let manifest: Manifest = serde_json::from_str(WRITTEN_BEFORE).unwrap();
        assert_eq!(
            (manifest.finished_at - manifest.started_at).num_microseconds(),
            Some(1_876_545)
        );
        assert_eq!(String::from_utf8(manifest.to_line()).unwrap(), WRITTEN_BEFORE);
    }

    #[test]
    fn a_source_snapshot_is_written_only_when_there_is_one() {
        let mut manifest: Manifest = serde_json::from_str(WRITTEN_BEFORE).unwrap();
        assert_eq!(manifest.streams[0].source_snapshot, None);
        manifest.streams[0].source_snapshot = Some(SourceSnapshot {
            kind: "pg_current_snapshot".to_owned(),
            snapshot: "745:750:746".to_owned(),
            xmin_checkpoint: Some(745),
        });
        let line = String::from_utf8(manifest.to_line()).unwrap();
        assert!(
            line.contains(
                r#""rate_limit_waits_seconds":0.0,"source_snapshot":{"kind":"pg_current_snapshot","snapshot":"745:750:746","xmin_checkpoint":745}}"#
            ),
            "{line}"
        );
        let read: Manifest = serde_json::from_str(&line).unwrap();
        assert_eq!(read, manifest);
    }

    #[test]
    fn started_and_finished_read_any_rfc3339_and_nothing_else() {
        let with = |started_at: &str| WRITTEN_BEFORE.replace("2026-11-21T11:12:14.123456Z", started_at);
        let manifest: Manifest = serde_json::from_str(&with("2026-11-21T12:12:14.123456+01:00")).unwrap();
        assert_eq!(
            crate::clock::rfc3339_micros(manifest.started_at),
            "2026-11-21T11:12:14.123456Z"
        );
        // Not a timestamp: the manifest does not parse (`orphans` then counts it unreadable
        // and never calls its run's objects orphans).
        let error = serde_json::from_str::<Manifest>(&with("yesterday")).unwrap_err();
        assert!(error.to_string().contains("not an RFC 3339 timestamp"), "{error}");
    }
}
