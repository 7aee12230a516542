//! Every pagination type end to end against a loopback mock API, plus the loop guards.

mod common;

use common::{Workspace, one_stream, run};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn records(ids: std::ops::Range<u32>) -> Value {
    Value::Array(ids.map(|id| json!({"id": id, "v": format!("r{id}")})).collect())
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["_source_record_id"].as_str().unwrap().to_owned())
        .collect()
}

fn expected(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|id| id.to_string()).collect()
}

fn pages(lines: &[Value]) -> Vec<u64> {
    lines.iter().map(|line| line["_page"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn none_fetches_one_page() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(records(1..4)))
        .expect(1)
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, primary_key: [id]}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&ws.lines("shop", "items")), expected(1..4));
}

#[tokio::test]
async fn cursor_in_query() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .and(query_param_is_missing("after"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(1..3), "meta": {"next": "c1"}})))
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param("after", "c1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(3..5), "meta": {"next": "c2"}})))
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param("after", "c2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(5..6), "meta": {"next": null}})))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: cursor, cursor_path: /meta/next, cursor_param: after}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let lines = ws.lines("shop", "items");
    assert_eq!(ids(&lines), expected(1..6));
    assert_eq!(pages(&lines), [1, 1, 2, 2, 3]);
    assert_eq!(ws.manifests("shop")[0]["streams"][0]["pages"], 3);
}

#[tokio::test]
async fn cursor_in_post_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/search"))
        .and(body_partial_json(json!({"query": "all", "cursor": "c1"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": records(3..4), "next": null})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/search"))
        .and(body_partial_json(json!({"query": "all"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": records(1..3), "next": "c1"})))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: hits, path: /search, method: POST, body: {query: all}, records_path: /results, primary_key: [id], pagination: {type: cursor, cursor_path: /next, cursor_param: cursor, inject_into: body}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&ws.lines("shop", "hits")), expected(1..4));
    let endpoint = ws.lines("shop", "hits")[0]["_source_endpoint"].clone();
    assert_eq!(endpoint, "POST /search");
}

#[tokio::test]
async fn cursor_in_header() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .and(header("X-Cursor", "c1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(2..3)})))
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(1..2), "next": "c1"})))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: cursor, cursor_path: /next, cursor_param: X-Cursor, inject_into: header}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&ws.lines("shop", "items")), expected(1..3));
}

#[tokio::test]
async fn next_url_relative_and_absolute() {
    let server = MockServer::start().await;
    let absolute = format!("{}/items?page=3", server.uri());
    Mock::given(path("/items"))
        .and(query_param("page", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(5..6), "next": null})))
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(3..5), "next": absolute})))
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(1..3), "next": "items?page=2"})))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: next_url, next_url_path: /next}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&ws.lines("shop", "items")), expected(1..6));
}

#[tokio::test]
async fn link_header() {
    let server = MockServer::start().await;
    let next = format!(
        "<{}/items?page=2&per_page=2>; rel=\"next\", <{}/items?page=1>; rel=\"first\"",
        server.uri(),
        server.uri()
    );
    Mock::given(path("/items"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(records(3..4)))
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(records(1..3))
                .insert_header("Link", next.as_str()),
        )
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, params: {per_page: 2}, primary_key: [id], pagination: {type: link_header}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(
        ids(&ws.lines("shop", "items")),
        expected(1..4),
        "{}",
        common::stderr(&output)
    );
}

#[tokio::test]
async fn offset_stops_on_short_page() {
    let server = MockServer::start().await;
    for (offset, range) in [("0", 1..3), ("2", 3..5), ("4", 5..6)] {
        Mock::given(path("/items"))
            .and(query_param("offset", offset))
            .and(query_param("limit", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": records(range)})))
            .expect(1)
            .mount(&server)
            .await;
    }
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, records_path: /items, primary_key: [id], pagination: {type: offset, limit: 2}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&ws.lines("shop", "items")), expected(1..6));
}

#[tokio::test]
async fn offset_stops_at_total() {
    let server = MockServer::start().await;
    for (offset, range) in [("0", 1..3), ("2", 3..5)] {
        Mock::given(path("/items"))
            .and(query_param("skip", offset))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": records(range), "total": 4})))
            .expect(1)
            .mount(&server)
            .await;
    }
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, records_path: /items, primary_key: [id], pagination: {type: offset, offset_param: skip, limit_param: take, limit: 2, total_path: /total}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&ws.lines("shop", "items")), expected(1..5));
}

#[tokio::test]
async fn page_number_with_and_without_page_size() {
    let server = MockServer::start().await;
    for (page, range) in [("1", 1..3), ("2", 3..5), ("3", 5..5)] {
        Mock::given(path("/items"))
            .and(query_param("p", page))
            .respond_with(ResponseTemplate::new(200).set_body_json(records(range)))
            .expect(1)
            .mount(&server)
            .await;
    }
    // Without a page-size parameter only an empty page ends the stream.
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, primary_key: [id], pagination: {type: page_number, page_param: p, page_size: 2}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&ws.lines("shop", "items")), expected(1..5));

    // With one, a short page does.
    let server = MockServer::start().await;
    for (page, range) in [("0", 1..4), ("1", 4..5)] {
        Mock::given(path("/items"))
            .and(query_param("page", page))
            .and(query_param("size", "3"))
            .respond_with(ResponseTemplate::new(200).set_body_json(records(range)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, primary_key: [id], pagination: {type: page_number, page_size_param: size, page_size: 3, start_page: 0}}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&ws.lines("shop", "items")), expected(1..5));
}

#[tokio::test]
async fn repeated_cursor_fails_the_stream_but_keeps_what_was_read() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(1..3), "next": "same"})))
        .expect(2)
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: cursor, cursor_path: /next, cursor_param: c}}",
    ));
    let output = run(&config, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", common::stderr(&output));
    let manifest = &ws.manifests("shop")[0];
    assert_eq!(manifest["status"], "failed");
    let stream = &manifest["streams"][0];
    assert_eq!(stream["error"]["code"], "PAGINATION_ERROR");
    assert!(
        stream["error"]["message"].as_str().unwrap().contains("`same` again"),
        "{stream}"
    );
    // Both pages that were read are kept: the repeated records once, counted as duplicates.
    assert_eq!(stream["rows_read"], 4);
    assert_eq!(stream["duplicate_rows"], 2);
    assert_eq!(ws.lines("shop", "items").len(), 2);
    assert_eq!(stream["rows_written"], 2);
}

#[tokio::test]
async fn reaching_max_pages_is_an_error() {
    let server = MockServer::start().await;
    for (page, range) in [("1", 1..3), ("2", 3..5)] {
        Mock::given(path("/items"))
            .and(query_param("page", page))
            .respond_with(ResponseTemplate::new(200).set_body_json(records(range)))
            .mount(&server)
            .await;
    }
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: items, path: /items, primary_key: [id], pagination: {type: page_number, page_size: 2, max_pages: 2}}",
    ));
    let output = run(&config, &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let stream = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(stream["error"]["code"], "PAGINATION_ERROR");
    assert!(
        stream["error"]["message"].as_str().unwrap().contains("max_pages (2)"),
        "{stream}"
    );
    assert_eq!(stream["rows_written"], 4);
}
