//! The secret-hygiene layer: every secret resolved from a config is registered here, and
//! every log line, error message, manifest and URL that may carry one is scrubbed through
//! [`scrub`] before it leaves the process.

use std::borrow::Cow;
use std::sync::RwLock;

use url::Url;

/// What a scrubbed secret is replaced with.
pub const MASK: &str = "***";

/// Query parameter names whose values are always masked in URLs that are logged or stored.
const SENSITIVE_QUERY_NAMES: &[&str] = &[
    "api_key",
    "apikey",
    "access_token",
    "token",
    "key",
    "secret",
    "client_secret",
    "password",
    "signature",
    "sig",
    "app_id",
    "refresh_token",
];

/// Whether a query parameter name is one whose value is always a credential.
pub fn is_sensitive_query_name(name: &str) -> bool {
    SENSITIVE_QUERY_NAMES
        .iter()
        .any(|candidate| name.eq_ignore_ascii_case(candidate))
}

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret value so that [`scrub`] masks it wherever it appears.
///
/// Values shorter than four characters are not registered: masking them would garble
/// ordinary text without protecting anything meaningful.
pub fn register(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    for form in written_forms(secret) {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
}

/// A secret as it may appear in written text: verbatim, JSON-escaped (JSON logs,
/// manifests), Debug-escaped (a `?field` in text logs), and both (a `?field` in JSON logs).
/// The escaped forms differ only when the secret holds quotes, backslashes or control
/// characters.
fn written_forms(secret: &str) -> Vec<String> {
    fn inner(quoted: String) -> String {
        quoted
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .map_or_else(|| quoted.clone(), ToOwned::to_owned)
    }
    let mut forms = vec![secret.to_owned()];
    let mut last = vec![secret.to_owned()];
    for _ in 0..2 {
        let mut next = Vec::new();
        for form in &last {
            for escaped in [
                inner(serde_json::to_string(form).unwrap_or_default()),
                inner(format!("{form:?}")),
            ] {
                if !forms.contains(&escaped) {
                    forms.push(escaped.clone());
                    next.push(escaped);
                }
            }
        }
        last = next;
    }
    forms
}

/// Masks every registered secret in `text`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !secrets.iter().any(|secret| text.contains(secret.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut owned = text.to_owned();
    for secret in secrets.iter() {
        if owned.contains(secret.as_str()) {
            owned = owned.replace(secret.as_str(), MASK);
        }
    }
    Cow::Owned(owned)
}

/// The most characters of a response body or header that an error message quotes.
pub const EXCERPT_CHARS: usize = 300;

/// A quotable excerpt of text from outside (an error body, a header): registered secrets
/// masked first, then cut to `max_chars` characters, so a secret echoed across the cut
/// cannot leak its beginning. A tail that could be the start of a secret (text that was
/// already cut before it came here, like a body read up to a limit) is masked too.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let scrubbed = scrub(text);
    let mut cut: String = scrubbed.trim().chars().take(max_chars).collect();
    let secrets = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    for secret in secrets.iter() {
        // The longest prefix of the secret (3 characters or more) the excerpt ends with.
        let found = (3..secret.len())
            .rev()
            .filter(|&len| secret.is_char_boundary(len))
            .find(|&len| cut.ends_with(&secret[..len]));
        if let Some(len) = found {
            cut.truncate(cut.len() - len);
            cut.push_str(MASK);
        }
    }
    if scrubbed.trim().chars().nth(max_chars).is_some() {
        cut.push('…');
    }
    cut
}

/// [`excerpt`] of bytes that may not be UTF-8.
pub fn excerpt_bytes(bytes: &[u8], max_chars: usize) -> String {
    excerpt(&String::from_utf8_lossy(bytes), max_chars)
}

/// Renders a URL for logs and stored metadata: user info removed, the values of sensitive
/// or secret-bearing query parameters masked, and registered secrets scrubbed.
pub fn url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let sensitive = is_sensitive_query_name(&name) || scrub(&value) != value;
                let value = if sensitive { MASK.to_owned() } else { value.into_owned() };
                (name.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    scrub(shown.as_str()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_registered_secrets() {
        register("s3cr3t-value-for-redact-test");
        assert_eq!(scrub("header was s3cr3t-value-for-redact-test!"), "header was ***!");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn excerpt_masks_a_secret_at_every_offset_around_the_cut() {
        let secret = "tok_excerpt_0123456789abcdefghij";
        register(secret);
        for offset in 250..=EXCERPT_CHARS + 5 {
            let body = format!("{}{secret} and more text after it", "x".repeat(offset));
            let shown = excerpt(&body, EXCERPT_CHARS);
            assert!(shown.chars().count() <= EXCERPT_CHARS + 1, "offset {offset}");
            for len in 3..=secret.len() {
                assert!(
                    !shown.contains(&secret[..len]),
                    "offset {offset} leaks {len} chars: {shown}"
                );
            }
        }
        // Text cut before it came here (a body read up to a limit) ends in a partial secret.
        let shown = excerpt(&format!("error: {}", &secret[..20]), EXCERPT_CHARS);
        assert_eq!(shown, "error: ***");
        assert_eq!(excerpt("  short body \n", EXCERPT_CHARS), "short body");
    }

    #[test]
    fn scrubs_the_escaped_forms_of_a_secret() {
        register(r#"quote"and\backslash-secret"#);
        assert_eq!(
            scrub(r#"{"token":"quote\"and\\backslash-secret"}"#),
            r#"{"token":"***"}"#
        );
        assert_eq!(scrub("quote\"and\\backslash-secret"), "***");
    }

    #[test]
    fn masks_sensitive_query_parameters() {
        let shown = url(&Url::parse("https://u:p@api.test/x?api_key=abc123&limit=5").unwrap());
        assert_eq!(shown, "https://api.test/x?api_key=***&limit=5");
    }

    #[test]
    fn masks_query_values_that_are_registered_secrets() {
        register("registered-query-secret-42");
        let shown = url(&Url::parse("https://api.test/x?custom=registered-query-secret-42").unwrap());
        assert_eq!(shown, "https://api.test/x?custom=***");
    }
}
