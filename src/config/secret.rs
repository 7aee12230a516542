//! Secret values and `${env:NAME}` / `${file:PATH}` references.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer};

use super::ConfigError;

static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\$\{|\$\{(env|file):([^}]*)\}").expect("reference pattern is valid"));

/// A secret from the config: resolved from a reference, registered with the redaction
/// layer, and never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// The secret's value, for the one place that must send it (a header, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Builds a secret from an already resolved value (tests and the demo).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        crate::redact::register(&value);
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        crate::redact::register(&value);
        Ok(Self(value))
    }
}

/// Whether `text` is exactly one reference, as secret fields must be.
pub fn is_reference(text: &str) -> bool {
    let text = text.trim();
    REFERENCE
        .find(text)
        .is_some_and(|found| found.start() == 0 && found.end() == text.len() && found.as_str() != "$${")
}

/// Checks the syntax of every reference in `text` without resolving it.
pub fn check_references(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let escaped = start > 0 && rest.as_bytes()[start - 1] == b'$';
        let after = &rest[start..];
        if !escaped {
            let Some(found) = REFERENCE.find(after).filter(|found| found.start() == 0) else {
                return Err(format!(
                    "malformed reference `{}`: use ${{env:NAME}}, ${{env:NAME:-default}} or ${{file:/path}}",
                    after.chars().take(40).collect::<String>()
                ));
            };
            rest = &after[found.end()..];
        } else {
            rest = &after[2..];
        }
    }
    Ok(())
}

/// Resolves every reference in `text`. `$${` stands for a literal `${`.
pub fn resolve_references(text: &str, lookup_env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    check_references(text)?;
    let mut error = None;
    let resolved = REFERENCE.replace_all(text, |captures: &regex::Captures<'_>| {
        if &captures[0] == "$${" {
            return "${".to_owned();
        }
        let argument = &captures[2];
        let value = match &captures[1] {
            "env" => {
                let (name, default) = match argument.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (argument, None),
                };
                match (lookup_env(name), default) {
                    (Some(value), _) => Ok(value),
                    (None, Some(default)) => Ok(default.to_owned()),
                    (None, None) => Err(format!("environment variable {name} is not set")),
                }
            }
            _ => std::fs::read_to_string(argument)
                .map(|content| content.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|io| format!("cannot read secret file {argument}: {io}")),
        };
        value.unwrap_or_else(|message| {
            error.get_or_insert(message);
            String::new()
        })
    });
    match error {
        Some(message) => Err(message),
        None => Ok(resolved.into_owned()),
    }
}

/// Config sections whose resolved references are registered as secrets.
const SENSITIVE_SECTIONS: &[&str] = &["headers", "params", "auth", "body"];

/// Renders key segments as `a.b[0].c`.
pub(crate) fn render_path(segments: &[String]) -> String {
    let mut text = String::new();
    for segment in segments {
        if !segment.starts_with('[') && !text.is_empty() {
            text.push('.');
        }
        text.push_str(segment);
    }
    text
}

/// Walks a parsed config document and resolves references in every string, naming the key
/// path of the first one that fails.
pub fn resolve_document(
    document: &mut serde_json::Value,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    fn walk(
        value: &mut serde_json::Value,
        path: &mut Vec<String>,
        lookup_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        match value {
            serde_json::Value::String(text) if text.contains("${") => {
                *text = resolve_references(text, lookup_env).map_err(|message| ConfigError::Invalid {
                    path: render_path(path),
                    message,
                })?;
                // Values resolved into headers, query parameters or auth are credentials
                // often enough that they are treated as secrets wherever they appear.
                if path
                    .iter()
                    .any(|segment| SENSITIVE_SECTIONS.contains(&segment.as_str()))
                {
                    crate::redact::register(text);
                }
            }
            serde_json::Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    path.push(format!("[{index}]"));
                    walk(item, path, lookup_env)?;
                    path.pop();
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    path.push(key.clone());
                    walk(item, path, lookup_env)?;
                    path.pop();
                }
            }
            _ => {}
        }
        Ok(())
    }
    walk(document, &mut Vec::new(), lookup_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("abc".into()),
            _ => None,
        }
    }

    #[test]
    fn resolves_env_with_default_and_escape() {
        assert_eq!(resolve_references("Bearer ${env:TOKEN}", &env).unwrap(), "Bearer abc");
        assert_eq!(resolve_references("${env:MISSING:-x}", &env).unwrap(), "x");
        assert_eq!(resolve_references("$${env:TOKEN}", &env).unwrap(), "${env:TOKEN}");
        let error = resolve_references("${env:MISSING}", &env).unwrap_err();
        assert!(error.contains("MISSING is not set"), "{error}");
    }

    #[test]
    fn resolves_files_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let text = format!("${{file:{}}}", path.display());
        assert_eq!(resolve_references(&text, &env).unwrap(), "from-file");
    }

    #[test]
    fn recognises_references() {
        assert!(is_reference("${env:X}"));
        assert!(is_reference("${file:/run/secrets/x}"));
        assert!(!is_reference("literal"));
        assert!(!is_reference("prefix ${env:X}"));
        assert!(check_references("${vault:x}").is_err());
        assert!(check_references("${env:X").is_err());
    }
}
