//! The `integration_live` profile: the example connectors against the real vendors' APIs,
//! and the landing backends against real cloud storage.
//!
//! Every test here is `#[ignore]`d, so `cargo test` never calls out; `scripts/test
//! integration_live` runs them with `--ignored`. A test whose credentials are not in the
//! environment prints `SKIP <test>: <reason>` and returns: it never substitutes made-up
//! data for a vendor's. The credentials are the ones each example's `<name>.env.example`
//! names; see docs/certification.md for what a passing run certifies.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use common::{Workspace, landfall, stderr, stdout};

/// Where the connectors' live credentials are documented.
const ENV_EXAMPLES: &str = "config-examples/<name>.env.example";

fn config_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config-examples")
        .join(format!("{name}.yaml"))
}

/// The variables that are not set, of `names`.
fn missing(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|name| std::env::var(name).map_or(true, |value| value.is_empty()))
        .map(|name| (*name).to_owned())
        .collect()
}

/// Says why a test did not run, in the form `scripts/test` collects (`SKIP <test>: ...`).
fn skip(test: &str, reason: &str) {
    println!("SKIP {test}: {reason}");
}

/// Whether every variable in `names` is set; if not, says so and which file documents them.
fn requires(test: &str, names: &[&str], documented_in: &str) -> bool {
    let absent = missing(names);
    if absent.is_empty() {
        return true;
    }
    skip(test, &format!("{} not set (see {documented_in})", absent.join(", ")));
    false
}

async fn landfall_with(args: &[&str], workspace: &Workspace) -> Output {
    let landing = format!("file://{}", workspace.landing().display());
    landfall(args, &[("LANDFALL_LANDING_URL", landing.as_str())]).await
}

fn expect_exit(output: &Output, allowed: &[i32], what: &str) {
    let code = output.status.code().unwrap_or(-1);
    assert!(
        allowed.contains(&code),
        "{what}: exit {code}\nstdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// How far back the live run reads an incremental stream, so that it stays small.
enum Since {
    /// A full-refresh stream, bounded by the run deadline only.
    Everything,
    /// An RFC 3339 cursor this many days ago.
    TimestampDaysAgo(i64),
    /// A Unix-seconds cursor this many days ago.
    UnixDaysAgo(i64),
}

/// Runs one stream of an example against the real API twice and checks what landed:
/// valid JSON records with their key and a matching payload hash, a manifest that adds up,
/// no secret anywhere, and (for incremental streams) a rerun that lands nothing twice.
async fn live_connector(test: &str, name: &str, stream: &str, secrets: &[&str], since: Since) {
    let workspace = Workspace::new();
    let config = config_path(name);
    let config = config.to_str().unwrap();

    let check = landfall_with(&["check", "--config", config], &workspace).await;
    expect_exit(&check, &[0], "check");

    let incremental = !matches!(since, Since::Everything);
    let cursor = match since {
        Since::Everything => None,
        Since::TimestampDaysAgo(days) => {
            Some((chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        Since::UnixDaysAgo(days) => Some(
            (chrono::Utc::now() - chrono::Duration::days(days))
                .timestamp()
                .to_string(),
        ),
    };
    if let Some(cursor) = &cursor {
        let set = landfall_with(
            &[
                "state", "set", "--config", config, "--stream", stream, "--value", cursor,
            ],
            &workspace,
        )
        .await;
        expect_exit(&set, &[0], "state set");
    }

    let run = ["run", "--config", config, "--stream", stream, "--max-duration", "3m"];
    let first = landfall_with(&run, &workspace).await;
    expect_exit(&first, &[0, 3], "first run");
    let second = landfall_with(&run, &workspace).await;
    expect_exit(&second, &[0, 3], "second run");

    let source = name_of_source(config);
    let manifests = workspace.manifests(&source);
    assert_eq!(manifests.len(), 2, "one manifest per run");
    let mut pairs_across_runs = HashSet::new();
    let mut landed = 0;
    for manifest in &manifests {
        assert!(
            ["succeeded", "partial"].contains(&manifest["status"].as_str().unwrap()),
            "{manifest:#}"
        );
        let report = &manifest["streams"][0];
        let listed: u64 = report["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|file| file["rows"].as_u64().unwrap())
            .sum();
        assert_eq!(listed, report["rows_written"].as_u64().unwrap(), "{report:#}");
        landed += listed;
    }
    let mut pairs_in_run: std::collections::HashMap<String, HashSet<(String, String)>> = Default::default();
    for line in workspace.lines(&source, stream) {
        let raw = line["_raw"].as_str().expect("_raw is a string");
        let record: Value = serde_json::from_str(raw).expect("each record is JSON as the vendor sent it");
        assert!(record.is_object(), "{raw}");
        assert_eq!(
            line["_payload_sha256"].as_str().unwrap(),
            landfall::hash::sha256_hex(raw.as_bytes()),
            "the hash covers the exact bytes"
        );
        let id = line["_source_record_id"].as_str().expect("a primary key").to_owned();
        let pair = (id, line["_payload_sha256"].as_str().unwrap().to_owned());
        let run_id = line["_run_id"].as_str().unwrap().to_owned();
        assert!(
            pairs_in_run.entry(run_id).or_default().insert(pair.clone()),
            "a record landed twice within one run: {pair:?}"
        );
        if incremental {
            assert!(
                pairs_across_runs.insert(pair.clone()),
                "the rerun landed an unchanged record again: {pair:?}"
            );
        }
    }
    println!("LIVE {test}: {landed} records landed in two runs of {name}.{stream}");

    let values: Vec<String> = secrets.iter().filter_map(|name| std::env::var(name).ok()).collect();
    for output in [&check, &first, &second] {
        for value in &values {
            assert!(!stdout(output).contains(value.as_str()) && !stderr(output).contains(value.as_str()));
        }
    }
    for path in common::files_under(&workspace.landing()) {
        let text = if path.extension().is_some_and(|ext| ext == "gz") {
            common::read_part(&path)
                .iter()
                .map(Value::to_string)
                .collect::<String>()
        } else {
            String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()
        };
        for value in &values {
            assert!(
                !text.contains(value.as_str()),
                "a secret leaked into {}",
                path.display()
            );
        }
    }
}

fn name_of_source(config: &str) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    landfall::config::ConnectorConfig::from_yaml(&text, landfall::config::Resolve::SyntaxOnly, &|_| None)
        .unwrap()
        .config
        .source
        .name
}

#[tokio::test]
#[ignore = "needs api.github.com and its credentials; run by scripts/test integration_live"]
async fn live_github_issues() {
    if requires("live_github_issues", &["GITHUB_TOKEN"], ENV_EXAMPLES) {
        live_connector(
            "live_github_issues",
            "github",
            "issues",
            &["GITHUB_TOKEN"],
            Since::TimestampDaysAgo(3),
        )
        .await;
    }
}

#[tokio::test]
#[ignore = "needs api.stripe.com and its credentials; run by scripts/test integration_live"]
async fn live_stripe_charges() {
    if requires("live_stripe_charges", &["STRIPE_SECRET_KEY"], ENV_EXAMPLES) {
        live_connector(
            "live_stripe_charges",
            "stripe",
            "charges",
            &["STRIPE_SECRET_KEY"],
            Since::UnixDaysAgo(30),
        )
        .await;
    }
}

#[tokio::test]
#[ignore = "needs api.hubapi.com and its credentials; run by scripts/test integration_live"]
async fn live_hubspot_contacts() {
    let secrets = ["HUBSPOT_CLIENT_ID", "HUBSPOT_CLIENT_SECRET", "HUBSPOT_REFRESH_TOKEN"];
    if requires("live_hubspot_contacts", &secrets, ENV_EXAMPLES) {
        live_connector(
            "live_hubspot_contacts",
            "hubspot",
            "contacts",
            &secrets[1..],
            Since::Everything,
        )
        .await;
    }
}

#[tokio::test]
#[ignore = "needs a Zendesk account and its credentials; run by scripts/test integration_live"]
async fn live_zendesk_tickets() {
    let needed = ["ZENDESK_API_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN"];
    if requires("live_zendesk_tickets", &needed, ENV_EXAMPLES) {
        live_connector(
            "live_zendesk_tickets",
            "zendesk",
            "tickets",
            &["ZENDESK_API_TOKEN"],
            Since::UnixDaysAgo(3),
        )
        .await;
    }
}

#[tokio::test]
#[ignore = "needs openexchangerates.org and its credentials; run by scripts/test integration_live"]
async fn live_open_exchange_rates() {
    if requires("live_open_exchange_rates", &["OXR_APP_ID"], ENV_EXAMPLES) {
        live_connector(
            "live_open_exchange_rates",
            "openexchangerates",
            "latest_rates",
            &["OXR_APP_ID"],
            Since::Everything,
        )
        .await;
    }
}

#[tokio::test]
#[ignore = "needs an Omnidesk account and its credentials; run by scripts/test integration_live"]
async fn live_omnidesk_cases() {
    let needed = ["OMNIDESK_API_URL", "OMNIDESK_STAFF_EMAIL", "OMNIDESK_API_KEY"];
    if requires("live_omnidesk_cases", &needed, ENV_EXAMPLES) {
        live_connector(
            "live_omnidesk_cases",
            "omnidesk",
            "cases",
            &["OMNIDESK_API_KEY"],
            Since::Everything,
        )
        .await;
    }
}

/// The demo connector, served on loopback, landing into a real bucket: `check` (write, read,
/// list, delete), a run, the checkpoint read back with `state show`, and a rerun that finds
/// nothing new. Objects stay under a fresh prefix: give the bucket an expiry rule for it.
async fn live_backend(test: &str, url_variable: &str) {
    if !requires(test, &[url_variable], "docs/certification.md, \"Live profile\"") {
        return;
    }
    let root = std::env::var(url_variable).unwrap();
    let landing = format!("{}/{test}-{}", root.trim_end_matches('/'), uuid::Uuid::now_v7());
    let api = landfall::demo::api::SampleApi::start(0).await.unwrap();
    let api_url = api.url();
    let dir = tempfile::tempdir().unwrap();
    let config = config_path("demo");
    let config = config.to_str().unwrap();
    let envs = [
        ("DEMO_API_URL", api_url.as_str()),
        ("LANDFALL_LANDING_URL", landing.as_str()),
    ];

    let check = landfall(&["check", "--config", config], &envs).await;
    expect_exit(&check, &[0], "check against the real store");

    let summary =
        |file: &str| -> Value { serde_json::from_slice(&std::fs::read(dir.path().join(file)).unwrap()).unwrap() };
    let first_path = dir.path().join("first.json");
    let first = landfall(
        &["run", "--config", config, "--xcom-output", first_path.to_str().unwrap()],
        &envs,
    )
    .await;
    expect_exit(&first, &[0], "first run");
    let first = summary("first.json");
    assert_eq!(first["status"], "succeeded", "{first:#}");
    for stream in ["customers", "orders", "products"] {
        assert!(
            first["streams"][stream]["rows_written"].as_u64().unwrap() > 0,
            "{first:#}"
        );
    }

    let state = landfall(&["state", "show", "--config", config, "--stream", "customers"], &envs).await;
    expect_exit(&state, &[0], "state show");
    let state: Value = serde_json::from_str(&stdout(&state)).unwrap();
    assert_eq!(state["cursor"], first["streams"]["customers"]["cursor_end"]);

    let second_path = dir.path().join("second.json");
    let second = landfall(
        &[
            "run",
            "--config",
            config,
            "--xcom-output",
            second_path.to_str().unwrap(),
        ],
        &envs,
    )
    .await;
    expect_exit(&second, &[0], "rerun");
    let second = summary("second.json");
    for stream in ["customers", "orders"] {
        assert_eq!(
            second["streams"][stream]["rows_written"], 0,
            "the rerun of an incremental stream over unchanged data lands nothing: {second:#}"
        );
    }
    api.stop().await;
    println!("LIVE {test}: landed under {landing}");
}

#[tokio::test]
#[ignore = "needs a real S3 bucket and its credentials; run by scripts/test integration_live"]
async fn live_landing_s3() {
    live_backend("live_landing_s3", "LANDFALL_LIVE_S3_URL").await;
}

#[tokio::test]
#[ignore = "needs a real Azure storage account and its credentials; run by scripts/test integration_live"]
async fn live_landing_azure() {
    live_backend("live_landing_azure", "LANDFALL_LIVE_AZURE_URL").await;
}

#[tokio::test]
#[ignore = "needs a real GCS bucket and its credentials; run by scripts/test integration_live"]
async fn live_landing_gcs() {
    live_backend("live_landing_gcs", "LANDFALL_LIVE_GCS_URL").await;
}

#[test]
fn missing_names_only_unset_or_empty_variables() {
    // The skip decision: a variable counts as absent when unset or empty.
    assert_eq!(
        missing(&["LANDFALL_LIVE_TEST_SURELY_UNSET_1", "PATH"]),
        ["LANDFALL_LIVE_TEST_SURELY_UNSET_1"]
    );
}
