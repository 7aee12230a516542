//! The binary against misbehaving sources: a 5xx storm, a rate limit longer than the run
//! may last, rotating OAuth 2.0 refresh tokens across runs, and secrets that must not leak.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{Workspace, events, landfall, stderr, stdout};
use serde_json::{Value, json};
use wiremock::matchers::{any, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PAGES: u64 = 20;
const PER_PAGE: u64 = 5;

/// Cursor pagination over `PAGES` pages; `cursor` is the page number. Two of every three
/// requests fail with a rotating 5xx.
struct Storm {
    calls: AtomicUsize,
}

fn page(number: u64) -> Value {
    let records: Vec<Value> = (0..PER_PAGE)
        .map(|i| json!({"id": (number - 1) * PER_PAGE + i, "updated_at": format!("2024-01-01T00:{:02}:{:02}Z", number, i)}))
        .collect();
    let next = (number < PAGES).then(|| (number + 1).to_string());
    json!({"data": records, "next": next})
}

impl Respond for Storm {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call % 3 != 2 {
            return ResponseTemplate::new([500, 502, 503][call % 3 * 2 % 3]);
        }
        let number = request
            .url
            .query_pairs()
            .find(|(name, _)| name == "cursor")
            .map_or(1, |(_, value)| value.parse().unwrap());
        ResponseTemplate::new(200).set_body_json(page(number))
    }
}

const STREAM: &str = "{name: items, path: /items, records_path: /data, primary_key: [id], pagination: {type: cursor, cursor_path: /next, cursor_param: cursor}, incremental: {cursor_field: updated_at, param: since, start: '2024-01-01T00:00:00Z'}}";

fn config(ws: &Workspace, base: &str, source_extra: &str) -> std::path::PathBuf {
    ws.config(&format!(
        "version: 1\nsource:\n  name: shop\n  base_url: {base}\n{source_extra}\nstreams:\n  - {STREAM}\nlanding:\n  url: '{{landing}}'\n  part_max_records: 7\n"
    ))
}

#[tokio::test]
async fn a_5xx_storm_lands_every_record_exactly_once() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(Storm {
            calls: AtomicUsize::new(0),
        })
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = config(
        &ws,
        &server.uri(),
        "  retry: {max_attempts: 4, initial_delay: 1ms, max_delay: 2ms}\n  rate_limit: {requests_per_second: 1000, burst: 100}",
    );
    let output = landfall(&["run", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stream = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(stream["status"], "succeeded");
    assert_eq!(stream["pages"], PAGES);
    assert_eq!(stream["requests"], PAGES * 3);
    assert_eq!(stream["retries"], PAGES * 2);
    assert_eq!(stream["rows_written"], PAGES * PER_PAGE);
    let lines = ws.lines("shop", "items");
    let mut per_page: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in &lines {
        per_page
            .entry(line["_page"].as_u64().unwrap())
            .or_default()
            .push(line["_source_record_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(per_page.len() as u64, PAGES);
    for (number, ids) in &per_page {
        let expected: Vec<String> = ((number - 1) * PER_PAGE..number * PER_PAGE)
            .map(|id| id.to_string())
            .collect();
        assert_eq!(ids, &expected, "page {number}");
    }
    assert_eq!(ws.state("shop", "items").unwrap()["cursor"], "2024-01-01T00:20:04Z");
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_run_may_last_stops_it_as_partial() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .and(wiremock::matchers::query_param("cursor", "2"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(1)))
        .with_priority(10)
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = config(&ws, &server.uri(), "  retry: {budget: 2h}");
    let xcom = ws.dir.path().join("return.json");
    let output = landfall(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--max-duration",
            "5m",
            "--xcom-output",
            xcom.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let manifest = &ws.manifests("shop")[0];
    assert_eq!(manifest["status"], "partial");
    let stream = &manifest["streams"][0];
    assert_eq!(stream["status"], "partial");
    assert_eq!(stream["error"]["code"], "RATE_LIMIT");
    assert_eq!(stream["rows_written"], PER_PAGE);
    assert_eq!(ws.lines("shop", "items").len() as u64, PER_PAGE);
    // The checkpoint holds what was stored, so the next run resumes from there.
    assert_eq!(ws.state("shop", "items").unwrap()["cursor"], "2024-01-01T00:01:04Z");
    assert_eq!(stream["cursor_end"], "2024-01-01T00:01:04Z");
    let events = events(&output);
    let limited = events
        .iter()
        .find(|e| e["event"] == "rate_limited")
        .expect("rate_limited");
    assert_eq!(limited["cause"], "retry_after");
    assert!(events.iter().all(|e| e["event"] != "stream_failed"));
    let finished = events.iter().find(|e| e["event"] == "stream_finished").unwrap();
    assert_eq!(finished["status"], "partial");
    let summary: Value = serde_json::from_slice(&std::fs::read(&xcom).unwrap()).unwrap();
    assert_eq!(summary["exit_code"], 3);

    // Without a deadline the same wait exceeds nothing but the retry budget: a transient
    // failure (exit 75), still with page 1 landed.
    let ws = Workspace::new();
    let config = self::config(&ws, &server.uri(), "  retry: {budget: 10s}");
    let output = landfall(&["run", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert_eq!(ws.manifests("shop")[0]["streams"][0]["status"], "failed");
    assert_eq!(ws.lines("shop", "items").len() as u64, PER_PAGE);
}

const CLIENT_SECRET: &str = "cs-5ecr3t-77e1";
const FIRST_REFRESH: &str = "rt-first-9c8b7a";
const HMAC_SECRET: &str = "hm-5ecr3t-4d4d";

/// Token endpoint with single-use refresh tokens (each use returns a new one and revokes
/// the old), and a resource that accepts the tokens it issued. `echo` makes the resource
/// fail with a body quoting every credential it saw.
#[derive(Clone, Default)]
struct RotatingIdp {
    refresh: Arc<Mutex<String>>,
    issued: Arc<Mutex<Vec<String>>>,
    rotations: Arc<AtomicUsize>,
    echo: bool,
}

impl Respond for RotatingIdp {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.url.path() == "/oauth/token" {
            let form: BTreeMap<String, String> = url::form_urlencoded::parse(&request.body).into_owned().collect();
            let mut current = self.refresh.lock().unwrap();
            if form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
                || form.get("refresh_token") != Some(&*current)
            {
                return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
            }
            let n = self.rotations.fetch_add(1, Ordering::SeqCst) + 1;
            *current = format!("rt-rotated-{n}-5a5a5a");
            let access = format!("at-{n}-0b0b0b0b");
            self.issued.lock().unwrap().push(access.clone());
            return ResponseTemplate::new(200).set_body_json(
                json!({"access_token": access, "expires_in": 3600, "refresh_token": *current, "token_type": "bearer"}),
            );
        }
        let authorization = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if self.echo {
            return ResponseTemplate::new(500).set_body_string(format!(
                "upstream broke; you sent {authorization}; refresh {}",
                self.refresh.lock().unwrap()
            ));
        }
        let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
        if self.issued.lock().unwrap().iter().any(|issued| issued == token) {
            ResponseTemplate::new(200).set_body_json(page(PAGES))
        } else {
            ResponseTemplate::new(401)
        }
    }
}

fn oauth_config(ws: &Workspace, base: &str) -> std::path::PathBuf {
    config(
        ws,
        base,
        &format!(
            "  auth: {{type: oauth2, flow: refresh_token, token_url: '{base}/oauth/token', client_id: shop, client_secret: '${{env:CS}}', refresh_token: '${{env:RT}}'}}\n  retry: {{max_attempts: 2, initial_delay: 1ms, max_delay: 2ms}}"
        ),
    )
}

fn secrets_env() -> Vec<(&'static str, &'static str)> {
    vec![("CS", CLIENT_SECRET), ("RT", FIRST_REFRESH), ("HMAC", HMAC_SECRET)]
}

/// Every text a run leaves behind: its output and every file in the landing zone.
fn haystacks(ws: &Workspace, outputs: &[&std::process::Output]) -> Vec<String> {
    let mut texts = Vec::new();
    for output in outputs {
        texts.push(stderr(output));
        texts.push(stdout(output));
    }
    for file in common::files_under(&ws.landing()) {
        let bytes = std::fs::read(&file).unwrap();
        let text = if file.extension().is_some_and(|ext| ext == "gz") {
            common::read_part(&file)
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        texts.push(text);
    }
    texts
}

#[tokio::test]
async fn rotated_refresh_tokens_carry_to_the_next_run_and_no_secret_leaks() {
    let server = MockServer::start().await;
    let idp = RotatingIdp {
        refresh: Arc::new(Mutex::new(FIRST_REFRESH.to_owned())),
        ..Default::default()
    };
    Mock::given(any()).respond_with(idp.clone()).mount(&server).await;
    let ws = Workspace::new();
    let config = oauth_config(&ws, &server.uri());
    let env = secrets_env();
    let args = ["run", "--config", config.to_str().unwrap()];
    let run = || landfall(&args, &env);

    let first = run().await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let saved = ws.landing().join("shop/_state/_auth.json");
    assert!(saved.exists());
    // The first refresh token is now revoked; the second run must use the rotated one.
    let second = run().await;
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert_eq!(idp.rotations.load(Ordering::SeqCst), 2);
    let refreshed: Vec<Value> = events(&second)
        .into_iter()
        .filter(|e| e["event"] == "token_refreshed")
        .collect();
    assert_eq!(refreshed.len(), 1);
    assert_eq!(refreshed[0]["rotated"], true);

    // `check` rotates too, and keeps the new token as well.
    let check = landfall(&["check", "--config", config.to_str().unwrap()], &secrets_env()).await;
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    let third = run().await;
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));

    // A run whose source echoes every credential back in its errors.
    let echo = RotatingIdp {
        echo: true,
        ..idp.clone()
    };
    let echo_server = MockServer::start().await;
    Mock::given(any()).respond_with(echo).mount(&echo_server).await;
    let echo_ws = Workspace::new();
    let echo_config = oauth_config(&echo_ws, &echo_server.uri());
    std::fs::create_dir_all(echo_ws.landing().join("shop/_state")).unwrap();
    std::fs::copy(&saved, echo_ws.landing().join("shop/_state/_auth.json")).unwrap();
    let failed = landfall(&["run", "--config", echo_config.to_str().unwrap()], &secrets_env()).await;
    assert_eq!(failed.status.code(), Some(75), "{}", stderr(&failed));
    assert!(stderr(&failed).contains("you sent Bearer ***"), "{}", stderr(&failed));

    // An HMAC run whose source echoes the secret.
    let hmac_server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(403).set_body_string(format!("signature with {HMAC_SECRET} is wrong")))
        .mount(&hmac_server)
        .await;
    let hmac_ws = Workspace::new();
    let hmac_config = self::config(
        &hmac_ws,
        &hmac_server.uri(),
        "  auth: {type: hmac, secret: '${env:HMAC}'}",
    );
    let refused = landfall(&["run", "--config", hmac_config.to_str().unwrap()], &secrets_env()).await;
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));

    let mut secrets: Vec<String> = vec![CLIENT_SECRET.into(), FIRST_REFRESH.into(), HMAC_SECRET.into()];
    secrets.extend(idp.issued.lock().unwrap().iter().cloned());
    for n in 1..=idp.rotations.load(Ordering::SeqCst) {
        secrets.push(format!("rt-rotated-{n}-5a5a5a"));
    }
    let mut texts = haystacks(&ws, &[&first, &second, &check, &third]);
    texts.extend(haystacks(&echo_ws, &[&failed]));
    texts.extend(haystacks(&hmac_ws, &[&refused]));
    for text in &texts {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{secret} leaked in: {text}");
        }
    }
}
