//! Data quality end to end: dead letters for invalid records and unparseable pages, the
//! dead-letter ratio, duplicates within a run, PII redaction, and schema drift.

use crate::common;

use std::process::Output;

use common::{Workspace, events, landfall, one_stream, run, run_ok, run_stream, stderr};
use serde_json::{Value, json};
use wiremock::matchers::{path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn dead_letters(ws: &Workspace, stream: &str) -> Vec<Value> {
    common::files_under(&ws.landing().join("shop/_dead_letter").join(stream))
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
        .flat_map(|p| common::read_part(p))
        .collect()
}

fn report(ws: &Workspace) -> Value {
    ws.manifests("shop").pop().unwrap()["streams"][0].clone()
}

/// Mounts a mock answering every request to `/items` with `body`.
async fn mount_items(server: &MockServer, body: Value) {
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// A server answering every request to `/items` with `body`.
async fn serve(body: Value) -> MockServer {
    let server = MockServer::start().await;
    mount_items(&server, body).await;
    server
}

/// A server answering the first request to `/items` with `first`, every later one with `then`.
async fn serve_then(first: ResponseTemplate, then: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_items(&server, then).await;
    server
}

/// A page of the two records `{"id": 1}` and `{"id": 2}` under `/data`.
fn two_records() -> Value {
    json!({"data": [{"id": 1}, {"id": 2}]})
}

#[tokio::test]
async fn records_missing_a_required_field_or_breaking_the_schema_are_dead_lettered() {
    let mut items: Vec<Value> = (1..=200)
        .map(|i| json!({"id": i, "email": format!("u{i}@x.test"), "amount": i}))
        .collect();
    items[10] = json!({"id": 11, "amount": 1});
    items[20] = json!({"id": 21, "email": "e", "amount": "21.00"});
    items[30] = json!({"id": null, "email": "e", "amount": 3});
    let server = serve(json!({"data": items})).await;
    let spec = "{name: items, path: /items, records_path: /data, primary_key: [id], required: [email], max_dead_letter_ratio: 0.05, schema: {type: object, properties: {amount: {type: integer}}}}";
    let (ws, output) = run_ok(&server, spec).await;
    let stream = report(&ws);
    assert_eq!(stream["rows_read"], 200);
    assert_eq!(stream["rows_written"], 197);
    assert_eq!(stream["dead_letter_rows"], 3);
    assert_eq!(ws.lines("shop", "items").len(), 197);
    let dead = dead_letters(&ws, "items");
    let errors: Vec<(String, String)> = dead
        .iter()
        .map(|line| {
            (
                line["_error"]["path"].as_str().unwrap().to_owned(),
                line["_error"]["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("/email".to_owned(), "VALIDATION_ERROR".to_owned()),
            ("/amount".to_owned(), "VALIDATION_ERROR".to_owned()),
            ("/id".to_owned(), "VALIDATION_ERROR".to_owned()),
        ]
    );
    // The dead letter carries the envelope and the original bytes.
    assert_eq!(dead[0]["_source_record_id"], "11");
    assert_eq!(dead[0]["_raw"], json!({"id": 11, "amount": 1}).to_string());
    assert_eq!(dead[0]["_run_id"], ws.manifests("shop")[0]["run_id"]);
    assert!(dead[2]["_source_record_id"].is_null());
    assert_eq!(stream["dead_letter_files"][0]["rows"], 3);
    assert!(events(&output).iter().any(|e| e["event"] == "dead_letter_stored"));
}

#[tokio::test]
async fn the_dead_letter_ratio_fails_the_stream() {
    let items: Vec<Value> = (1..=10)
        .map(|i| {
            if i % 5 == 0 {
                json!({"id": i})
            } else {
                json!({"id": i, "email": "e"})
            }
        })
        .collect();
    let server = serve(json!({"data": items})).await;
    let spec = "{name: items, path: /items, records_path: /data, primary_key: [id], required: [email], max_dead_letter_ratio: 0.1}";
    let (ws, output) = run_stream(&server, spec).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stream = report(&ws);
    assert_eq!(stream["status"], "failed");
    assert_eq!(stream["error"]["code"], "VALIDATION_ERROR");
    assert!(
        stream["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_dead_letter_ratio 0.1"),
        "{stream}"
    );
    // Nothing is lost: the good records landed, the bad ones are in the dead letters.
    assert_eq!(stream["rows_written"], 8);
    assert_eq!(dead_letters(&ws, "items").len(), 2);
}

#[tokio::test]
async fn a_truncated_page_is_fetched_again() {
    let truncated =
        ResponseTemplate::new(200).set_body_raw(b"{\"data\": [{\"id\": 1}, {\"id\"".to_vec(), "application/json");
    let server = serve_then(truncated, two_records()).await;
    let (ws, _) = run_ok(
        &server,
        "{name: items, path: /items, records_path: /data, primary_key: [id]}",
    )
    .await;
    let stream = report(&ws);
    assert_eq!(stream["rows_written"], 2);
    assert_eq!(stream["requests"], 2);
    assert_eq!(stream["retries"], 1);
    assert_eq!(stream["dead_letter_rows"], 0);
}

async fn bad_page(body: &'static [u8]) -> (Workspace, Output, MockServer) {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body.to_vec(), "application/json"))
        .expect(3)
        .mount(&server)
        .await;
    mount_items(&server, two_records()).await;
    let spec = "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: page_number, page_size: 2, page_size_param: size}}";
    let (ws, output) = run_stream(&server, spec).await;
    (ws, output, server)
}

#[tokio::test]
async fn a_page_that_is_not_json_is_retried_then_dead_lettered() {
    let (ws, output, _server) = bad_page(b"<html>502 Bad Gateway</html>").await;
    // The same page after every re-fetch: a later run would get it too, so not exit 75.
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stream = report(&ws);
    assert_eq!(stream["error"]["code"], "PARSING_ERROR");
    assert_eq!(stream["error"]["retryable"], false);
    let message = stream["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("page 2") && message.contains("GET /items?page=2&size=2"),
        "{message}"
    );
    assert_eq!(stream["rows_written"], 2, "page 1 is landed");
    let dead = dead_letters(&ws, "items");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["_raw"], "<html>502 Bad Gateway</html>");
    assert_eq!(dead[0]["_error"]["code"], "PARSING_ERROR");
    assert_eq!(dead[0]["_page"], 2);
}

#[tokio::test]
async fn a_page_without_records_path_is_retried_then_dead_lettered() {
    let (ws, output, _server) = bad_page(b"{\"error\": {\"message\": \"try later\"}}").await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stream = report(&ws);
    assert_eq!(stream["error"]["code"], "PARSING_ERROR");
    assert!(
        stream["error"]["message"]
            .as_str()
            .unwrap()
            .contains("records_path `/data` is not in the response")
    );
    let dead = dead_letters(&ws, "items");
    assert_eq!(dead[0]["_raw"], "{\"error\": {\"message\": \"try later\"}}");
    assert_eq!(dead[0]["_error"]["path"], "/data");
}

#[tokio::test]
async fn records_repeated_across_overlapping_pages_land_once() {
    let server = MockServer::start().await;
    for (offset, ids) in [("0", vec![1, 2, 3]), ("3", vec![3, 4, 5]), ("6", vec![6])] {
        let data: Vec<Value> = ids.iter().map(|i| json!({"id": i, "v": "same"})).collect();
        Mock::given(path("/items"))
            .and(query_param("offset", offset))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": data})))
            .mount(&server)
            .await;
    }
    let spec =
        "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: offset, limit: 3}}";
    let (ws, _) = run_ok(&server, spec).await;
    let stream = report(&ws);
    assert_eq!(stream["rows_read"], 7);
    assert_eq!(stream["duplicate_rows"], 1);
    let ids: Vec<String> = ws
        .lines("shop", "items")
        .iter()
        .map(|l| l["_source_record_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
}

const EMAIL: &str = "jane.doe.secret@example.com";
const SSN: &str = "987-65-4321";
const PHONE: &str = "+1-555-0100-77";
const SALT: &str = "pii-salt-4f3e2d1c";

#[tokio::test]
async fn pii_is_redacted_before_anything_is_stored() {
    let records = json!([
        {"id": 1, "customer": {"email": EMAIL, "name": "Jane"}, "contacts": [{"phone": PHONE, "kind": "home"}, {"phone": PHONE, "kind": "work"}], "ssn": SSN},
        {"id": 2, "customer": {"email": EMAIL, "name": "J"}, "contacts": [], "ssn": null}
    ]);
    let server = serve(json!({"data": records})).await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, records_path: /data, primary_key: [id], redact: [{path: /customer/email, action: hash, salt: '${env:PII_SALT}'}, {path: /contacts/*/phone, action: mask, replacement: REDACTED}, {path: /ssn, action: drop}]}",
    ));
    let output = landfall(&["run", "--config", config.to_str().unwrap()], &[("PII_SALT", SALT)]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = ws.lines("shop", "items");
    let first = &lines[0];
    let raw: Value = serde_json::from_str(first["_raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["contacts"][0]["phone"], "REDACTED");
    assert_eq!(raw["contacts"][1]["kind"], "work");
    assert!(raw.get("ssn").is_none());
    let hashed = raw["customer"]["email"].as_str().unwrap();
    assert_eq!(hashed.len(), 64);
    // Joinable: the same email hashes the same in every record.
    let second: Value = serde_json::from_str(lines[1]["_raw"].as_str().unwrap()).unwrap();
    assert_eq!(second["customer"]["email"], hashed);
    assert_eq!(
        first["_redacted"],
        json!(["/customer/email:hash", "/contacts/*/phone:mask", "/ssn:drop"])
    );
    assert_eq!(
        first["_payload_sha256"].as_str().unwrap(),
        landfall::hash::sha256_hex(first["_raw"].as_str().unwrap().as_bytes())
    );
    // No personal value, nor the salt, is anywhere in the landing zone or the logs.
    let mut haystacks = vec![stderr(&output), common::stdout(&output)];
    for file in common::files_under(&ws.landing()) {
        let bytes = std::fs::read(&file).unwrap();
        haystacks.push(if file.to_string_lossy().ends_with(".gz") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut text).unwrap();
            text
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        });
    }
    for text in &haystacks {
        for secret in [EMAIL, SSN, PHONE, SALT] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

#[tokio::test]
async fn schema_drift_across_runs() {
    let first = json!({"data": [{"id": 1, "price": 1, "code": "a", "legacy": true}]});
    let server = serve_then(
        ResponseTemplate::new(200).set_body_json(first),
        json!({"data": [{"id": 2, "price": 1.5, "code": 7, "added": "x"}]}),
    )
    .await;
    let ws = Workspace::new();
    let stream = "{name: items, path: /items, records_path: /data, primary_key: [id], on_breaking_drift: fail}";
    let config = ws.config(&one_stream(&server.uri(), stream));
    let first = run(&config, &[]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let state: Value =
        serde_json::from_slice(&std::fs::read(ws.landing().join("shop/_state/items.schema.json")).unwrap()).unwrap();
    assert_eq!(state["paths"]["/price"]["types"], json!(["integer"]));

    let second = run(&config, &[]).await;
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let manifests = ws.manifests("shop");
    let report = manifests.iter().find(|m| m["status"] == "failed").unwrap()["streams"][0].clone();
    assert_eq!(report["error"]["code"], "VALIDATION_ERROR");
    let changes: Vec<(String, String)> = report["schema_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_owned(),
                c["change"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("/legacy", "removed"),
        ("/code", "type_changed"),
        ("/added", "added"),
        ("/price", "widened"),
    ] {
        assert!(
            changes.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{changes:?}"
        );
    }
    let drift = events(&second)
        .into_iter()
        .find(|e| e["event"] == "schema_drift_detected")
        .expect("one drift event");
    assert_eq!(drift["breaking"], true);
    assert_eq!(drift["removed"], 1);
    // The data still landed; with `warn` the same drift only logs.
    assert_eq!(report["rows_written"], 1);
    let warn_config = ws.config(&one_stream(&server.uri(), &stream.replace("fail", "warn")));
    let third = run(&warn_config, &[]).await;
    assert!(third.status.success(), "{}", stderr(&third));
}
