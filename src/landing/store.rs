//! Opening an object store from a landing URL and its options.
//!
//! Each cloud builder starts from the environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`: keys,
//! tokens, web identity, workload identity, metadata endpoints), then takes the URL and the
//! checked `landing.options`, then Landfall's storage retry policy. `object_store`'s
//! `parse_url_opts` is not used: it ignores the environment and drops unknown options.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use super::LandingError;
use super::gcp_external_account::{self, ExternalAccountCredentials};
use super::options::{self, Backend, ParsedOptions};
use crate::landing::config::{LandingConfig, StorageRetryConfig};

/// A landing URL parsed into its scheme and location, without I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LandingUrl {
    /// A local folder (absolute, or relative to the working directory).
    File(std::path::PathBuf),
    /// A process-local in-memory store (tests).
    Memory,
    /// A cloud store understood by `object_store` (s3, az, gs and their https forms).
    Cloud(Url, Backend),
}

impl LandingUrl {
    /// The kind of store.
    pub fn backend(&self) -> Backend {
        match self {
            LandingUrl::File(_) => Backend::Local,
            LandingUrl::Memory => Backend::Memory,
            LandingUrl::Cloud(_, backend) => *backend,
        }
    }
}

/// Parses a landing URL, or says what is wrong with it.
pub fn parse(url: &str) -> Result<LandingUrl, String> {
    if let Some(rest) = url.strip_prefix("file://") {
        return file_path(rest).map(LandingUrl::File);
    }
    if url.starts_with("memory://") {
        return Ok(LandingUrl::Memory);
    }
    let parsed = Url::parse(url).map_err(|error| format!("`{url}` is not a URL: {error}"))?;
    let backend = match ObjectStoreScheme::parse(&parsed) {
        Ok((ObjectStoreScheme::AmazonS3, _)) => Backend::S3,
        Ok((ObjectStoreScheme::MicrosoftAzure, _)) => Backend::Azure,
        Ok((ObjectStoreScheme::GoogleCloudStorage, _)) => Backend::Gcs,
        _ => {
            return Err(format!(
                "unsupported landing URL `{url}`; use file://, memory://, s3://, az:// (or abfss://, https://ACCOUNT.blob.core.windows.net/CONTAINER) or gs://"
            ));
        }
    };
    if backend == Backend::Azure && parsed.scheme() == "https" && root_of(&parsed).is_err() {
        return Err(format!(
            "`{url}` names no container; use https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX"
        ));
    }
    Ok(LandingUrl::Cloud(parsed, backend))
}

/// The folder of a `file://` URL, as RFC 8089 reads it: `file:///path` and
/// `file://localhost/path` are the local `/path`; any other host is refused (Landfall
/// writes only to this machine). `file://./dir` and `file://../dir` are Landfall's
/// shorthand for a folder relative to the working directory.
fn file_path(rest: &str) -> Result<std::path::PathBuf, String> {
    if rest.is_empty() {
        return Err("file:// URL has no path".to_owned());
    }
    if rest.starts_with('/') {
        return Ok(rest.into());
    }
    let relative = [".", ".."]
        .iter()
        .any(|dots| rest == *dots || rest.strip_prefix(dots).is_some_and(|tail| tail.starts_with('/')));
    if relative {
        return Ok(rest.into());
    }
    let (host, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(format!("/{tail}").into());
    }
    Err(format!(
        "file://{host}/... names the host `{host}`, and a landing zone must be on this machine: \
         use file:///absolute/path (or file://localhost/path), or file://./relative/path"
    ))
}

/// The prefix inside the bucket or container.
fn root_of(url: &Url) -> Result<Path, String> {
    let (scheme, path) = ObjectStoreScheme::parse(url).map_err(|error| error.to_string())?;
    if scheme == ObjectStoreScheme::MicrosoftAzure && url.scheme() == "https" && url.path().trim_matches('/').is_empty()
    {
        return Err("no container".to_owned());
    }
    Ok(path)
}

/// Validation hook for the config: checks the URL and the option keys without I/O.
pub fn check(url: &str, options: &BTreeMap<String, String>) -> Result<(), LandingError> {
    let parsed = parse(url).map_err(|message| LandingError::Url {
        url: url.to_owned(),
        message,
    })?;
    options::parse(parsed.backend(), options).map(|_| ())
}

/// A store opened for a landing zone.
pub(crate) struct Opened {
    pub store: Arc<dyn ObjectStore>,
    /// The same store's low-level multipart API (upload ids), where it has one.
    pub multipart: Option<Arc<dyn MultipartStore>>,
    pub backend: Backend,
    /// The prefix inside the bucket or container.
    pub root: Path,
    /// The folder of a `file://` landing zone.
    pub local_folder: Option<PathBuf>,
}

/// Environment variables that hold storage credentials: registered with the redaction
/// layer so that a value echoed in an error never reaches a log.
const SECRET_ENV: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_BEARER_TOKEN",
];

fn retry_config(retry: &StorageRetryConfig) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: retry.initial_backoff.0,
            max_backoff: retry.max_backoff.0,
            base: 2.0,
        },
        max_retries: retry.max_retries as usize,
        retry_timeout: retry.budget.0,
    }
}

/// Opens the store of `config`. Local folders are created; nothing else is contacted until
/// the first read or write, except that a GCP `external_account` file is read.
pub(crate) fn open(config: &LandingConfig) -> Result<Opened, LandingError> {
    let url = config.url.as_str();
    let invalid = |message: String| LandingError::Url {
        url: url.to_owned(),
        message,
    };
    let parsed = parse(url).map_err(invalid)?;
    let backend = parsed.backend();
    let options = options::parse(backend, &config.options)?;
    let client_error = |error: object_store::Error| LandingError::Client {
        backend,
        url: url.to_owned(),
        message: super::error::scrub(&crate::error::describe(&error)),
    };
    match parsed {
        LandingUrl::File(folder) => {
            std::fs::create_dir_all(&folder).map_err(|error| {
                if super::error::is_permission_io(&error) {
                    LandingError::PermissionDenied {
                        path: String::new(),
                        url: url.to_owned(),
                        operation: super::Operation::Write,
                        needs: super::Operation::Write.needs(backend),
                        message: format!("cannot create {}: {error}", folder.display()),
                    }
                } else {
                    invalid(format!("cannot create {}: {error}", folder.display()))
                }
            })?;
            let store = LocalFileSystem::new_with_prefix(&folder)
                .map_err(|error| invalid(error.to_string()))?
                .with_automatic_cleanup(true);
            let folder = std::fs::canonicalize(&folder).unwrap_or(folder);
            Ok(Opened {
                store: Arc::new(store),
                multipart: None,
                backend,
                root: Path::default(),
                local_folder: Some(folder),
            })
        }
        LandingUrl::Memory => {
            let store = Arc::new(InMemory::new());
            Ok(Opened {
                store: store.clone(),
                multipart: Some(store),
                backend,
                root: Path::default(),
                local_folder: None,
            })
        }
        LandingUrl::Cloud(cloud, _) => {
            for name in SECRET_ENV {
                if let Ok(value) = std::env::var(name) {
                    crate::redact::register(&value);
                }
            }
            let root = root_of(&cloud).map_err(invalid)?;
            let retry = retry_config(&config.retry);
            let (store, multipart): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) = match &options {
                ParsedOptions::S3(pairs) => {
                    let copy_configured = options.s3_value(AmazonS3ConfigKey::CopyIfNotExists).is_some()
                        || std::env::var_os("AWS_COPY_IF_NOT_EXISTS").is_some();
                    let mut builder = AmazonS3Builder::from_env().with_url(cloud.as_str());
                    for (key, value) in pairs {
                        builder = builder.with_config(*key, value);
                    }
                    if !copy_configured {
                        // A create-only copy finishes multipart parts (upload.rs); S3 does
                        // it as a multipart copy completed with If-None-Match: *.
                        builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
                    }
                    let store = Arc::new(builder.with_retry(retry).build().map_err(client_error)?);
                    (store.clone(), store)
                }
                ParsedOptions::Azure(pairs) => {
                    let mut builder = MicrosoftAzureBuilder::from_env().with_url(cloud.as_str());
                    for (key, value) in pairs {
                        builder = builder.with_config(*key, value);
                    }
                    let store = Arc::new(builder.with_retry(retry).build().map_err(client_error)?);
                    (store.clone(), store)
                }
                ParsedOptions::Gcs(pairs) => {
                    let mut builder = GoogleCloudStorageBuilder::from_env().with_url(cloud.as_str());
                    for (key, value) in pairs {
                        builder = builder.with_config(*key, value);
                    }
                    if let Some(path) = external_account_file(&builder, &options) {
                        let credentials =
                            ExternalAccountCredentials::from_file(&path).map_err(|error| LandingError::Client {
                                backend,
                                url: url.to_owned(),
                                message: error.to_string(),
                            })?;
                        builder = builder.with_credentials(Arc::new(credentials));
                    }
                    let store = Arc::new(builder.with_retry(retry).build().map_err(client_error)?);
                    (store.clone(), store)
                }
                ParsedOptions::None => unreachable!("cloud URLs parse options of their backend"),
            };
            Ok(Opened {
                store,
                multipart: Some(multipart),
                backend,
                root,
                local_folder: None,
            })
        }
    }
}

/// The application-default credentials file when it is an `external_account` file and no
/// other credential was given (a service account, a bearer token).
fn external_account_file(builder: &GoogleCloudStorageBuilder, options: &ParsedOptions) -> Option<PathBuf> {
    let explicit = [
        GoogleConfigKey::ServiceAccount,
        GoogleConfigKey::ServiceAccountKey,
        GoogleConfigKey::BearerToken,
    ];
    if explicit.iter().any(|key| builder.get_config_value(key).is_some()) {
        return None;
    }
    let path = options
        .gcs_value(GoogleConfigKey::ApplicationCredentials)
        .map(PathBuf::from)
        .or_else(|| {
            builder
                .get_config_value(&GoogleConfigKey::ApplicationCredentials)
                .map(PathBuf::from)
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".config/gcloud/application_default_credentials.json"))
        })?;
    gcp_external_account::is_external_account(&path).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_schemes() {
        assert_eq!(parse("file://./landing").unwrap(), LandingUrl::File("./landing".into()));
        assert_eq!(parse("file:///tmp/x").unwrap(), LandingUrl::File("/tmp/x".into()));
        assert_eq!(
            parse("file://localhost/tmp/x").unwrap(),
            LandingUrl::File("/tmp/x".into())
        );
        assert_eq!(
            parse("file://LOCALHOST/tmp/x").unwrap(),
            LandingUrl::File("/tmp/x".into())
        );
        assert_eq!(parse("file://../up").unwrap(), LandingUrl::File("../up".into()));
        for remote in ["file://host/path", "file://nas.example.com/share/landing", "file://tmp"] {
            let error = parse(remote).unwrap_err();
            assert!(error.contains("must be on this machine"), "{remote}: {error}");
        }
        assert_eq!(parse("memory://").unwrap(), LandingUrl::Memory);
        for (url, backend) in [
            ("s3://bucket/prefix", Backend::S3),
            ("az://container/prefix", Backend::Azure),
            ("abfss://container@account.dfs.core.windows.net/prefix", Backend::Azure),
            ("https://account.blob.core.windows.net/container/prefix", Backend::Azure),
            ("gs://bucket/prefix", Backend::Gcs),
        ] {
            assert_eq!(parse(url).unwrap().backend(), backend, "{url}");
        }
        assert!(parse("ftp://x/y").unwrap_err().contains("unsupported landing URL"));
        assert!(
            parse("https://account.blob.core.windows.net/")
                .unwrap_err()
                .contains("names no container")
        );
    }

    #[test]
    fn the_root_is_the_prefix_inside_the_bucket() {
        for (url, root) in [
            ("s3://bucket/a/b", "a/b"),
            ("s3://bucket", ""),
            ("az://container/p", "p"),
            ("abfss://container@account.dfs.core.windows.net/p/q", "p/q"),
            ("https://account.blob.core.windows.net/container/p", "p"),
            ("https://account.blob.core.windows.net/container", ""),
            ("gs://bucket/landing/", "landing"),
        ] {
            assert_eq!(root_of(&Url::parse(url).unwrap()).unwrap().as_ref(), root, "{url}");
        }
    }
}
