//! The source's config (`source:`): the API's address, headers and parameters, and how the
//! client talks to it (auth, retries, rate limit, circuit breaker, TLS, redirects), with
//! the checks of each, made without I/O.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::settings::check::{check_param_value, has_reference, is_identifier, is_loopback, non_empty};
use crate::settings::nonzero::at_least_one;
use crate::settings::{ByteSize, ConfigError, HumanDuration, Secret};

/// The API and how to talk to it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `[a-z][a-z0-9_]*`; becomes `_source_system` and the landing prefix.
    pub name: String,
    /// The source family: `rest` (HTTP APIs), `postgres` or `mysql` (MySQL and MariaDB).
    /// Default: `rest`.
    #[serde(default, rename = "type")]
    pub kind: SourceKind,
    /// Base URL every stream path is appended to (`rest` sources: required).
    #[serde(default)]
    pub base_url: String,
    /// Database sources: the connection URL (`postgres://user@host:5432/db`,
    /// `mysql://user@host:3306/db`); a reference such as `${env:DATABASE_URL}` when it
    /// holds a password. Either `url` or `host` is required. Default: none.
    #[serde(default, skip_serializing)]
    pub url: Option<Secret>,
    /// Database sources: the server's host (instead of `url`). Default: none.
    #[serde(default)]
    pub host: Option<String>,
    /// Database sources: the server's port. Default: 5432 (postgres), 3306 (mysql).
    #[serde(default)]
    pub port: Option<u16>,
    /// Database sources: the database to read. Default: the server's default for the user.
    #[serde(default)]
    pub database: Option<String>,
    /// Database sources: the login. Default: none.
    #[serde(default)]
    pub user: Option<String>,
    /// Database sources: the password, a reference (`${env:NAME}`, `${file:/path}`).
    /// Default: none.
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// Database sources: how long connecting may take. Default: 10s.
    #[serde(default)]
    pub connect_timeout: Option<HumanDuration>,
    /// Database sources: the longest one chunk's statement may run on the server.
    /// Default: none (the server's setting).
    #[serde(default)]
    pub statement_timeout: Option<HumanDuration>,
    /// Database sources: the name the server shows for Landfall's sessions. Default:
    /// `landfall`.
    #[serde(default)]
    pub application_name: Option<String>,
    /// Database sources: the most connections the run opens at once (one per stream being
    /// read; it caps `max_concurrent_streams`). Default: `max_concurrent_streams`.
    #[serde(default, deserialize_with = "crate::settings::nonzero::at_least_one_or_null")]
    pub pool_size: Option<NonZeroU32>,
    /// Free-form description, carried to generated dbt sources.
    #[serde(default)]
    pub description: Option<String>,
    /// Becomes `_tenant`. Default: null.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Becomes `_environment`. Default: null.
    #[serde(default)]
    pub environment: Option<String>,
    /// Headers sent with every request. Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters sent with every request. Default: none.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Default: `{type: none}`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Per-request timeout. Default: 30s.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Allow plain `http://` to non-loopback hosts. Default: false.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// The longest a run may take. A wait that would pass it (a rate limit, mostly) stops
    /// the stream cleanly at its last checkpoint with status `partial`; `run
    /// --max-duration` overrides it. Default: null (no limit).
    #[serde(default)]
    pub max_run_duration: Option<HumanDuration>,
    /// How many streams `landfall run` extracts at once in its one process, all sharing
    /// the source's one rate limiter, circuit breaker and token cache; a child stream
    /// starts once its parent has finished. At least 1. Default: 4.
    #[serde(default = "default_max_concurrent_streams", deserialize_with = "at_least_one")]
    pub max_concurrent_streams: NonZeroU32,
    /// The most bytes one response body may hold, counted after decompression (gzip,
    /// deflate, brotli) as it is read; a larger page fails with `RESPONSE_TOO_LARGE`.
    /// Default: 256MiB.
    #[serde(default = "default_max_response_size")]
    pub max_response_size: ByteSize,
    /// A response body larger than this is written to a temporary file (under `TMPDIR`)
    /// as it arrives, and its records are read from there one at a time, so a page's size
    /// does not decide the memory a stream takes. `0` spills every page. Default: 8MiB.
    #[serde(default = "default_spill_threshold")]
    pub spill_threshold: ByteSize,
    /// Which redirects are followed. Default: `same_origin`.
    #[serde(default)]
    pub redirects: RedirectPolicy,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

fn default_max_concurrent_streams() -> NonZeroU32 {
    NonZeroU32::new(4).expect("4 is not 0")
}

fn default_max_response_size() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_spill_threshold() -> ByteSize {
    ByteSize(8 << 20)
}

/// `source.redirects`: which redirects a request follows (at most 10 hops). None is ever
/// followed to another scheme (https to http), to a link-local or cloud metadata address,
/// and no credential reaches another origin.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedirectPolicy {
    /// Only to the same scheme, host and port, credentials kept.
    #[default]
    SameOrigin,
    /// No redirect is followed: a 3xx fails the request.
    None,
    /// To any https origin; a hop to another origin carries no credential (no auth
    /// header, no `source.headers`, no api key in the query).
    AnyHttps,
}

/// Where an API key goes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    Header,
    Query,
}

/// OAuth 2.0 grant used to obtain access tokens.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Flow {
    ClientCredentials,
    RefreshToken,
}

/// `source.auth`, chosen by `type`.
///
/// `none` is a variant with no fields rather than a unit variant: serde lets a unit variant
/// of an internally tagged enum take any other key, and a misplaced key must be an error.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    None {},
    ApiKey {
        #[serde(rename = "in", default = "default_api_key_location")]
        location: ApiKeyLocation,
        name: String,
        #[serde(skip_serializing)]
        value: Secret,
    },
    Bearer {
        #[serde(skip_serializing)]
        token: Secret,
    },
    Basic {
        /// May be a reference; treated as a secret once resolved (some vendors put the API
        /// key here).
        #[serde(skip_serializing)]
        username: Secret,
        #[serde(skip_serializing, default)]
        password: Option<Secret>,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        flow: OAuth2Flow,
        /// The token endpoint; https unless loopback or `allow_insecure_http`.
        token_url: String,
        client_id: String,
        #[serde(skip_serializing)]
        client_secret: Secret,
        /// Needed by the `refresh_token` flow. A rotated refresh token returned by the
        /// server replaces it for the rest of the run and is kept (encrypted) in
        /// `{source}/_state/_auth.json` for the next run. Default: none.
        #[serde(skip_serializing, default)]
        refresh_token: Option<Secret>,
        /// Scopes requested, joined by spaces into `scope`. Default: none.
        #[serde(default)]
        scopes: Vec<String>,
        /// How the client authenticates to the token endpoint. Default: `body`.
        #[serde(default)]
        client_auth: OAuth2ClientAuth,
        /// Extra form fields of the token request, e.g. `audience`. Default: none.
        #[serde(default)]
        token_params: BTreeMap<String, String>,
        /// A token is refreshed this long before it expires (`expires_in` minus the
        /// margin, at most half its lifetime). Default: 60s.
        #[serde(default = "default_refresh_margin")]
        refresh_margin: HumanDuration,
    },
    Hmac {
        #[serde(skip_serializing)]
        secret: Secret,
        /// How the secret is written: `raw` (its bytes), `base64` or `hex`. Default: `raw`.
        #[serde(default)]
        secret_encoding: HmacSecretEncoding,
        /// Header carrying the signature. Default: `X-Signature`.
        #[serde(default = "default_hmac_header")]
        header: String,
        /// The signature header's value; `{signature}`, `{key_id}` and `{timestamp}` are
        /// replaced. Default: `{signature}`.
        #[serde(default = "default_hmac_header_value")]
        header_value: String,
        /// Key id for `{key_id}` (some vendors name the key next to the signature).
        /// Default: none.
        #[serde(default)]
        key_id: Option<String>,
        /// Default: `sha256`.
        #[serde(default)]
        algorithm: HmacAlgorithm,
        /// How the signature is written: `hex` (lowercase) or `base64`. Default: `hex`.
        #[serde(default)]
        encoding: HmacEncoding,
        /// The string that is signed. Placeholders: `{method}`, `{path}`, `{query}`,
        /// `{path_and_query}`, `{host}`, `{timestamp}`, `{body_sha256}` (hex SHA-256 of the
        /// body, of the empty string without one), `{body}`, `{key_id}`; YAML `\n` for
        /// newlines. Default: `{method}\n{path_and_query}\n{timestamp}\n{body_sha256}`.
        #[serde(default = "default_hmac_canonical")]
        canonical: String,
        /// Header that carries the timestamp; null sends none. Default: `X-Timestamp`.
        #[serde(default = "default_hmac_timestamp_header")]
        timestamp_header: Option<String>,
        /// `unix` (seconds), `unix_ms` or `rfc3339`. Default: `unix`.
        #[serde(default)]
        timestamp_format: HmacTimestampFormat,
    },
    /// A Google service account: a JWT signed with its private key (RS256) is exchanged for
    /// an access token (RFC 7523 JWT bearer grant), cached and refreshed like an OAuth 2.0
    /// token.
    GoogleServiceAccount {
        /// The service account's JSON key, e.g. `${file:/run/secrets/key.json}`.
        #[serde(skip_serializing)]
        key: Secret,
        /// Scopes requested, joined by spaces into the assertion's `scope`; at least one.
        scopes: Vec<String>,
        /// The user to act as (domain-wide delegation), the assertion's `sub`. Default: none.
        #[serde(default)]
        subject: Option<String>,
        /// The token endpoint. Default: the key's `token_uri`, else
        /// `https://oauth2.googleapis.com/token`.
        #[serde(default)]
        token_url: Option<String>,
    },
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self::None {}
    }
}

/// How an OAuth 2.0 client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2ClientAuth {
    /// `client_id` and `client_secret` as form fields (the default).
    #[default]
    Body,
    /// HTTP basic authentication (RFC 6749 §2.3.1).
    Basic,
}

/// How an HMAC secret is written in the config.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HmacSecretEncoding {
    #[default]
    Raw,
    Base64,
    Hex,
}

/// The hash an HMAC signature uses.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    #[default]
    Sha256,
    Sha512,
}

/// How an HMAC signature is written in its header.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HmacEncoding {
    #[default]
    Hex,
    Base64,
}

/// How the HMAC timestamp is written.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HmacTimestampFormat {
    /// Seconds since the Unix epoch.
    #[default]
    Unix,
    /// Milliseconds since the Unix epoch.
    UnixMs,
    /// RFC 3339 UTC, seconds precision.
    Rfc3339,
}

pub(crate) fn default_refresh_margin() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_hmac_header_value() -> String {
    "{signature}".to_owned()
}
fn default_hmac_canonical() -> String {
    "{method}\n{path_and_query}\n{timestamp}\n{body_sha256}".to_owned()
}
fn default_hmac_timestamp_header() -> Option<String> {
    Some("X-Timestamp".to_owned())
}

fn default_api_key_location() -> ApiKeyLocation {
    ApiKeyLocation::Header
}

fn default_hmac_header() -> String {
    "X-Signature".to_owned()
}

impl AuthConfig {
    /// Every secret field with its key path, for the literal-secret check.
    pub fn secrets(&self) -> Vec<(&'static str, &Secret)> {
        match self {
            AuthConfig::None {} => vec![],
            AuthConfig::ApiKey { value, .. } => vec![("value", value)],
            AuthConfig::Bearer { token } => vec![("token", token)],
            AuthConfig::Basic { password, .. } => password.iter().map(|p| ("password", p)).collect(),
            AuthConfig::OAuth2 {
                client_secret,
                refresh_token,
                ..
            } => {
                let mut secrets = vec![("client_secret", client_secret)];
                if let Some(token) = refresh_token {
                    secrets.push(("refresh_token", token));
                }
                secrets
            }
            AuthConfig::Hmac { secret, .. } => vec![("secret", secret)],
            AuthConfig::GoogleServiceAccount { key, .. } => vec![("key", key)],
        }
    }

    /// The `type` value, as written in config.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthConfig::None {} => "none",
            AuthConfig::ApiKey { .. } => "api_key",
            AuthConfig::Bearer { .. } => "bearer",
            AuthConfig::Basic { .. } => "basic",
            AuthConfig::OAuth2 { .. } => "oauth2",
            AuthConfig::Hmac { .. } => "hmac",
            AuthConfig::GoogleServiceAccount { .. } => "google_service_account",
        }
    }
}

/// `source.retry`: how failed requests are retried.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included. Default: 3.
    #[serde(default = "default_max_attempts", deserialize_with = "at_least_one")]
    pub max_attempts: NonZeroU32,
    /// Default: 1s.
    #[serde(default = "default_initial_delay")]
    pub initial_delay: HumanDuration,
    /// Default: 30s.
    #[serde(default = "default_max_delay")]
    pub max_delay: HumanDuration,
    /// Default: 2.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Total time one request may spend waiting between retries. Default: 2m.
    #[serde(default = "default_budget")]
    pub budget: HumanDuration,
    /// Default: 408, 425, 429, 500, 502, 503, 504.
    #[serde(default = "default_retry_on_status")]
    pub retry_on_status: Vec<u16>,
    /// Default: true.
    #[serde(default = "default_true")]
    pub respect_retry_after: bool,
}

fn default_max_attempts() -> NonZeroU32 {
    NonZeroU32::new(3).expect("3 is not 0")
}
fn default_initial_delay() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_max_delay() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_budget() -> HumanDuration {
    HumanDuration::from_secs(120)
}
fn default_retry_on_status() -> Vec<u16> {
    vec![408, 425, 429, 500, 502, 503, 504]
}
fn default_true() -> bool {
    true
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_delay: default_initial_delay(),
            max_delay: default_max_delay(),
            multiplier: default_multiplier(),
            budget: default_budget(),
            retry_on_status: default_retry_on_status(),
            respect_retry_after: true,
        }
    }
}

/// `source.rate_limit`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Default: 10.
    #[serde(default = "default_rps")]
    pub requests_per_second: Option<f64>,
    /// Default: unlimited.
    #[serde(default)]
    pub requests_per_minute: Option<f64>,
    /// Default: unlimited.
    #[serde(default)]
    pub requests_per_hour: Option<f64>,
    /// Default: 10.
    #[serde(default = "default_burst", deserialize_with = "at_least_one")]
    pub burst: NonZeroU32,
    /// Requests in flight at once. Default: 4.
    #[serde(default = "default_concurrency", deserialize_with = "at_least_one")]
    pub concurrency: NonZeroU32,
    /// Slow down from rate-limit response headers. Default: true.
    #[serde(default = "default_true")]
    pub adaptive: bool,
}

fn default_rps() -> Option<f64> {
    Some(10.0)
}
fn default_burst() -> NonZeroU32 {
    NonZeroU32::new(10).expect("10 is not 0")
}
fn default_concurrency() -> NonZeroU32 {
    NonZeroU32::new(4).expect("4 is not 0")
}

impl RateLimitConfig {
    /// This budget divided among `parts` processes (`landfall run --rate-share N`): every
    /// rate and the burst divided by `parts`, the concurrency too, the burst and the
    /// concurrency never below 1. `parts` processes with their shares together never send
    /// more than the configured rate (after at most `parts` first requests when the burst
    /// is smaller than `parts`: each process needs one token to start).
    pub fn share(&self, parts: std::num::NonZeroU32) -> Self {
        let parts_f64 = f64::from(parts.get());
        let divide = |rate: Option<f64>| rate.map(|rate| rate / parts_f64);
        Self {
            requests_per_second: divide(self.requests_per_second),
            requests_per_minute: divide(self.requests_per_minute),
            requests_per_hour: divide(self.requests_per_hour),
            burst: NonZeroU32::new(self.burst.get() / parts.get()).unwrap_or(NonZeroU32::MIN),
            concurrency: NonZeroU32::new(self.concurrency.get() / parts.get()).unwrap_or(NonZeroU32::MIN),
            adaptive: self.adaptive,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: default_rps(),
            requests_per_minute: None,
            requests_per_hour: None,
            burst: default_burst(),
            concurrency: default_concurrency(),
            adaptive: true,
        }
    }
}

/// `source.circuit_breaker`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed requests that open the circuit. Default: 5.
    #[serde(default = "default_failure_threshold", deserialize_with = "at_least_one")]
    pub failure_threshold: NonZeroU32,
    /// Default: 30s.
    #[serde(default = "default_cooldown")]
    pub cooldown: HumanDuration,
}

fn default_failure_threshold() -> NonZeroU32 {
    NonZeroU32::new(5).expect("5 is not 0")
}
fn default_cooldown() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            cooldown: default_cooldown(),
        }
    }
}

/// `source.tls`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Database sources: `disable`, `prefer` (TLS when the server offers it), `require`
    /// or `verify-full`. Landfall verifies the server's certificate and host name whenever
    /// it uses TLS (`require` and `verify-full` differ only in name). Default: `prefer`.
    #[serde(default)]
    pub mode: Option<TlsMode>,
    /// Extra CA certificate bundle (PEM). Default: none (system roots).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate (PEM) for mutual TLS. Default: none.
    #[serde(default)]
    pub client_cert_file: Option<String>,
    /// Client key (PEM) for mutual TLS. Default: none.
    #[serde(default)]
    pub client_key_file: Option<String>,
    /// `"1.2"` or `"1.3"`. Default: `"1.2"`.
    #[serde(default = "default_tls_min_version")]
    pub min_version: String,
}

fn default_tls_min_version() -> String {
    "1.2".to_owned()
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            mode: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            min_version: default_tls_min_version(),
        }
    }
}

/// `source.type`: the family of the source.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    #[default]
    Rest,
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Rest => "rest",
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
        }
    }

    /// Whether the source is a database.
    pub fn is_database(self) -> bool {
        self != SourceKind::Rest
    }
}

/// `source.tls.mode` (database sources).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum TlsMode {
    #[serde(rename = "disable")]
    Disable,
    #[default]
    #[serde(rename = "prefer")]
    Prefer,
    #[serde(rename = "require")]
    Require,
    #[serde(rename = "verify-full")]
    VerifyFull,
}

/// HTTP method of a stream's requests.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// When a failed POST may be sent again. A request that never reached the source (no
/// connection) is always retried.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetryPost {
    /// Only when it carries an `Idempotency-Key` (the default).
    #[default]
    Auto,
    /// Always: the stream declares its POST read-only (a search endpoint).
    Safe,
    /// Never.
    Never,
}

impl SourceConfig {
    /// Checks the source's settings without I/O (errors name `source.<key>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let source = self;
        if !is_identifier(&source.name) {
            return Err(ConfigError::invalid(
                "source.name",
                format!("`{}` must match [a-z][a-z0-9_]* (at most 64 characters)", source.name),
            ));
        }
        if source.kind.is_database() {
            self.validate_database()?;
        } else {
            self.validate_not_database()?;
            if !has_reference(&source.base_url) {
                self.validate_base_url()?;
            }
        }
        if source.timeout.0.is_zero() {
            return Err(ConfigError::invalid("source.timeout", "must be greater than zero"));
        }
        if source.max_run_duration.is_some_and(|duration| duration.0.is_zero()) {
            return Err(ConfigError::invalid(
                "source.max_run_duration",
                "must be greater than zero, or null for no limit",
            ));
        }
        if source.circuit_breaker.cooldown.0.is_zero() {
            return Err(ConfigError::invalid(
                "source.circuit_breaker.cooldown",
                "must be greater than zero",
            ));
        }
        self.validate_auth()?;
        let retry = &source.retry;
        if retry.multiplier < 1.0 || !retry.multiplier.is_finite() {
            return Err(ConfigError::invalid("source.retry.multiplier", "must be a number >= 1"));
        }
        if retry.max_delay < retry.initial_delay {
            return Err(ConfigError::invalid(
                "source.retry.max_delay",
                "must be >= initial_delay",
            ));
        }
        let rate = &source.rate_limit;
        for (key, value, window) in [
            ("requests_per_second", rate.requests_per_second, 1.0),
            ("requests_per_minute", rate.requests_per_minute, 60.0),
            ("requests_per_hour", rate.requests_per_hour, 3600.0),
        ] {
            if let Some(value) = value
                && (value <= 0.0 || !value.is_finite())
            {
                return Err(ConfigError::invalid(
                    format!("source.rate_limit.{key}"),
                    "must be a positive number or null",
                ));
            }
            // A rate slower than one request a day is a typo (and its waits overflow).
            let least = window / 86_400.0;
            if let Some(value) = value
                && value < least
            {
                return Err(ConfigError::invalid(
                    format!("source.rate_limit.{key}"),
                    format!("must be at least {least} (one request a day), or null for no limit"),
                ));
            }
        }
        if source.max_response_size.0 < 1024 {
            return Err(ConfigError::invalid(
                "source.max_response_size",
                "must be at least 1KiB",
            ));
        }
        if !matches!(source.tls.min_version.as_str(), "1.2" | "1.3") {
            return Err(ConfigError::invalid(
                "source.tls.min_version",
                "must be \"1.2\" or \"1.3\"",
            ));
        }
        if source.tls.client_cert_file.is_some() != source.tls.client_key_file.is_some() {
            return Err(ConfigError::invalid(
                "source.tls",
                "client_cert_file and client_key_file must be given together",
            ));
        }
        for (key, value) in &source.params {
            check_param_value(&format!("source.params.{key}"), value)?;
        }
        Ok(())
    }

    /// The keys only a database source reads, with whether each is set.
    fn database_keys(&self) -> [(&'static str, bool); 11] {
        [
            ("url", self.url.is_some()),
            ("host", self.host.is_some()),
            ("port", self.port.is_some()),
            ("database", self.database.is_some()),
            ("user", self.user.is_some()),
            ("password", self.password.is_some()),
            ("connect_timeout", self.connect_timeout.is_some()),
            ("statement_timeout", self.statement_timeout.is_some()),
            ("application_name", self.application_name.is_some()),
            ("pool_size", self.pool_size.is_some()),
            ("tls.mode", self.tls.mode.is_some()),
        ]
    }

    /// A `rest` source: no database key is set.
    fn validate_not_database(&self) -> Result<(), ConfigError> {
        if let Some((key, _)) = self.database_keys().into_iter().find(|(_, set)| *set) {
            return Err(ConfigError::invalid(
                format!("source.{key}"),
                "is read only by database sources (source.type: postgres or mysql)",
            ));
        }
        if self.base_url.is_empty() {
            return Err(ConfigError::invalid(
                "source.base_url",
                "is required (or set source.type: postgres or mysql for a database)",
            ));
        }
        Ok(())
    }

    /// A database source: a connection (`url` or `host`), and none of the HTTP-only keys.
    fn validate_database(&self) -> Result<(), ConfigError> {
        let kind = self.kind.as_str();
        if !self.base_url.is_empty() {
            return Err(ConfigError::invalid(
                "source.base_url",
                format!("a {kind} source connects with source.url or source.host, not a base URL"),
            ));
        }
        match (&self.url, &self.host) {
            (None, None) => {
                return Err(ConfigError::invalid(
                    "source.url",
                    format!("a {kind} source needs source.url (e.g. ${{env:DATABASE_URL}}) or source.host"),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "source.host",
                    "give either source.url or source.host (with port, database, user, password), not both",
                ));
            }
            (Some(url), None) if !has_reference(url.expose()) => {
                let scheme = url.expose().split_once("://").map(|(scheme, _)| scheme);
                let expected: &[&str] = match self.kind {
                    SourceKind::Postgres => &["postgres", "postgresql"],
                    _ => &["mysql", "mariadb"],
                };
                if !scheme.is_some_and(|scheme| expected.contains(&scheme)) {
                    return Err(ConfigError::invalid(
                        "source.url",
                        format!("must start with {}:// for a {kind} source", expected[0]),
                    ));
                }
            }
            _ => {}
        }
        if let Some(host) = &self.host {
            non_empty("source.host", host)?;
        }
        if self.port == Some(0) {
            return Err(ConfigError::invalid("source.port", "must be between 1 and 65535"));
        }
        for (key, duration) in [
            ("connect_timeout", self.connect_timeout),
            ("statement_timeout", self.statement_timeout),
        ] {
            if duration.is_some_and(|duration| duration.0.is_zero()) {
                return Err(ConfigError::invalid(
                    format!("source.{key}"),
                    "must be greater than zero",
                ));
            }
        }
        if let Some(name) = &self.application_name
            && (name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        {
            return Err(ConfigError::invalid(
                "source.application_name",
                "must be 1 to 63 printable ASCII characters",
            ));
        }
        let http_only = [
            ("auth", !matches!(self.auth, AuthConfig::None {})),
            ("headers", !self.headers.is_empty()),
            ("params", !self.params.is_empty()),
        ];
        if let Some((key, _)) = http_only.into_iter().find(|(_, set)| *set) {
            return Err(ConfigError::invalid(
                format!("source.{key}"),
                format!("is read only by rest sources; a {kind} source authenticates with user and password"),
            ));
        }
        Ok(())
    }

    fn validate_base_url(&self) -> Result<(), ConfigError> {
        let source = self;
        let base = Url::parse(&source.base_url).map_err(|error| {
            ConfigError::invalid(
                "source.base_url",
                format!("`{}` is not a URL: {error}", source.base_url),
            )
        })?;
        match base.scheme() {
            "https" => Ok(()),
            "http" if source.allow_insecure_http || is_loopback(&base) => Ok(()),
            "http" => Err(ConfigError::invalid(
                "source.base_url",
                "plain http:// is refused; use https:// or set source.allow_insecure_http: true",
            )),
            other => Err(ConfigError::invalid(
                "source.base_url",
                format!("unsupported scheme `{other}`; use https://"),
            )),
        }
    }

    /// A token endpoint: https, or http to loopback or with `allow_insecure_http`.
    fn validate_token_url(&self, key: &str, token_url: &str) -> Result<(), ConfigError> {
        if has_reference(token_url) {
            return Ok(());
        }
        let url = Url::parse(token_url)
            .map_err(|error| ConfigError::invalid(key, format!("`{token_url}` is not a URL: {error}")))?;
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_insecure_http || is_loopback(&url) => Ok(()),
            _ => Err(ConfigError::invalid(
                key,
                "the token endpoint must use https:// (plain http only to loopback or with source.allow_insecure_http)",
            )),
        }
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        match &self.auth {
            AuthConfig::None {} | AuthConfig::Bearer { .. } | AuthConfig::Basic { .. } => Ok(()),
            AuthConfig::ApiKey { name, .. } => non_empty("source.auth.name", name),
            AuthConfig::OAuth2 {
                flow,
                token_url,
                client_id,
                refresh_token,
                ..
            } => {
                non_empty("source.auth.client_id", client_id)?;
                if *flow == OAuth2Flow::RefreshToken && refresh_token.is_none() {
                    return Err(ConfigError::invalid(
                        "source.auth.refresh_token",
                        "the refresh_token flow needs a refresh_token",
                    ));
                }
                self.validate_token_url("source.auth.token_url", token_url)
            }
            AuthConfig::GoogleServiceAccount {
                key,
                scopes,
                subject,
                token_url,
            } => {
                if scopes.is_empty() {
                    return Err(ConfigError::invalid(
                        "source.auth.scopes",
                        "at least one scope is needed, e.g. https://www.googleapis.com/auth/spreadsheets.readonly",
                    ));
                }
                for scope in scopes {
                    non_empty("source.auth.scopes", scope)?;
                }
                if let Some(subject) = subject {
                    non_empty("source.auth.subject", subject)?;
                }
                if let Some(token_url) = token_url {
                    self.validate_token_url("source.auth.token_url", token_url)?;
                }
                if has_reference(key.expose()) {
                    return Ok(());
                }
                let key = super::auth::google::ServiceAccountKey::parse(key.expose())
                    .map_err(|message| ConfigError::invalid("source.auth.key", message))?;
                if token_url.is_none() {
                    self.validate_token_url("source.auth.key", key.token_uri())?;
                }
                Ok(())
            }
            AuthConfig::Hmac {
                header,
                header_value,
                canonical,
                secret,
                secret_encoding,
                ..
            } => {
                non_empty("source.auth.header", header)?;
                non_empty("source.auth.canonical", canonical)?;
                super::auth::check_template(canonical, super::auth::CANONICAL_PLACEHOLDERS)
                    .map_err(|message| ConfigError::invalid("source.auth.canonical", message))?;
                super::auth::check_template(header_value, super::auth::HEADER_PLACEHOLDERS)
                    .map_err(|message| ConfigError::invalid("source.auth.header_value", message))?;
                if !has_reference(secret.expose()) {
                    super::auth::decode_hmac_secret(secret.expose(), *secret_encoding)
                        .map_err(|message| ConfigError::invalid("source.auth.secret", message))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_share_divides_the_budget_and_keeps_what_works() {
        let budget = RateLimitConfig {
            requests_per_second: Some(10.0),
            requests_per_minute: Some(300.0),
            requests_per_hour: None,
            burst: NonZeroU32::new(10).unwrap(),
            concurrency: NonZeroU32::new(4).unwrap(),
            adaptive: true,
        };
        let share = budget.share(std::num::NonZeroU32::new(4).unwrap());
        assert_eq!(share.requests_per_second, Some(2.5));
        assert_eq!(share.requests_per_minute, Some(75.0));
        assert_eq!(share.requests_per_hour, None);
        assert_eq!(
            (share.burst.get(), share.concurrency.get(), share.adaptive),
            (2, 1, true)
        );
        let tiny = budget.share(std::num::NonZeroU32::new(1000).unwrap());
        assert_eq!((tiny.burst.get(), tiny.concurrency.get()), (1, 1));
        let whole = budget.share(std::num::NonZeroU32::MIN);
        assert_eq!(
            (whole.requests_per_second, whole.burst.get(), whole.concurrency.get()),
            (Some(10.0), 10, 4)
        );
    }
}
