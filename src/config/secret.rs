//! `${env:NAME}` / `${file:PATH}` references, and which config values must be one. The
//! secret type itself is [`crate::settings::Secret`].

use std::sync::LazyLock;

use super::ConfigError;
use regex::Regex;

static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\$\{|\$\{(env|file):([^}]*)\}").expect("reference pattern is valid"));

/// Whether `text` is exactly one reference, as secret fields must be.
pub fn is_reference(text: &str) -> bool {
    let text = text.trim();
    REFERENCE
        .find(text)
        .is_some_and(|found| found.start() == 0 && found.end() == text.len() && found.as_str() != "$${")
}

/// Fragments of header and query parameter names that carry credentials, matched against
/// the name lowercased with `-` and `_` removed (`X-Api-Key`, `api_key` and `apiKey` all
/// hold `apikey`).
const CREDENTIAL_NAME_PARTS: &[&str] = &[
    "authorization",
    "apikey",
    "accesskey",
    "authkey",
    "secret",
    "password",
    "passwd",
    "token",
    "signature",
    "credential",
    "cookie",
    "privatekey",
    "sessionid",
];

/// Whether a header or query parameter named `name` carries a credential, so that its
/// value must be a reference and is always redacted.
pub fn is_credential_name(name: &str) -> bool {
    let normalized: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    CREDENTIAL_NAME_PARTS.iter().any(|part| normalized.contains(part))
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

/// The largest file a `${file:}` reference may name.
pub const MAX_SECRET_FILE_BYTES: u64 = 1 << 20;

/// Reads the file of a `${file:PATH}` reference: a regular file (following symlinks, as
/// mounted Kubernetes secrets are) of at most [`MAX_SECRET_FILE_BYTES`], in UTF-8. It is
/// opened without blocking, so a FIFO or a device fails at once instead of hanging or
/// streaming forever, and checked on the opened handle, so it cannot be swapped between
/// the check and the read.
fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let cannot = |reason: String| format!("cannot read secret file {path}: {reason}");
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|error| cannot(error.to_string()))?;
    let metadata = file.metadata().map_err(|error| cannot(error.to_string()))?;
    if !metadata.is_file() {
        let kind = if metadata.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(cannot(format!("it is {kind}; a secret file must be a regular file")));
    }
    if metadata.len() > MAX_SECRET_FILE_BYTES {
        return Err(cannot(format!(
            "it holds {} bytes, more than the {MAX_SECRET_FILE_BYTES} a secret file may",
            metadata.len()
        )));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| cannot(error.to_string()))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(cannot(format!(
            "it grew past the {MAX_SECRET_FILE_BYTES} bytes a secret file may hold"
        )));
    }
    String::from_utf8(bytes).map_err(|_| cannot("it is not UTF-8 text".to_owned()))
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
            _ => read_secret_file(argument).map(|content| content.trim_end_matches(['\n', '\r']).to_owned()),
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

/// Registers the values of the references in `written` that do not start it.
fn register_embedded(written: &str, lookup_env: &dyn Fn(&str) -> Option<String>) {
    for found in REFERENCE.find_iter(written) {
        if found.start() > 0
            && found.as_str() != "$${"
            && let Ok(value) = resolve_references(found.as_str(), lookup_env)
        {
            crate::redact::register(&value);
        }
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

/// Values that references resolved to, each with the text it was written as, so that an
/// error about the resolved config never quotes them.
#[derive(Default)]
pub struct Resolved(Vec<(String, String)>);

/// Resolved values shorter than this are left in messages (they cannot hold a credential,
/// and masking them would garble every message).
const MIN_MASKED_LEN: usize = 4;

impl Resolved {
    /// `error` with every resolved value replaced by the reference it came from.
    pub fn mask(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::Invalid { path, message } => ConfigError::Invalid {
                path,
                message: self.mask_text(&message),
            },
            other => other,
        }
    }

    fn mask_text(&self, text: &str) -> String {
        let mut pieces: Vec<(&str, &str)> = Vec::new();
        for (written, value) in &self.0 {
            pieces.push((value, written));
            // A message may quote one line of a multi-line file.
            pieces.extend(value.lines().map(|line| (line.trim(), written.as_str())));
        }
        pieces.retain(|(value, _)| value.chars().count() >= MIN_MASKED_LEN);
        pieces.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        let mut masked = text.to_owned();
        for (value, written) in pieces {
            if masked.contains(value) {
                masked = masked.replace(value, &format!("<the value of {written}>"));
            }
        }
        masked
    }
}

/// Walks a parsed config document and resolves references in every string, naming the key
/// path of the first one that fails. Returns what the references resolved to.
pub fn resolve_document(
    document: &mut serde_json::Value,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    fn walk(
        value: &mut serde_json::Value,
        path: &mut Vec<String>,
        lookup_env: &dyn Fn(&str) -> Option<String>,
        resolved: &mut Resolved,
    ) -> Result<(), ConfigError> {
        match value {
            serde_json::Value::String(text) if text.contains("${") => {
                let written = text.clone();
                *text = resolve_references(text, lookup_env).map_err(|message| ConfigError::Invalid {
                    path: render_path(path),
                    message,
                })?;
                resolved.0.push((written.clone(), text.clone()));
                // Values resolved into headers, query parameters or auth are credentials
                // often enough that they are treated as secrets wherever they appear.
                if path
                    .iter()
                    .any(|segment| SENSITIVE_SECTIONS.contains(&segment.as_str()))
                {
                    crate::redact::register(text);
                }
                // A reference inside the base URL (a path token, a password) is a secret;
                // one that gives the whole URL or its start (the host) is not.
                if path.iter().map(String::as_str).eq(["source", "base_url"]) {
                    register_embedded(&written, lookup_env);
                }
            }
            serde_json::Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    path.push(format!("[{index}]"));
                    walk(item, path, lookup_env, resolved)?;
                    path.pop();
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    path.push(key.clone());
                    walk(item, path, lookup_env, resolved)?;
                    path.pop();
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut resolved = Resolved::default();
    walk(document, &mut Vec::new(), lookup_env, &mut resolved)?;
    Ok(resolved)
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
