//! The compact run summary for orchestrators (`--xcom-output`; the DAGs pass
//! `/airflow/xcom/return.json`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::ErrorRecord;
use crate::report::manifest::Manifest;

/// What an orchestrator learns about a run.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub status: String,
    pub exit_code: u8,
    pub run_id: Option<String>,
    pub source: String,
    pub manifest_path: Option<String>,
    pub streams: BTreeMap<String, StreamSummary>,
    /// Set when the run failed before its manifest was written.
    pub error: Option<ErrorRecord>,
}

/// One stream's line in the summary.
#[derive(Debug, Serialize)]
pub struct StreamSummary {
    pub status: String,
    pub rows_written: u64,
    pub cursor_end: Option<String>,
    pub error_code: Option<String>,
}

impl Summary {
    pub fn from_manifest(manifest: &Manifest, manifest_url: &str, exit_code: u8) -> Self {
        Self {
            status: manifest.status.as_str().to_owned(),
            exit_code,
            run_id: Some(manifest.run_id.clone()),
            source: manifest.source_system.clone(),
            manifest_path: Some(manifest_url.to_owned()),
            streams: manifest
                .streams
                .iter()
                .map(|stream| {
                    (
                        stream.name.clone(),
                        StreamSummary {
                            status: stream.status.as_str().to_owned(),
                            rows_written: stream.rows_written,
                            cursor_end: stream.cursor_end.clone(),
                            error_code: stream.error.as_ref().map(|error| error.code.clone()),
                        },
                    )
                })
                .collect(),
            error: None,
        }
    }

    /// The summary of a run that stopped before writing its manifest (invalid config, a
    /// held lease, an unreachable landing zone, ...).
    pub fn failed(source: &str, run_id: Option<&str>, exit_code: u8, error: ErrorRecord) -> Self {
        Self {
            status: "failed".to_owned(),
            exit_code,
            run_id: run_id.map(str::to_owned),
            source: source.to_owned(),
            manifest_path: None,
            streams: BTreeMap::new(),
            error: Some(error),
        }
    }

    /// Writes the summary as one JSON object (secrets scrubbed), creating parent folders.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let text = serde_json::to_string(self).expect("summary serializes");
        std::fs::write(path, crate::redact::scrub(&text).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::manifest::{Status, StreamReport};

    fn stream(name: &str, status: Status, rows: u64, cursor_end: Option<&str>) -> StreamReport {
        StreamReport {
            name: name.to_owned(),
            sync_mode: crate::config::SyncMode::Incremental,
            endpoint: String::new(),
            cursor_start: None,
            cursor_end: cursor_end.map(str::to_owned),
            pages: 1,
            requests: 1,
            retries: 0,
            rows_read: rows,
            rows_written: rows,
            duplicate_rows: 0,
            filtered_rows: 0,
            dead_letter_rows: 0,
            bytes_written: 10,
            lag_seconds: None,
            status,
            error: (status == Status::Partial).then(|| ErrorRecord {
                code: "RATE_LIMIT".to_owned(),
                message: "stopped at the last checkpoint".to_owned(),
                retryable: true,
            }),
            files: vec![],
            duration_seconds: 1.0,
            rate_limit_waits_seconds: 0.0,
            dead_letter_files: vec![],
            schema_changes: vec![],
            source_snapshot: None,
            async_job: None,
        }
    }

    /// A partial run (some stream stopped early at a checkpoint) is summarised as such,
    /// with exit code 3 and each stream's rows and cursor.
    #[test]
    fn a_partial_run_is_written_with_its_streams() {
        let streams = vec![
            stream("orders", Status::Partial, 40, Some("2024-01-02T00:00:00Z")),
            stream("customers", Status::Succeeded, 7, None),
        ];
        let manifest = crate::report::manifest::sample("0190c7a0-0000-7000-8000-000000000001", streams);
        let exit = crate::extract::exit_for(&manifest);
        let summary = Summary::from_manifest(&manifest, "memory:///shop/_manifests/x.json", exit.code());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xcom/return.json");
        summary.write(&path).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["status"], "partial");
        assert_eq!(written["exit_code"], 3);
        assert_eq!(written["run_id"], "0190c7a0-0000-7000-8000-000000000001");
        assert_eq!(written["manifest_path"], "memory:///shop/_manifests/x.json");
        assert_eq!(written["streams"]["orders"]["status"], "partial");
        assert_eq!(written["streams"]["orders"]["rows_written"], 40);
        assert_eq!(written["streams"]["orders"]["cursor_end"], "2024-01-02T00:00:00Z");
        assert_eq!(written["streams"]["orders"]["error_code"], "RATE_LIMIT");
        assert_eq!(written["streams"]["customers"]["rows_written"], 7);
        assert!(written["error"].is_null());
    }
}
