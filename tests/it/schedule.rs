//! Typed cursors and scheduled runs against a vendor-like loopback API whose incremental
//! filters take Unix seconds (Stripe's `created[gte]`, Zendesk's `start_time`) and whose data
//! grows with a clock the test moves: bounds reach the API in the stream's format, and
//! scheduled runs, pauses, failures and backfills never leave a hole behind the checkpoint.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Workspace, events, landfall, run, stderr};
use serde_json::{Value, json};

/// 2024-03-01T00:00:00Z.
const MARCH_1: i64 = 1_709_251_200;
const DAY: i64 = 86_400;
/// One record every ten minutes.
const EVERY: i64 = 600;

/// A vendor API: a record every ten minutes from March 1st up to its clock.
#[derive(Clone, Default)]
struct Vendor {
    /// The API's "now": records created at or after it do not exist yet.
    clock: Arc<AtomicI64>,
    /// Answer 500 to every request (an outage).
    down: Arc<AtomicBool>,
    /// Every request's query, in order.
    requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

/// A refused request: its status and JSON error body.
type Refusal = (StatusCode, axum::Json<Value>);

fn integer(query: &HashMap<String, String>, name: &str) -> Result<Option<i64>, Refusal> {
    match query.get(name) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            let body = json!({"error": {"message": format!("invalid integer for {name}: {text}")}});
            (StatusCode::BAD_REQUEST, axum::Json(body))
        }),
    }
}

impl Vendor {
    fn at(clock: i64) -> Self {
        let vendor = Vendor::default();
        vendor.clock.store(clock, Ordering::SeqCst);
        vendor
    }

    /// Records created in `[from, to)` that exist by the clock.
    fn created(&self, from: i64, to: Option<i64>) -> Vec<i64> {
        let now = self.clock.load(Ordering::SeqCst);
        let from = from.max(MARCH_1);
        let first = (from + EVERY - 1) / EVERY * EVERY;
        (first..now.min(to.unwrap_or(i64::MAX)))
            .step_by(EVERY as usize)
            .collect()
    }

    fn answer(&self, query: &HashMap<String, String>, lower: &str, upper: Option<&str>) -> Result<Vec<i64>, Refusal> {
        self.requests.lock().unwrap().push(query.clone());
        if self.down.load(Ordering::SeqCst) {
            return Err((StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "down"}))));
        }
        let from = integer(query, lower)?.unwrap_or(0);
        let to = match upper {
            Some(upper) => integer(query, upper)?,
            None => None,
        };
        Ok(self.created(from, to))
    }

    async fn serve(&self) -> String {
        async fn charges(State(vendor): State<Vendor>, Query(query): Query<HashMap<String, String>>) -> Response {
            match vendor.answer(&query, "created[gte]", Some("created[lt]")) {
                Ok(created) => {
                    // Stripe lists newest first.
                    let data: Vec<Value> = created
                        .iter()
                        .rev()
                        .map(|at| json!({"id": format!("ch_{at}"), "created": at}))
                        .collect();
                    axum::Json(json!({"data": data, "has_more": false})).into_response()
                }
                Err(refusal) => refusal.into_response(),
            }
        }
        async fn tickets(State(vendor): State<Vendor>, Query(query): Query<HashMap<String, String>>) -> Response {
            match vendor.answer(&query, "start_time", None) {
                Ok(created) => {
                    let tickets: Vec<Value> = created
                        .iter()
                        .map(|at| {
                            let updated = chrono::DateTime::from_timestamp(*at, 0).unwrap().to_rfc3339();
                            json!({"id": at, "generated_timestamp": at, "updated_at": updated})
                        })
                        .collect();
                    axum::Json(json!({"tickets": tickets})).into_response()
                }
                Err(refusal) => refusal.into_response(),
            }
        }
        let app = Router::new()
            .route("/v1/charges", get(charges))
            .route("/api/v2/incremental/tickets.json", get(tickets))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}")
    }

    /// `(lower, upper)` of every request, as the API received them.
    fn windows(&self, lower: &str, upper: &str) -> Vec<(Option<String>, Option<String>)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|q| (q.get(lower).cloned(), q.get(upper).cloned()))
            .collect()
    }

    fn forget_requests(&self) {
        self.requests.lock().unwrap().clear();
    }
}

/// A Stripe-like `charges` stream; `incremental` holds extra keys of `incremental`.
fn charges_config(base: &str, incremental: &str) -> String {
    format!(
        "version: 1
source:
  name: vendor
  base_url: {base}
  retry: {{max_attempts: 2, initial_delay: 10ms, max_delay: 20ms}}
streams:
  - name: charges
    path: /v1/charges
    records_path: /data
    primary_key: [id]
    incremental: {{cursor_field: created, param: 'created[gte]', start: '{MARCH_1}', sorted: false{incremental}}}
landing:
  url: {{landing}}
"
    )
}

fn rfc3339(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn checkpoint(ws: &Workspace) -> Option<String> {
    ws.state("vendor", "charges")
        .and_then(|state| state["cursor"].as_str().map(str::to_owned))
}

/// The ids landed for `charges`, sorted and deduplicated.
fn landed(ws: &Workspace) -> Vec<i64> {
    let mut ids: Vec<i64> = ws
        .lines("vendor", "charges")
        .iter()
        .map(|line| line["_source_record_id"].as_str().unwrap()[3..].parse().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn some(pairs: &[(i64, i64)]) -> Vec<(Option<String>, Option<String>)> {
    pairs
        .iter()
        .map(|(a, b)| (Some(a.to_string()), Some(b.to_string())))
        .collect()
}

fn latest_manifest(ws: &Workspace) -> Value {
    let mut manifests = ws.manifests("vendor");
    manifests.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    manifests.pop().expect("a manifest")
}

#[tokio::test]
async fn an_rfc3339_window_reaches_a_unix_seconds_api_as_integers_in_every_step() {
    let vendor = Vendor::at(MARCH_1 + 3 * DAY);
    let base = vendor.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&charges_config(
        &base,
        ", format: unix_seconds, end_param: 'created[lt]', step: 1d, lookback: 1h",
    ));
    // The DAG passes the data interval as RFC 3339 with an offset.
    let start = rfc3339(MARCH_1);
    let end = rfc3339(MARCH_1 + DAY + DAY / 2);
    let output = run(&config, &["--start", &start, "--end", &end]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        vendor.windows("created[gte]", "created[lt]"),
        some(&[(MARCH_1, MARCH_1 + DAY), (MARCH_1 + DAY, MARCH_1 + DAY + DAY / 2)])
    );
    assert_eq!(landed(&ws).len(), (DAY + DAY / 2) as usize / EVERY as usize);
    // The checkpoint is kept in the stream's format.
    assert_eq!(
        checkpoint(&ws).as_deref(),
        Some(&*(MARCH_1 + DAY + DAY / 2).to_string())
    );

    // The next run starts from the checkpoint minus the lookback, in seconds (bounded by
    // --end: open-ended, a 1d step would slice every day up to today).
    vendor.forget_requests();
    let output = run(&config, &["--end", &rfc3339(MARCH_1 + 3 * DAY)]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lower = MARCH_1 + DAY + DAY / 2 - 3600;
    let windows = vendor.windows("created[gte]", "created[lt]");
    assert_eq!(windows.first().unwrap().0.as_deref(), Some(&*lower.to_string()));
    assert_eq!(landed(&ws).len(), 3 * DAY as usize / EVERY as usize);
    let manifest = latest_manifest(&ws);
    assert_eq!(
        common::stream_report(&manifest, "charges")["cursor_start"],
        lower.to_string()
    );
}

#[tokio::test]
async fn a_zendesk_like_start_time_gets_unix_seconds() {
    let vendor = Vendor::at(MARCH_1 + DAY);
    let base = vendor.serve().await;
    let text = format!(
        "version: 1
source: {{name: vendor, base_url: {base}}}
streams:
  - name: tickets
    path: /api/v2/incremental/tickets.json
    records_path: /tickets
    primary_key: [id]
    incremental: {{cursor_field: generated_timestamp, param: start_time, start: '2024-01-01T00:00:00Z', format: unix_seconds}}
landing:
  url: {{landing}}
"
    );
    let ws = Workspace::new();
    let output = run(&ws.config(&text), &["--start", "2024-03-01T12:00:00+00:00"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let sent = vendor.windows("start_time", "end_time");
    assert_eq!(sent, vec![(Some((MARCH_1 + DAY / 2).to_string()), None)]);
    // The configured RFC 3339 start converts too.
    vendor.forget_requests();
    let ws = Workspace::new();
    let output = run(&ws.config(&text), &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(vendor.windows("start_time", "x")[0].0.as_deref(), Some("1704067200"));
    // The checkpoint is the newest generated_timestamp landed, in Unix seconds.
    assert_eq!(
        ws.state("vendor", "tickets").unwrap()["cursor"],
        (MARCH_1 + DAY - EVERY).to_string()
    );
}

#[tokio::test]
async fn bounds_that_cannot_convert_fail_before_any_request() {
    let vendor = Vendor::at(MARCH_1 + DAY);
    let base = vendor.serve().await;
    let ws = Workspace::new();
    // Without a format, an integer start is an integer cursor: a timestamp cannot convert.
    let config = ws.config(&charges_config(&base, ""));
    let output = run(&config, &["--start", "2024-03-01T00:00:00+00:00"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("--start") && message.contains("charges"), "{message}");
    assert!(message.contains("incremental.format"), "{message}");
    assert!(vendor.requests.lock().unwrap().is_empty());
    // An integer window still works on an integer cursor.
    let output = run(&config, &["--start", &MARCH_1.to_string()]).await;
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test]
async fn a_checkpoint_of_the_wrong_type_is_refused_on_run_and_on_state_set() {
    let vendor = Vendor::at(MARCH_1 + DAY);
    let base = vendor.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&charges_config(&base, ", format: unix_seconds"));
    let config_arg = config.to_str().unwrap();
    let set = |value: &'static str| {
        let config_arg = config_arg.to_owned();
        async move {
            landfall(
                &[
                    "state",
                    "set",
                    "--config",
                    &config_arg,
                    "--stream",
                    "charges",
                    "--value",
                    value,
                ],
                &[],
            )
            .await
        }
    };
    let output = set("last tuesday").await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not a unix_seconds cursor"),
        "{}",
        stderr(&output)
    );
    assert!(checkpoint(&ws).is_none());
    // A timestamp is accepted and stored in the stream's format.
    let output = set("2024-03-01T12:00:00Z").await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(checkpoint(&ws), Some((MARCH_1 + DAY / 2).to_string()));

    // A state file edited by hand (or written for another format) never reaches the API.
    let path = ws.landing().join("vendor/_state/charges.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["cursor"] = json!("cursor-from-elsewhere");
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let output = run(&config, &[]).await;
    assert!(!output.status.success(), "{}", stderr(&output));
    let failed = events(&output)
        .into_iter()
        .find(|event| event["event"] == "stream_failed")
        .expect("stream_failed");
    assert_eq!(failed["code"], "CONFIG_ERROR");
    assert!(failed["error"].as_str().unwrap().contains("state set"), "{failed}");
    assert!(vendor.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn validate_names_the_key_that_cannot_convert() {
    let ws = Workspace::new();
    for (incremental, key, words) in [
        (
            ", format: string, start: abc, lookback: 1h",
            "incremental.lookback",
            "opaque",
        ),
        (
            ", format: string, start: abc, step: 1d, end_param: x",
            "incremental.step",
            "time cursor",
        ),
        (
            ", format: integer, step: 1d, end_param: x",
            "incremental.step",
            "time cursor",
        ),
        (
            ", format: unix_seconds, start: yesterday",
            "incremental.start",
            "not a unix_seconds cursor",
        ),
        (", format: unix_hours", "incremental.format", "unknown cursor format"),
        (", format: 'strftime:%H:%M'", "incremental.format", "read back"),
    ] {
        let text = charges_config("http://127.0.0.1:9", incremental).replace(
            &format!("start: '{MARCH_1}', "),
            if incremental.contains("start:") {
                ""
            } else {
                "start: '1709251200', "
            },
        );
        let config = ws.config(&text);
        let output = landfall(&["validate", "--config", config.to_str().unwrap()], &[]).await;
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{incremental}: {message}");
        assert!(message.contains(key), "{incremental}: {message}");
        assert!(message.contains(words), "{incremental}: {message}");
    }
    let config = ws.config(
        &charges_config(
            "http://127.0.0.1:9",
            ", format: 'strftime:%Y-%m-%d %H:%M:%S', lookback: 1h",
        )
        .replace(&format!("'{MARCH_1}'"), "'2024-03-01 00:00:00'"),
    );
    let output = landfall(&["validate", "--config", config.to_str().unwrap()], &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
}

/// The scheduled runs of one day each, `days` apart: what the DAG's default mode passes.
async fn scheduled(config: &std::path::Path, vendor: &Vendor, day: i64) -> std::process::Output {
    vendor.clock.store(MARCH_1 + day * DAY, Ordering::SeqCst);
    let interval_start = rfc3339(MARCH_1 + (day - 1) * DAY);
    let interval_end = rfc3339(MARCH_1 + day * DAY);
    run(
        config,
        &[
            "--data-interval-start",
            &interval_start,
            "--data-interval-end",
            &interval_end,
        ],
    )
    .await
}

#[tokio::test]
async fn a_paused_schedule_resumes_from_the_checkpoint_without_a_hole() {
    let vendor = Vendor::default();
    let base = vendor.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&charges_config(&base, ", format: unix_seconds, lookback: 1h"));
    let output = scheduled(&config, &vendor, 1).await;
    assert!(output.status.success(), "{}", stderr(&output));
    // Paused for four days with catchup off: the next run's interval is day 6 alone.
    vendor.forget_requests();
    let output = scheduled(&config, &vendor, 6).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let last_of_day_1 = MARCH_1 + DAY - EVERY;
    assert_eq!(
        vendor.windows("created[gte]", "created[lt]"),
        vec![(Some((last_of_day_1 - 3600).to_string()), None)]
    );
    assert_eq!(landed(&ws).len(), 6 * DAY as usize / EVERY as usize);
    // The data interval is in the manifest, for audit only.
    let manifest = latest_manifest(&ws);
    assert_eq!(
        manifest["data_interval"],
        json!({"start": rfc3339(MARCH_1 + 5 * DAY), "end": rfc3339(MARCH_1 + 6 * DAY)})
    );
}

#[tokio::test]
async fn a_failed_interval_followed_by_a_success_leaves_no_hole() {
    let vendor = Vendor::default();
    let base = vendor.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&charges_config(&base, ", format: unix_seconds"));
    assert!(scheduled(&config, &vendor, 1).await.status.success());
    let after_day_1 = checkpoint(&ws);
    vendor.down.store(true, Ordering::SeqCst);
    let output = scheduled(&config, &vendor, 2).await;
    assert!(!output.status.success());
    assert_eq!(checkpoint(&ws), after_day_1);
    vendor.down.store(false, Ordering::SeqCst);
    let output = scheduled(&config, &vendor, 3).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(landed(&ws), vendor.created(0, None));
}

#[tokio::test]
async fn a_window_after_the_checkpoint_lands_but_never_moves_it_past_the_gap() {
    let vendor = Vendor::at(MARCH_1 + 10 * DAY);
    let base = vendor.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&charges_config(
        &base,
        ", format: unix_seconds, end_param: 'created[lt]', lookback: 1h",
    ));
    let window = |from: i64, to: i64| [rfc3339(MARCH_1 + from * DAY), rfc3339(MARCH_1 + to * DAY)];
    let run_window = |from: i64, to: i64, extra: &'static [&'static str]| {
        let [start, end] = window(from, to);
        let config = config.clone();
        async move {
            let mut args = vec!["--start", &start, "--end", &end];
            args.extend_from_slice(extra);
            run(&config, &args).await
        }
    };
    // Day 1 is read and checkpointed.
    assert!(run_window(0, 1, &[]).await.status.success());
    assert_eq!(checkpoint(&ws), Some((MARCH_1 + DAY).to_string()));

    // Interval mode after a failed day 2: day 3's window (minus the lookback) starts after the
    // checkpoint. It lands, but the checkpoint stays: day 2 was never read.
    vendor.forget_requests();
    let output = run_window(2, 3, &["--start-lookback"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        vendor.windows("created[gte]", "created[lt]"),
        some(&[(MARCH_1 + 2 * DAY - 3600, MARCH_1 + 3 * DAY)])
    );
    assert_eq!(checkpoint(&ws), Some((MARCH_1 + DAY).to_string()));
    // It waits in the state as a completed range.
    assert_eq!(
        ws.state("vendor", "charges").unwrap()["completed"],
        serde_json::json!([{"start": (MARCH_1 + 2 * DAY - 3600).to_string(), "end": (MARCH_1 + 3 * DAY).to_string()}])
    );
    let held = events(&output)
        .into_iter()
        .find(|event| event["event"] == "checkpoint_held")
        .expect("checkpoint_held");
    assert_eq!(held["checkpoint"], (MARCH_1 + DAY).to_string());
    let report = latest_manifest(&ws);
    assert_eq!(
        common::stream_report(&report, "charges")["cursor_end"],
        (MARCH_1 + DAY).to_string()
    );

    // A backfill of a past window moves nothing backwards.
    assert!(run_window(0, 1, &[]).await.status.success());
    assert_eq!(checkpoint(&ws), Some((MARCH_1 + DAY).to_string()));

    // A backfill that starts at the checkpoint joins it and moves it to its end, and on over
    // the completed range of day 3 that the gap held back.
    assert!(run_window(1, 2, &[]).await.status.success());
    assert_eq!(checkpoint(&ws), Some((MARCH_1 + 3 * DAY).to_string()));
    assert!(ws.state("vendor", "charges").unwrap().get("completed").is_none());

    // The next scheduled run reads on from there: every record of the ten days lands.
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(landed(&ws), vendor.created(0, None));
}

#[tokio::test]
async fn a_window_on_a_stream_without_a_checkpoint_must_start_at_its_configured_start() {
    let vendor = Vendor::at(MARCH_1 + 3 * DAY);
    let base = vendor.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&charges_config(
        &base,
        ", format: unix_seconds, end_param: 'created[lt]'",
    ));
    let [start, end] = [rfc3339(MARCH_1 + DAY), rfc3339(MARCH_1 + 2 * DAY)];
    let output = run(&config, &["--start", &start, "--end", &end]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    // Day 1 (from incremental.start) is unread: no checkpoint yet.
    assert_eq!(checkpoint(&ws), None);
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(landed(&ws), vendor.created(0, None));
}
