//! OAuth 2.0 access tokens (`client_credentials` and `refresh_token` grants, and the JWT
//! bearer grant of a Google service account, its assertions signed by [`super::google`]):
//! fetched lazily, cached, refreshed before they expire and once more on a 401 or 403.
//!
//! Many vendors rotate refresh tokens: each refresh answers with a new one and revokes the
//! old. The new token is used for the rest of the run and saved at once through the
//! [`CredentialStore`], so the next run starts from it. It is saved encrypted
//! (XChaCha20-Poly1305) under a key derived from the client secret and the source name:
//! whoever reads the landing zone's `_state/` without the client secret learns nothing,
//! and a changed client secret makes the saved token unreadable (the config's is used).
//!
//! Processes of one source share the saved document. Each save is a compare-and-swap on
//! the version the process read last; a process that loses the race reads the document
//! again and keeps the newer token: the one further down the rotation chain (`sequence`),
//! on a tie the one issued later (`updated_at`). A newer saved token is never overwritten by
//! an older one, and a process whose refresh token was revoked by another's rotation
//! retries once with the saved one.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;

use super::{AuthEnv, CredentialStore, Saved};
use crate::error::ErrorCode;
use crate::http::config::{AuthConfig, OAuth2ClientAuth, OAuth2Flow};
use crate::http::error::{self, ErrorContext, HttpError, Reason, Subsystem};
use crate::settings::Secret;

/// The longest an access token is used without a refresh, whatever `expires_in` says
/// (a 401 or 403 refreshes it sooner).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// Version of the saved credential document.
const AUTH_STATE_VERSION: u32 = 1;

/// After the token endpoint refused the refresh token, how long to wait before each look
/// at the saved one (another process rotated it and may still be saving the new token):
/// 3.75 s in all.
const ROTATION_SETTLE_DELAYS: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// How many times a lost save race is settled before giving up (retryable).
const MAX_SAVE_ATTEMPTS: u32 = 8;

/// An access token and when to stop using it.
struct AccessToken {
    value: String,
    /// When to fetch a new one; `None` when the server gave no lifetime (then only a 401
    /// or 403 replaces it).
    refresh_at: Option<std::time::Instant>,
}

#[derive(Default)]
struct TokenState {
    access: Option<AccessToken>,
    /// The refresh token in use (the config's, the saved one, or a rotated one).
    refresh_token: Option<String>,
    /// Whether the saved refresh token has been looked up.
    restored: bool,
    /// How far down the rotation chain `refresh_token` is (0: the config's).
    sequence: u64,
    /// The version of the saved document last read or written (what a save must match).
    saved_version: Option<String>,
    /// A rotated refresh token not stored yet (the store failed or another process won a
    /// race that has to be settled).
    unsaved: Option<Rotation>,
}

/// A rotated refresh token and its place in the chain.
#[derive(Clone)]
struct Rotation {
    token: String,
    sequence: u64,
    issued_at: String,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("token", &crate::redact::MASK)
            .field("sequence", &self.sequence)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

impl Rotation {
    /// Whether `self` is newer than `other`: further down the chain, or as far and issued
    /// later.
    fn newer_than(&self, other: &Rotation) -> bool {
        (self.sequence, &self.issued_at) > (other.sequence, &other.issued_at)
    }
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<f64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// How long a token may be used, from its `expires_in` (any number a server sends): at
/// most [`MAX_TOKEN_LIFETIME`]; `None` when it gives no usable lifetime.
fn token_lifetime(expires_in: Option<f64>) -> Option<Duration> {
    expires_in
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map(|seconds| crate::http::retry::clamped_seconds(seconds, MAX_TOKEN_LIFETIME))
}

/// `expires_in` as a number or, as some vendors send it, a string.
fn lenient_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(serde_json::Value::Number(number)) => number.as_f64(),
        Some(serde_json::Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    })
}

/// The saved-credentials document (`{source}/_state/_auth.json`).
#[derive(Serialize, Deserialize)]
struct AuthState {
    auth_state_version: u32,
    /// Fingerprint (keyed HMAC, not the token) of the config's refresh token this chain of
    /// rotations started from: a new token in the config wins over the saved one.
    origin: String,
    /// `base64(nonce || ciphertext)` of the current refresh token.
    refresh_token_sealed: String,
    /// How many rotations from the config's refresh token (documents without it: 0).
    #[serde(default)]
    sequence: u64,
    /// When the token was issued (RFC 3339, microseconds).
    updated_at: String,
}

/// The OAuth 2.0 client of one source.
pub(crate) struct OAuth2 {
    flow: OAuth2Flow,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    config_refresh_token: Option<Secret>,
    scopes: Vec<String>,
    client_auth: OAuth2ClientAuth,
    token_params: BTreeMap<String, String>,
    margin: Duration,
    /// Key of the saved-credentials encryption and fingerprints.
    state_key: [u8; 32],
    source: String,
    store: OnceLock<Arc<dyn CredentialStore>>,
    state: tokio::sync::Mutex<TokenState>,
    /// Set for a Google service account: tokens come from the JWT bearer grant, the client
    /// proving itself with a signed assertion instead of a client secret.
    jwt_bearer: Option<JwtBearer>,
}

/// The signer of a JWT bearer grant's assertions.
struct JwtBearer {
    key: super::google::ServiceAccountKey,
    subject: Option<String>,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("flow", &self.flow)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn keyed_hash(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().into()
}

impl OAuth2 {
    pub fn new(config: &AuthConfig, source: &str) -> Result<Self, String> {
        let AuthConfig::OAuth2 {
            flow,
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scopes,
            client_auth,
            token_params,
            refresh_margin,
        } = config
        else {
            unreachable!("OAuth2::new is called with an oauth2 config")
        };
        Url::parse(token_url).map_err(|error| format!("source.auth.token_url is not a URL: {error}"))?;
        let state_key = keyed_hash(
            client_secret.expose().as_bytes(),
            &[b"landfall/auth-state/v1", source.as_bytes(), client_id.as_bytes()],
        );
        Ok(Self {
            flow: *flow,
            token_url: token_url.clone(),
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            config_refresh_token: refresh_token.clone(),
            scopes: scopes.clone(),
            client_auth: *client_auth,
            token_params: token_params.clone(),
            margin: refresh_margin.0,
            state_key,
            source: source.to_owned(),
            store: OnceLock::new(),
            state: tokio::sync::Mutex::new(TokenState::default()),
            jwt_bearer: None,
        })
    }

    /// The client of a Google service account (`source.auth.type: google_service_account`):
    /// no refresh token, so nothing is saved between runs; a new assertion is signed for
    /// every token request.
    pub fn google_service_account(config: &AuthConfig, source: &str) -> Result<Self, String> {
        let AuthConfig::GoogleServiceAccount {
            key,
            scopes,
            subject,
            token_url,
        } = config
        else {
            unreachable!("OAuth2::google_service_account is called with a google_service_account config")
        };
        let key = super::google::ServiceAccountKey::parse(key.expose())
            .map_err(|message| format!("source.auth.key {message}"))?;
        let token_url = token_url.clone().unwrap_or_else(|| key.token_uri().to_owned());
        Url::parse(&token_url).map_err(|error| format!("the token endpoint is not a URL: {error}"))?;
        Ok(Self {
            flow: OAuth2Flow::ClientCredentials,
            token_url,
            client_id: key.client_email().to_owned(),
            client_secret: Secret::new(""),
            config_refresh_token: None,
            scopes: scopes.clone(),
            client_auth: OAuth2ClientAuth::Body,
            token_params: BTreeMap::new(),
            margin: crate::http::config::default_refresh_margin().0,
            state_key: [0; 32],
            source: source.to_owned(),
            store: OnceLock::new(),
            state: tokio::sync::Mutex::new(TokenState::default()),
            jwt_bearer: Some(JwtBearer {
                key,
                subject: subject.clone(),
            }),
        })
    }

    /// The grant's name in events and messages.
    fn grant_name(&self) -> &'static str {
        if self.jwt_bearer.is_some() {
            "jwt_bearer"
        } else {
            flow_name(self.flow)
        }
    }

    pub fn set_store(&self, store: Arc<dyn CredentialStore>) {
        let _ = self.store.set(store);
    }

    pub async fn invalidate(&self) {
        self.state.lock().await.access = None;
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    pub async fn access_token(&self, env: &AuthEnv<'_>, request: &ErrorContext) -> Result<String, HttpError> {
        let mut state = self.state.lock().await;
        let context = ErrorContext {
            method: "POST",
            url: crate::redact::url(&Url::parse(&self.token_url).expect("checked when built")),
            ..request.clone()
        };
        self.save_unsaved(&mut state, &context).await?;
        if let Some(token) = &state.access
            && token.refresh_at.is_none_or(|at| env.now < at)
        {
            return Ok(token.value.clone());
        }
        if self.flow == OAuth2Flow::RefreshToken && !state.restored {
            self.restore(&mut state, env, &context).await?;
        }
        let response = match self.request_token(&state, env, &context).await {
            Ok(response) => response,
            // Another process may have rotated (and so revoked) the token this one holds:
            // when the saved token changed, try once more with it.
            // The process that rotated it may not have saved the new one yet (its answer can
            // arrive after this refusal): look again for a few seconds before giving up.
            Err(error) if error.code == ErrorCode::AuthFailed && self.flow == OAuth2Flow::RefreshToken => {
                let mut changed = false;
                for delay in ROTATION_SETTLE_DELAYS {
                    tokio::time::sleep(delay).await;
                    if self.reload(&mut state, env, &context).await? {
                        changed = true;
                        break;
                    }
                    if self.store.get().is_none() {
                        break;
                    }
                }
                if !changed {
                    return Err(error);
                }
                self.request_token(&state, env, &context).await?
            }
            Err(error) => return Err(error),
        };
        crate::redact::register(&response.access_token);
        let lifetime = token_lifetime(response.expires_in);
        state.access = Some(AccessToken {
            value: response.access_token.clone(),
            refresh_at: lifetime.map(|lifetime| env.now + lifetime - self.margin.min(lifetime / 2)),
        });
        let rotated = match response.refresh_token {
            Some(new) if self.flow == OAuth2Flow::RefreshToken && state.refresh_token.as_ref() != Some(&new) => {
                crate::redact::register(&new);
                state.sequence += 1;
                state.unsaved = Some(Rotation {
                    token: new.clone(),
                    sequence: state.sequence,
                    issued_at: crate::clock::now_rfc3339(),
                });
                state.refresh_token = Some(new);
                true
            }
            _ => false,
        };
        env.events
            .token_refreshed(self.grant_name(), lifetime.map(|lifetime| lifetime.as_secs()), rotated);
        self.save_unsaved(&mut state, &context).await?;
        Ok(response.access_token)
    }

    /// Stores a pending rotated token; a failure is retryable and keeps it pending, so the
    /// next attempt tries again (the run cannot go on without it: the old refresh token is
    /// already revoked). The save is conditional on the version read last; when another
    /// process saved since, the newer of the two tokens is kept, and used from then on.
    async fn save_unsaved(&self, state: &mut TokenState, context: &ErrorContext) -> Result<(), HttpError> {
        let (Some(rotation), Some(store)) = (state.unsaved.clone(), self.store.get()) else {
            state.unsaved = None;
            return Ok(());
        };
        let failed = |message: String, retryable: bool| {
            context.error(
                ErrorCode::StorageError,
                None,
                retryable,
                Subsystem::Auth,
                Reason::Credentials,
                message,
            )
        };
        for _ in 0..MAX_SAVE_ATTEMPTS {
            let document = self.seal(&rotation);
            match store.save(document, state.saved_version.as_deref()).await {
                Ok(Saved::Stored(version)) => {
                    state.saved_version = Some(version);
                    state.unsaved = None;
                    return Ok(());
                }
                Ok(Saved::Conflict) => {}
                Err(error) => {
                    return Err(failed(
                        format!("cannot save the rotated refresh token: {error}"),
                        error.retryable,
                    ));
                }
            }
            let stored = store
                .load()
                .await
                .map_err(|error| failed(format!("cannot read the saved refresh token: {error}"), error.retryable))?;
            state.saved_version = stored.as_ref().map(|stored| stored.version.clone());
            let saved = stored.and_then(|stored| self.unseal(&stored.document, self.configured()).ok());
            if let Some(saved) = saved
                && !rotation.newer_than(&saved)
            {
                // The saved token is newer: keep it, and use it from now on.
                crate::redact::register(&saved.token);
                state.refresh_token = Some(saved.token);
                state.sequence = saved.sequence;
                state.unsaved = None;
                return Ok(());
            }
        }
        Err(failed(
            "cannot save the rotated refresh token: the saved one kept changing".to_owned(),
            true,
        ))
    }

    /// The config's refresh token (empty when there is none).
    fn configured(&self) -> &str {
        self.config_refresh_token
            .as_ref()
            .map(|token| token.expose())
            .unwrap_or_default()
    }

    /// Reads the saved document again; true when it holds a token other than the one in
    /// use (which is then replaced by it).
    async fn reload(
        &self,
        state: &mut TokenState,
        env: &AuthEnv<'_>,
        context: &ErrorContext,
    ) -> Result<bool, HttpError> {
        let Some(store) = self.store.get() else {
            return Ok(false);
        };
        let stored = store.load().await.map_err(|error| {
            context.error(
                ErrorCode::StorageError,
                None,
                error.retryable,
                Subsystem::Auth,
                Reason::Credentials,
                format!("cannot read the saved refresh token: {error}"),
            )
        })?;
        let Some(stored) = stored else { return Ok(false) };
        match self.unseal(&stored.document, self.configured()) {
            Ok(saved) if state.refresh_token.as_ref() != Some(&saved.token) => {
                crate::redact::register(&saved.token);
                state.refresh_token = Some(saved.token);
                state.sequence = saved.sequence;
                state.saved_version = Some(stored.version);
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(reason) => {
                env.events.auth_state_ignored(reason);
                Ok(false)
            }
        }
    }

    /// Picks the refresh token to start from: the saved one when it descends from the
    /// config's, else the config's.
    async fn restore(
        &self,
        state: &mut TokenState,
        env: &AuthEnv<'_>,
        context: &ErrorContext,
    ) -> Result<(), HttpError> {
        state.refresh_token = self
            .config_refresh_token
            .as_ref()
            .map(|token| token.expose().to_owned());
        if let Some(store) = self.store.get() {
            let stored = store.load().await.map_err(|error| {
                context.error(
                    ErrorCode::StorageError,
                    None,
                    error.retryable,
                    Subsystem::Auth,
                    Reason::Credentials,
                    format!("cannot read the saved refresh token: {error}"),
                )
            })?;
            if let Some(stored) = stored {
                state.saved_version = Some(stored.version.clone());
                match self.unseal(&stored.document, self.configured()) {
                    Ok(saved) => {
                        crate::redact::register(&saved.token);
                        state.refresh_token = Some(saved.token);
                        state.sequence = saved.sequence;
                    }
                    Err(reason) => env.events.auth_state_ignored(reason),
                }
            }
        }
        state.restored = true;
        Ok(())
    }

    fn origin(&self, configured: &str) -> String {
        hex::encode(keyed_hash(&self.state_key, &[b"origin", configured.as_bytes()]))
    }

    fn aad(&self, origin: &str) -> Vec<u8> {
        [self.source.as_bytes(), b"\0", origin.as_bytes()].concat()
    }

    /// The saved-credentials document for a rotated token.
    fn seal(&self, rotation: &Rotation) -> Vec<u8> {
        let origin = self.origin(self.configured());
        let cipher = XChaCha20Poly1305::new_from_slice(&self.state_key).expect("the key is 32 bytes");
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: rotation.token.as_bytes(),
                    aad: &self.aad(&origin),
                },
            )
            .expect("encryption does not fail");
        let document = AuthState {
            auth_state_version: AUTH_STATE_VERSION,
            origin,
            refresh_token_sealed: base64::engine::general_purpose::STANDARD
                .encode([nonce.as_slice(), &sealed].concat()),
            sequence: rotation.sequence,
            updated_at: rotation.issued_at.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&document).expect("auth state serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The rotated token in a saved document, or why it is not used.
    fn unseal(&self, document: &[u8], configured: &str) -> Result<Rotation, &'static str> {
        let state: AuthState = serde_json::from_slice(document).map_err(|_| "the saved auth state is not valid")?;
        if state.auth_state_version != AUTH_STATE_VERSION {
            return Err("the saved auth state has an unknown version");
        }
        if state.origin != self.origin(configured) {
            return Err(
                "the saved refresh token does not descend from the config's (a new refresh token or client secret was configured)",
            );
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&state.refresh_token_sealed)
            .map_err(|_| "the saved auth state is not valid")?;
        if bytes.len() < 24 {
            return Err("the saved auth state is not valid");
        }
        let (nonce, sealed) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new_from_slice(&self.state_key).expect("the key is 32 bytes");
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &self.aad(&state.origin),
                },
            )
            .map_err(|_| "the saved refresh token cannot be decrypted (was the client secret changed?)")?;
        let token = String::from_utf8(plain).map_err(|_| "the saved auth state is not valid")?;
        Ok(Rotation {
            token,
            sequence: state.sequence,
            issued_at: state.updated_at,
        })
    }

    async fn request_token(
        &self,
        state: &TokenState,
        env: &AuthEnv<'_>,
        context: &ErrorContext,
    ) -> Result<TokenResponse, HttpError> {
        let body = if let Some(bearer) = &self.jwt_bearer {
            let claims = super::google::AssertionClaims {
                scopes: &self.scopes,
                audience: &self.token_url,
                subject: bearer.subject.as_deref(),
            };
            let assertion = bearer.key.assertion(&claims, env.wall).map_err(|message| {
                context.error(
                    ErrorCode::AuthFailed,
                    None,
                    false,
                    Subsystem::Auth,
                    Reason::Credentials,
                    message,
                )
            })?;
            // An assertion buys tokens until it expires: a credential like any other.
            crate::redact::register(&assertion);
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", super::google::JWT_BEARER_GRANT);
            form.append_pair("assertion", &assertion);
            form.finish()
        } else {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", flow_name(self.flow));
            if self.flow == OAuth2Flow::RefreshToken {
                form.append_pair("refresh_token", state.refresh_token.as_deref().unwrap_or_default());
            }
            if !self.scopes.is_empty() {
                form.append_pair("scope", &self.scopes.join(" "));
            }
            for (name, value) in &self.token_params {
                form.append_pair(name, value);
            }
            if self.client_auth == OAuth2ClientAuth::Body {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", self.client_secret.expose());
            }
            form.finish()
        };
        let mut request = env
            .http
            .post(&self.token_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("x-request-id", uuid::Uuid::now_v7().to_string());
        if self.client_auth == OAuth2ClientAuth::Basic && self.jwt_bearer.is_none() {
            let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(&self.client_id),
                encode(self.client_secret.expose())
            ));
            crate::redact::register(&credentials);
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {credentials}"))
                .expect("base64 is a valid header");
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.body(body).send().await.map_err(|failure| {
            if let Some(message) = crate::error::untrusted_certificate(&failure) {
                return context.error(
                    ErrorCode::ConfigError,
                    None,
                    false,
                    Subsystem::Auth,
                    Reason::Credentials,
                    format!("token request failed: {message}"),
                );
            }
            let (code, _) = error::classify_transport(&failure);
            context.error(
                code,
                None,
                true,
                Subsystem::Auth,
                Reason::Credentials,
                format!("token request failed: {}", crate::error::describe(&failure)),
            )
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|failure| {
            context.error(
                ErrorCode::NetworkError,
                Some(status),
                true,
                Subsystem::Auth,
                Reason::Credentials,
                format!(
                    "reading the token response failed: {}",
                    crate::error::describe(&failure)
                ),
            )
        })?;
        if !(200..300).contains(&status) {
            let transient = matches!(status, 408 | 425 | 429 | 500..=599);
            let code = if transient {
                error::classify_status(status).0
            } else {
                ErrorCode::AuthFailed
            };
            let detail = crate::redact::excerpt_bytes(&body, crate::redact::EXCERPT_CHARS);
            return Err(context.error(
                code,
                Some(status),
                transient,
                Subsystem::Auth,
                Reason::Credentials,
                format!("the token endpoint refused the {} grant: {}", self.grant_name(), detail),
            ));
        }
        serde_json::from_slice::<TokenResponse>(&body).map_err(|failure| {
            context.error(
                ErrorCode::ParsingError,
                Some(status),
                false,
                Subsystem::Deserialize,
                Reason::Credentials,
                format!("the token response is not an OAuth 2.0 token: {failure}"),
            )
        })
    }
}

fn flow_name(flow: OAuth2Flow) -> &'static str {
    match flow {
        OAuth2Flow::ClientCredentials => "client_credentials",
        OAuth2Flow::RefreshToken => "refresh_token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(secret: &str, refresh: &str) -> OAuth2 {
        OAuth2::new(
            &AuthConfig::OAuth2 {
                flow: OAuth2Flow::RefreshToken,
                token_url: "https://auth.test/token".into(),
                client_id: "client".into(),
                client_secret: Secret::new(secret),
                refresh_token: Some(Secret::new(refresh)),
                scopes: vec![],
                client_auth: OAuth2ClientAuth::Body,
                token_params: BTreeMap::new(),
                refresh_margin: crate::settings::HumanDuration::from_secs(60),
            },
            "shop",
        )
        .unwrap()
    }

    fn rotation(token: &str, sequence: u64, issued_at: &str) -> Rotation {
        Rotation {
            token: token.to_owned(),
            sequence,
            issued_at: issued_at.to_owned(),
        }
    }

    #[test]
    fn saved_token_round_trips_and_hides_the_token() {
        let oauth = oauth("client-secret-1", "rt-config-1");
        let document = oauth.seal(&rotation("rt-rotated-2", 1, "2026-01-01T00:00:00.000000Z"));
        assert!(!String::from_utf8_lossy(&document).contains("rt-rotated-2"));
        let saved = oauth.unseal(&document, "rt-config-1").unwrap();
        assert_eq!((saved.token.as_str(), saved.sequence), ("rt-rotated-2", 1));
    }

    #[test]
    fn saved_token_is_ignored_for_a_new_config_token_or_client_secret() {
        let document =
            oauth("client-secret-1", "rt-config-1").seal(&rotation("rt-rotated-2", 1, "2026-01-01T00:00:00.000000Z"));
        let new_config_token = oauth("client-secret-1", "rt-config-NEW");
        let error = new_config_token.unseal(&document, "rt-config-NEW").unwrap_err();
        assert!(error.contains("does not descend"), "{error}");
        let new_secret = oauth("client-secret-NEW", "rt-config-1");
        assert!(new_secret.unseal(&document, "rt-config-1").is_err());
    }

    /// Issue 16.4: processes rotating one refresh token race to save it. Every save is a
    /// compare-and-swap on the landing zone; whatever the order, the newest token is kept
    /// and each loser switches to it.
    #[tokio::test]
    async fn racing_saves_keep_the_newest_token() {
        let dir = tempfile::tempdir().unwrap();
        let landing = crate::landing::Landing::open(&crate::landing::config::LandingConfig {
            url: format!("file://{}", dir.path().display()),
            ..Default::default()
        })
        .unwrap();
        let context = ErrorContext {
            method: "POST",
            url: "https://auth.test/token".into(),
            request_id: "r".into(),
            attempt: 1,
        };
        let processes: Vec<(OAuth2, tokio::sync::Mutex<TokenState>)> = (0..6)
            .map(|_| {
                let oauth = oauth("client-secret-1", "rt-config-1");
                oauth.set_store(Arc::new(crate::state::credentials::LandingCredentialStore::new(
                    landing.clone(),
                    "shop",
                )));
                (oauth, tokio::sync::Mutex::new(TokenState::default()))
            })
            .collect();
        // Each process rotated the config's token; the newest one (issued last) saves first,
        // so with unconditional writes an older token would overwrite it.
        for (index, (_, state)) in processes.iter().enumerate().rev() {
            let mut state = state.lock().await;
            state.sequence = 1;
            state.unsaved = Some(rotation(
                &format!("rt-rotated-{index}"),
                1,
                &format!("2026-01-01T00:00:0{index}.000000Z"),
            ));
        }
        let (newest, newest_state) = processes.last().unwrap();
        newest
            .save_unsaved(&mut *newest_state.lock().await, &context)
            .await
            .unwrap();
        let saves = processes.iter().map(|(oauth, state)| async {
            let mut state = state.lock().await;
            oauth.save_unsaved(&mut state, &context).await.unwrap();
        });
        futures::future::join_all(saves).await;
        let stored = landing.get("shop/_state/_auth.json").await.unwrap().unwrap();
        let saved = processes[0].0.unseal(&stored, "rt-config-1").unwrap();
        assert_eq!(saved.token, "rt-rotated-5");
        for (_, state) in &processes {
            let state = state.lock().await;
            assert!(state.unsaved.is_none());
            assert_eq!(state.refresh_token.as_deref().unwrap_or("rt-rotated-5"), "rt-rotated-5");
        }
        // Further down the chain wins over issued later.
        let (next, next_state) = &processes[0];
        let mut next_state = next_state.lock().await;
        next_state.unsaved = Some(rotation("rt-rotated-again", 2, "2026-01-01T00:00:00.000000Z"));
        next_state.saved_version = None;
        next.save_unsaved(&mut next_state, &context).await.unwrap();
        let stored = landing.get("shop/_state/_auth.json").await.unwrap().unwrap();
        assert_eq!(next.unseal(&stored, "rt-config-1").unwrap().token, "rt-rotated-again");
    }

    /// tests/simulation found the loser of a refresh race failing with AUTH_FAILED (exit 4,
    /// no retry): the endpoint refused its revoked token before the winner had saved the
    /// rotated one, and it looked at the saved token only once, at once.
    #[tokio::test]
    async fn a_refused_refresh_waits_for_the_rotated_token_another_process_is_saving() {
        use wiremock::matchers::{body_string_contains, method};
        use wiremock::{Mock, MockServer, ResponseTemplate};

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(body_string_contains("refresh_token=rt-rotated-2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "at-2", "expires_in": 3600, "refresh_token": "rt-rotated-3"
            })))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})))
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let landing = crate::landing::Landing::open(&crate::landing::config::LandingConfig {
            url: format!("file://{}", dir.path().display()),
            ..Default::default()
        })
        .unwrap();
        let process = |token_url: &str| {
            let oauth = OAuth2::new(
                &AuthConfig::OAuth2 {
                    flow: OAuth2Flow::RefreshToken,
                    token_url: token_url.to_owned(),
                    client_id: "client".into(),
                    client_secret: Secret::new("client-secret-1"),
                    refresh_token: Some(Secret::new("rt-config-1")),
                    scopes: vec![],
                    client_auth: OAuth2ClientAuth::Body,
                    token_params: BTreeMap::new(),
                    refresh_margin: crate::settings::HumanDuration::from_secs(60),
                },
                "shop",
            )
            .unwrap();
            oauth.set_store(Arc::new(crate::state::credentials::LandingCredentialStore::new(
                landing.clone(),
                "shop",
            )));
            oauth
        };
        let context = ErrorContext {
            method: "POST",
            url: "https://auth.test/token".into(),
            request_id: "r".into(),
            attempt: 1,
        };
        // The winner rotated rt-config-1 into rt-rotated-2 and saves it 300 ms later.
        let winner = process("https://auth.test/token");
        let saving = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut state = TokenState {
                sequence: 1,
                unsaved: Some(rotation("rt-rotated-2", 1, "2026-01-01T00:00:00.000000Z")),
                ..TokenState::default()
            };
            winner.save_unsaved(&mut state, &context).await.unwrap();
        };
        let loser = process(&format!("{}/token", server.uri()));
        let http = reqwest::Client::new();
        let events = crate::observe::events::Events::new("run", "shop");
        let env = AuthEnv {
            http: &http,
            now: std::time::Instant::now(),
            wall: std::time::SystemTime::now(),
            events: &events,
        };
        let (token, ()) = tokio::join!(loser.access_token(&env, &context), saving);
        assert_eq!(token.unwrap(), "at-2");
    }

    #[test]
    fn a_token_lifetime_of_1e20_seconds_is_clamped() {
        // Duration::from_secs_f64(1e20) panicked.
        assert_eq!(token_lifetime(Some(1e20)), Some(MAX_TOKEN_LIFETIME));
        assert_eq!(token_lifetime(Some(f64::MAX)), Some(MAX_TOKEN_LIFETIME));
        assert_eq!(token_lifetime(Some(3600.0)), Some(Duration::from_secs(3600)));
        assert_eq!(token_lifetime(Some(-1.0)), None);
        let response: TokenResponse = serde_json::from_str(r#"{"access_token":"a","expires_in":"1e20"}"#).unwrap();
        assert_eq!(token_lifetime(response.expires_in), Some(MAX_TOKEN_LIFETIME));
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any token endpoint answer: read or refused, never a panic; the lifetime and the
        /// refresh instant computed from it stay within bounds.
        #[test]
        fn token_responses_never_panic(body in proptest::prop_oneof![
            crate::records::arbitrary::body(),
            crate::records::arbitrary::json().prop_map(|value| format!(r#"{{"access_token":"t","expires_in":{value},"refresh_token":{value}}}"#)),
            "[0-9eE.+-]{0,30}".prop_map(|value| format!(r#"{{"access_token":"t","expires_in":"{value}"}}"#)),
        ]) {
            if let Ok(response) = serde_json::from_str::<TokenResponse>(&body) {
                if let Some(lifetime) = token_lifetime(response.expires_in) {
                    proptest::prop_assert!(lifetime <= MAX_TOKEN_LIFETIME);
                    let now = std::time::Instant::now();
                    let _ = now + lifetime - Duration::from_secs(60).min(lifetime / 2);
                }
            }
        }
    }
}
