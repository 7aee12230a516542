//! Mapped backfills (issue 16 item 3): windows of one stream run as separate processes at
//! once. Each leases only its window, so they run side by side (and beside the run that
//! follows the checkpoint); their checkpoint writes race through compare-and-swap, and the
//! checkpoint ends exactly where the stored data is contiguous. `--rate-share N` gives each
//! of N processes 1/N of the source's rate budget.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use common::servers::{most_in_flight, most_started_within};
use common::{Workspace, spawn_run, stderr};
use serde_json::{Value, json};

/// 2024-03-01T00:00:00Z.
const MARCH_1: i64 = 1_709_251_200;
const DAY: i64 = 86_400;
/// One record an hour.
const EVERY: i64 = 3_600;
/// The API's data ends here (seven days).
const DAYS: i64 = 7;

/// One request as the API saw it.
#[derive(Clone, Debug)]
struct Seen {
    since: i64,
    started: Instant,
    finished: Instant,
}

/// An API with a record every hour for seven days from March 1st (`updated` in Unix
/// seconds), filtered by `since` / `until` and paged `per_page` at a time (cursor
/// pagination). Every answer waits `delay`; the log keeps when each request started and
/// finished.
#[derive(Clone)]
struct Api {
    delay: Duration,
    per_page: usize,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Api {
    async fn serve(delay: Duration, per_page: usize) -> (Self, String) {
        let api = Api {
            delay,
            per_page,
            log: Arc::default(),
        };
        let app = Router::new().route("/events", get(page)).with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (api, format!("http://{address}"))
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

fn number(query: &HashMap<String, String>, name: &str) -> Option<i64> {
    query.get(name).and_then(|value| value.parse().ok())
}

async fn page(State(api): State<Api>, Query(query): Query<HashMap<String, String>>) -> axum::Json<Value> {
    let started = Instant::now();
    tokio::time::sleep(api.delay).await;
    let since = number(&query, "since").unwrap_or(MARCH_1);
    let until = number(&query, "until").unwrap_or(i64::MAX);
    let offset = number(&query, "cursor").unwrap_or(0) as usize;
    let matching: Vec<i64> = (0..DAYS * DAY / EVERY)
        .map(|hour| MARCH_1 + hour * EVERY)
        .filter(|updated| (since..until).contains(updated))
        .collect();
    let data: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(api.per_page)
        .map(|updated| json!({"id": updated, "updated": updated}))
        .collect();
    let next = (offset + api.per_page < matching.len()).then(|| (offset + api.per_page).to_string());
    api.log.lock().unwrap().push(Seen {
        since,
        started,
        finished: Instant::now(),
    });
    axum::Json(json!({"data": data, "next": next}))
}

fn config(base: &str, rate_limit: &str) -> String {
    format!(
        "version: 1
source:
  name: src
  base_url: {base}
  retry: {{max_attempts: 3, initial_delay: 10ms, max_delay: 50ms}}
  rate_limit: {rate_limit}
streams:
  - name: events
    path: /events
    records_path: /data
    primary_key: [id]
    pagination: {{type: cursor, cursor_path: /next, cursor_param: cursor}}
    incremental: {{cursor_field: updated, param: since, end_param: until, format: unix_seconds, sorted: false, lookback: 0s, start: '2024-03-01T00:00:00Z'}}
landing:
  url: '{{landing}}'
"
    )
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `run --start --end` over days `[from, to)`, started at once.
fn spawn_window(config: &std::path::Path, from: i64, to: i64, extra: &[&str]) -> tokio::process::Child {
    let (start, end) = (rfc3339(MARCH_1 + from * DAY), rfc3339(MARCH_1 + to * DAY));
    let mut args = vec!["--start", &start, "--end", &end];
    args.extend_from_slice(extra);
    spawn_run(config, &args)
}

async fn finish(child: tokio::process::Child) -> std::process::Output {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the run finishes")
        .unwrap();
    common::keep_log(&["run"], &output);
    output
}

impl common::servers::Timed for Seen {
    fn started(&self) -> Instant {
        self.started
    }

    fn finished(&self) -> Instant {
        self.finished
    }
}

/// The ids landed for `events`, sorted and deduplicated.
fn landed(ws: &Workspace) -> Vec<i64> {
    let mut ids: Vec<i64> = ws
        .lines("src", "events")
        .iter()
        .map(|line| {
            let id = &line["_source_record_id"];
            id.as_str()
                .and_then(|id| id.parse().ok())
                .or(id.as_i64())
                .expect("record id")
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn hours(from_day: i64, to_day: i64) -> Vec<i64> {
    (from_day * DAY / EVERY..to_day * DAY / EVERY)
        .map(|hour| MARCH_1 + hour * EVERY)
        .collect()
}

fn checkpoint(ws: &Workspace) -> Option<String> {
    ws.state("src", "events")
        .and_then(|state| state["cursor"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn windows_of_one_stream_run_side_by_side_and_the_checkpoint_stops_at_the_gap() {
    let (api, base) = Api::serve(Duration::from_millis(200), 4).await;
    let ws = Workspace::new();
    let path = ws.config(&config(&base, "{requests_per_second: null}"));
    // Days 0 to 6 as mapped windows, day 2 left out: all at once.
    let days: Vec<i64> = (0..6).filter(|day| *day != 2).collect();
    let children: Vec<_> = days.iter().map(|day| spawn_window(&path, *day, day + 1, &[])).collect();
    // Watch the checkpoint while they race: it may only move forward.
    let watched = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = {
        let (watched, stop, state) = (
            watched.clone(),
            stop.clone(),
            ws.landing().join("src/_state/events.json"),
        );
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Some(cursor) = std::fs::read(&state)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                    .and_then(|state| state["cursor"].as_str().and_then(|cursor| cursor.parse().ok()))
                {
                    watched.lock().unwrap().push(cursor);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut outputs = Vec::new();
    for child in children {
        outputs.push(finish(child).await);
    }
    stop.cancel();
    watcher.await.unwrap();
    for (day, output) in days.iter().zip(&outputs) {
        assert_eq!(output.status.code(), Some(0), "day {day}: {}", stderr(output));
    }
    // They ran side by side: requests of several windows were in flight at once (one after
    // another, each window paging alone, this is 1).
    let in_flight = most_in_flight(&api.seen());
    assert!(in_flight >= 3, "{in_flight} requests in flight at most");

    let seen = watched.lock().unwrap().clone();
    assert!(
        seen.windows(2).all(|pair| pair[0] <= pair[1]),
        "the checkpoint moved backwards: {seen:?}"
    );
    // Days 0 and 1 are contiguous from incremental.start; days 3 to 5 wait behind the gap.
    assert_eq!(checkpoint(&ws), Some((MARCH_1 + 2 * DAY).to_string()));
    assert_eq!(
        ws.state("src", "events").unwrap()["completed"],
        json!([{"start": (MARCH_1 + 3 * DAY).to_string(), "end": (MARCH_1 + 6 * DAY).to_string()}])
    );
    assert_eq!(landed(&ws), [hours(0, 2), hours(3, 6)].concat());

    // The gap filled, the checkpoint moves over everything stored after it.
    let output = finish(spawn_window(&path, 2, 3, &[])).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(checkpoint(&ws), Some((MARCH_1 + 6 * DAY).to_string()));
    assert!(ws.state("src", "events").unwrap().get("completed").is_none());
    assert_eq!(landed(&ws), hours(0, 6));
    // The run that follows the checkpoint reads on from there only.
    api.log.lock().unwrap().clear();
    let output = finish(spawn_run(&path, &[])).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(api.seen().iter().all(|request| request.since == MARCH_1 + 6 * DAY));
    assert_eq!(landed(&ws), hours(0, DAYS));
}

#[tokio::test]
async fn one_window_runs_once_at_a_time_beside_other_windows_and_the_scheduled_run() {
    let (_api, base) = Api::serve(Duration::from_millis(300), 4).await;
    let ws = Workspace::new();
    let path = ws.config(&config(&base, "{requests_per_second: null}"));
    let first = spawn_window(&path, 1, 2, &[]);
    // Wait until the first run holds its window's lease.
    let state_dir = ws.landing().join("src/_state");
    assert!(
        common::wait_until(Duration::from_secs(20), || common::files_under(&state_dir)
            .iter()
            .any(|path| path.to_string_lossy().contains(".window-")))
        .await
    );
    // The same window, its bounds written another way: refused while the first one runs.
    let (start, end) = (
        chrono::DateTime::from_timestamp(MARCH_1 + DAY, 0).unwrap().to_rfc3339(),
        chrono::DateTime::from_timestamp(MARCH_1 + 2 * DAY, 0)
            .unwrap()
            .to_rfc3339(),
    );
    let second = finish(spawn_run(&path, &["--start", &start, "--end", &end])).await;
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    let message = stderr(&second);
    assert!(message.contains("LEASE_HELD"), "{message}");
    assert!(message.contains("of stream `events`"), "{message}");
    // Another window and the run that follows the checkpoint go ahead meanwhile.
    let other = spawn_window(&path, 0, 1, &[]);
    let scheduled = spawn_run(&path, &[]);
    let (other, scheduled, first) = (finish(other).await, finish(scheduled).await, finish(first).await);
    for (name, output) in [("other window", &other), ("scheduled", &scheduled), ("first", &first)] {
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(output));
    }
    assert_eq!(landed(&ws), hours(0, DAYS));
    // Every lease is released.
    assert!(
        !common::files_under(&state_dir)
            .iter()
            .any(|path| path.extension().is_some_and(|ext| ext == "lock")),
        "{:?}",
        common::files_under(&state_dir)
    );
}

#[tokio::test]
async fn rate_shares_keep_parallel_processes_under_the_configured_rate() {
    let (api, base) = Api::serve(Duration::ZERO, 3).await;
    let ws = Workspace::new();
    // 20 requests a second for the source. Four windows of 8 pages each (a day of 24 hourly
    // records, 3 a page) at once, each with a quarter: 5 a second each.
    let path = ws.config(&config(&base, "{requests_per_second: 20, burst: 4, concurrency: 4}"));
    let started = Instant::now();
    let children: Vec<_> = (0..4)
        .map(|day| spawn_window(&path, day, day + 1, &["--rate-share", "4"]))
        .collect();
    for child in children {
        let output = finish(child).await;
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 4 * 8, "{seen:#?}");
    // The configured budget: 20 in any second after a burst of 4 (each process starts with
    // one token of its share's burst of 1). Whole budgets each would let about 4 x 20 start
    // in the first second.
    for (window, limit) in [(Duration::from_secs(1), 24), (Duration::from_millis(1500), 34)] {
        let most = most_started_within(&seen, window);
        assert!(
            most <= limit,
            "{most} requests started within {window:?}; the source allows {limit}"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );

    // N must be a whole number from 1: anything else is a usage error naming the flag.
    for bad in ["0", "-1", "two", "1001"] {
        let output = common::run(&path, &[&format!("--rate-share={bad}")]).await;
        assert_eq!(output.status.code(), Some(2), "{bad}: {}", stderr(&output));
        assert!(stderr(&output).contains("--rate-share"), "{bad}: {}", stderr(&output));
    }
}
