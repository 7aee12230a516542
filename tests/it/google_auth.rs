//! Google service-account auth (`source.auth.type: google_service_account`, issue 19.4)
//! against a loopback token endpoint that checks every assertion as Google does: the RS256
//! signature against the test key's public key, then the claims. The API beside it accepts
//! only the tokens the endpoint issued.

use crate::common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use landfall::config::{ConnectorConfig, Resolve};
use landfall::error::ErrorCode;
use landfall::http::config::Method;
use landfall::http::{HttpClient, PostPolicy, RequestContext, RequestSpec, VirtualClock};
use landfall::observe::events::Events;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const EMAIL: &str = "extractor@landfall-test.iam.gserviceaccount.com";
const SCOPES: &str =
    "https://www.googleapis.com/auth/spreadsheets.readonly https://www.googleapis.com/auth/drive.readonly";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A test service account: its JSON key and public key (PKCS#1 DER).
struct TestKey {
    json: String,
    pem_body: String,
    public: Vec<u8>,
}

fn test_key(token_uri: &str) -> TestKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pem_body = base64::engine::general_purpose::STANDARD.encode(pair.as_der().unwrap().as_ref());
    let lines: Vec<&str> = pem_body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let json = json!({
        "type": "service_account",
        "project_id": "landfall-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string();
    TestKey {
        json,
        pem_body,
        public: pair.public_key().as_ref().to_vec(),
    }
}

/// The token endpoint (`/token`) and the API (every other path).
#[derive(Clone)]
struct Google {
    public: Arc<Vec<u8>>,
    subject: Option<&'static str>,
    expires_in: u64,
    issued: Arc<AtomicUsize>,
    valid: Arc<Mutex<HashSet<String>>>,
    /// Every assertion received, and why the last refused one was refused.
    assertions: Arc<Mutex<Vec<String>>>,
    refusals: Arc<Mutex<Vec<String>>>,
    /// Tokens issued from now on are not accepted by the API.
    broken: Arc<AtomicBool>,
    /// The token endpoint's URL, the `aud` expected.
    audience: Arc<std::sync::OnceLock<String>>,
}

impl Google {
    fn new(public: Vec<u8>, subject: Option<&'static str>) -> Self {
        Self {
            public: Arc::new(public),
            subject,
            expires_in: 120,
            issued: Arc::default(),
            valid: Arc::default(),
            assertions: Arc::default(),
            refusals: Arc::default(),
            broken: Arc::default(),
            audience: Arc::default(),
        }
    }

    /// Checks an assertion; the reason it is refused.
    fn check(&self, form: &[(String, String)]) -> Result<(), String> {
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if field("grant_type").as_deref() != Some(JWT_BEARER) {
            return Err(format!("grant_type {:?}", field("grant_type")));
        }
        if form.len() != 2 {
            return Err(format!(
                "unexpected fields {:?}",
                form.iter().map(|(k, _)| k).collect::<Vec<_>>()
            ));
        }
        let assertion = field("assertion").ok_or("no assertion")?;
        self.assertions.lock().unwrap().push(assertion.clone());
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err("not a JWS".into());
        };
        let decode = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| "not base64url".to_owned())
        };
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, self.public.as_slice())
            .verify(format!("{header}.{claims}").as_bytes(), &decode(signature)?)
            .map_err(|_| "bad signature".to_owned())?;
        let header: Value = serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
        if header["alg"] != "RS256" || header["typ"] != "JWT" {
            return Err(format!("header {header}"));
        }
        let claims: Value = serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let (iat, exp) = (claims["iat"].as_i64().unwrap_or(0), claims["exp"].as_i64().unwrap_or(0));
        let checks = [
            (claims["iss"] == EMAIL, "iss"),
            (claims["aud"] == self.audience.get().unwrap().as_str(), "aud"),
            (claims["scope"] == SCOPES, "scope"),
            (exp - iat == 3600, "exp - iat"),
            ((now - iat).abs() <= 60, "iat"),
            (claims.get("sub").and_then(Value::as_str) == self.subject, "sub"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, claim)) => Err(format!("claim {claim} in {claims}")),
            None => Ok(()),
        }
    }
}

impl Respond for Google {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.url.path() == "/token" {
            let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body).into_owned().collect();
            if let Err(reason) = self.check(&form) {
                self.refusals.lock().unwrap().push(reason.clone());
                return ResponseTemplate::new(400)
                    .set_body_json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}));
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("ya29.test-token-{n}-c0ffee");
            if !self.broken.load(Ordering::SeqCst) {
                self.valid.lock().unwrap().insert(token.clone());
            }
            return ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}));
        }
        let presented = request
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        if self.valid.lock().unwrap().contains(&presented) {
            ResponseTemplate::new(200).set_body_json(json!({"data": [{"id": 1}, {"id": 2}]}))
        } else {
            ResponseTemplate::new(401).set_body_json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}))
        }
    }
}

async fn start(google: &Google) -> MockServer {
    let server = MockServer::start().await;
    google.audience.set(format!("{}/token", server.uri())).unwrap();
    Mock::given(wiremock::matchers::any())
        .respond_with(google.clone())
        .mount(&server)
        .await;
    server
}

async fn requests_to(server: &MockServer, route: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.url.path() == route)
        .count()
}

/// The `source.auth` line for a key file, with `extra` flow-mapping entries.
fn auth_line(key_file: &std::path::Path, extra: &str) -> String {
    format!(
        "  auth: {{type: google_service_account, key: '${{file:{}}}', scopes: ['https://www.googleapis.com/auth/spreadsheets.readonly', 'https://www.googleapis.com/auth/drive.readonly']{extra}}}",
        key_file.display()
    )
}

#[tokio::test]
async fn google_service_account_token_is_verified_cached_refreshed_before_expiry_and_on_401() {
    let placeholder = test_key("unused");
    let google = Google::new(placeholder.public.clone(), Some("analyst@example.com"));
    let server = start(&google).await;
    // The key names the loopback endpoint as its token_uri (no token_url override).
    let key = TestKey {
        json: placeholder.json.replace("unused", &format!("{}/token", server.uri())),
        ..placeholder
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, &key.json).unwrap();
    let text = format!(
        "version: 1\nsource:\n  name: sheets\n  base_url: {}\n{}\n  retry: {{max_attempts: 1}}\nstreams:\n  - {{name: items, path: /items}}\n",
        server.uri(),
        auth_line(&key_file, ", subject: analyst@example.com")
    );
    let config = ConnectorConfig::from_yaml(&text, Resolve::References, &|_| None)
        .unwrap()
        .config;
    let clock = VirtualClock::new();
    let client = HttpClient::new(&config.source, Events::new("test-run", "sheets"))
        .unwrap()
        .with_sleeper(clock.clone());
    let spec = RequestSpec {
        method: Method::Get,
        url: url::Url::parse(&format!("{}/items", server.uri())).unwrap(),
        headers: vec![],
        body: None,
        post: PostPolicy::default(),
        credentials: true,
    };
    let context = RequestContext {
        stream: "items",
        page: 1,
    };
    // Lazy: building the client asks for nothing.
    assert_eq!(requests_to(&server, "/token").await, 0);
    for _ in 0..3 {
        let sent = client.send(&spec, context).await;
        assert!(sent.is_ok(), "{sent:?} {:?}", google.refusals.lock().unwrap());
    }
    assert_eq!(google.refusals.lock().unwrap().clone(), Vec::<String>::new());
    assert_eq!(requests_to(&server, "/token").await, 1, "the token is cached");

    // 120 s lifetime minus the 60 s margin: at 59 s the cached token is used, at 61 s a new
    // one is fetched with a new assertion.
    clock.advance(Duration::from_secs(59));
    client.send(&spec, context).await.unwrap();
    assert_eq!(requests_to(&server, "/token").await, 1);
    clock.advance(Duration::from_secs(2));
    client.send(&spec, context).await.unwrap();
    assert_eq!(requests_to(&server, "/token").await, 2);

    // The API revokes the token early: one 401, one refresh, success.
    google.valid.lock().unwrap().clear();
    let response = client.send(&spec, context).await.unwrap();
    assert_eq!(response.attempts, 2);
    assert_eq!(requests_to(&server, "/token").await, 3);

    // A 401 that survives the refresh is AUTH_FAILED, without another refresh.
    google.valid.lock().unwrap().clear();
    google.broken.store(true, Ordering::SeqCst);
    let error = client.send(&spec, context).await.unwrap_err();
    assert_eq!((error.code, error.status), (ErrorCode::AuthFailed, Some(401)));
    assert_eq!(requests_to(&server, "/token").await, 4);
    assert_eq!(google.refusals.lock().unwrap().len(), 0);
    assert_eq!(google.assertions.lock().unwrap().len(), 4);
}

/// No private key, assertion or access token in what a run prints or lands.
fn assert_no_secrets(key: &TestKey, google: &Google, texts: &[(String, String)]) {
    let mut secrets: Vec<String> = key
        .pem_body
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    secrets.extend(google.assertions.lock().unwrap().iter().cloned());
    secrets.extend(google.valid.lock().unwrap().iter().cloned());
    secrets.push("ya29.test-token".to_owned());
    for (what, text) in texts {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} holds a secret: {}",
                &secret[..secret.len().min(24)]
            );
        }
    }
}

/// Everything under `dir`, as text.
fn everything_under(dir: &std::path::Path) -> Vec<(String, String)> {
    common::files_under(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let text = if path.extension().is_some_and(|ext| ext == "gz") {
                use std::io::Read;
                let mut text = String::new();
                flate2::read::MultiGzDecoder::new(&bytes[..])
                    .read_to_string(&mut text)
                    .unwrap();
                text
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            };
            (path.display().to_string(), text)
        })
        .collect()
}

#[tokio::test]
async fn google_service_account_runs_end_to_end_and_a_refused_grant_exits_4_without_leaking_the_key() {
    let key = test_key("https://oauth2.googleapis.com/token");
    let google = Google::new(key.public.clone(), None);
    let server = start(&google).await;
    let ws = common::Workspace::new();
    let key_file = ws.dir.path().join("key.json");
    std::fs::write(&key_file, &key.json).unwrap();
    // token_url overrides the key's token_uri.
    let config_text = |key_file: &std::path::Path| {
        format!(
            "version: 1\nsource:\n  name: sheets\n  base_url: {uri}\n{}\n  retry: {{max_attempts: 2, initial_delay: 10ms, max_delay: 50ms}}\nstreams:\n  - {{name: items, path: /items, records_path: /data}}\nlanding:\n  url: {{landing}}\n",
            auth_line(key_file, &format!(", token_url: '{}/token'", server.uri())),
            uri = server.uri()
        )
    };
    let config = ws.config(&config_text(&key_file));
    let output = common::run(&config, &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    assert_eq!(ws.lines("sheets", "items").len(), 2);
    assert_eq!(google.issued.load(Ordering::SeqCst), 1);
    let mut texts = everything_under(ws.dir.path());
    texts.retain(|(path, _)| !path.ends_with("key.json"));
    texts.push(("stderr".into(), common::stderr(&output)));
    texts.push(("stdout".into(), common::stdout(&output)));
    assert_no_secrets(&key, &google, &texts);

    // Another key than the one the endpoint knows: invalid_grant, AUTH_FAILED, exit 4.
    let other = test_key("https://oauth2.googleapis.com/token");
    let ws = common::Workspace::new();
    let key_file = ws.dir.path().join("key.json");
    std::fs::write(&key_file, &other.json).unwrap();
    let config = ws.config(&config_text(&key_file));
    let output = common::run(&config, &[]).await;
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("AUTH_FAILED") && stderr.contains("invalid_grant"),
        "{stderr}"
    );
    assert!(
        google
            .refusals
            .lock()
            .unwrap()
            .iter()
            .any(|reason| reason == "bad signature")
    );
    let mut texts = everything_under(ws.dir.path());
    texts.retain(|(path, _)| !path.ends_with("key.json"));
    texts.push(("stderr".into(), stderr));
    assert_no_secrets(&other, &google, &texts);
}

#[tokio::test]
async fn a_key_that_is_not_a_service_account_rsa_key_is_a_config_error_naming_source_auth_key() {
    let key = test_key("https://oauth2.googleapis.com/token");
    let mut not_rsa: Value = serde_json::from_str(&key.json).unwrap();
    let pem = not_rsa["private_key"].as_str().unwrap().to_owned();
    // A truncated key: PEM, but not a usable RSA key.
    not_rsa["private_key"] = pem.replace(&key.pem_body[64..128], "").into();
    let cases = [
        not_rsa.to_string(),
        json!({"type": "authorized_user", "client_id": "x.apps.googleusercontent.com", "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty", "refresh_token": "1//0refresh-token-secret"}).to_string(),
    ];
    for text in cases {
        let ws = common::Workspace::new();
        let key_file = ws.dir.path().join("key.json");
        std::fs::write(&key_file, &text).unwrap();
        let config = ws.config(&format!(
            "version: 1\nsource:\n  name: sheets\n  base_url: https://sheets.googleapis.com/v4\n{}\nstreams:\n  - {{name: items, path: /items}}\nlanding:\n  url: {{landing}}\n",
            auth_line(&key_file, "")
        ));
        let output = common::run(&config, &[]).await;
        let stderr = common::stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("source.auth.key"), "{stderr}");
        for secret in [
            &key.pem_body[..64],
            &key.pem_body[200..264],
            "1//0refresh-token-secret",
            "d-FL95Q19q7MQmFpd7hHD0Ty",
        ] {
            assert!(!stderr.contains(secret), "{stderr}");
        }
    }
}
