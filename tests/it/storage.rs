//! One storage suite, the same scenarios against every store: S3 (moto), Azure Blob
//! (Azurite), file:// and, for what the emulator supports, GCS (fake-gcs-server), plus an
//! opt-in live GCS profile.
//!
//! Each write scenario is two tests: one on file://, which `cargo test` runs, and one against
//! S3 (moto) and Azure (Azurite), `#[ignore]`d because `cargo test` starts no emulator.
//! `tests/storage/run.sh` starts the emulators, exports their settings and runs this module
//! with `--include-ignored`; an ignored test run without its emulator's settings fails, naming
//! them, so a plain `cargo test` lists the emulator cases as ignored and never passes them
//! without running them. The GCS live profile (`gcs_live_profile`, ignored too) runs the write
//! scenarios against a real bucket named by `LANDFALL_GCS_LIVE_BUCKET` (README, "Storage
//! tests").

use crate::common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bytes::Bytes;
use common::stderr;
use landfall::landing::config::LandingConfig;
use landfall::landing::part::{PartDirs, PartLimits, PartWriter};
use landfall::landing::{Landing, LandingError, ObjectVersion};
use serde_json::Value;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

// ---------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    S3,
    Azure,
    Gcs,
    File,
}

/// A landing zone under a prefix unique to one test.
struct Target {
    kind: Kind,
    /// The landing URL, prefix included.
    url: String,
    options: BTreeMap<String, String>,
    /// The bucket-relative prefix (`""` for file://).
    prefix: String,
    _dir: Option<tempfile::TempDir>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The values of `variables`, which tests/storage/run.sh exports; an ignored test run without
/// them fails (it was asked to run), naming what is missing.
fn required_env<const N: usize>(what: &str, variables: [&str; N]) -> [String; N] {
    variables.map(|name| {
        env(name).unwrap_or_else(|| {
            panic!("{what}: {name} is not set; run tests/storage/run.sh, which starts the emulators and sets it")
        })
    })
}

fn unique(test: &str) -> String {
    format!("{test}-{}", uuid::Uuid::now_v7().simple())
}

fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An emulator's endpoint and bucket (or container) from the variables `[endpoint, bucket]`.
fn emulator_env(test: &str, label: &str, variables: [&str; 2]) -> (String, String) {
    let [endpoint, bucket] = required_env(&format!("the {label} cases of {test}"), variables);
    (endpoint, bucket)
}

impl Target {
    fn file(test: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let _ = test;
        Self {
            kind: Kind::File,
            url: format!("file://{}/landing", dir.path().display()),
            options: BTreeMap::new(),
            prefix: String::new(),
            _dir: Some(dir),
        }
    }

    /// A target under `prefix` in the bucket (or container) at `bucket_url`.
    fn in_bucket(kind: Kind, bucket_url: &str, prefix: String, options: BTreeMap<String, String>) -> Self {
        Self {
            kind,
            url: format!("{bucket_url}/{prefix}"),
            options,
            prefix,
            _dir: None,
        }
    }

    fn s3(test: &str) -> Self {
        let (endpoint, bucket) = emulator_env(test, "S3", ["LANDFALL_TEST_S3_ENDPOINT", "LANDFALL_TEST_S3_BUCKET"]);
        let options = options(&[
            ("endpoint", &endpoint),
            ("allow_http", "true"),
            ("virtual_hosted_style_request", "false"),
            ("region", "us-east-1"),
        ]);
        Self::in_bucket(Kind::S3, &format!("s3://{bucket}"), unique(test), options)
    }

    fn azure(test: &str) -> Self {
        let (endpoint, container) = emulator_env(
            test,
            "Azure",
            ["LANDFALL_TEST_AZURE_ENDPOINT", "LANDFALL_TEST_AZURE_CONTAINER"],
        );
        // The account name and key come from AZURE_STORAGE_ACCOUNT_NAME/_KEY (env.sh).
        let options = options(&[("endpoint", &endpoint), ("allow_http", "true")]);
        Self::in_bucket(Kind::Azure, &format!("az://{container}"), unique(test), options)
    }

    fn gcs_emulator(test: &str) -> Self {
        let (endpoint, bucket) = emulator_env(test, "GCS", ["LANDFALL_TEST_GCS_ENDPOINT", "LANDFALL_TEST_GCS_BUCKET"]);
        // The token comes from GOOGLE_BEARER_TOKEN (run.sh); fake-gcs-server ignores it.
        let options = options(&[("base_url", &endpoint), ("allow_http", "true")]);
        Self::in_bucket(Kind::Gcs, &format!("gs://{bucket}"), unique(test), options)
    }

    /// A real bucket, opt-in: `LANDFALL_GCS_LIVE_BUCKET` plus credentials in the standard
    /// environment (GOOGLE_APPLICATION_CREDENTIALS, ADC or the metadata server).
    fn gcs_live(test: &str) -> Self {
        let [bucket] = required_env(
            "the live GCS profile (set it and GCS credentials to run GCS writes against a real bucket)",
            ["LANDFALL_GCS_LIVE_BUCKET"],
        );
        let prefix = format!(
            "{}/{}",
            env("LANDFALL_GCS_LIVE_PREFIX").unwrap_or_else(|| "landfall-live-tests".into()),
            unique(test)
        );
        Self::in_bucket(Kind::Gcs, &format!("gs://{bucket}"), prefix, BTreeMap::new())
    }

    /// Removes what a test wrote to a live bucket (emulators and temp folders need nothing).
    async fn cleanup(&self) {
        if self.kind == Kind::Gcs && env("LANDFALL_GCS_LIVE_BUCKET").is_some() && !self.prefix.is_empty() {
            let landing = self.landing();
            for path in landing.list("").await.unwrap_or_default() {
                let _ = landing.delete(&path).await;
            }
        }
    }

    fn config(&self) -> LandingConfig {
        LandingConfig {
            url: self.url.clone(),
            options: self.options.clone(),
            ..Default::default()
        }
    }

    fn landing(&self) -> Landing {
        Landing::open(&self.config()).unwrap_or_else(|error| panic!("{:?}: {error}", self.kind))
    }

    /// The `landing:` section of a config, with `extra` lines (two-space indented keys).
    fn yaml(&self, extra: &str) -> String {
        let mut text = format!("landing:\n  url: '{}'\n", self.url);
        if !self.options.is_empty() {
            text.push_str("  options:\n");
            for (key, value) in &self.options {
                text.push_str(&format!("    {key}: '{value}'\n"));
            }
        }
        text.push_str(extra);
        text
    }

    /// In-progress S3 multipart uploads under this target's prefix (boto3 via the helper).
    fn s3_uploads(&self) -> Vec<Value> {
        assert_eq!(self.kind, Kind::S3);
        let endpoint = env("LANDFALL_TEST_S3_ENDPOINT").unwrap();
        let bucket = env("LANDFALL_TEST_S3_BUCKET").unwrap();
        let output = helper(&["s3-multipart-uploads", &endpoint, &bucket, &self.prefix]);
        serde_json::from_str(&output).unwrap()
    }
}

/// Runs tests/storage/helpers.py with the emulator venv's python.
fn helper(args: &[&str]) -> String {
    let python = env("LANDFALL_TEST_PYTHON").expect("LANDFALL_TEST_PYTHON (run.sh sets it)");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/storage/helpers.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("helper runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `scenario` on `target`, then removes what it wrote to a live bucket.
async fn in_store(target: Target, scenario: impl AsyncFn(&Target)) {
    scenario(&target).await;
    target.cleanup().await;
}

/// Runs `scenario` on S3 (moto) and Azure (Azurite); the test is ignored unless run.sh runs it.
async fn on_emulators(test: &str, scenario: impl AsyncFn(&Target)) {
    in_store(Target::s3(test), &scenario).await;
    in_store(Target::azure(test), &scenario).await;
}

/// A config file for `streams` against `api`, landing into `target`.
fn write_config(dir: &tempfile::TempDir, api: &str, streams: &str, landing: &str) -> PathBuf {
    let path = dir.path().join("config.yaml");
    let text = format!(
        "version: 1\nsource:\n  name: shop\n  base_url: {api}\n  retry: {{max_attempts: 3, initial_delay: 10ms, max_delay: 50ms}}\nstreams:\n{streams}{landing}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary with extra environment variables and some removed.
async fn landfall(args: &[&str], set: &[(&str, &str)], remove: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_landfall"));
    command
        .args(args)
        .env("LANDFALL_LOG_FORMAT", "json")
        .env_remove("LANDFALL_CONFIG");
    for name in remove {
        command.env_remove(name);
    }
    for (name, value) in set {
        command.env(name, value);
    }
    command.output().await.expect("landfall runs")
}

fn text(bytes: &[u8]) -> String {
    let mut out = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut out)
            .unwrap();
    } else {
        out = String::from_utf8(bytes.to_vec()).unwrap();
    }
    out
}

/// The parsed manifests under `shop/_manifests/`.
async fn manifests(landing: &Landing) -> Vec<Value> {
    let mut found = Vec::new();
    for path in landing.list("shop/_manifests").await.unwrap() {
        let bytes = landing.get(&path).await.unwrap().unwrap();
        found.push(serde_json::from_slice(&bytes).unwrap());
    }
    found
}

/// Every record line a manifest's stream lists, after checking each file's size and hash.
async fn landed_lines(landing: &Landing, stream: &Value) -> Vec<Value> {
    let mut lines = Vec::new();
    for file in stream["files"].as_array().unwrap() {
        let path = file["path"].as_str().unwrap();
        let bytes = landing
            .get(path)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{path} is missing"));
        assert_eq!(bytes.len() as u64, file["bytes"].as_u64().unwrap(), "{path}");
        assert_eq!(
            landfall::hash::sha256_hex(&bytes),
            file["sha256"].as_str().unwrap(),
            "{path}"
        );
        for line in text(&bytes).lines() {
            lines.push(serde_json::from_str(line).unwrap());
        }
    }
    lines
}

fn raw_field(line: &Value, field: &str) -> Value {
    let raw: Value = serde_json::from_str(line["_raw"].as_str().unwrap()).unwrap();
    raw[field].clone()
}

fn log_events(output: &Output, name: &str) -> Vec<Value> {
    common::events(output)
        .into_iter()
        .filter(|event| event["event"] == name || event["fields"]["event"] == name)
        .collect()
}

fn field<'a>(event: &'a Value, name: &str) -> &'a Value {
    if event.get(name).is_some() {
        &event[name]
    } else {
        &event["fields"][name]
    }
}

/// The arguments of `landfall state show` for `stream` with `config`.
fn state_show<'a>(config: &'a Path, stream: &'a str) -> [&'a str; 6] {
    [
        "state",
        "show",
        "--config",
        config.to_str().unwrap(),
        "--stream",
        stream,
    ]
}

/// The step called `name` of a `landfall check` report.
fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    common::named(report, "steps", "step", name)
}

// ---------------------------------------------------------------------------------------
// Scenario: a full extraction from a loopback API into the store
// ---------------------------------------------------------------------------------------

async fn shop_api() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/orders"))
        .and(query_param("cursor", "c2"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"data": [{"id": 3, "total": 1E+2}], "next": null}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"data": [{"id": 1, "total": 10.50}, {"id" : 2, "total": 0.1000000000000000055511151231257827}], "next": "c2"}"#,
            "application/json",
        ))
        .with_priority(10)
        .mount(&server)
        .await;
    Mock::given(path("/customers"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"id": "a", "updated_at": "2024-05-01T00:00:00Z"}, {"id": "b", "updated_at": "2024-05-02T00:00:00Z"}]"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    server
}

const SHOP_STREAMS: &str = "  - {name: orders, path: /orders, records_path: /data, primary_key: [id], pagination: {type: cursor, cursor_path: /next, cursor_param: cursor}}\n  - {name: customers, path: /customers, primary_key: [id], incremental: {cursor_field: updated_at, param: updated_since, start: '2024-01-01T00:00:00Z'}}\n";

/// The shop API and, in a temp folder, a config of its SHOP_STREAMS landing per `landing`
/// (keep the server and the folder alive while the config is used).
async fn shop_config(landing: &str) -> (MockServer, tempfile::TempDir, PathBuf) {
    let api = shop_api().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &api.uri(), SHOP_STREAMS, landing);
    (api, dir, config)
}

async fn full_extraction(target: &Target) {
    let (_api, _dir, config) = shop_config(&target.yaml("")).await;
    let output = landfall(&["run", "--config", config.to_str().unwrap()], &[], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}: {}", target.kind, stderr(&output));
    let manifest_url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        manifest_url.starts_with(&format!("{}/shop/_manifests/", target.url)),
        "{manifest_url}"
    );

    let landing = target.landing();
    let manifests = manifests(&landing).await;
    assert_eq!(manifests.len(), 1, "{:?}", target.kind);
    let manifest = &manifests[0];
    assert_eq!(manifest["status"], "succeeded");
    assert_eq!(manifest["landing_url"], target.url);
    let streams = manifest["streams"].as_array().unwrap();
    let orders = landed_lines(&landing, &streams[0]).await;
    assert_eq!(orders.len(), 3);
    assert_eq!(
        orders
            .iter()
            .map(|line| line["_source_record_id"].clone())
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    // Byte for byte, in whatever store.
    assert_eq!(
        orders[1]["_raw"],
        r#"{"id" : 2, "total": 0.1000000000000000055511151231257827}"#
    );
    let customers = landed_lines(&landing, &streams[1]).await;
    assert_eq!(customers.len(), 2);
    let state = landing.get("shop/_state/customers.json").await.unwrap().unwrap();
    let state: Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["cursor"], "2024-05-02T00:00:00Z");
    assert!(landing.list("shop/_tmp").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_full_extraction_lands_on_file() {
    in_store(Target::file("full"), full_extraction).await;
}

#[tokio::test]
#[ignore = "needs moto and Azurite; run by tests/storage/run.sh"]
async fn a_full_extraction_lands_in_every_store() {
    on_emulators("full", full_extraction).await;
}

// ---------------------------------------------------------------------------------------
// Scenario: parts roll, and large parts go through staged multipart uploads
// ---------------------------------------------------------------------------------------

/// Pages of 256 records of about 4 KiB each (1 MiB a page), `total` pages in all.
struct BulkPages {
    total: u64,
    first_seq: u64,
}

fn bulk_record(seq: u64) -> String {
    let mut blob = String::with_capacity(4096);
    let mut digest = landfall::hash::sha256_hex(&seq.to_be_bytes());
    while blob.len() < 4000 {
        blob.push_str(&digest);
        digest = landfall::hash::sha256_hex(digest.as_bytes());
    }
    format!(r#"{{"seq": {seq}, "blob": "{blob}"}}"#)
}

impl Respond for BulkPages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let page: u64 = request
            .url
            .query_pairs()
            .find(|(name, _)| name == "page")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(1);
        let records: Vec<String> = if page <= self.total {
            let start = self.first_seq + (page - 1) * 256;
            (start..start + 256).map(bulk_record).collect()
        } else {
            Vec::new()
        };
        let body = format!(r#"{{"total_pages": {}, "data": [{}]}}"#, self.total, records.join(","));
        ResponseTemplate::new(200).set_body_raw(body, "application/json")
    }
}

const BULK_STREAM: &str = "  - {name: bulk, path: /bulk, records_path: /data, primary_key: [seq], pagination: {type: page_number, page_param: page, page_size: 256, total_pages_path: /total_pages}}\n";

async fn multipart_rolling(target: &Target) {
    let api = MockServer::start().await;
    Mock::given(path("/bulk"))
        .respond_with(BulkPages {
            total: 14,
            first_seq: 1,
        })
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let landing_yaml = target.yaml("  compression: none\n  part_max_bytes: 12MiB\n  multipart_chunk: 5MiB\n");
    let config = write_config(&dir, &api.uri(), BULK_STREAM, &landing_yaml);
    let output = landfall(&["run", "--config", config.to_str().unwrap()], &[], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}: {}", target.kind, stderr(&output));

    let stored = log_events(&output, "part_stored");
    let uploads: Vec<&str> = stored
        .iter()
        .map(|event| field(event, "upload").as_str().unwrap())
        .collect();
    assert_eq!(uploads, ["multipart", "single"], "{:?}: 12 MiB then 2 MiB", target.kind);

    let landing = target.landing();
    let manifest = &manifests(&landing).await[0];
    let stream = &manifest["streams"][0];
    let files = stream["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert!(files[0]["bytes"].as_u64().unwrap() >= 12 << 20, "{:?}", files[0]);
    let lines = landed_lines(&landing, stream).await;
    assert_eq!(lines.len(), 14 * 256);
    let seqs: Vec<u64> = lines
        .iter()
        .map(|line| raw_field(line, "seq").as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=14 * 256).collect::<Vec<_>>());
    assert!(
        landing.list("shop/_tmp").await.unwrap().is_empty(),
        "{:?}: staged parts and markers are removed",
        target.kind
    );
    if target.kind == Kind::S3 {
        assert_eq!(
            target.s3_uploads(),
            Vec::<Value>::new(),
            "no multipart upload is left open"
        );
    }
}

#[tokio::test]
async fn parts_roll_on_file() {
    in_store(Target::file("multipart"), multipart_rolling).await;
}

#[tokio::test]
#[ignore = "needs moto and Azurite; run by tests/storage/run.sh"]
async fn parts_roll_through_staged_multipart_uploads() {
    on_emulators("multipart", multipart_rolling).await;
}

// ---------------------------------------------------------------------------------------
// Scenario: create-only writes
// ---------------------------------------------------------------------------------------

fn limits() -> PartLimits {
    PartLimits {
        max_records: u64::MAX,
        max_bytes: u64::MAX,
        multipart_chunk: 5 << 20,
        level: 5,
    }
}

/// A writer of an uncompressed part of `shop/big` (staged under `shop/_tmp/r1/big`) that has
/// written 6 MiB of `fill` lines and flushed them as one multipart chunk.
async fn big_part_after_one_chunk(landing: &Landing, fill: &str) -> PartWriter {
    let dirs = PartDirs {
        dir: "shop/big".into(),
        staging_dir: "shop/_tmp/r1/big".into(),
        run_id: "r1".into(),
    };
    let mut writer = PartWriter::new(
        landing.clone(),
        dirs,
        landfall::landing::config::Compression::None,
        limits(),
    );
    let line = format!("{}\n", fill.repeat(1023));
    for _ in 0..(6 << 10) {
        writer.append(line.as_bytes()).await.unwrap();
    }
    writer.flush_chunk().await.unwrap();
    writer
}

async fn create_only(target: &Target) {
    let landing = target.landing();
    let kind = target.kind;

    // put_new: a second create of other bytes is refused and changes nothing; the same
    // bytes again count as written (a retried request meeting its own first attempt).
    let first = landing
        .put_new("shop/x/a.json", Bytes::from_static(b"first"))
        .await
        .unwrap();
    let error = landing
        .put_new("shop/x/a.json", Bytes::from_static(b"second"))
        .await
        .unwrap_err();
    assert!(matches!(error, LandingError::AlreadyExists { .. }), "{kind:?}: {error}");
    assert!(
        error.to_string().contains(&format!("{}/shop/x/a.json", target.url)),
        "{error}"
    );
    assert_eq!(landing.get("shop/x/a.json").await.unwrap().unwrap(), "first");
    let again = landing
        .put_new("shop/x/a.json", Bytes::from_static(b"first"))
        .await
        .unwrap();
    assert_eq!(again.e_tag, first.e_tag, "{kind:?}");

    // A staged multipart part whose name is taken while it uploads: the create-only publish
    // refuses it, the object stays as it was, nothing staged is left behind.
    let mut writer = big_part_after_one_chunk(&landing, "x").await;
    assert_eq!(
        landing.list("shop/_tmp/r1").await.unwrap(),
        if kind == Kind::File {
            vec![
                "shop/_tmp/r1/big/part-00000.jsonl.partial",
                "shop/_tmp/r1/big/part-00000.jsonl.upload.json",
            ]
        } else {
            vec!["shop/_tmp/r1/big/part-00000.jsonl.upload.json"]
        },
        "{kind:?}: the marker records the upload while it runs"
    );
    landing
        .put_new("shop/big/part-00000.jsonl", Bytes::from_static(b"taken\n"))
        .await
        .unwrap();
    let error = writer.finish().await.unwrap_err();
    assert!(matches!(error, LandingError::AlreadyExists { .. }), "{kind:?}: {error}");
    assert!(error.to_string().contains("create-only"), "{error}");
    assert_eq!(
        landing.get("shop/big/part-00000.jsonl").await.unwrap().unwrap(),
        "taken\n"
    );
    assert!(landing.list("shop/_tmp").await.unwrap().is_empty(), "{kind:?}");
    if kind == Kind::S3 {
        assert_eq!(target.s3_uploads(), Vec::<Value>::new());
    }

    // The binary: a second run with the same run id is refused (the run finished) and
    // leaves the first run's parts.
    let (_api, _dir, config) = shop_config(&target.yaml("")).await;
    let run_id = "01a1fd00-0000-7000-8000-0000000000c1";
    let args = ["run", "--config", config.to_str().unwrap(), "--run-id", run_id];
    let first = landfall(&args, &[], &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let parts = landing.list("shop/orders").await.unwrap();
    let before = landing.get(&parts[0]).await.unwrap();
    let second = landfall(&args, &[], &[]).await;
    assert_eq!(second.status.code(), Some(2), "{kind:?}: {}", stderr(&second));
    assert!(
        stderr(&second).contains("already finished") && stderr(&second).contains("a run id is used once"),
        "{}",
        stderr(&second)
    );
    assert_eq!(landing.get(&parts[0]).await.unwrap(), before);
}

#[tokio::test]
async fn parts_are_create_only_on_file() {
    in_store(Target::file("create-only"), create_only).await;
}

#[tokio::test]
#[ignore = "needs moto and Azurite; run by tests/storage/run.sh"]
async fn parts_are_create_only_in_every_store() {
    on_emulators("create-only", create_only).await;
}

// ---------------------------------------------------------------------------------------
// Scenario: checkpoints, and the primitives a lease needs
// ---------------------------------------------------------------------------------------

async fn conditional_primitives(target: &Target) {
    let landing = target.landing();
    let kind = target.kind;
    let lease = "shop/_lease/demo.json";
    let v1 = landing
        .put_new(lease, Bytes::from_static(b"{\"holder\":\"a\"}"))
        .await
        .unwrap();
    assert!(
        v1.e_tag.is_some() || v1.version.is_some(),
        "{kind:?}: a create returns a version"
    );
    let (bytes, read) = landing.get_versioned(lease).await.unwrap().unwrap();
    assert_eq!(bytes, "{\"holder\":\"a\"}");
    assert_eq!(read, v1, "{kind:?}: the read version is the written one");
    let held = landing
        .put_new(lease, Bytes::from_static(b"{\"holder\":\"b\"}"))
        .await
        .unwrap_err();
    assert!(matches!(held, LandingError::AlreadyExists { .. }), "{kind:?}: {held}");

    let v2 = landing
        .put_if_version(lease, Bytes::from_static(b"{\"holder\":\"a\",\"renewed\":1}"), &v1)
        .await
        .unwrap();
    assert_ne!(v2, v1);
    let stale = landing
        .put_if_version(lease, Bytes::from_static(b"{\"holder\":\"b\"}"), &v1)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, LandingError::VersionMismatch { .. }),
        "{kind:?}: {stale}"
    );
    assert!(stale.to_string().contains("conditional update was refused"), "{stale}");
    assert_eq!(
        landing.get(lease).await.unwrap().unwrap(),
        "{\"holder\":\"a\",\"renewed\":1}",
        "{kind:?}: the stale update changed nothing"
    );
    let (_, current) = landing.get_versioned(lease).await.unwrap().unwrap();
    assert_eq!(current, v2);

    landing.delete(lease).await.unwrap();
    assert!(landing.get_versioned(lease).await.unwrap().is_none());
    let gone = landing
        .put_if_version(lease, Bytes::from_static(b"{}"), &v2)
        .await
        .unwrap_err();
    assert!(matches!(gone, LandingError::VersionMismatch { .. }), "{kind:?}: {gone}");
    assert!(
        landing.get(lease).await.unwrap().is_none(),
        "{kind:?}: no object was created"
    );
    landing.delete(lease).await.unwrap();
}

async fn checkpoint_resumes(target: &Target) {
    let api = MockServer::start().await;
    Mock::given(path("/events"))
        .and(query_param("since", "2024-05-03T00:00:00Z"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"id": 3, "at": "2024-05-03T00:00:00Z"}, {"id": 4, "at": "2024-05-04T00:00:00Z"}]"#,
            "application/json",
        ))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(path("/events"))
        .and(query_param("since", "2024-01-01T00:00:00Z"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"id": 1, "at": "2024-05-01T00:00:00Z"}, {"id": 2, "at": "2024-05-02T00:00:00Z"}, {"id": 3, "at": "2024-05-03T00:00:00Z"}]"#,
            "application/json",
        ))
        .expect(1)
        .mount(&api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let streams = "  - {name: events, path: /events, primary_key: [id], incremental: {cursor_field: at, param: since, start: '2024-01-01T00:00:00Z'}}\n";
    let config = write_config(&dir, &api.uri(), streams, &target.yaml("  part_max_records: 2\n"));
    let landing = target.landing();
    for expected in ["2024-05-03T00:00:00Z", "2024-05-04T00:00:00Z"] {
        let output = landfall(&["run", "--config", config.to_str().unwrap()], &[], &[]).await;
        assert_eq!(output.status.code(), Some(0), "{:?}: {}", target.kind, stderr(&output));
        let state = landing.get("shop/_state/events.json").await.unwrap().unwrap();
        let state: Value = serde_json::from_slice(&state).unwrap();
        assert_eq!(state["cursor"], expected, "{:?}", target.kind);
    }
    // The previous checkpoint is kept for rollback.
    let previous = landing.get("shop/_state/events.json.prev").await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&previous).unwrap()["cursor"],
        "2024-05-03T00:00:00Z"
    );
    let show = landfall(&state_show(&config, "events"), &[], &[]).await;
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("2024-05-04T00:00:00Z"),
        "{}",
        stderr(&show)
    );
}

async fn state_scenarios(target: &Target) {
    conditional_primitives(target).await;
    checkpoint_resumes(target).await;
}

#[tokio::test]
async fn checkpoints_and_conditional_updates_work_on_file() {
    in_store(Target::file("state"), state_scenarios).await;
}

#[tokio::test]
#[ignore = "needs moto and Azurite; run by tests/storage/run.sh"]
async fn checkpoints_and_conditional_updates_work_in_every_store() {
    on_emulators("state", state_scenarios).await;
}

// ---------------------------------------------------------------------------------------
// Scenario: SIGKILL while a large part uploads, then resume
// ---------------------------------------------------------------------------------------

/// Pages for the kill test: page 1 holds seq 1..=50 (small records), page 2 seq 51..=90
/// (150 KiB each, 6 MiB in all); page 3 never arrives in time.
struct KillPages;

fn big_record(seq: u64) -> String {
    bulk_record(seq).replacen(
        "\"blob\": \"",
        &format!("\"pad\": \"{}\", \"blob\": \"", "p".repeat(150 << 10)),
        1,
    )
}

impl Respond for KillPages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let page = request
            .url
            .query_pairs()
            .find(|(name, _)| name == "page")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        let records: Vec<String> = match page.as_str() {
            "1" => (1..=50).map(|seq| format!(r#"{{"seq": {seq}}}"#)).collect(),
            "2" => (51..=90).map(big_record).collect(),
            _ => {
                return ResponseTemplate::new(200)
                    .set_body_raw(r#"{"data": []}"#, "application/json")
                    .set_delay(Duration::from_secs(300));
            }
        };
        ResponseTemplate::new(200).set_body_raw(format!(r#"{{"data": [{}]}}"#, records.join(",")), "application/json")
    }
}

const KILL_STREAM: &str = "  - {name: events, path: /events, records_path: /data, primary_key: [seq], incremental: {cursor_field: seq, param: since, start: '0'}, pagination: {type: page_number, page_param: page, page_size: 50}}\n";

async fn sigkill_and_resume(target: &Target) {
    let kind = target.kind;
    let api = MockServer::start().await;
    Mock::given(path("/events"))
        .and(query_param("since", "0"))
        .respond_with(KillPages)
        .mount(&api)
        .await;
    // The resumed run starts at the checkpoint (inclusive) and reads the rest.
    Mock::given(path("/events"))
        .and(query_param("since", "50"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!(
                    r#"{{"data": [{}]}}"#,
                    (50..=90)
                        .map(|seq| format!(r#"{{"seq": {seq}}}"#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            "application/json",
        ))
        .mount(&api)
        .await;
    Mock::given(path("/events"))
        .and(query_param("since", "50"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(r#"{"data": []}"#, "application/json"))
        .with_priority(10)
        .mount(&api)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let extra = "  compression: none\n  part_max_records: 50\n  multipart_chunk: 5MiB\n";
    let config = write_config(&dir, &api.uri(), KILL_STREAM, &target.yaml(extra));
    let first_run = "01a1fd00-0000-7000-8000-00000000d001";
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--run-id",
            first_run,
            "--lease-ttl",
            "1s",
        ])
        .env("LANDFALL_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Wait until the large part's upload is under way (its marker is written right after
    // the upload is created), then SIGKILL: no abort code can run.
    let landing = target.landing();
    let marker = format!("shop/_tmp/{first_run}/events/part-00001.jsonl.upload.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if landing.exists(&marker).await.unwrap() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "{kind:?}: the run ended before the upload started"
        );
        assert!(tokio::time::Instant::now() < deadline, "{kind:?}: no upload started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the first 6 MiB part reach the store.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "{kind:?}: killed");
    // The killed run's stream lease lapses on its own (1s TTL).
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // What a SIGKILL leaves: the first part and its checkpoint, no trace of the second part
    // at its final name, and the marker of the open upload.
    let parts = landing.list("shop/events").await.unwrap();
    assert_eq!(parts.len(), 1, "{kind:?}: {parts:?}");
    assert!(parts[0].ends_with("part-00000.jsonl"), "{parts:?}");
    let state: Value = serde_json::from_slice(&landing.get("shop/_state/events.json").await.unwrap().unwrap()).unwrap();
    assert_eq!(state["cursor"], "50");
    assert!(
        landing.list("shop/_manifests").await.unwrap().is_empty(),
        "no manifest: the run is not committed"
    );
    let staged = format!("shop/_tmp/{first_run}/events/part-00001.jsonl.partial");
    let leftovers = landing.list("shop/_tmp").await.unwrap();
    match kind {
        // S3 and GCS: an open multipart upload (no object yet); Azure: uncommitted blocks,
        // invisible to listings and dropped by the service after 7 days.
        Kind::S3 | Kind::Azure | Kind::Gcs => assert_eq!(leftovers, std::slice::from_ref(&marker), "{kind:?}"),
        Kind::File => assert_eq!(leftovers, [staged.clone(), marker.clone()]),
    }
    let marker_body: Value = serde_json::from_slice(&landing.get(&marker).await.unwrap().unwrap()).unwrap();
    assert_eq!(marker_body["staged"], staged);
    assert_eq!(
        marker_body["target"].as_str().unwrap().rsplit('/').next(),
        Some("part-00001.jsonl")
    );
    if kind == Kind::S3 {
        let uploads = target.s3_uploads();
        assert_eq!(uploads.len(), 1, "{uploads:?}");
        assert_eq!(uploads[0]["key"], format!("{}/{staged}", target.prefix));
        assert_eq!(uploads[0]["upload_id"], marker_body["upload_id"]);
    }

    // `check` reports the unfinished upload.
    let check = landfall(&["check", "--config", config.to_str().unwrap()], &[], &[]).await;
    let report: Value = serde_json::from_slice(&check.stdout).unwrap_or_else(|_| panic!("{}", stderr(&check)));
    let staging_step = step(&report, "landing_staging");
    assert!(
        staging_step["detail"].as_str().unwrap().contains(&format!(
            "1 unfinished upload(s) under shop/_tmp/ from run(s) {first_run}"
        )),
        "{staging_step}"
    );

    // The next run (here with stale_upload_after: 0s) aborts the upload, cleans the
    // staging and resumes from the checkpoint: every record is landed.
    let config = write_config(
        &dir,
        &api.uri(),
        KILL_STREAM,
        &target.yaml(&format!("{extra}  stale_upload_after: 0s\n")),
    );
    let resumed = landfall(&["run", "--config", config.to_str().unwrap()], &[], &[]).await;
    assert_eq!(resumed.status.code(), Some(0), "{kind:?}: {}", stderr(&resumed));
    let cleaned = log_events(&resumed, "stale_upload_cleaned");
    assert_eq!(cleaned.len(), 1, "{kind:?}: {}", stderr(&resumed));
    assert_eq!(field(&cleaned[0], "upload_run_id"), first_run);
    assert!(landing.list("shop/_tmp").await.unwrap().is_empty(), "{kind:?}");
    if kind == Kind::S3 {
        assert_eq!(target.s3_uploads(), Vec::<Value>::new(), "the open upload was aborted");
    }
    let mut seqs = std::collections::BTreeSet::new();
    for part in landing.list("shop/events").await.unwrap() {
        for line in text(&landing.get(&part).await.unwrap().unwrap()).lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            seqs.insert(raw_field(&line, "seq").as_u64().unwrap());
        }
    }
    assert_eq!(seqs, (1..=90).collect(), "{kind:?}: no record lost");
    let state: Value = serde_json::from_slice(&landing.get("shop/_state/events.json").await.unwrap().unwrap()).unwrap();
    assert_eq!(state["cursor"], "90");
}

#[tokio::test]
async fn a_run_killed_mid_run_resumes_on_file() {
    in_store(Target::file("sigkill"), sigkill_and_resume).await;
}

#[tokio::test]
#[ignore = "needs moto and Azurite; run by tests/storage/run.sh"]
async fn a_run_killed_mid_upload_leaves_no_partial_part_and_resumes() {
    on_emulators("sigkill", sigkill_and_resume).await;
}

// ---------------------------------------------------------------------------------------
// Scenario: `landfall check`
// ---------------------------------------------------------------------------------------

async fn check_passes(target: &Target) {
    let (_api, _dir, config) = shop_config(&target.yaml("")).await;
    let output = landfall(&["check", "--config", config.to_str().unwrap()], &[], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}: {}", target.kind, stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let landing_steps: Vec<(&str, bool)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["step"].as_str().unwrap().starts_with("landing_"))
        .map(|step| (step["step"].as_str().unwrap(), step["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        landing_steps,
        [
            ("landing_write", true),
            ("landing_read", true),
            ("landing_list", true),
            ("landing_delete", true),
            ("landing_staging", true)
        ]
    );
    let write = &step(&report, "landing_write")["detail"];
    assert!(
        write
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/shop/_check/", target.url)),
        "{write}"
    );
    assert!(
        target.landing().list("shop/_check").await.unwrap().is_empty(),
        "the probe is deleted"
    );
}

#[tokio::test]
async fn check_proves_write_read_list_delete_on_file() {
    in_store(Target::file("check"), check_passes).await;
}

#[tokio::test]
#[ignore = "needs moto and Azurite; run by tests/storage/run.sh"]
async fn check_proves_write_read_list_delete_on_every_store() {
    on_emulators("check", check_passes).await;
}

/// S3 on a moto server that enforces IAM, as a user with GetObject and ListBucket only.
#[tokio::test]
#[ignore = "needs a moto enforcing IAM; run by tests/storage/run.sh"]
async fn s3_permission_errors_exit_4_and_name_the_bucket_prefix_and_permission() {
    let [endpoint, bucket, key_id, secret] = required_env(
        "the S3 permission test",
        [
            "LANDFALL_TEST_S3_IAM_ENDPOINT",
            "LANDFALL_TEST_S3_IAM_BUCKET",
            "LANDFALL_TEST_S3_READONLY_KEY_ID",
            "LANDFALL_TEST_S3_READONLY_SECRET",
        ],
    );
    let prefix = unique("perm");
    let landing = format!(
        "landing:\n  url: 's3://{bucket}/{prefix}'\n  options: {{endpoint: '{endpoint}', allow_http: 'true', virtual_hosted_style_request: 'false'}}\n"
    );
    let (_api, _dir, config) = shop_config(&landing).await;
    let creds = [
        ("AWS_ACCESS_KEY_ID", key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];

    let check = landfall(&["check", "--config", config.to_str().unwrap()], &creds, &[]).await;
    assert_eq!(check.status.code(), Some(4), "{}", stderr(&check));
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["failed_step"], "landing_write");
    let message = step(&report, "landing_write")["detail"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(&format!(
            "permission denied to write s3://{bucket}/{prefix}/shop/_check/"
        )),
        "{message}"
    );
    assert!(message.contains("it needs s3:PutObject"), "{message}");
    assert!(message.contains("the store said: AccessDenied"), "{message}");
    // Listing is allowed: the staging report (a listing) passes.
    let staging = step(&report, "landing_staging");
    assert_eq!(staging["ok"], true, "{staging}");

    let run = landfall(&["run", "--config", config.to_str().unwrap()], &creds, &[]).await;
    assert_eq!(run.status.code(), Some(4), "{}", stderr(&run));
    let text = stderr(&run);
    assert!(
        text.contains(&format!("s3://{bucket}/{prefix}/shop/")) && text.contains("s3:PutObject"),
        "{text}"
    );
    assert!(!text.contains(secret.as_str()), "the secret key never reaches a log");
}

/// Azure on Azurite with a SAS that may read and list but not write.
#[tokio::test]
#[ignore = "needs Azurite; run by tests/storage/run.sh"]
async fn azure_permission_errors_exit_4_and_name_the_permission() {
    let target = Target::azure("perm");
    let [account, key] = required_env(
        "the Azure permission test",
        ["LANDFALL_TEST_AZURE_ACCOUNT", "LANDFALL_TEST_AZURE_KEY"],
    );
    let sas = helper(&["azure-sas", &account, &key, "rl"]).trim().to_owned();
    let (_api, _dir, config) = shop_config(&target.yaml("")).await;
    let creds = [("AZURE_STORAGE_SAS_TOKEN", sas.as_str())];
    let check = landfall(
        &["check", "--config", config.to_str().unwrap()],
        &creds,
        &["AZURE_STORAGE_ACCOUNT_KEY"],
    )
    .await;
    assert_eq!(check.status.code(), Some(4), "{}", stderr(&check));
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["failed_step"], "landing_write");
    let output = String::from_utf8_lossy(&check.stdout);
    assert!(
        output.contains(&format!("permission denied to write {}/shop/_check/", target.url)),
        "{output}"
    );
    assert!(output.contains("containers/blobs/write (SAS: c, w)"), "{output}");
    assert!(output.contains("AuthorizationPermissionMismatch"), "{output}");
    let signature = sas.split("sig=").nth(1).unwrap();
    assert!(
        !output.contains(signature) && !stderr(&check).contains(signature),
        "the SAS signature never leaks"
    );
}

/// A store's answer to a read of `shop/_state/customers.json` holding `cursor` (ETag `"e"`).
fn customers_state(cursor: &str) -> ResponseTemplate {
    let state =
        format!(r#"{{"state_version":1,"stream":"customers","cursor":"{cursor}","run_id":"r","updated_at":"x"}}"#);
    ResponseTemplate::new(200)
        .insert_header("ETag", "\"e\"")
        .insert_header("Last-Modified", "Tue, 01 Oct 2024 00:00:00 GMT")
        .set_body_string(state)
}

/// IRSA: with no static keys, object_store exchanges AWS_WEB_IDENTITY_TOKEN_FILE for
/// temporary credentials at the STS endpoint (an HTTPS stand-in started by run.sh that
/// answers only the expected role and token) and signs every S3 request with them (a mock
/// S3 checks the signature's key id and the session token).
#[tokio::test]
#[ignore = "needs the STS stand-in; run by tests/storage/run.sh"]
async fn s3_web_identity_credentials_are_exchanged_and_used() {
    use wiremock::matchers::{header, header_regex};
    let [sts] = required_env("the S3 web identity test", ["LANDFALL_TEST_STS_ENDPOINT"]);
    let s3 = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/bucket/prefix/shop/_state/customers.json"))
        .and(header_regex(
            "authorization",
            "^AWS4-HMAC-SHA256 Credential=ASIALANDFALLIRSATEST/",
        ))
        .and(header("x-amz-security-token", "irsa-session-token"))
        .respond_with(customers_state("2024-07-01T00:00:00Z"))
        .expect(1)
        .mount(&s3)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(403).set_body_string("<Error><Code>InvalidAccessKeyId</Code></Error>"))
        .with_priority(10)
        .mount(&s3)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsYW5kZmFsbCJ9.c2ln\n").unwrap();
    // The STS stand-in's certificate is self-signed.
    let landing = format!(
        "landing:\n  url: s3://bucket/prefix\n  options: {{endpoint: '{}', allow_http: 'true', virtual_hosted_style_request: 'false', region: us-east-1, allow_invalid_certificates: 'true'}}\n  retry: {{max_retries: 0}}\n",
        s3.uri()
    );
    let config = write_config(&dir, "https://api.test", SHOP_STREAMS, &landing);
    let args = state_show(&config, "customers");
    let web_identity = [
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/landfall-writer"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ROLE_SESSION_NAME", "landfall-test"),
        ("AWS_ENDPOINT_URL_STS", sts.as_str()),
        ("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9"),
    ];
    let static_keys = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ];
    let output = landfall(&args, &web_identity, &static_keys).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("2024-07-01T00:00:00Z"));

    // A token the role does not trust: STS refuses, and nothing is read.
    std::fs::write(&token, "not-the-token").unwrap();
    let output = landfall(&args, &web_identity, &static_keys).await;
    assert_ne!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("AssumeRoleWithWebIdentity") || stderr(&output).contains("InvalidIdentityToken"),
        "{}",
        stderr(&output)
    );
}

// ---------------------------------------------------------------------------------------
// Transient errors (a mock answering as S3 with failures moto cannot produce)
// ---------------------------------------------------------------------------------------

fn s3_mock_landing(server: &MockServer, max_retries: u32) -> Landing {
    let mut config = LandingConfig {
        url: "s3://bucket/prefix".into(),
        options: options(&[
            ("endpoint", &server.uri()),
            ("allow_http", "true"),
            ("virtual_hosted_style_request", "false"),
            ("region", "us-east-1"),
            // No credential lookup (and no metadata-service probe) for a mock.
            ("skip_signature", "true"),
        ]),
        ..Default::default()
    };
    config.retry.max_retries = max_retries;
    config.retry.initial_backoff = landfall::settings::HumanDuration(Duration::from_millis(5));
    config.retry.max_backoff = landfall::settings::HumanDuration(Duration::from_millis(20));
    Landing::open(&config).unwrap()
}

/// The error of a create-only write to a mock S3 answering every PUT with `status`, with
/// `max_retries`; the server is returned for its request count.
async fn put_refused(status: u16, max_retries: u32) -> (LandingError, MockServer) {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    let error = s3_mock_landing(&server, max_retries)
        .put_new("shop/x.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    (error, server)
}

#[tokio::test]
async fn transient_storage_errors_are_retried_with_backoff() {
    use landfall::error::Classify;
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503).set_body_string("<Error><Code>SlowDown</Code></Error>"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).insert_header("ETag", "\"e1\""))
        .with_priority(5)
        .mount(&server)
        .await;
    let landing = s3_mock_landing(&server, 3);
    let version = landing.put_new("shop/x.json", Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(version.e_tag.as_deref(), Some("\"e1\""));
    let puts = server.received_requests().await.unwrap();
    assert_eq!(puts.len(), 3, "two 503s retried, then stored");
    assert!(
        puts.iter()
            .all(|request| request.headers.get("if-none-match").unwrap() == "*")
    );

    // Out of retries: a retryable STORAGE_ERROR, so the run exits 75.
    let (error, failing) = put_refused(503, 1).await;
    assert_eq!(error.code(), landfall::error::ErrorCode::StorageError);
    assert!(error.retryable(), "{error}");
    assert_eq!(
        landfall::error::Exit::for_error(error.code(), error.retryable()).code(),
        75
    );
    assert_eq!(failing.received_requests().await.unwrap().len(), 2);

    // A 400 is not transient.
    let (error, bad) = put_refused(400, 3).await;
    assert!(!error.retryable(), "{error}");
    assert_eq!(bad.received_requests().await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// GCS: the emulator for reads, lists and deletes; a mock for the XML API writes
// ---------------------------------------------------------------------------------------

/// Seeds an object through fake-gcs-server's JSON API (object_store writes through the XML
/// API, which the emulator does not implement).
async fn gcs_seed(target: &Target, relative: &str, body: &str) {
    let endpoint = env("LANDFALL_TEST_GCS_ENDPOINT").unwrap();
    let bucket = env("LANDFALL_TEST_GCS_BUCKET").unwrap();
    let name = format!("{}/{relative}", target.prefix);
    let url = format!("{endpoint}/upload/storage/v1/b/{bucket}/o");
    let response = reqwest::Client::new()
        .post(url)
        .query(&[("uploadType", "media"), ("name", name.as_str())])
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
}

#[tokio::test]
#[ignore = "needs fake-gcs-server; run by tests/storage/run.sh"]
async fn gcs_reads_lists_and_deletes_on_the_emulator() {
    let target = Target::gcs_emulator("gcs-read");
    let state = r#"{"state_version":1,"stream":"customers","cursor":"2024-05-02T00:00:00Z","run_id":"r0","updated_at":"2024-05-02T00:00:01.000000Z"}"#;
    gcs_seed(&target, "shop/_state/customers.json", state).await;
    gcs_seed(
        &target,
        "shop/customers/extracted_date=2024-05-02/run_id=r0/part-00000.jsonl",
        "{}\n",
    )
    .await;
    let landing = target.landing();

    let (bytes, version) = landing
        .get_versioned("shop/_state/customers.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bytes, state);
    assert!(version.version.is_some(), "GCS reports the generation: {version:?}");
    assert!(version.e_tag.is_some());
    let (size, head) = landing.head("shop/_state/customers.json").await.unwrap().unwrap();
    assert_eq!((size, head), (state.len() as u64, version));
    assert_eq!(
        landing.list("shop").await.unwrap(),
        [
            "shop/_state/customers.json",
            "shop/customers/extracted_date=2024-05-02/run_id=r0/part-00000.jsonl"
        ]
    );
    assert!(landing.get("shop/_state/missing.json").await.unwrap().is_none());

    // The binary reads state from gs://.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "https://api.test", SHOP_STREAMS, &target.yaml(""));
    let show = landfall(&state_show(&config, "customers"), &[], &[]).await;
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    assert!(String::from_utf8_lossy(&show.stdout).contains("2024-05-02T00:00:00Z"));

    // A marker left by a killed run is found and reported from the emulator.
    gcs_seed(
        &target,
        "shop/_tmp/r9/customers/part-00001.jsonl.gz.upload.json",
        r#"{"upload_id":"u1","staged":"shop/_tmp/r9/customers/part-00001.jsonl.gz.partial","target":"t","run_id":"r9","created_at":"x"}"#,
    )
    .await;
    let stale = landfall::landing::upload::find_stale(&landing, "shop", Duration::ZERO, None)
        .await
        .unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].marker.as_ref().unwrap().upload_id.as_deref(), Some("u1"));

    landing.delete("shop/_state/customers.json").await.unwrap();
    landing.delete("shop/_state/customers.json").await.unwrap();
    assert!(!landing.exists("shop/_state/customers.json").await.unwrap());
}

/// What the GCS XML API answers, recorded: a mock for request shape only (fake-gcs-server
/// cannot take object_store's writes).
#[derive(Clone, Default)]
struct GcsXml {
    /// Answer the create-only PUT of this object name suffix with 412.
    taken: Option<&'static str>,
    /// Answer every PUT with 403 and GCS's permission message.
    deny: bool,
    /// Set by a server-side copy: the copied object then answers HEAD with this size.
    copied: std::sync::Arc<std::sync::atomic::AtomicBool>,
    copied_size: usize,
}

impl Respond for GcsXml {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query = request.url.query().unwrap_or_default();
        let object = urlencoding_decode(request.url.path());
        let generation = ResponseTemplate::new(200)
            .insert_header("ETag", "\"etag-1\"")
            .insert_header("x-goog-generation", "1700000000000001");
        match (request.method.as_str(), query) {
            ("PUT", _) if self.deny => ResponseTemplate::new(403).set_body_string(
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access denied.</Message><Details>bot@p.iam.gserviceaccount.com does not have storage.objects.create access to the Google Cloud Storage object. Permission 'storage.objects.create' denied on resource (or it may not exist).</Details></Error>",
            ),
            ("PUT", q) if q.is_empty() && self.taken.is_some_and(|name| object.ends_with(name)) => {
                ResponseTemplate::new(412).set_body_string("<Error><Code>PreconditionFailed</Code></Error>")
            }
            ("PUT", "") => {
                if request.headers.contains_key("x-goog-copy-source") {
                    self.copied.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                generation
            }
            ("POST", "uploads=") => ResponseTemplate::new(200).set_body_string(
                "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>upload-7</UploadId></InitiateMultipartUploadResult>",
            ),
            ("PUT", q) if q.contains("partNumber=") => ResponseTemplate::new(200).insert_header("ETag", "\"part\""),
            ("POST", q) if q.starts_with("uploadId=") => ResponseTemplate::new(200)
                .insert_header("x-goog-generation", "1700000000000002")
                .set_body_string(
                    "<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>\"done\"</ETag></CompleteMultipartUploadResult>",
                ),
            ("DELETE", _) => ResponseTemplate::new(204),
            ("HEAD", _) if self.copied.load(std::sync::atomic::Ordering::SeqCst) => generation
                .insert_header("Last-Modified", "Tue, 01 Oct 2024 00:00:00 GMT")
                .set_body_bytes(vec![0; self.copied_size]),
            ("HEAD", _) => ResponseTemplate::new(404),
            ("GET", _) => generation
                .insert_header("Last-Modified", "Tue, 01 Oct 2024 00:00:00 GMT")
                .set_body_string("other bytes"),
            _ => ResponseTemplate::new(400),
        }
    }
}

/// Mounts `xml` as the answer to every request to `server`.
async fn mount_gcs_xml(server: &MockServer, xml: GcsXml) {
    Mock::given(wiremock::matchers::any())
        .respond_with(xml)
        .mount(server)
        .await;
}

fn urlencoding_decode(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={path}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// A service-account file that turns OAuth off: no credential lookup and no metadata-server
/// probe for a mock (object_store's GCS writes ignore `skip_signature`).
fn no_oauth_service_account(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("no-oauth.json");
    std::fs::write(
        &path,
        r#"{"disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}"#,
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

fn gcs_mock_config(server: &MockServer, dir: &tempfile::TempDir) -> LandingConfig {
    let mut config = LandingConfig {
        url: "gs://bucket/prefix".into(),
        options: options(&[
            ("base_url", &server.uri()),
            ("allow_http", "true"),
            ("service_account", &no_oauth_service_account(dir)),
        ]),
        ..Default::default()
    };
    config.retry.max_retries = 0;
    config
}

fn header_of(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn gcs_requests_carry_the_generation_preconditions() {
    let server = MockServer::start().await;
    mount_gcs_xml(
        &server,
        GcsXml {
            taken: Some("shop/taken.json"),
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let landing = Landing::open(&gcs_mock_config(&server, &dir)).unwrap();

    // Create-only: x-goog-if-generation-match: 0; the generation comes back as the version.
    let version = landing.put_new("shop/a.json", Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(version.version.as_deref(), Some("1700000000000001"));
    let requests = server.received_requests().await.unwrap();
    let create = requests.last().unwrap();
    assert_eq!(create.method.as_str(), "PUT");
    assert_eq!(urlencoding_decode(create.url.path()), "/bucket/prefix/shop/a.json");
    assert_eq!(header_of(create, "x-goog-if-generation-match").as_deref(), Some("0"));

    // 412 on a create: the object exists (and holds other bytes).
    let error = landing
        .put_new("shop/taken.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(error, LandingError::AlreadyExists { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("gs://bucket/prefix/shop/taken.json already exists"),
        "{error}"
    );

    // Conditional update: matches the generation, not the ETag.
    let expected = ObjectVersion {
        e_tag: Some("\"etag-0\"".into()),
        version: Some("1700000000000000".into()),
    };
    landing
        .put_if_version("shop/a.json", Bytes::from_static(b"{\"v\":2}"), &expected)
        .await
        .unwrap();
    let update = server.received_requests().await.unwrap().pop().unwrap();
    assert_eq!(
        header_of(&update, "x-goog-if-generation-match").as_deref(),
        Some("1700000000000000")
    );

    // A staged multipart part: initiate, parts, complete under _tmp/, then a create-only
    // server-side copy to the final name, then the staging is deleted.
    server.reset().await;
    let part_size = (6 << 20) + 3;
    mount_gcs_xml(
        &server,
        GcsXml {
            copied_size: part_size,
            ..Default::default()
        },
    )
    .await;
    let mut writer = big_part_after_one_chunk(&landing, "y").await;
    writer.append(b"{}\n").await.unwrap();
    let stored = writer.finish().await.unwrap().unwrap();
    assert_eq!(stored.bytes, part_size as u64);
    let shape: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            let mut line = format!(
                "{} {}{}",
                request.method,
                urlencoding_decode(request.url.path()),
                request.url.query().map(|q| format!("?{q}")).unwrap_or_default()
            );
            for name in ["x-goog-if-generation-match", "x-goog-copy-source"] {
                if let Some(value) = header_of(request, name) {
                    line.push_str(&format!(" {name}: {}", urlencoding_decode(&value)));
                }
            }
            line
        })
        .collect();
    let staged = "/bucket/prefix/shop/_tmp/r1/big/part-00000.jsonl.partial";
    // The two parts upload concurrently: compare them in order of part number.
    let mut shape = shape;
    shape[3..5].sort();
    assert_eq!(
        shape,
        [
            "HEAD /bucket/prefix/shop/big/part-00000.jsonl".to_owned(),
            format!("POST {staged}?uploads="),
            "PUT /bucket/prefix/shop/_tmp/r1/big/part-00000.jsonl.upload.json x-goog-if-generation-match: 0".to_owned(),
            format!("PUT {staged}?partNumber=1&uploadId=upload-7"),
            format!("PUT {staged}?partNumber=2&uploadId=upload-7"),
            format!("POST {staged}?uploadId=upload-7"),
            "PUT /bucket/prefix/shop/big/part-00000.jsonl x-goog-if-generation-match: 0 x-goog-copy-source: bucket/prefix/shop/_tmp/r1/big/part-00000.jsonl.partial".to_owned(),
            "HEAD /bucket/prefix/shop/big/part-00000.jsonl".to_owned(),
            format!("DELETE {staged}"),
            "DELETE /bucket/prefix/shop/_tmp/r1/big/part-00000.jsonl.upload.json".to_owned(),
        ],
        "{shape:#?}"
    );
}

#[tokio::test]
async fn gcs_permission_errors_exit_4_and_name_the_permission() {
    let server = MockServer::start().await;
    mount_gcs_xml(
        &server,
        GcsXml {
            deny: true,
            ..Default::default()
        },
    )
    .await;
    let api = shop_api().await;
    let dir = tempfile::tempdir().unwrap();
    let landing = format!(
        "landing:\n  url: gs://bucket/prefix\n  options: {{base_url: '{}', allow_http: 'true', service_account: '{}'}}\n  retry: {{max_retries: 0}}\n",
        server.uri(),
        no_oauth_service_account(&dir)
    );
    let config = write_config(&dir, &api.uri(), SHOP_STREAMS, &landing);
    let check = landfall(&["check", "--config", config.to_str().unwrap()], &[], &[]).await;
    assert_eq!(check.status.code(), Some(4), "{}", stderr(&check));
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains("permission denied to write gs://bucket/prefix/shop/_check/"),
        "{report}"
    );
    assert!(
        report.contains("does not have storage.objects.create access"),
        "{report}"
    );
}

/// Workload identity federation: the subject token is exchanged at STS, the federated
/// token traded for a service account's, and that token signs the GCS requests.
#[tokio::test]
async fn gcs_external_account_credentials_are_exchanged_and_used() {
    use wiremock::matchers::{body_string_contains, header};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/token"))
        .and(body_string_contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"))
        .and(body_string_contains("subject_token=k8s-service-account-jwt"))
        .and(body_string_contains("subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt"))
        .and(body_string_contains("audience=%2F%2Fiam.googleapis.com%2Fprojects%2F1%2Flocations%2Fglobal%2FworkloadIdentityPools%2Fpool%2Fproviders%2Fk8s"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "federated-token-123", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer", "expires_in": 3600})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/v1/projects/-/serviceAccounts/landfall@p.iam.gserviceaccount.com:generateAccessToken",
        ))
        .and(header("authorization", "Bearer federated-token-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "accessToken": "service-account-token-456", "expireTime": "2099-01-01T00:00:00Z"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer service-account-token-456"))
        .respond_with(customers_state("2024-06-01T00:00:00Z").insert_header("x-goog-generation", "5"))
        .expect(1)
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "k8s-service-account-jwt\n").unwrap();
    let credentials = dir.path().join("external-account.json");
    std::fs::write(
        &credentials,
        serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/k8s",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/v1/token", server.uri()),
            "service_account_impersonation_url": format!("{}/v1/projects/-/serviceAccounts/landfall@p.iam.gserviceaccount.com:generateAccessToken", server.uri()),
            "credential_source": {"file": token, "format": {"type": "text"}}
        })
        .to_string(),
    )
    .unwrap();
    let landing = format!(
        "landing:\n  url: gs://bucket/prefix\n  options: {{base_url: '{}', allow_http: 'true'}}\n  retry: {{max_retries: 0}}\n",
        server.uri()
    );
    let config = write_config(&dir, "https://api.test", SHOP_STREAMS, &landing);
    let output = landfall(
        &state_show(&config, "customers"),
        &[("GOOGLE_APPLICATION_CREDENTIALS", credentials.to_str().unwrap())],
        &[
            "GOOGLE_BEARER_TOKEN",
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("2024-06-01T00:00:00Z"));
    assert!(!stderr(&output).contains("service-account-token-456"));
}

// ---------------------------------------------------------------------------------------
// Config: what landing.options accepts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn credentials_in_landing_options_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let landing =
        "landing:\n  url: s3://bucket/prefix\n  options: {secret_access_key: '${env:HOME}', region: eu-west-1}\n";
    let config = write_config(&dir, "https://api.test", SHOP_STREAMS, landing);
    let output = landfall(&["validate", "--config", config.to_str().unwrap()], &[], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("landing.options.secret_access_key: credentials are not read from the config file"),
        "{message}"
    );
    let landing = "landing:\n  url: az://container/prefix\n  options: {account: acct}\n";
    let config = write_config(&dir, "https://api.test", SHOP_STREAMS, landing);
    let output = landfall(&["validate", "--config", config.to_str().unwrap()], &[], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("landing.options.account: unknown Azure Blob option; did you mean `account_name`?"),
        "{}",
        stderr(&output)
    );
    let landing = "landing:\n  url: s3://bucket/prefix\n  multipart_chunk: 1MiB\n";
    let config = write_config(&dir, "https://api.test", SHOP_STREAMS, landing);
    let output = landfall(&["validate", "--config", config.to_str().unwrap()], &[], &[]).await;
    assert!(
        stderr(&output).contains("landing.multipart_chunk: S3 needs multipart chunks of at least 5MiB"),
        "{}",
        stderr(&output)
    );
}

// ---------------------------------------------------------------------------------------
// GCS live profile: the write scenarios against a real bucket, opt-in
// ---------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs a real GCS bucket (LANDFALL_GCS_LIVE_BUCKET); run by scripts/test integration_live"]
async fn gcs_live_profile() {
    // First that the credentials reach the bucket at all, with a clear message if not.
    let target = Target::gcs_live("live");
    let landing = target.landing();
    let probe = "shop/_check/live-probe";
    landing
        .put_new(probe, Bytes::from_static(b"live"))
        .await
        .unwrap_or_else(|error| panic!("live GCS bucket {}: {error}", target.url));
    landing.delete(probe).await.unwrap();
    // Then every write scenario, each under its own prefix, removed afterwards.
    in_store(Target::gcs_live("full"), full_extraction).await;
    in_store(Target::gcs_live("multipart"), multipart_rolling).await;
    in_store(Target::gcs_live("create-only"), create_only).await;
    in_store(Target::gcs_live("state"), state_scenarios).await;
    in_store(Target::gcs_live("sigkill"), sigkill_and_resume).await;
    in_store(Target::gcs_live("check"), check_passes).await;
}
