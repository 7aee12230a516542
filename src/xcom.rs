//! The compact run summary for orchestrators (`--xcom-output`; the DAGs pass
//! `/airflow/xcom/return.json`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::ErrorRecord;
use crate::manifest::Manifest;

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
