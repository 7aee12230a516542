//! Request authentication from `source.auth`: static credentials here, OAuth 2.0 tokens in
//! [`oauth2`] (Google service accounts too, their assertions signed in [`google`]), request
//! signatures in [`hmac`]. Every credential header is marked
//! sensitive; every secret that appears at run time (a fetched token, a rotated refresh
//! token) is registered with [`crate::redact`] before it is used.

pub mod google;
pub mod hmac;
pub mod oauth2;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use url::Url;

pub use self::hmac::{CANONICAL_PLACEHOLDERS, HEADER_PLACEHOLDERS, check_template, decode_hmac_secret};
use super::error::{ErrorContext, HttpError, Reason, Subsystem};
use crate::error::ErrorCode;
use crate::http::config::{ApiKeyLocation, AuthConfig};
use crate::observe::events::Events;

/// Keeps credentials that change during a run (a rotated OAuth 2.0 refresh token) for the
/// next run. The HTTP layer hands it an opaque document (the secret inside is already
/// encrypted) and gets it back; where it lives is the caller's business
/// (`crate::state::credentials` keeps it in the landing zone's `_state/`).
///
/// Saves are compare-and-swap: a save names the version of the document its writer read
/// last, and fails with [`Saved::Conflict`] when another process saved since. The caller
/// then reads again and keeps whichever token is newer.
#[async_trait]
pub trait CredentialStore: Send + Sync + std::fmt::Debug {
    /// The document saved last, if any, with its version.
    async fn load(&self) -> Result<Option<StoredCredentials>, CredentialStoreError>;
    /// Replaces the saved document if it is still at `expected` (`None`: if there is none).
    async fn save(&self, document: Vec<u8>, expected: Option<&str>) -> Result<Saved, CredentialStoreError>;
}

/// A saved credential document and its version (opaque to the HTTP layer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCredentials {
    pub document: Vec<u8>,
    pub version: String,
}

/// The outcome of a conditional save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Saved; the document's new version.
    Stored(String),
    /// Another writer saved (or removed) the document since `expected` was read.
    Conflict,
}

/// A credential store that failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CredentialStoreError {
    pub message: String,
    /// Whether trying again later could succeed.
    pub retryable: bool,
}

/// What authenticating one attempt needs from the client.
pub(crate) struct AuthEnv<'a> {
    /// The client's HTTP connection pool (token requests share its TLS settings).
    pub http: &'a reqwest::Client,
    /// Now, on the client's clock (token expiry).
    pub now: Instant,
    /// Now, on the wall clock (signature timestamps).
    pub wall: SystemTime,
    pub events: &'a Events,
}

/// The parts of a request that a signature covers.
pub(crate) struct SignedParts<'a> {
    pub method: &'static str,
    pub url: &'a Url,
    pub body: Option<&'a [u8]>,
}

#[derive(Debug)]
enum Scheme {
    None,
    HeaderKey { name: HeaderName, value: String },
    QueryKey { name: String, value: String },
    Authorization(String),
    OAuth2(Arc<oauth2::OAuth2>),
    Hmac(hmac::HmacSigner),
}

/// Applies a source's credentials to outgoing requests.
#[derive(Debug, Clone)]
pub struct Authenticator {
    scheme: Arc<Scheme>,
}

impl Authenticator {
    /// The authenticator for `config`; `source` names the source (it binds the encryption
    /// of kept credentials to it). Fails on credentials that cannot be used at all.
    pub fn new(config: &AuthConfig, source: &str) -> Result<Self, String> {
        let scheme = match config {
            AuthConfig::None {} => Scheme::None,
            AuthConfig::ApiKey {
                location: ApiKeyLocation::Header,
                name,
                value,
            } => Scheme::HeaderKey {
                name: HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("source.auth.name `{name}` is not a valid header name"))?,
                value: value.expose().to_owned(),
            },
            AuthConfig::ApiKey {
                location: ApiKeyLocation::Query,
                name,
                value,
            } => Scheme::QueryKey {
                name: name.clone(),
                value: value.expose().to_owned(),
            },
            AuthConfig::Bearer { token } => Scheme::Authorization(format!("Bearer {}", token.expose())),
            AuthConfig::Basic { username, password } => {
                let credentials = format!(
                    "{}:{}",
                    username.expose(),
                    password.as_ref().map(|p| p.expose()).unwrap_or_default()
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                crate::redact::register(&encoded);
                Scheme::Authorization(format!("Basic {encoded}"))
            }
            AuthConfig::OAuth2 { .. } => Scheme::OAuth2(Arc::new(oauth2::OAuth2::new(config, source)?)),
            AuthConfig::Hmac { .. } => Scheme::Hmac(hmac::HmacSigner::new(config)?),
            AuthConfig::GoogleServiceAccount { .. } => {
                Scheme::OAuth2(Arc::new(oauth2::OAuth2::google_service_account(config, source)?))
            }
        };
        Ok(Self {
            scheme: Arc::new(scheme),
        })
    }

    /// Gives the authenticator a place to keep rotated credentials between runs.
    pub fn set_credential_store(&self, store: Arc<dyn CredentialStore>) {
        if let Scheme::OAuth2(oauth) = self.scheme.as_ref() {
            oauth.set_store(store);
        }
    }

    /// Adds query-string credentials to `url` (api keys sent in the query).
    pub fn apply_to_url(&self, url: &mut Url) {
        if let Scheme::QueryKey { name, value } = self.scheme.as_ref() {
            url.query_pairs_mut().append_pair(name, value);
        }
    }

    /// The query parameter that carries the api key, when it goes in the query.
    pub fn query_key_name(&self) -> Option<&str> {
        match self.scheme.as_ref() {
            Scheme::QueryKey { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether a 401 or 403 may be cured by fetching a fresh token.
    pub fn refreshes(&self) -> bool {
        matches!(self.scheme.as_ref(), Scheme::OAuth2(_))
    }

    /// Drops the cached token, so the next request fetches a new one.
    pub async fn invalidate(&self) {
        if let Scheme::OAuth2(oauth) = self.scheme.as_ref() {
            oauth.invalidate().await;
        }
    }

    /// The credential headers of one attempt.
    pub(crate) async fn headers(
        &self,
        parts: &SignedParts<'_>,
        context: &ErrorContext,
        env: &AuthEnv<'_>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, HttpError> {
        let sensitive = |value: &str| {
            let mut header = HeaderValue::from_str(value).map_err(|_| {
                context.error(
                    ErrorCode::AuthFailed,
                    None,
                    false,
                    Subsystem::Auth,
                    Reason::Credentials,
                    "credential contains characters not allowed in an HTTP header",
                )
            })?;
            header.set_sensitive(true);
            Ok::<_, HttpError>(header)
        };
        Ok(match self.scheme.as_ref() {
            Scheme::None | Scheme::QueryKey { .. } => vec![],
            Scheme::HeaderKey { name, value } => vec![(name.clone(), sensitive(value)?)],
            Scheme::Authorization(value) => vec![(AUTHORIZATION, sensitive(value)?)],
            Scheme::OAuth2(oauth) => {
                let token = oauth.access_token(env, context).await?;
                vec![(AUTHORIZATION, sensitive(&format!("Bearer {token}"))?)]
            }
            Scheme::Hmac(signer) => signer
                .sign(parts, env.wall)
                .into_iter()
                .map(|(name, value, secret)| {
                    let invalid = |message: String| {
                        context.error(
                            ErrorCode::ConfigError,
                            None,
                            false,
                            Subsystem::Auth,
                            Reason::Credentials,
                            message,
                        )
                    };
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| invalid(format!("`{name}` is not a valid header name")))?;
                    let value = if secret {
                        sensitive(&value)?
                    } else {
                        HeaderValue::from_str(&value)
                            .map_err(|_| invalid(format!("the value of header {name} is not valid")))?
                    };
                    Ok((name, value))
                })
                .collect::<Result<_, HttpError>>()?,
        })
    }
}
