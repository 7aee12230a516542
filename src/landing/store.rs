//! Opening an object store from a landing URL.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::ObjectStoreScheme;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use url::Url;

use super::LandingError;

/// A landing URL parsed into its scheme and location, without I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LandingUrl {
    /// A local folder (absolute, or relative to the working directory).
    File(std::path::PathBuf),
    /// A process-local in-memory store (tests).
    Memory,
    /// A cloud store understood by `object_store` (s3, az, gs and their https forms).
    Cloud(Url),
}

/// Parses a landing URL, or says what is wrong with it.
pub fn parse(url: &str) -> Result<LandingUrl, String> {
    if let Some(rest) = url.strip_prefix("file://") {
        if rest.is_empty() {
            return Err("file:// URL has no path".to_owned());
        }
        return Ok(LandingUrl::File(std::path::PathBuf::from(rest)));
    }
    if url == "memory://" || url.starts_with("memory://") {
        return Ok(LandingUrl::Memory);
    }
    let parsed = Url::parse(url).map_err(|error| format!("`{url}` is not a URL: {error}"))?;
    match ObjectStoreScheme::parse(&parsed) {
        Ok((
            ObjectStoreScheme::AmazonS3 | ObjectStoreScheme::MicrosoftAzure | ObjectStoreScheme::GoogleCloudStorage,
            _,
        )) => Ok(LandingUrl::Cloud(parsed)),
        _ => Err(format!(
            "unsupported landing URL `{url}`; use file://, memory://, s3://, az:// (or abfss://, https://ACCOUNT.blob.core.windows.net/) or gs://"
        )),
    }
}

/// Validation hook for the config: checks the URL without I/O.
pub fn check_url(url: &str) -> Result<(), String> {
    parse(url).map(|_| ())
}

/// Opens the store and returns it with the root path inside it.
pub fn open(
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, Path), LandingError> {
    let invalid = |message: String| LandingError::Url {
        url: url.to_owned(),
        message,
    };
    match parse(url).map_err(invalid)? {
        LandingUrl::File(folder) => {
            std::fs::create_dir_all(&folder)
                .map_err(|error| invalid(format!("cannot create {}: {error}", folder.display())))?;
            let store = LocalFileSystem::new_with_prefix(&folder)
                .map_err(|error| invalid(error.to_string()))?
                .with_automatic_cleanup(true);
            Ok((Arc::new(store), Path::default()))
        }
        LandingUrl::Memory => Ok((Arc::new(InMemory::new()), Path::default())),
        LandingUrl::Cloud(parsed) => {
            let (store, root) =
                object_store::parse_url_opts(&parsed, options.iter().map(|(k, v)| (k.as_str(), v.clone())))
                    .map_err(|error| invalid(error.to_string()))?;
            Ok((Arc::from(store), root))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_schemes() {
        assert_eq!(parse("file://./landing").unwrap(), LandingUrl::File("./landing".into()));
        assert_eq!(parse("file:///tmp/x").unwrap(), LandingUrl::File("/tmp/x".into()));
        assert_eq!(parse("memory://").unwrap(), LandingUrl::Memory);
        for url in [
            "s3://bucket/prefix",
            "az://container/prefix",
            "abfss://container@account.dfs.core.windows.net/prefix",
            "https://account.blob.core.windows.net/container/prefix",
            "gs://bucket/prefix",
        ] {
            assert!(matches!(parse(url), Ok(LandingUrl::Cloud(_))), "{url}");
        }
        assert!(parse("ftp://x/y").unwrap_err().contains("unsupported landing URL"));
    }
}
