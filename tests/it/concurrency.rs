//! One process per source, one budget: `landfall run` extracts a source's streams
//! concurrently (`source.max_concurrent_streams`) through one client, so the source's rate
//! limit holds across all of them, and a parent stream is extracted once for its children.
//! Backfills scale out instead with `landfall plan`, whose windows are checked here too.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use serde_json::{Value, json};

use common::servers::{most_in_flight, most_started_within};
use common::{Workspace, run, stderr, stream_report};

/// One request as the API saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    page: u64,
    started: Instant,
    finished: Instant,
}

/// A loopback API: `/items/{stream}` and `/parents` page through `PAGES` pages of two
/// records (cursor pagination), `/parents/{id}/children` answers one page; every answer
/// waits `delay` first. It logs when each request started and finished.
#[derive(Clone)]
struct Api {
    delay: Duration,
    log: Arc<Mutex<Vec<Seen>>>,
}

const PAGES: u64 = 5;

impl Api {
    async fn serve(delay: Duration) -> (Self, String) {
        let api = Api {
            delay,
            log: Arc::default(),
        };
        let app = Router::new()
            .route("/items/{stream}", get(items))
            .route("/parents", get(parents))
            .route("/parents/{id}/children", get(children))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (api, format!("http://{address}"))
    }

    async fn answer(&self, path: String, page: u64, data: Vec<Value>) -> axum::Json<Value> {
        let started = Instant::now();
        tokio::time::sleep(self.delay).await;
        self.log.lock().unwrap().push(Seen {
            path,
            page,
            started,
            finished: Instant::now(),
        });
        let next = (page + 1 < PAGES).then(|| (page + 1).to_string());
        axum::Json(json!({"data": data, "next": next}))
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

fn page_of(query: &std::collections::HashMap<String, String>) -> u64 {
    query.get("cursor").and_then(|cursor| cursor.parse().ok()).unwrap_or(0)
}

fn page_records(page: u64) -> Vec<Value> {
    (0..2).map(|n| json!({"id": page * 2 + n})).collect()
}

async fn items(
    State(api): State<Api>,
    Path(stream): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Value> {
    let page = page_of(&query);
    api.answer(format!("/items/{stream}"), page, page_records(page)).await
}

async fn parents(
    State(api): State<Api>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Value> {
    let page = page_of(&query);
    api.answer("/parents".to_owned(), page, page_records(page)).await
}

async fn children(State(api): State<Api>, Path(id): Path<u64>) -> axum::Json<Value> {
    let started = Instant::now();
    tokio::time::sleep(api.delay).await;
    api.log.lock().unwrap().push(Seen {
        path: format!("/parents/{id}/children"),
        page: 0,
        started,
        finished: Instant::now(),
    });
    axum::Json(json!({"data": [{"child_id": format!("{id}-a")}]}))
}

fn item_stream(name: &str) -> String {
    format!(
        "  - name: {name}
    path: /items/{name}
    records_path: /data
    primary_key: [id]
    pagination: {{type: cursor, cursor_path: /next, cursor_param: cursor}}
"
    )
}

const PARENT_AND_CHILD: &str = "  - name: children
    path: /parents/{parent.id}/children
    records_path: /data
    primary_key: [child_id]
    parent: {stream: parents, fields: [id]}
  - name: parents
    path: /parents
    records_path: /data
    primary_key: [id]
    pagination: {type: cursor, cursor_path: /next, cursor_param: cursor}
";

fn config(base: &str, source_extra: &str, streams: &str) -> String {
    format!(
        "version: 1
source:
  name: src
  base_url: {base}
  retry: {{max_attempts: 3, initial_delay: 10ms, max_delay: 50ms}}
{source_extra}streams:
{streams}landing:
  url: '{{landing}}'
"
    )
}

impl common::servers::Timed for Seen {
    fn started(&self) -> Instant {
        self.started
    }

    fn finished(&self) -> Instant {
        self.finished
    }
}

#[tokio::test]
async fn streams_run_concurrently_under_one_rate_limit() {
    let (api, base) = Api::serve(Duration::from_millis(300)).await;
    let ws = Workspace::new();
    let streams: String = ["alpha", "bravo", "charlie", "delta"]
        .iter()
        .map(|name| item_stream(name))
        .collect();
    let path = ws.config(&config(
        &base,
        "  rate_limit: {requests_per_second: 10, burst: 1, concurrency: 8}\n  max_concurrent_streams: 4\n",
        &streams,
    ));
    let output = run(&path, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));

    let seen = api.seen();
    assert_eq!(seen.len(), 4 * PAGES as usize, "{seen:#?}");
    let in_flight = most_in_flight(&seen);
    // Each stream pages one request after another, so more than one request in flight means
    // streams ran side by side; run one after another, this is 1.
    assert!(
        (3..=4).contains(&in_flight),
        "{in_flight} requests in flight at most; expected 3 to 4 (four streams at once)"
    );
    // One token bucket for the whole source: 10 per second after a burst of 1. Four buckets
    // (one per stream) would let through about 13 in a second at this latency.
    for (window, limit) in [(Duration::from_secs(1), 11), (Duration::from_secs(2), 21)] {
        let most = most_started_within(&seen, window);
        assert!(
            most <= limit,
            "{most} requests started within {window:?}; the rate allows {limit}"
        );
    }
    let manifest = &ws.manifests("src")[0];
    let names: Vec<&str> = manifest["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|report| report["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["alpha", "bravo", "charlie", "delta"],
        "reports keep the config order"
    );
    for name in names {
        assert_eq!(stream_report(manifest, name)["rows_written"], 2 * PAGES, "{name}");
    }
}

#[tokio::test]
async fn max_concurrent_streams_one_runs_streams_one_after_another() {
    let (api, base) = Api::serve(Duration::from_millis(20)).await;
    let ws = Workspace::new();
    let streams: String = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|name| item_stream(name))
        .collect();
    let path = ws.config(&config(
        &base,
        "  rate_limit: {requests_per_second: null}\n  max_concurrent_streams: 1\n",
        &streams,
    ));
    let output = run(&path, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(most_in_flight(&api.seen()), 1);
}

#[tokio::test]
async fn a_parent_is_extracted_once_and_before_its_children() {
    let (api, base) = Api::serve(Duration::from_millis(50)).await;
    for extra in [&[][..], &["--stream", "children"][..]] {
        api.log.lock().unwrap().clear();
        let ws = Workspace::new();
        let streams = format!("{}{}", item_stream("alpha"), PARENT_AND_CHILD);
        let path = ws.config(&config(
            &base,
            "  rate_limit: {requests_per_second: null}\n  max_concurrent_streams: 4\n",
            &streams,
        ));
        let output = run(&path, extra).await;
        assert!(output.status.success(), "{extra:?}: {}", stderr(&output));

        let seen = api.seen();
        let parent_pages: Vec<u64> = seen
            .iter()
            .filter(|request| request.path == "/parents")
            .map(|request| request.page)
            .collect();
        let mut sorted = parent_pages.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..PAGES).collect::<Vec<_>>(),
            "{extra:?}: each parent page once"
        );
        let parent_done = seen
            .iter()
            .filter(|request| request.path == "/parents")
            .map(|request| request.finished)
            .max()
            .unwrap();
        let children: Vec<&Seen> = seen
            .iter()
            .filter(|request| request.path.ends_with("/children"))
            .collect();
        assert_eq!(
            children.len(),
            2 * PAGES as usize,
            "{extra:?}: one request per parent record"
        );
        assert!(
            children.iter().all(|child| child.started >= parent_done),
            "{extra:?}: a child request went out before its parent finished"
        );
        let manifest = &ws.manifests("src")[0];
        assert_eq!(stream_report(manifest, "children")["rows_written"], 2 * PAGES);
        let ran_alpha = seen.iter().any(|request| request.path == "/items/alpha");
        assert_eq!(ran_alpha, extra.is_empty(), "{extra:?}");
    }
}

#[tokio::test]
async fn plan_prints_contiguous_windows_for_task_mapping() {
    let ws = Workspace::new();
    let path = ws.config(
        "version: 1
source: {name: src, base_url: 'https://api.test'}
streams:
  - {name: events, path: /e, incremental: {cursor_field: created, param: since, start: '2024-01-01T00:00:00Z', format: unix_seconds}}
  - {name: pages, path: /p, incremental: {cursor_field: id, param: after, start: '0', format: integer}}
",
    );
    let config = path.to_str().unwrap();
    let plan = |extra: &[&'static str]| {
        let mut args = vec!["plan", "--config", config, "--start", "2024-03-01T00:00:00Z"];
        args.extend_from_slice(extra);
        args
    };
    let output = common::landfall(
        &plan(&[
            "--end",
            "2024-03-03T12:00:00+00:00",
            "--step",
            "1d",
            "--stream",
            "events",
        ]),
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let windows: Value = serde_json::from_str(&common::stdout(&output)).unwrap();
    assert_eq!(
        windows,
        json!([
            {"start": "2024-03-01T00:00:00Z", "end": "2024-03-02T00:00:00Z"},
            {"start": "2024-03-02T00:00:00Z", "end": "2024-03-03T00:00:00Z"},
            {"start": "2024-03-03T00:00:00Z", "end": "2024-03-03T12:00:00Z"},
        ])
    );
    // An opaque cursor has no windows: planning for it is a usage error naming the stream.
    let output = common::landfall(&plan(&["--end", "2024-03-02T00:00:00Z", "--step", "1d"]), &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("stream `pages`"), "{}", stderr(&output));
    let output = common::landfall(
        &plan(&["--end", "2024-02-01T00:00:00Z", "--step", "1d", "--stream", "events"]),
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("must be after --start"), "{}", stderr(&output));
}

#[tokio::test]
async fn sigterm_stops_every_running_stream_and_starts_no_other() {
    let (api, base) = Api::serve(Duration::from_millis(400)).await;
    let ws = Workspace::new();
    let streams: String = ["alpha", "bravo", "charlie", "delta"]
        .iter()
        .map(|name| item_stream(name))
        .collect();
    let path = ws.config(&config(
        &base,
        "  rate_limit: {requests_per_second: null}\n  max_concurrent_streams: 2\n",
        &streams,
    ));
    let mut child = common::spawn_run(&path, &["--grace-period", "10s"]);
    let both_running = || {
        let seen = api.seen();
        ["/items/alpha", "/items/bravo"]
            .iter()
            .all(|path| seen.iter().any(|request| request.path == *path))
    };
    assert!(common::wait_until(Duration::from_secs(20), both_running).await);
    common::signal(&child, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert_eq!(status.code(), Some(75));
    let manifest = &ws.manifests("src")[0];
    assert_eq!(manifest["status"], "cancelled");
    for name in ["alpha", "bravo", "charlie", "delta"] {
        let report = stream_report(manifest, name);
        assert_eq!(report["status"], "cancelled", "{name}: {report:#}");
    }
    for name in ["charlie", "delta"] {
        let message = stream_report(manifest, name)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with("not started"), "{name}: {message}");
    }
    let seen = api.seen();
    assert!(
        seen.iter()
            .all(|request| !request.path.ends_with("charlie") && !request.path.ends_with("delta")),
        "a stream started after the signal"
    );
    assert!(seen.len() < 2 * PAGES as usize, "the running streams stopped early");
}
