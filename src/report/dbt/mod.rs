//! `landfall dbt-sources`: the dbt sources file for a connector, and optionally its staging
//! models. One source per connector, one table per stream plus `_manifests`. With the duckdb
//! adapter the tables are read by dbt-duckdb from where `LANDFALL_LANDING_URL` points; with a
//! warehouse adapter each table carries a dbt-external-tables `external:` block
//! ([`warehouse`]) that `stage_external_sources` turns into an external table. The duckdb
//! format is pinned in `dbt/README.md` ("Generated sources format") and by
//! `dbt/models/sources/demo/demo.yml`, which the tests compare byte for byte.

mod staging;
mod warehouse;

pub use staging::render_staging;
pub use warehouse::Adapter;

use std::fmt::Write;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::config::{ConnectorConfig, StreamConfig};
use crate::landing::config::Compression;
use warehouse::Kind;

const DEFAULT_WARN_AFTER_SECONDS: u64 = 26 * 3600;
const DEFAULT_ERROR_AFTER_SECONDS: u64 = 50 * 3600;

const ENVELOPE_TYPES: &[(&str, Kind)] = &[
    ("_source_system", Kind::Text),
    ("_source_object", Kind::Text),
    ("_source_endpoint", Kind::Text),
    ("_source_record_id", Kind::Text),
    ("_source_updated_at", Kind::Text),
    ("_extracted_at", Kind::Timestamp),
    ("_loaded_at", Kind::Timestamp),
    ("_run_id", Kind::Text),
    ("_connector_version", Kind::Text),
    ("_tenant", Kind::Text),
    ("_environment", Kind::Text),
    ("_payload_sha256", Kind::Text),
    ("_page", Kind::Int),
    ("_raw", Kind::Text),
];

/// The envelope's columns in a stream's files: `_record` too for csv, tsv and xml streams.
fn envelope_types(stream: &crate::config::StreamConfig) -> Vec<(&'static str, Kind)> {
    let mut types = ENVELOPE_TYPES.to_vec();
    if stream.format.has_parsed_form() {
        types.push(("_record", Kind::Text));
    }
    types
}

const MANIFEST_FILE: Kind = Kind::Struct(&[
    ("path", Kind::Text),
    ("rows", Kind::Int),
    ("bytes", Kind::Int),
    ("sha256", Kind::Text),
]);

const MANIFEST_STREAM: Kind = Kind::Struct(&[
    ("name", Kind::Text),
    ("sync_mode", Kind::Text),
    ("cursor_start", Kind::Text),
    ("cursor_end", Kind::Text),
    ("pages", Kind::Int),
    ("requests", Kind::Int),
    ("retries", Kind::Int),
    ("rows_read", Kind::Int),
    ("rows_written", Kind::Int),
    ("duplicate_rows", Kind::Int),
    ("dead_letter_rows", Kind::Int),
    ("bytes_written", Kind::Int),
    ("lag_seconds", Kind::Float),
    ("status", Kind::Text),
    (
        "error",
        Kind::Struct(&[("code", Kind::Text), ("message", Kind::Text), ("retryable", Kind::Bool)]),
    ),
    ("files", Kind::List(&MANIFEST_FILE)),
]);

const MANIFEST_TYPES: &[(&str, Kind)] = &[
    ("manifest_version", Kind::Int),
    ("run_id", Kind::Text),
    ("source_system", Kind::Text),
    ("tenant", Kind::Text),
    ("environment", Kind::Text),
    ("landing_url", Kind::Text),
    (
        "connector",
        Kind::Struct(&[("name", Kind::Text), ("version", Kind::Text)]),
    ),
    ("config_sha256", Kind::Text),
    ("started_at", Kind::Timestamp),
    ("finished_at", Kind::Timestamp),
    ("duration_seconds", Kind::Float),
    ("status", Kind::Text),
    ("streams", Kind::List(&MANIFEST_STREAM)),
];

/// Hive keys of the landing layout: `extracted_date=YYYY-MM-DD/run_id=<uuid>/`.
const STREAM_PARTITIONS: &[(&str, Kind)] = &[("extracted_date", Kind::Date), ("run_id", Kind::Text)];
const MANIFEST_PARTITIONS: &[(&str, Kind)] = &[("extracted_date", Kind::Date)];

/// What `landfall dbt-sources` writes the sources file for.
#[derive(Clone, Debug)]
pub struct SourcesOptions {
    /// The dbt adapter. Default: duckdb.
    pub adapter: Adapter,
    /// The landing root as the warehouse addresses it (`s3://...`, `gs://...`, a Snowflake
    /// stage `@db.schema.stage`). Default: a Jinja expression reading var
    /// `landfall_external_root`, else `LANDFALL_LANDING_URL` (Snowflake:
    /// `LANDFALL_SNOWFLAKE_STAGE`, default `@landfall_landing`). Ignored by duckdb.
    pub location: Option<String>,
}

impl Default for SourcesOptions {
    fn default() -> Self {
        SourcesOptions {
            adapter: Adapter::Duckdb,
            location: None,
        }
    }
}

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

/// A column type as a YAML scalar: nested types (`struct<a: t>`) hold `: ` and are quoted.
fn type_scalar(sql_type: &str) -> String {
    if sql_type.contains(':') {
        quoted(sql_type)
    } else {
        sql_type.to_owned()
    }
}

fn quoted(value: &str) -> String {
    serde_json::to_string(value).expect("strings serialize")
}

fn flow_list(values: &[String]) -> String {
    format!("[{}]", values.iter().map(|v| scalar(v)).collect::<Vec<_>>().join(", "))
}

fn duckdb_struct(pairs: &[(&str, Kind)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(name, kind)| format!("'{name}': '{}'", Adapter::Duckdb.sql_type(kind)))
        .collect();
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

/// The name of a part compression, as the sources file's `meta.landfall.compression` says it.
fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::None => "none",
    }
}

/// Renders the sources file of `config` for `options.adapter`.
///
/// Source tests are limited to landing integrity (duplicate parts, manifest reconciliation,
/// over the partitions of the last `landfall_partition_lookback_days` days); the row-level
/// envelope tests are on the staging models ([`render_staging`]).
pub fn render_sources(config: &ConnectorConfig, options: &SourcesOptions) -> String {
    let adapter = options.adapter;
    let warehouse = adapter != Adapter::Duckdb;
    let root = adapter.root(options.location.as_deref());
    let source = &config.source.name;
    let compression = config.landing.compression;
    let part_glob = match compression {
        Compression::Gzip => "**/*.jsonl.gz",
        Compression::Zstd => "**/*.jsonl.zst",
        Compression::None => "**/*.jsonl",
    };
    let names: Vec<String> = config.streams.iter().map(|stream| stream.name.clone()).collect();
    let mut out = String::new();
    let mut w = |line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    let command = if warehouse {
        format!("landfall dbt-sources --adapter {adapter}")
    } else {
        "landfall dbt-sources".to_owned()
    };
    w(format!(
        "# Generated by `{command}` from the config of source `{source}`. Do not edit: re-run it."
    ));
    w("version: 2".into());
    w(String::new());
    w("sources:".into());
    w(format!("  - name: {}", scalar(source)));
    let description = config.source.description.clone().unwrap_or_else(|| {
        if warehouse {
            format!("Records landfall landed from source `{source}`, read through external tables over the landing root.")
        } else {
            format!(
                "Records landfall landed from source `{source}`, read where LANDFALL_LANDING_URL points (default file://../landing)."
            )
        }
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
    w(format!("        landfall_landing_root: {}", quoted(&root)));
    w("    tables:".into());
    for stream in &config.streams {
        let name = &stream.name;
        let cursor_field = stream
            .incremental
            .as_ref()
            .and_then(|incremental| incremental.cursor_column());
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
        if !warehouse {
            w("            formatter: template".into());
            let location = format!(
                "read_json_auto('${{landfall_landing_root}}/{source}/{name}/{part_glob}', format = 'newline_delimited', \
                 hive_partitioning = true, hive_types = {{'extracted_date': 'DATE', 'run_id': 'VARCHAR'}}, filename = true, \
                 columns = {})",
                duckdb_struct(&envelope_types(stream))
            );
            w(format!("            external_location: {}", quoted(&location)));
        }
        w("            landfall:".into());
        w(format!("              source: {}", scalar(source)));
        w(format!("              stream: {}", scalar(name)));
        w(format!("              path: {}", scalar(&format!("{source}/{name}"))));
        w(format!("              files: {}", quoted(part_glob)));
        w("              format: jsonl".into());
        w(format!("              compression: {}", compression_name(compression)));
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
        if stream.format.has_parsed_form() {
            // `_raw` is the row as sent (a CSV line, an XML element): columns come from
            // its parsed form.
            w("              record_column: _record".into());
        }
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
        if warehouse {
            for line in adapter.external_block(&root, &format!("{source}/{name}"), Some(compression), STREAM_PARTITIONS)
            {
                w(line);
            }
        }
        w("        data_tests:".into());
        w("          - landfall.landfall_no_duplicate_landed_rows".into());
        w("        columns:".into());
        for (column, description, _) in ENVELOPE_COLUMNS {
            if warehouse && PARTITION_AND_FILE_COLUMNS.contains(column) {
                continue;
            }
            w(format!("          - name: {column}"));
            if let Some((_, kind)) = ENVELOPE_TYPES
                .iter()
                .find(|(name, _)| name == column)
                .filter(|_| warehouse)
            {
                w(format!(
                    "            data_type: {}",
                    type_scalar(&adapter.sql_type(kind))
                ));
            }
            w(format!("            description: {}", quoted(description)));
        }
        if stream.format.has_parsed_form() {
            w("          - name: _record".into());
            if warehouse {
                w(format!(
                    "            data_type: {}",
                    type_scalar(&adapter.sql_type(&Kind::Text))
                ));
            }
            w(format!(
                "            description: {}",
                quoted(
                    "The row's parsed form as JSON text (csv, tsv: header to value, all strings; xml: docs/contract.md section 3); declared columns are read from it."
                )
            ));
        }
        if let Some(expression) = adapter.file_column_expression() {
            w("          - name: filename".into());
            w(format!("            data_type: {}", adapter.sql_type(&Kind::Text)));
            w(format!(
                "            description: {}",
                quoted("Full path of the part file holding the row.")
            ));
            // dbt 1.10+ warns on custom column keys; the vendored macro reads meta.expression too.
            w("            config:".into());
            w("              meta:".into());
            w(format!("                expression: {}", quoted(expression)));
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
    if !warehouse {
        w("            formatter: template".into());
        let location = format!(
            "read_json_auto('${{landfall_landing_root}}/{source}/_manifests/**/*.json', format = 'newline_delimited', \
             hive_partitioning = true, hive_types = {{'extracted_date': 'DATE'}}, filename = true, columns = {})",
            duckdb_struct(MANIFEST_TYPES)
        );
        w(format!("            external_location: {}", quoted(&location)));
    }
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
    if warehouse {
        for line in adapter.external_block(&root, &format!("{source}/_manifests"), None, MANIFEST_PARTITIONS) {
            w(line);
        }
    }
    w("        data_tests:".into());
    for test in ["landfall_manifest_rows_reconcile", "landfall_manifest_files_exist"] {
        w(format!("          - landfall.{test}:"));
        w("              arguments:".into());
        w(format!("                source_name: {}", scalar(source)));
        w(format!("                streams: {}", flow_list(&names)));
    }
    w("        columns:".into());
    let manifest_columns: Vec<&str> = if warehouse {
        MANIFEST_TYPES.iter().map(|(name, _)| *name).collect()
    } else {
        MANIFEST_COLUMNS.iter().map(|(name, _, _)| *name).collect()
    };
    for column in manifest_columns {
        let (description, tests) = MANIFEST_COLUMNS.iter().find(|(name, _, _)| *name == column).map_or(
            ("Manifest field (see docs/contract.md).", &[][..]),
            |(_, description, tests)| (*description, *tests),
        );
        let kind = &MANIFEST_TYPES
            .iter()
            .find(|(name, _)| *name == column)
            .expect("documented columns are typed")
            .1;
        w(format!("          - name: {column}"));
        if warehouse {
            w(format!(
                "            data_type: {}",
                type_scalar(&adapter.sql_type(kind))
            ));
        }
        w(format!("            description: {}", quoted(description)));
        if tests.is_empty() {
            continue;
        }
        w("            data_tests:".into());
        for test in tests {
            match test {
                ManifestTest::NotNull => w("              - not_null".into()),
                ManifestTest::Unique => w("              - unique".into()),
                ManifestTest::AcceptedSource => {
                    w("              - accepted_values:".into());
                    w("                  arguments:".into());
                    w(format!("                    values: [{}]", quoted(source)));
                }
                ManifestTest::AcceptedStatus => {
                    w("              - accepted_values:".into());
                    w("                  arguments:".into());
                    w("                    values: [\"succeeded\", \"partial\", \"failed\", \"cancelled\"]".into());
                }
            }
        }
    }
    out
}

/// Columns the duckdb reader adds (Hive keys and the file name); a warehouse declares the
/// keys as partitions and the file as a pseudo-column instead.
const PARTITION_AND_FILE_COLUMNS: &[&str] = &["extracted_date", "run_id", "filename"];

#[derive(Clone, Copy)]
enum ManifestTest {
    NotNull,
    Unique,
    AcceptedSource,
    AcceptedStatus,
}

/// The documented manifest columns (the duckdb file lists only these, in this order) with
/// their tests.
const MANIFEST_COLUMNS: &[(&str, &str, &[ManifestTest])] = &[
    (
        "run_id",
        "Id of the run (UUIDv7); matches _run_id of the rows it landed.",
        &[ManifestTest::NotNull, ManifestTest::Unique],
    ),
    (
        "source_system",
        "Source name from the connector config.",
        &[ManifestTest::AcceptedSource],
    ),
    (
        "status",
        "Run outcome: succeeded, partial, failed or cancelled.",
        &[ManifestTest::NotNull, ManifestTest::AcceptedStatus],
    ),
    (
        "streams",
        "Per stream: name, sync_mode, cursors, counts, status, error and files [{path, rows, bytes, sha256}] (paths relative to the landing root).",
        &[],
    ),
    ("finished_at", "When the run finished (UTC).", &[ManifestTest::NotNull]),
];

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
        let expected = include_str!("../../../dbt/models/sources/demo/demo.yml");
        assert_eq!(render_sources(&config, &SourcesOptions::default()), expected);
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
