//! The record envelope (contract §3): one JSON object per line, provenance first, then the
//! record exactly as the source sent it.
//!
//! `_raw` is a JSON string whose value is the record's bytes as received (so a line stays
//! one line even when the source pretty-prints), and `_payload_sha256` is the SHA-256 of
//! those bytes.

use serde::Serialize;

/// What every line of one stream's run has in common.
#[derive(Debug, Clone)]
pub struct EnvelopeTemplate {
    /// `{"_source_system":..,"_source_object":..,` pre-rendered.
    head: String,
    /// `"_run_id":..,"_connector_version":..,"_tenant":..,"_environment":..,` pre-rendered.
    run_fields: String,
}

/// What the lines of one page have in common.
#[derive(Debug, Clone)]
pub struct PageFields {
    /// `"_source_endpoint":"GET /path",` pre-rendered.
    endpoint: String,
    /// `"_extracted_at":"..",` pre-rendered.
    extracted_at: String,
    /// `_page` as text.
    page: String,
}

fn json_string(value: &str) -> String {
    serde_json::to_string(value).expect("strings serialize")
}

fn json_optional(value: Option<&str>) -> String {
    value.map_or_else(|| "null".to_owned(), json_string)
}

fn field<T: Serialize + ?Sized>(name: &str, value: &T) -> String {
    format!(
        "\"{name}\":{},",
        serde_json::to_string(value).expect("fields serialize")
    )
}

impl EnvelopeTemplate {
    pub fn new(source: &str, stream: &str, run_id: &str, tenant: Option<&str>, environment: Option<&str>) -> Self {
        Self {
            head: format!(
                "{{{}{}",
                field("_source_system", source),
                field("_source_object", stream)
            ),
            run_fields: format!(
                "{}{}\"_tenant\":{},\"_environment\":{},",
                field("_run_id", run_id),
                field("_connector_version", crate::VERSION),
                json_optional(tenant),
                json_optional(environment),
            ),
        }
    }
}

impl PageFields {
    /// `endpoint` is the method and path (query without secrets); `extracted_at` when the
    /// page arrived.
    pub fn new(endpoint: &str, extracted_at: &str, page: u64) -> Self {
        Self {
            endpoint: field("_source_endpoint", endpoint),
            extracted_at: field("_extracted_at", extracted_at),
            page: page.to_string(),
        }
    }
}

/// What differs from record to record.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    pub record_id: Option<&'a str>,
    pub updated_at: Option<&'a str>,
    /// The parent's key, for child streams only (`_parent_key`).
    pub parent_key: Option<&'a str>,
    /// Hex SHA-256 of `raw`.
    pub sha256: &'a str,
    /// Redaction rules applied (`_redacted`), for streams that have rules.
    pub redacted: Option<&'a [&'a str]>,
    /// Why the record is a dead letter (`_error`), in dead-letter parts only.
    pub error: Option<&'a crate::quality::validate::Violation>,
    /// The exact bytes as base64 (`_raw_base64`), for a dead-lettered page that is not
    /// UTF-8: `_raw` then holds them with invalid sequences replaced, and
    /// `_payload_sha256` is the hash of the exact bytes.
    pub raw_base64: Option<&'a str>,
    /// The whole body's length (`_raw_length`), for a dead-lettered page too large to
    /// keep: `_raw` (and `_raw_base64`) then hold only its first MiB, and
    /// `_payload_sha256` is the hash of the whole body.
    pub raw_length: Option<u64>,
    /// The record's parsed form as JSON text (`_record`), for csv, tsv and xml rows, whose
    /// `_raw` is the row as sent.
    pub record: Option<&'a str>,
}

/// Hex SHA-256 of a record's bytes, as `_payload_sha256` carries it.
pub fn payload_sha256(raw: &str) -> String {
    crate::hash::sha256_hex(raw.as_bytes())
}

/// Appends a JSON string, or `null`.
fn write_optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => serde_json::to_writer(&mut *out, value).expect("writing to a Vec cannot fail"),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends one envelope line (ending in `\n`) to `out`.
pub fn write_line(
    out: &mut Vec<u8>,
    template: &EnvelopeTemplate,
    page: &PageFields,
    record: RecordFields<'_>,
    loaded_at: &str,
    raw: &str,
) {
    out.extend_from_slice(template.head.as_bytes());
    out.extend_from_slice(page.endpoint.as_bytes());
    out.extend_from_slice(b"\"_source_record_id\":");
    write_optional(out, record.record_id);
    out.extend_from_slice(b",\"_source_updated_at\":");
    write_optional(out, record.updated_at);
    out.push(b',');
    out.extend_from_slice(page.extracted_at.as_bytes());
    out.extend_from_slice(b"\"_loaded_at\":\"");
    out.extend_from_slice(loaded_at.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(template.run_fields.as_bytes());
    out.extend_from_slice(b"\"_payload_sha256\":\"");
    out.extend_from_slice(record.sha256.as_bytes());
    out.extend_from_slice(b"\",\"_page\":");
    out.extend_from_slice(page.page.as_bytes());
    if let Some(parent_key) = record.parent_key {
        out.extend_from_slice(b",\"_parent_key\":");
        write_optional(out, Some(parent_key));
    }
    if let Some(redacted) = record.redacted {
        out.extend_from_slice(b",\"_redacted\":");
        serde_json::to_writer(&mut *out, redacted).expect("writing to a Vec cannot fail");
    }
    if let Some(error) = record.error {
        out.extend_from_slice(b",\"_error\":");
        serde_json::to_writer(&mut *out, error).expect("writing to a Vec cannot fail");
    }
    if let Some(base64) = record.raw_base64 {
        out.extend_from_slice(b",\"_raw_base64\":\"");
        out.extend_from_slice(base64.as_bytes());
        out.push(b'"');
    }
    if let Some(length) = record.raw_length {
        out.extend_from_slice(b",\"_raw_length\":");
        out.extend_from_slice(length.to_string().as_bytes());
    }
    if let Some(record) = record.record {
        out.extend_from_slice(b",\"_record\":");
        serde_json::to_writer(&mut *out, record).expect("writing to a Vec cannot fail");
    }
    out.extend_from_slice(b",\"_raw\":");
    serde_json::to_writer(&mut *out, raw).expect("writing to a Vec cannot fail");
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_valid_json_with_every_field_in_order() {
        let template = EnvelopeTemplate::new("shop", "orders", "run-1", Some("acme"), None);
        let page = PageFields::new("GET /orders?limit=5", "2026-01-01T00:00:00.000001Z", 3);
        let raw = "{\"id\": 1,\n \"n\":\"caf\\u00e9\"}";
        let mut out = Vec::new();
        let sha = payload_sha256(raw);
        let record = RecordFields {
            record_id: Some("1"),
            updated_at: None,
            parent_key: None,
            sha256: &sha,
            redacted: None,
            error: None,
            raw_base64: None,
            raw_length: None,
            record: None,
        };
        write_line(&mut out, &template, &page, record, "2026-01-01T00:00:00.000002Z", raw);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "_source_system",
                "_source_object",
                "_source_endpoint",
                "_source_record_id",
                "_source_updated_at",
                "_extracted_at",
                "_loaded_at",
                "_run_id",
                "_connector_version",
                "_tenant",
                "_environment",
                "_payload_sha256",
                "_page",
                "_raw"
            ]
        );
        assert_eq!(value["_raw"].as_str().unwrap(), raw);
        assert_eq!(value["_payload_sha256"], crate::hash::sha256_hex(raw.as_bytes()));
        assert_eq!(value["_tenant"], "acme");
        assert!(value["_environment"].is_null());
        assert_eq!(value["_page"], 3);
    }
}
