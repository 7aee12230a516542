//! GCP workload identity federation: credentials of `"type": "external_account"` (what
//! `gcloud iam workload-identity-pools create-cred-config` writes, e.g. for GKE, EKS, AKS
//! or any OIDC issuer). `object_store` 0.14 reads only service-account and authorized-user
//! files, so this provider plugs into its builder through `with_credentials`.
//!
//! The flow (google.aip.dev/auth/4117): read the subject token from a file or a URL,
//! exchange it at the Security Token Service for a federated access token, then, when the
//! file names a service account to impersonate, trade that for the service account's access
//! token. Tokens are cached until four minutes before they expire. Subject tokens sourced
//! from AWS (`environment_id: aws1`) or from an executable are not supported yet.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use object_store::CredentialProvider;
use object_store::gcp::GcpCredential;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

/// The OAuth scope requested: read and write objects (and everything else the principal's
/// IAM bindings allow; IAM, not the scope, is what limits it).
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A cached token is renewed when it has less than this left.
const MIN_TTL: Duration = Duration::from_secs(4 * 60);
/// Lifetime assumed when the token service does not say.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the federation flow; each says which step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalAccountError {
    #[error("cannot read the GCP credentials file {path}: {message}")]
    File { path: String, message: String },
    #[error("unsupported GCP external_account credential source: {0}; supported: file, url")]
    UnsupportedSource(String),
    #[error("cannot read the subject token from {from}: {message}")]
    SubjectToken { from: String, message: String },
    #[error("GCP token exchange at {url} failed: {message}")]
    Exchange { url: String, message: String },
    #[error("GCP service account impersonation at {url} failed: {message}")]
    Impersonation { url: String, message: String },
    #[error("refusing plain http for {0}: GCP token endpoints must use https (loopback excepted)")]
    InsecureUrl(String),
}

/// An `external_account` credentials file.
#[derive(Clone, Debug, Deserialize)]
pub struct ExternalAccountFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub audience: String,
    pub subject_token_type: String,
    pub token_url: String,
    #[serde(default)]
    pub service_account_impersonation_url: Option<String>,
    #[serde(default)]
    pub service_account_impersonation: Option<ImpersonationOptions>,
    pub credential_source: CredentialSource,
    #[serde(default)]
    pub workforce_pool_user_project: Option<String>,
}

/// `service_account_impersonation` options.
#[derive(Clone, Debug, Deserialize)]
pub struct ImpersonationOptions {
    /// Default: 3600.
    #[serde(default)]
    pub token_lifetime_seconds: Option<u64>,
}

/// Where the subject token comes from.
#[derive(Clone, Debug, Deserialize)]
pub struct CredentialSource {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub format: Option<SourceFormat>,
    #[serde(default)]
    pub environment_id: Option<String>,
    #[serde(default)]
    pub executable: Option<serde_json::Value>,
}

/// How the subject token is stored: the whole text, or a field of a JSON document.
#[derive(Clone, Debug, Deserialize)]
pub struct SourceFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub subject_token_field_name: Option<String>,
}

/// Whether the JSON file at `path` is an `external_account` credentials file.
pub fn is_external_account(path: &Path) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Kind>(&bytes).ok())
        .and_then(|kind| kind.kind)
        .is_some_and(|kind| kind == "external_account")
}

/// Credentials for GCS from workload identity federation.
#[derive(Debug)]
pub struct ExternalAccountCredentials {
    file: ExternalAccountFile,
    client: reqwest::Client,
    cached: Mutex<Option<(Arc<GcpCredential>, Instant)>>,
}

#[derive(Deserialize)]
struct StsResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImpersonationResponse {
    access_token: String,
    expire_time: String,
}

fn check_url(url: &str) -> Result<Url, ExternalAccountError> {
    let parsed = Url::parse(url).map_err(|error| ExternalAccountError::InsecureUrl(format!("{url} ({error})")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if parsed.scheme() == "https" || loopback {
        Ok(parsed)
    } else {
        Err(ExternalAccountError::InsecureUrl(url.to_owned()))
    }
}

impl ExternalAccountCredentials {
    /// Reads and checks an `external_account` file; nothing is requested yet.
    pub fn from_file(path: &Path) -> Result<Self, ExternalAccountError> {
        let file_error = |message: String| ExternalAccountError::File {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|error| file_error(error.to_string()))?;
        let file: ExternalAccountFile =
            serde_json::from_slice(&bytes).map_err(|error| file_error(error.to_string()))?;
        Self::new(file)
    }

    /// Checks a parsed file; nothing is requested yet.
    pub fn new(file: ExternalAccountFile) -> Result<Self, ExternalAccountError> {
        if file.kind != "external_account" {
            return Err(ExternalAccountError::UnsupportedSource(format!(
                "type `{}` is not external_account",
                file.kind
            )));
        }
        let source = &file.credential_source;
        if source.environment_id.is_some() {
            return Err(ExternalAccountError::UnsupportedSource(
                "AWS-sourced subject tokens (environment_id)".to_owned(),
            ));
        }
        if source.executable.is_some() {
            return Err(ExternalAccountError::UnsupportedSource(
                "executable-sourced subject tokens".to_owned(),
            ));
        }
        match (&source.file, &source.url) {
            (Some(_), None) => {}
            (None, Some(url)) => {
                check_url(url)?;
            }
            _ => {
                return Err(ExternalAccountError::UnsupportedSource(
                    "credential_source needs exactly one of file or url".to_owned(),
                ));
            }
        }
        check_url(&file.token_url)?;
        if let Some(url) = &file.service_account_impersonation_url {
            check_url(url)?;
        }
        let client = reqwest::Client::builder()
            // never follow a redirect: a 307/308 would replay the credentials to another host
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("landfall/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ExternalAccountError::Exchange {
                url: file.token_url.clone(),
                message: error.to_string(),
            })?;
        Ok(Self {
            file,
            client,
            cached: Mutex::new(None),
        })
    }

    async fn subject_token(&self) -> Result<String, ExternalAccountError> {
        let source = &self.file.credential_source;
        let (from, text) = if let Some(path) = &source.file {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|error| ExternalAccountError::SubjectToken {
                    from: path.clone(),
                    message: error.to_string(),
                })?;
            (path.clone(), text)
        } else {
            let url = source.url.clone().unwrap_or_default();
            let mut request = self.client.get(&url);
            for (name, value) in &source.headers {
                request = request.header(name, value);
            }
            let failed = |message: String| ExternalAccountError::SubjectToken {
                from: url.clone(),
                message,
            };
            let response = request.send().await.map_err(|error| failed(error.to_string()))?;
            let status = response.status();
            let text = response.text().await.map_err(|error| failed(error.to_string()))?;
            if !status.is_success() {
                return Err(failed(format!("HTTP {status}")));
            }
            (url, text)
        };
        let token = match &source.format {
            Some(format) if format.kind == "json" => {
                let field = format.subject_token_field_name.as_deref().unwrap_or_default();
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|document| document.get(field)?.as_str().map(str::to_owned))
                    .ok_or_else(|| ExternalAccountError::SubjectToken {
                        from: from.clone(),
                        message: format!("no string field `{field}` in the JSON document"),
                    })?
            }
            _ => text.trim().to_owned(),
        };
        if token.is_empty() {
            return Err(ExternalAccountError::SubjectToken {
                from,
                message: "the token is empty".to_owned(),
            });
        }
        crate::redact::register(&token);
        Ok(token)
    }

    async fn exchange(&self, subject_token: &str) -> Result<(String, Duration), ExternalAccountError> {
        let url = &self.file.token_url;
        let failed = |message: String| ExternalAccountError::Exchange {
            url: url.clone(),
            message,
        };
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", TOKEN_EXCHANGE_GRANT)
                .append_pair("audience", &self.file.audience)
                .append_pair("scope", SCOPE)
                .append_pair("requested_token_type", ACCESS_TOKEN_TYPE)
                .append_pair("subject_token", subject_token)
                .append_pair("subject_token_type", &self.file.subject_token_type);
            if let (Some(project), None) = (
                &self.file.workforce_pool_user_project,
                &self.file.service_account_impersonation_url,
            ) {
                form.append_pair("options", &serde_json::json!({"userProject": project}).to_string());
            }
            form.finish()
        };
        let request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        let parsed: StsResponse = token_call(request, failed).await?;
        crate::redact::register(&parsed.access_token);
        let ttl = parsed.expires_in.map_or(DEFAULT_TTL, Duration::from_secs);
        Ok((parsed.access_token, ttl))
    }

    async fn impersonate(&self, url: &str, federated: &str) -> Result<(String, Duration), ExternalAccountError> {
        let failed = |message: String| ExternalAccountError::Impersonation {
            url: url.to_owned(),
            message,
        };
        let lifetime = self
            .file
            .service_account_impersonation
            .as_ref()
            .and_then(|options| options.token_lifetime_seconds)
            .unwrap_or(3600);
        let request = self
            .client
            .post(url)
            .bearer_auth(federated)
            .json(&serde_json::json!({"scope": [SCOPE], "lifetime": format!("{lifetime}s")}));
        let parsed: ImpersonationResponse = token_call(request, failed).await?;
        crate::redact::register(&parsed.access_token);
        let ttl = chrono::DateTime::parse_from_rfc3339(&parsed.expire_time)
            .ok()
            .and_then(|expiry| (expiry.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_secs(lifetime));
        Ok((parsed.access_token, ttl))
    }

    /// A fresh access token and how long it lives.
    pub async fn fetch(&self) -> Result<(String, Duration), ExternalAccountError> {
        let subject = self.subject_token().await?;
        let (federated, ttl) = self.exchange(&subject).await?;
        match &self.file.service_account_impersonation_url {
            Some(url) => self.impersonate(url, &federated).await,
            None => Ok((federated, ttl)),
        }
    }
}

#[async_trait]
impl CredentialProvider for ExternalAccountCredentials {
    type Credential = GcpCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<GcpCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expires)) = cached.as_ref()
            && expires.saturating_duration_since(Instant::now()) > MIN_TTL
        {
            return Ok(credential.clone());
        }
        let (token, ttl) = self.fetch().await.map_err(|error| object_store::Error::Generic {
            store: "GCS",
            source: Box::new(error),
        })?;
        let credential = Arc::new(GcpCredential { bearer: token });
        *cached = Some((credential.clone(), Instant::now() + ttl));
        Ok(credential)
    }
}

/// Sends a token request and reads its JSON answer; a failure is described by `failed`,
/// with the answer's body scrubbed of secrets.
async fn token_call<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    failed: impl Fn(String) -> ExternalAccountError,
) -> Result<T, ExternalAccountError> {
    let response = request.send().await.map_err(|error| failed(error.to_string()))?;
    let status = response.status();
    let body = response.text().await.map_err(|error| failed(error.to_string()))?;
    if !status.is_success() {
        return Err(failed(format!("HTTP {status}: {}", crate::redact::scrub(&body))));
    }
    serde_json::from_str(&body).map_err(|error| failed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(source: serde_json::Value) -> ExternalAccountFile {
        serde_json::from_value(serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": source,
        }))
        .unwrap()
    }

    #[test]
    fn unsupported_sources_are_named() {
        let aws = ExternalAccountCredentials::new(file(serde_json::json!({"environment_id": "aws1"})));
        assert!(aws.unwrap_err().to_string().contains("AWS-sourced"));
        let exe = ExternalAccountCredentials::new(file(serde_json::json!({"executable": {"command": "x"}})));
        assert!(exe.unwrap_err().to_string().contains("executable"));
        assert!(ExternalAccountCredentials::new(file(serde_json::json!({"file": "/t"}))).is_ok());
    }

    #[test]
    fn token_endpoints_must_be_https_unless_loopback() {
        let mut insecure = file(serde_json::json!({"file": "/t"}));
        insecure.token_url = "http://sts.example.com/v1/token".into();
        assert!(matches!(
            ExternalAccountCredentials::new(insecure),
            Err(ExternalAccountError::InsecureUrl(_))
        ));
        let mut loopback = file(serde_json::json!({"file": "/t"}));
        loopback.token_url = "http://127.0.0.1:9/v1/token".into();
        assert!(ExternalAccountCredentials::new(loopback).is_ok());
    }
}
