//! Incremental sync: lookback re-reads, windows and backfills, client-side filtering,
//! unsorted streams, parent-child streams, graceful stop and the single-writer lease.

use crate::common;

use std::time::{Duration, Instant};

use common::api::{Source, records, records_config};
use common::{Workspace, events, run, stderr};
use serde_json::{Value, json};

fn stream_report(ws: &Workspace, source: &str, run_index: usize, stream: &str) -> Value {
    let mut manifests = ws.manifests(source);
    manifests.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    common::stream_report(&manifests[run_index], stream).clone()
}

#[tokio::test]
async fn lookback_rereads_and_lands_only_changed_records() {
    let source = Source::new(records(600));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, ", lookback: 10m", ""));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let checkpoint = ws.state("src", "records").unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(checkpoint, "2024-01-01T03:20:00Z");

    // The next run asks from ten minutes before the checkpoint and finds nothing new.
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        source.seen_params("updated_since").last().unwrap().as_deref(),
        Some("2024-01-01T03:10:00Z")
    );
    let second = stream_report(&ws, "src", 1, "records");
    // Records 570..=600 have updated_at within [03:10, 03:20].
    assert_eq!(second["rows_read"], 31);
    assert_eq!(second["duplicate_rows"], 31);
    assert_eq!(second["rows_written"], 0);

    // A record changed inside the lookback window (same cursor, new payload) lands again.
    source.records.lock().unwrap()[594].version = 2;
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let third = stream_report(&ws, "src", 2, "records");
    assert_eq!(third["duplicate_rows"], 30);
    assert_eq!(third["rows_written"], 1);
    let landed: Vec<Value> = ws
        .lines("src", "records")
        .into_iter()
        .filter(|l| l["_run_id"] == third_run_id(&ws))
        .collect();
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0]["_source_record_id"], "595");
}

fn third_run_id(ws: &Workspace) -> Value {
    let mut manifests = ws.manifests("src");
    manifests.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    manifests[2]["run_id"].clone()
}

#[tokio::test]
async fn backfill_windows_with_step_are_each_checkpointed() {
    let source = Source::new(records(3 * 60 * 24 * 3));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, ", end_param: updated_until, step: 1d", ""));
    let output = run(
        &config,
        &[
            "--start",
            "2024-01-01T00:00:00Z",
            "--end",
            "2024-01-03T12:00:00Z",
            "--stream",
            "records",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let windows: Vec<(Option<String>, Option<String>)> = source
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|q| !q.contains_key("cursor"))
        .map(|q| (q.get("updated_since").cloned(), q.get("updated_until").cloned()))
        .collect();
    let expected = [
        ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
        ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"),
        ("2024-01-03T00:00:00Z", "2024-01-03T12:00:00Z"),
    ];
    assert_eq!(
        windows,
        expected.map(|(a, b)| (Some(a.to_owned()), Some(b.to_owned()))).to_vec()
    );
    // Each window moved the checkpoint to its end once its records were stored.
    let checkpoints: Vec<String> = events(&output)
        .into_iter()
        .filter(|e| e["event"] == "checkpoint_committed")
        .map(|e| e["cursor"].as_str().unwrap().to_owned())
        .collect();
    for (_, end) in expected {
        assert!(checkpoints.contains(&end.to_owned()), "{checkpoints:?}");
    }
    assert_eq!(ws.state("src", "records").unwrap()["cursor"], "2024-01-03T12:00:00Z");
    let report = stream_report(&ws, "src", 0, "records");
    // Three records a minute from 2024-01-01T00:00 to 2024-01-03T12:00 (id 1 and 2 at 00:00).
    assert_eq!(report["rows_written"], 3 * 60 * 60 - 1);
}

#[tokio::test]
async fn client_side_filter_drops_records_outside_the_window() {
    let source = Source::new(records(900));
    let base = source.serve().await;
    let ws = Workspace::new();
    // The API is told nothing of the upper bound (no end_param): Landfall filters.
    let config = ws.config(&records_config(&base, ", client_side_filter: true", ""));
    let output = run(
        &config,
        &["--start", "2024-01-01T01:00:00Z", "--end", "2024-01-01T02:00:00Z"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = ws.lines("src", "records");
    assert_eq!(lines.len(), 180);
    for line in &lines {
        let at = line["_source_updated_at"].as_str().unwrap();
        assert!(("2024-01-01T01:00:00Z".."2024-01-01T02:00:00Z").contains(&at), "{at}");
    }
    let report = stream_report(&ws, "src", 0, "records");
    assert_eq!(report["filtered_rows"], report["rows_read"].as_u64().unwrap() - 180);
}

#[tokio::test]
async fn an_unsorted_stream_killed_mid_window_rereads_the_whole_window() {
    let source = Source::new(records(2000));
    *source.unsorted.lock().unwrap() = true;
    source.set_latency(Duration::from_millis(40));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, ", sorted: false", ""));
    let mut child = common::spawn_run(&config, &["--lease-ttl", "1s"]);
    let parts_dir = ws.landing().join("src/records");
    assert!(common::wait_until(Duration::from_secs(20), || common::files_under(&parts_dir).len() >= 2).await);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    // The killed run's lease expires by itself.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Parts were stored, but an unsorted stream moves its checkpoint only when the window
    // completes: nothing was committed.
    assert!(ws.state("src", "records").is_none());

    source.set_latency(Duration::ZERO);
    let before = source.requests.lock().unwrap().len();
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let resumed = &source.requests.lock().unwrap()[before];
    assert_eq!(
        resumed.get("updated_since").map(String::as_str),
        Some("2024-01-01T00:00:00Z")
    );
    assert_eq!(ws.state("src", "records").unwrap()["cursor"], "2024-01-01T11:06:00Z");
}

#[tokio::test]
async fn parent_child_with_a_failing_child() {
    let source = Source::new(records(3));
    source.failing_parents.lock().unwrap().insert(2, 404);
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "version: 1
source: {{name: src, base_url: '{base}', retry: {{max_attempts: 2, initial_delay: 10ms}}}}
streams:
  - name: lines
    path: /orders/{{parent.id}}/lines
    records_path: /data
    primary_key: [line_id]
    parent: {{stream: orders, fields: [id]}}
  - name: orders
    path: /records
    records_path: /data
    primary_key: [id]
    pagination: {{type: cursor, cursor_path: /next, cursor_param: cursor}}
landing: {{url: '{{landing}}'}}
"
    ));
    // Selecting only the child brings its parent along, run first.
    let output = run(&config, &["--stream", "lines"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let manifest = &ws.manifests("src")[0];
    let names: Vec<&str> = manifest["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "lines"]);
    assert_eq!(manifest["streams"][0]["status"], "succeeded");
    assert_eq!(manifest["streams"][1]["status"], "failed");
    assert_eq!(manifest["streams"][1]["error"]["code"], "INVALID_REQUEST");
    let lines = ws.lines("src", "lines");
    // Order 1's lines landed with their parent key; order 2 failed the stream before order 3.
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["_parent_key"], "1");
        assert!(
            line["_source_endpoint"]
                .as_str()
                .unwrap()
                .starts_with("GET /orders/1/lines")
        );
    }
    assert_eq!(ws.lines("src", "orders").len(), 3);
}

/// A parent's checkpoint waits for its children (found by the simulated month of issue
/// 16): committed before them, a child that failed (or a killed run) left the parent's
/// checkpoint past parents whose children were never fetched, and no later run read those
/// parents again, so their children were lost for good. Held, the next run reads them
/// again and the child gets every parent.
#[tokio::test]
async fn a_parents_checkpoint_waits_until_its_children_succeed() {
    let source = Source::new(records(12));
    source.failing_parents.lock().unwrap().insert(7, 503);
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(
        &records_config(&base, "", "")
            .replace("retry: {max_attempts: 5,", "retry: {max_attempts: 2,")
            .replace(
                "landing:\n",
                "  - name: lines\n    path: /orders/{parent.id}/lines\n    records_path: /data\n    primary_key: [line_id]\n    parent: {stream: records, fields: [id]}\nlanding:\n",
            ),
    );
    let first = run(&config, &[]).await;
    assert_eq!(first.status.code(), Some(75), "{}", stderr(&first));
    let manifest = &ws.manifests("src")[0];
    assert_eq!(manifest["streams"][0]["status"], "succeeded");
    assert_eq!(manifest["streams"][1]["status"], "failed");
    assert!(
        ws.state("src", "records").is_none_or(|state| state["cursor"].is_null()),
        "the parent's checkpoint moved although a child failed: {:?}",
        ws.state("src", "records")
    );
    assert_eq!(manifest["streams"][0]["cursor_end"], Value::Null, "{manifest}");
    let held = events(&first)
        .into_iter()
        .find(|event| event["event"] == "parent_checkpoint_held")
        .unwrap_or_else(|| panic!("no parent_checkpoint_held event: {}", stderr(&first)));
    assert_eq!((&held["stream"], &held["child"]), (&json!("records"), &json!("lines")));

    // The vendor recovers: the next run reads every parent again, so order 7 and those
    // after it get their lines, and only then does the parent's checkpoint move.
    source.failing_parents.lock().unwrap().clear();
    let second = run(&config, &[]).await;
    assert!(second.status.success(), "{}", stderr(&second));
    let mut orders: Vec<u64> = ws
        .lines("src", "lines")
        .iter()
        .map(|line| line["_parent_key"].as_str().unwrap().parse().unwrap())
        .collect();
    orders.sort();
    orders.dedup();
    assert_eq!(orders, (1..=12).collect::<Vec<u64>>());
    let state = ws.state("src", "records").expect("the parent's checkpoint is written");
    assert_eq!(state["cursor"], "2024-01-01T00:04:00Z");
    let manifests = ws.manifests("src");
    let second_manifest = manifests
        .iter()
        .find(|manifest| manifest["status"] == "succeeded")
        .unwrap();
    assert_eq!(second_manifest["streams"][0]["cursor_end"], "2024-01-01T00:04:00Z");
}

#[tokio::test]
async fn sigterm_stores_what_was_read_and_writes_a_cancelled_manifest() {
    let source = Source::new(records(5000));
    source.set_latency(Duration::from_millis(30));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, "", ""));
    let mut child = common::spawn_run(&config, &["--grace-period", "10s"]);
    let parts_dir = ws.landing().join("src/records");
    assert!(common::wait_until(Duration::from_secs(20), || !common::files_under(&parts_dir).is_empty()).await);
    common::signal(&child, "TERM");
    let signalled = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within grace")
        .unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(status.code(), Some(75));
    let manifest = &ws.manifests("src")[0];
    assert_eq!(manifest["status"], "cancelled");
    let report = &manifest["streams"][0];
    assert_eq!(report["status"], "cancelled");
    assert_eq!(report["error"]["code"], "CANCELLED");
    let lines = ws.lines("src", "records");
    assert_eq!(report["rows_written"], lines.len() as u64);
    assert!(lines.len() < 5000);
    // The checkpoint covers only stored records: everything below it is landed (the next
    // run starts at the checkpoint inclusive, so records at it are read again).
    let checkpoint = ws.state("src", "records").unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let landed: std::collections::HashSet<String> = lines
        .iter()
        .map(|l| l["_source_record_id"].as_str().unwrap().to_owned())
        .collect();
    for record in source.records.lock().unwrap().iter() {
        if record.updated_text() < checkpoint {
            assert!(
                landed.contains(&record.id.to_string()),
                "record {} below the checkpoint {checkpoint} is missing ({} landed)",
                record.id,
                landed.len()
            );
        }
    }
    assert_eq!(report["cursor_end"], checkpoint.as_str());
}

fn write_lock(ws: &Workspace, run_id: &str, expires_at: &str) -> std::path::PathBuf {
    let path = ws.landing().join("src/_state/records.lock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let lock = serde_json::json!({"run_id": run_id, "stream": "records", "acquired_at": "2026-01-01T00:00:00Z", "expires_at": expires_at});
    std::fs::write(&path, lock.to_string()).unwrap();
    path
}

#[tokio::test]
async fn a_live_lease_refuses_a_second_run_and_an_expired_one_is_taken_over() {
    let source = Source::new(records(300));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, "", ""));
    let lock = write_lock(&ws, "other-run-1", "2999-01-01T00:00:00Z");
    let output = run(&config, &[]).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("being extracted by run other-run-1") && message.contains("records.lock"),
        "{message}"
    );
    assert!(ws.manifests("src").is_empty(), "a refused run writes nothing");
    assert_eq!(source.hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    write_lock(&ws, "dead-run-2", "2001-01-01T00:00:00Z");
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!lock.exists(), "the lease is released at the end");
}

#[tokio::test]
async fn two_concurrent_runs_of_one_stream() {
    let source = Source::new(records(3000));
    source.set_latency(Duration::from_millis(20));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, "", ""));
    let mut first = common::spawn_run(&config, &[]);
    let lock = ws.landing().join("src/_state/records.lock");
    assert!(common::wait_until(Duration::from_secs(10), || lock.exists()).await);
    let second = run(&config, &[]).await;
    assert_eq!(second.status.code(), Some(75), "{}", stderr(&second));
    assert!(events(&second).iter().any(|e| e["event"] == "lease_held"));
    let status = first.wait().await.unwrap();
    assert!(status.success());
    assert_eq!(ws.manifests("src").len(), 1);
}

/// The lease lifetime can be set from the environment (`LANDFALL_LEASE_TTL`), as the DAGs
/// and the chart pass settings: the live lock's expiry is that far after its renewal.
#[tokio::test]
async fn the_lease_ttl_comes_from_the_environment() {
    let source = Source::new(records(3000));
    source.set_latency(Duration::from_millis(40));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, "", ""));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("LANDFALL_LEASE_TTL", "7m")
        .env("LANDFALL_LOG_FORMAT", "json")
        .env_remove("LANDFALL_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lock = ws.landing().join("src/_state/records.lock");
    let read_lock = || {
        std::fs::read(&lock)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    };
    assert!(common::wait_until(Duration::from_secs(20), || read_lock().is_some()).await);
    let held = read_lock().unwrap();
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let at = |key: &str| chrono::DateTime::parse_from_rfc3339(held[key].as_str().unwrap()).unwrap();
    let ttl = at("expires_at") - at("acquired_at");
    // Renewals move `expires_at` on; the first one is a third of the TTL after acquiring.
    assert!(
        ttl >= chrono::Duration::minutes(7) && ttl < chrono::Duration::minutes(7) + chrono::Duration::seconds(141),
        "{held}"
    );
}

/// Issue 15.5: a run paused (SIGSTOP) past its lease expiry, whose lease another run took
/// over, wakes up holding records read before the pause. It must not commit them: the
/// checkpoint stays where the run that took over left it.
#[tokio::test]
async fn a_stale_writer_woken_after_a_takeover_never_moves_the_checkpoint_back() {
    let source = Source::new(records(3000));
    source.set_latency(Duration::from_millis(40));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, "", ""));
    let stale = common::spawn_run(&config, &["--lease-ttl", "600ms"]);
    assert!(common::wait_until(Duration::from_secs(20), || ws.state("src", "records").is_some()).await);
    // A page or two more, read into the open part, past the committed checkpoint.
    tokio::time::sleep(Duration::from_millis(100)).await;
    pause_outside_the_folder_lock(&stale, &ws.landing().join("src/_state"));
    let paused_at = ws.state("src", "records").unwrap()["cursor"].clone();
    // The paused run's lease expires; another run takes the stream over and finishes it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    source.set_latency(Duration::ZERO);
    let takeover = run(&config, &["--lease-ttl", "600ms"]).await;
    assert!(takeover.status.success(), "{}", stderr(&takeover));
    let after_takeover = ws.state("src", "records").unwrap();
    assert_eq!(after_takeover["cursor"], "2024-01-01T16:40:00Z");
    assert_ne!(after_takeover["cursor"], paused_at);

    common::signal(&stale, "CONT");
    let woken = stale.wait_with_output().await.unwrap();
    assert_eq!(woken.status.code(), Some(75), "{}", stderr(&woken));
    let state = ws.state("src", "records").unwrap();
    assert_eq!(
        state["cursor"], after_takeover["cursor"],
        "the checkpoint moved backwards"
    );
    assert_eq!(state["run_id"], after_takeover["run_id"]);
    let lost = events(&woken)
        .into_iter()
        .filter(|event| event["event"] == "lease_held" || event.to_string().contains("LEASE_LOST"))
        .count();
    assert!(lost > 0, "{}", stderr(&woken));
}

/// Pauses `child` (SIGSTOP) at an instant it does not hold the `file://` folder lock of
/// `folder`: paused inside that lock (a conditional write, a millisecond or two), it would
/// block every other writer of the folder for up to 30 s, then fail them with a retryable
/// storage error (docs/contract.md, section 5): safe, but not the takeover this test is
/// about.
fn pause_outside_the_folder_lock(child: &tokio::process::Child, folder: &std::path::Path) {
    use rustix::fs::{FlockOperation, flock};
    let handle = std::fs::File::open(folder).expect("the run created its state folder");
    for _ in 0..500 {
        common::signal(child, "STOP");
        match flock(&handle, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                flock(&handle, FlockOperation::Unlock).unwrap();
                return;
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                common::signal(child, "CONT");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(errno) => panic!("flock {}: {errno}", folder.display()),
        }
    }
    panic!("the run held its folder lock at every one of 500 pauses");
}

#[tokio::test]
async fn cursor_values_in_another_format_are_landed_with_a_warning_and_hold_the_checkpoint() {
    // The config says integer; the API sends RFC 3339 text in updated_at. (Time formats
    // accept RFC 3339 too, so only a mismatch like this one leaves values unparseable.)
    let source = Source::new(records(120));
    let base = source.serve().await;
    let ws = Workspace::new();
    let text = records_config(&base, "", "").replace("start: '2024-01-01T00:00:00Z'", "start: '0', format: integer");
    let config = ws.config(&text);
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = events(&output);
    let warning = lines
        .iter()
        .find(|line| line["event"] == "cursor_unparseable")
        .unwrap_or_else(|| panic!("no cursor_unparseable event: {}", stderr(&output)));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(
        (
            &warning["stream"],
            &warning["field"],
            &warning["format"],
            &warning["rows"]
        ),
        (
            &Value::from("records"),
            &Value::from("updated_at"),
            &Value::from("integer"),
            &Value::from(120)
        )
    );
    assert!(warning["example"].as_str().unwrap().starts_with("2024-01-01T"));
    // every record landed, and none could move the checkpoint past the start
    assert_eq!(ws.lines("src", "records").len(), 120);
    let checkpoint = ws
        .state("src", "records")
        .and_then(|state| state["cursor"].as_str().map(ToOwned::to_owned));
    assert!(
        checkpoint.as_deref().is_none_or(|cursor| cursor == "0"),
        "{checkpoint:?}"
    );
}
