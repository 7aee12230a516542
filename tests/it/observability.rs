//! Observability of a real run against loopback APIs: the events catalogue
//! (`docs/events.md`), metrics in the manifest, the metrics file and a Pushgateway
//! stand-in, OpenLineage events validated against the vendored schemas, the XCom summary
//! and the progress display.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use common::{Workspace, events, landfall, stderr};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

// ---------------------------------------------------------------------------------------
// The catalogue as docs/events.md states it.

#[derive(Debug)]
struct FieldSpec {
    kind: String,
    always: bool,
}

#[derive(Debug, Default)]
struct EventSpec {
    levels: Vec<String>,
    fields: HashMap<String, FieldSpec>,
}

/// The text between the first pair of backticks in `text`.
fn ticked(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let end = start + text[start..].find('`')?;
    Some(&text[start..end])
}

/// Parses docs/events.md: the common fields, and every event's levels and fields.
fn catalogue() -> (HashMap<String, FieldSpec>, Vec<(String, EventSpec)>) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md")).unwrap();
    let mut common = HashMap::new();
    let mut events: Vec<(String, EventSpec)> = Vec::new();
    let mut in_common = false;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            events.push((
                ticked(heading).expect("event headings are `name`").to_owned(),
                EventSpec::default(),
            ));
            in_common = false;
        } else if line.starts_with("## ") {
            in_common = line.contains("Fields on every event");
        } else if let Some(levels) = line.strip_prefix("Level: ") {
            let levels = levels.split('.').next().unwrap();
            let spec = &mut events.last_mut().expect("a level belongs to an event").1;
            spec.levels = levels
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|level| level.to_uppercase())
                .collect();
        } else if line.starts_with("| `") {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let field = ticked(cells[1]).unwrap().to_owned();
            let spec = FieldSpec {
                kind: cells[2].to_owned(),
                always: cells[3] == "always",
            };
            assert!(
                ["string", "integer", "number", "boolean"].contains(&spec.kind.as_str()),
                "{field}: type {}",
                spec.kind
            );
            assert!(["always", "when known"].contains(&cells[3]), "{field}: {}", cells[3]);
            if in_common {
                common.insert(field, spec);
            } else {
                events
                    .last_mut()
                    .expect("a field row belongs to an event")
                    .1
                    .fields
                    .insert(field, spec);
            }
        }
    }
    (common, events)
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => false,
    }
}

/// Checks every JSON log line against the catalogue; returns the names seen.
fn check_against_catalogue(lines: &[Value]) -> BTreeSet<String> {
    let (common, catalogue) = catalogue();
    let catalogue: HashMap<String, EventSpec> = catalogue.into_iter().collect();
    let mut seen = BTreeSet::new();
    for line in lines {
        let name = line["event"]
            .as_str()
            .unwrap_or_else(|| panic!("a log line without `event`: {line}"));
        let spec = catalogue
            .get(name)
            .unwrap_or_else(|| panic!("`{name}` is not in docs/events.md: {line}"));
        let level = line["level"].as_str().unwrap();
        assert!(
            spec.levels.iter().any(|documented| documented == level),
            "{name} at {level}: {line}"
        );
        for (field, value) in line.as_object().unwrap() {
            let field_spec = common
                .get(field)
                .or_else(|| spec.fields.get(field))
                .unwrap_or_else(|| panic!("{name}: field `{field}` is not documented: {line}"));
            assert!(
                type_matches(&field_spec.kind, value),
                "{name}.{field} is not a {}: {line}",
                field_spec.kind
            );
        }
        for (field, field_spec) in common.iter().chain(spec.fields.iter()) {
            if field_spec.always {
                assert!(line.get(field).is_some(), "{name}: `{field}` missing: {line}");
            }
        }
        seen.insert(name.to_owned());
    }
    seen
}

#[test]
fn docs_and_the_catalogue_list_the_same_events() {
    let (_, documented) = catalogue();
    let names: Vec<&str> = documented.iter().map(|(name, _)| name.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "an event is documented twice: {names:?}");
    let declared: BTreeSet<&str> = landfall::observe::events::ALL.iter().copied().collect();
    assert_eq!(
        declared.len(),
        landfall::observe::events::ALL.len(),
        "events::ALL repeats a name"
    );
    assert_eq!(unique, declared, "docs/events.md and events::ALL differ");
    for (name, spec) in &documented {
        assert!(!spec.levels.is_empty(), "{name} has no level");
        assert!(!spec.fields.is_empty(), "{name} has no fields");
        // Error events carry code, stage and retryable together.
        let has = |field: &str| spec.fields.contains_key(field);
        assert!(
            has("code") == has("stage") && has("stage") == has("retryable"),
            "{name}: code/stage/retryable"
        );
    }
}

/// Log macros outside src/observe/events.rs are debug details only: every info, warn and error
/// line is a typed event.
#[test]
fn only_the_catalogue_logs_above_debug() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")), &mut files);
    let pattern = regex::Regex::new(r"\b(info|warn|error|event)!\s*\(").unwrap();
    let mut offenders = Vec::new();
    for file in files.iter().filter(|file| !file.ends_with("src/observe/events.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if pattern.is_match(line) {
                offenders.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
            }
        }
    }
    assert!(files.len() > 20, "walked {} files", files.len());
    assert!(
        offenders.is_empty(),
        "log events outside src/observe/events.rs:\n{}",
        offenders.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// A loopback API: two cursor pages; the first answers 500 once, the second 429 once with
// `Retry-After: 0.2`.

fn record(id: u64) -> Value {
    json!({"id": id, "updated_at": format!("2024-03-0{id}T00:00:00Z"), "name": format!("item {id}")})
}

async fn flaky_api() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .and(query_param_is_missing("cursor"))
        .respond_with(ResponseTemplate::new(500).set_body_string("try again"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param_is_missing("cursor"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-request-id", "srv-page-1")
                .set_body_json(json!({"data": [record(1), record(2), record(3)], "next": "2"})),
        )
        .with_priority(5)
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param("cursor", "2"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0.2"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param("cursor", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [record(4), record(5)], "next": null})))
        .with_priority(5)
        .mount(&server)
        .await;
    server
}

const SECRET: &str = "tok-obs-5e6f7a8b9c";

fn items_config(ws: &Workspace, base: &str) -> PathBuf {
    ws.config(&format!(
        "version: 1
source:
  name: shop
  base_url: {base}
  auth: {{type: bearer, token: '${{env:LANDFALL_TEST_TOKEN}}'}}
  retry: {{max_attempts: 3, initial_delay: 10ms, max_delay: 50ms}}
streams:
  - name: items
    path: /items
    records_path: /data
    primary_key: [id]
    pagination: {{type: cursor, cursor_path: /next, cursor_param: cursor}}
    incremental: {{cursor_field: updated_at, param: updated_since, start: '2024-01-01T00:00:00Z'}}
landing:
  url: {{landing}}
  part_max_records: 2
"
    ))
}

async fn run_with(config: &Path, extra: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec!["run", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut envs = envs.to_vec();
    envs.push(("LANDFALL_TEST_TOKEN", SECRET));
    landfall(&args, &envs).await
}

#[tokio::test]
async fn events_of_a_real_run_match_the_catalogue() {
    let server = flaky_api().await;
    let ws = Workspace::new();
    let config = items_config(&ws, &server.uri());
    let output = run_with(&config, &[], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(!text.contains(SECRET));
    let lines = events(&output);
    assert_eq!(
        lines.len(),
        text.lines().count(),
        "every stderr line is a JSON event:\n{text}"
    );
    let seen = check_against_catalogue(&lines);
    for expected in [
        "lease_acquired",
        "run_started",
        "stream_started",
        "page_fetched",
        "request_retried",
        "part_stored",
        "checkpoint_committed",
        "stream_finished",
        "manifest_written",
        "run_finished",
    ] {
        assert!(seen.contains(expected), "{expected} not emitted; saw {seen:?}");
    }
    let run_id = lines[0]["run_id"].as_str().unwrap();
    assert!(
        lines
            .iter()
            .all(|line| line["run_id"] == run_id && line["source"] == "shop")
    );
    let retried: Vec<&Value> = lines.iter().filter(|line| line["event"] == "request_retried").collect();
    assert_eq!(retried.len(), 2);
    assert_eq!(
        (retried[0]["page"].as_u64(), retried[0]["code"].as_str()),
        (Some(1), Some("SERVER_ERROR"))
    );
    assert_eq!(
        (retried[1]["page"].as_u64(), retried[1]["code"].as_str()),
        (Some(2), Some("RATE_LIMIT"))
    );
    assert_eq!(retried[1]["delay_ms"], 200);
    for line in &retried {
        assert_eq!(line["stage"], "fetch");
        assert_eq!(line["retryable"], true);
        assert!(!line["request_id"].as_str().unwrap().is_empty());
    }
    let pages: Vec<&Value> = lines.iter().filter(|line| line["event"] == "page_fetched").collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[0]["request_id"], "srv-page-1", "the server's request id wins");

    // `landfall check` logs its steps from the same catalogue.
    let output = landfall(
        &["check", "--config", config.to_str().unwrap()],
        &[("LANDFALL_TEST_TOKEN", SECRET)],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = events(&output);
    assert_eq!(
        check_against_catalogue(&lines),
        BTreeSet::from(["check_step".to_owned()])
    );
}

#[tokio::test]
async fn a_failing_stream_logs_an_error_event_with_code_stage_and_retryable() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no such thing"))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = items_config(&ws, &server.uri());
    let output = run_with(&config, &["--end", "2024-02-01T00:00:00Z"], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = events(&output);
    let seen = check_against_catalogue(&lines);
    assert!(seen.contains("window_end_ignored"), "{seen:?}");
    let failed = lines.iter().find(|line| line["event"] == "stream_failed").unwrap();
    assert_eq!(
        (
            &failed["code"],
            &failed["stage"],
            &failed["retryable"],
            &failed["level"]
        ),
        (
            &json!("INVALID_REQUEST"),
            &json!("fetch"),
            &json!(false),
            &json!("ERROR")
        )
    );
}

// ---------------------------------------------------------------------------------------
// Metrics.

fn manifest(ws: &Workspace) -> Value {
    let mut manifests = ws.manifests("shop");
    assert_eq!(manifests.len(), 1);
    manifests.remove(0)
}

#[tokio::test]
async fn manifest_metrics_equal_what_was_landed() {
    let server = flaky_api().await;
    let ws = Workspace::new();
    let config = items_config(&ws, &server.uri());
    let metrics_file = ws.dir.path().join("textfile/landfall_shop.prom");
    let output = run_with(&config, &["--metrics-file", metrics_file.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let manifest = manifest(&ws);
    let stream = &manifest["streams"][0];
    let parts = ws.part_files("shop", "items");
    let lines = ws.lines("shop", "items");
    let on_disk: u64 = parts.iter().map(|part| std::fs::metadata(part).unwrap().len()).sum();
    let hits = server.received_requests().await.unwrap().len() as u64;
    assert_eq!(stream["rows_written"], lines.len() as u64);
    assert_eq!(stream["rows_read"], 5);
    assert_eq!(stream["files"].as_array().unwrap().len(), parts.len());
    assert_eq!(stream["bytes_written"], on_disk);
    assert_eq!(stream["requests"], hits);
    assert_eq!(
        (stream["pages"].as_u64(), stream["retries"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(stream["duplicate_rows"], 0);
    assert_eq!(stream["dead_letter_rows"], 0);
    // The 429's Retry-After: 0.2 is the stream's time waiting on the rate limit.
    assert_eq!(stream["rate_limit_waits_seconds"], 0.2);
    let duration = stream["duration_seconds"].as_f64().unwrap();
    assert!(
        duration >= 0.2 && duration <= manifest["duration_seconds"].as_f64().unwrap(),
        "{duration}"
    );
    // Lag: now minus the newest cursor landed (2024-03-05).
    let newest = chrono::DateTime::parse_from_rfc3339("2024-03-05T00:00:00Z").unwrap();
    let lag = stream["lag_seconds"].as_f64().unwrap();
    let expected_lag = (chrono::Utc::now() - newest.with_timezone(&chrono::Utc)).num_seconds() as f64;
    assert!((expected_lag - lag).abs() < 120.0, "{lag} vs {expected_lag}");

    // The textfile says what the manifest says.
    let text = std::fs::read_to_string(&metrics_file).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap();
    let value = |name: &str| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|sample| sample.metric == name && sample.labels.get("stream") == Some("items"))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert_eq!(sample.labels.get("source"), Some("shop"));
        match sample.value {
            prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Gauge(value) => value,
            ref other => panic!("{name}: {other:?}"),
        }
    };
    for (metric, field) in [
        ("landfall_rows_read_total", "rows_read"),
        ("landfall_rows_written_total", "rows_written"),
        ("landfall_duplicate_rows_total", "duplicate_rows"),
        ("landfall_dead_letter_rows_total", "dead_letter_rows"),
        ("landfall_requests_total", "requests"),
        ("landfall_retries_total", "retries"),
        ("landfall_pages_total", "pages"),
        ("landfall_bytes_written_total", "bytes_written"),
        ("landfall_rate_limit_waits_seconds_total", "rate_limit_waits_seconds"),
        ("landfall_stream_duration_seconds", "duration_seconds"),
        ("landfall_lag_seconds", "lag_seconds"),
    ] {
        assert_eq!(value(metric), stream[field].as_f64().unwrap(), "{metric}");
    }
    let finished = chrono::DateTime::parse_from_rfc3339(manifest["finished_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        value("landfall_last_success_timestamp_seconds"),
        finished.timestamp_micros() as f64 / 1e6
    );
    for metric in [
        "landfall_rows_written_total",
        "landfall_lag_seconds",
        "landfall_run_duration_seconds",
    ] {
        assert!(text.contains(&format!("# HELP {metric} ")), "{metric}");
    }
    assert_eq!(
        scrape.docs.len(),
        landfall::report::metrics::ALL.len(),
        "every metric has its HELP"
    );
    // Written atomically: only the file itself in its folder.
    assert_eq!(std::fs::read_dir(metrics_file.parent().unwrap()).unwrap().count(), 1);
    let exported = events(&output)
        .into_iter()
        .find(|line| line["event"] == "metrics_exported")
        .unwrap();
    assert_eq!(exported["target"], "file");
}

/// Pushgateway stand-in: records every push.
async fn pushgateway(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/metrics/job/landfall/source/[a-z0-9_]+(/stream/[a-z0-9_]+)?$",
        ))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

fn parse_push(request: &Request) -> prometheus_parse::Scrape {
    let body = String::from_utf8(request.body.clone()).unwrap();
    prometheus_parse::Scrape::parse(body.lines().map(|line| Ok(line.to_owned()))).unwrap()
}

#[tokio::test]
async fn metrics_are_pushed_per_source_and_stream_as_valid_exposition_text() {
    let api = flaky_api().await;
    let gateway = pushgateway(200).await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let output = run_with(&config, &["--metrics-push-url", &gateway.uri()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stream = manifest(&ws)["streams"][0].clone();
    let pushes = gateway.received_requests().await.unwrap();
    let paths: BTreeSet<String> = pushes.iter().map(|request| request.url.path().to_owned()).collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "/metrics/job/landfall/source/shop".to_owned(),
            "/metrics/job/landfall/source/shop/stream/items".to_owned()
        ])
    );
    for request in &pushes {
        let body = String::from_utf8(request.body.clone()).unwrap();
        assert!(
            request.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4"),
            "{:?}",
            request.headers
        );
        // The grouping labels come from the path, never from the body.
        assert!(!body.contains("source=") && !body.contains("stream="), "{body}");
        let scrape = parse_push(request);
        assert!(!scrape.samples.is_empty());
        for sample in &scrape.samples {
            assert!(
                scrape.docs.contains_key(&sample.metric),
                "{} has no HELP",
                sample.metric
            );
        }
        // Every TYPE line names a metric of the push and a known type.
        for line in body.lines().filter(|line| line.starts_with("# TYPE ")) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert!(["counter", "gauge"].contains(&parts[3]), "{line}");
        }
    }
    let stream_push = pushes
        .iter()
        .find(|request| request.url.path().ends_with("/stream/items"))
        .unwrap();
    let scrape = parse_push(stream_push);
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|sample| sample.metric == name)
            .map(|sample| match sample.value {
                prometheus_parse::Value::Counter(value) | prometheus_parse::Value::Gauge(value) => value,
                ref other => panic!("{other:?}"),
            })
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(
        value("landfall_rows_written_total"),
        stream["rows_written"].as_f64().unwrap()
    );
    assert_eq!(value("landfall_retries_total"), 2.0);
    assert!(value("landfall_last_success_timestamp_seconds") > 1.7e9);
    let succeeded = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == "landfall_stream_status" && sample.labels.get("status") == Some("succeeded"))
        .unwrap();
    assert_eq!(succeeded.value, prometheus_parse::Value::Gauge(1.0));
}

#[tokio::test]
async fn a_failed_push_is_an_event_and_never_fails_the_run() {
    let api = flaky_api().await;
    let gateway = pushgateway(503).await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let output = run_with(&config, &["--metrics-push-url", &gateway.uri()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = events(&output);
    check_against_catalogue(&lines);
    let failed = lines
        .iter()
        .find(|line| line["event"] == "metrics_export_failed")
        .expect("metrics_export_failed");
    assert_eq!(
        (&failed["code"], &failed["stage"], &failed["retryable"]),
        (&json!("SERVER_ERROR"), &json!("metrics"), &json!(true))
    );
}

// ---------------------------------------------------------------------------------------
// OpenLineage.

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openlineage");

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()).unwrap()
}

/// Resolves the OpenLineage schema URLs to the vendored files, offline. The facets refer
/// to the core schema by older versions whose `BaseFacet`, `RunFacet`, `JobFacet` and
/// `OutputDatasetFacet` are those of 2-0-2.
struct Vendored;

impl jsonschema::Retrieve for Vendored {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let text = uri.as_str();
        if regex::Regex::new(r"^https://openlineage\.io/spec/\d+-\d+-\d+/OpenLineage\.json$")
            .unwrap()
            .is_match(text)
        {
            return Ok(fixture("OpenLineage-2-0-2.json"));
        }
        Err(format!("not vendored: {text}").into())
    }
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_retriever(Vendored)
        .should_validate_formats(true)
        .build(schema)
        .unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator.iter_errors(instance).map(|error| error.to_string()).collect();
    assert!(errors.is_empty(), "{what} is invalid: {errors:?}\n{instance:#}");
}

/// Validates an event against the core schema and each facet against its own schema,
/// found by its `_schemaURL` (`.../facets/<version>/<Name>.json#/$defs/<Name>`).
fn validate_lineage_event(event: &Value) {
    assert_valid(&validator(&fixture("OpenLineage-2-0-2.json")), event, "event");
    assert_eq!(
        event["schemaURL"],
        "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
    );
    let url_pattern =
        regex::Regex::new(r"^https://openlineage\.io/spec/facets/(\d+-\d+-\d+)/(\w+)\.json#/\$defs/(\w+)$").unwrap();
    let mut facets: Vec<(&String, &Value)> = Vec::new();
    for container in [&event["run"]["facets"], &event["job"]["facets"]] {
        facets.extend(container.as_object().into_iter().flatten());
    }
    for output in event["outputs"].as_array().unwrap() {
        facets.extend(output["outputFacets"].as_object().into_iter().flatten());
    }
    assert!(!facets.is_empty());
    for (key, facet) in facets {
        let url = facet["_schemaURL"].as_str().unwrap();
        let captures = url_pattern.captures(url).unwrap_or_else(|| panic!("{key}: {url}"));
        let schema = fixture(&format!("facets/{}-{}.json", &captures[2], &captures[1]));
        assert!(
            schema["properties"].get(key).is_some(),
            "facet key `{key}` is not the one its schema names"
        );
        assert_valid(&validator(&schema), &json!({ key: facet }), key);
    }
}

fn lineage_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn the_vendored_schema_rejects_a_broken_event() {
    let broken = json!({"eventType": "START", "eventTime": "yesterday", "producer": "x", "schemaURL": "y",
                        "run": {"runId": "not-a-uuid"}, "job": {"namespace": "landfall"}});
    assert!(!validator(&fixture("OpenLineage-2-0-2.json")).is_valid(&broken));
}

#[tokio::test]
async fn lineage_events_validate_and_name_the_airflow_parent() {
    let api = flaky_api().await;
    let marquez = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/lineage"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&marquez)
        .await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let file = ws.dir.path().join("lineage/events.ndjson");
    let output = run_with(
        &config,
        &[
            "--openlineage-url",
            &marquez.uri(),
            "--openlineage-file",
            file.to_str().unwrap(),
            "--stream",
            "items",
        ],
        &[
            ("OPENLINEAGE_NAMESPACE", "prod_lineage"),
            ("OPENLINEAGE_API_KEY", "ol-key-123456"),
            ("AIRFLOW_CTX_DAG_ID", "shop_daily"),
            ("AIRFLOW_CTX_TASK_ID", "extract_shop"),
            ("AIRFLOW_CTX_LOGICAL_DATE", "2024-05-01T10:00:00+00:00"),
            ("AIRFLOW_CTX_TRY_NUMBER", "1"),
            ("AIRFLOW__OPENLINEAGE__NAMESPACE", "default"),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let manifest = manifest(&ws);
    let from_file = lineage_lines(&file);
    let posted: Vec<Value> = marquez
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            assert_eq!(request.headers["authorization"], "Bearer ol-key-123456");
            serde_json::from_slice(&request.body).unwrap()
        })
        .collect();
    assert_eq!(from_file.len(), 2);
    assert_eq!(posted.len(), 2);
    let types: Vec<&str> = from_file
        .iter()
        .map(|event| event["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["START", "COMPLETE"]);
    for (event, sent) in from_file.iter().zip(&posted) {
        validate_lineage_event(event);
        assert_eq!(event["eventType"], sent["eventType"]);
        assert_eq!(event["run"]["runId"], manifest["run_id"]);
        assert_eq!(
            event["job"],
            json!({"namespace": "prod_lineage", "name": "shop.items", "facets": event["job"]["facets"]})
        );
        // Airflow's run id for dag shop_daily, task extract_shop, try 1, 2024-05-01T10:00Z.
        assert_eq!(
            event["run"]["facets"]["parent"]["run"]["runId"],
            "018f3398-c100-78a1-8847-557fcde2b487"
        );
        assert_eq!(
            event["run"]["facets"]["parent"]["job"],
            json!({"namespace": "default", "name": "shop_daily.extract_shop"})
        );
        let host = api.uri().trim_start_matches("http://").to_owned();
        assert_eq!(
            event["inputs"],
            json!([{"namespace": format!("http://{host}"), "name": "/items"}])
        );
        let landing = ws.landing().canonicalize().unwrap_or(ws.landing());
        assert_eq!(event["outputs"][0]["namespace"], "file");
        assert!(
            event["outputs"][0]["name"].as_str().unwrap().ends_with(&format!(
                "{}/shop/items",
                landing.file_name().unwrap().to_str().unwrap()
            )),
            "{}",
            event["outputs"][0]
        );
        let text = event.to_string();
        assert!(!text.contains(SECRET) && !text.contains("ol-key-123456"));
    }
    let statistics = &from_file[1]["outputs"][0]["outputFacets"]["outputStatistics"];
    assert_eq!(statistics["rowCount"], manifest["streams"][0]["rows_written"]);
    assert_eq!(statistics["size"], manifest["streams"][0]["bytes_written"]);
    let emitted: Vec<Value> = events(&output)
        .into_iter()
        .filter(|line| line["event"] == "lineage_emitted")
        .collect();
    assert_eq!(emitted.len(), 4, "two events, two transports");
}

#[tokio::test]
async fn a_failed_run_sends_fail_with_the_error_and_an_unreachable_server_is_only_an_event() {
    let api = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(401).set_body_string("bad token"))
        .mount(&api)
        .await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let file = ws.dir.path().join("lineage.ndjson");
    // Nothing listens on port 9 of loopback.
    let output = run_with(
        &config,
        &[
            "--openlineage-file",
            file.to_str().unwrap(),
            "--openlineage-url",
            "http://127.0.0.1:9",
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let lineage = lineage_lines(&file);
    let types: Vec<&str> = lineage
        .iter()
        .map(|event| event["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["START", "FAIL"]);
    for event in &lineage {
        validate_lineage_event(event);
        assert!(event["run"]["facets"].get("parent").is_none());
        assert_eq!(event["job"]["name"], "shop");
    }
    let message = lineage[1]["run"]["facets"]["errorMessage"]["message"].as_str().unwrap();
    assert!(message.starts_with("AUTH_FAILED: "), "{message}");
    let lines = events(&output);
    check_against_catalogue(&lines);
    let failures: Vec<&Value> = lines
        .iter()
        .filter(|line| line["event"] == "lineage_emit_failed")
        .collect();
    assert_eq!(failures.len(), 2);
    assert!(
        failures
            .iter()
            .all(|line| line["code"] == "NETWORK_ERROR" && line["transport"] == "http")
    );
}

#[tokio::test]
async fn invalid_lineage_settings_are_a_usage_error() {
    let ws = Workspace::new();
    let config = items_config(&ws, "http://127.0.0.1:9");
    let xcom_path = ws.dir.path().join("xcom.json");
    let output = run_with(
        &config,
        &[
            "--openlineage-file",
            ws.dir.path().join("l.ndjson").to_str().unwrap(),
            "--xcom-output",
            xcom_path.to_str().unwrap(),
        ],
        &[("OPENLINEAGE_PARENT_ID", "airflow/dag.task/not-a-uuid")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("OPENLINEAGE_PARENT_ID"));
    let summary = xcom(&xcom_path);
    assert_eq!(
        (&summary["status"], &summary["exit_code"]),
        (&json!("failed"), &json!(2))
    );
    assert_eq!(summary["error"]["code"], "CONFIG_ERROR");
    assert!(
        !ws.dir.path().join("l.ndjson").exists(),
        "no lineage without valid settings"
    );
}

// ---------------------------------------------------------------------------------------
// XCom.

fn xcom(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("the XCom file is written")).unwrap()
}

#[tokio::test]
async fn xcom_is_written_on_success() {
    let api = flaky_api().await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let path = ws.dir.path().join("airflow/xcom/return.json");
    let output = run_with(&config, &["--xcom-output", path.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let manifest = manifest(&ws);
    let summary = xcom(&path);
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["run_id"], manifest["run_id"]);
    assert!(summary["manifest_path"].as_str().unwrap().ends_with(".json"));
    assert_eq!(summary["streams"]["items"]["rows_written"], 5);
    assert_eq!(summary["streams"]["items"]["cursor_end"], "2024-03-05T00:00:00Z");
    assert!(summary["error"].is_null());
}

#[tokio::test]
async fn xcom_is_written_when_a_stream_fails() {
    let api = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&api)
        .await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let path = ws.dir.path().join("return.json");
    let output = run_with(&config, &["--xcom-output", path.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let summary = xcom(&path);
    assert_eq!(
        (&summary["status"], &summary["exit_code"]),
        (&json!("failed"), &json!(1))
    );
    assert_eq!(summary["run_id"], manifest(&ws)["run_id"]);
    assert_eq!(summary["streams"]["items"]["error_code"], "INVALID_REQUEST");
    assert_eq!(summary["streams"]["items"]["rows_written"], 0);
}

#[tokio::test]
async fn xcom_is_written_when_the_run_fails_before_it_starts() {
    // An invalid config: no run id was given, so one is made up and reported.
    let ws = Workspace::new();
    let bad = ws.config("version: 1\nsource: {name: shop}\n");
    let path = ws.dir.path().join("bad.json");
    let output = landfall(
        &[
            "run",
            "--config",
            bad.to_str().unwrap(),
            "--xcom-output",
            path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let summary = xcom(&path);
    assert_eq!(
        (&summary["status"], &summary["exit_code"]),
        (&json!("failed"), &json!(2))
    );
    assert_eq!(summary["error"]["code"], "CONFIG_ERROR");
    assert!(uuid::Uuid::parse_str(summary["run_id"].as_str().unwrap()).is_ok());
    assert!(summary["manifest_path"].is_null());

    // A valid config whose stream is leased by another live run: the run stops before it
    // starts (exit 75, LEASE_HELD), and the source and the given run id are known.
    let ws = Workspace::new();
    let config = ws.config(
        "version: 1\nsource: {name: shop, base_url: 'http://127.0.0.1:9'}\nstreams: [{name: items, path: /items}]\nlanding: {url: '{landing}'}\n",
    );
    let lease = ws.landing().join("shop/_state/items.lock");
    std::fs::create_dir_all(lease.parent().unwrap()).unwrap();
    let now = chrono::Utc::now();
    std::fs::write(
        &lease,
        json!({"run_id": "0190c7a0-0000-7000-8000-0000000000ff", "stream": "items",
               "acquired_at": now.to_rfc3339(), "expires_at": (now + chrono::Duration::hours(1)).to_rfc3339()})
        .to_string(),
    )
    .unwrap();
    let path = ws.dir.path().join("lease.json");
    let run_id = "0190c7a0-0000-7000-8000-00000000abcd";
    let output = landfall(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--run-id",
            run_id,
            "--xcom-output",
            path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    let summary = xcom(&path);
    assert_eq!(
        (&summary["status"], &summary["exit_code"]),
        (&json!("failed"), &json!(75))
    );
    assert_eq!(summary["source"], "shop");
    assert_eq!(summary["run_id"], run_id);
    assert_eq!(summary["error"]["code"], "LEASE_HELD");
    assert_eq!(summary["error"]["retryable"], true);
    assert!(ws.manifests("shop").is_empty());
    let seen = check_against_catalogue(&events(&output));
    assert!(seen.contains("lease_held"), "{seen:?}");
}

// ---------------------------------------------------------------------------------------
// Progress.

#[tokio::test]
async fn no_progress_is_drawn_when_stderr_is_not_a_terminal() {
    let api = flaky_api().await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    // Text logs, so only the terminal check keeps the display away.
    let output = run_with(&config, &[], &[("LANDFALL_LOG_FORMAT", "text")]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("page fetched"), "{text}");
    assert!(
        !text.contains('\r') && !text.contains("\x1b[2K") && !text.contains("rec/s"),
        "{text:?}"
    );
}

/// Runs the binary under a pseudo-terminal (util-linux `script`), which is what a person
/// at a terminal sees.
async fn on_a_terminal(config: &Path, extra: &str, envs: &[(&str, &str)]) -> String {
    let command = format!(
        "{} run --config {} {extra}",
        env!("CARGO_BIN_EXE_landfall"),
        config.display()
    );
    let mut process = tokio::process::Command::new("script");
    process
        .args(["-qec", &command, "/dev/null"])
        .env_remove("LANDFALL_LOG_FORMAT")
        .env("LANDFALL_TEST_TOKEN", SECRET)
        .env("COLUMNS", "120");
    for (name, value) in envs {
        process.env(name, value);
    }
    let output = process.output().await.expect("script runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_terminal_shows_a_progress_line_per_stream_and_json_logs_turn_it_off() {
    let api = flaky_api().await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let screen = on_a_terminal(&config, "", &[]).await;
    // The stream's last frame stays as its summary line (earlier frames may show the same
    // counts while the run is finishing).
    let summary = screen
        .split("\x1b[2K")
        .filter(|frame| frame.starts_with("items 5 records · 2 pages · "))
        .last()
        .and_then(|frame| frame.lines().next())
        .unwrap_or_else(|| panic!("no progress line: {screen:?}"));
    assert!(summary.trim_end().ends_with(" · succeeded"), "{summary:?}");
    // The text logs are still there, each on its own line, levels coloured (INFO green).
    assert!(screen.contains("run finished"), "{screen:?}");
    assert!(screen.contains("\x1b[32m INFO"), "{screen:?}");
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let screen = on_a_terminal(&config, "--progress never", &[("NO_COLOR", "1")]).await;
    assert!(
        screen.contains("run finished") && !screen.contains("\x1b["),
        "{screen:?}"
    );

    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let screen = on_a_terminal(&config, "", &[("LANDFALL_LOG_FORMAT", "json")]).await;
    assert!(!screen.contains("\x1b[2K") && !screen.contains("rec/s"), "{screen:?}");
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let screen = on_a_terminal(&config, "--progress never", &[]).await;
    assert!(!screen.contains("\x1b[2K"), "{screen:?}");
}

#[tokio::test]
async fn lineage_and_metrics_never_follow_a_redirect_with_their_credentials() {
    // A collector and a Pushgateway that answer 307 to another host: following would replay
    // the API key (OpenLineage) and the push body to it.
    let elsewhere = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let redirecting = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(307).insert_header("Location", format!("{}/stolen", elsewhere.uri())))
        .mount(&redirecting)
        .await;
    let api = flaky_api().await;
    let ws = Workspace::new();
    let config = items_config(&ws, &api.uri());
    let output = run_with(
        &config,
        &[
            "--openlineage-url",
            &redirecting.uri(),
            "--metrics-push-url",
            &redirecting.uri(),
        ],
        &[("OPENLINEAGE_API_KEY", "ol-key-redirected-123456")],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        !redirecting.received_requests().await.unwrap().is_empty(),
        "the collector was called"
    );
    assert_eq!(
        elsewhere.received_requests().await.unwrap().len(),
        0,
        "a redirect was followed"
    );
    let lines = events(&output);
    check_against_catalogue(&lines);
    assert!(lines.iter().any(|line| line["event"] == "metrics_export_failed"));
    assert!(lines.iter().any(|line| line["event"] == "lineage_emit_failed"));
    assert!(!stderr(&output).contains("ol-key-redirected-123456"));
}
