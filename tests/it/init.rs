//! `landfall init` against the vendor-shaped fixtures of every example connector: the
//! proposal must match the shipped example's essentials (records_path, primary key,
//! pagination, incremental cursor where the example has one), `validate` must accept the
//! written file and `check` must pass with it against the same fixture. Then the error
//! paths: each with its documented exit code, nothing written, no secret echoed.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use axum::Router;
use axum::routing::get;
use landfall::config::{ConnectorConfig, Resolve, StreamConfig};

use common::vendors::*;
use common::{Workspace, landfall, stderr, stdout};

fn example(name: &str) -> ConnectorConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config-examples")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(path).unwrap();
    ConnectorConfig::from_yaml(&text, Resolve::SyntaxOnly, &|_| None)
        .unwrap()
        .config
}

/// One `landfall init` case: the flags, the environment it needs, and the example stream
/// it must reproduce.
struct Case<'a> {
    base_url: String,
    path: &'a str,
    flags: Vec<String>,
    envs: Vec<(&'a str, String)>,
    example: &'a str,
    stream: &'a str,
}

fn flags(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

async fn init(
    ws: &Workspace,
    base_url: &str,
    path: &str,
    extra: &[String],
    envs: &[(&str, String)],
) -> (Output, PathBuf) {
    let out = ws.dir.path().join("proposed.yaml");
    let mut args: Vec<String> = vec![
        "init".into(),
        "--base-url".into(),
        base_url.into(),
        "--path".into(),
        path.into(),
    ];
    args.extend(extra.iter().cloned());
    args.extend(["-o".into(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(name, value)| (*name, value.as_str())).collect();
    (landfall(&args, &envs).await, out)
}

/// The essentials of a stream, as the comparison sees them.
fn essentials(stream: &StreamConfig) -> serde_json::Value {
    let incremental = stream.incremental.as_ref().map(|incremental| {
        serde_json::json!({
            "cursor_field": incremental.cursor_field,
            "param": incremental.param,
            "format": incremental.cursor_format().to_string(),
        })
    });
    serde_json::json!({
        "records_path": stream.records_path,
        "primary_key": stream.primary_key,
        "pagination": serde_json::to_value(&stream.pagination).unwrap(),
        "incremental": incremental,
    })
}

/// Runs the case: init writes a config matching the example stream's essentials, which
/// `validate` accepts and `check` passes against the same fixture.
async fn proposes_the_example(case: Case<'_>) -> String {
    let ws = Workspace::new();
    let (output, out) = init(&ws, &case.base_url, case.path, &case.flags, &case.envs).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}: stdout {}\nstderr {}",
        case.example,
        stdout(&output),
        stderr(&output)
    );
    let text = std::fs::read_to_string(&out).expect("init wrote the config");
    let proposed = ConnectorConfig::from_yaml(&text, Resolve::SyntaxOnly, &|_| None)
        .unwrap_or_else(|error| panic!("{error}\n{text}"))
        .config;
    let shipped = example(case.example);
    let expected = shipped.stream(case.stream).expect("the example's stream");
    let got = &proposed.streams[0];
    assert_eq!(
        essentials(got),
        essentials(expected),
        "{}.{}: the proposal differs from the example\n{text}",
        case.example,
        case.stream
    );
    assert_eq!(
        proposed.source.auth.kind(),
        shipped.source.auth.kind(),
        "{}: auth kind",
        case.example
    );
    for (_, secret) in &case.envs {
        if secret.len() > 8 && !secret.starts_with("http") {
            assert!(!text.contains(secret.as_str()), "a secret value was written:\n{text}");
            assert!(!stdout(&output).contains(secret.as_str()) && !stderr(&output).contains(secret.as_str()));
        }
    }

    let config = out.display().to_string();
    let mut envs: Vec<(&str, &str)> = case.envs.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let validate = landfall(&["validate", "--config", &config], &envs).await;
    assert_eq!(
        validate.status.code(),
        Some(0),
        "validate: {}\n{text}",
        stderr(&validate)
    );
    let landing = format!("file://{}", ws.landing().display());
    envs.push(("LANDFALL_LANDING_URL", landing.as_str()));
    let check = landfall(&["check", "--config", &config], &envs).await;
    assert_eq!(
        check.status.code(),
        Some(0),
        "check: {}\n{}\n{text}",
        stdout(&check),
        stderr(&check)
    );
    text
}

#[tokio::test]
async fn github_issues_link_header_and_since() {
    let (fixture, _api) = github_fixture().await;
    let text = proposes_the_example(Case {
        base_url: fixture.url.clone(),
        path: "/repos/acme/widgets/issues",
        flags: flags(&[
            "--name",
            "github",
            "--auth",
            "bearer",
            "--token-env",
            "GITHUB_TOKEN",
            "--header",
            "Accept: application/vnd.github+json",
            "--header",
            "X-GitHub-Api-Version: 2022-11-28",
            "--param",
            "state=all",
            "--param",
            "sort=updated",
            "--param",
            "direction=asc",
            "--param",
            "per_page=100",
            "--param",
            "since=2024-01-01T00:00:00Z",
        ]),
        envs: vec![("GITHUB_TOKEN", GITHUB_TOKEN.to_owned())],
        example: "github",
        stream: "issues",
    })
    .await;
    assert!(text.contains("token: \"${env:GITHUB_TOKEN}\""), "{text}");
    assert!(text.contains("sorted: true"), "ascending on the page: {text}");
}

#[tokio::test]
async fn stripe_has_more_last_record_cursor_and_created() {
    let (fixture, _api) = stripe_fixture().await;
    let base = format!("{}/v1", fixture.url);
    let common = [
        "--username-env",
        "STRIPE_SECRET_KEY",
        "--header",
        "Stripe-Version: 2024-06-20",
        "--param",
        "limit=100",
    ];
    let envs = vec![("STRIPE_SECRET_KEY", STRIPE_KEY.to_owned())];
    proposes_the_example(Case {
        base_url: base.clone(),
        path: "/customers",
        flags: flags(&common),
        envs: envs.clone(),
        example: "stripe",
        stream: "customers",
    })
    .await;
    let mut charges = flags(&common);
    charges.extend(flags(&["--param", "created[gte]=1704067200"]));
    let text = proposes_the_example(Case {
        base_url: base,
        path: "/charges",
        flags: charges,
        envs,
        example: "stripe",
        stream: "charges",
    })
    .await;
    assert!(text.contains("sorted: false"), "newest first: {text}");
}

#[tokio::test]
async fn hubspot_nested_cursor_and_oauth2_refresh_token() {
    let (fixture, _api) = hubspot_fixture().await;
    let token_url = format!("{}/oauth/v1/token", fixture.url);
    proposes_the_example(Case {
        base_url: fixture.url.clone(),
        path: "/crm/v3/objects/contacts",
        flags: flags(&[
            "--token-url",
            &token_url,
            "--client-id",
            HUBSPOT_CLIENT_ID,
            "--client-secret-env",
            "HUBSPOT_CLIENT_SECRET",
            "--refresh-token-env",
            "HUBSPOT_REFRESH_TOKEN",
            "--param",
            "limit=2",
            "--param",
            "archived=true",
            "--param",
            "properties=email,lastmodifieddate",
        ]),
        envs: vec![
            ("HUBSPOT_CLIENT_SECRET", HUBSPOT_CLIENT_SECRET.to_owned()),
            ("HUBSPOT_REFRESH_TOKEN", HUBSPOT_REFRESH_TOKEN.to_owned()),
        ],
        example: "hubspot",
        stream: "contacts_archived",
    })
    .await;
}

#[tokio::test]
async fn zendesk_after_url_end_of_stream_and_unix_seconds_start_time() {
    let (fixture, _api) = zendesk_fixture().await;
    let base = format!("{}/api/v2", fixture.url);
    let auth = [
        "--username",
        "${env:ZENDESK_EMAIL}/token",
        "--password-env",
        "ZENDESK_API_TOKEN",
        "--param",
        "start_time=1704067200",
    ];
    let envs = vec![
        ("ZENDESK_EMAIL", ZENDESK_EMAIL.to_owned()),
        ("ZENDESK_API_TOKEN", ZENDESK_TOKEN.to_owned()),
    ];
    for (path, stream) in [
        ("/incremental/tickets/cursor.json", "tickets"),
        ("/incremental/users/cursor.json", "users"),
    ] {
        proposes_the_example(Case {
            base_url: base.clone(),
            path,
            flags: flags(&auth),
            envs: envs.clone(),
            example: "zendesk",
            stream,
        })
        .await;
    }
}

#[tokio::test]
async fn open_exchange_rates_whole_document_records_and_app_id_in_the_query() {
    let (fixture, _log) = oxr_fixture().await;
    let base = format!("{}/api", fixture.url);
    let envs = vec![("OXR_APP_ID", OXR_APP_ID.to_owned())];
    let text = proposes_the_example(Case {
        base_url: base.clone(),
        path: "/latest.json",
        flags: flags(&[
            "--query-env",
            "app_id=OXR_APP_ID",
            "--param",
            "base=USD",
            "--param",
            "show_alternative=false",
        ]),
        envs: envs.clone(),
        example: "openexchangerates",
        stream: "latest_rates",
    })
    .await;
    assert!(
        text.contains("# incremental:"),
        "a time field but no filter: left commented out\n{text}"
    );
    proposes_the_example(Case {
        base_url: base,
        path: "/currencies.json",
        flags: flags(&["--query-env", "app_id=OXR_APP_ID"]),
        envs,
        example: "openexchangerates",
        stream: "currencies",
    })
    .await;
}

#[tokio::test]
async fn omnidesk_records_keyed_by_position_and_page_numbers() {
    let (fixture, _api) = omnidesk_fixture().await;
    let base = format!("{}/api", fixture.url);
    for (path, stream) in [("/cases.json", "cases"), ("/users.json", "users")] {
        proposes_the_example(Case {
            base_url: base.clone(),
            path,
            flags: flags(&[
                "--username-env",
                "OMNIDESK_STAFF_EMAIL",
                "--password-env",
                "OMNIDESK_API_KEY",
                "--param",
                "page=1",
                "--param",
                "limit=100",
            ]),
            envs: vec![
                ("OMNIDESK_STAFF_EMAIL", OMNIDESK_EMAIL.to_owned()),
                ("OMNIDESK_API_KEY", OMNIDESK_KEY.to_owned()),
            ],
            example: "omnidesk",
            stream,
        })
        .await;
    }
}

#[tokio::test]
async fn demo_cursor_link_header_and_offset_streams() {
    let api = landfall::demo::api::SampleApi::start(0).await.unwrap();
    let base = format!("{}/v1", api.url());
    let auth = ["--token-env", "DEMO_API_TOKEN"];
    let since = "updated_since=2024-01-01T00:00:00Z";
    for (path, stream, params) in [
        ("/customers", "customers", vec!["limit=100", since]),
        ("/orders", "orders", vec!["per_page=2", since]),
        ("/products", "products", vec!["offset=0", "limit=50"]),
    ] {
        let mut all = flags(&auth);
        for param in params {
            all.extend(flags(&["--param", param]));
        }
        proposes_the_example(Case {
            base_url: base.clone(),
            path,
            flags: all,
            envs: vec![("DEMO_API_TOKEN", "demo-token".to_owned())],
            example: "demo",
            stream,
        })
        .await;
    }
    api.stop().await;
}

// ---------------------------------------------------------------------------------------
// Error paths: the contract's exit codes, nothing written, no secret echoed.

async fn refused(base_url: &str, path: &str, extra: &[&str], envs: &[(&str, String)]) -> (Output, bool) {
    let ws = Workspace::new();
    let (output, out) = init(&ws, base_url, path, &flags(extra), envs).await;
    (output, out.exists())
}

#[tokio::test]
async fn an_unreachable_host_is_a_transient_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let (output, written) = refused(&format!("http://127.0.0.1:{port}"), "/things", &[], &[]).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot fetch the first page"),
        "{}",
        stderr(&output)
    );
    assert!(!written);
}

#[tokio::test]
async fn a_body_that_is_not_json_or_has_no_records_fails_with_exit_1() {
    let (listener, url) = bind().await;
    let router = Router::new()
        .route("/html", get(|| async { "<html><body>Sign in</body></html>" }))
        .route("/numbers", get(|| async { axum::Json(serde_json::json!([1, 2, 3])) }));
    let _fixture = serve(listener, url.clone(), router);

    let (output, written) = refused(&url, "/html", &[], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("is not JSON"), "{}", stderr(&output));
    assert!(!written);

    let (output, written) = refused(&url, "/numbers", &[], &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no records in the response") && stderr(&output).contains("array of numbers"),
        "{}",
        stderr(&output)
    );
    assert!(!written);
}

#[tokio::test]
async fn refused_credentials_exit_4_without_echoing_them() {
    let (fixture, _api) = github_fixture().await;
    let wrong = "github_pat_wrong0token0for0this0test";
    let (output, written) = refused(
        &fixture.url,
        "/repos/acme/widgets/issues",
        &["--token-env", "GITHUB_TOKEN"],
        &[("GITHUB_TOKEN", wrong.to_owned())],
    )
    .await;
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(!stderr(&output).contains(wrong) && !stdout(&output).contains(wrong));
    assert!(!written);
}

#[tokio::test]
async fn bad_flags_are_usage_errors_that_never_echo_a_secret() {
    let url = "http://127.0.0.1:9";
    // The variable is not set: named, as it looks like a variable name.
    let (output, written) = refused(url, "/x", &["--token-env", "INIT_TEST_UNSET_TOKEN"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("INIT_TEST_UNSET_TOKEN"), "{}", stderr(&output));
    assert!(!written);
    // A secret typed where a variable name belongs is refused without being echoed.
    let secret = "ghp_literalSecretValue123";
    for extra in [
        vec!["--token-env", secret],
        vec!["--password-env", "sk-live:secret/value", "--username", "me"],
        vec!["--header", "Authorization: Bearer ghp_literalSecretValue123"],
        vec!["--param", "api_key=ghp_literalSecretValue123"],
    ] {
        let (output, written) = refused(url, "/x", &extra, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {}", stderr(&output));
        assert!(
            !stderr(&output).contains("ghp_literalSecretValue123") && !stderr(&output).contains("sk-live"),
            "{}",
            stderr(&output)
        );
        assert!(!written);
    }
    // Auth flags of two kinds, and a missing leading slash.
    for extra in [vec!["--token-env", "A", "--username", "me"], vec!["--auth", "bearer"]] {
        let (output, _) = refused(url, "/x", &extra, &[("A", "x".into())]).await;
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {}", stderr(&output));
    }
    let (output, _) = refused(url, "x", &[], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[tokio::test]
async fn an_existing_output_file_is_kept_unless_forced() {
    let (fixture, _log) = oxr_fixture().await;
    let ws = Workspace::new();
    let out = ws.dir.path().join("proposed.yaml");
    std::fs::write(&out, "mine\n").unwrap();
    let base = format!("{}/api", fixture.url);
    let envs = [("OXR_APP_ID", OXR_APP_ID.to_owned())];
    let args = flags(&["--query-env", "app_id=OXR_APP_ID"]);
    let (output, _) = init(&ws, &base, "/currencies.json", &args, &envs).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine\n");
    let mut forced = args.clone();
    forced.push("--force".into());
    let (output, _) = init(&ws, &base, "/currencies.json", &forced, &envs).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(std::fs::read_to_string(&out).unwrap().contains("records_path: /."));

    // Without -o the config goes to stdout, the summary to stderr.
    let output = landfall(
        &[
            "init",
            "--base-url",
            &base,
            "--path",
            "/currencies.json",
            "--query-env",
            "app_id=OXR_APP_ID",
        ],
        &[("OXR_APP_ID", OXR_APP_ID)],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let config = ConnectorConfig::from_yaml(&stdout(&output), Resolve::SyntaxOnly, &|_| None).unwrap();
    assert_eq!(config.config.source.name, "api");
    assert_eq!(config.config.streams[0].name, "currencies");
    assert!(stderr(&output).contains("records_path \"/.\""), "{}", stderr(&output));
}
