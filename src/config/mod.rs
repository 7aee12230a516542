//! Connector configuration (contract §1): strict YAML parsed into typed structs, then
//! validated without I/O. This module loads the file, resolves references and composes the
//! component configs, each of which owns its settings and checks (`http::config` for
//! `source:`, `landing::config`, `pagination::config`); no component imports `config`.
//!
//! Loading happens in two passes over the parsed document. The first deserializes it as
//! written, so that secret fields can be checked to be references, never literals. The
//! second resolves `${env:..}` / `${file:..}` references in every string and deserializes
//! again into the config the run uses. Unknown keys are errors that name their path.

pub mod async_job;
pub mod schema;
pub mod secret;
pub mod spec;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::http::config::{Method, RetryPost, SourceConfig};
use crate::landing::config::LandingConfig;
use crate::observe::progress::Expected;
use crate::pagination::config::PaginationConfig;
pub use crate::records::format::{BodyCompression, CsvOptions, Format, FormatSpec, XmlOptions};
use crate::settings::{ConfigError, HumanDuration, Secret};
use secret::is_reference;

/// How references in the config are treated when loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolve {
    /// Resolve `${env:..}` and `${file:..}` (what `run` and `check` do).
    References,
    /// Keep references as written; only their syntax is checked (`validate --no-resolve`).
    SyntaxOnly,
}

/// The root of a connector config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Config format version; must be 1.
    pub version: u32,
    pub source: SourceConfig,
    pub streams: Vec<StreamConfig>,
    /// Where records land. Default: `file://./landing`.
    #[serde(default)]
    pub landing: LandingConfig,
}

/// `streams[].incremental`: absent means full refresh every run.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// What the checkpoint follows: `cursor` (the `cursor_field` of each record) or `xmin`
    /// (PostgreSQL tables without an updated-at column: the transaction that last wrote each
    /// row). Default: cursor.
    #[serde(default, skip_serializing_if = "IncrementalMode::is_cursor")]
    pub mode: IncrementalMode,
    /// Field in each record (JSON pointer or top-level name) holding the source's cursor
    /// (`mode: cursor`: required; `mode: xmin`: none).
    #[serde(default)]
    pub cursor_field: String,
    /// Request parameter that carries the lower bound (`rest` sources: required; database
    /// sources compare the column in SQL).
    #[serde(default)]
    pub param: String,
    /// Request parameter that carries the upper bound of an explicit window. Default: none.
    #[serde(default)]
    pub end_param: Option<String>,
    /// Lower bound of the first run (`mode: cursor`: required; `mode: xmin`: none, the first
    /// run reads every row).
    #[serde(default)]
    pub start: String,
    /// Re-read this far behind the checkpoint (timestamp cursors). Default: 0s.
    #[serde(default)]
    pub lookback: HumanDuration,
    /// Records arrive in cursor order. Default: true.
    #[serde(default = "default_true")]
    pub sorted: bool,
    /// Slice a long window into sub-windows of this length, each checkpointed when it
    /// completes (timestamp cursors; needs `end_param` or `client_side_filter`). Default: none.
    #[serde(default)]
    pub step: Option<HumanDuration>,
    /// Drop records outside the window on the client, for APIs that cannot filter.
    /// Default: false.
    #[serde(default)]
    pub client_side_filter: bool,
    /// How the cursor is written in requests and in the checkpoint: `rfc3339`,
    /// `unix_seconds`, `unix_millis`, `date`, `strftime:<pattern>`, `integer` or `string`.
    /// Default: inferred from `start` (RFC 3339, integer, otherwise string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::cursor::CursorFormat>,
}

/// `streams[].incremental.mode`: what an incremental stream's checkpoint follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncrementalMode {
    /// A cursor field (column) of each record.
    #[default]
    Cursor,
    /// PostgreSQL: the 64-bit id of the transaction that last wrote each row (its `xmin`,
    /// widened); the checkpoint is the read snapshot's xmin (`docs/databases.md`).
    Xmin,
}

impl IncrementalMode {
    pub fn is_cursor(&self) -> bool {
        *self == IncrementalMode::Cursor
    }
}

impl IncrementalConfig {
    /// The stream's cursor format: `format`, or the one `start` implies (`mode: xmin`: an
    /// integer, the transaction id).
    pub fn cursor_format(&self) -> crate::cursor::CursorFormat {
        if self.is_xmin() {
            return crate::cursor::CursorFormat::Integer;
        }
        self.format
            .clone()
            .unwrap_or_else(|| crate::cursor::CursorFormat::infer(&self.start))
    }

    /// `mode: xmin`: the checkpoint follows PostgreSQL transaction ids, not a field.
    pub fn is_xmin(&self) -> bool {
        self.mode == IncrementalMode::Xmin
    }

    /// The field (column) each record's cursor is read from; `None` with `mode: xmin`.
    pub fn cursor_column(&self) -> Option<&str> {
        (!self.is_xmin()).then_some(self.cursor_field.as_str())
    }

    /// Where the first run starts: `start`, or transaction id 0 (every row) with `mode: xmin`.
    pub fn first_start(&self) -> &str {
        if self.is_xmin() { "0" } else { &self.start }
    }
}

/// `streams[].parent`: a child stream makes its requests once per record of its parent.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParentConfig {
    /// The parent stream's name; it runs first in the same run.
    pub stream: String,
    /// Parent record fields (top-level names or JSON pointers) available as
    /// `{parent.<name>}` in the child's path and params; `/a/b` becomes `{parent.a.b}`.
    pub fields: Vec<String>,
}

impl ParentConfig {
    /// The placeholder name of a parent field: `id` for `id`, `a.b` for `/a/b`.
    pub fn placeholder(field: &str) -> String {
        field.trim_start_matches('/').replace('/', ".")
    }
}

/// A PII redaction rule.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedactRule {
    pub path: String,
    pub action: RedactAction,
    /// Fixed replacement for `mask`. Default: `***`.
    #[serde(default)]
    pub replacement: Option<String>,
    /// Secret salt for `hash` (a reference).
    #[serde(default, skip_serializing)]
    pub salt: Option<Secret>,
}

/// What a redaction rule does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedactAction {
    Drop,
    Mask,
    Hash,
}

/// One stream: an endpoint and how to page through it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// `[a-z][a-z0-9_]*`; becomes `_source_object` and the landing folder.
    pub name: String,
    /// Path appended to `source.base_url` (`rest` sources: required).
    #[serde(default)]
    pub path: String,
    /// Database sources: the table (`schema.name`, or `name` in the default schema) the
    /// stream reads; or `query`. Default: none.
    #[serde(default)]
    pub table: Option<String>,
    /// Database sources: a read-only `SELECT` the stream reads instead of a table; it runs
    /// inside a `READ ONLY` transaction, so a write is refused by the server. Default: none.
    #[serde(default)]
    pub query: Option<String>,
    /// Database sources: the columns of `table` to read, in this order. Default: every
    /// column, in table order.
    #[serde(default)]
    pub select: Vec<String>,
    /// Database sources: rows per keyset chunk (one statement each, ordered by the cursor
    /// and the primary key, never `OFFSET`). Default: 10000.
    #[serde(default, deserialize_with = "crate::settings::nonzero::at_least_one_or_null")]
    pub chunk_size: Option<std::num::NonZeroU32>,
    /// Free-form description, carried to generated dbt sources.
    #[serde(default)]
    pub description: Option<String>,
    /// Default: GET.
    #[serde(default)]
    pub method: Method,
    /// Query parameters of this stream (merged over `source.params`).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Headers of this stream (merged over `source.headers`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body for POST. Default: none.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// JSON pointer to the records array; `""` means the document is the array. Default: `""`.
    #[serde(default)]
    pub records_path: String,
    /// Record fields forming the primary key. Default: none.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Default: `{type: none}`.
    #[serde(default)]
    pub pagination: PaginationConfig,
    #[serde(default)]
    pub incremental: Option<IncrementalConfig>,
    /// Fields that must be present and non-null. Default: none.
    #[serde(default)]
    pub required: Vec<String>,
    /// JSON Schema records are validated against. Default: none.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// Share of dead-lettered records above which the stream fails. Default: 0.01.
    #[serde(default = "default_max_dead_letter_ratio")]
    pub max_dead_letter_ratio: f64,
    /// PII rules applied before anything is stored or logged. Default: none.
    #[serde(default)]
    pub redact: Vec<RedactRule>,
    /// Send an `Idempotency-Key` header (a hash of the stream, the page and the body) with
    /// each POST. Default: true.
    #[serde(default = "default_true")]
    pub idempotency_key: bool,
    /// When a failed POST is sent again. Default: `auto`.
    #[serde(default)]
    pub retry_post: RetryPost,
    /// Makes this a child stream of another. Default: none.
    #[serde(default)]
    pub parent: Option<ParentConfig>,
    /// What breaking schema drift (removed fields, changed types) does: `warn` logs and
    /// records it, `fail` also fails the stream. Default: warn.
    #[serde(default)]
    pub on_breaking_drift: DriftAction,
    /// Typed columns the dbt staging model parses out of `_raw`, in order:
    /// `{name: string|integer|number|boolean|timestamp|date|json}`. Default: derived from
    /// `schema.properties`, else none.
    #[serde(default)]
    pub columns: serde_json::Map<String, serde_json::Value>,
    /// How the source marks a deleted record, for `is_deleted` / `deleted_at` in staging.
    /// Default: none.
    #[serde(default)]
    pub delete_marker: Option<DeleteMarker>,
    /// dbt source freshness of this stream; `null` disables it. Default: warn after 26h,
    /// error after 50h.
    #[serde(default, deserialize_with = "present")]
    pub freshness: Option<Option<Freshness>>,
    /// An endpoint listing removed records (Stripe `events` of type `*.deleted`, Zendesk
    /// `deleted_tickets`). Its records land in the companion stream `<name>__deletes`, and
    /// the staging model marks the keys they name `is_deleted`. Default: none.
    #[serde(default)]
    pub deletes: Option<DeletesConfig>,
    /// How a response body holds its records: `json` (one document, records at
    /// `records_path`), `ndjson`, `csv`, `tsv` or `xml` (read row by row, in bounded
    /// memory). Default: json.
    #[serde(default)]
    pub format: Format,
    /// How a `csv` or `tsv` body is written. Default: `,` (tab for tsv), `"`, a header row.
    #[serde(default)]
    pub csv: CsvOptions,
    /// Where the records of an `xml` body are (required with `format: xml`). Default: none.
    #[serde(default)]
    pub xml: Option<XmlOptions>,
    /// The body's character encoding (a WHATWG label, e.g. `windows-1251`), for ndjson,
    /// csv, tsv and xml. Default: UTF-8; for xml what the document's declaration says.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Compression of the body itself, beyond `Content-Encoding` (which is always decoded):
    /// `none`, `gzip`, or `auto` (gzip when the body starts with the gzip magic bytes or is
    /// served as `application/gzip`), for ndjson, csv, tsv and xml. Default: none.
    #[serde(default)]
    pub compression: BodyCompression,
    /// A report API's asynchronous job (create, poll, download) that yields the stream's
    /// records instead of `path`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_job: Option<async_job::AsyncJobConfig>,
    /// Set on the companion stream built from another stream's `deletes`: that stream's
    /// name. Never read from the config.
    #[serde(skip)]
    pub deletes_of: Option<String>,
}

/// `streams[].deletes`: an endpoint that lists removed records. It is requested like a
/// stream (same source, auth, rate limit) and lands as the stream `<name>__deletes`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeletesConfig {
    /// Path appended to `source.base_url`.
    pub path: String,
    /// Default: GET.
    #[serde(default)]
    pub method: Method,
    /// Query parameters (merged over `source.params`), e.g. `{type: customer.deleted}`.
    /// Default: none.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Headers (merged over `source.headers`). Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body for POST. Default: none.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// JSON pointer to the records array; `""` means the document is the array. Default: `""`.
    #[serde(default)]
    pub records_path: String,
    /// Fields of a deletes record (JSON pointers or top-level names) holding the removed
    /// record's primary key, one per field of the stream's `primary_key`, in its order
    /// (Stripe events: `[/data/object/id]`). Required.
    pub key: Vec<String>,
    /// Default: `{type: none}`.
    #[serde(default)]
    pub pagination: PaginationConfig,
    /// Read only deletions since the checkpoint; its `cursor_field` is when the record was
    /// removed (`deleted_at` in staging). Default: none (the whole list every run).
    #[serde(default)]
    pub incremental: Option<IncrementalConfig>,
}

/// The name of the companion stream that lands the `deletes` endpoint of stream `name`.
pub fn deletes_stream_name(name: &str) -> String {
    format!("{name}__deletes")
}

/// `streams[].on_breaking_drift`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DriftAction {
    #[default]
    Warn,
    Fail,
}

/// `streams[].delete_marker`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMarker {
    /// The field that marks a deletion (a deletion timestamp, or a flag with `value`).
    pub field: String,
    /// The value of `field` that means deleted; absent = any non-null value. Default: none.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// `streams[].freshness`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    /// Default: none (no warning).
    #[serde(default)]
    pub warn_after: Option<HumanDuration>,
    /// Default: none (no error).
    #[serde(default)]
    pub error_after: Option<HumanDuration>,
}

/// The column types `streams[].columns` accepts.
pub const COLUMN_TYPES: &[&str] = &["string", "integer", "number", "boolean", "timestamp", "date", "json"];

/// Tells a key that is present (even as `null`) from one that is absent.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn default_true() -> bool {
    true
}

fn default_max_dead_letter_ratio() -> f64 {
    0.01
}

impl StreamConfig {
    /// What the row readers need of `format`, `csv`, `xml` and `encoding` (checked by
    /// `validate`; a value it refuses reads as the default here).
    pub fn format_spec(&self) -> FormatSpec {
        let delimiter = self
            .csv
            .delimiter
            .as_deref()
            .and_then(crate::records::format::ascii_char);
        FormatSpec {
            format: self.format,
            delimiter: delimiter.unwrap_or(if self.format == Format::Tsv { b'\t' } else { b',' }),
            quote: crate::records::format::ascii_char(&self.csv.quote).unwrap_or(b'"'),
            header: self.csv.header,
            columns: self.csv.columns.clone(),
            record_path: self
                .xml
                .as_ref()
                .map(|xml| {
                    xml.record_path
                        .split('/')
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            encoding: self.encoding.as_deref().and_then(crate::records::format::encoding_for),
        }
    }

    /// The total a page announces for this stream, if its pagination has one. Child streams
    /// and `step` windows page through several sequences, each with its own total, so they
    /// show no percentage.
    pub fn expected(&self, document: crate::records::Document<'_>) -> Option<Expected> {
        if self.parent.is_some()
            || self
                .incremental
                .as_ref()
                .is_some_and(|incremental| incremental.step.is_some())
        {
            return None;
        }
        self.pagination.expected(document)
    }

    /// The companion stream that lands this stream's `deletes` endpoint, if it has one: the
    /// endpoint's request and paging, keyed by the removed record's key, nothing else.
    pub fn deletes_stream(&self) -> Option<StreamConfig> {
        let deletes = self.deletes.as_ref()?;
        Some(StreamConfig {
            name: deletes_stream_name(&self.name),
            path: deletes.path.clone(),
            table: None,
            query: None,
            select: Vec::new(),
            chunk_size: None,
            description: Some(format!(
                "Records removed from stream `{}`, listed by its deletes endpoint.",
                self.name
            )),
            method: deletes.method,
            params: deletes.params.clone(),
            headers: deletes.headers.clone(),
            body: deletes.body.clone(),
            records_path: deletes.records_path.clone(),
            primary_key: deletes.key.clone(),
            pagination: deletes.pagination.clone(),
            incremental: deletes.incremental.clone(),
            required: Vec::new(),
            schema: None,
            max_dead_letter_ratio: self.max_dead_letter_ratio,
            redact: Vec::new(),
            idempotency_key: self.idempotency_key,
            retry_post: self.retry_post,
            parent: None,
            on_breaking_drift: DriftAction::Warn,
            columns: serde_json::Map::new(),
            delete_marker: None,
            freshness: None,
            deletes: None,
            format: Format::Json,
            csv: CsvOptions::default(),
            xml: None,
            encoding: None,
            compression: BodyCompression::None,
            async_job: None,
            deletes_of: Some(self.name.clone()),
        })
    }

    pub fn sync_mode(&self) -> SyncMode {
        if self.incremental.is_some() {
            SyncMode::Incremental
        } else {
            SyncMode::FullRefresh
        }
    }
}

/// How a stream reads its endpoint: all of it every run, or from its checkpoint on. The
/// manifest's `sync_mode` (contract §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// No `incremental`: the whole endpoint every run.
    FullRefresh,
    /// From the checkpoint (minus the lookback) on.
    Incremental,
}

impl SyncMode {
    /// The name in manifests, events and dbt sources.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::FullRefresh => "full_refresh",
            SyncMode::Incremental => "incremental",
        }
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A loaded, validated config plus what downstream needs to know about its source.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    pub config: ConnectorConfig,
    /// SHA-256 of the config as written (references unresolved, so no secret enters it).
    pub config_sha256: String,
}

impl ConnectorConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path, resolve: Resolve) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, resolve, &|name| std::env::var(name).ok())
    }

    /// Parses and validates config text. `lookup_env` stands in for the process environment.
    pub fn from_yaml(
        text: &str,
        resolve: Resolve,
        lookup_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LoadedConfig, ConfigError> {
        let mut document = parse_as_written(text)?;
        let config_sha256 = crate::hash::sha256_hex(
            serde_json::to_string(&document)
                .expect("a parsed document serializes")
                .as_bytes(),
        );
        let as_written: ConnectorConfig = typed(document.clone())?;
        as_written.check_secret_fields()?;
        as_written.check_reference_syntax(&document)?;
        let (config, resolved) = match resolve {
            Resolve::SyntaxOnly => (as_written, secret::Resolved::default()),
            Resolve::References => {
                let resolved = secret::resolve_document(&mut document, lookup_env)?;
                (typed(document).map_err(|error| resolved.mask(error))?, resolved)
            }
        };
        // An error about a resolved value names its reference, never the value.
        config.validate().map_err(|error| resolved.mask(error))?;
        if resolve == Resolve::References {
            config.check_schemas().map_err(|error| resolved.mask(error))?;
        }
        let config = config.with_deletes_streams();
        Ok(LoadedConfig { config, config_sha256 })
    }

    /// Reads and compiles each stream's `schema` (a `{file: PATH}` is read here), so a
    /// missing or broken schema fails loading, naming the key and the file. Reading files
    /// is I/O: it happens only with references resolved (`validate`, `check`, `run`).
    fn check_schemas(&self) -> Result<(), ConfigError> {
        for (index, stream) in self.streams.iter().enumerate() {
            if let Some(schema) = &stream.schema {
                schema::compile(schema).map_err(|error| {
                    ConfigError::invalid(error.key(&format!("streams[{index}]")), error.to_string())
                })?;
            }
        }
        Ok(())
    }

    /// The config with each stream's `deletes` companion stream right after it.
    fn with_deletes_streams(mut self) -> ConnectorConfig {
        let mut streams = Vec::with_capacity(self.streams.len());
        for stream in std::mem::take(&mut self.streams) {
            let companion = stream.deletes_stream();
            streams.push(stream);
            streams.extend(companion);
        }
        self.streams = streams;
        self
    }

    fn check_secret_fields(&self) -> Result<(), ConfigError> {
        const HINT: &str =
            "secret fields must be a reference such as ${env:NAME} or ${file:/path}, not a literal value";
        for (key, secret) in self.source.auth.secrets() {
            if !is_reference(secret.expose()) {
                return Err(ConfigError::invalid(format!("source.auth.{key}"), HINT));
            }
        }
        const NAMED_HINT: &str = "is named like a credential, so its value must be a reference such as \
             ${env:NAME} or ${file:/path}, not a literal value (or use source.auth)";
        let literal = |value: &serde_json::Value| match value {
            serde_json::Value::String(text) => !text.is_empty() && !is_reference(text),
            serde_json::Value::Null => false,
            _ => true,
        };
        let check_named = |at: &str,
                           headers: &BTreeMap<String, String>,
                           params: &BTreeMap<String, serde_json::Value>|
         -> Result<(), ConfigError> {
            let headers = headers
                .iter()
                .map(|(name, value)| ("headers", name, literal(&serde_json::Value::String(value.clone()))));
            let params = params.iter().map(|(name, value)| ("params", name, literal(value)));
            for (section, name, is_literal) in headers.chain(params) {
                if is_literal && secret::is_credential_name(name) {
                    return Err(ConfigError::invalid(
                        format!("{at}.{section}.{name}"),
                        format!("`{name}` {NAMED_HINT}"),
                    ));
                }
            }
            Ok(())
        };
        check_named("source", &self.source.headers, &self.source.params)?;
        check_base_url_secrets(&self.source.base_url)?;
        if let Some(password) = &self.source.password
            && !is_reference(password.expose())
        {
            return Err(ConfigError::invalid("source.password", HINT));
        }
        if let Some(url) = &self.source.url {
            check_database_url_secrets(url.expose())?;
        }
        for (stream_index, stream) in self.streams.iter().enumerate() {
            check_named(&format!("streams[{stream_index}]"), &stream.headers, &stream.params)?;
            if let Some(deletes) = &stream.deletes {
                check_named(
                    &format!("streams[{stream_index}].deletes"),
                    &deletes.headers,
                    &deletes.params,
                )?;
            }
            for (rule_index, rule) in stream.redact.iter().enumerate() {
                if let Some(salt) = &rule.salt
                    && !is_reference(salt.expose())
                {
                    return Err(ConfigError::invalid(
                        format!("streams[{stream_index}].redact[{rule_index}].salt"),
                        HINT,
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_reference_syntax(&self, document: &serde_json::Value) -> Result<(), ConfigError> {
        fn walk(value: &serde_json::Value, path: &mut Vec<String>) -> Result<(), ConfigError> {
            match value {
                serde_json::Value::String(text) => secret::check_references(text)
                    .map_err(|message| ConfigError::invalid(secret::render_path(path), message)),
                serde_json::Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                    path.push(format!("[{i}]"));
                    let result = walk(item, path);
                    path.pop();
                    result
                }),
                serde_json::Value::Object(map) => map.iter().try_for_each(|(key, item)| {
                    path.push(key.clone());
                    let result = walk(item, path);
                    path.pop();
                    result
                }),
                _ => Ok(()),
            }
        }
        walk(document, &mut Vec::new())
    }

    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamConfig> {
        self.streams.iter().find(|stream| stream.name == name)
    }
}

/// The largest config file Landfall reads (real configs are a few KiB).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// The deepest nesting of collections a config may have (real configs nest under 10).
pub const MAX_CONFIG_DEPTH: usize = 64;

/// Bounds a config's size and nesting before the YAML parser sees it: a small file of
/// deeply nested collections otherwise takes the parser seconds to refuse. Flow
/// collections (`[`, `{` outside quotes and comments) count one level each; block
/// collections count their indentation and `- ` / `? ` markers, which a deeper level needs
/// at least one more of.
/// Config text parsed as written (references unresolved), its size and depth checked
/// first: what `landfall discover` copies `source:` and `landing:` from.
pub fn parse_as_written(text: &str) -> Result<serde_json::Value, ConfigError> {
    check_shape(text)?;
    serde_yaml_ng::from_str(text).map_err(|error| ConfigError::Yaml(error.to_string()))
}

fn check_shape(text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::Yaml(format!(
            "the config is {} bytes; a config may be at most {MAX_CONFIG_BYTES}",
            text.len()
        )));
    }
    let too_deep = |line: usize| {
        ConfigError::Yaml(format!(
            "line {line}: nested deeper than {MAX_CONFIG_DEPTH} levels; a config may nest at most {MAX_CONFIG_DEPTH}"
        ))
    };
    let mut flow = 0usize;
    for (index, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut at = 0;
        let mut block = 0;
        while at < bytes.len() {
            match bytes[at] {
                b' ' | b'\t' => block += 1,
                b'-' | b'?' if bytes.get(at + 1).is_none_or(|next| *next == b' ') => block += 1,
                _ => break,
            }
            at += 1;
        }
        if flow == 0 && block > 4 * MAX_CONFIG_DEPTH {
            return Err(too_deep(index + 1));
        }
        let mut quote: Option<u8> = None;
        while at < bytes.len() {
            let byte = bytes[at];
            match (quote, byte) {
                (Some(b'"'), b'\\') => at += 1,
                (Some(open), _) if byte == open => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(byte),
                (None, b'#') if at == 0 || bytes[at - 1] == b' ' => break,
                (None, b'[' | b'{') => {
                    flow += 1;
                    if flow > MAX_CONFIG_DEPTH {
                        return Err(too_deep(index + 1));
                    }
                }
                (None, b']' | b'}') => flow = flow.saturating_sub(1),
                (None, _) => {}
            }
            at += 1;
        }
    }
    Ok(())
}

/// Refuses a password written literally into a database `source.url`: the whole URL (or
/// the password in it) must be a reference.
fn check_database_url_secrets(written: &str) -> Result<(), ConfigError> {
    if is_reference(written) {
        return Ok(());
    }
    let literal = REFERENCE_PATTERN.replace_all(written, "ref");
    let Ok(url) = url::Url::parse(&literal) else {
        return Ok(());
    };
    let literal_password = url.password().is_some_and(|password| password != "ref")
        || url
            .query_pairs()
            .any(|(name, value)| name.eq_ignore_ascii_case("password") && value != "ref");
    if literal_password {
        return Err(ConfigError::invalid(
            "source.url",
            "holds a literal password; write the URL as a reference such as ${env:DATABASE_URL}, \
             or set source.password: ${env:NAME}",
        ));
    }
    Ok(())
}

/// Refuses credentials written literally into `source.base_url`: a user name or password
/// (`https://user:pass@host`) or a credential-named query parameter. References there are
/// fine (and a reference inside the URL is redacted like any secret).
fn check_base_url_secrets(written: &str) -> Result<(), ConfigError> {
    // Only the literal text matters: references are replaced by a harmless placeholder.
    let literal = REFERENCE_PATTERN.replace_all(written, "ref");
    let Ok(url) = url::Url::parse(&literal) else {
        return Ok(());
    };
    let hint = "put credentials in source.auth, or write them as a reference such as ${env:NAME}";
    if (!url.username().is_empty() && url.username() != "ref") || url.password().is_some_and(|p| p != "ref") {
        return Err(ConfigError::invalid(
            "source.base_url",
            format!("holds a literal user name or password; {hint}"),
        ));
    }
    for (name, value) in url.query_pairs() {
        if secret::is_credential_name(&name) && value != "ref" && !value.is_empty() {
            return Err(ConfigError::invalid(
                "source.base_url",
                format!("query parameter `{name}` is named like a credential but holds a literal value; {hint}"),
            ));
        }
    }
    Ok(())
}

static REFERENCE_PATTERN: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"\$\{(env|file):[^}]*\}").expect("reference pattern is valid"));

fn typed(document: serde_json::Value) -> Result<ConnectorConfig, ConfigError> {
    let mut config: ConnectorConfig = serde_path_to_error::deserialize(document).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { "(root)".to_owned() } else { path };
        ConfigError::invalid(path, error.into_inner().to_string())
    })?;
    for stream in &mut config.streams {
        stream.pagination.attach_records_path(&stream.records_path);
    }
    Ok(config)
}

/// A stream `s` at `/s` with `primary_key: [id]` and `extra` (more JSON members, each
/// starting with a comma), for unit tests.
#[cfg(test)]
pub(crate) fn test_stream(extra: &str) -> StreamConfig {
    serde_json::from_str(&format!(
        r#"{{"name": "s", "path": "/s", "primary_key": ["id"]{extra}}}"#
    ))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::config::AuthConfig;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "tok-123456".to_owned())
    }

    const MINIMAL: &str = r#"
version: 1
source:
  name: shop
  base_url: https://api.example.com/v2
  auth: {type: bearer, token: "${env:TOKEN}"}
streams:
  - name: orders
    path: /orders
    records_path: /data
    primary_key: [id]
    pagination: {type: cursor, cursor_path: /meta/next, cursor_param: cursor}
"#;

    #[test]
    fn loads_minimal_config_with_defaults() {
        let loaded = ConnectorConfig::from_yaml(MINIMAL, Resolve::References, &env).unwrap();
        let config = loaded.config;
        assert_eq!(config.source.retry.max_attempts.get(), 3);
        assert_eq!(config.landing.url, "file://./landing");
        assert_eq!(config.landing.part_max_bytes.0, 64 << 20);
        match &config.source.auth {
            AuthConfig::Bearer { token } => assert_eq!(token.expose(), "tok-123456"),
            other => panic!("unexpected auth {other:?}"),
        }
        assert_eq!(loaded.config_sha256.len(), 64);
    }

    #[test]
    fn landing_options_take_scalars_as_text_and_check_keys() {
        let text = format!(
            "{MINIMAL}landing:\n  url: s3://bucket/prefix\n  options: {{endpoint: 'http://127.0.0.1:9000', allow_http: true, virtual_hosted_style_request: false, timeout: 30s, pool_max_idle_per_host: 4}}\n"
        );
        let loaded = ConnectorConfig::from_yaml(&text, Resolve::References, &env).unwrap();
        let options = &loaded.config.landing.options;
        assert_eq!(options["allow_http"], "true");
        assert_eq!(options["virtual_hosted_style_request"], "false");
        assert_eq!(options["pool_max_idle_per_host"], "4");
        let nested = text.replace("allow_http: true", "allow_http: [true]");
        let message = ConnectorConfig::from_yaml(&nested, Resolve::References, &env)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`allow_http` must be a string, a boolean or a number"),
            "{message}"
        );
        let credential = text.replace("allow_http: true", "access_key_id: AKIA0000");
        let message = ConnectorConfig::from_yaml(&credential, Resolve::References, &env)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("landing.options.access_key_id: credentials are not read from the config file"),
            "{message}"
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let text = MINIMAL.replace("  base_url:", "  retry: {max_atempts: 3}\n  base_url:");
        let error = ConnectorConfig::from_yaml(&text, Resolve::References, &env).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("source.retry"), "{message}");
        assert!(message.contains("unknown field `max_atempts`"), "{message}");
    }

    #[test]
    fn literal_secret_is_rejected() {
        let text = MINIMAL.replace("\"${env:TOKEN}\"", "hunter2-literal");
        let message = ConnectorConfig::from_yaml(&text, Resolve::References, &env)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("source.auth.token:"), "{message}");
        assert!(message.contains("reference"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn unset_reference_names_the_key() {
        let text = MINIMAL.replace("${env:TOKEN}", "${env:NOPE}");
        let message = ConnectorConfig::from_yaml(&text, Resolve::References, &env)
            .unwrap_err()
            .to_string();
        assert_eq!(message, "source.auth.token: environment variable NOPE is not set");
        // Syntax-only validation does not need the variable.
        ConnectorConfig::from_yaml(&text, Resolve::SyntaxOnly, &env).unwrap();
    }

    #[test]
    fn config_hash_excludes_resolved_secrets() {
        let a = ConnectorConfig::from_yaml(MINIMAL, Resolve::References, &env).unwrap();
        let b = ConnectorConfig::from_yaml(MINIMAL, Resolve::References, &|_| Some("other-secret".into())).unwrap();
        assert_eq!(a.config_sha256, b.config_sha256);
    }

    fn load(text: &str) -> Result<LoadedConfig, ConfigError> {
        ConnectorConfig::from_yaml(text, Resolve::References, &env)
    }

    #[test]
    fn literal_credentials_in_headers_params_and_the_base_url_are_refused() {
        for (from, to, key) in [
            (
                "  auth:",
                "  headers: {X-Api-Key: abc123456}\n  auth:",
                "source.headers.X-Api-Key",
            ),
            (
                "  auth:",
                "  headers: {authorization: Bearer abc123456}\n  auth:",
                "source.headers.authorization",
            ),
            (
                "  auth:",
                "  params: {api_key: abc123456}\n  auth:",
                "source.params.api_key",
            ),
            (
                "  auth:",
                "  params: {accessToken: 12345678}\n  auth:",
                "source.params.accessToken",
            ),
            (
                "https://api.example.com/v2",
                "https://user:pw-123456@api.example.com/v2",
                "source.base_url",
            ),
            (
                "https://api.example.com/v2",
                "https://api.example.com/v2?signature=abc123456",
                "source.base_url",
            ),
        ] {
            let text = MINIMAL.replace(from, to);
            let message = load(&text).unwrap_err().to_string();
            assert!(message.starts_with(&format!("{key}:")), "{message}");
            assert!(
                !message.contains("abc123456") && !message.contains("pw-123456"),
                "{message}"
            );
        }
        for (from, to) in [
            (
                "  auth:",
                "  headers: {X-Api-Key: '${env:TOKEN}', Accept: application/json}\n  auth:",
            ),
            (
                "  auth:",
                "  params: {api_key: '${env:TOKEN}', per_page: 100, author: me}\n  auth:",
            ),
            (
                "https://api.example.com/v2",
                "https://api.example.com/bot${env:TOKEN}/v2",
            ),
        ] {
            load(&MINIMAL.replace(from, to)).unwrap();
        }
        // A path token from a reference is redacted like any secret.
        load(&MINIMAL.replace("https://api.example.com/v2", "https://api.example.com/bot${env:TOKEN}")).unwrap();
        assert!(!crate::redact::scrub("GET /bottok-123456/items").contains("tok-123456"));
    }

    #[test]
    fn resolved_values_are_never_echoed_in_validation_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("name");
        std::fs::write(&file, "Not-An-Identifier-s3cr3t\n").unwrap();
        let reference = format!("${{file:{}}}", file.display());
        for (from, to) in [
            ("name: shop", format!("name: '{reference}'")),
            ("https://api.example.com/v2", format!("'{reference}'")),
            ("https://api.example.com/v2", format!("'ftp://{reference}'")),
        ] {
            let message = load(&MINIMAL.replace(from, &to)).unwrap_err().to_string();
            assert!(!message.contains("s3cr3t"), "{message}");
            assert!(message.contains(&reference) || message.contains("scheme"), "{message}");
        }
    }

    #[test]
    fn secret_files_must_be_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; (secret::MAX_SECRET_FILE_BYTES + 1) as usize]).unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        for (path, expected) in [
            (big.as_path(), "more than"),
            (fifo.as_path(), "not a regular file"),
            (dir.path(), "a directory"),
            (std::path::Path::new("/dev/zero"), "not a regular file"),
        ] {
            let text = MINIMAL.replace("\"${env:TOKEN}\"", &format!("'${{file:{}}}'", path.display()));
            let started = std::time::Instant::now();
            let message = load(&text).unwrap_err().to_string();
            assert!(started.elapsed() < std::time::Duration::from_secs(2), "{message}");
            assert!(message.contains(expected), "{}: {message}", path.display());
        }
    }

    #[test]
    fn deeply_nested_or_huge_configs_are_refused_fast() {
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let block: String = (0..300)
            .map(|depth| format!("{}a{depth}:\n", " ".repeat(depth)))
            .collect();
        let sequences = format!("x:\n{}a\n", "- ".repeat(100_000));
        for text in [
            format!("{MINIMAL}extra: {flow}\n"),
            format!("{MINIMAL}{block}"),
            format!("{MINIMAL}{sequences}"),
            format!("{MINIMAL}# {}\n", "x".repeat(MAX_CONFIG_BYTES)),
        ] {
            let started = std::time::Instant::now();
            let message = load(&text).unwrap_err().to_string();
            assert!(started.elapsed() < std::time::Duration::from_millis(500), "{message}");
            assert!(message.contains("at most"), "{message}");
        }
        load(MINIMAL).unwrap();
    }
}
