//! The HTTP client every request to a source goes through.
//!
//! One request runs through the layers in this order, each in its own file:
//! the circuit breaker ([`circuit`]) may refuse it; the rate limiter ([`rate_limit`]) gives
//! it a concurrency slot and makes it wait its turn; the credentials ([`auth`]) are applied;
//! the attempt is sent; its response teaches the adaptive rate limiter and the breaker; and
//! a failure goes to the retry policy ([`retry`]), the one place that decides whether and
//! when to send it again. Every wait goes through the injectable [`Sleeper`], and no wait
//! may pass the run's deadline: a rate-limit wait that would is turned into a clean stop
//! ([`HttpError::stops_cleanly`]).
//!
//! Transport: rustls with the source's extra CA, client certificate and minimum version;
//! gzip, deflate and brotli responses; proxies from `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY` and `NO_PROXY` (reqwest reads them); pooled connections reused across
//! requests; `User-Agent: landfall/<version>` and an `X-Request-Id` on every request.

pub mod auth;
pub(crate) mod body;
pub mod circuit;
pub mod config;
pub mod error;
pub mod rate_limit;
pub mod redirect;
pub mod resolve;
pub mod retry;
mod sleep;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

pub use auth::{Authenticator, CredentialStore, CredentialStoreError, Saved, StoredCredentials};
pub use body::SpilledBody;
pub use error::{HttpError, Reason, Subsystem};
pub use resolve::GuardedResolver;
pub use retry::{Decision, RetryPolicy};
pub use sleep::{Sleeper, TokioSleeper, VirtualClock};

use crate::error::ErrorCode;
use crate::http::config::{Method, RedirectPolicy, RetryPost, SourceConfig};
use crate::observe::events::Events;
use auth::{AuthEnv, SignedParts};
use circuit::{CircuitBreaker, Outcome};
use error::ErrorContext;
use rate_limit::{RateLimiter, Signal};

/// Response headers that carry a server-side request id, in order of preference.
const REQUEST_ID_HEADERS: &[&str] = &["x-request-id", "request-id", "x-amzn-requestid", "x-correlation-id"];

/// Local rate-limit waits at least this long are logged as `rate_limited`.
const LOGGED_LOCAL_WAIT: Duration = Duration::from_secs(1);

/// The `User-Agent` Landfall sends.
pub fn user_agent() -> String {
    format!("landfall/{}", env!("CARGO_PKG_VERSION"))
}

/// How a stream's POST requests may be repeated (`streams[].idempotency_key` and
/// `retry_post`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostPolicy {
    /// Send an `Idempotency-Key` header. Default: true.
    pub idempotency_key: bool,
    /// When a failed POST is sent again. Default: `auto`.
    pub retry: RetryPost,
}

impl Default for PostPolicy {
    fn default() -> Self {
        Self {
            idempotency_key: true,
            retry: RetryPost::Auto,
        }
    }
}

/// One request to send (before auth is applied).
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// How a POST may be repeated; ignored for GET.
    pub post: PostPolicy,
    /// Whether the source's credentials (auth, query key) go with the request: false for a
    /// URL on another origin that a response named (an async job's pre-signed result URL).
    pub credentials: bool,
}

/// A successful response, fully read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body, when it is held in memory (empty when it was spilled).
    pub body: Bytes,
    /// The body, when it passed the client's spill threshold
    /// ([`HttpClient::with_spill_threshold`]) and was written to a temporary file.
    pub spilled: Option<body::SpilledBody>,
    pub request_id: String,
    /// The URL that answered: the request's, or where its redirects led (without the
    /// source's api key query parameter). Relative next-page URLs resolve against it.
    pub url: Url,
    /// Attempts sent, the successful one included.
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Where a request belongs, for logs and idempotency keys.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext<'a> {
    pub stream: &'a str,
    pub page: u64,
}

/// Sends requests to one source. Clones share the rate limiter, the circuit breaker, the
/// token cache and the connection pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    auth: Authenticator,
    retry: RetryPolicy,
    limiter: Arc<RateLimiter>,
    circuit: Arc<CircuitBreaker>,
    sleeper: Arc<dyn Sleeper>,
    /// No wait may end past this instant (on the sleeper's clock).
    deadline: Option<Instant>,
    events: Events,
    /// `source.max_response_size`: the most bytes of one decoded body.
    max_response_size: u64,
    /// `source.redirects`.
    redirects: RedirectPolicy,
    /// Bodies larger than this go to a temporary file; `None`: every body stays in memory.
    spill_threshold: Option<u64>,
}

/// Errors building the client (bad TLS material, unusable credentials).
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

/// A failed attempt, with what the retry decision and the rate limiter need.
struct Failure {
    error: HttpError,
    retry_after: Option<Duration>,
    headers: Option<HeaderMap>,
}

impl From<HttpError> for Failure {
    fn from(error: HttpError) -> Self {
        Self {
            error,
            retry_after: None,
            headers: None,
        }
    }
}

impl HttpClient {
    /// Builds the client for `source`. Reads TLS files; makes no request.
    pub fn new(source: &SourceConfig, events: Events) -> Result<Self, ClientBuildError> {
        Self::with_resolver(source, events, GuardedResolver::default())
    }

    /// [`Self::new`] with the resolver given (one whose lookups are fixed, in tests). Host
    /// names are resolved through it, and link-local and cloud metadata addresses are
    /// never connected to.
    pub fn with_resolver(
        source: &SourceConfig,
        events: Events,
        resolver: GuardedResolver,
    ) -> Result<Self, ClientBuildError> {
        let mut builder = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            .user_agent(user_agent())
            .timeout(source.timeout.0)
            .connect_timeout(source.timeout.0.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(source.rate_limit.concurrency.get() as usize)
            // Redirects are followed hop by hop in `attempt`, each checked against
            // `source.redirects` (reqwest would forward custom credential headers).
            .redirect(reqwest::redirect::Policy::none())
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
            message: crate::error::describe(&error),
        })?;
        let auth = Authenticator::new(&source.auth, &source.name).map_err(|message| ClientBuildError::Invalid {
            key: "source.auth",
            message,
        })?;
        Ok(Self {
            client,
            auth,
            retry: RetryPolicy::from_config(&source.retry),
            limiter: Arc::new(RateLimiter::new(&source.rate_limit)),
            circuit: Arc::new(CircuitBreaker::new(
                source.circuit_breaker.failure_threshold.get(),
                source.circuit_breaker.cooldown.0,
            )),
            sleeper: Arc::new(TokioSleeper),
            deadline: None,
            events,
            max_response_size: source.max_response_size.0,
            redirects: source.redirects,
            spill_threshold: None,
        })
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The sleeper every wait of this client goes through.
    pub fn sleeper(&self) -> &Arc<dyn Sleeper> {
        &self.sleeper
    }

    /// Replaces the sleeper and its clock (tests). Call before [`Self::with_max_duration`].
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Sets the run's deadline `max_duration` from now on the sleeper's clock: a wait that
    /// would pass it stops the request with a clean-stop error instead.
    pub fn with_max_duration(mut self, max_duration: Duration) -> Self {
        self.deadline = Some(self.sleeper.now() + max_duration);
        self
    }

    /// Lets bodies larger than `threshold` bytes be written to a temporary file instead of
    /// memory ([`Response::spilled`]); only for callers that read spilled bodies.
    pub fn with_spill_threshold(mut self, threshold: u64) -> Self {
        self.spill_threshold = Some(threshold);
        self
    }

    /// Gives the client a place to keep rotated credentials for the next run.
    pub fn with_credential_store(self, store: Arc<dyn CredentialStore>) -> Self {
        self.auth.set_credential_store(store);
        self
    }

    /// Sends `spec`, retrying as the policy allows, and reads the whole body.
    pub async fn send(&self, spec: &RequestSpec, context: RequestContext<'_>) -> Result<Response, HttpError> {
        let started = Instant::now();
        let mut url = spec.url.clone();
        if spec.credentials {
            self.auth.apply_to_url(&mut url);
        }
        let shown_url = crate::redact::url(&url);
        let method = spec.method.as_str();
        let idempotency_key = match (spec.method, &spec.body) {
            (Method::Post, Some(body)) if spec.post.idempotency_key => Some(idempotency_key(context, body)),
            _ => None,
        };
        let replayable = match spec.method {
            Method::Get => true,
            Method::Post => match spec.post.retry {
                RetryPost::Auto => idempotency_key.is_some(),
                RetryPost::Safe => true,
                RetryPost::Never => false,
            },
        };
        let mut waited = Duration::ZERO;
        let mut sent = 0u32;
        let mut counted = 0u32;
        let mut refreshed = false;
        loop {
            let mut request = ErrorContext {
                method,
                url: shown_url.clone(),
                request_id: uuid::Uuid::now_v7().to_string(),
                attempt: sent,
            };
            if let Err(refusal) = self.circuit.admit(self.sleeper.now()) {
                // A request already retrying waits out the cooldown when its attempts and
                // budget allow, then probes; a new request fails fast.
                let wait = refusal.retry_in;
                let may_wait = self.retry.waits_for_circuit(sent, counted, waited, wait)
                    && self
                        .deadline
                        .is_none_or(|deadline| self.sleeper.now() + wait <= deadline);
                if may_wait {
                    self.sleeper.sleep(wait).await;
                    waited += wait;
                    continue;
                }
                return Err(request.error(
                    refusal.code,
                    None,
                    true,
                    Subsystem::RateLimit,
                    Reason::CircuitOpen,
                    format!(
                        "circuit open after repeated failures of the source; request not sent (next probe in {} s)",
                        refusal.retry_in.as_secs()
                    ),
                ));
            }
            let permit = self.limiter.permit().await;
            if let Err(stop) = self.wait_for_rate_limit(&request, context).await {
                // Release a half-open probe slot this request may hold.
                self.circuit.record(Outcome::Neutral, self.sleeper.now());
                return Err(stop);
            }
            sent += 1;
            counted += 1;
            request.attempt = sent;
            let outcome = self
                .attempt(spec, &url, idempotency_key.as_deref(), &request, context.page)
                .await;
            drop(permit);
            let failure = match outcome {
                Ok(mut response) => {
                    self.circuit.record(Outcome::Healthy, self.sleeper.now());
                    self.observe(response.status, &response.headers, context);
                    response.attempts = sent;
                    response.elapsed = started.elapsed();
                    return Ok(response);
                }
                Err(failure) => failure,
            };
            let Failure {
                error,
                retry_after,
                headers,
            } = failure;
            if let (Some(headers), Some(status)) = (&headers, error.status) {
                self.observe(status, headers, context);
            }
            if let Some(opened) = self.circuit.record(health(&error), self.sleeper.now()) {
                self.events.circuit_opened(
                    context.stream,
                    opened.failures,
                    opened.cooldown.as_millis() as u64,
                    error.code.as_str(),
                );
            }
            if error.code == ErrorCode::AuthFailed && self.auth.refreshes() && !refreshed {
                // The token may have been revoked or expired early: one more try with a new
                // one, outside the retry count. A second refusal is final.
                refreshed = true;
                counted -= 1;
                self.auth.invalidate().await;
                continue;
            }
            if error.code == ErrorCode::RateLimit && error.retryable {
                let wanted = retry_after
                    .filter(|_| self.retry.respect_retry_after)
                    .unwrap_or_else(|| self.retry.base_delay(counted.saturating_sub(1)).mul_f64(0.5));
                self.check_deadline(wanted, &error)?;
            }
            let delay = match self.retry.decide(&error, replayable, counted, waited, retry_after) {
                Decision::Retry(delay) => delay,
                Decision::GiveUp => return Err(error),
            };
            if self
                .deadline
                .is_some_and(|deadline| self.sleeper.now() + delay > deadline)
            {
                return Err(error);
            }
            self.wait_to_retry(context, &error.request_id, sent, delay, error.code, &error.to_string())
                .await;
            waited += delay;
        }
    }

    /// Whether a page whose body did not parse (`failure`) is fetched again, after the wait
    /// the retry policy gives ([`RetryPolicy::decide_unparseable`]): announced and waited
    /// out as every retry of the send loop is. `false` when no attempt is left.
    pub async fn retry_unparseable(
        &self,
        context: RequestContext<'_>,
        request_id: &str,
        attempt: u32,
        failure: &str,
    ) -> bool {
        match self.retry.decide_unparseable(attempt) {
            Decision::Retry(delay) => {
                self.wait_to_retry(context, request_id, attempt, delay, ErrorCode::ParsingError, failure)
                    .await;
                true
            }
            Decision::GiveUp => false,
        }
    }

    /// Announces a retry (`request_retried`) and waits `delay` before it: the one wait
    /// every retry goes through.
    async fn wait_to_retry(
        &self,
        context: RequestContext<'_>,
        request_id: &str,
        attempt: u32,
        delay: Duration,
        code: ErrorCode,
        message: &str,
    ) {
        self.events.request_retried(
            context.stream,
            context.page,
            request_id,
            attempt,
            delay.as_millis() as u64,
            code.as_str(),
            message,
        );
        self.sleeper.sleep(delay).await;
    }

    /// Fails with a clean-stop error when waiting `wait` for a rate limit would pass the
    /// run's deadline.
    fn check_deadline(&self, wait: Duration, error: &HttpError) -> Result<(), HttpError> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let now = self.sleeper.now();
        if now + wait <= deadline {
            return Ok(());
        }
        Err(HttpError {
            code: ErrorCode::RateLimit,
            retryable: false,
            subsystem: Subsystem::RateLimit,
            reason: Reason::RunDeadline,
            message: format!(
                "rate limited: waiting {} s would pass the run deadline ({} s left); stopped at the last checkpoint",
                wait.as_secs(),
                deadline.saturating_duration_since(now).as_secs()
            ),
            ..error.clone()
        })
    }

    /// Waits for the request's turn under the rate limits (and stops at the run deadline).
    async fn wait_for_rate_limit(&self, request: &ErrorContext, context: RequestContext<'_>) -> Result<(), HttpError> {
        let now = self.sleeper.now();
        if let Some(deadline) = self.deadline
            && now >= deadline
        {
            return Err(request.error(
                ErrorCode::Timeout,
                None,
                false,
                Subsystem::RateLimit,
                Reason::RunDeadline,
                "the run reached its maximum duration (run --max-duration or source.max_run_duration); stopped at the last checkpoint",
            ));
        }
        let reservation = self.limiter.reserve(now);
        if reservation.wait.is_zero() {
            return Ok(());
        }
        let cause = reservation.cause.expect("a wait has a cause");
        let pending = request.error(
            ErrorCode::RateLimit,
            None,
            false,
            Subsystem::RateLimit,
            Reason::RunDeadline,
            String::new(),
        );
        self.check_deadline(reservation.wait, &pending)?;
        if !cause.from_server() && reservation.wait >= LOGGED_LOCAL_WAIT {
            self.events.rate_limited(
                context.stream,
                context.page,
                reservation.wait.as_millis() as u64,
                cause.as_str(),
                None,
            );
        }
        self.sleeper.sleep(reservation.wait).await;
        self.events
            .telemetry()
            .rate_limit_wait(context.stream, reservation.wait);
        Ok(())
    }

    /// Lets the adaptive rate limiter learn from a response, and logs what it decides.
    fn observe(&self, status: u16, headers: &HeaderMap, context: RequestContext<'_>) {
        match self
            .limiter
            .observe(status, headers, self.sleeper.now(), SystemTime::now())
        {
            Some(Signal::Paused { wait, cause }) => self.events.rate_limited(
                context.stream,
                context.page,
                wait.as_millis() as u64,
                cause.as_str(),
                None,
            ),
            Some(Signal::Paced {
                interval, remaining, ..
            }) => self.events.rate_limited(
                context.stream,
                context.page,
                interval.as_millis() as u64,
                rate_limit::Cause::RemainingLow.as_str(),
                Some(remaining),
            ),
            None => {}
        }
    }

    async fn attempt(
        &self,
        spec: &RequestSpec,
        url: &Url,
        idempotency_key: Option<&str>,
        request: &ErrorContext,
        page: u64,
    ) -> Result<Response, Failure> {
        let origin = url.origin();
        let mut hop_url = url.clone();
        let mut method = spec.method;
        let mut body = spec.body.as_deref();
        let mut credentials = spec.credentials;
        let mut hops = 0;
        let response = loop {
            let response = self
                .send_hop(spec, &hop_url, method, body, credentials, idempotency_key, request)
                .await?;
            let status = response.status();
            if !status.is_redirection() || status == reqwest::StatusCode::NOT_MODIFIED {
                break response;
            }
            let refused = |message: String| {
                Failure::from(request.error(
                    ErrorCode::RedirectRefused,
                    Some(status.as_u16()),
                    false,
                    Subsystem::Transport,
                    Reason::Redirect,
                    message,
                ))
            };
            let Some(location) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
            else {
                return Err(refused("redirect without a Location header".to_owned()));
            };
            let Ok(next) = hop_url.join(location) else {
                return Err(refused(format!(
                    "redirect to a Location that is not a URL: {}",
                    crate::redact::excerpt(location, 100)
                )));
            };
            hops += 1;
            if hops > redirect::MAX_REDIRECTS {
                return Err(refused(format!("more than {} redirects", redirect::MAX_REDIRECTS)));
            }
            let hop = redirect::check(self.redirects, &origin, &hop_url, &next)
                .map_err(|reason| refused(format!("redirect to {} refused: {reason}", crate::redact::url(&next))))?;
            credentials = spec.credentials && hop == redirect::Hop::SameOrigin;
            hop_url = next;
            if credentials {
                // Back at the source's origin: its query credentials go along again.
                if let Some(name) = self.auth.query_key_name()
                    && !hop_url.query_pairs().any(|(key, _)| key == name)
                {
                    self.auth.apply_to_url(&mut hop_url);
                }
            } else {
                redirect::strip_credentials(&mut hop_url, self.auth.query_key_name());
            }
            // As browsers do: 303 (and 301/302 of a POST) turn into a GET without a body.
            if status == reqwest::StatusCode::SEE_OTHER
                || (method == Method::Post
                    && matches!(
                        status,
                        reqwest::StatusCode::MOVED_PERMANENTLY | reqwest::StatusCode::FOUND
                    ))
            {
                method = Method::Get;
                body = None;
            }
        };
        let final_url = if hops == 0 {
            spec.url.clone()
        } else {
            without_query_key(hop_url, self.auth.query_key_name())
        };
        self.read_response(response, final_url, request, page).await
    }

    /// Sends one hop of an attempt. A hop to another origin (`credentials` false) carries
    /// none of the source's headers and no credential.
    #[allow(clippy::too_many_arguments)]
    async fn send_hop(
        &self,
        spec: &RequestSpec,
        url: &Url,
        method: Method,
        body: Option<&[u8]>,
        credentials: bool,
        idempotency_key: Option<&str>,
        request: &ErrorContext,
    ) -> Result<reqwest::Response, Failure> {
        let mut builder = self.client.request(
            match method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
            },
            url.clone(),
        );
        if credentials {
            for (name, value) in &spec.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
        }
        builder = builder.header("x-request-id", request.request_id.as_str());
        if credentials {
            let parts = SignedParts {
                method: method.as_str(),
                url,
                body,
            };
            let env = AuthEnv {
                http: &self.client,
                now: self.sleeper.now(),
                wall: SystemTime::now(),
                events: &self.events,
            };
            for (name, value) in self.auth.headers(&parts, request, &env).await? {
                builder = builder.header(name, value);
            }
        }
        if let Some(body) = body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        if let Some(key) = idempotency_key.filter(|_| credentials && method == Method::Post) {
            builder = builder.header(
                HeaderName::from_static("idempotency-key"),
                HeaderValue::from_str(key).expect("hex is a valid header"),
            );
        }
        builder.send().await.map_err(|failure| {
            if let Some(refused) = resolve::address_refused(&failure) {
                return Failure::from(request.error(
                    ErrorCode::AddressRefused,
                    None,
                    false,
                    Subsystem::Transport,
                    Reason::Address,
                    refused.to_string(),
                ));
            }
            if let Some(message) = crate::error::untrusted_certificate(&failure) {
                return Failure::from(request.error(
                    ErrorCode::ConfigError,
                    None,
                    false,
                    Subsystem::Transport,
                    Reason::Connect,
                    message,
                ));
            }
            let (code, reason) = error::classify_transport(&failure);
            Failure::from(request.error(
                code,
                None,
                true,
                Subsystem::Transport,
                reason,
                crate::error::describe(&failure),
            ))
        })
    }

    /// Reads the final response of an attempt: a success whole (within
    /// `source.max_response_size`), a failure as an error quoting the start of its body.
    async fn read_response(
        &self,
        mut response: reqwest::Response,
        url: Url,
        request: &ErrorContext,
        page: u64,
    ) -> Result<Response, Failure> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let request = ErrorContext {
            request_id: REQUEST_ID_HEADERS
                .iter()
                .find_map(|name| headers.get(*name).and_then(|value| value.to_str().ok()))
                .filter(|value| !value.is_empty())
                .map(|value| crate::redact::excerpt(value, 128))
                .unwrap_or_else(|| request.request_id.clone()),
            ..request.clone()
        };
        if !(200..300).contains(&status) {
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| retry::parse_retry_after(value, SystemTime::now()));
            let snippet = body::read_prefix(&mut response, body::ERROR_BODY_LIMIT).await;
            let treated_as = error::effective_status(status, &headers);
            let (code, subsystem) = error::classify_status(treated_as);
            return Err(Failure {
                error: request.error(
                    code,
                    Some(status),
                    self.retry.retries_status(treated_as),
                    subsystem,
                    Reason::Status,
                    format!(
                        "response body: {}",
                        crate::redact::excerpt_bytes(&snippet, crate::redact::EXCERPT_CHARS)
                    ),
                ),
                retry_after,
                headers: Some(headers),
            });
        }
        let (body, spilled) = match body::read_limited(&mut response, self.max_response_size, self.spill_threshold)
            .await
        {
            Ok(body::ReadBody::Memory(body)) => (body, None),
            Ok(body::ReadBody::Spilled(spilled)) => (Bytes::new(), Some(spilled)),
            Err(body::ReadError::Spill(failure)) => {
                return Err(request
                    .error(
                        ErrorCode::StorageError,
                        Some(status),
                        false,
                        Subsystem::Transport,
                        Reason::Spill,
                        format!(
                            "page {page}: the body could not be written to a temporary file under {}: {failure}",
                            std::env::temp_dir().display()
                        ),
                    )
                    .into());
            }
            Err(body::ReadError::TooLarge) => {
                return Err(request
                    .error(
                        ErrorCode::ResponseTooLarge,
                        Some(status),
                        false,
                        Subsystem::Transport,
                        Reason::TooLarge,
                        format!(
                            "page {page}: the response body is larger than source.max_response_size ({} bytes, counted after decompression); reading stopped there",
                            self.max_response_size
                        ),
                    )
                    .into());
            }
            Err(body::ReadError::Failed(failure)) => {
                return Err(request
                    .error(
                        error::classify_transport(&failure).0,
                        Some(status),
                        true,
                        Subsystem::Transport,
                        Reason::Body,
                        format!("reading the body failed: {}", crate::error::describe(&failure)),
                    )
                    .into());
            }
        };
        Ok(Response {
            status,
            headers,
            body,
            spilled,
            request_id: request.request_id,
            url,
            attempts: 0,
            elapsed: Duration::ZERO,
        })
    }
}

/// What a failure says about the source's health, for the circuit breaker.
fn health(error: &HttpError) -> Outcome {
    match (error.reason, error.status) {
        (Reason::Connect | Reason::Transport | Reason::Body, _) => Outcome::Failed(error.code),
        (Reason::Status, Some(status)) if status >= 500 || status == 408 => Outcome::Failed(error.code),
        _ => Outcome::Neutral,
    }
}

/// `url` without the query parameter `name` (the api key the client added).
fn without_query_key(mut url: Url, name: Option<&str>) -> Url {
    let Some(name) = name else { return url };
    if !url.query_pairs().any(|(key, _)| key == name) {
        return url;
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url
}

/// The `Idempotency-Key` of a POST: the same for every attempt of one page's request.
fn idempotency_key(context: RequestContext<'_>, body: &[u8]) -> String {
    let key = crate::hash::sha256_hex(
        [context.stream.as_bytes(), &context.page.to_be_bytes(), body]
            .concat()
            .as_slice(),
    );
    key[..32].to_owned()
}
