//! Semantic validation of a parsed config, without I/O.

use std::collections::HashSet;

use crate::cursor::CursorFormat;

use super::{ConnectorConfig, StreamConfig};
use crate::http::config::Method;
use crate::settings::ConfigError;
use crate::settings::check::{check_field, check_param_value, check_pointer, is_identifier, non_empty};

impl ConnectorConfig {
    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != 1 {
            return Err(ConfigError::invalid(
                "version",
                format!(
                    "unsupported config version {}; this landfall reads version 1",
                    self.version
                ),
            ));
        }
        self.source.validate()?;

        if self.streams.is_empty() {
            return Err(ConfigError::invalid("streams", "at least one stream is required"));
        }
        let mut names = HashSet::new();
        for (index, stream) in self.streams.iter().enumerate() {
            let at = format!("streams[{index}]");
            if !names.insert(stream.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{at}.name"),
                    format!("stream `{}` is defined twice", stream.name),
                ));
            }
            validate_stream(&at, stream)?;
            if self.source.kind.is_database() {
                validate_database_stream(&at, stream, self.source.kind)?;
            } else {
                validate_rest_stream(&at, stream)?;
            }
        }
        for (index, stream) in self.streams.iter().enumerate() {
            validate_deletes(&format!("streams[{index}]"), stream, &names)?;
        }

        self.validate_parents()?;

        self.landing.validate()
    }

    fn validate_parents(&self) -> Result<(), ConfigError> {
        for (index, stream) in self.streams.iter().enumerate() {
            let Some(parent) = &stream.parent else { continue };
            let at = format!("streams[{index}].parent");
            let Some(parent_stream) = self.stream(&parent.stream) else {
                return Err(ConfigError::invalid(
                    format!("{at}.stream"),
                    format!("no stream named `{}`", parent.stream),
                ));
            };
            if parent_stream.parent.is_some() || parent.stream == stream.name {
                return Err(ConfigError::invalid(
                    format!("{at}.stream"),
                    "a parent must be a top-level stream (one level of nesting)",
                ));
            }
            if parent.fields.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.fields"),
                    "name at least one parent field",
                ));
            }
            let mentioned = |name: &str| {
                let placeholder = format!("{{parent.{}}}", crate::config::ParentConfig::placeholder(name));
                stream.path.contains(&placeholder)
                    || stream
                        .params
                        .values()
                        .any(|v| v.as_str().is_some_and(|v| v.contains(&placeholder)))
            };
            if !parent.fields.iter().any(|field| mentioned(field)) {
                return Err(ConfigError::invalid(
                    format!("streams[{index}].path"),
                    "a child stream must use a parent field, e.g. /orders/{parent.id}/lines",
                ));
            }
        }
        Ok(())
    }
}

/// `streams[i].deletes`: a key per primary-key field, a companion name that is free, and
/// the endpoint itself valid as a stream (errors name `streams[i].deletes.<key>`).
fn validate_deletes(at: &str, stream: &StreamConfig, names: &HashSet<&str>) -> Result<(), ConfigError> {
    let Some(companion) = stream.deletes_stream() else {
        return Ok(());
    };
    let at = format!("{at}.deletes");
    if stream.primary_key.is_empty() {
        return Err(ConfigError::invalid(
            &at,
            format!(
                "stream `{}` needs a primary_key: deletes name the keys they remove",
                stream.name
            ),
        ));
    }
    if companion.primary_key.len() != stream.primary_key.len() {
        return Err(ConfigError::invalid(
            format!("{at}.key"),
            format!(
                "must name {} field(s), one per primary_key field of stream `{}`, in that order",
                stream.primary_key.len(),
                stream.name
            ),
        ));
    }
    if names.contains(companion.name.as_str()) {
        return Err(ConfigError::invalid(
            &at,
            format!(
                "lands as stream `{}`, which the config already defines; rename that stream",
                companion.name
            ),
        ));
    }
    if !is_identifier(&companion.name) {
        return Err(ConfigError::invalid(
            &at,
            format!(
                "lands as stream `{}`, longer than 64 characters; shorten the stream name",
                companion.name
            ),
        ));
    }
    validate_stream(&at, &companion)
        .and_then(|()| validate_rest_stream(&at, &companion))
        .map_err(|error| match error {
            // the companion's primary_key is the `key` of the deletes block
            ConfigError::Invalid { path, message } => ConfigError::Invalid {
                path: path.replace(&format!("{at}.primary_key"), &format!("{at}.key")),
                message,
            },
            other => other,
        })
}

/// A stream of a `rest` source: none of the database keys.
fn validate_rest_stream(at: &str, stream: &StreamConfig) -> Result<(), ConfigError> {
    let database_keys = [
        ("table", stream.table.is_some()),
        ("query", stream.query.is_some()),
        ("select", !stream.select.is_empty()),
        ("chunk_size", stream.chunk_size.is_some()),
    ];
    if let Some((key, _)) = database_keys.into_iter().find(|(_, set)| *set) {
        return Err(ConfigError::invalid(
            format!("{at}.{key}"),
            "is read only by database sources (source.type: postgres or mysql)",
        ));
    }
    if let Some(incremental) = &stream.incremental {
        if incremental.is_xmin() {
            return Err(ConfigError::invalid(
                format!("{at}.incremental.mode"),
                "xmin is read only by postgres sources (it follows PostgreSQL transaction ids); \
                 a rest stream needs mode: cursor with a cursor_field",
            ));
        }
        non_empty(&format!("{at}.incremental.param"), &incremental.param)?;
    }
    if let Some(job) = &stream.async_job {
        job.validate(at)?;
        if stream.parent.is_some() {
            return Err(ConfigError::invalid(
                format!("{at}.async_job"),
                "is not read by child streams (one job per parent record is not supported)",
            ));
        }
    }
    validate_format(at, stream)
}

/// `format` and the keys that go with it: each key only with the formats that read it, and
/// only the paginations that need nothing from the body with a body that is not JSON.
fn validate_format(at: &str, stream: &StreamConfig) -> Result<(), ConfigError> {
    use super::{BodyCompression, CsvOptions, Format};
    use crate::pagination::config::PaginationConfig;
    let format = stream.format;
    let name = format.as_str();
    if !matches!(format, Format::Csv | Format::Tsv) && stream.csv != CsvOptions::default() {
        return Err(ConfigError::invalid(
            format!("{at}.csv"),
            format!("is read only with format: csv or tsv (the stream's format is {name})"),
        ));
    }
    if format != Format::Xml && stream.xml.is_some() {
        return Err(ConfigError::invalid(
            format!("{at}.xml"),
            format!("is read only with format: xml (the stream's format is {name})"),
        ));
    }
    if format == Format::Json {
        for (key, set) in [
            ("encoding", stream.encoding.is_some()),
            ("compression", stream.compression != BodyCompression::None),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    format!("{at}.{key}"),
                    "is read only with format: ndjson, csv, tsv or xml (a json body is UTF-8, and its \
                     Content-Encoding is always decoded)",
                ));
            }
        }
        return Ok(());
    }
    if let Some(label) = &stream.encoding
        && crate::records::format::encoding_for(label).is_none()
    {
        return Err(ConfigError::invalid(
            format!("{at}.encoding"),
            format!(
                "`{label}` is not an encoding Landfall reads: use a WHATWG label of an ASCII-compatible \
                 encoding (utf-8, windows-1251, iso-8859-1, koi8-r, shift_jis, gbk, ...)"
            ),
        ));
    }
    if !stream.records_path.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.records_path"),
            format!(
                "is read only with format: json (a {name} body's records are its rows{})",
                if format == Format::Xml {
                    "; use xml.record_path"
                } else {
                    ""
                }
            ),
        ));
    }
    let unsupported = match &stream.pagination {
        PaginationConfig::None {} | PaginationConfig::LinkHeader { .. } => None,
        PaginationConfig::Offset { total_path, .. } => total_path.as_ref().map(|_| "pagination.total_path"),
        PaginationConfig::PageNumber { total_pages_path, .. } => {
            total_pages_path.as_ref().map(|_| "pagination.total_pages_path")
        }
        PaginationConfig::Cursor { .. } | PaginationConfig::NextUrl { .. } => Some("pagination.type"),
    };
    if let Some(key) = unsupported {
        return Err(ConfigError::invalid(
            format!("{at}.{key}"),
            format!(
                "a {name} body has no JSON document to read a page token or total from: with format: {name} \
                 use pagination none, link_header, offset or page_number (without total_path / total_pages_path)"
            ),
        ));
    }
    if format.has_parsed_form() && !stream.redact.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.redact"),
            format!("is not supported with format: {name} yet: `_raw` keeps each row exactly as sent"),
        ));
    }
    match format {
        Format::Csv | Format::Tsv => {
            let csv = &stream.csv;
            let delimiter = match &csv.delimiter {
                None => None,
                Some(value) => Some(crate::records::format::ascii_char(value).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("{at}.csv.delimiter"),
                        "must be one ASCII character, not a line break",
                    )
                })?),
            };
            let quote = crate::records::format::ascii_char(&csv.quote).ok_or_else(|| {
                ConfigError::invalid(
                    format!("{at}.csv.quote"),
                    "must be one ASCII character, not a line break",
                )
            })?;
            if delimiter.unwrap_or(if format == Format::Tsv { b'\t' } else { b',' }) == quote {
                return Err(ConfigError::invalid(
                    format!("{at}.csv.quote"),
                    "must differ from the delimiter",
                ));
            }
            if !csv.header && csv.columns.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.csv.columns"),
                    "names the columns when there is no header row (csv.header: false)",
                ));
            }
            for (index, column) in csv.columns.iter().enumerate() {
                if column.is_empty() || csv.columns[..index].contains(column) {
                    return Err(ConfigError::invalid(
                        format!("{at}.csv.columns[{index}]"),
                        format!("`{column}` must be a non-empty name, unique among the columns"),
                    ));
                }
            }
        }
        Format::Xml => {
            let Some(xml) = &stream.xml else {
                return Err(ConfigError::invalid(
                    format!("{at}.xml.record_path"),
                    "is required with format: xml: the repeated element's names from the root, e.g. /ValCurs/Valute",
                ));
            };
            let path = &xml.record_path;
            if !path.starts_with('/') || path.len() < 2 || path[1..].split('/').any(|name| name.is_empty()) {
                return Err(ConfigError::invalid(
                    format!("{at}.xml.record_path"),
                    format!("`{path}` must be element names from the root, each after a `/` (e.g. /ValCurs/Valute)"),
                ));
            }
        }
        Format::Json | Format::Ndjson => {}
    }
    Ok(())
}

/// A stream of a database source: a `table` or a `query`, a primary key for the keyset
/// chunks, a column as cursor, and none of the HTTP-only keys.
fn validate_database_stream(
    at: &str,
    stream: &StreamConfig,
    kind: crate::http::config::SourceKind,
) -> Result<(), ConfigError> {
    let kind = kind.as_str();
    match (&stream.table, &stream.query) {
        (None, None) => {
            return Err(ConfigError::invalid(
                format!("{at}.table"),
                format!("a {kind} stream reads a table (schema.name) or a query; set one"),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{at}.query"),
                "set either table or query, not both",
            ));
        }
        (Some(table), None) => {
            let parts: Vec<&str> = table.split('.').collect();
            if parts.len() > 2
                || parts
                    .iter()
                    .any(|part| part.is_empty() || part.contains(['"', '`', '\0']))
            {
                return Err(ConfigError::invalid(
                    format!("{at}.table"),
                    format!("`{table}` must be `schema.name` or `name`"),
                ));
            }
        }
        (None, Some(query)) => {
            non_empty(&format!("{at}.query"), query.trim())?;
            if !stream.select.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{at}.select"),
                    "chooses columns of a table; a query selects its own",
                ));
            }
            if query.contains('\0') {
                return Err(ConfigError::invalid(format!("{at}.query"), "holds a NUL character"));
            }
        }
    }
    for (index, column) in stream.select.iter().enumerate() {
        if column.is_empty() || column.contains(['"', '`', '\0']) {
            return Err(ConfigError::invalid(
                format!("{at}.select[{index}]"),
                "must be a column name (without quotes)",
            ));
        }
    }
    if stream.primary_key.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.primary_key"),
            "a database stream needs its primary key columns: it reads in keyset chunks ordered by them",
        ));
    }
    for (index, column) in stream.primary_key.iter().enumerate() {
        if column.starts_with('/') {
            return Err(ConfigError::invalid(
                format!("{at}.primary_key[{index}]"),
                "names a column of the table or query, not a JSON pointer",
            ));
        }
    }
    let http_only = [
        ("path", !stream.path.is_empty()),
        ("params", !stream.params.is_empty()),
        ("headers", !stream.headers.is_empty()),
        ("body", stream.body.is_some()),
        ("records_path", !stream.records_path.is_empty()),
        (
            "pagination",
            !matches!(stream.pagination, crate::pagination::config::PaginationConfig::None {}),
        ),
        ("parent", stream.parent.is_some()),
        ("deletes", stream.deletes.is_some()),
        ("format", stream.format != super::Format::Json),
        ("csv", stream.csv != super::CsvOptions::default()),
        ("xml", stream.xml.is_some()),
        ("encoding", stream.encoding.is_some()),
        ("compression", stream.compression != super::BodyCompression::None),
        ("async_job", stream.async_job.is_some()),
    ];
    if let Some((key, _)) = http_only.into_iter().find(|(_, set)| *set) {
        return Err(ConfigError::invalid(
            format!("{at}.{key}"),
            format!("is read only by rest sources; a {kind} stream reads a table or a query"),
        ));
    }
    if let Some(incremental) = &stream.incremental {
        let inc_at = format!("{at}.incremental");
        if incremental.is_xmin() && kind != "postgres" {
            return Err(ConfigError::invalid(
                format!("{inc_at}.mode"),
                format!(
                    "xmin is read only by postgres sources (it follows PostgreSQL transaction ids); \
                     a {kind} stream needs mode: cursor with a cursor_field (an updated-at column)"
                ),
            ));
        }
        if incremental.is_xmin() && stream.query.is_some() {
            return Err(ConfigError::invalid(
                format!("{inc_at}.mode"),
                "xmin reads the row versions of a table: set table, not query",
            ));
        }
        if incremental.cursor_field.starts_with('/') {
            return Err(ConfigError::invalid(
                format!("{inc_at}.cursor_field"),
                "names a column of the table or query, not a JSON pointer",
            ));
        }
        for (key, set) in [
            ("param", !incremental.param.is_empty()),
            ("end_param", incremental.end_param.is_some()),
            ("client_side_filter", incremental.client_side_filter),
            ("sorted", !incremental.sorted),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    format!("{inc_at}.{key}"),
                    format!(
                        "is read only by rest sources; a {kind} stream filters and orders by the cursor column in SQL"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn validate_stream(at: &str, stream: &StreamConfig) -> Result<(), ConfigError> {
    if !is_identifier(&stream.name) {
        return Err(ConfigError::invalid(
            format!("{at}.name"),
            format!("`{}` must match [a-z][a-z0-9_]* (at most 64 characters)", stream.name),
        ));
    }
    if !stream.path.starts_with('/') && !stream.path.is_empty() {
        return Err(ConfigError::invalid(format!("{at}.path"), "must start with `/`"));
    }
    check_pointer(&format!("{at}.records_path"), &stream.records_path)?;
    for (key, value) in &stream.params {
        check_param_value(&format!("{at}.params.{key}"), value)?;
    }
    if stream.body.is_some() && stream.method == Method::Get {
        return Err(ConfigError::invalid(format!("{at}.body"), "a body needs method: POST"));
    }
    for (index, field) in stream.primary_key.iter().enumerate() {
        check_field(&format!("{at}.primary_key[{index}]"), field)?;
    }
    for (index, field) in stream.required.iter().enumerate() {
        check_field(&format!("{at}.required[{index}]"), field)?;
    }
    for (name, kind) in &stream.columns {
        if !kind
            .as_str()
            .is_some_and(|kind| crate::config::COLUMN_TYPES.contains(&kind))
        {
            return Err(ConfigError::invalid(
                format!("{at}.columns.{name}"),
                format!("type must be one of {}", crate::config::COLUMN_TYPES.join(", ")),
            ));
        }
    }
    if let Some(marker) = &stream.delete_marker {
        check_field(&format!("{at}.delete_marker.field"), &marker.field)?;
    }
    if !(0.0..=1.0).contains(&stream.max_dead_letter_ratio) {
        return Err(ConfigError::invalid(
            format!("{at}.max_dead_letter_ratio"),
            "must be between 0 and 1",
        ));
    }
    stream.pagination.validate(&format!("{at}.pagination"), stream.method)?;
    if let Some(incremental) = stream.incremental.as_ref().filter(|incremental| incremental.is_xmin()) {
        let inc_at = format!("{at}.incremental");
        for (key, set) in [
            ("cursor_field", !incremental.cursor_field.is_empty()),
            ("start", !incremental.start.is_empty()),
            ("lookback", !incremental.lookback.0.is_zero()),
            ("step", incremental.step.is_some()),
            ("format", incremental.format.is_some()),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    format!("{inc_at}.{key}"),
                    "mode: xmin follows the transaction that last wrote each row (its checkpoint is a \
                     PostgreSQL transaction id) and takes no cursor_field, start, lookback, step or format; \
                     remove it, or use mode: cursor with an updated-at column",
                ));
            }
        }
    }
    if let Some(incremental) = stream.incremental.as_ref().filter(|incremental| !incremental.is_xmin()) {
        let inc_at = format!("{at}.incremental");
        check_field(&format!("{inc_at}.cursor_field"), &incremental.cursor_field)?;
        non_empty(&format!("{inc_at}.start"), &incremental.start)?;
        for (key, param) in [
            ("param", Some(&incremental.param)),
            ("end_param", incremental.end_param.as_ref()),
        ] {
            let Some(pointer) = param.filter(|param| param.starts_with('/')) else {
                continue;
            };
            // A JSON pointer puts the bound inside a POST body: its parent must be there.
            let parent = &pointer[..pointer.rfind('/').unwrap_or(0)];
            let found = stream
                .body
                .as_ref()
                .and_then(|body| body.pointer(parent))
                .is_some_and(|at| at.is_object() || at.is_array());
            if stream.method != crate::http::config::Method::Post || !found {
                return Err(ConfigError::invalid(
                    format!("{inc_at}.{key}"),
                    format!(
                        "`{pointer}` is a JSON pointer into the request body: it needs method: POST and a body containing `{parent}`"
                    ),
                ));
            }
        }
        let format = incremental.cursor_format();
        let named = if incremental.format.is_some() {
            format!("format `{format}`")
        } else {
            format!("format `{format}` (inferred from start; set incremental.format)")
        };
        if let Err(error) = format.parse(&incremental.start) {
            return Err(ConfigError::invalid(format!("{inc_at}.start"), error.to_string()));
        }
        if format == CursorFormat::Text && !incremental.lookback.0.is_zero() {
            return Err(ConfigError::invalid(
                format!("{inc_at}.lookback"),
                format!("an opaque string cursor cannot be stepped back; {named} allows no lookback"),
            ));
        }
        if let Some(step) = incremental.step {
            if !format.is_temporal() {
                return Err(ConfigError::invalid(
                    format!("{inc_at}.step"),
                    format!("sub-windows need a time cursor; {named} is not one"),
                ));
            }
            if step.0.is_zero() {
                return Err(ConfigError::invalid(
                    format!("{inc_at}.step"),
                    "must be greater than zero",
                ));
            }
            if incremental.end_param.is_none() && !incremental.client_side_filter {
                return Err(ConfigError::invalid(
                    format!("{inc_at}.step"),
                    "sub-windows need an upper bound: set end_param, or client_side_filter: true",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Resolve;
    use crate::pagination::config::PaginationConfig;

    fn load(text: &str) -> Result<ConnectorConfig, ConfigError> {
        ConnectorConfig::from_yaml(text, Resolve::References, &|_| None).map(|loaded| loaded.config)
    }

    fn config_with_stream(stream: &str) -> String {
        format!("version: 1\nsource: {{name: shop, base_url: 'https://api.test'}}\nstreams:\n  - {stream}\n")
    }

    #[test]
    fn rejects_bad_names_and_pointers() {
        let message = load(&config_with_stream("{name: Orders, path: /o}"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("streams[0].name:"), "{message}");
        let message = load(&config_with_stream("{name: o, path: /o, records_path: data}"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("streams[0].records_path:"), "{message}");
    }

    #[test]
    fn compression_level_is_checked() {
        let with_landing = |landing: &str| {
            format!(
                "version: 1\nsource: {{name: s, base_url: 'https://api.test'}}\nstreams: [{{name: o, path: /o}}]\nlanding: {landing}\n"
            )
        };
        assert_eq!(load(&with_landing("{url: 'memory://'}")).unwrap().landing.level(), 1);
        let config = load(&with_landing("{url: 'memory://', compression_level: 12}")).unwrap();
        assert_eq!(config.landing.level(), 12);
        let zstd = load(&with_landing(
            "{url: 'memory://', compression: zstd, compression_level: 12}",
        ))
        .unwrap();
        assert_eq!(
            (zstd.landing.compression, zstd.landing.level()),
            (crate::landing::config::Compression::Zstd, 12)
        );
        for (landing, expected) in [
            (
                "{url: 'memory://', compression_level: 0}",
                "landing.compression_level: must be 1 (fastest) to 12 (smallest), not 0",
            ),
            (
                "{url: 'memory://', compression_level: 13}",
                "landing.compression_level: must be 1 (fastest) to 12 (smallest), not 13",
            ),
            (
                "{url: 'memory://', compression: zstd, compression_level: 13}",
                "landing.compression_level: must be 1 (fastest) to 12 (smallest), not 13",
            ),
            (
                "{url: 'memory://', compression: none, compression_level: 3}",
                "landing.compression_level: applies to gzip and zstd only",
            ),
        ] {
            let message = load(&with_landing(landing)).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{landing}: {message}");
        }
        let message = load(&with_landing("{url: 'memory://', compression_level: fast}"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("landing.compression_level"), "{message}");
    }

    #[test]
    fn rates_slower_than_one_a_day_and_tiny_response_caps_are_refused() {
        let with_source = |extra: &str| {
            format!(
                "version: 1\nsource: {{name: s, base_url: 'https://api.test', {extra}}}\nstreams: [{{name: o, path: /o}}]\n"
            )
        };
        // 1e-300 passed validation and panicked in Duration::from_secs_f64 at the second request.
        for (extra, key) in [
            (
                "rate_limit: {requests_per_second: 1e-300}",
                "source.rate_limit.requests_per_second:",
            ),
            (
                "rate_limit: {requests_per_minute: 0.0001}",
                "source.rate_limit.requests_per_minute:",
            ),
            (
                "rate_limit: {requests_per_hour: 0.01}",
                "source.rate_limit.requests_per_hour:",
            ),
            ("max_response_size: 10", "source.max_response_size:"),
            ("max_run_duration: 18446744073709551615", "source.max_run_duration:"),
            (
                "circuit_breaker: {cooldown: 1000000000000}",
                "source.circuit_breaker.cooldown:",
            ),
        ] {
            let message = load(&with_source(extra)).unwrap_err().to_string();
            assert!(message.starts_with(key), "{extra}: {message}");
        }
        let config = load(&with_source(
            "rate_limit: {requests_per_hour: 1}, max_response_size: 1MiB",
        ))
        .unwrap();
        assert_eq!(config.source.max_response_size.0, 1 << 20);
        assert_eq!(config.source.redirects, crate::http::config::RedirectPolicy::SameOrigin);
        let config = load(&with_source("redirects: any_https")).unwrap();
        assert_eq!(config.source.redirects, crate::http::config::RedirectPolicy::AnyHttps);
        assert_eq!(
            load(&with_source("rate_limit: {}")).unwrap().source.max_response_size.0,
            256 << 20
        );
    }

    /// Counts held as `NonZero*` refuse 0 while the config is read, naming the key (inside
    /// `pagination`, the message names it) in the words the checks use.
    #[test]
    fn every_count_of_at_least_one_refuses_zero_naming_its_key() {
        let source = |extra: &str| {
            format!(
                "version: 1\nsource: {{name: s, base_url: 'https://api.test', {extra}}}\nstreams: [{{name: o, path: /o}}]\n"
            )
        };
        let pagination = |extra: &str| config_with_stream(&format!("{{name: o, path: /o, pagination: {extra}}}"));
        for (config, expected) in [
            (
                source("max_concurrent_streams: 0"),
                "source.max_concurrent_streams: must be at least 1",
            ),
            (
                source("retry: {max_attempts: 0}"),
                "source.retry.max_attempts: must be at least 1",
            ),
            (
                source("rate_limit: {burst: 0}"),
                "source.rate_limit.burst: must be at least 1",
            ),
            (
                source("rate_limit: {concurrency: 0}"),
                "source.rate_limit.concurrency: must be at least 1",
            ),
            (
                source("circuit_breaker: {failure_threshold: 0}"),
                "source.circuit_breaker.failure_threshold: must be at least 1",
            ),
            (
                format!(
                    "{}landing: {{url: 'memory://', part_max_records: 0}}\n",
                    config_with_stream("{name: o, path: /o}")
                ),
                "landing.part_max_records: must be at least 1",
            ),
            (
                pagination("{type: offset, limit: 0}"),
                "streams[0].pagination: limit: must be at least 1",
            ),
            (
                pagination("{type: page_number, page_size: 0}"),
                "streams[0].pagination: page_size: must be at least 1",
            ),
            (
                pagination("{type: link_header, max_pages: 0}"),
                "streams[0].pagination: max_pages: must be at least 1 or null",
            ),
        ] {
            let error = load(&config).unwrap_err();
            assert_eq!(error.to_string(), expected, "{config}");
        }
        // Other values keep serde's words, and 1 (or null) is accepted.
        let error = load(&source("retry: {max_attempts: -1}")).unwrap_err().to_string();
        assert_eq!(
            error,
            "source.retry.max_attempts: invalid value: integer `-1`, expected u32"
        );
        for config in [
            source("max_concurrent_streams: 1, retry: {max_attempts: 1}, rate_limit: {burst: 1, concurrency: 1}"),
            pagination("{type: offset, limit: 1, max_pages: null}"),
            pagination("{type: page_number, page_size: 1, max_pages: 1}"),
        ] {
            let config = load(&config).unwrap();
            config.validate().unwrap();
        }
    }

    /// A database source's config, with `source` and `stream` members added.
    fn database(source: &str, stream: &str) -> String {
        format!(
            "version: 1\nsource: {{name: db, type: postgres, host: db.test, user: reader, password: '${{env:PW}}'{source}}}\nstreams:\n  - {{name: orders, table: public.orders, primary_key: [id]{stream}}}\n"
        )
    }

    #[test]
    fn xmin_mode_is_for_postgres_tables_and_takes_no_cursor() {
        let loads = |text: &str| {
            ConnectorConfig::from_yaml(text, Resolve::References, &|_| Some("pw".to_owned()))
                .map(|loaded| loaded.config)
        };
        let config = loads(&database("", ", incremental: {mode: xmin}")).expect("xmin on a postgres table is valid");
        let incremental = config.streams[0].incremental.as_ref().unwrap();
        assert!(incremental.is_xmin());
        assert_eq!(incremental.cursor_column(), None);
        assert_eq!(incremental.cursor_format(), CursorFormat::Integer);
        assert_eq!(incremental.first_start(), "0");
        let refused = |text: String| loads(&text).unwrap_err().to_string();
        for (text, expected) in [
            (
                database("", ", incremental: {mode: xmin, cursor_field: updated_at}"),
                "streams[0].incremental.cursor_field: mode: xmin follows the transaction",
            ),
            (
                database("", ", incremental: {mode: xmin, start: '0'}"),
                "streams[0].incremental.start: mode: xmin",
            ),
            (
                "version: 1\nsource: {name: db, type: mysql, host: db.test, user: r, password: '${env:PW}'}\n\
                 streams: [{name: o, table: o, primary_key: [id], incremental: {mode: xmin}}]\n"
                    .to_owned(),
                "streams[0].incremental.mode: xmin is read only by postgres sources",
            ),
            (
                config_with_stream("{name: o, path: /o, incremental: {mode: xmin, param: since}}"),
                "streams[0].incremental.mode: xmin is read only by postgres sources",
            ),
            (
                "version: 1\nsource: {name: db, type: postgres, host: db.test, user: r, password: '${env:PW}'}\n\
                 streams: [{name: o, query: 'select 1 as id', primary_key: [id], incremental: {mode: xmin}}]\n"
                    .to_owned(),
                "streams[0].incremental.mode: xmin reads the row versions of a table",
            ),
            (database("", ", incremental: {mode: sometimes}"), "mode"),
        ] {
            let message = refused(text);
            assert!(message.contains(expected), "expected `{expected}` in: {message}");
        }
    }

    #[test]
    fn database_sources_check_their_keys_and_refuse_the_http_ones() {
        let loads = |text: &str| {
            ConnectorConfig::from_yaml(text, Resolve::References, &|_| Some("pw".to_owned()))
                .map(|loaded| loaded.config)
        };
        let config = loads(&database("", "")).expect("a minimal database config is valid");
        assert!(config.source.kind.is_database());
        let refused = |text: String| loads(&text).unwrap_err().to_string();
        for (text, expected) in [
            (
                "version: 1\nsource: {name: db, type: postgres}\nstreams: [{name: o, table: o, primary_key: [id]}]\n".to_owned(),
                "source.url: a postgres source needs source.url",
            ),
            (database(", url: '${env:URL}'", ""), "source.host: give either source.url or source.host"),
            (database(", base_url: 'https://api.test'", ""), "source.base_url: a postgres source connects with"),
            (database(", auth: {type: bearer, token: '${env:T}'}", ""), "source.auth: is read only by rest sources"),
            (database(", port: 0", ""), "source.port: must be between 1 and 65535"),
            (database(", statement_timeout: 0s", ""), "source.statement_timeout: must be greater than zero"),
            (database(", pool_size: 0", ""), "source.pool_size: must be at least 1"),
            (database("", ", path: /orders"), "streams[0].path: is read only by rest sources"),
            (database("", ", query: 'select 1 as id'"), "streams[0].query: set either table or query"),
            (database("", ", table: 'a.b.c'"), "streams[0].table: `a.b.c` must be `schema.name` or `name`"),
            (database("", ", primary_key: []"), "streams[0].primary_key: a database stream needs"),
            (
                database("", ", incremental: {cursor_field: updated_at, param: since, start: '2024-01-01T00:00:00Z'}"),
                "streams[0].incremental.param: is read only by rest sources",
            ),
            (
                database("", ", incremental: {cursor_field: /updated_at, start: '2024-01-01T00:00:00Z'}"),
                "streams[0].incremental.cursor_field: names a column",
            ),
            (
                "version: 1\nsource: {name: db, type: mysql, url: 'mysql://reader:hunter2@db.test/shop'}\nstreams: [{name: o, table: o, primary_key: [id]}]\n".to_owned(),
                "source.url: holds a literal password",
            ),
            (
                "version: 1\nsource: {name: db, type: mysql, host: db.test, user: r, password: hunter2}\nstreams: [{name: o, table: o, primary_key: [id]}]\n".to_owned(),
                "source.password: secret fields must be a reference",
            ),
            (
                config_with_stream("{name: o, path: /o, table: public.o}"),
                "streams[0].table: is read only by database sources",
            ),
            (
                "version: 1\nsource: {name: s, base_url: 'https://api.test', host: db.test}\nstreams: [{name: o, path: /o}]\n".to_owned(),
                "source.host: is read only by database sources",
            ),
            (
                config_with_stream("{name: o, path: /o, incremental: {cursor_field: u, start: '2024-01-01T00:00:00Z'}}"),
                "streams[0].incremental.param: must not be empty",
            ),
        ] {
            let message = refused(text.clone());
            assert!(message.contains(expected), "{text}\ngave: {message}\nexpected: {expected}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn max_concurrent_streams_defaults_to_four_and_refuses_zero() {
        let with_source = |extra: &str| {
            format!(
                "version: 1\nsource: {{name: s, base_url: 'https://api.test'{extra}}}\nstreams: [{{name: o, path: /o}}]\n"
            )
        };
        assert_eq!(load(&with_source("")).unwrap().source.max_concurrent_streams.get(), 4);
        assert_eq!(
            load(&with_source(", max_concurrent_streams: 1"))
                .unwrap()
                .source
                .max_concurrent_streams
                .get(),
            1
        );
        let message = load(&with_source(", max_concurrent_streams: 0"))
            .unwrap_err()
            .to_string();
        assert_eq!(message, "source.max_concurrent_streams: must be at least 1");
    }

    #[test]
    fn refuses_plain_http_except_loopback() {
        let text = "version: 1\nsource: {name: s, base_url: 'http://api.test'}\nstreams: [{name: o, path: /o}]\n";
        let message = load(text).unwrap_err().to_string();
        assert!(message.contains("allow_insecure_http"), "{message}");
        load(&text.replace("api.test", "127.0.0.1:9")).unwrap();
        load(&text.replace("}\nstreams", ", allow_insecure_http: true}\nstreams")).unwrap();
    }

    #[test]
    fn oauth2_and_hmac_settings_are_checked() {
        let with_auth = |auth: &str| {
            format!(
                "version: 1\nsource: {{name: s, base_url: 'https://api.test', auth: {auth}}}\nstreams: [{{name: o, path: /o}}]\n"
            )
        };
        let message = load(&with_auth(
            "{type: oauth2, flow: refresh_token, token_url: 'https://auth.test/t', client_id: c, client_secret: '${env:X:-s3cr3t-x}'}",
        ))
        .unwrap_err()
        .to_string();
        assert!(message.starts_with("source.auth.refresh_token:"), "{message}");
        let message = load(&with_auth(
            "{type: oauth2, flow: client_credentials, token_url: 'http://auth.test/t', client_id: c, client_secret: '${env:X:-s3cr3t-x}'}",
        ))
        .unwrap_err()
        .to_string();
        assert!(message.starts_with("source.auth.token_url:"), "{message}");
        let message = load(&with_auth(
            "{type: hmac, secret: '${env:X:-s3cr3t-x}', canonical: '{verb}'}",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with("source.auth.canonical: unknown placeholder"),
            "{message}"
        );
        let message = load(&with_auth(
            "{type: hmac, secret: '${env:X:-not base64!}', secret_encoding: base64}",
        ))
        .unwrap_err()
        .to_string();
        assert!(message.starts_with("source.auth.secret:"), "{message}");
        assert!(!message.contains("not base64!"), "{message}");
        load(&with_auth(
            "{type: hmac, secret: '${env:X:-s3cr3t-x}', header_value: 'HMAC {key_id}:{signature}', key_id: k1}",
        ))
        .unwrap();
    }

    #[test]
    fn body_injection_needs_post() {
        let message = load(&config_with_stream(
            "{name: o, path: /o, pagination: {type: cursor, cursor_path: /n, cursor_param: c, inject_into: body}}",
        ))
        .unwrap_err()
        .to_string();
        assert!(message.starts_with("streams[0].pagination.inject_into:"), "{message}");
    }

    #[test]
    fn a_pointer_bound_needs_a_post_body_holding_its_parent() {
        let inc = "incremental: {cursor_field: t, param: /filterGroups/0/filters/0/value, start: '0'}";
        let message = load(&config_with_stream(&format!("{{name: o, path: /o, {inc}}}")))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("streams[0].incremental.param:"), "{message}");
        let message = load(&config_with_stream(&format!(
            "{{name: o, path: /o, method: POST, body: {{filterGroups: []}}, {inc}}}"
        )))
        .unwrap_err()
        .to_string();
        assert!(message.contains("/filterGroups/0/filters/0"), "{message}");
        load(&config_with_stream(&format!(
            "{{name: o, path: /o, method: POST, body: {{filterGroups: [{{filters: [{{value: x}}]}}]}}, {inc}}}"
        )))
        .unwrap();
    }

    #[test]
    fn cursor_takes_exactly_one_source_of_the_cursor() {
        for pagination in [
            "{type: cursor, cursor_param: c}",
            "{type: cursor, cursor_path: /n, last_record_path: /id, cursor_param: c}",
        ] {
            let message = load(&config_with_stream(&format!(
                "{{name: o, path: /o, pagination: {pagination}}}"
            )))
            .unwrap_err()
            .to_string();
            assert!(
                message.starts_with("streams[0].pagination: set exactly one of cursor_path"),
                "{message}"
            );
        }
        let message = load(&config_with_stream(
            "{name: o, path: /o, pagination: {type: cursor, last_record_path: id, cursor_param: c, stop_path: has_more}}",
        ))
        .unwrap_err()
        .to_string();
        assert!(message.starts_with("streams[0].pagination.stop_path:"), "{message}");
        let loaded = load(&config_with_stream(
            "{name: o, path: /o, records_path: /data, pagination: {type: cursor, last_record_path: /id, cursor_param: starting_after, stop_path: /has_more, stop_value: false}}",
        ))
        .unwrap();
        match &loaded.streams[0].pagination {
            PaginationConfig::Cursor {
                records_path,
                stop_value,
                ..
            } => {
                assert_eq!(
                    records_path, "/data",
                    "the loader tells the paginator where records are"
                );
                assert_eq!(*stop_value, serde_json::Value::Bool(false));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_pagination_type_lists_the_choices() {
        let message = load(&config_with_stream("{name: o, path: /o, pagination: {type: sideways}}"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("streams[0].pagination.type:"), "{message}");
        assert!(message.contains("link_header"), "{message}");
    }

    #[test]
    fn deletes_land_as_a_companion_stream_after_their_stream() {
        let config = load(&config_with_stream(
            "{name: customers, path: /v1/customers, primary_key: [id], deletes: {path: /v1/events, \
             params: {type: customer.deleted}, records_path: /data, key: [/data/object/id], \
             pagination: {type: cursor, last_record_path: /id, cursor_param: starting_after}, \
             incremental: {cursor_field: created, param: 'created[gte]', start: '1704067200', format: unix_seconds}}}",
        ))
        .unwrap();
        let names: Vec<&str> = config.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["customers", "customers__deletes"]);
        let companion = &config.streams[1];
        assert_eq!(companion.deletes_of.as_deref(), Some("customers"));
        assert_eq!(companion.path, "/v1/events");
        assert_eq!(companion.primary_key, ["/data/object/id"]);
        assert_eq!(companion.sync_mode(), crate::config::SyncMode::Incremental);
        assert!(companion.deletes.is_none() && config.streams[0].deletes_of.is_none());
    }

    #[test]
    fn deletes_errors_name_the_key() {
        for (stream, expected) in [
            (
                "{name: c, path: /c, primary_key: [id], deletes: {path: /d}}",
                "streams[0].deletes: missing field `key`",
            ),
            (
                "{name: c, path: /c, primary_key: [id], deletes: {path: /d, key: [id], since: x}}",
                "streams[0].deletes.since: unknown field `since`",
            ),
            (
                "{name: c, path: /c, deletes: {path: /d, key: [id]}}",
                "streams[0].deletes: stream `c` needs a primary_key",
            ),
            (
                "{name: c, path: /c, primary_key: [a, b], deletes: {path: /d, key: [id]}}",
                "streams[0].deletes.key: must name 2 field(s), one per primary_key field of stream `c`",
            ),
            (
                "{name: c, path: /c, primary_key: [id], deletes: {path: /d, key: ['']}}",
                "streams[0].deletes.key[0]: must not be empty",
            ),
            (
                "{name: c, path: /c, primary_key: [id], deletes: {path: d, key: [id]}}",
                "streams[0].deletes.path: must start with `/`",
            ),
            (
                "{name: c, path: /c, primary_key: [id], deletes: {path: /d, records_path: data, key: [id]}}",
                "streams[0].deletes.records_path:",
            ),
            (
                "{name: c, path: /c, primary_key: [id], deletes: {path: /d, key: [id], pagination: {type: offset, offset_param: o, limit_param: l, limit: 10, inject_into: body}}}",
                "streams[0].deletes.pagination.inject_into: inject_into: body needs method: POST",
            ),
        ] {
            let message = load(&config_with_stream(stream)).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{stream}: {message}");
        }
        let taken = "version: 1\nsource: {name: shop, base_url: 'https://api.test'}\nstreams:\n  \
                     - {name: c, path: /c, primary_key: [id], deletes: {path: /d, key: [id]}}\n  - {name: c__deletes, path: /x}\n";
        let message = load(taken).unwrap_err().to_string();
        assert!(
            message.starts_with("streams[0].deletes: lands as stream `c__deletes`, which the config already defines"),
            "{message}"
        );
        let long = format!(
            "{{name: {}, path: /c, primary_key: [id], deletes: {{path: /d, key: [id]}}}}",
            "c".repeat(60)
        );
        let message = load(&config_with_stream(&long)).unwrap_err().to_string();
        assert!(message.contains("longer than 64 characters"), "{message}");
    }
}

#[cfg(test)]
mod format_tests {
    use crate::config::{ConnectorConfig, Resolve};

    fn refusal(stream: &str) -> String {
        let text =
            format!("version: 1\nsource: {{name: shop, base_url: 'https://api.test'}}\nstreams:\n  - {stream}\n");
        match ConnectorConfig::from_yaml(&text, Resolve::References, &|_| None) {
            Ok(_) => "accepted".to_owned(),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn formats_take_only_their_keys_and_paginations_that_need_nothing_from_the_body() {
        for (stream, key) in [
            (
                "{name: o, path: /o, format: csv, pagination: {type: cursor, cursor_path: /next, cursor_param: c}}",
                "streams[0].pagination.type",
            ),
            (
                "{name: o, path: /o, format: xml, xml: {record_path: /a/b}, pagination: {type: next_url, next_url_path: /n}}",
                "streams[0].pagination.type",
            ),
            (
                "{name: o, path: /o, format: ndjson, pagination: {type: offset, limit: 10, total_path: /total}}",
                "streams[0].pagination.total_path",
            ),
            (
                "{name: o, path: /o, format: tsv, pagination: {type: page_number, total_pages_path: /pages}}",
                "streams[0].pagination.total_pages_path",
            ),
            (
                "{name: o, path: /o, format: csv, records_path: /data}",
                "streams[0].records_path",
            ),
            ("{name: o, path: /o, csv: {delimiter: ';'}}", "streams[0].csv"),
            (
                "{name: o, path: /o, format: ndjson, xml: {record_path: /a/b}}",
                "streams[0].xml",
            ),
            ("{name: o, path: /o, encoding: windows-1251}", "streams[0].encoding"),
            ("{name: o, path: /o, compression: gzip}", "streams[0].compression"),
            (
                "{name: o, path: /o, format: csv, encoding: utf-16le}",
                "streams[0].encoding",
            ),
            (
                "{name: o, path: /o, format: csv, csv: {delimiter: ';;'}}",
                "streams[0].csv.delimiter",
            ),
            (
                "{name: o, path: /o, format: csv, csv: {quote: ','}}",
                "streams[0].csv.quote",
            ),
            (
                "{name: o, path: /o, format: csv, csv: {header: false}}",
                "streams[0].csv.columns",
            ),
            (
                "{name: o, path: /o, format: csv, csv: {columns: [a, a]}}",
                "streams[0].csv.columns[1]",
            ),
            ("{name: o, path: /o, format: xml}", "streams[0].xml.record_path"),
            (
                "{name: o, path: /o, format: xml, xml: {record_path: ValCurs}}",
                "streams[0].xml.record_path",
            ),
            (
                "{name: o, path: /o, format: csv, redact: [{path: /email, action: drop}]}",
                "streams[0].redact",
            ),
        ] {
            let message = refusal(stream);
            assert!(message.starts_with(&format!("{key}:")), "{stream}: {message}");
        }
        for stream in [
            "{name: o, path: /o, format: csv, pagination: {type: offset, limit: 100}, encoding: windows-1251, compression: auto}",
            "{name: o, path: /o, format: tsv, csv: {header: false, columns: [a, b]}, pagination: {type: link_header}}",
            "{name: o, path: /o, format: xml, xml: {record_path: /ValCurs/Valute}, pagination: {type: page_number}}",
            "{name: o, path: /o, format: ndjson, compression: gzip, redact: [{path: /email, action: drop}]}",
        ] {
            assert_eq!(refusal(stream), "accepted", "{stream}");
        }
    }
}
