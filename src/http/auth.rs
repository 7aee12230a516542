//! Request authentication from `source.auth`.

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use url::Url;

use super::error::{HttpError, Subsystem};
use crate::config::{ApiKeyLocation, AuthConfig};
use crate::error::ErrorCode;

/// Applies credentials to outgoing requests.
#[derive(Debug, Clone)]
pub struct Authenticator {
    config: AuthConfig,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        Self { config: config.clone() }
    }

    /// Adds query-string credentials to `url` (api keys sent in the query).
    pub fn apply_to_url(&self, url: &mut Url) {
        if let AuthConfig::ApiKey {
            location: ApiKeyLocation::Query,
            name,
            value,
        } = &self.config
        {
            url.query_pairs_mut().append_pair(name, value.expose());
        }
    }

    /// The credential headers for a request.
    pub fn headers(&self, method: &'static str, url: &str) -> Result<Vec<(HeaderName, HeaderValue)>, HttpError> {
        let unsupported = |kind: &str| HttpError {
            code: ErrorCode::Unsupported,
            status: None,
            retryable: false,
            request_id: String::new(),
            attempt: 0,
            method,
            url: url.to_owned(),
            subsystem: Subsystem::Auth,
            message: format!("auth type `{kind}` is not supported by this landfall build yet"),
        };
        let sensitive = |value: String| {
            let mut header = HeaderValue::from_str(&value).map_err(|_| HttpError {
                code: ErrorCode::AuthFailed,
                status: None,
                retryable: false,
                request_id: String::new(),
                attempt: 0,
                method,
                url: url.to_owned(),
                subsystem: Subsystem::Auth,
                message: "credential contains characters not allowed in an HTTP header".to_owned(),
            })?;
            header.set_sensitive(true);
            Ok::<_, HttpError>(header)
        };
        Ok(match &self.config {
            AuthConfig::None => vec![],
            AuthConfig::ApiKey {
                location: ApiKeyLocation::Query,
                ..
            } => vec![],
            AuthConfig::ApiKey {
                location: ApiKeyLocation::Header,
                name,
                value,
            } => {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| unsupported("api_key header name"))?;
                vec![(name, sensitive(value.expose().to_owned())?)]
            }
            AuthConfig::Bearer { token } => {
                vec![(AUTHORIZATION, sensitive(format!("Bearer {}", token.expose()))?)]
            }
            AuthConfig::Basic { username, password } => {
                let credentials = format!(
                    "{}:{}",
                    username.expose(),
                    password.as_ref().map(|p| p.expose()).unwrap_or_default()
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                vec![(AUTHORIZATION, sensitive(format!("Basic {encoded}"))?)]
            }
            other => return Err(unsupported(other.kind())),
        })
    }
}
