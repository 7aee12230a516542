//! `landing.options`: backend settings by `object_store`'s own config key names, each key
//! parsed with the backend's key type so that an unknown key is an error naming it (where
//! `object_store::parse_url_opts` would drop it silently). Credentials are refused here:
//! they come from the environment and workload identity, never from the config file
//! (docs/credentials.md).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::gcp::GoogleConfigKey;

use super::LandingError;

/// The kind of store a landing URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Amazon S3 and S3-compatible stores (`s3://`).
    S3,
    /// Azure Blob Storage (`az://`, `abfss://`, `https://ACCOUNT.blob.core.windows.net/`).
    Azure,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// A local folder (`file://`).
    Local,
    /// A process-local store (`memory://`, tests).
    Memory,
}

impl Backend {
    /// The backend's name in messages and docs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::S3 => "S3",
            Backend::Azure => "Azure Blob",
            Backend::Gcs => "GCS",
            Backend::Local => "file",
            Backend::Memory => "memory",
        }
    }

    /// Where this backend's credentials come from, for messages.
    fn credential_hint(self) -> &'static str {
        match self {
            Backend::S3 => {
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, web identity (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE) or instance metadata"
            }
            Backend::Azure => {
                "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, AZURE_CLIENT_SECRET, workload identity or managed identity"
            }
            Backend::Gcs => "GOOGLE_APPLICATION_CREDENTIALS, application default credentials or the metadata server",
            Backend::Local | Backend::Memory => "nothing",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options parsed into the backend's config keys, ready for its builder.
#[derive(Clone, Debug)]
pub(crate) enum ParsedOptions {
    S3(Vec<(AmazonS3ConfigKey, String)>),
    Azure(Vec<(AzureConfigKey, String)>),
    Gcs(Vec<(GoogleConfigKey, String)>),
    None,
}

/// Why an option key is refused, if it is.
enum Refusal {
    Credential,
    FromUrl,
}

fn s3_refusal(key: &AmazonS3ConfigKey) -> Option<Refusal> {
    match key {
        AmazonS3ConfigKey::AccessKeyId | AmazonS3ConfigKey::SecretAccessKey | AmazonS3ConfigKey::Token => {
            Some(Refusal::Credential)
        }
        AmazonS3ConfigKey::Bucket => Some(Refusal::FromUrl),
        // object_store does not export the SSE key type; the customer key is a secret.
        other if other.as_ref() == "aws_sse_customer_key_base64" => Some(Refusal::Credential),
        _ => None,
    }
}

fn azure_refusal(key: &AzureConfigKey) -> Option<Refusal> {
    match key {
        AzureConfigKey::AccessKey
        | AzureConfigKey::ClientSecret
        | AzureConfigKey::SasKey
        | AzureConfigKey::Token
        | AzureConfigKey::FabricSessionToken
        | AzureConfigKey::EncryptionKey => Some(Refusal::Credential),
        AzureConfigKey::ContainerName => Some(Refusal::FromUrl),
        _ => None,
    }
}

fn gcs_refusal(key: &GoogleConfigKey) -> Option<Refusal> {
    match key {
        GoogleConfigKey::ServiceAccountKey | GoogleConfigKey::BearerToken => Some(Refusal::Credential),
        GoogleConfigKey::Bucket => Some(Refusal::FromUrl),
        _ => None,
    }
}

/// Names users often try, and what `object_store` calls them.
fn suggestion(backend: Backend, key: &str) -> Option<&'static str> {
    match (backend, key) {
        (Backend::Azure, "account" | "storage_account") => Some("account_name"),
        (_, "path_style" | "force_path_style" | "path_style_request") => Some("virtual_hosted_style_request: false"),
        (_, "endpoint_url" | "url") => Some(match backend {
            Backend::Gcs => "base_url",
            _ => "endpoint",
        }),
        (Backend::Gcs, "endpoint") => Some("base_url"),
        (_, "insecure" | "http") => Some("allow_http"),
        _ => None,
    }
}

/// Parses `options` for `backend`; an unknown or refused key is an error that names it.
pub(crate) fn parse(backend: Backend, options: &BTreeMap<String, String>) -> Result<ParsedOptions, LandingError> {
    fn each<K: FromStr>(
        backend: Backend,
        options: &BTreeMap<String, String>,
        refusal: fn(&K) -> Option<Refusal>,
    ) -> Result<Vec<(K, String)>, LandingError> {
        let mut parsed = Vec::with_capacity(options.len());
        for (name, value) in options {
            let lower = name.to_ascii_lowercase();
            let error = |message: String| LandingError::Option {
                key: name.clone(),
                message,
            };
            let Ok(key) = K::from_str(&lower) else {
                let hint = suggestion(backend, &lower)
                    .map(|better| format!("; did you mean `{better}`?"))
                    .unwrap_or_default();
                return Err(error(format!(
                    "unknown {backend} option{hint} (keys are object_store's config key names; see the README's landing options)"
                )));
            };
            match refusal(&key) {
                Some(Refusal::Credential) => {
                    return Err(error(format!(
                        "credentials are not read from the config file; provide them through the environment or workload identity ({}); see docs/credentials.md",
                        backend.credential_hint()
                    )));
                }
                Some(Refusal::FromUrl) => {
                    return Err(error("the bucket or container comes from landing.url".to_owned()));
                }
                None => parsed.push((key, value.clone())),
            }
        }
        Ok(parsed)
    }
    match backend {
        Backend::S3 => each(backend, options, s3_refusal).map(ParsedOptions::S3),
        Backend::Azure => each(backend, options, azure_refusal).map(ParsedOptions::Azure),
        Backend::Gcs => each(backend, options, gcs_refusal).map(ParsedOptions::Gcs),
        Backend::Local | Backend::Memory => match options.keys().next() {
            Some(key) => Err(LandingError::Option {
                key: key.clone(),
                message: format!("{backend}:// landing URLs take no options"),
            }),
            None => Ok(ParsedOptions::None),
        },
    }
}

impl ParsedOptions {
    /// The value given for an S3 key, if any.
    pub(crate) fn s3_value(&self, wanted: AmazonS3ConfigKey) -> Option<&str> {
        match self {
            ParsedOptions::S3(pairs) => pairs
                .iter()
                .find(|(key, _)| *key == wanted)
                .map(|(_, value)| value.as_str()),
            _ => None,
        }
    }

    /// The value given for a GCS key, if any.
    pub(crate) fn gcs_value(&self, wanted: GoogleConfigKey) -> Option<&str> {
        match self {
            ParsedOptions::Gcs(pairs) => pairs
                .iter()
                .find(|(key, _)| *key == wanted)
                .map(|(_, value)| value.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn refused(backend: Backend, key: &str) -> String {
        parse(backend, &options(&[(key, "x")])).unwrap_err().to_string()
    }

    #[test]
    fn every_backend_takes_its_own_keys() {
        let s3 = parse(
            Backend::S3,
            &options(&[
                ("endpoint", "http://127.0.0.1:9000"),
                ("allow_http", "true"),
                ("virtual_hosted_style_request", "false"),
                ("region", "eu-west-1"),
                ("aws_copy_if_not_exists", "multipart"),
                ("timeout", "30s"),
            ]),
        )
        .unwrap();
        assert_eq!(s3.s3_value(AmazonS3ConfigKey::Region), Some("eu-west-1"));
        assert!(
            parse(
                Backend::Azure,
                &options(&[("account_name", "acct"), ("use_emulator", "true")])
            )
            .is_ok()
        );
        assert!(
            parse(
                Backend::Gcs,
                &options(&[("base_url", "http://127.0.0.1:1"), ("allow_http", "true")])
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_keys_are_named_with_a_hint() {
        let message = refused(Backend::S3, "path_style");
        assert!(
            message.starts_with("landing.options.path_style: unknown S3 option"),
            "{message}"
        );
        assert!(message.contains("virtual_hosted_style_request: false"), "{message}");
        assert!(refused(Backend::Azure, "account").contains("`account_name`"));
        assert!(refused(Backend::Gcs, "endpoint").contains("`base_url`"));
        assert!(refused(Backend::S3, "no_such_thing").contains("unknown S3 option"));
    }

    #[test]
    fn credentials_are_refused_in_the_config() {
        for (backend, key) in [
            (Backend::S3, "access_key_id"),
            (Backend::S3, "aws_secret_access_key"),
            (Backend::S3, "session_token"),
            (Backend::S3, "sse_customer_key_base64"),
            (Backend::Azure, "account_key"),
            (Backend::Azure, "sas_token"),
            (Backend::Azure, "client_secret"),
            (Backend::Gcs, "service_account_key"),
            (Backend::Gcs, "bearer_token"),
        ] {
            let message = refused(backend, key);
            assert!(
                message.contains("credentials are not read from the config file"),
                "{backend} {key}: {message}"
            );
        }
        assert!(refused(Backend::S3, "bucket").contains("comes from landing.url"));
    }

    #[test]
    fn local_stores_take_no_options() {
        assert!(refused(Backend::Local, "endpoint").contains("take no options"));
        assert!(parse(Backend::Memory, &BTreeMap::new()).is_ok());
    }
}
