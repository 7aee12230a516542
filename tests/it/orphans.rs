//! `landfall orphans`: parts no manifest covers are listed, covered parts never are, and
//! `--delete` removes only orphans older than `--older-than` whose records landed again.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{Workspace, files_under, landfall, spawn_run, stderr, stdout};
use serde_json::{Value, json};
use wiremock::matchers::{path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn records(from: u64, to: u64) -> String {
    let items: Vec<String> = (from..=to).map(|id| format!(r#"{{"id": {id}}}"#)).collect();
    format!(r#"{{"data": [{}]}}"#, items.join(","))
}

/// `items` ends after one page; `events` serves a full first page, then hangs on the second.
async fn api() -> MockServer {
    let api = MockServer::start().await;
    Mock::given(path("/items"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(records(1, 3), "application/json"))
        .mount(&api)
        .await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(r#"{"data": []}"#, "application/json"))
        .with_priority(10)
        .mount(&api)
        .await;
    Mock::given(path("/events"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(records(1, 50), "application/json"))
        .mount(&api)
        .await;
    Mock::given(path("/events"))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(records(51, 60), "application/json")
                .set_delay(Duration::from_secs(300)),
        )
        .mount(&api)
        .await;
    api
}

fn config(ws: &Workspace, base_url: &str) -> PathBuf {
    let pagination = "pagination: {type: page_number, page_param: page, page_size: 50}";
    ws.config(&format!(
        "version: 1\nsource:\n  name: shop\n  base_url: {base_url}\n  rate_limit: {{requests_per_second: null}}\nstreams:\n  - {{name: items, path: /items, records_path: /data, primary_key: [id], {pagination}}}\n  - {{name: events, path: /events, records_path: /data, primary_key: [id], {pagination}}}\nlanding:\n  url: {{landing}}\n  compression: none\n  part_max_records: 50\n"
    ))
}

async fn orphans(config: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["orphans", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = landfall(&args, &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap_or_else(|error| panic!("{error}: {}", stdout(&output)))
}

fn paths(report: &Value) -> Vec<String> {
    report["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|orphan| orphan["path"].as_str().unwrap().to_owned())
        .collect()
}

fn parts(ws: &Workspace, stream: &str) -> Vec<PathBuf> {
    let mut files = files_under(&ws.landing().join("shop").join(stream));
    files.sort();
    files
}

/// A run that completes (items) and one killed after storing its first part (events).
async fn a_landed_and_a_killed_run() -> (Workspace, PathBuf, MockServer) {
    let api = api().await;
    let ws = Workspace::new();
    let config = config(&ws, &api.uri());
    let landed = landfall(&["run", "--config", config.to_str().unwrap(), "--stream", "items"], &[]).await;
    assert_eq!(landed.status.code(), Some(0), "{}", stderr(&landed));

    // a short lease, so that a later run need not wait for the killed run's to expire
    let mut killed = spawn_run(&config, &["--stream", "events", "--lease-ttl", "1s"]);
    let stored = common::wait_until(Duration::from_secs(60), || !parts(&ws, "events").is_empty()).await;
    assert!(stored, "the first part of events was never stored");
    killed.start_kill().unwrap();
    assert!(!killed.wait().await.unwrap().success());
    (ws, config, api)
}

/// Sets the files' modification time to two days ago.
fn age_two_days(files: &[&Path]) {
    let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
    for file in files {
        std::fs::File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
    }
}

fn relative(ws: &Workspace, file: &Path) -> String {
    file.strip_prefix(ws.landing()).unwrap().to_string_lossy().into_owned()
}

#[tokio::test]
async fn a_killed_runs_parts_are_listed_and_covered_parts_are_not() {
    let (ws, config, _api) = a_landed_and_a_killed_run().await;
    let killed_part = relative(&ws, &parts(&ws, "events")[0]);
    let covered_part = relative(&ws, &parts(&ws, "items")[0]);

    let report = orphans(&config, &[]).await;
    assert_eq!(paths(&report), std::slice::from_ref(&killed_part), "{report:#}");
    assert_eq!(report["manifests"], 1);
    let orphan = &report["orphans"][0];
    assert_eq!(orphan["kind"], "part");
    assert_eq!(orphan["stream"], "events");
    assert!(killed_part.contains(&format!("run_id={}", orphan["run_id"].as_str().unwrap())));
    // Seconds old: listed, but not deletable under the 24 h default.
    assert_eq!(orphan["action"], "kept_too_recent");
    assert_eq!(report["older_than_seconds"], 86_400);
    assert!(!paths(&report).contains(&covered_part));
}

#[tokio::test]
async fn delete_removes_only_old_orphans_whose_records_landed_again() {
    let (ws, config, api) = a_landed_and_a_killed_run().await;
    let killed_part = parts(&ws, "events")[0].clone();
    let covered_part = parts(&ws, "items")[0].clone();

    // Young orphans survive --delete with the default limit.
    let report = orphans(&config, &["--delete"]).await;
    assert_eq!(
        (report["deleted"].as_u64(), report["kept_too_recent"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(killed_part.exists());

    // Two days old: past the default, still short of a 72 h limit.
    age_two_days(&[&killed_part, &covered_part]);
    let report = orphans(&config, &["--delete", "--older-than", "72h"]).await;
    assert_eq!(report["orphans"][0]["action"], "kept_too_recent", "{report:#}");
    assert!(killed_part.exists());

    // Old enough, but its 50 records are landed nowhere else (the killed run may have moved
    // the checkpoint past them): kept, however old.
    let report = orphans(&config, &["--delete"]).await;
    let orphan = &report["orphans"][0];
    assert_eq!(
        (&orphan["action"], &orphan["unique_rows"]),
        (&json!("kept_not_relanded"), &json!(50)),
        "{report:#}"
    );
    assert_eq!(
        (report["deleted"].as_u64(), report["kept_not_relanded"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(killed_part.exists());

    // The source answers again: a complete run lands events 1 to 60 under a manifest.
    Mock::given(path("/events"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(records(51, 60), "application/json"))
        .with_priority(1)
        .mount(&api)
        .await;
    Mock::given(path("/events"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(r#"{"data": []}"#, "application/json"))
        .with_priority(10)
        .mount(&api)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the killed run's lease expires
    let landed = landfall(
        &["run", "--config", config.to_str().unwrap(), "--stream", "events"],
        &[],
    )
    .await;
    assert_eq!(landed.status.code(), Some(0), "{}", stderr(&landed));

    // Without --delete, an old orphan whose records all landed again is only marked.
    let report = orphans(&config, &[]).await;
    let orphan = &report["orphans"][0];
    assert_eq!(
        (&orphan["action"], &orphan["unique_rows"]),
        (&json!("would_delete"), &json!(0)),
        "{report:#}"
    );
    assert!(killed_part.exists());

    let report = orphans(&config, &["--delete"]).await;
    assert_eq!(report["deleted"], 1, "{report:#}");
    assert_eq!(report["orphans"][0]["action"], "deleted");
    assert!(!killed_part.exists(), "the orphan is gone");
    assert!(
        covered_part.exists(),
        "a part a manifest covers is never deleted, however old"
    );
    assert!(paths(&orphans(&config, &[]).await).is_empty());
}

#[tokio::test]
async fn older_than_must_be_a_positive_duration() {
    let ws = Workspace::new();
    let config = config(&ws, "http://127.0.0.1:9");
    let output = landfall(
        &["orphans", "--config", config.to_str().unwrap(), "--older-than", "0s"],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[tokio::test]
async fn a_staged_upload_left_under_tmp_is_listed_and_deleted_with_its_staged_object() {
    let api = api().await;
    let ws = Workspace::new();
    let config = config(&ws, &api.uri());
    // What a run killed mid-upload leaves on local disk: the marker and the staged file.
    let run_id = "01a1fd00-0000-7000-8000-00000000d0aa";
    let staging = ws.landing().join(format!("shop/_tmp/{run_id}/events"));
    std::fs::create_dir_all(&staging).unwrap();
    let staged = staging.join("part-00001.jsonl.partial");
    let marker = staging.join("part-00001.jsonl.upload.json");
    std::fs::write(&staged, "{\"id\": 1}\n").unwrap();
    let body = serde_json::json!({
        "upload_id": null,
        "staged": format!("shop/_tmp/{run_id}/events/part-00001.jsonl.partial"),
        "target": format!("shop/events/extracted_date=2026-12-07/run_id={run_id}/part-00001.jsonl"),
        "run_id": run_id,
        "created_at": "2026-12-05T00:00:00Z",
    });
    std::fs::write(&marker, body.to_string()).unwrap();

    let report = orphans(&config, &[]).await;
    assert_eq!(paths(&report), [relative(&ws, &marker)], "{report:#}");
    let orphan = &report["orphans"][0];
    assert_eq!(
        (&orphan["kind"], &orphan["stream"], &orphan["run_id"]),
        (&"staged_upload".into(), &"events".into(), &run_id.into())
    );

    age_two_days(&[&staged, &marker]);
    let report = orphans(&config, &["--delete"]).await;
    assert_eq!(report["deleted"], 1, "{report:#}");
    assert!(
        !marker.exists() && !staged.exists(),
        "the marker and the staged object are gone"
    );
}
