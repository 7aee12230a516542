//! The error every config check returns, and the small checks the components' checks share.

use url::Url;

/// Errors from reading, parsing or validating a connector config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config is not valid YAML: {0}")]
    Yaml(String),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("no config given: pass --config FILE or set LANDFALL_CONFIG")]
    Missing,
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] naming the key's path.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Whether `name` is `[a-z][a-z0-9_]*`, at most 64 characters (source and stream names).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 64
}

/// A JSON pointer: empty or starting with `/`.
pub fn check_pointer(path: &str, pointer: &str) -> Result<(), ConfigError> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            format!("`{pointer}` is not a JSON pointer: it must be empty or start with `/`"),
        ))
    }
}

/// A field name that must not be empty.
pub fn check_field(path: &str, field: &str) -> Result<(), ConfigError> {
    if field.is_empty() {
        return Err(ConfigError::invalid(path, "must not be empty"));
    }
    Ok(())
}

/// A value that must not be empty or blank.
pub fn non_empty(path: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::invalid(path, "must not be empty"))
    } else {
        Ok(())
    }
}

/// Whether a value still holds an unresolved reference (only with `validate --no-resolve`).
pub fn has_reference(value: &str) -> bool {
    value.contains("${")
}

/// Whether `url` points at this machine (plain HTTP is always allowed there).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}

/// A query parameter's value: a scalar or null.
pub fn check_param_value(path: &str, value: &serde_json::Value) -> Result<(), ConfigError> {
    match value {
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => Err(ConfigError::invalid(
            path,
            "query parameters must be strings, numbers, booleans or null",
        )),
        _ => Ok(()),
    }
}
