//! `landfall init`, the connector builder: from a base URL, a path and auth, fetch one page
//! and propose a commented config.
//!
//! Three stages, each in its own file: [`fetch`] sends the one request through the same
//! [`crate::http::HttpClient`] a run uses (redirect policy, response size cap, timeouts,
//! TLS, retries); [`infer`] reads the page (pure functions over the parsed body);
//! [`render`] writes the YAML. The written text is loaded back with
//! [`ConnectorConfig::from_yaml`] before it is returned, so `init` never hands out a config
//! that `validate` refuses. Secrets appear only as `${env:NAME}` references.

pub mod fetch;
pub mod infer;
pub mod render;

use crate::config::{ConnectorConfig, Resolve};
use crate::error::{Classify, ErrorCode};
use crate::http::HttpError;
use crate::http::config::ApiKeyLocation;
use crate::settings::ConfigError;

/// The source and stream as given on the command line, secrets as references.
#[derive(Debug, Clone)]
pub struct Draft {
    pub source_name: String,
    pub base_url: String,
    /// Non-secret headers sent with every request.
    pub headers: Vec<(String, String)>,
    pub auth: AuthDraft,
    pub stream_name: String,
    pub path: String,
}

/// `source.auth` as drafted: every secret field is a `${env:..}` or `${file:..}` reference.
#[derive(Debug, Clone)]
pub enum AuthDraft {
    None,
    Bearer {
        token: String,
    },
    Basic {
        /// A reference, or text that may contain references (`${env:EMAIL}/token`).
        username: String,
        password: Option<String>,
    },
    ApiKey {
        location: ApiKeyLocation,
        name: String,
        value: String,
    },
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        /// Present: the `refresh_token` flow; absent: `client_credentials`.
        refresh_token: Option<String>,
        scopes: Vec<String>,
    },
}

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A flag is missing, contradicts another or has a bad value.
    #[error("{0}")]
    Usage(String),
    /// The drafted source is not a valid config (a bad URL, an unset variable).
    #[error("invalid settings: {0}")]
    Config(#[from] ConfigError),
    /// The request failed (unreachable, refused credentials, an error status).
    #[error("cannot fetch the first page: {0}")]
    Fetch(#[from] HttpError),
    /// The page is not JSON.
    #[error("the response to {request} is not JSON ({detail}); init needs a JSON API")]
    NotJson { request: String, detail: String },
    /// The page is JSON without records.
    #[error("no records in the response to {request}: {reason}; point --path at an endpoint that lists records")]
    NoRecords { request: String, reason: String },
    /// The written config did not load back: a bug in `init`.
    #[error("the proposed config does not validate (please report this): {0}")]
    Proposal(ConfigError),
}

impl Classify for InitError {
    fn code(&self) -> ErrorCode {
        match self {
            InitError::Usage(_) | InitError::Config(_) => ErrorCode::ConfigError,
            InitError::Fetch(error) => error.code(),
            InitError::NotJson { .. } | InitError::NoRecords { .. } => ErrorCode::ParsingError,
            InitError::Proposal(_) => ErrorCode::ValidationError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            InitError::Fetch(error) => error.retryable(),
            _ => false,
        }
    }
}

/// The proposal, ready to write.
#[derive(Debug)]
pub struct Proposed {
    /// The commented YAML config.
    pub yaml: String,
    pub proposal: infer::Proposal,
}

/// Fetches the first page and proposes a config for it.
pub async fn propose(
    draft: &Draft,
    params: &[(String, String)],
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Proposed, InitError> {
    let page = fetch::first_page(draft, params, lookup_env).await?;
    let body: serde_json::Value = serde_json::from_slice(&page.body).map_err(|error| InitError::NotJson {
        request: page.facts.request.clone(),
        detail: error.to_string(),
    })?;
    let path_segments: Vec<String> = draft
        .path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| segment.split('.').next().unwrap_or_default().to_owned())
        .collect();
    let observed = infer::Observed {
        body: &body,
        next_link: page.next_link,
        params,
        path_segments: &path_segments,
    };
    let proposal = infer::propose(&observed).map_err(|error| InitError::NoRecords {
        request: page.facts.request.clone(),
        reason: error.0,
    })?;
    let yaml = render::config(draft, &proposal, &page.facts);
    ConnectorConfig::from_yaml(&yaml, Resolve::SyntaxOnly, lookup_env).map_err(InitError::Proposal)?;
    Ok(Proposed { yaml, proposal })
}

/// A config name (`[a-z][a-z0-9_]*`) made from free text: `Open-Rates.json` -> `open_rates`.
pub fn config_name(text: &str) -> Option<String> {
    let text = text.split('.').next().unwrap_or_default();
    let mut name = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('_') {
            name.push('_');
        }
    }
    let name = name.trim_end_matches('_').to_owned();
    match name.chars().next() {
        Some(first) if first.is_ascii_lowercase() => Some(name),
        Some(_) => Some(format!("s_{name}")),
        None => None,
    }
}

/// The source's default name: the host's registrable label (`api.github.com` -> `github`),
/// or `api` for an address or a single-label host.
pub fn source_name(base_url: &str) -> String {
    let host = url::Url::parse(base_url)
        .ok()
        .and_then(|url| match url.host() {
            Some(url::Host::Domain(domain)) => Some(domain.to_owned()),
            _ => None,
        })
        .unwrap_or_default();
    let labels: Vec<&str> = host.split('.').filter(|label| !label.is_empty()).collect();
    let label = match labels.len() {
        0 | 1 => None,
        n => Some(labels[n - 2]),
    };
    label.and_then(config_name).unwrap_or_else(|| "api".to_owned())
}

/// The stream's default name: the path's last segment that names a resource
/// (`/v1/customers` -> `customers`, `/incremental/tickets/cursor.json` -> `tickets`).
pub fn stream_name(path: &str) -> String {
    const GENERIC: &[&str] = &["cursor", "list", "search", "all", "export", "index", "api", "json"];
    path.split('/')
        .rev()
        .filter_map(config_name)
        .find(|name| {
            let version = name.len() <= 3 && name.starts_with('v') && name[1..].chars().all(|c| c.is_ascii_digit());
            !GENERIC.contains(&name.as_str()) && !version && !name.starts_with("s_")
        })
        .unwrap_or_else(|| "records".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_host_and_the_path() {
        assert_eq!(source_name("https://api.github.com"), "github");
        assert_eq!(source_name("https://acme.zendesk.com/api/v2"), "zendesk");
        assert_eq!(source_name("http://127.0.0.1:8080/v1"), "api");
        assert_eq!(source_name("http://localhost:8080"), "api");
        assert_eq!(stream_name("/v1/customers"), "customers");
        assert_eq!(stream_name("/incremental/tickets/cursor.json"), "tickets");
        assert_eq!(stream_name("/repos/acme/widgets/issues"), "issues");
        assert_eq!(stream_name("/crm/v3/objects/contacts"), "contacts");
        assert_eq!(stream_name("/"), "records");
        assert_eq!(stream_name("/v1/123"), "records");
        assert_eq!(config_name("Open-Rates.json").as_deref(), Some("open_rates"));
    }
}
