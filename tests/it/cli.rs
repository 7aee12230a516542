//! The binary's commands, exit codes, logs and secret hygiene.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Workspace, events, landfall, one_stream, run, stderr, stdout, stream_report};
use serde_json::{Value, json};
use wiremock::matchers::{header, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A config for source `shop` at https://api.test with `source_extra` (YAML lines under
/// `source`) and one stream.
fn api_test_config(ws: &Workspace, source_extra: &str) -> PathBuf {
    ws.config(&format!(
        "version: 1\nsource:\n  name: shop\n  base_url: https://api.test\n{source_extra}\nstreams: [{{name: s, path: /s}}]\n"
    ))
}

/// Runs `landfall validate` with `args` before `--config <config>`.
async fn validate(args: &[&str], config: &Path) -> Output {
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    landfall(&all, &[]).await
}

/// Validates an https://api.test config with `source_extra`; asserts it is refused with
/// exit code 2 and returns stderr.
async fn refused_by_validate(source_extra: &str) -> String {
    let ws = Workspace::new();
    let config = api_test_config(&ws, source_extra);
    let output = validate(&[], &config).await;
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    message
}

#[tokio::test]
async fn unknown_key_is_named_with_its_path() {
    let message = refused_by_validate("  retry: {max_atempts: 3}").await;
    assert!(
        message.contains("source.retry.max_atempts: unknown field `max_atempts`, expected one of"),
        "{message}"
    );
}

#[tokio::test]
async fn literal_secret_is_rejected_without_echoing_it() {
    let message = refused_by_validate("  auth: {type: api_key, name: X-Key, value: sk_live_literal_123}").await;
    assert!(
        message.contains("source.auth.value: secret fields must be a reference"),
        "{message}"
    );
    assert!(!message.contains("sk_live_literal_123"), "{message}");
}

#[tokio::test]
async fn validate_resolves_references_unless_told_not_to() {
    let ws = Workspace::new();
    let config = api_test_config(&ws, "  auth: {type: bearer, token: '${env:LANDFALL_TEST_UNSET_TOKEN}'}");
    let path = config.to_str().unwrap();
    let output = validate(&[], &config).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("source.auth.token: environment variable LANDFALL_TEST_UNSET_TOKEN is not set"));
    let output = validate(&["--no-resolve"], &config).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // LANDFALL_CONFIG stands in for --config.
    let output = landfall(
        &["validate"],
        &[("LANDFALL_CONFIG", path), ("LANDFALL_TEST_UNSET_TOKEN", "x-token")],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = landfall(&["validate"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("LANDFALL_CONFIG"));
}

/// Regression (issue 17): a missing `schema: {file:}` passed `validate` and `check` and
/// failed only when the stream started.
#[tokio::test]
async fn validate_and_check_read_the_schema_file() {
    let ws = Workspace::new();
    let schema = ws.dir.path().join("orders.schema.json");
    let write_config = |schema: &Path| {
        ws.config(&format!(
            "version: 1\nsource: {{name: shop, base_url: 'http://127.0.0.1:9'}}\nstreams:\n  - {{name: s, path: /s, schema: {{file: '{}'}}}}\nlanding: {{url: '{{landing}}'}}\n",
            schema.display()
        ))
    };
    let config = write_config(&schema);
    for command in ["validate", "check"] {
        let output = landfall(&[command, "--config", config.to_str().unwrap()], &[]).await;
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command}: {message}");
        assert!(
            message.contains(&format!("streams[0].schema.file: cannot read {}", schema.display())),
            "{command}: {message}"
        );
    }
    // Reading files the config names is what --no-resolve leaves out.
    let output = validate(&["--no-resolve"], &config).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    std::fs::write(&schema, "{not json").unwrap();
    let output = validate(&[], &config).await;
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains(&format!("streams[0].schema.file: {} is not JSON", schema.display())),
        "{message}"
    );
    std::fs::write(&schema, r#"{"type": "no-such-type"}"#).unwrap();
    let output = validate(&[], &config).await;
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains(&format!(
            "streams[0].schema.file: {} is not a valid JSON Schema",
            schema.display()
        )),
        "{message}"
    );
    std::fs::write(&schema, r#"{"type": "object", "required": ["id"]}"#).unwrap();
    let output = validate(&[], &config).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Regression (issue 17): `--run-id` was a free string, checked only after the config was
/// loaded; it becomes the path segment `run_id=...`, so it is parsed as a UUID up front.
#[tokio::test]
async fn run_id_must_be_a_uuid() {
    let ws = Workspace::new();
    let missing = ws.dir.path().join("no-such-config.yaml");
    for run_id in ["../escape", "r0", "", "0190c7a0-0000-7000-8000-00000000abcd/x"] {
        let output = landfall(&["run", "--config", missing.to_str().unwrap(), "--run-id", run_id], &[]).await;
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{run_id:?}: {message}");
        assert!(
            message.contains("invalid value") && message.contains("--run-id"),
            "{run_id:?}: {message}"
        );
        assert!(!message.contains("invalid config"), "{run_id:?}: {message}");
    }
}

#[tokio::test]
async fn example_configs_validate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config-examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        // `<name>.airflow.yaml` sidecars hold DAG settings, not connector configs.
        let sidecar = path.to_string_lossy().ends_with(".airflow.yaml");
        if path.extension().is_some_and(|ext| ext == "yaml") && !sidecar {
            let output = validate(&["--no-resolve"], &path).await;
            assert!(output.status.success(), "{}: {}", path.display(), stderr(&output));
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[tokio::test]
async fn spec_is_a_json_schema_with_secret_markers() {
    let output = landfall(&["spec"], &[]).await;
    assert!(output.status.success());
    let schema: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(schema["type"], "object");
    let text = stdout(&output);
    assert!(text.contains("\"airbyte_secret\": true"));
    for forbidden in ["\"anyOf\"", "\"allOf\"", "\"patternProperties\"", "\"if\""] {
        assert!(!text.contains(forbidden), "{forbidden}");
    }
}

/// The names of every property in a JSON Schema, at any depth (inside `oneOf` too), each
/// with the path of the first object that has it.
fn spec_properties(schema: &Value, path: &str, out: &mut std::collections::BTreeMap<String, String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                for (name, property) in properties {
                    let at = format!("{path}.{name}");
                    out.entry(name.clone()).or_insert_with(|| at.clone());
                    spec_properties(property, &at, out);
                }
            }
            for key in ["items", "oneOf", "additionalProperties"] {
                if let Some(child) = map.get(key) {
                    spec_properties(child, path, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| spec_properties(item, path, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_config_key_of_the_spec_is_in_the_contract() {
    let output = landfall(&["spec"], &[]).await;
    assert!(output.status.success());
    let schema: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut keys = std::collections::BTreeMap::new();
    spec_properties(&schema, "", &mut keys);
    assert!(keys.len() > 100, "the spec walk found only {} keys", keys.len());

    let contract = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/contract.md")).unwrap();
    let section = contract
        .split("## 1. Connector config (YAML)")
        .nth(1)
        .and_then(|rest| rest.split("\n## 2.").next())
        .expect("docs/contract.md has its section 1");
    // A key is documented when the section's YAML writes it as `key:` (in a line, a flow
    // mapping or a comment), not merely mentions the word.
    let written = |key: &str| {
        section.match_indices(&format!("{key}:")).any(|(at, _)| {
            section[..at]
                .chars()
                .next_back()
                .is_none_or(|before| !(before.is_alphanumeric() || before == '_' || before == '$'))
        })
    };
    let missing: Vec<String> = keys
        .iter()
        .filter(|(key, _)| !written(key))
        .map(|(key, path)| format!("{key} (at {path})"))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys that `landfall spec` publishes but docs/contract.md section 1 does not write: {missing:#?}"
    );
}

#[tokio::test]
async fn version_names_the_commit() {
    let output = landfall(&["--version"], &[]).await;
    let text = stdout(&output);
    assert!(
        text.starts_with(&format!("landfall {} (git ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

fn items_mock(token: &str) -> Mock {
    Mock::given(path("/items"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": 1}, {"id": 2}]})))
}

const SECRET: &str = "tok-9f8e7d6c5b4a";

fn bearer_config(ws: &Workspace, base: &str) -> PathBuf {
    ws.config(
        &one_stream(
            base,
            "{name: items, path: /items, records_path: /data, primary_key: [id]}",
        )
        .replace(
            "  name: shop\n",
            "  name: shop\n  auth: {type: bearer, token: '${env:LANDFALL_TEST_TOKEN}'}\n",
        ),
    )
}

/// Runs `landfall <command> --config <config>` with the bearer token set to `token`.
async fn with_token(command: &str, config: &Path, token: &str) -> Output {
    landfall(
        &[command, "--config", config.to_str().unwrap()],
        &[("LANDFALL_TEST_TOKEN", token)],
    )
    .await
}

/// Runs `landfall run --config <config> --xcom-output <xcom>` with `envs` set.
async fn run_with_xcom(config: &Path, xcom: &Path, envs: &[(&str, &str)]) -> Output {
    landfall(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--xcom-output",
            xcom.to_str().unwrap(),
        ],
        envs,
    )
    .await
}

/// The JSON document in the file at `path`.
fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Starts a server that answers `/items` with `status` and must see exactly `requests`
/// requests.
async fn always(status: u16, requests: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(status))
        .expect(requests)
        .mount(&server)
        .await;
    server
}

/// Runs one plain stream against a server that always answers `status`, which must see
/// exactly `requests` requests; returns the workspace and the run's output.
async fn run_against_status(status: u16, requests: u64) -> (Workspace, Output) {
    let server = always(status, requests).await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(&server.uri(), "{name: items, path: /items}"));
    let output = run(&config, &[]).await;
    server.verify().await;
    (ws, output)
}

#[tokio::test]
async fn check_reports_each_step() {
    let server = MockServer::start().await;
    items_mock(SECRET).mount(&server).await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = bearer_config(&ws, &server.uri());
    let output = with_token("check", &config, SECRET).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "config",
            "http_client",
            "stream:items",
            "landing_write",
            "landing_read",
            "landing_list",
            "landing_delete",
            "landing_staging"
        ]
    );
    // The probe is gone.
    assert!(common::files_under(&ws.landing().join("shop/_check")).is_empty());

    // A wrong token fails the stream step with the auth exit code.
    let output = with_token("check", &config, "wrong-token-1234").await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["failed_step"], "stream:items");
    assert!(stderr(&output).contains("check failed at step stream:items"));
}

/// A parent `orders` at /orders answering `orders`, and its child `lines` at
/// /orders/{parent.id}/lines (listed first: check orders parents before children).
fn parent_child_config(ws: &Workspace, base: &str) -> PathBuf {
    ws.config(&format!(
        "version: 1
source: {{name: shop, base_url: '{base}'}}
streams:
  - name: lines
    path: /orders/{{parent.id}}/lines
    records_path: /data
    parent: {{stream: orders, fields: [id]}}
  - name: orders
    path: /orders
    records_path: /data
landing: {{url: '{{landing}}'}}
"
    ))
}

/// The check report's step named `name`.
fn check_step<'a>(report: &'a Value, name: &str) -> &'a Value {
    common::named(report, "steps", "step", name)
}

/// Regression (issue 17): `check` sent `{parent.id}` literally for a child stream.
#[tokio::test]
async fn check_probes_a_child_with_its_parents_first_record() {
    let server = MockServer::start().await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": "o 17"}, {"id": "o-18"}]})))
        .mount(&server)
        .await;
    Mock::given(path("/orders/o%2017/lines"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{"line": 1}]})))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = parent_child_config(&ws, &server.uri());
    let output = landfall(&["check", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(&steps[2..4], ["stream:orders", "stream:lines"]);
    let lines = check_step(&report, "stream:lines");
    assert_eq!(
        (lines["ok"].as_bool(), lines["skipped"].as_bool()),
        (Some(true), Some(false)),
        "{lines}"
    );
    assert!(lines["detail"].as_str().unwrap().contains("with 1 records"), "{lines}");
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| request.url.path().to_owned())
        .collect();
    assert_eq!(paths, ["/orders", "/orders/o%2017/lines"]);

    // A parent without records gives no value: the child is skipped, nothing is sent.
    let server = MockServer::start().await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&server)
        .await;
    let config = parent_child_config(&ws, &server.uri());
    let output = landfall(&["check", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let lines = check_step(&report, "stream:lines");
    assert_eq!(
        (lines["ok"].as_bool(), lines["skipped"].as_bool()),
        (Some(true), Some(true)),
        "{lines}"
    );
    let detail = lines["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("skipped: parent stream `orders` returned no records on its first page"),
        "{detail}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    // A parent that fails its check skips the child too.
    let server = MockServer::start().await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let config = parent_child_config(&ws, &server.uri());
    let output = landfall(&["check", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["failed_step"], "stream:orders");
    assert_eq!(check_step(&report, "stream:lines")["skipped"], true);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn auth_failure_exits_4_and_writes_a_failed_manifest() {
    let server = always(401, 1).await;
    let ws = Workspace::new();
    let config = bearer_config(&ws, &server.uri());
    let xcom = ws.dir.path().join("xcom/return.json");
    let output = run_with_xcom(&config, &xcom, &[("LANDFALL_TEST_TOKEN", SECRET)]).await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let manifest = &ws.manifests("shop")[0];
    assert_eq!(manifest["status"], "failed");
    assert_eq!(manifest["streams"][0]["error"]["code"], "AUTH_FAILED");
    let summary = read_json(&xcom);
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["exit_code"], 4);
    assert_eq!(summary["streams"]["items"]["error_code"], "AUTH_FAILED");
}

#[tokio::test]
async fn server_errors_are_retried_then_land_once() {
    let server = MockServer::start().await;
    items_mock(SECRET).mount(&server).await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "0"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = bearer_config(&ws, &server.uri());
    let xcom = ws.dir.path().join("return.json");
    let output = run_with_xcom(&config, &xcom, &[("LANDFALL_TEST_TOKEN", SECRET)]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stream = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(stream["requests"], 3);
    assert_eq!(stream["retries"], 2);
    assert_eq!(stream["rows_written"], 2);
    assert_eq!(ws.lines("shop", "items").len(), 2);
    let retried: Vec<Value> = events(&output)
        .into_iter()
        .filter(|e| e["event"] == "request_retried")
        .collect();
    assert_eq!(retried.len(), 2);
    assert_eq!(retried[0]["code"], "SERVER_ERROR");
    let summary = read_json(&xcom);
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["streams"]["items"]["rows_written"], 2);
    assert!(summary["manifest_path"].as_str().unwrap().starts_with("file://"));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (ws, output) = run_against_status(400, 1).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        ws.manifests("shop")[0]["streams"][0]["error"]["code"],
        "INVALID_REQUEST"
    );
}

#[tokio::test]
async fn transient_failures_exit_75() {
    let (_ws, output) = run_against_status(502, 3).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
}

#[tokio::test]
async fn malformed_page_names_stream_page_and_request() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(b"{\"data\": [{\"id\": 1},".to_vec(), "application/json")
                .insert_header("x-request-id", "req-abc-123"),
        )
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, records_path: /data}",
    ));
    let output = run(&config, &[]).await;
    assert_ne!(output.status.code(), Some(0));
    let failed = events(&output)
        .into_iter()
        .find(|e| e["event"] == "stream_failed")
        .expect("stream_failed event");
    assert_eq!(failed["stream"], "items");
    assert_eq!(failed["code"], "PARSING_ERROR");
    let message = failed["error"].as_str().unwrap();
    assert!(
        message.contains("page 1") && message.contains("GET /items") && message.contains("req-abc-123"),
        "{message}"
    );
}

#[tokio::test]
async fn secrets_appear_nowhere() {
    for format in ["json", "text"] {
        for token in [SECRET, QUOTED_SECRET] {
            secrets_appear_nowhere_in(format, token).await;
        }
    }
}

/// A token with a quote and a backslash: JSON logs escape it (`\"`, `\\`), which must not
/// let it past the redaction layer.
const QUOTED_SECRET: &str = r#"tok"9f8e\7d6c-quoted"#;

async fn secrets_appear_nowhere_in(format: &str, token: &str) {
    let server = MockServer::start().await;
    // The vendor echoes the credentials back in an error body.
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!("bad token {token} and key qk-5e5e5e5e5e")))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(
        &one_stream(&server.uri(), "{name: items, path: /items}")
            .replace("  name: shop\n", "  name: shop\n  auth: {type: api_key, in: query, name: api_key, value: '${env:LANDFALL_TEST_KEY}'}\n  headers: {X-Token: '${env:LANDFALL_TEST_TOKEN}'}\n"),
    );
    let xcom = ws.dir.path().join("return.json");
    let output = landfall(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--xcom-output",
            xcom.to_str().unwrap(),
            "--log-format",
            format,
        ],
        &[("LANDFALL_TEST_TOKEN", token), ("LANDFALL_TEST_KEY", "qk-5e5e5e5e5e")],
    )
    .await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    let mut haystacks = vec![
        stderr(&output),
        stdout(&output),
        std::fs::read_to_string(&xcom).unwrap(),
    ];
    for file in common::files_under(&ws.landing()) {
        haystacks.push(String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned());
    }
    // The distinctive tail of the token, in whatever escaping a format gave it.
    let tail = token.rsplit(['"', '\\']).next().unwrap();
    for text in &haystacks {
        assert!(!text.contains(tail), "{format}: token leaked: {text}");
        assert!(!text.contains("qk-5e5e5e5e5e"), "{format}: api key leaked: {text}");
    }
    assert!(stderr(&output).contains("api_key=***"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("bad token ***"),
        "{format}: {}",
        stderr(&output)
    );
    assert_eq!(
        stderr(&output).starts_with('{'),
        format == "json",
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn every_log_event_carries_the_run_and_page_context() {
    let server = MockServer::start().await;
    items_mock(SECRET).mount(&server).await;
    let ws = Workspace::new();
    let config = bearer_config(&ws, &server.uri());
    let output = with_token("run", &config, SECRET).await;
    assert!(output.status.success());
    let events = events(&output);
    let run_id = ws.manifests("shop")[0]["run_id"].as_str().unwrap().to_owned();
    assert!(events.len() >= 6);
    for event in &events {
        assert_eq!(event["run_id"], run_id.as_str(), "{event}");
        assert!(
            landfall::observe::events::ALL.contains(&event["event"].as_str().unwrap()),
            "{event}"
        );
    }
    let page = events.iter().find(|e| e["event"] == "page_fetched").unwrap();
    assert_eq!(page["stream"], "items");
    assert_eq!(page["page"], 1);
    assert!(page["request_id"].as_str().is_some_and(|id| !id.is_empty()));
}

/// Each log line's event and field names: `(event, [fields])`, sorted. JSON lines give
/// their keys; text lines (`TIME LEVEL message key=value ...`) the `key=` tokens.
fn event_shapes(output: &Output, json: bool) -> Vec<(String, Vec<String>)> {
    let mut shapes: Vec<(String, Vec<String>)> = stderr(output)
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = if json {
                let event: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                event.as_object().unwrap().keys().cloned().collect()
            } else {
                line.split_whitespace()
                    .filter_map(|token| token.split_once('=').map(|(name, _)| name))
                    .filter(|name| {
                        !name.is_empty()
                            && name
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    })
                    .map(ToOwned::to_owned)
                    .collect()
            };
            fields.retain(|name| !["timestamp", "level", "message"].contains(&name.as_str()));
            fields.sort();
            let event = line
                .split("event")
                .nth(1)
                .and_then(|rest| rest.split('"').nth(if json { 2 } else { 1 }))
                .unwrap_or_else(|| panic!("no event in {line}"))
                .to_owned();
            (event, fields)
        })
        .collect();
    shapes.sort();
    shapes
}

#[tokio::test]
async fn text_and_json_logs_carry_the_same_events_and_fields() {
    let server = MockServer::start().await;
    items_mock(SECRET).mount(&server).await;
    let mut shapes = Vec::new();
    for format in ["json", "text"] {
        let ws = Workspace::new();
        let config = bearer_config(&ws, &server.uri());
        let output = landfall(
            &["run", "--config", config.to_str().unwrap(), "--log-format", format],
            &[("LANDFALL_TEST_TOKEN", SECRET)],
        )
        .await;
        assert!(output.status.success(), "{}", stderr(&output));
        // No colour when stderr is not a terminal, even for forced text.
        assert!(!stderr(&output).contains('\x1b'), "{:?}", stderr(&output));
        shapes.push(event_shapes(&output, format == "json"));
    }
    assert!(
        shapes[0].iter().any(|(event, _)| event == "page_fetched"),
        "{:?}",
        shapes[0]
    );
    assert_eq!(shapes[0], shapes[1]);
}

#[tokio::test]
async fn demo_lands_the_sample_api_and_resumes_from_checkpoints() {
    let ws = Workspace::new();
    let landing = ws.landing();
    let output = landfall(&["demo", "--landing", landing.to_str().unwrap()], &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("Manifest:"));
    let manifest = &ws.manifests("demo")[0];
    assert_eq!(manifest["status"], "succeeded");
    for (stream, count) in landfall::demo::api::expected_counts() {
        let report = stream_report(manifest, stream);
        assert_eq!(report["rows_written"], count, "{stream}");
        assert_eq!(ws.lines("demo", stream).len() as u64, count, "{stream}");
    }
    let checkpoint = ws.state("demo", "customers").unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();

    // The second run starts at the checkpoint (inclusive), so only the boundary record of
    // each incremental stream comes back, unchanged: a duplicate, not landed again.
    let output = landfall(&["demo", "--landing", landing.to_str().unwrap()], &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let manifests = ws.manifests("demo");
    assert_eq!(manifests.len(), 2);
    let second = manifests.iter().find(|m| m["run_id"] != manifest["run_id"]).unwrap();
    let customers = stream_report(second, "customers");
    assert_eq!(customers["cursor_start"], checkpoint.as_str());
    assert_eq!(customers["rows_read"], 1);
    assert_eq!(customers["duplicate_rows"], 1);
    assert_eq!(customers["rows_written"], 0);
    assert_eq!(customers["cursor_end"], checkpoint.as_str());
}
