//! `landfall spec`: the config's JSON Schema, following the Airbyte connector-spec
//! conventions so UIs and editors can render and check it: secret fields carry
//! `airbyte_secret: true`, every property has a unique `order` within its object, each
//! `oneOf` is discriminated by a `type` property with a distinct `const`, and `type` is a
//! single type or `[T, "null"]`.

use serde_json::{Map, Value, json};

const DURATION_PATTERN: &str = r"^([0-9]+(ns|us|ms|s|m|h|d|w)\s*)+$|^0$";
const SIZE_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?\s*(B|KB|kB|MB|GB|KiB|MiB|GiB)?$";
const IDENTIFIER_PATTERN: &str = "^[a-z][a-z0-9_]*$";
const POINTER_PATTERN: &str = "^(/.*)?$";

fn with(mut schema: Value, key: &str, value: Value) -> Value {
    schema[key] = value;
    schema
}

/// `records_path` of a stream and of its deletes endpoint.
fn records_path() -> Value {
    with(
        with(
            string("JSON pointer to the records array; empty = the document is the array"),
            "pattern",
            json!(POINTER_PATTERN),
        ),
        "default",
        json!(""),
    )
}

/// `body` of a stream and of its deletes endpoint.
fn request_body() -> Value {
    json!({"type": ["object", "null"], "description": "JSON body for POST", "default": null})
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn nullable_string(description: &str) -> Value {
    json!({"type": ["string", "null"], "description": description})
}

fn secret(description: &str) -> Value {
    json!({"type": "string", "description": description, "airbyte_secret": true})
}

fn integer(description: &str, default: Value) -> Value {
    json!({"type": "integer", "minimum": 0, "description": description, "default": default})
}

/// An integer `validate` refuses at zero.
fn positive_integer(description: &str, default: Value) -> Value {
    json!({"type": "integer", "minimum": 1, "description": description, "default": default})
}

fn nullable_integer(description: &str) -> Value {
    json!({"type": ["integer", "null"], "minimum": 1, "description": description, "default": null})
}

fn boolean(description: &str, default: bool) -> Value {
    json!({"type": "boolean", "description": description, "default": default})
}

fn duration(description: &str, default: &str) -> Value {
    json!({"type": "string", "pattern": DURATION_PATTERN, "description": description, "default": default})
}

fn enumeration(description: &str, values: &[&str], default: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description, "default": default})
}

fn string_map(description: &str) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": {"type": "string"}, "default": {}})
}

fn scalar_map(description: &str) -> Value {
    json!({"type": "object", "description": description, "additionalProperties": true, "default": {}})
}

fn string_list(description: &str) -> Value {
    json!({"type": "array", "description": description, "items": {"type": "string"}, "default": []})
}

/// An object whose properties get `order` in the listed sequence.
fn object(title: &str, required: &[&str], properties: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (order, (name, mut schema)) in properties.into_iter().enumerate() {
        schema["order"] = json!(order);
        map.insert(name.to_owned(), schema);
    }
    json!({
        "type": "object",
        "title": title,
        "required": required,
        "additionalProperties": false,
        "properties": map,
    })
}

/// A `oneOf` variant discriminated by `type: <kind>`.
fn variant(kind: &str, title: &str, required: &[&str], properties: Vec<(&str, Value)>) -> Value {
    let mut all = vec![("type", json!({"type": "string", "const": kind, "default": kind}))];
    all.extend(properties);
    let mut required_all = vec!["type"];
    required_all.extend_from_slice(required);
    object(title, &required_all, all)
}

fn inject_into() -> Value {
    enumeration(
        "Where the page token goes: a query parameter, a top-level field of the JSON body, or a header",
        &["query", "body", "header"],
        "query",
    )
}

fn stop_path() -> Value {
    nullable_string(
        "JSON pointer to a body value that ends the stream when it equals stop_value (e.g. /end_of_stream, or /has_more with stop_value false)",
    )
}

fn stop_value() -> Value {
    json!({"description": "The JSON value at stop_path that ends the stream", "default": true})
}

fn max_pages() -> Value {
    nullable_integer("Stop with an error after this many pages (never a silent stop); null = unlimited")
}

fn auth() -> Value {
    json!({
        "title": "Authentication",
        "description": "How requests are authenticated; secrets must be ${env:NAME} or ${file:/path} references",
        "type": "object",
        "default": {"type": "none"},
        "oneOf": [
            variant("none", "No authentication", &[], vec![]),
            variant("api_key", "API key", &["name", "value"], vec![
                ("in", enumeration("Send the key in a header or a query parameter", &["header", "query"], "header")),
                ("name", string("Header or query parameter name, e.g. X-Api-Key")),
                ("value", secret("The API key (a reference)")),
            ]),
            variant("bearer", "Bearer token", &["token"], vec![
                ("token", secret("The bearer token (a reference)")),
            ]),
            variant("basic", "HTTP basic", &["username"], vec![
                ("username", string("User name; may be a reference when the vendor puts the API key here")),
                ("password", secret("Password (a reference)")),
            ]),
            variant("oauth2", "OAuth 2.0", &["flow", "token_url", "client_id", "client_secret"], vec![
                ("flow", enumeration("Grant used to obtain tokens", &["client_credentials", "refresh_token"], "client_credentials")),
                ("token_url", string("Token endpoint URL (https, or http to loopback or with allow_insecure_http)")),
                ("client_id", string("Client id")),
                ("client_secret", secret("Client secret (a reference)")),
                ("refresh_token", secret("Refresh token for the refresh_token flow (a reference); a rotated one is kept encrypted in _state/_auth.json")),
                ("scopes", string_list("Scopes to request")),
                ("client_auth", enumeration("How the client authenticates to the token endpoint", &["body", "basic"], "body")),
                ("token_params", string_map("Extra form fields of the token request, e.g. audience")),
                ("refresh_margin", duration("Refresh this long before the token expires (at most half its lifetime)", "60s")),
            ]),
            variant("hmac", "HMAC request signing", &["secret"], vec![
                ("secret", secret("Signing secret (a reference)")),
                ("secret_encoding", enumeration("How the secret is written", &["raw", "base64", "hex"], "raw")),
                ("header", with(string("Header carrying the signature"), "default", json!("X-Signature"))),
                ("header_value", with(string("Signature header value; {signature}, {key_id}, {timestamp} are replaced"), "default", json!("{signature}"))),
                ("key_id", nullable_string("Key id for {key_id}")),
                ("algorithm", enumeration("HMAC hash", &["sha256", "sha512"], "sha256")),
                ("encoding", enumeration("How the signature is written", &["hex", "base64"], "hex")),
                ("canonical", with(string("The signed string; placeholders {method} {path} {query} {path_and_query} {host} {timestamp} {body_sha256} {body} {key_id}"), "default", json!("{method}\n{path_and_query}\n{timestamp}\n{body_sha256}"))),
                ("timestamp_header", with(nullable_string("Header carrying the timestamp; null sends none"), "default", json!("X-Timestamp"))),
                ("timestamp_format", enumeration("How the timestamp is written", &["unix", "unix_ms", "rfc3339"], "unix")),
            ]),
            variant("google_service_account", "Google service account (JWT bearer grant)", &["key", "scopes"], vec![
                ("key", secret("The service account's JSON key, e.g. ${file:/run/secrets/key.json}")),
                ("scopes", json!({"type": "array", "description": "Scopes requested (at least one), e.g. https://www.googleapis.com/auth/spreadsheets.readonly", "items": {"type": "string", "minLength": 1}, "minItems": 1})),
                ("subject", nullable_string("User to act as through domain-wide delegation (the assertion's sub)")),
                ("token_url", nullable_string("Token endpoint; default: the key's token_uri, else https://oauth2.googleapis.com/token")),
            ]),
        ],
    })
}

fn pagination() -> Value {
    json!({
        "title": "Pagination",
        "type": "object",
        "default": {"type": "none"},
        "oneOf": [
            variant("none", "Single request", &[], vec![]),
            variant("cursor", "Cursor in the body or from the last record", &["cursor_param"], vec![
                ("cursor_path", with(nullable_string("JSON pointer to the next cursor in the response body; exactly one of cursor_path and last_record_path"), "pattern", json!(POINTER_PATTERN))),
                ("last_record_path", nullable_string("Field of the page's last record that is the next cursor (e.g. /id for Stripe's starting_after)")),
                ("cursor_param", string("Parameter that carries the cursor")),
                ("inject_into", inject_into()),
                ("stop_path", stop_path()),
                ("stop_value", stop_value()),
                ("max_pages", max_pages()),
            ]),
            variant("next_url", "Next URL in the body", &["next_url_path"], vec![
                ("next_url_path", with(string("JSON pointer to the next page URL (absolute or relative)"), "pattern", json!(POINTER_PATTERN))),
                ("stop_path", stop_path()),
                ("stop_value", stop_value()),
                ("max_pages", max_pages()),
            ]),
            variant("link_header", "RFC 8288 Link header", &[], vec![
                ("max_pages", max_pages()),
            ]),
            variant("offset", "Offset and limit", &[], vec![
                ("offset_param", with(string("Offset parameter name"), "default", json!("offset"))),
                ("limit_param", with(string("Limit parameter name"), "default", json!("limit"))),
                ("limit", positive_integer("Page size", json!(100))),
                ("total_path", nullable_string("JSON pointer to the total record count, if given")),
                ("inject_into", inject_into()),
                ("max_pages", max_pages()),
            ]),
            variant("page_number", "Page number", &[], vec![
                ("page_param", with(string("Page parameter name"), "default", json!("page"))),
                ("page_size_param", nullable_string("Page size parameter name, if the API takes one")),
                ("page_size", positive_integer("Page size", json!(100))),
                ("start_page", integer("Number of the first page", json!(1))),
                ("total_pages_path", nullable_string("JSON pointer to the total page count, if given")),
                ("inject_into", inject_into()),
                ("max_pages", max_pages()),
            ]),
        ],
    })
}

fn source() -> Value {
    object(
        "Source",
        &["name"],
        vec![
            (
                "name",
                with(
                    string("Source system name; becomes _source_system and the landing prefix"),
                    "pattern",
                    json!(IDENTIFIER_PATTERN),
                ),
            ),
            (
                "type",
                enumeration(
                    "The source family: rest (HTTP APIs), postgres, or mysql (MySQL and MariaDB)",
                    &["rest", "postgres", "mysql"],
                    "rest",
                ),
            ),
            (
                "base_url",
                string("Base URL every stream path is appended to (rest sources: required)"),
            ),
            (
                "url",
                json!({"type": ["string", "null"], "description": "Database sources: connection URL (postgres://..., mysql://...), a reference when it holds a password; or host", "airbyte_secret": true, "default": null}),
            ),
            (
                "host",
                nullable_string("Database sources: the server's host (instead of url)"),
            ),
            (
                "port",
                json!({"type": ["integer", "null"], "minimum": 1, "maximum": 65535, "description": "Database sources: the server's port; null = 5432 (postgres), 3306 (mysql)", "default": null}),
            ),
            ("database", nullable_string("Database sources: the database to read")),
            ("user", nullable_string("Database sources: the login")),
            (
                "password",
                json!({"type": ["string", "null"], "description": "Database sources: the password (a reference)", "airbyte_secret": true, "default": null}),
            ),
            (
                "connect_timeout",
                json!({"type": ["string", "null"], "pattern": DURATION_PATTERN, "description": "Database sources: how long connecting may take; null = 10s", "default": null}),
            ),
            (
                "statement_timeout",
                json!({"type": ["string", "null"], "pattern": DURATION_PATTERN, "description": "Database sources: the longest one chunk's statement may run; null = the server's setting", "default": null}),
            ),
            (
                "application_name",
                nullable_string("Database sources: the name the server shows for the sessions; null = landfall"),
            ),
            (
                "pool_size",
                nullable_integer("Database sources: the most connections open at once (caps max_concurrent_streams)"),
            ),
            (
                "description",
                nullable_string("Description, carried to generated dbt sources"),
            ),
            ("tenant", nullable_string("Becomes _tenant")),
            ("environment", nullable_string("Becomes _environment")),
            ("headers", string_map("Headers sent with every request")),
            ("params", scalar_map("Query parameters sent with every request")),
            ("auth", auth()),
            ("timeout", duration("Per-request timeout", "30s")),
            (
                "retry",
                object(
                    "Retry",
                    &[],
                    vec![
                        (
                            "max_attempts",
                            positive_integer("Attempts in all, the first included", json!(3)),
                        ),
                        ("initial_delay", duration("Delay before the first retry", "1s")),
                        ("max_delay", duration("Longest delay between attempts", "30s")),
                        (
                            "multiplier",
                            json!({"type": "number", "minimum": 1, "description": "Backoff multiplier", "default": 2}),
                        ),
                        ("budget", duration("Total retry wait allowed per request", "2m")),
                        (
                            "retry_on_status",
                            json!({"type": "array", "items": {"type": "integer"}, "description": "HTTP statuses that are retried", "default": [408, 425, 429, 500, 502, 503, 504]}),
                        ),
                        ("respect_retry_after", boolean("Honour Retry-After", true)),
                    ],
                ),
            ),
            (
                "rate_limit",
                object(
                    "Rate limit",
                    &[],
                    vec![
                        (
                            "requests_per_second",
                            json!({"type": ["number", "null"], "minimum": 1.0 / 86_400.0, "description": "Token bucket rate per second; above zero, at least one request a day", "default": 10}),
                        ),
                        (
                            "requests_per_minute",
                            json!({"type": ["number", "null"], "minimum": 60.0 / 86_400.0, "description": "Token bucket rate per minute; above zero, at least one request a day", "default": null}),
                        ),
                        (
                            "requests_per_hour",
                            json!({"type": ["number", "null"], "minimum": 3600.0 / 86_400.0, "description": "Token bucket rate per hour; above zero, at least one request a day", "default": null}),
                        ),
                        ("burst", positive_integer("Bucket size", json!(10))),
                        ("concurrency", positive_integer("Requests in flight at once", json!(4))),
                        ("adaptive", boolean("Slow down from rate-limit response headers", true)),
                    ],
                ),
            ),
            (
                "circuit_breaker",
                object(
                    "Circuit breaker",
                    &[],
                    vec![
                        (
                            "failure_threshold",
                            positive_integer("Consecutive failures that open the circuit", json!(5)),
                        ),
                        ("cooldown", duration("How long the circuit stays open", "30s")),
                    ],
                ),
            ),
            (
                "tls",
                object(
                    "TLS",
                    &[],
                    vec![
                        (
                            "mode",
                            json!({"type": ["string", "null"], "enum": ["disable", "prefer", "require", "verify-full", null], "description": "Database sources: whether to use TLS; the certificate and host name are verified whenever TLS is used; null = prefer", "default": null}),
                        ),
                        ("ca_file", nullable_string("Extra CA bundle (PEM)")),
                        (
                            "client_cert_file",
                            nullable_string("Client certificate for mutual TLS (PEM)"),
                        ),
                        ("client_key_file", nullable_string("Client key for mutual TLS (PEM)")),
                        (
                            "min_version",
                            enumeration("Lowest TLS version accepted", &["1.2", "1.3"], "1.2"),
                        ),
                    ],
                ),
            ),
            (
                "allow_insecure_http",
                boolean("Allow plain http:// to non-loopback hosts", false),
            ),
            (
                "max_run_duration",
                json!({"type": ["string", "null"], "pattern": DURATION_PATTERN, "description": "Longest a run may take; a rate-limit wait that would pass it stops the stream as partial. null = no limit", "default": null}),
            ),
            (
                "max_concurrent_streams",
                json!({"type": "integer", "minimum": 1, "description": "Streams a run extracts at once in its one process, sharing one rate limiter, circuit breaker and token cache; a child starts after its parent", "default": 4}),
            ),
            (
                "max_response_size",
                json!({"type": "string", "pattern": SIZE_PATTERN, "description": "Most bytes one response body may hold, counted after decompression; a larger page fails with RESPONSE_TOO_LARGE (at least 1KiB)", "default": "256MiB"}),
            ),
            (
                "spill_threshold",
                json!({"type": "string", "pattern": SIZE_PATTERN, "description": "A response body larger than this is written to a temporary file (under TMPDIR) as it arrives and its records read from there one at a time, so memory does not grow with the page; 0 spills every page", "default": "8MiB"}),
            ),
            (
                "redirects",
                enumeration(
                    "Redirects followed: same_origin (same scheme, host and port), none, or any_https (credentials dropped on a hop to another origin); never to http from https, never to link-local or metadata addresses",
                    &["same_origin", "none", "any_https"],
                    "same_origin",
                ),
            ),
        ],
    )
}

fn stream() -> Value {
    object(
        "Stream",
        &["name"],
        vec![
            (
                "name",
                with(
                    string("Stream name; becomes _source_object and the landing folder"),
                    "pattern",
                    json!(IDENTIFIER_PATTERN),
                ),
            ),
            (
                "path",
                string("Path appended to source.base_url (rest sources: required)"),
            ),
            (
                "table",
                nullable_string("Database sources: the table read (schema.name or name); or query"),
            ),
            (
                "query",
                nullable_string(
                    "Database sources: a read-only SELECT read instead of a table (runs in a READ ONLY transaction)",
                ),
            ),
            (
                "select",
                string_list("Database sources: the columns of the table to read, in order; empty = all"),
            ),
            (
                "chunk_size",
                json!({"type": ["integer", "null"], "minimum": 1, "description": "Database sources: rows per keyset chunk; null = 10000", "default": null}),
            ),
            (
                "description",
                nullable_string("Description, carried to generated dbt sources"),
            ),
            ("method", enumeration("HTTP method", &["GET", "POST"], "GET")),
            ("params", scalar_map("Query parameters of this stream")),
            ("headers", string_map("Headers of this stream")),
            ("body", request_body()),
            ("records_path", records_path()),
            ("primary_key", string_list("Record fields forming the primary key")),
            ("pagination", pagination()),
            (
                "incremental",
                json!({
                    "type": ["object", "null"],
                    "title": "Incremental",
                    "description": "Absent = full refresh every run",
                    "additionalProperties": false,
                    "default": null,
                    "properties": {
                        "cursor_field": {"type": "string", "description": "Field holding the record's cursor (mode cursor: required; mode xmin: none)", "order": 0},
                        "param": {"type": "string", "description": "Request parameter carrying the lower bound (rest sources: required)", "default": "", "order": 1},
                        "end_param": {"type": ["string", "null"], "description": "Request parameter carrying the upper bound", "order": 2},
                        "start": {"type": "string", "description": "Lower bound of the first run (mode cursor: required; mode xmin: none)", "order": 3},
                        "lookback": {"type": "string", "pattern": DURATION_PATTERN, "description": "Re-read window behind the checkpoint", "default": "0s", "order": 4},
                        "sorted": {"type": "boolean", "description": "Records arrive in cursor order", "default": true, "order": 5},
                "step": {"type": ["string", "null"], "pattern": DURATION_PATTERN, "description": "Slice long windows into sub-windows of this length, each checkpointed on completion", "default": null, "order": 6},
                "client_side_filter": {"type": "boolean", "description": "Drop records outside the window on the client", "default": false, "order": 7},
                "format": {"type": ["string", "null"], "pattern": "^(rfc3339|unix_seconds|unix_millis|date|integer|string|strftime:.+)$", "description": "How the cursor is written in requests and the checkpoint; null = inferred from start (RFC 3339, integer, otherwise string)", "default": null, "order": 8},
                "mode": {"type": "string", "enum": ["cursor", "xmin"], "description": "What the checkpoint follows: cursor (cursor_field) or xmin (postgres tables: the transaction that last wrote each row)", "default": "cursor", "order": 9},
                    },
                }),
            ),
            ("required", string_list("Fields that must be present and non-null")),
            (
                "schema",
                json!({"type": ["object", "null"], "description": "JSON Schema each record must satisfy, inline or {file: path}; read and compiled when the config is loaded", "default": null}),
            ),
            (
                "max_dead_letter_ratio",
                json!({"type": "number", "minimum": 0, "maximum": 1, "description": "Dead-lettered share above which the stream fails", "default": 0.01}),
            ),
            (
                "idempotency_key",
                boolean(
                    "Send an Idempotency-Key header (hash of stream, page and body) with each POST",
                    true,
                ),
            ),
            (
                "retry_post",
                enumeration(
                    "When a failed POST is sent again: auto (only with an idempotency key), safe (always; the POST is read-only), never",
                    &["auto", "safe", "never"],
                    "auto",
                ),
            ),
            (
                "redact",
                json!({
                    "type": "array",
                    "description": "PII rules applied before anything is stored or logged",
                    "default": [],
                    "items": object("Redaction rule", &["path", "action"], vec![
                        ("path", string("JSON pointer; * matches any key or array element")),
                        ("action", enumeration("What to do with the value", &["drop", "mask", "hash"], "mask")),
                        ("replacement", nullable_string("Replacement for mask")),
                        ("salt", secret("HMAC salt for hash (a reference)")),
                    ]),
                }),
            ),
            (
                "parent",
                json!({
                    "type": ["object", "null"],
                    "title": "Parent stream",
                    "description": "Makes this a child stream: requested once per record of the parent stream, which runs first in the same run",
                    "required": ["stream", "fields"],
                    "additionalProperties": false,
                    "default": null,
                    "properties": {
                        "stream": {"type": "string", "description": "The parent stream's name", "order": 0},
                        "fields": {"type": "array", "items": {"type": "string"}, "description": "Parent record fields (top-level names or JSON pointers) usable as {parent.<name>} in path and params; /a/b becomes {parent.a.b}", "order": 1},
                    },
                }),
            ),
            (
                "on_breaking_drift",
                enumeration(
                    "What breaking schema drift (removed fields, changed types) does: warn records it, fail also fails the stream",
                    &["warn", "fail"],
                    "warn",
                ),
            ),
            (
                "columns",
                json!({
                    "type": "object",
                    "description": "Typed columns the dbt staging model parses out of _raw, in order; default: from schema.properties",
                    "additionalProperties": {"type": "string", "enum": crate::config::COLUMN_TYPES},
                    "default": {},
                }),
            ),
            (
                "delete_marker",
                json!({
                    "type": ["object", "null"],
                    "title": "Delete marker",
                    "description": "How the source marks a deleted record, for is_deleted and deleted_at in staging",
                    "required": ["field"],
                    "additionalProperties": false,
                    "default": null,
                    "properties": {
                        "field": {"type": "string", "description": "The field that marks a deletion (a deletion timestamp, or a flag with value)", "order": 0},
                        "value": {"description": "The value of field that means deleted; absent = any non-null value", "order": 1},
                    },
                }),
            ),
            (
                "freshness",
                json!({
                    "type": ["object", "null"],
                    "title": "Freshness",
                    "description": "dbt source freshness of this stream; null disables it. Default: warn after 26h, error after 50h",
                    "additionalProperties": false,
                    "properties": {
                        "warn_after": {"type": ["string", "null"], "pattern": DURATION_PATTERN, "description": "Warn when the newest record is older than this", "order": 0},
                        "error_after": {"type": ["string", "null"], "pattern": DURATION_PATTERN, "description": "Error when the newest record is older than this", "order": 1},
                    },
                }),
            ),
            ("deletes", deletes()),
            ("async_job", async_job()),
            (
                "format",
                enumeration(
                    "How a response body holds its records: json (one document, records at records_path), ndjson (a JSON value per line), csv, tsv or xml (rows read in bounded memory; _raw is the row as sent, _record its parsed form)",
                    &["json", "ndjson", "csv", "tsv", "xml"],
                    "json",
                ),
            ),
            ("csv", csv_options()),
            ("xml", xml_options()),
            (
                "encoding",
                json!({"type": ["string", "null"], "description": "Character encoding of an ndjson, csv, tsv or xml body (a WHATWG label of an ASCII-compatible encoding, e.g. windows-1251); null = UTF-8, for xml the document's declaration", "default": null}),
            ),
            (
                "compression",
                enumeration(
                    "Compression of an ndjson, csv, tsv or xml body beyond Content-Encoding (always decoded): none, gzip, or auto (gzip when the body starts with the gzip magic bytes or is served as application/gzip)",
                    &["none", "gzip", "auto"],
                    "none",
                ),
            ),
        ],
    )
}

/// `streams[].async_job`: a report API's job, created, polled and downloaded.
fn async_job() -> Value {
    let pointer = |description: &str| with(string(description), "pattern", json!(POINTER_PATTERN));
    let create = object(
        "Create the job",
        &["path"],
        vec![
            ("method", enumeration("HTTP method", &["GET", "POST"], "POST")),
            ("path", string("Path appended to source.base_url")),
            (
                "body",
                json!({"type": ["object", "null"], "description": "JSON body (may hold ${env:...} references; never logged); an incremental stream's bounds are placed in it", "default": null}),
            ),
        ],
    );
    let poll = object(
        "Poll the job",
        &["path", "status_path", "done_values"],
        vec![
            ("path", string("Path appended to source.base_url, with {job_id}")),
            ("interval", duration("Pause between polls (at least 10ms)", "5s")),
            (
                "timeout",
                duration(
                    "How long a run polls before it stops with a retryable error; the job id stays in the state and the next run polls the same job",
                    "1h",
                ),
            ),
            (
                "status_path",
                pointer("JSON pointer to the job's status in the poll response"),
            ),
            (
                "done_values",
                string_list("Statuses meaning the result is ready (compared as text)"),
            ),
            ("failed_values", string_list("Statuses meaning the job failed")),
        ],
    );
    let result = object(
        "The job's result",
        &[],
        vec![
            (
                "urls_path",
                with(
                    nullable_string(
                        "JSON pointer, in the final poll response, to the result URL or array of URLs (a URL on another origin gets no source credentials)",
                    ),
                    "default",
                    Value::Null,
                ),
            ),
            (
                "path",
                with(
                    nullable_string(
                        "Path appended to source.base_url, with {job_id}, read with the stream's params, headers and pagination",
                    ),
                    "default",
                    Value::Null,
                ),
            ),
        ],
    );
    let mut schema = object(
        "Asynchronous job",
        &["create", "id_path", "poll", "result"],
        vec![
            ("create", create),
            ("id_path", pointer("JSON pointer to the job id in the create response")),
            ("poll", poll),
            (
                "result",
                with(result, "description", json!("Exactly one of urls_path and path")),
            ),
        ],
    );
    schema["type"] = json!(["object", "null"]);
    schema["default"] = Value::Null;
    schema["description"] = json!(
        "A report API's asynchronous job: created, its id kept in the stream's state, polled until done, its result landed in the stream's format"
    );
    schema
}

/// `streams[].deletes`: an endpoint listing removed records, landed as `<stream>__deletes`.
/// `streams[].csv`.
fn csv_options() -> Value {
    let mut schema = object(
        "CSV options",
        &[],
        vec![
            (
                "delimiter",
                json!({"type": ["string", "null"], "minLength": 1, "maxLength": 1, "description": "One ASCII character between fields; null = , for csv, a tab for tsv", "default": null}),
            ),
            (
                "quote",
                json!({"type": "string", "minLength": 1, "maxLength": 1, "description": "One ASCII character around fields holding the delimiter, the quote or a line break (doubled inside)", "default": "\""}),
            ),
            ("header", boolean("Whether the first row names the columns", true)),
            (
                "columns",
                string_list(
                    "Column names in order (required without a header row; with one, the header row is dropped)",
                ),
            ),
        ],
    );
    schema["description"] = json!("How a csv or tsv body is written (format: csv or tsv only)");
    schema["default"] = json!({"delimiter": null, "quote": "\"", "header": true, "columns": []});
    schema
}

/// `streams[].xml`.
fn xml_options() -> Value {
    let mut schema = object(
        "XML options",
        &["record_path"],
        vec![(
            "record_path",
            with(
                string("The repeated element holding one record, as element names from the root: /ValCurs/Valute"),
                "pattern",
                json!("^(/[^/]+)+$"),
            ),
        )],
    );
    schema["type"] = json!(["object", "null"]);
    schema["default"] = Value::Null;
    schema["description"] = json!("Where the records of an xml body are (required with format: xml)");
    schema
}

fn deletes() -> Value {
    let mut schema = object(
        "Deletes endpoint",
        &["path", "key"],
        vec![
            ("path", string("Path appended to source.base_url")),
            ("method", enumeration("HTTP method", &["GET", "POST"], "GET")),
            ("params", scalar_map("Query parameters, e.g. {type: customer.deleted}")),
            ("headers", string_map("Headers")),
            ("body", request_body()),
            ("records_path", records_path()),
            (
                "key",
                string_list(
                    "Fields of a deletes record holding the removed record's primary key, one per primary_key field, in order",
                ),
            ),
            ("pagination", pagination()),
            (
                "incremental",
                json!({"type": ["object", "null"], "description": "As a stream's incremental; cursor_field is when the record was removed", "default": null}),
            ),
        ],
    );
    schema["type"] = json!(["object", "null"]);
    schema["default"] = Value::Null;
    schema["description"] = json!(
        "An endpoint listing removed records; lands as stream <name>__deletes and marks is_deleted in dbt staging"
    );
    schema
}

fn landing() -> Value {
    object(
        "Landing",
        &[],
        vec![
            (
                "url",
                with(
                    string("file:// | memory:// | s3:// | az:// | gs:// URL of the landing root"),
                    "default",
                    json!("file://./landing"),
                ),
            ),
            (
                "options",
                scalar_map(
                    "Backend options by object_store config key names (scalar values); credentials are refused (they come from the environment)",
                ),
            ),
            (
                "compression",
                enumeration(
                    "Part compression: gzip (.jsonl.gz, multi-member), zstd (.jsonl.zst, multi-frame) or none (.jsonl)",
                    &["gzip", "zstd", "none"],
                    "gzip",
                ),
            ),
            (
                "compression_level",
                json!({"type": "integer", "minimum": 1, "maximum": 12, "description": "gzip or zstd level, 1 (fastest) to 12 (smallest): libdeflate's scale for gzip, zstd's levels 1 to 12 for zstd; not with compression: none", "default": 1}),
            ),
            (
                "part_max_records",
                positive_integer("Records per part before it rolls", json!(100_000)),
            ),
            (
                "part_max_bytes",
                json!({"type": "string", "pattern": SIZE_PATTERN, "description": "Uncompressed bytes per part before it rolls", "default": "64MiB"}),
            ),
            (
                "multipart_chunk",
                json!({"type": "string", "pattern": SIZE_PATTERN, "description": "Compressed bytes after which a part streams through a multipart upload, in chunks of this size (at least 5MiB on S3 and GCS)", "default": "8MiB"}),
            ),
            (
                "retry",
                object(
                    "Storage retries",
                    &[],
                    vec![
                        (
                            "max_retries",
                            integer("Retries per storage request after the first attempt", json!(10)),
                        ),
                        ("initial_backoff", duration("First backoff", "100ms")),
                        ("max_backoff", duration("Longest backoff", "15s")),
                        (
                            "budget",
                            duration("No retry starts later than this after the first attempt", "3m"),
                        ),
                    ],
                ),
            ),
            (
                "stale_upload_after",
                duration(
                    "Unfinished multipart uploads left by earlier runs are aborted once older than this",
                    "24h",
                ),
            ),
        ],
    )
}

/// The config's JSON Schema.
pub fn schema() -> Value {
    let mut root = object(
        "Landfall connector config",
        &["version", "source", "streams"],
        vec![
            (
                "version",
                json!({"type": "integer", "enum": [1], "description": "Config format version", "default": 1}),
            ),
            ("source", source()),
            (
                "streams",
                json!({"type": "array", "minItems": 1, "description": "Streams to extract", "items": stream()}),
            ),
            ("landing", landing()),
        ],
    );
    root["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    root["$id"] = json!("https://landfall.dev/schemas/connector-config-v1.json");
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const FORBIDDEN: &[&str] = &["anyOf", "allOf", "not", "if", "then", "else", "patternProperties"];

    fn walk(schema: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(object) = schema.as_object() else { return };
        for key in FORBIDDEN {
            if object.contains_key(*key) {
                errors.push(format!("{at}: uses {key}"));
            }
        }
        if let Some(kind) = object.get("type") {
            let ok = match kind {
                Value::String(_) => true,
                Value::Array(items) => {
                    items.len() == 2 && items[0].is_string() && items[0] != "null" && items[1] == "null"
                }
                _ => false,
            };
            if !ok {
                errors.push(format!("{at}: type {kind} is neither T nor [T, \"null\"]"));
            }
        }
        if let Some(values) = object.get("enum").and_then(Value::as_array) {
            let unique: HashSet<String> = values.iter().map(Value::to_string).collect();
            if unique.len() != values.len() {
                errors.push(format!("{at}: enum has duplicates"));
            }
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            let mut orders = HashSet::new();
            for (name, property) in properties {
                if let Some(order) = property.get("order")
                    && !orders.insert(order.to_string())
                {
                    errors.push(format!("{at}.{name}: order {order} repeats"));
                }
                walk(property, &format!("{at}.{name}"), errors);
            }
        }
        if let Some(variants) = object.get("oneOf").and_then(Value::as_array) {
            let mut consts = HashSet::new();
            for (index, variant) in variants.iter().enumerate() {
                match variant.pointer("/properties/type/const").and_then(Value::as_str) {
                    Some(value) if consts.insert(value.to_owned()) => {}
                    Some(value) => errors.push(format!("{at}.oneOf.{index}: const {value} repeats")),
                    None => errors.push(format!("{at}.oneOf.{index}: no `type` const")),
                }
                if !variant["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!("type")))
                {
                    errors.push(format!("{at}.oneOf.{index}: `type` is not required"));
                }
                walk(variant, &format!("{at}.oneOf.{index}"), errors);
            }
        }
        if let Some(items) = object.get("items") {
            walk(items, &format!("{at}[]"), errors);
        }
        if let Some(additional) = object.get("additionalProperties") {
            walk(additional, &format!("{at}.*"), errors);
        }
    }

    /// The fields a config type accepts, from the error serde gives for an unknown field
    /// (every config struct denies unknown fields): `context` adds what the type needs to
    /// get that far (the `type` tag of an enum variant).
    fn accepted_fields<T: serde::de::DeserializeOwned>(context: Value) -> Vec<String> {
        let mut probe = context;
        probe["zz_not_a_field"] = json!(1);
        let Err(error) = serde_json::from_value::<T>(probe) else {
            // The type took a key it does not have: the spec cannot say what it accepts.
            return vec!["(accepts any key)".to_owned()];
        };
        let error = error.to_string();
        let Some((_, expected)) = error.split_once("expected") else {
            assert!(error.contains("there are no fields"), "{error}");
            return Vec::new();
        };
        let mut fields: Vec<String> = expected.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        fields.sort();
        fields
    }

    /// The property names the spec publishes at `pointer` (an object schema, or the `oneOf`
    /// variant whose `type` is `kind`), without the `type` tag of a variant.
    fn published_fields(pointer: &str, kind: Option<&str>) -> Vec<String> {
        let spec = schema();
        let mut at = spec
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{pointer} is in the spec"))
            .clone();
        if let Some(kind) = kind {
            at = at["oneOf"]
                .as_array()
                .and_then(|variants| {
                    variants
                        .iter()
                        .find(|v| v.pointer("/properties/type/const") == Some(&json!(kind)))
                })
                .unwrap_or_else(|| panic!("{pointer} has a variant {kind}"))
                .clone();
        }
        let mut fields: Vec<String> = at["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{pointer} has properties"))
            .keys()
            .filter(|name| kind.is_none() || *name != "type")
            .cloned()
            .collect();
        fields.sort();
        fields
    }

    /// Every key a config struct accepts is published by `landfall spec`, and every key the
    /// spec publishes is accepted: the spec cannot drift from the structs.
    #[test]
    fn spec_publishes_exactly_the_keys_the_config_accepts() {
        use crate::config as c;
        const SOURCE: &str = "/properties/source/properties";
        const STREAM: &str = "/properties/streams/items/properties";
        let mut checked = vec![
            (
                "config",
                accepted_fields::<c::ConnectorConfig>(json!({})),
                published_fields("", None),
            ),
            (
                "source",
                accepted_fields::<crate::http::config::SourceConfig>(json!({})),
                published_fields("/properties/source", None),
            ),
            (
                "source.retry",
                accepted_fields::<crate::http::config::RetryConfig>(json!({})),
                published_fields(&format!("{SOURCE}/retry"), None),
            ),
            (
                "source.rate_limit",
                accepted_fields::<crate::http::config::RateLimitConfig>(json!({})),
                published_fields(&format!("{SOURCE}/rate_limit"), None),
            ),
            (
                "source.circuit_breaker",
                accepted_fields::<crate::http::config::CircuitBreakerConfig>(json!({})),
                published_fields(&format!("{SOURCE}/circuit_breaker"), None),
            ),
            (
                "source.tls",
                accepted_fields::<crate::http::config::TlsConfig>(json!({})),
                published_fields(&format!("{SOURCE}/tls"), None),
            ),
            (
                "stream",
                accepted_fields::<c::StreamConfig>(json!({})),
                published_fields("/properties/streams/items", None),
            ),
            (
                "stream.incremental",
                accepted_fields::<c::IncrementalConfig>(json!({})),
                published_fields(&format!("{STREAM}/incremental"), None),
            ),
            (
                "stream.parent",
                accepted_fields::<c::ParentConfig>(json!({})),
                published_fields(&format!("{STREAM}/parent"), None),
            ),
            (
                "stream.redact",
                accepted_fields::<c::RedactRule>(json!({})),
                published_fields(&format!("{STREAM}/redact/items"), None),
            ),
            (
                "stream.delete_marker",
                accepted_fields::<c::DeleteMarker>(json!({})),
                published_fields(&format!("{STREAM}/delete_marker"), None),
            ),
            (
                "stream.freshness",
                accepted_fields::<c::Freshness>(json!({})),
                published_fields(&format!("{STREAM}/freshness"), None),
            ),
            (
                "stream.csv",
                accepted_fields::<c::CsvOptions>(json!({})),
                published_fields(&format!("{STREAM}/csv"), None),
            ),
            (
                "stream.xml",
                accepted_fields::<c::XmlOptions>(json!({"record_path": "/a/b"})),
                published_fields(&format!("{STREAM}/xml"), None),
            ),
            (
                "stream.deletes",
                accepted_fields::<c::DeletesConfig>(json!({})),
                published_fields(&format!("{STREAM}/deletes"), None),
            ),
            (
                "landing",
                accepted_fields::<crate::landing::config::LandingConfig>(json!({})),
                published_fields("/properties/landing", None),
            ),
            (
                "landing.retry",
                accepted_fields::<crate::landing::config::StorageRetryConfig>(json!({})),
                published_fields("/properties/landing/properties/retry", None),
            ),
            (
                "stream.async_job",
                accepted_fields::<crate::config::async_job::AsyncJobConfig>(json!({})),
                published_fields(&format!("{STREAM}/async_job"), None),
            ),
            (
                "stream.async_job.create",
                accepted_fields::<crate::config::async_job::JobCreate>(json!({})),
                published_fields(&format!("{STREAM}/async_job/properties/create"), None),
            ),
            (
                "stream.async_job.poll",
                accepted_fields::<crate::config::async_job::JobPoll>(json!({})),
                published_fields(&format!("{STREAM}/async_job/properties/poll"), None),
            ),
            (
                "stream.async_job.result",
                accepted_fields::<crate::config::async_job::JobResult>(json!({})),
                published_fields(&format!("{STREAM}/async_job/properties/result"), None),
            ),
        ];
        for kind in [
            "none",
            "api_key",
            "bearer",
            "basic",
            "oauth2",
            "hmac",
            "google_service_account",
        ] {
            checked.push((
                "source.auth",
                accepted_fields::<crate::http::config::AuthConfig>(json!({"type": kind})),
                published_fields(&format!("{SOURCE}/auth"), Some(kind)),
            ));
        }
        for kind in ["none", "cursor", "next_url", "link_header", "offset", "page_number"] {
            checked.push((
                "stream.pagination",
                accepted_fields::<crate::pagination::config::PaginationConfig>(json!({"type": kind})),
                published_fields(&format!("{STREAM}/pagination"), Some(kind)),
            ));
        }
        let drift: Vec<String> = checked
            .iter()
            .filter(|(_, accepted, published)| accepted != published)
            .map(|(at, accepted, published)| {
                format!("{at}: the config accepts {accepted:?}, the spec publishes {published:?}")
            })
            .collect();
        assert!(drift.is_empty(), "{drift:#?}");
    }

    /// Every default the spec publishes for a key is the value the config takes when the key
    /// is absent (compared on the serialized config of a minimal file, where both exist).
    #[test]
    fn spec_defaults_are_the_config_defaults() {
        let minimal = "version: 1\nsource: {name: shop, base_url: 'https://api.test'}\nstreams:\n  - {name: s, path: /s, incremental: {cursor_field: u, start: '2024-01-01T00:00:00Z'}, parent: null}\n";
        let config: crate::config::ConnectorConfig = serde_yaml_ng::from_str(minimal).unwrap();
        let mut serialized = serde_json::to_value(&config).unwrap();
        // Unset so that `compression: none` can refuse a level; the level in effect is 1.
        assert_eq!(serialized["landing"]["compression_level"], Value::Null);
        serialized["landing"]["compression_level"] = json!(config.landing.level());
        let mut mismatches = Vec::new();
        let mut compared = 0;
        compare_defaults(&schema(), &serialized, "", &mut compared, &mut mismatches);
        assert!(compared > 40, "only {compared} defaults compared");
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    /// Whether a spec default and a config value are the same setting, however each is
    /// written (`2` and `2.0`, `"8MiB"` and `8388608`, `"24h"` and `"1day"`).
    fn same_default(default: &Value, actual: &Value) -> bool {
        use crate::settings::{ByteSize, HumanDuration};
        match (default, actual) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Value::String(text), Value::Number(bytes)) => text
                .parse::<ByteSize>()
                .is_ok_and(|size| Some(size.0) == bytes.as_u64()),
            (Value::String(a), Value::String(b)) if a != b => {
                matches!((a.parse::<HumanDuration>(), b.parse::<HumanDuration>()), (Ok(a), Ok(b)) if a.0 == b.0)
            }
            _ => default == actual,
        }
    }

    fn compare_defaults(spec: &Value, value: &Value, at: &str, compared: &mut usize, mismatches: &mut Vec<String>) {
        let Some(properties) = spec.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (name, property) in properties {
            let Some(actual) = value.get(name) else { continue };
            if let Some(default) = property.get("default")
                && !actual.is_object()
            {
                *compared += 1;
                if !same_default(default, actual) {
                    mismatches.push(format!("{at}.{name}: spec default {default}, config default {actual}"));
                }
            }
            match (property.get("items"), actual) {
                (Some(items), Value::Array(values)) => {
                    for item in values {
                        compare_defaults(items, item, &format!("{at}.{name}[]"), compared, mismatches);
                    }
                }
                _ => compare_defaults(property, actual, &format!("{at}.{name}"), compared, mismatches),
            }
        }
    }

    #[test]
    fn spec_follows_airbyte_conventions() {
        let mut errors = Vec::new();
        walk(&schema(), "$", &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn the_walker_catches_violations() {
        let bad = json!({"type": ["string", "integer"], "properties": {
            "a": {"type": "string", "order": 0}, "b": {"anyOf": [], "order": 0}}});
        let mut errors = Vec::new();
        walk(&bad, "$", &mut errors);
        assert_eq!(errors.len(), 3, "{errors:#?}");
    }

    /// Settings a `oneOf` variant needs besides its `type` before `validate` accepts it.
    fn variant_context(kind: &str) -> Value {
        match kind {
            "cursor" => json!({"cursor_param": "cursor", "cursor_path": "/next"}),
            "next_url" => json!({"next_url_path": "/next"}),
            "api_key" => json!({"name": "X-Api-Key", "value": "${env:KEY}"}),
            "oauth2" => {
                json!({"flow": "client_credentials", "token_url": "https://auth.test/token", "client_id": "landfall", "client_secret": "${env:SECRET}"})
            }
            "hmac" => json!({"secret": "${env:SECRET}"}),
            "google_service_account" => {
                json!({"key": "${file:/run/secrets/key.json}", "scopes": ["https://www.googleapis.com/auth/spreadsheets.readonly"]})
            }
            _ => json!({}),
        }
    }

    /// Settings an optional object needs before `validate` accepts it, by property name.
    fn object_context(name: &str) -> Value {
        match name {
            "deletes" => json!({"path": "/deleted", "key": ["id"]}),
            "async_job" => {
                json!({"create": {"path": "/jobs"}, "id_path": "/id", "result": {"path": "/jobs/{job_id}/rows"},
                                  "poll": {"path": "/jobs/{job_id}", "status_path": "/s", "done_values": ["done"]}})
            }
            _ => json!({}),
        }
    }

    /// Bounded numeric fields whose bound needs context a generated config cannot give,
    /// with the reason. Empty today: every bound is exercised.
    const SKIPPED_BOUNDS: &[(&str, &str)] = &[];

    /// One bounded numeric field: the JSON pointer of the value in a config, the settings
    /// (pointer, value) its enclosing `oneOf` variants need, and its bounds.
    struct Bounded {
        pointer: String,
        context: Vec<(String, Value)>,
        integer: bool,
        minimum: Option<f64>,
        maximum: Option<f64>,
        /// The values of a string `enum`.
        values: Option<Vec<String>>,
    }

    fn bounded_fields(schema: &Value, pointer: &str, context: &[(String, Value)], found: &mut Vec<Bounded>) {
        let Some(object) = schema.as_object() else { return };
        let (minimum, maximum) = (
            object.get("minimum").and_then(Value::as_f64),
            object.get("maximum").and_then(Value::as_f64),
        );
        let values: Option<Vec<String>> = object
            .get("enum")
            .and_then(Value::as_array)
            .map(|values| values.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .filter(|values: &Vec<String>| !values.is_empty());
        if minimum.is_some() || maximum.is_some() || values.is_some() {
            let kinds: Vec<&str> = match &object["type"] {
                Value::String(kind) => vec![kind.as_str()],
                Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            found.push(Bounded {
                pointer: pointer.to_owned(),
                context: context.to_vec(),
                integer: kinds.contains(&"integer"),
                minimum,
                maximum,
                values,
            });
        }
        if let Some(properties) = object.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                let at = format!("{pointer}/{name}");
                let mut with_object = context.to_vec();
                if let Value::Object(settings) = object_context(name) {
                    for (setting, value) in settings {
                        with_object.push((format!("{at}/{setting}"), value));
                    }
                }
                bounded_fields(property, &at, &with_object, found);
            }
        }
        if let Some(variants) = object.get("oneOf").and_then(Value::as_array) {
            for variant in variants {
                let kind = variant["properties"]["type"]["const"]
                    .as_str()
                    .expect("variants have a const");
                let mut with_variant = context.to_vec();
                with_variant.push((format!("{pointer}/type"), json!(kind)));
                if let Value::Object(settings) = variant_context(kind) {
                    for (name, value) in settings {
                        with_variant.push((format!("{pointer}/{name}"), value));
                    }
                }
                bounded_fields(variant, pointer, &with_variant, found);
            }
        }
        if let Some(items) = object.get("items") {
            bounded_fields(items, &format!("{pointer}/0"), context, found);
        }
    }

    /// Sets `pointer` in `document`, creating the objects on the way.
    fn set(document: &mut Value, pointer: &str, value: Value) {
        let mut at = document;
        let tokens: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        for token in &tokens[..tokens.len() - 1] {
            at = match at {
                Value::Array(items) => &mut items[token.parse::<usize>().expect("an index")],
                other => other
                    .as_object_mut()
                    .expect("an object on the way")
                    .entry(token.to_string())
                    .or_insert_with(|| json!({})),
            };
        }
        at[tokens[tokens.len() - 1]] = value;
    }

    /// Keys only a database source reads: checked on [`database_base`].
    const DATABASE_KEYS: &[&str] = &[
        "/source/type",
        "/source/port",
        "/source/pool_size",
        "/source/tls/mode",
        "/streams/0/chunk_size",
    ];

    /// A valid config of a database source.
    fn database_base() -> Value {
        json!({
            "version": 1,
            "source": {"name": "shop", "type": "postgres", "host": "db.test", "user": "landfall", "password": "${env:PW}"},
            "streams": [{"name": "orders", "table": "public.orders", "primary_key": ["id"]}],
            "landing": {"url": "memory://"},
        })
    }

    /// The config a value of `pointer` is checked in: a database source's for its keys
    /// (except `type: rest`), else `base`.
    fn base_for(base: &Value, pointer: &str, value: &Value) -> Value {
        if DATABASE_KEYS.contains(&pointer) && value != "rest" {
            database_base()
        } else {
            base.clone()
        }
    }

    fn validates(config: &Value) -> Result<(), String> {
        let text = serde_json::to_string(config).expect("serializes");
        // Every `${env:..}` reference resolves, to a value that is valid hex and base64 alike.
        crate::config::ConnectorConfig::from_yaml(&text, crate::config::Resolve::References, &|_| {
            Some("abcd1234".to_owned())
        })
        .map(|_| ())
        .map_err(|error| error.to_string())
    }

    /// Every string `enum` the spec publishes is exactly what the config accepts: each value
    /// validates, and the variants serde lists for a value that is not one of them are the
    /// spec's values.
    #[test]
    fn spec_enums_match_the_config() {
        let base = json!({
            "version": 1,
            "source": {"name": "shop", "base_url": "https://api.test"},
            "streams": [{"name": "orders", "path": "/orders", "primary_key": ["id"]}],
            "landing": {"url": "memory://"},
        });
        let mut found = Vec::new();
        bounded_fields(&schema(), "", &[], &mut found);
        let enums: Vec<&Bounded> = found.iter().filter(|field| field.values.is_some()).collect();
        assert!(enums.len() >= 15, "the walker found only {} enums", enums.len());
        let mut errors = Vec::new();
        for field in enums {
            let values = field.values.as_ref().expect("filtered");
            let config_with = |value: Value| {
                let mut config = base_for(&base, &field.pointer, &value);
                if field.pointer.starts_with("/streams/0/redact/") {
                    config["streams"][0]["redact"] =
                        json!([{"path": "/email", "action": "hash", "salt": "${env:SALT}"}]);
                }
                for (pointer, setting) in &field.context {
                    set(&mut config, pointer, setting.clone());
                }
                // Values that need another setting to be valid.
                match (field.pointer.rsplit('/').next(), value.as_str()) {
                    (Some("inject_into"), Some("body")) if field.pointer.contains("/deletes/") => {
                        config["streams"][0]["deletes"]["method"] = json!("POST")
                    }
                    (Some("inject_into"), Some("body")) => config["streams"][0]["method"] = json!("POST"),
                    (Some("format"), Some("xml")) => config["streams"][0]["xml"] = json!({"record_path": "/root/item"}),
                    (Some("compression"), Some("gzip" | "auto")) if field.pointer == "/streams/0/compression" => {
                        config["streams"][0]["format"] = json!("ndjson")
                    }
                    (Some("flow"), Some("refresh_token")) => {
                        config["source"]["auth"]["refresh_token"] = json!("${env:REFRESH}")
                    }
                    (Some("mode"), Some("cursor")) if field.pointer == "/streams/0/incremental/mode" => {
                        config["streams"][0]["incremental"] =
                            json!({"cursor_field": "u", "param": "since", "start": "2024-01-01T00:00:00Z"})
                    }
                    (Some("mode"), Some("xmin")) if field.pointer == "/streams/0/incremental/mode" => {
                        config["source"] = json!({"name": "shop", "type": "postgres", "host": "db.test", "user": "r"});
                        config["streams"][0] = json!({"name": "orders", "table": "orders", "primary_key": ["id"]});
                    }
                    _ => {}
                }
                set(&mut config, &field.pointer, value);
                config
            };
            for value in values {
                if let Err(error) = validates(&config_with(json!(value))) {
                    errors.push(format!(
                        "{} = {value}: published, but validate says {error}",
                        field.pointer
                    ));
                }
            }
            match validates(&config_with(json!("zz_not_a_value"))) {
                Ok(()) => errors.push(format!("{}: accepts a value the spec does not list", field.pointer)),
                Err(error) => {
                    let Some((_, expected)) = error.split_once("expected") else {
                        // A hand-written refusal must name every value instead.
                        if !values.iter().all(|value| error.contains(&format!("\"{value}\""))) {
                            errors.push(format!("{}: refused without naming the values: {error}", field.pointer));
                        }
                        continue;
                    };
                    let mut accepted: Vec<String> = expected.split('`').skip(1).step_by(2).map(str::to_owned).collect();
                    let mut published = values.clone();
                    accepted.sort();
                    published.sort();
                    if accepted != published {
                        errors.push(format!(
                            "{}: the config accepts {accepted:?}, the spec publishes {published:?}",
                            field.pointer
                        ));
                    }
                }
            }
        }
        assert!(errors.is_empty(), "{errors:#?}");
    }

    /// `landfall spec` and `validate` agree on every published bound: a config at the
    /// bound is valid and one a step past it is not.
    #[test]
    fn spec_bounds_match_validate() {
        let base = json!({
            "version": 1,
            "source": {"name": "shop", "base_url": "https://api.test"},
            "streams": [{"name": "orders", "path": "/orders", "primary_key": ["id"]}],
            "landing": {"url": "memory://"},
        });
        validates(&base).expect("the base config is valid");
        let mut found = Vec::new();
        bounded_fields(&schema(), "", &[], &mut found);
        assert!(
            found.len() >= 10,
            "the walker found only {} bounded fields",
            found.len()
        );
        let mut errors = Vec::new();
        for field in &found {
            if SKIPPED_BOUNDS.iter().any(|(pointer, _)| *pointer == field.pointer) {
                continue;
            }
            let step = if field.integer { 1.0 } else { 0.001 };
            let number = |value: f64| {
                if field.integer {
                    json!(value as i64)
                } else {
                    json!(value)
                }
            };
            for (bound, past) in [
                field.minimum.map(|minimum| (minimum, minimum - step)),
                field.maximum.map(|maximum| (maximum, maximum + step)),
            ]
            .into_iter()
            .flatten()
            {
                for (value, valid) in [(bound, true), (past, false)] {
                    let mut config = base_for(&base, &field.pointer, &number(value));
                    for (pointer, setting) in &field.context {
                        set(&mut config, pointer, setting.clone());
                    }
                    set(&mut config, &field.pointer, number(value));
                    match (validates(&config), valid) {
                        (Ok(()), false) => errors.push(format!(
                            "{} = {value}: accepted, spec says out of bounds",
                            field.pointer
                        )),
                        (Err(error), true) => errors.push(format!(
                            "{} = {value}: spec allows it, validate says {error}",
                            field.pointer
                        )),
                        _ => {}
                    }
                }
            }
        }
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn secret_fields_are_marked() {
        let schema = schema();
        let auth = &schema["properties"]["source"]["properties"]["auth"]["oneOf"];
        let bearer = auth
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["properties"]["type"]["const"] == "bearer")
            .unwrap();
        assert_eq!(bearer["properties"]["token"]["airbyte_secret"], true);
        let salt = &schema["properties"]["streams"]["items"]["properties"]["redact"]["items"]["properties"]["salt"];
        assert_eq!(salt["airbyte_secret"], true);
    }
}
