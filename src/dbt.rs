//! `landfall dbt-sources`: the dbt sources file for a connector. One source per connector,
//! one table per stream plus `_manifests`, read by dbt-duckdb from where
//! `LANDFALL_LANDING_URL` points. The format is pinned in `dbt/README.md` ("Generated
//! sources format") and by `dbt/models/sources/demo.yml`, which the tests compare byte for
//! byte.

use std::fmt::Write;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::config::{Compression, ConnectorConfig, StreamConfig};

const DEFAULT_WARN_AFTER_SECONDS: u64 = 26 * 3600;
const DEFAULT_ERROR_AFTER_SECONDS: u64 = 50 * 3600;

const ENVELOPE_TYPES: &[(&str, &str)] = &[
    ("_source_system", "VARCHAR"),
    ("_source_object", "VARCHAR"),
    ("_source_endpoint", "VARCHAR"),
    ("_source_record_id", "VARCHAR"),
    ("_source_updated_at", "VARCHAR"),
    ("_extracted_at", "TIMESTAMPTZ"),
    ("_loaded_at", "TIMESTAMPTZ"),
    ("_run_id", "VARCHAR"),
    ("_connector_version", "VARCHAR"),
    ("_tenant", "VARCHAR"),
    ("_environment", "VARCHAR"),
    ("_payload_sha256", "VARCHAR"),
    ("_page", "BIGINT"),
    ("_raw", "VARCHAR"),
];

const MANIFEST_TYPES: &[(&str, &str)] = &[
    ("manifest_version", "BIGINT"),
    ("run_id", "VARCHAR"),
    ("source_system", "VARCHAR"),
    ("tenant", "VARCHAR"),
    ("environment", "VARCHAR"),
    ("landing_url", "VARCHAR"),
    ("connector", "STRUCT(name VARCHAR, version VARCHAR)"),
    ("config_sha256", "VARCHAR"),
    ("started_at", "TIMESTAMPTZ"),
    ("finished_at", "TIMESTAMPTZ"),
    ("duration_seconds", "DOUBLE"),
    ("status", "VARCHAR"),
    (
        "streams",
        "STRUCT(name VARCHAR, sync_mode VARCHAR, cursor_start VARCHAR, cursor_end VARCHAR, \
         pages BIGINT, requests BIGINT, retries BIGINT, rows_read BIGINT, rows_written BIGINT, \
         duplicate_rows BIGINT, dead_letter_rows BIGINT, bytes_written BIGINT, lag_seconds DOUBLE, \
         status VARCHAR, error STRUCT(code VARCHAR, message VARCHAR, retryable BOOLEAN), \
         files STRUCT(path VARCHAR, rows BIGINT, bytes BIGINT, sha256 VARCHAR)[])[]",
    ),
];

/// A column test in the generated file.
#[derive(Clone, Copy, PartialEq)]
enum ColumnTest {
    NotNull,
    AcceptedSource,
    AcceptedStream,
    NotNullIfKey,
    Sha256,
}

use ColumnTest::*;

const ENVELOPE_COLUMNS: &[(&str, &str, &[ColumnTest])] = &[
    (
        "_source_system",
        "Source name from the connector config.",
        &[NotNull, AcceptedSource],
    ),
    ("_source_object", "Stream name.", &[NotNull, AcceptedStream]),
    (
        "_source_endpoint",
        "Method and path of the request that returned the record.",
        &[NotNull],
    ),
    (
        "_source_record_id",
        "Primary key as text; a composite key is a JSON array.",
        &[NotNullIfKey],
    ),
    (
        "_source_updated_at",
        "The record's cursor value as the source gave it, or null.",
        &[],
    ),
    (
        "_extracted_at",
        "When the page holding the record arrived (UTC).",
        &[NotNull],
    ),
    ("_loaded_at", "When landfall wrote the line (UTC).", &[NotNull]),
    ("_run_id", "Id of the landfall run (UUIDv7).", &[NotNull]),
    (
        "_connector_version",
        "Version of landfall that landed the record.",
        &[NotNull],
    ),
    ("_tenant", "Tenant from the connector config, or null.", &[]),
    ("_environment", "Environment from the connector config, or null.", &[]),
    (
        "_payload_sha256",
        "Hex SHA-256 of the bytes of _raw.",
        &[NotNull, Sha256],
    ),
    (
        "_page",
        "Page sequence number within the stream's run, from 1.",
        &[NotNull],
    ),
    (
        "_raw",
        "The record exactly as the source sent it (JSON text).",
        &[NotNull],
    ),
    ("extracted_date", "Partition: UTC date the run started.", &[]),
    ("run_id", "Partition: id of the run that wrote the file.", &[]),
    ("filename", "Full path of the part file holding the row.", &[]),
];

static PLAIN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_/][A-Za-z0-9_/.-]*$").expect("valid pattern"));
const YAML_WORDS: &[&str] = &["null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"];

/// A name as a YAML scalar: plain when unambiguous, else a JSON string.
fn scalar(value: &str) -> String {
    if PLAIN.is_match(value) && !YAML_WORDS.contains(&value.to_lowercase().as_str()) {
        value.to_owned()
    } else {
        quoted(value)
    }
}

fn quoted(value: &str) -> String {
    serde_json::to_string(value).expect("strings serialize")
}

fn flow_list(values: &[String]) -> String {
    format!("[{}]", values.iter().map(|v| scalar(v)).collect::<Vec<_>>().join(", "))
}

fn duckdb_struct(pairs: &[(&str, &str)]) -> String {
    let fields: Vec<String> = pairs.iter().map(|(name, kind)| format!("'{name}': '{kind}'")).collect();
    format!("{{{}}}", fields.join(", "))
}

/// Whole hours as hours, anything else as minutes rounded up.
fn threshold(seconds: u64) -> String {
    if seconds % 3600 == 0 {
        format!("{{count: {}, period: hour}}", seconds / 3600)
    } else {
        format!("{{count: {}, period: minute}}", seconds.div_ceil(60))
    }
}

fn seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs_f64().ceil() as u64
}

/// `columns` from the config, else from the JSON Schema's top-level properties.
fn stream_columns(stream: &StreamConfig) -> Vec<(String, String)> {
    if !stream.columns.is_empty() {
        return stream
            .columns
            .iter()
            .map(|(name, kind)| (name.clone(), kind.as_str().unwrap_or("string").to_owned()))
            .collect();
    }
    let Some(properties) = stream
        .schema
        .as_ref()
        .and_then(|schema| schema.get("properties"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let kinds: Vec<&str> = match property.get("type") {
                Some(Value::String(kind)) => vec![kind.as_str()],
                Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
                _ => vec!["string"],
            };
            let kind = kinds.into_iter().find(|kind| *kind != "null").unwrap_or("string");
            let column = match kind {
                "string" => match property.get("format").and_then(Value::as_str) {
                    Some("date-time") => "timestamp",
                    Some("date") => "date",
                    _ => "string",
                },
                "integer" => "integer",
                "number" => "number",
                "boolean" => "boolean",
                _ => "json",
            };
            (name.clone(), column.to_owned())
        })
        .collect()
}

/// Renders the sources file of `config`.
pub fn render_sources(config: &ConnectorConfig) -> String {
    let source = &config.source.name;
    let gzip = config.landing.compression != Compression::None;
    let part_glob = if gzip { "**/*.jsonl.gz" } else { "**/*.jsonl" };
    let names: Vec<String> = config.streams.iter().map(|stream| stream.name.clone()).collect();
    let mut out = String::new();
    let mut w = |line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    w(format!(
        "# Generated by `landfall dbt-sources` from the config of source `{source}`. Do not edit: re-run it."
    ));
    w("version: 2".into());
    w(String::new());
    w("sources:".into());
    w(format!("  - name: {}", scalar(source)));
    let description = config.source.description.clone().unwrap_or_else(|| {
        format!(
            "Records landfall landed from source `{source}`, read where LANDFALL_LANDING_URL points (default file://../landing)."
        )
    });
    w(format!("    description: {}", quoted(&description)));
    w("    loader: landfall".into());
    w("    config:".into());
    w("      loaded_at_field: _loaded_at".into());
    w("      freshness:".into());
    w(format!("        warn_after: {}", threshold(DEFAULT_WARN_AFTER_SECONDS)));
    w(format!(
        "        error_after: {}",
        threshold(DEFAULT_ERROR_AFTER_SECONDS)
    ));
    w("      meta:".into());
    w("        landfall_landing_root: \"{{ env_var('LANDFALL_LANDING_URL', 'file://../landing').rstrip('/') | replace('file://', '', 1) }}\"".into());
    w("    tables:".into());
    for stream in &config.streams {
        let name = &stream.name;
        let cursor_field = stream
            .incremental
            .as_ref()
            .map(|incremental| incremental.cursor_field.as_str());
        w(format!("      - name: {}", scalar(name)));
        let description = stream.description.clone().unwrap_or_else(|| {
            format!("Stream `{name}` of source `{source}`: one row per landed record version; `_raw` holds the record as the API sent it.")
        });
        w(format!("        description: {}", quoted(&description)));
        w("        config:".into());
        match &stream.freshness {
            None => {}
            Some(None) => w("          freshness: null".into()),
            Some(Some(freshness)) => {
                w("          freshness:".into());
                if let Some(warn) = freshness.warn_after {
                    w(format!("            warn_after: {}", threshold(seconds(warn.0))));
                }
                if let Some(error) = freshness.error_after {
                    w(format!("            error_after: {}", threshold(seconds(error.0))));
                }
            }
        }
        w("          meta:".into());
        w("            formatter: template".into());
        let location = format!(
            "read_json_auto('${{landfall_landing_root}}/{source}/{name}/{part_glob}', format = 'newline_delimited', \
             hive_partitioning = true, hive_types = {{'extracted_date': 'DATE', 'run_id': 'VARCHAR'}}, filename = true, \
             columns = {})",
            duckdb_struct(ENVELOPE_TYPES)
        );
        w(format!("            external_location: {}", quoted(&location)));
        w("            landfall:".into());
        w(format!("              source: {}", scalar(source)));
        w(format!("              stream: {}", scalar(name)));
        w(format!("              path: {}", scalar(&format!("{source}/{name}"))));
        w(format!("              files: {}", quoted(part_glob)));
        w("              format: jsonl".into());
        w(format!(
            "              compression: {}",
            if gzip { "gzip" } else { "none" }
        ));
        w("              partitions: [extracted_date, run_id]".into());
        w(format!("              sync_mode: {}", stream.sync_mode()));
        w(format!("              primary_key: {}", flow_list(&stream.primary_key)));
        w(format!(
            "              cursor_field: {}",
            cursor_field.map_or_else(|| "null".to_owned(), scalar)
        ));
        let columns: Vec<String> = stream_columns(stream)
            .iter()
            .map(|(column, kind)| format!("{}: {}", scalar(column), scalar(kind)))
            .collect();
        w(format!("              columns: {{{}}}", columns.join(", ")));
        match &stream.delete_marker {
            Some(marker) => {
                let mut parts = vec![format!("field: {}", scalar(&marker.field))];
                if let Some(value) = &marker.value {
                    parts.push(format!("value: {}", python_json(value)));
                }
                w(format!("              delete_marker: {{{}}}", parts.join(", ")));
            }
            None => w("              delete_marker: null".into()),
        }
        w("        data_tests:".into());
        w("          - landfall.landfall_no_duplicate_landed_rows".into());
        w("        columns:".into());
        for (column, description, tests) in ENVELOPE_COLUMNS {
            let tests: Vec<ColumnTest> = tests
                .iter()
                .flat_map(|test| match test {
                    NotNullIfKey if stream.primary_key.is_empty() => vec![],
                    NotNullIfKey => vec![NotNull],
                    other => vec![*other],
                })
                .collect();
            w(format!("          - name: {column}"));
            w(format!("            description: {}", quoted(description)));
            if tests.is_empty() {
                continue;
            }
            w("            data_tests:".into());
            for test in tests {
                match test {
                    NotNull => w("              - not_null".into()),
                    AcceptedSource | AcceptedStream => {
                        let value = if test == AcceptedSource { source } else { name };
                        w("              - accepted_values:".into());
                        w("                  arguments:".into());
                        w(format!("                    values: [{}]", quoted(value)));
                    }
                    Sha256 => {
                        w("              - landfall.landfall_matches_regex:".into());
                        w("                  arguments:".into());
                        w("                    pattern: \"^[0-9a-f]{64}$\"".into());
                    }
                    NotNullIfKey => unreachable!("expanded above"),
                }
            }
        }
    }
    w("      - name: _manifests".into());
    w(format!(
        "        description: {}",
        quoted(&format!(
            "Run manifests of source `{source}`: one row per committed run, with per-stream counts and the files each stream wrote."
        ))
    ));
    w("        config:".into());
    w("          loaded_at_field: finished_at".into());
    w("          meta:".into());
    w("            formatter: template".into());
    let location = format!(
        "read_json_auto('${{landfall_landing_root}}/{source}/_manifests/**/*.json', format = 'newline_delimited', \
         hive_partitioning = true, hive_types = {{'extracted_date': 'DATE'}}, filename = true, columns = {})",
        duckdb_struct(MANIFEST_TYPES)
    );
    w(format!("            external_location: {}", quoted(&location)));
    w("            landfall:".into());
    w(format!("              source: {}", scalar(source)));
    w("              stream: _manifests".into());
    w(format!(
        "              path: {}",
        scalar(&format!("{source}/_manifests"))
    ));
    w("              files: \"**/*.json\"".into());
    w("              format: jsonl".into());
    w("              compression: none".into());
    w("              partitions: [extracted_date]".into());
    w("        data_tests:".into());
    for test in ["landfall_manifest_rows_reconcile", "landfall_manifest_files_exist"] {
        w(format!("          - landfall.{test}:"));
        w("              arguments:".into());
        w(format!("                source_name: {}", scalar(source)));
        w(format!("                streams: {}", flow_list(&names)));
    }
    w("        columns:".into());
    w("          - name: run_id".into());
    w(format!(
        "            description: {}",
        quoted("Id of the run (UUIDv7); matches _run_id of the rows it landed.")
    ));
    w("            data_tests:".into());
    w("              - not_null".into());
    w("              - unique".into());
    w("          - name: source_system".into());
    w(format!(
        "            description: {}",
        quoted("Source name from the connector config.")
    ));
    w("            data_tests:".into());
    w("              - accepted_values:".into());
    w("                  arguments:".into());
    w(format!("                    values: [{}]", quoted(source)));
    w("          - name: status".into());
    w(format!(
        "            description: {}",
        quoted("Run outcome: succeeded, partial, failed or cancelled.")
    ));
    w("            data_tests:".into());
    w("              - not_null".into());
    w("              - accepted_values:".into());
    w("                  arguments:".into());
    w("                    values: [\"succeeded\", \"partial\", \"failed\", \"cancelled\"]".into());
    w("          - name: streams".into());
    w(format!(
        "            description: {}",
        quoted(
            "Per stream: name, sync_mode, cursors, counts, status, error and files [{path, rows, bytes, sha256}] (paths relative to the landing root)."
        )
    ));
    w("          - name: finished_at".into());
    w(format!(
        "            description: {}",
        quoted("When the run finished (UTC).")
    ));
    w("            data_tests:".into());
    w("              - not_null".into());
    out
}

/// JSON text as Python's `json.dumps` writes it (`, ` and `: ` separators), which the
/// reference generator uses for delete-marker values.
fn python_json(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("[{}]", items.iter().map(python_json).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let mut text = String::from("{");
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    text.push_str(", ");
                }
                let _ = write!(text, "{}: {}", quoted(key), python_json(item));
            }
            text.push('}');
            text
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Resolve;

    #[test]
    fn demo_config_renders_the_reference_file() {
        let config = ConnectorConfig::from_yaml(crate::demo::DEMO_CONFIG, Resolve::SyntaxOnly, &|_| None)
            .unwrap()
            .config;
        let expected = include_str!("../dbt/models/sources/demo.yml");
        assert_eq!(render_sources(&config), expected);
    }

    #[test]
    fn thresholds_and_scalars() {
        assert_eq!(threshold(3600 * 26), "{count: 26, period: hour}");
        assert_eq!(threshold(90 * 60 + 1), "{count: 91, period: minute}");
        assert_eq!(scalar("updated_at"), "updated_at");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(python_json(&serde_json::json!({"a": [1, true]})), "{\"a\": [1, true]}");
    }
}
