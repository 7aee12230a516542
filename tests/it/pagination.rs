//! Every pagination type end to end against a loopback mock API, plus the loop guards.

use crate::common;

use std::ops::Range;

use common::{Workspace, run_ok, run_stream};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

fn records(ids: Range<u32>) -> Value {
    Value::Array(ids.map(|id| json!({"id": id, "v": format!("r{id}")})).collect())
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["_source_record_id"].as_str().unwrap().to_owned())
        .collect()
}

fn expected(range: Range<u32>) -> Vec<String> {
    range.map(|id| id.to_string()).collect()
}

fn pages(lines: &[Value]) -> Vec<u64> {
    lines.iter().map(|line| line["_page"].as_u64().unwrap()).collect()
}

/// Runs one `stream` against `server` and asserts that it succeeded and landed, in order,
/// exactly the `items` with the ids in `range`.
async fn assert_items_landed(server: &MockServer, stream: &str, range: Range<u32>) -> Workspace {
    let (ws, output) = run_ok(server, stream).await;
    assert_eq!(
        ids(&ws.lines("shop", "items")),
        expected(range),
        "{stream}: {}",
        common::stderr(&output)
    );
    ws
}

/// Mounts `given`, answering 200 with `body` as JSON.
async fn answer(server: &MockServer, given: MockBuilder, body: Value) {
    given
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// Serves `/items` pages, each fetched exactly once: `(value, range)` answers `?{param}={value}`
/// (plus the `fixed` query params) with the records of `range` wrapped by `body`.
async fn serve_pages(
    param: &str,
    fixed: &[(&str, &str)],
    pages: &[(&str, Range<u32>)],
    body: impl Fn(Value) -> Value,
) -> MockServer {
    let server = MockServer::start().await;
    for (value, range) in pages {
        let mut given = Mock::given(path("/items")).and(query_param(param, *value));
        for (name, fixed_value) in fixed {
            given = given.and(query_param(*name, *fixed_value));
        }
        given
            .respond_with(ResponseTemplate::new(200).set_body_json(body(records(range.clone()))))
            .expect(1)
            .mount(&server)
            .await;
    }
    server
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
    let stream = "{name: items, path: /items, primary_key: [id]}";
    assert_items_landed(&server, stream, 1..4).await;
}

#[tokio::test]
async fn cursor_in_query() {
    let server = MockServer::start().await;
    let page = |cursor| Mock::given(path("/items")).and(query_param("after", cursor));
    let first = Mock::given(path("/items")).and(query_param_is_missing("after"));
    answer(&server, first, json!({"data": records(1..3), "meta": {"next": "c1"}})).await;
    answer(
        &server,
        page("c1"),
        json!({"data": records(3..5), "meta": {"next": "c2"}}),
    )
    .await;
    answer(
        &server,
        page("c2"),
        json!({"data": records(5..6), "meta": {"next": null}}),
    )
    .await;
    let stream = "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: cursor, cursor_path: /meta/next, cursor_param: after}}";
    let ws = assert_items_landed(&server, stream, 1..6).await;
    let lines = ws.lines("shop", "items");
    assert_eq!(pages(&lines), [1, 1, 2, 2, 3]);
    assert_eq!(ws.manifests("shop")[0]["streams"][0]["pages"], 3);
}

#[tokio::test]
async fn cursor_in_post_body() {
    let server = MockServer::start().await;
    let search = |body| {
        Mock::given(method("POST"))
            .and(path("/search"))
            .and(body_partial_json(body))
    };
    answer(
        &server,
        search(json!({"query": "all", "cursor": "c1"})),
        json!({"results": records(3..4), "next": null}),
    )
    .await;
    answer(
        &server,
        search(json!({"query": "all"})),
        json!({"results": records(1..3), "next": "c1"}),
    )
    .await;
    let (ws, _) = run_ok(
        &server,
        "{name: hits, path: /search, method: POST, body: {query: all}, records_path: /results, primary_key: [id], pagination: {type: cursor, cursor_path: /next, cursor_param: cursor, inject_into: body}}",
    )
    .await;
    assert_eq!(ids(&ws.lines("shop", "hits")), expected(1..4));
    let endpoint = ws.lines("shop", "hits")[0]["_source_endpoint"].clone();
    assert_eq!(endpoint, "POST /search");
}

#[tokio::test]
async fn cursor_in_header() {
    let server = MockServer::start().await;
    let items = || Mock::given(path("/items"));
    let second = json!({"data": records(2..3)});
    answer(&server, items().and(header("X-Cursor", "c1")), second).await;
    answer(&server, items(), json!({"data": records(1..2), "next": "c1"})).await;
    let stream = "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: cursor, cursor_path: /next, cursor_param: X-Cursor, inject_into: header}}";
    assert_items_landed(&server, stream, 1..3).await;
}

#[tokio::test]
async fn next_url_relative_and_absolute() {
    let server = MockServer::start().await;
    let absolute = format!("{}/items?page=3", server.uri());
    let page = |number| Mock::given(path("/items")).and(query_param("page", number));
    answer(&server, page("3"), json!({"data": records(5..6), "next": null})).await;
    answer(&server, page("2"), json!({"data": records(3..5), "next": absolute})).await;
    let first = Mock::given(path("/items"));
    answer(&server, first, json!({"data": records(1..3), "next": "items?page=2"})).await;
    let stream = "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: next_url, next_url_path: /next}}";
    assert_items_landed(&server, stream, 1..6).await;
}

#[tokio::test]
async fn a_relative_next_url_resolves_against_the_url_the_redirect_led_to() {
    // RFC 3986: a reference is resolved against the document's own URL, which after a
    // redirect is the final one (`/v2/items?page=1`), not the one first requested.
    let server = MockServer::start().await;
    let v2 = |number| Mock::given(path("/v2/items")).and(query_param("page", number));
    v2("2")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(3..5), "next": null})))
        .expect(1)
        .mount(&server)
        .await;
    v2("1")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(1..3), "next": "items?page=2"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/v2/items?page=1"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(404))
        .expect(0)
        .mount(&server)
        .await;
    let stream = "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: next_url, next_url_path: /next}}";
    assert_items_landed(&server, stream, 1..5).await;
}

#[tokio::test]
async fn link_header() {
    let server = MockServer::start().await;
    let next = format!(
        "<{}/items?page=2&per_page=2>; rel=\"next\", <{}/items?page=1>; rel=\"first\"",
        server.uri(),
        server.uri()
    );
    answer(
        &server,
        Mock::given(path("/items")).and(query_param("page", "2")),
        records(3..4),
    )
    .await;
    Mock::given(path("/items"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(records(1..3))
                .insert_header("Link", next.as_str()),
        )
        .mount(&server)
        .await;
    let stream =
        "{name: items, path: /items, params: {per_page: 2}, primary_key: [id], pagination: {type: link_header}}";
    assert_items_landed(&server, stream, 1..4).await;
}

#[tokio::test]
async fn offset_stops_on_short_page() {
    let pages = [("0", 1..3), ("2", 3..5), ("4", 5..6)];
    let server = serve_pages("offset", &[("limit", "2")], &pages, |data| json!({"items": data})).await;
    let stream =
        "{name: items, path: /items, records_path: /items, primary_key: [id], pagination: {type: offset, limit: 2}}";
    assert_items_landed(&server, stream, 1..6).await;
}

#[tokio::test]
async fn offset_stops_at_total() {
    let pages = [("0", 1..3), ("2", 3..5)];
    let server = serve_pages("skip", &[], &pages, |data| json!({"items": data, "total": 4})).await;
    let stream = "{name: items, path: /items, records_path: /items, primary_key: [id], pagination: {type: offset, offset_param: skip, limit_param: take, limit: 2, total_path: /total}}";
    assert_items_landed(&server, stream, 1..5).await;
}

#[tokio::test]
async fn page_number_with_and_without_page_size() {
    // Without a page-size parameter only an empty page ends the stream.
    let pages = [("1", 1..3), ("2", 3..5), ("3", 5..5)];
    let server = serve_pages("p", &[], &pages, |data| data).await;
    let stream =
        "{name: items, path: /items, primary_key: [id], pagination: {type: page_number, page_param: p, page_size: 2}}";
    assert_items_landed(&server, stream, 1..5).await;

    // With one, a short page does.
    let pages = [("0", 1..4), ("1", 4..5)];
    let server = serve_pages("page", &[("size", "3")], &pages, |data| data).await;
    let stream = "{name: items, path: /items, primary_key: [id], pagination: {type: page_number, page_size_param: size, page_size: 3, start_page: 0}}";
    assert_items_landed(&server, stream, 1..5).await;
}

#[tokio::test]
async fn repeated_cursor_fails_the_stream_but_keeps_what_was_read() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": records(1..3), "next": "same"})))
        .expect(2)
        .mount(&server)
        .await;
    let (ws, output) = run_stream(
        &server,
        "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: cursor, cursor_path: /next, cursor_param: c}}",
    )
    .await;
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
    let server = serve_pages("page", &[], &[("1", 1..3), ("2", 3..5)], |data| data).await;
    let (ws, output) = run_stream(
        &server,
        "{name: items, path: /items, primary_key: [id], pagination: {type: page_number, page_size: 2, max_pages: 2}}",
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stream = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(stream["error"]["code"], "PAGINATION_ERROR");
    assert!(
        stream["error"]["message"].as_str().unwrap().contains("max_pages (2)"),
        "{stream}"
    );
    assert_eq!(stream["rows_written"], 4);
}

/// Issue 15.6: an API that ignores the pagination parameter serves its first page forever.
/// Every pagination type stops at the second page with PAGINATION_ERROR instead of looping.
#[tokio::test]
async fn an_api_that_ignores_the_pagination_parameter_fails_instead_of_looping() {
    let cases = [
        (
            "offset",
            "{type: offset, offset_param: skip, limit: 2}",
            json!({"data": records(1..3)}),
            None,
        ),
        (
            "page_number",
            "{type: page_number, page_size: 2}",
            json!({"data": records(1..3)}),
            None,
        ),
        (
            "cursor",
            "{type: cursor, last_record_path: id, cursor_param: after}",
            json!({"data": records(1..3)}),
            None,
        ),
        (
            "next_url",
            "{type: next_url, next_url_path: /next}",
            json!({"data": records(1..3), "next": "/items?page=2"}),
            None,
        ),
        (
            "link_header",
            "{type: link_header}",
            json!({"data": records(1..3)}),
            Some("</items?pg=2>; rel=\"next\""),
        ),
    ];
    for (kind, pagination, body, link) in cases {
        let server = MockServer::start().await;
        // next_url and link_header: every page points at a new URL (the API echoes the
        // parameter it ignores), so only the repeated records can stop the loop.
        let mut template = ResponseTemplate::new(200).set_body_json(body.clone());
        if let Some(link) = link {
            template = template.insert_header("Link", link);
        }
        Mock::given(path("/items"))
            .and(query_param("page", "2"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"data": records(1..3), "next": "/items?page=3"})),
            )
            .mount(&server)
            .await;
        Mock::given(path("/items"))
            .and(query_param("pg", "2"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"data": records(1..3)}))
                    .insert_header("Link", "</items?pg=3>; rel=\"next\""),
            )
            .mount(&server)
            .await;
        Mock::given(path("/items")).respond_with(template).mount(&server).await;
        let stream =
            format!("{{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {pagination}}}");
        let started = std::time::Instant::now();
        let (ws, output) = run_stream(&server, &stream).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{kind}");
        assert_eq!(output.status.code(), Some(1), "{kind}: {}", common::stderr(&output));
        let report = &ws.manifests("shop")[0]["streams"][0];
        assert_eq!(report["error"]["code"], "PAGINATION_ERROR", "{kind}: {report}");
        assert_eq!(report["pages"], 2, "{kind}: {report}");
        assert_eq!(ws.lines("shop", "items").len(), 2, "{kind}");
    }
}
