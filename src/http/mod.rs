//! The HTTP client every request to a source goes through: TLS, timeouts, auth, request
//! ids and retries.

mod auth;
pub mod error;
pub mod retry;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

pub use auth::Authenticator;
pub use error::{HttpError, Subsystem};
pub use retry::{RetryPolicy, Sleeper, TokioSleeper};

use crate::config::{Method, SourceConfig};
use crate::error::ErrorCode;
use crate::events::Events;

/// Response headers that carry a server-side request id, in order of preference.
const REQUEST_ID_HEADERS: &[&str] = &["x-request-id", "request-id", "x-amzn-requestid", "x-correlation-id"];

/// The `User-Agent` Landfall sends.
pub fn user_agent() -> String {
    format!("landfall/{}", env!("CARGO_PKG_VERSION"))
}

/// One request to send (before auth is applied).
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// A successful response, fully read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub request_id: String,
    /// Attempts made, the successful one included.
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Where a request belongs, for logs and idempotency keys.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext<'a> {
    pub stream: &'a str,
    pub page: u64,
}

/// Sends requests to one source.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    auth: Authenticator,
    retry: RetryPolicy,
    events: Events,
}

/// Errors building the client (bad TLS material).
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("cannot read {key} {path}: {source}")]
    ReadFile {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl HttpClient {
    /// Builds the client for `source`. Reads TLS files; makes no request.
    pub fn new(source: &SourceConfig, events: Events) -> Result<Self, ClientBuildError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(user_agent())
            .timeout(source.timeout.0)
            .connect_timeout(source.timeout.0.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_version_min(match source.tls.min_version.as_str() {
                "1.3" => reqwest::tls::Version::TLS_1_3,
                _ => reqwest::tls::Version::TLS_1_2,
            });
        let read = |key: &'static str, path: &str| {
            std::fs::read(path).map_err(|source| ClientBuildError::ReadFile {
                key,
                path: path.to_owned(),
                source,
            })
        };
        if let Some(ca_file) = &source.tls.ca_file {
            let pem = read("source.tls.ca_file", ca_file)?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| ClientBuildError::Invalid {
                    key: "source.tls.ca_file",
                    message: error.to_string(),
                })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let (Some(cert), Some(key)) = (&source.tls.client_cert_file, &source.tls.client_key_file) {
            let mut pem = read("source.tls.client_cert_file", cert)?;
            pem.push(b'\n');
            pem.extend(read("source.tls.client_key_file", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|error| ClientBuildError::Invalid {
                key: "source.tls.client_cert_file",
                message: error.to_string(),
            })?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|error| ClientBuildError::Invalid {
            key: "source",
            message: error::describe(&error),
        })?;
        Ok(Self {
            client,
            auth: Authenticator::new(&source.auth),
            retry: RetryPolicy::from_config(&source.retry),
            events,
        })
    }

    /// The retry policy (also used to re-fetch a page that did not parse).
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Replaces the retry sleeper (tests).
    pub fn with_sleeper(mut self, sleeper: std::sync::Arc<dyn Sleeper>) -> Self {
        self.retry.sleeper = sleeper;
        self
    }

    /// Sends `spec`, retrying as the policy allows, and reads the whole body.
    pub async fn send(&self, spec: &RequestSpec, context: RequestContext<'_>) -> Result<Response, HttpError> {
        let started = Instant::now();
        let mut url = spec.url.clone();
        self.auth.apply_to_url(&mut url);
        let shown_url = crate::redact::url(&url);
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request_id = uuid::Uuid::now_v7().to_string();
            let outcome = self
                .attempt(spec, &url, &shown_url, &request_id, attempt, context)
                .await;
            let (error, retry_after) = match outcome {
                Ok(mut response) => {
                    response.attempts = attempt;
                    response.elapsed = started.elapsed();
                    return Ok(response);
                }
                Err(failure) => failure,
            };
            // POST is retried only because every POST carries an idempotency key.
            let retry_allowed = error.retryable;
            let delay = retry_allowed
                .then(|| self.retry.next_delay(attempt, waited, retry_after))
                .flatten();
            let Some(delay) = delay else {
                return Err(error);
            };
            self.events.request_retried(
                context.stream,
                context.page,
                &error.request_id,
                attempt,
                delay.as_millis() as u64,
                error.code.as_str(),
                &error.to_string(),
            );
            self.retry.sleeper.sleep(delay).await;
            waited += delay;
        }
    }

    async fn attempt(
        &self,
        spec: &RequestSpec,
        url: &Url,
        shown_url: &str,
        request_id: &str,
        attempt: u32,
        context: RequestContext<'_>,
    ) -> Result<Response, (HttpError, Option<Duration>)> {
        let method = spec.method.as_str();
        let failure =
            |code: ErrorCode, status: Option<u16>, retryable: bool, subsystem: Subsystem, message: String| HttpError {
                code,
                status,
                retryable,
                request_id: request_id.to_owned(),
                attempt,
                method,
                url: shown_url.to_owned(),
                subsystem,
                message,
            };
        let mut request = self.client.request(
            match spec.method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
            },
            url.clone(),
        );
        for (name, value) in &spec.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request = request.header("x-request-id", request_id);
        for (name, value) in self.auth.headers(method, shown_url).map_err(|error| (error, None))? {
            request = request.header(name, value);
        }
        if let Some(body) = &spec.body {
            let key = crate::hash::sha256_hex(
                [context.stream.as_bytes(), &context.page.to_be_bytes(), body.as_slice()]
                    .concat()
                    .as_slice(),
            );
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    HeaderName::from_static("idempotency-key"),
                    HeaderValue::from_str(&key[..32]).expect("hex is a valid header"),
                )
                .body(body.clone());
        }
        let response = request.send().await.map_err(|error| {
            let code = error::classify_transport(&error);
            (
                failure(code, None, true, Subsystem::Transport, error::describe(&error)),
                None,
            )
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request_id = REQUEST_ID_HEADERS
            .iter()
            .find_map(|name| headers.get(*name).and_then(|value| value.to_str().ok()))
            .filter(|value| !value.is_empty())
            .unwrap_or(request_id)
            .to_owned();
        let failure = |code, status, retryable, subsystem, message| HttpError {
            request_id: request_id.clone(),
            ..failure(code, status, retryable, subsystem, message)
        };
        if !(200..300).contains(&status) {
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| retry::parse_retry_after(value, SystemTime::now()));
            let snippet = response.text().await.unwrap_or_default();
            let snippet: String = snippet.chars().take(300).collect();
            let (code, subsystem) = error::classify_status(status);
            let retryable = self.retry.retry_on_status.contains(&status);
            return Err((
                failure(
                    code,
                    Some(status),
                    retryable,
                    subsystem,
                    format!("response body: {}", snippet.trim()),
                ),
                retry_after,
            ));
        }
        let body = response.bytes().await.map_err(|error| {
            (
                failure(
                    ErrorCode::NetworkError,
                    Some(status),
                    true,
                    Subsystem::Transport,
                    format!("reading the body failed: {}", error::describe(&error)),
                ),
                None,
            )
        })?;
        Ok(Response {
            status,
            headers,
            body,
            request_id,
            attempts: attempt,
            elapsed: Duration::ZERO,
        })
    }
}
