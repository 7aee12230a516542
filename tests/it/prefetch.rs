//! Offset and page-number streams with `rate_limit.concurrency` > 1 fetch pages ahead, at
//! most N at a time, and land them strictly in page order; speculative pages past the end
//! or past `max_pages` never change what lands.

use crate::common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Workspace, run};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// What the source saw.
#[derive(Default)]
struct Seen {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// `offset` of every request, in arrival order.
    offsets: Mutex<Vec<u64>>,
}

/// Counts a request in flight until it is answered or the client hangs up.
struct InFlight(Arc<Seen>);

impl InFlight {
    fn enter(seen: &Arc<Seen>) -> Self {
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(seen.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An offset-paginated API of `total` records on 127.0.0.1. Page `k` (from 0) answers after
/// `delay(k)`; requests past the last record answer `past_end` (200 with no records, or an
/// error status).
struct OffsetApi {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OffsetApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OffsetApi {
    async fn start(total: u64, past_end: u16, delay: fn(u64) -> Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let query: HashMap<String, String> =
                                url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
                                    .into_owned()
                                    .collect();
                            let number = |name: &str| query.get(name).and_then(|v| v.parse::<u64>().ok());
                            let offset = number("offset").unwrap_or(0);
                            let limit = number("limit").unwrap_or(100);
                            seen.offsets.lock().unwrap().push(offset);
                            let _in_flight = InFlight::enter(&seen);
                            tokio::time::sleep(delay(offset / limit)).await;
                            let (status, body) = if offset >= total && past_end != 200 {
                                (past_end, json!({"error": "no such page"}))
                            } else {
                                let records: Vec<Value> = (offset..(offset + limit).min(total))
                                    .map(|index| json!({"id": index + 1, "v": format!("r{}", index + 1)}))
                                    .collect();
                                (200, json!({"data": records}))
                            };
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn max_in_flight(&self) -> usize {
        self.seen.max_in_flight.load(Ordering::SeqCst)
    }

    fn offsets(&self) -> Vec<u64> {
        self.seen.offsets.lock().unwrap().clone()
    }
}

fn config(
    ws: &Workspace,
    base_url: &str,
    concurrency: u32,
    pagination_extra: &str,
    source_extra: &str,
) -> std::path::PathBuf {
    ws.config(&format!(
        "version: 1\nsource:\n  name: shop\n  base_url: {base_url}\n  rate_limit: {{requests_per_second: null, concurrency: {concurrency}}}\n{source_extra}streams:\n  - {{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {{type: offset, limit: 5{pagination_extra}}}}}\nlanding:\n  url: '{{landing}}'\n  part_max_records: 7\n"
    ))
}

/// Later pages of each window answer first, so arrival order differs from page order.
fn reversed_delays(page: u64) -> Duration {
    Duration::from_millis(40 + 30 * (3 - page % 4))
}

/// `(_page, id)` of every landed line, in file and line order.
fn landed(ws: &Workspace) -> Vec<(u64, u64)> {
    ws.lines("shop", "items")
        .iter()
        .map(|line| {
            let raw: Value = serde_json::from_str(line["_raw"].as_str().unwrap()).unwrap();
            (line["_page"].as_u64().unwrap(), raw["id"].as_u64().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn concurrent_pages_overlap_and_land_in_page_order() {
    let api = OffsetApi::start(40, 200, reversed_delays).await;
    let ws = Workspace::new();
    let started = Instant::now();
    let output = run(&config(&ws, &api.uri(), 4, "", ""), &[]).await;
    let parallel = started.elapsed();
    assert!(output.status.success(), "{}", common::stderr(&output));
    let expected: Vec<(u64, u64)> = (1..=40).map(|id| ((id - 1) / 5 + 1, id)).collect();
    assert_eq!(landed(&ws), expected, "records land in page order, pages whole");
    let max_in_flight = api.max_in_flight();
    assert!(
        (2..=4).contains(&max_in_flight),
        "requests overlap, never more than the concurrency: {max_in_flight}"
    );
    let stream = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(stream["status"], "succeeded");
    assert_eq!(stream["rows_written"], 40);
    assert_eq!(
        stream["pages"], 9,
        "eight full pages and the empty one that ends the stream"
    );
    let requests = stream["requests"].as_u64().unwrap();
    assert!(
        (9..=12).contains(&requests),
        "speculative requests are counted: {requests}"
    );

    // The same stream one page at a time lands the same records, and takes longer.
    let sequential_api = OffsetApi::start(40, 200, reversed_delays).await;
    let sequential = Workspace::new();
    let started = Instant::now();
    let output = run(&config(&sequential, &sequential_api.uri(), 1, "", ""), &[]).await;
    let one_at_a_time = started.elapsed();
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(sequential_api.max_in_flight(), 1);
    assert_eq!(
        sequential_api.offsets(),
        (0..=40).step_by(5).collect::<Vec<u64>>(),
        "no request ahead"
    );
    assert_eq!(landed(&sequential), expected);
    let raws = |ws: &Workspace| -> Vec<String> {
        ws.lines("shop", "items")
            .iter()
            .map(|line| line["_raw"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(raws(&ws), raws(&sequential));
    // Nine pages of 40 to 130 ms: about 0.8 s one at a time, far less four at a time.
    assert!(
        parallel < one_at_a_time,
        "concurrency 4 took {parallel:?}, concurrency 1 {one_at_a_time:?}"
    );
}

#[tokio::test]
async fn failing_pages_past_the_end_are_discarded() {
    // 12 records: pages of 5, 5 and 2. Offsets 15 and on answer 500 and would be retried
    // for a long time; the short page ends the stream without waiting for them.
    let api = OffsetApi::start(12, 500, |_| Duration::from_millis(20)).await;
    let ws = Workspace::new();
    let started = Instant::now();
    let output = run(
        &config(
            &ws,
            &api.uri(),
            4,
            "",
            "  retry: {max_attempts: 5, initial_delay: 5s, max_delay: 5s}\n",
        ),
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let expected: Vec<(u64, u64)> = (1..=12).map(|id| ((id - 1) / 5 + 1, id)).collect();
    assert_eq!(landed(&ws), expected);
    let stream = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(stream["status"], "succeeded");
    assert_eq!(stream["pages"], 3);
    assert_eq!(stream["rows_written"], 12);
    assert!(
        api.offsets().iter().any(|offset| *offset >= 15),
        "pages were fetched ahead: {:?}",
        api.offsets()
    );
}

#[tokio::test]
async fn nothing_is_fetched_past_max_pages() {
    let api = OffsetApi::start(100, 200, |_| Duration::from_millis(10)).await;
    let ws = Workspace::new();
    let output = run(&config(&ws, &api.uri(), 8, ", max_pages: 3", ""), &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", common::stderr(&output));
    let stream = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(stream["error"]["code"], "PAGINATION_ERROR");
    assert!(
        stream["error"]["message"].as_str().unwrap().contains("max_pages (3)"),
        "{stream}"
    );
    assert_eq!(stream["rows_written"], 15, "what was read is landed");
    let mut offsets = api.offsets();
    offsets.sort_unstable();
    assert_eq!(offsets, [0, 5, 10]);
}
