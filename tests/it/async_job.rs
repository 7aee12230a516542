//! Asynchronous jobs (`streams[].async_job`): a loopback report API that creates export
//! jobs, answers polls with their status and serves their results, run through the real
//! binary: the plain flow, failed and timed-out jobs, a run killed while polling, an
//! expired job, a CSV result, and config validation.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Workspace, stderr};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// What the vendor does with its jobs.
#[derive(Default)]
struct Vendor {
    /// Create requests answered (each makes job `job-N`).
    creates: u64,
    /// Their bodies, as sent.
    create_bodies: Vec<Value>,
    /// Polls answered, by job.
    polls: BTreeMap<String, u64>,
    /// Polls a job answers `pending` before it is done (`None`: pending forever).
    pending_polls: Option<u64>,
    /// The status a finished job reports.
    final_status: String,
    /// Jobs whose poll answers 410 Gone.
    expired: BTreeSet<String>,
    /// Result downloads answer after this long.
    download_delay: Duration,
    /// Result downloads received.
    downloads: u64,
}

/// The loopback report API: `POST /exports`, `GET /exports/{id}`, `GET /files/{id}.json`
/// (`{"rows": [...]}`) and `GET /files/{id}.csv`.
struct JobApi {
    server: MockServer,
    vendor: Arc<Mutex<Vendor>>,
}

impl JobApi {
    async fn start(pending_polls: Option<u64>) -> Self {
        let server = MockServer::start().await;
        let vendor = Arc::new(Mutex::new(Vendor {
            pending_polls,
            final_status: "done".to_owned(),
            ..Vendor::default()
        }));
        let state = vendor.clone();
        Mock::given(method("POST"))
            .and(path("/exports"))
            .respond_with(move |request: &Request| {
                let mut vendor = state.lock().unwrap();
                vendor.creates += 1;
                vendor
                    .create_bodies
                    .push(serde_json::from_slice(&request.body).unwrap_or(Value::Null));
                ResponseTemplate::new(202).set_body_json(json!({"data": {"id": format!("job-{}", vendor.creates)}}))
            })
            .mount(&server)
            .await;
        let state = vendor.clone();
        let base = server.uri();
        Mock::given(method("GET"))
            .and(path_regex("^/exports/[^/]+$"))
            .respond_with(move |request: &Request| {
                let id = request.url.path().rsplit('/').next().unwrap().to_owned();
                let mut vendor = state.lock().unwrap();
                if vendor.expired.contains(&id) {
                    return ResponseTemplate::new(410).set_body_json(json!({"error": "export expired"}));
                }
                let polls = vendor.polls.entry(id.clone()).or_default();
                *polls += 1;
                let polls = *polls;
                let done = vendor.pending_polls.is_some_and(|pending| polls > pending);
                if !done {
                    return ResponseTemplate::new(200).set_body_json(json!({"state": "pending"}));
                }
                ResponseTemplate::new(200).set_body_json(json!({
                    "state": vendor.final_status,
                    "files": [format!("{base}/files/{id}.json"), format!("/files/{id}-2.json")],
                }))
            })
            .mount(&server)
            .await;
        let state = vendor.clone();
        Mock::given(method("GET"))
            .and(path_regex("^/files/.+\\.json$"))
            .respond_with(move |request: &Request| {
                let mut vendor = state.lock().unwrap();
                vendor.downloads += 1;
                let name = request
                    .url
                    .path()
                    .trim_start_matches("/files/")
                    .trim_end_matches(".json");
                let rows: Vec<Value> = (1..=3).map(|n| json!({"id": format!("{name}-{n}"), "n": n})).collect();
                ResponseTemplate::new(200)
                    .set_body_json(json!({"rows": rows}))
                    .set_delay(vendor.download_delay)
            })
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/files/.+\\.csv$"))
            .respond_with(ResponseTemplate::new(200).set_body_raw("id,amount\n1,10.5\n2,3\n", "text/csv"))
            .mount(&server)
            .await;
        Self { server, vendor }
    }

    fn vendor(&self) -> std::sync::MutexGuard<'_, Vendor> {
        self.vendor.lock().unwrap()
    }
}

/// The stream's config: a job on `/exports`, `extra` keys beside it.
fn config(ws: &Workspace, api: &JobApi, poll_extra: &str, result: &str, extra: &str) -> std::path::PathBuf {
    let extra = if extra.is_empty() {
        "records_path: /rows,"
    } else {
        extra
    };
    let stream = format!(
        "{{name: report, path: /unused, primary_key: [id], {extra} async_job: {{\
         create: {{path: /exports, body: {{report: sales, token: '${{env:EXPORT_TOKEN}}'}}}}, id_path: /data/id, \
         poll: {{path: '/exports/{{job_id}}', interval: 20ms, status_path: /state, done_values: [done], \
         failed_values: [failed, cancelled]{poll_extra}}}, result: {result}}}}}"
    );
    ws.config(&common::one_stream(&api.server.uri(), &stream))
}

const URLS: &str = "{urls_path: /files}";

async fn run(config: &std::path::Path) -> std::process::Output {
    common::landfall(
        &["run", "--config", config.to_str().unwrap()],
        &[("EXPORT_TOKEN", "tok-secret-123")],
    )
    .await
}

fn ids(ws: &Workspace) -> Vec<String> {
    let mut ids: Vec<String> = ws
        .lines("shop", "report")
        .iter()
        .map(|line| line["_source_record_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn expected_ids(job: &str) -> Vec<String> {
    let mut ids: Vec<String> = [job.to_owned(), format!("{job}-2")]
        .iter()
        .flat_map(|name| (1..=3).map(move |n| format!("{name}-{n}")))
        .collect();
    ids.sort();
    ids
}

fn events_named(output: &std::process::Output, name: &str) -> Vec<Value> {
    common::events(output)
        .into_iter()
        .filter(|event| event["event"] == name)
        .collect()
}

#[tokio::test]
async fn a_job_is_created_polled_until_done_and_its_result_files_land() {
    let api = JobApi::start(Some(2)).await;
    let ws = Workspace::new();
    let output = run(&config(&ws, &api, "", URLS, "")).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(ids(&ws), expected_ids("job-1"));
    {
        let vendor = api.vendor();
        assert_eq!(vendor.creates, 1);
        assert_eq!(vendor.polls["job-1"], 3, "pending, pending, done");
        // The body's reference is resolved for the vendor, and never logged.
        assert_eq!(
            vendor.create_bodies[0],
            json!({"report": "sales", "token": "tok-secret-123"})
        );
    }
    assert!(!stderr(&output).contains("tok-secret-123"));
    assert_eq!(events_named(&output, "async_job_created")[0]["job_id"], "job-1");
    // Landed, the job is forgotten.
    let state = ws.state("shop", "report").expect("the job was recorded in the state");
    assert!(state.get("async_job").is_none(), "{state}");
    let report = common::stream_report(&ws.manifests("shop")[0], "report").clone();
    assert_eq!(
        report["async_job"],
        json!({"id": "job-1", "resumed": false, "expired": 0})
    );
    assert_eq!(report["rows_written"], 6);
}

#[tokio::test]
async fn a_failed_job_fails_the_stream_naming_its_status_and_is_forgotten() {
    let api = JobApi::start(Some(1)).await;
    api.vendor().final_status = "failed".to_owned();
    let ws = Workspace::new();
    let output = run(&config(&ws, &api, "", URLS, "")).await;
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("async job job-1 failed: its status is `failed`"),
        "{text}"
    );
    assert!(ws.lines("shop", "report").is_empty());
    let state = ws.state("shop", "report").unwrap();
    assert!(state.get("async_job").is_none(), "{state}");
}

#[tokio::test]
async fn a_timed_out_poll_keeps_the_job_and_the_next_run_resumes_it() {
    let api = JobApi::start(None).await;
    let ws = Workspace::new();
    let config = config(&ws, &api, ", timeout: 200ms", URLS, "");
    let output = run(&config).await;
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("async job job-1 is still running (status `pending`)"),
        "{text}"
    );
    let failed = &events_named(&output, "stream_failed")[0];
    assert_eq!(failed["code"], "TIMEOUT", "{failed}");
    assert_eq!(failed["retryable"], true, "{failed}");
    assert_eq!(ws.state("shop", "report").unwrap()["async_job"]["id"], "job-1");

    let polled = api.vendor().polls["job-1"];
    api.vendor().pending_polls = Some(polled);
    let output = run(&config).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(api.vendor().creates, 1, "the second run polled the same job");
    assert_eq!(events_named(&output, "async_job_resumed")[0]["job_id"], "job-1");
    assert_eq!(ids(&ws), expected_ids("job-1"));
    assert!(ws.state("shop", "report").unwrap().get("async_job").is_none());
    let manifests = ws.manifests("shop");
    let last = manifests
        .iter()
        .find(|manifest| manifest["streams"][0]["status"] == "succeeded")
        .unwrap();
    assert_eq!(last["streams"][0]["async_job"]["resumed"], true);
}

/// Starts `landfall run` with a short lease, without waiting for it.
fn spawn(config: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(["run", "--config", config.to_str().unwrap(), "--lease-ttl", "400ms"])
        .env("LANDFALL_LOG_FORMAT", "json")
        .env("EXPORT_TOKEN", "tok-secret-123")
        .env_remove("LANDFALL_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("landfall starts")
}

#[tokio::test]
async fn a_run_killed_while_downloading_is_resumed_without_a_second_job() {
    let api = JobApi::start(Some(1)).await;
    api.vendor().download_delay = Duration::from_secs(20);
    let ws = Workspace::new();
    let config = config(&ws, &api, "", URLS, "");
    let mut child = spawn(&config);
    let downloading = common::wait_until(Duration::from_secs(30), || api.vendor().downloads >= 1).await;
    assert!(downloading);
    common::signal(&child, "KILL");
    child.wait().await.unwrap();
    assert!(ws.lines("shop", "report").is_empty());
    assert_eq!(ws.state("shop", "report").unwrap()["async_job"]["id"], "job-1");
    tokio::time::sleep(Duration::from_millis(450)).await;

    api.vendor().download_delay = Duration::ZERO;
    let output = run(&config).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(api.vendor().creates, 1, "no second job");
    assert_eq!(ids(&ws), expected_ids("job-1"), "everything once");
    assert!(ws.state("shop", "report").unwrap().get("async_job").is_none());
}

#[tokio::test]
async fn a_run_killed_while_polling_is_resumed_without_a_second_job() {
    let api = JobApi::start(None).await;
    let ws = Workspace::new();
    let config = config(&ws, &api, "", URLS, "");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(["run", "--config", config.to_str().unwrap(), "--lease-ttl", "400ms"])
        .env("LANDFALL_LOG_FORMAT", "json")
        .env("EXPORT_TOKEN", "tok-secret-123")
        .env_remove("LANDFALL_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("landfall starts");
    let recorded = common::wait_until(Duration::from_secs(30), || {
        ws.state("shop", "report")
            .is_some_and(|state| state["async_job"]["id"] == "job-1")
    })
    .await;
    if !recorded {
        common::signal(&child, "KILL");
        let output = child.wait_with_output().await.unwrap();
        panic!("the job id was not checkpointed: {}", stderr(&output));
    }
    // Polling goes on after the id is stored.
    let polling = common::wait_until(Duration::from_secs(30), || {
        api.vendor().polls.get("job-1").is_some_and(|polls| *polls >= 2)
    })
    .await;
    assert!(polling);
    common::signal(&child, "KILL");
    child.wait().await.unwrap();
    assert!(ws.lines("shop", "report").is_empty());
    // The killed run's lease expires.
    tokio::time::sleep(Duration::from_millis(450)).await;

    api.vendor().pending_polls = Some(0);
    let output = run(&config).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(api.vendor().creates, 1, "no second job");
    assert_eq!(ids(&ws), expected_ids("job-1"), "everything once");
    assert!(ws.state("shop", "report").unwrap().get("async_job").is_none());
}

#[tokio::test]
async fn an_expired_job_is_replaced_by_one_new_job() {
    let api = JobApi::start(None).await;
    let ws = Workspace::new();
    let config = config(&ws, &api, ", timeout: 100ms", URLS, "");
    assert!(!run(&config).await.status.success());
    assert_eq!(ws.state("shop", "report").unwrap()["async_job"]["id"], "job-1");

    {
        let mut vendor = api.vendor();
        vendor.expired.insert("job-1".to_owned());
        vendor.pending_polls = Some(1);
    }
    let output = run(&config).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(api.vendor().creates, 2);
    let expired = &events_named(&output, "async_job_expired")[0];
    assert_eq!(expired["job_id"], "job-1");
    assert_eq!(expired["status"], 410);
    assert_eq!(expired["during"], "poll");
    assert_eq!(ids(&ws), expected_ids("job-2"));
    let manifests = ws.manifests("shop");
    let last = manifests
        .iter()
        .find(|manifest| manifest["streams"][0]["status"] == "succeeded")
        .unwrap();
    assert_eq!(
        last["streams"][0]["async_job"],
        json!({"id": "job-2", "resumed": false, "expired": 1})
    );
}

#[tokio::test]
async fn a_csv_result_lands_through_the_stream_format() {
    let api = JobApi::start(Some(0)).await;
    let ws = Workspace::new();
    let output = run(&config(&ws, &api, "", "{path: '/files/{job_id}.csv'}", "format: csv,")).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = ws.lines("shop", "report");
    let raws: Vec<&str> = lines.iter().map(|line| line["_raw"].as_str().unwrap()).collect();
    assert_eq!(raws, ["1,10.5", "2,3"]);
    assert_eq!(lines[0]["_record"], r#"{"id":"1","amount":"10.5"}"#);
}

#[tokio::test]
async fn bad_async_job_keys_are_refused_naming_the_key() {
    let api = JobApi::start(Some(0)).await;
    for (poll_extra, result, expected) in [
        (
            ", every: 1s",
            URLS,
            "streams[0].async_job.poll.every: unknown field `every`",
        ),
        (
            "",
            "{urls_path: /files, path: /x}",
            "streams[0].async_job.result: needs exactly one of urls_path and path",
        ),
        (
            ", interval: 1ms",
            URLS,
            "streams[0].async_job.poll.interval: must be at least 10ms",
        ),
        (
            "",
            "{urls_path: files}",
            "streams[0].async_job.result.urls_path: must be a JSON pointer",
        ),
    ] {
        let ws = Workspace::new();
        let config = config(&ws, &api, poll_extra, result, "");
        let output = common::landfall(
            &["validate", "--config", config.to_str().unwrap()],
            &[("EXPORT_TOKEN", "x")],
        )
        .await;
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(expected), "{expected}: {}", stderr(&output));
    }
}

#[tokio::test]
async fn a_result_url_on_another_origin_gets_no_credentials() {
    // The job API answers with a pre-signed URL on a storage host.
    let storage = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/bucket/result.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"rows": [{"id": "s-1"}]})))
        .mount(&storage)
        .await;
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/exports"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 5})))
        .mount(&api)
        .await;
    let signed = format!("{}/bucket/result.json?X-Amz-Signature=sig", storage.uri());
    Mock::given(method("GET"))
        .and(path("/exports/5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"state": "done", "url": signed})))
        .mount(&api)
        .await;
    let ws = Workspace::new();
    let text = format!(
        "version: 1\nsource:\n  name: shop\n  base_url: {}\n  auth: {{type: bearer, token: '${{env:EXPORT_TOKEN}}'}}\n  headers: {{X-Org: acme}}\n\
         streams:\n  - {{name: report, records_path: /rows, primary_key: [id], async_job: {{create: {{path: /exports}}, id_path: /id, \
         poll: {{path: '/exports/{{job_id}}', interval: 10ms, status_path: /state, done_values: [done]}}, result: {{urls_path: /url}}}}}}\n\
         landing:\n  url: {{landing}}\n",
        api.uri()
    );
    let output = run(&ws.config(&text)).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(ids(&ws), ["s-1"]);
    let to_api = api.received_requests().await.unwrap();
    assert!(
        to_api
            .iter()
            .all(|request| request.headers.contains_key("authorization"))
    );
    let to_storage = storage.received_requests().await.unwrap();
    assert_eq!(to_storage.len(), 1);
    assert!(
        !to_storage[0].headers.contains_key("authorization"),
        "{:?}",
        to_storage[0].headers
    );
    assert!(!to_storage[0].headers.contains_key("x-org"));
    assert_eq!(to_storage[0].url.query(), Some("X-Amz-Signature=sig"));
}

#[tokio::test]
async fn an_operator_forgets_a_stuck_job_and_the_next_run_creates_another() {
    let api = JobApi::start(None).await;
    let ws = Workspace::new();
    let config = config(&ws, &api, ", timeout: 100ms", URLS, "");
    assert!(!run(&config).await.status.success());
    assert_eq!(ws.state("shop", "report").unwrap()["async_job"]["id"], "job-1");
    let forget = common::landfall(
        &[
            "state",
            "forget-job",
            "--config",
            config.to_str().unwrap(),
            "--stream",
            "report",
        ],
        &[("EXPORT_TOKEN", "x")],
    )
    .await;
    assert!(forget.status.success(), "{}", stderr(&forget));
    assert!(common::stdout(&forget).contains("async job job-1 of report forgotten"));
    assert!(ws.state("shop", "report").unwrap().get("async_job").is_none());
    api.vendor().pending_polls = Some(0);
    let output = run(&config).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(api.vendor().creates, 2);
    assert_eq!(ids(&ws), expected_ids("job-2"));
}

#[tokio::test]
async fn check_creates_no_job() {
    let api = JobApi::start(Some(0)).await;
    let ws = Workspace::new();
    let config = config(&ws, &api, "", URLS, "");
    let output = common::landfall(
        &["check", "--config", config.to_str().unwrap()],
        &[("EXPORT_TOKEN", "x")],
    )
    .await;
    let step = common::events(&output)
        .into_iter()
        .find(|event| event["event"] == "check_step" && event["step"] == "stream:report")
        .unwrap_or_else(|| panic!("{}", stderr(&output)));
    assert!(
        step["detail"].as_str().unwrap_or_default().contains("not probed"),
        "{step}"
    );
    assert_eq!(api.vendor().creates, 0);
}
