//! The HTTP client against loopback servers: auth strategies, retries, rate limits, the
//! circuit breaker and the transport. Waits run on a virtual clock unless a test measures
//! real time.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use landfall::config::{ConnectorConfig, Resolve};
use landfall::error::ErrorCode;
use landfall::http::config::Method;
use landfall::http::{
    CredentialStore, CredentialStoreError, HttpClient, HttpError, PostPolicy, Reason, RequestContext, RequestSpec,
    Response, Saved, StoredCredentials, VirtualClock,
};
use landfall::observe::events::Events;
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CONTEXT: RequestContext<'static> = RequestContext {
    stream: "items",
    page: 1,
};

/// A config with `source_extra` (YAML lines, two-space indented under `source`) and one
/// stream `stream_extra` (flow mapping entries), with references resolved from `env`.
fn config(base: &str, source_extra: &str, stream_extra: &str, env: &[(&str, &str)]) -> ConnectorConfig {
    let text = format!(
        "version: 1\nsource:\n  name: shop\n  base_url: {base}\n{source_extra}\nstreams:\n  - {{name: items, path: /items{stream_extra}}}\n"
    );
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    ConnectorConfig::from_yaml(&text, Resolve::References, &|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|error| panic!("{error}\n{text}"))
    .config
}

/// A config with `source_extra` only: one plain stream, no environment.
fn source_config(base: &str, source_extra: &str) -> ConnectorConfig {
    config(base, source_extra, "", &[])
}

/// A client for `config` that waits in real time.
fn real_client(config: &ConnectorConfig) -> HttpClient {
    HttpClient::new(&config.source, Events::new("test-run", "shop")).unwrap()
}

/// A client for `config` that waits on a virtual clock, and the clock.
fn client_for(config: &ConnectorConfig) -> (HttpClient, Arc<VirtualClock>) {
    let clock = VirtualClock::new();
    let client = real_client(config).with_sleeper(clock.clone());
    (client, clock)
}

fn get(config: &ConnectorConfig) -> RequestSpec {
    let url = format!("{}/items", config.source.base_url);
    RequestSpec {
        method: Method::Get,
        url: url::Url::parse(&url).unwrap(),
        headers: vec![],
        body: None,
        post: PostPolicy::default(),
        credentials: true,
    }
}

fn post(config: &ConnectorConfig) -> RequestSpec {
    let stream = &config.streams[0];
    RequestSpec {
        method: Method::Post,
        body: Some(br#"{"q":"x"}"#.to_vec()),
        post: PostPolicy {
            idempotency_key: stream.idempotency_key,
            retry: stream.retry_post,
        },
        ..get(config)
    }
}

async fn send(client: &HttpClient, spec: &RequestSpec) -> Result<Response, HttpError> {
    client.send(spec, CONTEXT).await
}

/// Sends one GET with a fresh client (virtual clock) for `config`.
async fn get_once(config: &ConnectorConfig) -> Result<Response, HttpError> {
    send(&client_for(config).0, &get(config)).await
}

/// Sends one POST with a fresh client (virtual clock) for `config`.
async fn post_once(config: &ConnectorConfig) -> Result<Response, HttpError> {
    send(&client_for(config).0, &post(config)).await
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": 1}]}))
}

async fn requests_to(server: &MockServer, route: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|request| request.url.path() == route)
        .collect()
}

/// Answers 401 unless the request matches.
async fn guarded(server: &MockServer, guard: Mock) {
    guard.mount(server).await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(server)
        .await;
}

/// Starts a server that answers `/items` with `answer` every time.
async fn serving(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/items")).respond_with(answer).mount(&server).await;
    server
}

/// Starts a server that answers `/items` with each `(answer, times)` in turn, then `ok()`.
async fn answering_then_ok(steps: Vec<(ResponseTemplate, u64)>) -> MockServer {
    let server = MockServer::start().await;
    let mut priority = 1;
    for (answer, times) in steps {
        Mock::given(path("/items"))
            .respond_with(answer)
            .up_to_n_times(times)
            .with_priority(priority)
            .mount(&server)
            .await;
        priority += 1;
    }
    Mock::given(path("/items"))
        .respond_with(ok())
        .with_priority(priority)
        .mount(&server)
        .await;
    server
}

// ---- auth -------------------------------------------------------------------------------

#[tokio::test]
async fn api_key_in_a_header_bearer_and_basic_are_sent() {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bot:pw-5566aabb")
    );
    // (auth type, header the server requires, its value, auth config, environment)
    let cases = [
        (
            "api_key",
            "x-api-key",
            "hk-1f2e3d4c5b",
            "  auth: {type: api_key, in: header, name: X-Api-Key, value: '${env:KEY}'}",
            ("KEY", "hk-1f2e3d4c5b"),
        ),
        (
            "bearer",
            "authorization",
            "Bearer bt-9a8b7c6d",
            "  auth: {type: bearer, token: '${env:TOKEN}'}",
            ("TOKEN", "bt-9a8b7c6d"),
        ),
        (
            "basic",
            "authorization",
            basic.as_str(),
            "  auth: {type: basic, username: bot, password: '${env:PASS}'}",
            ("PASS", "pw-5566aabb"),
        ),
    ];
    for (kind, name, value, auth, env) in cases {
        let server = MockServer::start().await;
        guarded(
            &server,
            Mock::given(path("/items")).and(header(name, value)).respond_with(ok()),
        )
        .await;
        let config = self::config(&server.uri(), auth, "", &[env]);
        get_once(&config)
            .await
            .unwrap_or_else(|error| panic!("{kind}: {error}"));
    }
}

#[tokio::test]
async fn api_key_in_the_query_is_sent_and_masked_in_errors() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .and(query_param("api_key", "qk-77aa88bb99"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad request for key qk-77aa88bb99"))
        .expect(1)
        .mount(&server)
        .await;
    let config = self::config(
        &server.uri(),
        "  auth: {type: api_key, in: query, name: api_key, value: '${env:KEY}'}",
        "",
        &[("KEY", "qk-77aa88bb99")],
    );
    let error = get_once(&config).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert!(error.url.contains("api_key=***"), "{}", error.url);
    let shown = error.to_string();
    assert!(!shown.contains("qk-77aa88bb99"), "{shown}");
}

/// Verifies `X-Signature: v1=<hex hmac-sha256>` over `METHOD\npath?query\nts\nsha256(body)`.
struct SignatureCheck {
    key: Vec<u8>,
}

impl Respond for SignatureCheck {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        use hmac::Mac;
        use sha2::Digest;
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let timestamp = header("x-timestamp");
        let canonical = format!(
            "{}\n{}?{}\n{}\n{}",
            request.method,
            request.url.path(),
            request.url.query().unwrap_or_default(),
            timestamp,
            hex::encode(sha2::Sha256::digest(&request.body))
        );
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).unwrap();
        mac.update(canonical.as_bytes());
        let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
        let fresh = timestamp.parse::<u64>().is_ok_and(|ts| {
            ts.abs_diff(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            ) < 60
        });
        if header("x-signature") == expected && fresh {
            ok()
        } else {
            ResponseTemplate::new(401)
        }
    }
}

#[tokio::test]
async fn hmac_signature_verifies_on_the_server() {
    let server = MockServer::start().await;
    let key = b"hmac-key-0123456789".to_vec();
    Mock::given(path("/items"))
        .respond_with(SignatureCheck { key: key.clone() })
        .mount(&server)
        .await;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&key);
    let config = self::config(
        &server.uri(),
        "  auth:\n    type: hmac\n    secret: '${env:HMAC}'\n    secret_encoding: base64\n    header_value: 'v1={signature}'\n    canonical: \"{method}\\n{path_and_query}\\n{timestamp}\\n{body_sha256}\"",
        ", method: POST, params: {limit: 5}",
        &[("HMAC", &encoded)],
    );
    let (client, _) = client_for(&config);
    let mut spec = post(&config);
    spec.url.set_query(Some("limit=5"));
    send(&client, &spec).await.unwrap();
    // A wrong key is refused.
    let wrong = base64::engine::general_purpose::STANDARD.encode(b"another-key-000000");
    let config = self::config(
        &server.uri(),
        "  auth: {type: hmac, secret: '${env:HMAC}', secret_encoding: base64, header_value: 'v1={signature}'}",
        ", method: POST",
        &[("HMAC", &wrong)],
    );
    let error = post_once(&config).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::AuthFailed);
}

/// A token endpoint and resource server: tokens `at-N` are issued in order; the resource
/// accepts those in `valid`.
#[derive(Clone, Default)]
struct OAuthServer {
    issued: Arc<AtomicUsize>,
    valid: Arc<Mutex<HashSet<String>>>,
    /// The refresh token the endpoint accepts now (refresh_token flow); rotated per use.
    refresh: Arc<Mutex<Option<String>>>,
    expires_in: u64,
    /// Tokens issued from now on are not accepted by the resource.
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl Respond for OAuthServer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.url.path() == "/token" {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body).into_owned().collect();
            let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            if field("client_secret").as_deref() != Some("cs-0a1b2c3d4e") {
                return ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}));
            }
            let mut answer = json!({"token_type": "bearer", "expires_in": self.expires_in});
            if field("grant_type").as_deref() == Some("refresh_token") {
                let mut current = self.refresh.lock().unwrap();
                if field("refresh_token") != *current {
                    return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
                }
                let n = self.issued.load(Ordering::SeqCst) + 2;
                let rotated = format!("rt-rotated-{n}-f00d");
                answer["refresh_token"] = json!(rotated);
                *current = Some(rotated);
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("at-{n}-c0ffee");
            if !self.broken.load(Ordering::SeqCst) {
                self.valid.lock().unwrap().insert(token.clone());
            }
            answer["access_token"] = json!(token);
            return ResponseTemplate::new(200).set_body_json(answer);
        }
        let presented = request
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        if self.valid.lock().unwrap().contains(&presented) {
            ok()
        } else {
            ResponseTemplate::new(401)
        }
    }
}

/// Starts a server on which `oauth` answers every path (token endpoint and resource).
async fn oauth_server(oauth: OAuthServer) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(oauth)
        .mount(&server)
        .await;
    server
}

fn oauth_config(base: &str, flow: &str, refresh: Option<&str>) -> ConnectorConfig {
    let refresh_line = if refresh.is_some() {
        ", refresh_token: '${env:RT}'"
    } else {
        ""
    };
    config(
        base,
        &format!(
            "  auth: {{type: oauth2, flow: {flow}, token_url: '{base}/token', client_id: shop-client, client_secret: '${{env:CS}}', scopes: [read, write]{refresh_line}}}\n  retry: {{max_attempts: 1}}"
        ),
        "",
        &[("CS", "cs-0a1b2c3d4e"), ("RT", refresh.unwrap_or_default())],
    )
}

#[tokio::test]
async fn oauth2_client_credentials_lazy_cached_refreshed_before_expiry_and_on_401() {
    let oauth = OAuthServer {
        expires_in: 120,
        ..Default::default()
    };
    let server = oauth_server(oauth.clone()).await;
    let config = oauth_config(&server.uri(), "client_credentials", None);
    let (client, clock) = client_for(&config);
    // Lazy: building the client fetches nothing.
    assert!(requests_to(&server, "/token").await.is_empty());
    for _ in 0..3 {
        send(&client, &get(&config)).await.unwrap();
    }
    let tokens = requests_to(&server, "/token").await;
    assert_eq!(tokens.len(), 1, "the token is cached");
    let form = String::from_utf8_lossy(&tokens[0].body).into_owned();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        form.contains("scope=read+write") && form.contains("client_id=shop-client"),
        "{form}"
    );

    // 120 s lifetime minus the 60 s margin: at 59 s the cached token is still used, at 61 s
    // a new one is fetched before the old one expires.
    clock.advance(Duration::from_secs(59));
    send(&client, &get(&config)).await.unwrap();
    assert_eq!(requests_to(&server, "/token").await.len(), 1);
    clock.advance(Duration::from_secs(2));
    send(&client, &get(&config)).await.unwrap();
    assert_eq!(requests_to(&server, "/token").await.len(), 2);

    // The server revokes the token early: one 401, one refresh, success.
    oauth.valid.lock().unwrap().clear();
    let response = send(&client, &get(&config)).await.unwrap();
    assert_eq!(response.attempts, 2);
    assert_eq!(requests_to(&server, "/token").await.len(), 3);

    // A 401 that survives the refresh fails with AUTH_FAILED, without further retries.
    oauth.valid.lock().unwrap().clear();
    oauth.broken.store(true, Ordering::SeqCst);
    let before = requests_to(&server, "/items").await.len();
    let error = send(&client, &get(&config)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::AuthFailed);
    assert_eq!(error.status, Some(401));
    assert!(!error.retryable);
    assert_eq!(requests_to(&server, "/items").await.len() - before, 2);
}

#[tokio::test]
async fn oauth2_token_endpoint_refusal_is_auth_failed() {
    let server = oauth_server(OAuthServer::default()).await;
    let mut config = oauth_config(&server.uri(), "client_credentials", None);
    if let landfall::http::config::AuthConfig::OAuth2 { client_secret, .. } = &mut config.source.auth {
        *client_secret = landfall::settings::Secret::new("cs-wrong-999999");
    }
    let error = get_once(&config).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::AuthFailed);
    assert_eq!(error.subsystem.as_str(), "auth");
    assert!(requests_to(&server, "/items").await.is_empty());
}

/// A credential store in memory, standing in for the landing zone: the document and a
/// version counter for conditional saves.
#[derive(Debug, Default)]
struct MemoryStore(Mutex<Option<(Vec<u8>, u64)>>);

#[async_trait]
impl CredentialStore for MemoryStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, CredentialStoreError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .clone()
            .map(|(document, version)| StoredCredentials {
                document,
                version: version.to_string(),
            }))
    }
    async fn save(&self, document: Vec<u8>, expected: Option<&str>) -> Result<Saved, CredentialStoreError> {
        let mut stored = self.0.lock().unwrap();
        let current = stored.as_ref().map(|(_, version)| version.to_string());
        if current.as_deref() != expected {
            return Ok(Saved::Conflict);
        }
        let next = stored.as_ref().map_or(1, |(_, version)| version + 1);
        *stored = Some((document, next));
        Ok(Saved::Stored(next.to_string()))
    }
}

#[tokio::test]
async fn oauth2_rotated_refresh_token_is_used_and_carried_to_the_next_run() {
    let oauth = OAuthServer {
        expires_in: 120,
        refresh: Arc::new(Mutex::new(Some("rt-initial-1234".into()))),
        ..Default::default()
    };
    let server = oauth_server(oauth.clone()).await;
    let config = oauth_config(&server.uri(), "refresh_token", Some("rt-initial-1234"));
    let store = Arc::new(MemoryStore::default());

    // Run 1: the config's token is used and rotated; a second refresh uses the rotated one.
    let (client, clock) = client_for(&config);
    let client = client.with_credential_store(store.clone());
    send(&client, &get(&config)).await.unwrap();
    clock.advance(Duration::from_secs(61));
    send(&client, &get(&config)).await.unwrap();
    let forms: Vec<String> = requests_to(&server, "/token")
        .await
        .iter()
        .map(|request| String::from_utf8_lossy(&request.body).into_owned())
        .collect();
    assert!(forms[0].contains("refresh_token=rt-initial-1234"), "{forms:?}");
    assert!(forms[1].contains("refresh_token=rt-rotated-2-f00d"), "{forms:?}");
    let current = oauth.refresh.lock().unwrap().clone().unwrap();
    let saved = String::from_utf8(store.0.lock().unwrap().clone().unwrap().0).unwrap();
    assert!(
        !saved.contains(&current) && !saved.contains("rt-"),
        "the saved token is encrypted: {saved}"
    );

    // Run 2, same config: the initial token is revoked, the saved rotated one works.
    let (next_run, _) = client_for(&config);
    let next_run = next_run.with_credential_store(store.clone());
    send(&next_run, &get(&config)).await.unwrap();
    let last = requests_to(&server, "/token").await.pop().unwrap();
    assert!(String::from_utf8_lossy(&last.body).contains(&format!("refresh_token={current}")));

    // Without the kept token, the config's (revoked) one fails for good.
    let (forgetful, _) = client_for(&config);
    let error = send(&forgetful, &get(&config)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::AuthFailed);
}

// ---- retries ----------------------------------------------------------------------------

fn retry_config(base: &str, retry: &str, stream_extra: &str) -> ConnectorConfig {
    config(base, &format!("  retry: {retry}"), stream_extra, &[])
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_an_http_date_is_honoured() {
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
    let server = answering_then_ok(vec![
        (ResponseTemplate::new(429).insert_header("Retry-After", "7"), 1),
        (
            ResponseTemplate::new(503).insert_header("Retry-After", date.as_str()),
            1,
        ),
    ])
    .await;
    let config = retry_config(&server.uri(), "{max_attempts: 3, budget: 1m}", "");
    let (client, clock) = client_for(&config);
    let response = send(&client, &get(&config)).await.unwrap();
    assert_eq!(response.attempts, 3);
    let sleeps = clock.sleeps();
    assert_eq!(sleeps[0], Duration::from_secs(7));
    assert!(
        sleeps[1] >= Duration::from_secs(18) && sleeps[1] <= Duration::from_secs(20),
        "{sleeps:?}"
    );
}

#[tokio::test]
async fn the_budget_cuts_retries_short() {
    let server = serving(ResponseTemplate::new(503).insert_header("Retry-After", "2")).await;
    let config = retry_config(&server.uri(), "{max_attempts: 10, budget: 5s}", "");
    let (client, clock) = client_for(&config);
    let error = send(&client, &get(&config)).await.unwrap_err();
    // 2 s + 2 s fit in 5 s; a third wait would not.
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(2); 2]);
    assert_eq!(error.attempt, 3);
    assert_eq!(error.code, ErrorCode::ServerError);
    assert!(error.retryable);
    assert_eq!(requests_to(&server, "/items").await.len(), 3);
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(400))
        .expect(1)
        .mount(&server)
        .await;
    let config = retry_config(&server.uri(), "{max_attempts: 5}", "");
    let (client, clock) = client_for(&config);
    let error = send(&client, &get(&config)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert!(!error.retryable);
    assert!(clock.sleeps().is_empty());
}

/// Issue 23: GitHub answers its secondary limits (and a spent primary limit) with 403 and
/// `Retry-After` or `x-ratelimit-remaining: 0`; that is a rate limit to wait out, not a
/// refused credential (which would fail the task with exit 4 and page on-call).
#[tokio::test]
async fn a_403_with_rate_limit_headers_is_waited_out_not_auth_failed() {
    let reset = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30;
    let server = answering_then_ok(vec![
        (
            ResponseTemplate::new(403)
                .insert_header("Retry-After", "7")
                .set_body_string(r#"{"message":"You have exceeded a secondary rate limit."}"#),
            1,
        ),
        (
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_string(r#"{"message":"API rate limit exceeded"}"#),
            1,
        ),
    ])
    .await;
    let config = config(
        &server.uri(),
        "  retry: {max_attempts: 3, budget: 2m}\n  rate_limit: {adaptive: true}",
        "",
        &[],
    );
    let (client, clock) = client_for(&config);
    let response = send(&client, &get(&config)).await.unwrap();
    assert_eq!(response.attempts, 3, "both 403s were retried");
    let sleeps = clock.sleeps();
    assert_eq!(sleeps[0], Duration::from_secs(7), "Retry-After honoured: {sleeps:?}");
    let waited: Duration = sleeps[1..].iter().sum();
    assert!(
        waited >= Duration::from_secs(28) && waited <= Duration::from_secs(31),
        "the second attempt waits for x-ratelimit-reset: {sleeps:?}"
    );

    // The same 403 past the retry budget fails as RATE_LIMIT (retryable), not AUTH_FAILED.
    let server = serving(ResponseTemplate::new(403).insert_header("Retry-After", "600")).await;
    let config = retry_config(&server.uri(), "{max_attempts: 3, budget: 1m}", "");
    let error = get_once(&config).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::RateLimit);
    assert!(error.retryable);
    assert_eq!(error.status, Some(403));

    // A 403 without rate-limit evidence is still a refusal, sent once.
    let server = serving(
        ResponseTemplate::new(403)
            .insert_header("x-ratelimit-remaining", "4990")
            .insert_header("x-ratelimit-reset", reset.to_string().as_str()),
    )
    .await;
    let config = retry_config(&server.uri(), "{max_attempts: 3}", "");
    let (client, clock) = client_for(&config);
    let error = send(&client, &get(&config)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::AuthFailed);
    assert!(!error.retryable);
    assert!(clock.sleeps().is_empty());
    assert_eq!(requests_to(&server, "/items").await.len(), 1);
}

#[tokio::test]
async fn backoff_jitter_stays_within_half_to_full_delay() {
    let server = answering_then_ok(vec![(ResponseTemplate::new(500), 5)]).await;
    let config = retry_config(
        &server.uri(),
        "{max_attempts: 6, initial_delay: 100ms, multiplier: 2, max_delay: 1s, budget: 1m}\n  circuit_breaker: {failure_threshold: 10}",
        "",
    );
    let (client, clock) = client_for(&config);
    send(&client, &get(&config)).await.unwrap();
    let bases = [100, 200, 400, 800, 1000].map(Duration::from_millis);
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 5);
    for (sleep, base) in sleeps.iter().zip(bases) {
        assert!(
            *sleep >= base / 2 && *sleep < base,
            "{sleep:?} not in [{:?}, {base:?})",
            base / 2
        );
    }
}

#[tokio::test]
async fn post_is_retried_only_with_an_idempotency_key_or_when_declared_safe() {
    async fn attempts(stream_extra: &str) -> (usize, Vec<Option<String>>) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ok())
            .with_priority(2)
            .mount(&server)
            .await;
        let config = retry_config(
            &server.uri(),
            "{max_attempts: 3, initial_delay: 10ms, max_delay: 10ms}",
            &format!(", method: POST{stream_extra}"),
        );
        let _ = post_once(&config).await;
        let requests = requests_to(&server, "/items").await;
        let keys = requests
            .iter()
            .map(|request| {
                request
                    .headers
                    .get("idempotency-key")
                    .map(|value| value.to_str().unwrap().to_owned())
            })
            .collect();
        (requests.len(), keys)
    }
    // Default: a key, so the POST is retried, with the same key both times.
    let (count, keys) = attempts("").await;
    assert_eq!(count, 2);
    assert!(keys[0].is_some() && keys[0] == keys[1], "{keys:?}");
    // No key: not retried.
    let (count, keys) = attempts(", idempotency_key: false").await;
    assert_eq!((count, keys), (1, vec![None]));
    // No key but declared safe: retried.
    let (count, keys) = attempts(", idempotency_key: false, retry_post: safe").await;
    assert_eq!((count, keys), (2, vec![None, None]));
    // A key but never: not retried.
    assert_eq!(attempts(", retry_post: never").await.0, 1);
}

// ---- circuit breaker ----------------------------------------------------------------------

#[tokio::test]
async fn circuit_opens_fails_fast_then_recovers_through_one_probe() {
    let server = answering_then_ok(vec![(ResponseTemplate::new(502), 3)]).await;
    let config = source_config(
        &server.uri(),
        "  retry: {max_attempts: 1}\n  circuit_breaker: {failure_threshold: 3, cooldown: 30s}",
    );
    let (client, clock) = client_for(&config);
    for _ in 0..3 {
        assert_eq!(send(&client, &get(&config)).await.unwrap_err().reason, Reason::Status);
    }
    // Open: fails fast, nothing sent.
    let error = send(&client, &get(&config)).await.unwrap_err();
    assert_eq!(error.reason, Reason::CircuitOpen);
    assert_eq!(error.code, ErrorCode::ServerError);
    assert!(error.retryable);
    assert_eq!(error.attempt, 0);
    assert_eq!(requests_to(&server, "/items").await.len(), 3);
    // Still open just before the cooldown ends.
    clock.advance(Duration::from_secs(29));
    assert_eq!(
        send(&client, &get(&config)).await.unwrap_err().reason,
        Reason::CircuitOpen
    );
    // Half-open: one probe goes through, succeeds and closes the circuit.
    clock.advance(Duration::from_secs(1));
    send(&client, &get(&config)).await.unwrap();
    send(&client, &get(&config)).await.unwrap();
    assert_eq!(requests_to(&server, "/items").await.len(), 5);
}

#[tokio::test]
async fn a_retrying_request_waits_out_the_cooldown_and_probes() {
    let server = answering_then_ok(vec![(ResponseTemplate::new(503).insert_header("Retry-After", "1"), 2)]).await;
    let config = source_config(
        &server.uri(),
        "  retry: {max_attempts: 5, budget: 1m}\n  circuit_breaker: {failure_threshold: 2, cooldown: 20s}",
    );
    let (client, clock) = client_for(&config);
    let response = send(&client, &get(&config)).await.unwrap();
    // 503, wait 1 s, 503 (opens the circuit), wait 1 s, refused: wait the other 19 s, probe.
    assert_eq!(response.attempts, 3);
    assert_eq!(clock.sleeps(), [1, 1, 19].map(Duration::from_secs));
}

// ---- rate limiting ------------------------------------------------------------------------

/// Sends `spec` `each` times in turn from each of `senders` tasks running at once; every
/// request must succeed.
async fn send_concurrently(client: &HttpClient, spec: &RequestSpec, senders: usize, each: usize) {
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let (client, spec) = (client.clone(), spec.clone());
            tokio::spawn(async move {
                for _ in 0..each {
                    client.send(&spec, CONTEXT).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn rate_limit_is_held_within_ten_percent_in_real_time() {
    let server = serving(ok()).await;
    let config = source_config(
        &server.uri(),
        "  rate_limit: {requests_per_second: 20, burst: 1, adaptive: false}",
    );
    let client = real_client(&config);
    let spec = get(&config);
    let started = Instant::now();
    // Three senders keep requests waiting, so request latency does not slow the rate.
    send_concurrently(&client, &spec, 3, 17).await;
    // 51 requests: the first at once, then 50 intervals of 50 ms.
    let took = started.elapsed().as_secs_f64();
    assert!((took - 2.5).abs() <= 0.25, "51 requests at 20/s took {took:.3} s");
    assert_eq!(requests_to(&server, "/items").await.len(), 51);
}

#[tokio::test]
async fn concurrency_cap_holds_independent_of_the_rate() {
    let server = common::servers::CountingServer::start(None, Duration::from_millis(100)).await;
    let config = source_config(
        &server.url(),
        "  rate_limit: {requests_per_second: 1000, burst: 100, concurrency: 2}",
    );
    let client = real_client(&config);
    let spec = get(&config);
    send_concurrently(&client, &spec, 8, 1).await;
    assert_eq!(server.counts.requests.load(Ordering::SeqCst), 8);
    assert_eq!(server.counts.max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn adaptive_mode_slows_down_from_headers_before_any_429() {
    let exhausted = || {
        ok().insert_header("X-RateLimit-Remaining", "0")
            .insert_header("X-RateLimit-Reset", "5")
    };
    let server = answering_then_ok(vec![
        (exhausted(), 1),
        (
            ok().insert_header("RateLimit-Limit", "100")
                .insert_header("RateLimit-Remaining", "2")
                .insert_header("RateLimit-Reset", "10"),
            1,
        ),
    ])
    .await;
    let config = source_config(&server.uri(), "  rate_limit: {adaptive: true}");
    let (client, clock) = client_for(&config);
    // Nothing left: the next request waits for the reset.
    send(&client, &get(&config)).await.unwrap();
    send(&client, &get(&config)).await.unwrap();
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(5)]);
    // Two left in 10 s: requests are spread 5 s apart.
    clock.clear_sleeps();
    send(&client, &get(&config)).await.unwrap();
    send(&client, &get(&config)).await.unwrap();
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(5)]);
    // Without adaptive mode the headers are ignored.
    let server = serving(exhausted()).await;
    let config = source_config(&server.uri(), "  rate_limit: {adaptive: false}");
    let (client, clock) = client_for(&config);
    send(&client, &get(&config)).await.unwrap();
    send(&client, &get(&config)).await.unwrap();
    assert!(clock.sleeps().is_empty());
}

#[tokio::test]
async fn a_wait_past_the_run_deadline_stops_cleanly() {
    let server = serving(ResponseTemplate::new(429).insert_header("Retry-After", "3600")).await;
    let config = source_config(&server.uri(), "  retry: {budget: 2h}");
    let (client, clock) = client_for(&config);
    let client = client.with_max_duration(Duration::from_secs(600));
    let error = send(&client, &get(&config)).await.unwrap_err();
    assert!(error.stops_cleanly(), "{error}");
    assert_eq!(error.code, ErrorCode::RateLimit);
    assert!(!error.retryable);
    assert!(clock.sleeps().is_empty(), "no wait was started");
    assert_eq!(requests_to(&server, "/items").await.len(), 1);

    // The same for the local limiter: one request an hour, 10 minutes left.
    let server = serving(ok()).await;
    let config = source_config(
        &server.uri(),
        "  rate_limit: {requests_per_second: null, requests_per_hour: 1, burst: 1}",
    );
    let (client, _) = client_for(&config);
    let client = client.with_max_duration(Duration::from_secs(600));
    send(&client, &get(&config)).await.unwrap();
    let error = send(&client, &get(&config)).await.unwrap_err();
    assert!(error.stops_cleanly() && error.code == ErrorCode::RateLimit, "{error}");
}

// ---- transport ----------------------------------------------------------------------------

#[tokio::test]
async fn gzip_and_brotli_responses_are_decoded() {
    let plain = br#"{"data":[{"id":1,"name":"compressed"}]}"#;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, plain).unwrap();
    let gzip = gzip.finish().unwrap();
    let mut brotli = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut brotli, 4096, 5, 22);
        std::io::Write::write_all(&mut writer, plain).unwrap();
    }
    for (encoding, body) in [("gzip", gzip), ("br", brotli)] {
        let server = serving(
            ResponseTemplate::new(200)
                .insert_header("content-encoding", encoding)
                .set_body_raw(body, "application/json"),
        )
        .await;
        let config = source_config(&server.uri(), "");
        let response = get_once(&config).await.unwrap();
        assert_eq!(&response.body[..], plain, "{encoding}");
        let request = &requests_to(&server, "/items").await[0];
        let accepted = request.headers.get("accept-encoding").unwrap().to_str().unwrap();
        assert!(accepted.contains("gzip") && accepted.contains("br"), "{accepted}");
    }
}

#[tokio::test]
async fn requests_carry_user_agent_and_request_id_and_errors_name_it() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .and(header("user-agent", format!("landfall/{}", landfall::VERSION).as_str()))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let config = source_config(&server.uri(), "");
    let error = get_once(&config).await.unwrap_err();
    let sent = requests_to(&server, "/items").await[0]
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(error.request_id, sent);
    assert_eq!((error.method, error.status, error.attempt), ("GET", Some(404), 1));
    assert_eq!(error.subsystem.as_str(), "transport");
    // The server's request id wins when it sends one.
    let server = serving(ok().insert_header("x-request-id", "srv-req-42")).await;
    let config = source_config(&server.uri(), "");
    let response = get_once(&config).await.unwrap();
    assert_eq!(response.request_id, "srv-req-42");
}

#[tokio::test]
async fn connections_are_reused() {
    let server = common::servers::CountingServer::start(None, Duration::ZERO).await;
    let config = source_config(&server.url(), "");
    let (client, _) = client_for(&config);
    for _ in 0..5 {
        send(&client, &get(&config)).await.unwrap();
    }
    assert_eq!(server.counts.requests.load(Ordering::SeqCst), 5);
    assert_eq!(server.counts.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_retryable_network_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let config = retry_config(
        &base,
        "{max_attempts: 2, initial_delay: 10ms, max_delay: 10ms}",
        ", method: POST, idempotency_key: false",
    );
    let (client, clock) = client_for(&config);
    let error = send(&client, &post(&config)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::NetworkError);
    assert_eq!(error.reason, Reason::Connect);
    // Never sent, so even a POST without a key is retried.
    assert_eq!(error.attempt, 2);
    assert_eq!(clock.sleeps().len(), 1);
}

#[tokio::test]
async fn post_body_reaches_the_server_as_built() {
    // The POST body reaches the server as built.
    let server = MockServer::start().await;
    Mock::given(body_string_contains("\"q\":\"x\""))
        .respond_with(ok())
        .expect(1)
        .mount(&server)
        .await;
    let config = self::config(&server.uri(), "", ", method: POST", &[]);
    post_once(&config).await.unwrap();
}

/// A resolver with fixed answers: `api-test.localhost` is loopback,
/// `metadata-test.localhost` the cloud metadata address, and `rebind-test.localhost`
/// loopback once, then the metadata address (DNS rebinding). Counts the lookups.
fn fixed_resolver(lookups: Arc<AtomicUsize>) -> landfall::http::GuardedResolver {
    use landfall::http::resolve::Lookup;
    landfall::http::GuardedResolver::new(Arc::new(move |host: String| -> Lookup {
        let lookup = lookups.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let address = match host.as_str() {
                "api-test.localhost" => "127.0.0.1",
                "metadata-test.localhost" => "169.254.169.254",
                "rebind-test.localhost" if lookup == 0 => "127.0.0.1",
                "rebind-test.localhost" => "169.254.169.254",
                _ => return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "unknown test host")),
            };
            Ok(vec![address.parse().unwrap()])
        })
    }))
}

/// Plain http to a host name other than localhost must be allowed explicitly.
const INSECURE: &str = "  allow_insecure_http: true";

fn client_with_fixed_resolver(config: &ConnectorConfig, lookups: Arc<AtomicUsize>) -> HttpClient {
    HttpClient::with_resolver(&config.source, Events::new("test-run", "shop"), fixed_resolver(lookups))
        .unwrap()
        .with_sleeper(VirtualClock::new())
}

#[tokio::test]
async fn a_host_name_resolving_to_a_metadata_address_is_never_connected_to() {
    let server = serving(ok()).await;
    let port = server.address().port();
    let lookups = Arc::new(AtomicUsize::new(0));

    // A name that resolves to loopback is allowed.
    let allowed = source_config(&format!("http://api-test.localhost:{port}"), INSECURE);
    let client = client_with_fixed_resolver(&allowed, lookups.clone());
    let response = send(&client, &get(&allowed)).await.unwrap();
    assert_eq!(response.status, 200);

    // A name that resolves to 169.254.169.254 is refused before any connection, at once
    // and without a retry.
    let refused = source_config(&format!("http://metadata-test.localhost:{port}"), INSECURE);
    let client = client_with_fixed_resolver(&refused, lookups.clone());
    let started = Instant::now();
    let error = send(&client, &get(&refused)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::AddressRefused, "{error}");
    assert_eq!(error.reason, Reason::Address);
    assert!(!error.retryable);
    assert_eq!(error.attempt, 1);
    assert!(error.message.contains("metadata-test.localhost"), "{}", error.message);
    assert!(error.message.contains("169.254.169.254"), "{}", error.message);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_redirect_after_the_name_is_rebound_to_a_metadata_address_is_refused() {
    // The first connection goes to loopback; the server closes it with a same-origin
    // redirect, and the name now resolves to the metadata address.
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", "/latest/meta-data/")
                .insert_header("connection", "close"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/latest/meta-data/"))
        .respond_with(ok())
        .mount(&server)
        .await;
    let port = server.address().port();
    let lookups = Arc::new(AtomicUsize::new(0));
    let config = source_config(&format!("http://rebind-test.localhost:{port}"), INSECURE);
    let client = client_with_fixed_resolver(&config, lookups.clone());
    let error = send(&client, &get(&config)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::AddressRefused, "{error}");
    assert!(!error.retryable);
    assert_eq!(lookups.load(Ordering::SeqCst), 2);
    assert_eq!(requests_to(&server, "/items").await.len(), 1);
    assert!(requests_to(&server, "/latest/meta-data/").await.is_empty());
}

#[tokio::test]
async fn response_url_is_where_the_redirects_led_without_the_api_key() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/v2/items?page=1"))
        .mount(&server)
        .await;
    Mock::given(path("/v2/items")).respond_with(ok()).mount(&server).await;
    let config = config(
        &server.uri(),
        "  auth: {type: api_key, in: query, name: api_key, value: '${env:KEY}'}",
        "",
        &[("KEY", "query-key-secret-1")],
    );
    let response = get_once(&config).await.unwrap();
    assert_eq!(response.url.as_str(), format!("{}/v2/items?page=1", server.uri()));
    // The hop itself carried the key.
    let hop = &requests_to(&server, "/v2/items").await[0];
    assert!(hop.url.query_pairs().any(|(name, _)| name == "api_key"));
}
