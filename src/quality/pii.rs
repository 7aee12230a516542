//! PII redaction by JSON pointer, applied to a record's bytes before anything is stored or
//! logged. Only the targeted values change: the rest of the record keeps its exact bytes.
//!
//! Pointers may use `*` for any array element or object key. `drop` removes the member (or
//! array element), `mask` replaces the value with a fixed string, `hash` replaces it with the
//! hex HMAC-SHA-256 of the value under a secret salt, so values stay joinable across records
//! and runs without being reversible.

use std::borrow::Cow;
use std::ops::Range;

use hmac::{Hmac, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::config::{RedactAction, RedactRule};
use crate::records;

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    tokens: Vec<String>,
    action: RedactAction,
    replacement: String,
    salt: Vec<u8>,
    /// `path:action`, as listed in `_redacted`.
    pub label: String,
}

/// The redaction rules of a stream.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    rules: Vec<Rule>,
}

/// One change to make to a record's text.
#[derive(Debug)]
struct Splice {
    range: Range<usize>,
    text: String,
}

impl Redactor {
    pub fn new(rules: &[RedactRule]) -> Self {
        Self {
            rules: rules
                .iter()
                .map(|rule| Rule {
                    tokens: rule
                        .path
                        .trim_start_matches('/')
                        .split('/')
                        .map(|token| token.replace("~1", "/").replace("~0", "~"))
                        .collect(),
                    action: rule.action,
                    replacement: rule.replacement.clone().unwrap_or_else(|| "***".to_owned()),
                    salt: rule
                        .salt
                        .as_ref()
                        .map(|salt| salt.expose().as_bytes().to_vec())
                        .unwrap_or_default(),
                    label: format!("{}:{}", rule.path, action_name(rule.action)),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The record with every rule applied, and the labels of the rules that matched.
    pub fn apply<'a>(&self, raw: &'a str) -> (Cow<'a, str>, Vec<&str>) {
        if self.rules.is_empty() {
            return (Cow::Borrowed(raw), Vec::new());
        }
        let Ok(value) = serde_json::from_str::<&RawValue>(raw) else {
            return (Cow::Borrowed(raw), Vec::new());
        };
        let mut splices = Vec::new();
        let mut applied = Vec::new();
        for rule in &self.rules {
            let before = splices.len();
            collect(raw, value, &rule.tokens, rule, &mut splices);
            if splices.len() > before {
                applied.push(rule.label.as_str());
            }
        }
        if splices.is_empty() {
            return (Cow::Borrowed(raw), applied);
        }
        // Apply from the end; an edit inside one already made is skipped.
        splices.sort_by(|a, b| b.range.start.cmp(&a.range.start).then(b.range.end.cmp(&a.range.end)));
        let mut text = raw.to_owned();
        let mut floor = usize::MAX;
        for splice in splices {
            let mut range = splice.range;
            if range.end > floor {
                // Two deletions that share a separator merge; anything else inside an edit
                // already made is moot.
                if !splice.text.is_empty() || range.start >= floor {
                    continue;
                }
                range.end = floor;
            }
            text.replace_range(range.clone(), &splice.text);
            floor = range.start;
        }
        (Cow::Owned(text), applied)
    }
}

fn action_name(action: RedactAction) -> &'static str {
    match action {
        RedactAction::Drop => "drop",
        RedactAction::Mask => "mask",
        RedactAction::Hash => "hash",
    }
}

fn offset(base: &str, raw: &RawValue) -> usize {
    raw.get().as_ptr() as usize - base.as_ptr() as usize
}

/// Finds the values `tokens` point at under `value` and records the edit for each.
fn collect(base: &str, value: &RawValue, tokens: &[String], rule: &Rule, out: &mut Vec<Splice>) {
    let Some((token, rest)) = tokens.split_first() else {
        return;
    };
    let children: Vec<(&RawValue, bool)> = match value.get().as_bytes().first() {
        Some(b'{') => records::members(value)
            .into_iter()
            .filter(|(key, _)| token == "*" || key == token)
            .map(|(_, child)| (child, true))
            .collect(),
        Some(b'[') => {
            let elements = records::elements(value);
            if token == "*" {
                elements.into_iter().map(|child| (child, false)).collect()
            } else {
                token
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| elements.get(index).copied())
                    .map(|child| vec![(child, false)])
                    .unwrap_or_default()
            }
        }
        _ => return,
    };
    for (child, is_member) in children {
        if !rest.is_empty() {
            collect(base, child, rest, rule, out);
            continue;
        }
        let start = offset(base, child);
        let range = start..start + child.get().len();
        match rule.action {
            RedactAction::Mask => out.push(Splice {
                range,
                text: serde_json::to_string(&rule.replacement).expect("strings serialize"),
            }),
            RedactAction::Hash => {
                let plain = records::scalar_text(child).unwrap_or_else(|| child.get().to_owned());
                let mut mac = Hmac::<Sha256>::new_from_slice(&rule.salt).expect("HMAC takes any key length");
                mac.update(plain.as_bytes());
                out.push(Splice {
                    range,
                    text: format!("\"{}\"", hex::encode(mac.finalize().into_bytes())),
                });
            }
            RedactAction::Drop => {
                let member = if is_member {
                    member_start(base, start)
                } else {
                    Some(start)
                };
                if let Some(member_start) = member {
                    out.push(Splice {
                        range: with_separator(base, member_start..range.end),
                        text: String::new(),
                    });
                }
            }
        }
    }
}

/// Where the `"key":` before the value at `value_start` begins.
fn member_start(base: &str, value_start: usize) -> Option<usize> {
    let bytes = base.as_bytes();
    let mut at = value_start;
    let skip_ws = |at: &mut usize| {
        while *at > 0 && bytes[*at - 1].is_ascii_whitespace() {
            *at -= 1;
        }
    };
    skip_ws(&mut at);
    if at == 0 || bytes[at - 1] != b':' {
        return None;
    }
    at -= 1;
    skip_ws(&mut at);
    if at == 0 || bytes[at - 1] != b'"' {
        return None;
    }
    at -= 1;
    // Back to the opening quote: one not escaped by an odd run of backslashes.
    while at > 0 {
        at -= 1;
        if bytes[at] == b'"' {
            let backslashes = bytes[..at].iter().rev().take_while(|b| **b == b'\\').count();
            if backslashes % 2 == 0 {
                return Some(at);
            }
        }
    }
    None
}

/// Widens a member or element range to take one adjacent comma with it.
fn with_separator(base: &str, range: Range<usize>) -> Range<usize> {
    let bytes = base.as_bytes();
    let mut end = range.end;
    while end < bytes.len() && bytes[end].is_ascii_whitespace() {
        end += 1;
    }
    if end < bytes.len() && bytes[end] == b',' {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        return range.start..end;
    }
    let mut start = range.start;
    while start > 0 && bytes[start - 1].is_ascii_whitespace() {
        start -= 1;
    }
    if start > 0 && bytes[start - 1] == b',' {
        return start - 1..range.end;
    }
    range
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;

    fn rule(path: &str, action: RedactAction) -> RedactRule {
        RedactRule {
            path: path.into(),
            action,
            replacement: None,
            salt: Some(Secret::new("pepper-salt-1234")),
        }
    }

    #[test]
    fn masks_hashes_and_drops_keeping_other_bytes() {
        let raw = r#"{"id": 7, "customer": {"email": "a@b.test", "name" : "Ann"}, "tags": [{"ssn":"1"}, {"ssn":"2"}], "note":"x"}"#;
        let redactor = Redactor::new(&[
            rule("/customer/email", RedactAction::Hash),
            rule("/customer/name", RedactAction::Mask),
            rule("/tags/*/ssn", RedactAction::Drop),
            rule("/note", RedactAction::Drop),
            rule("/absent", RedactAction::Mask),
        ]);
        let (text, applied) = redactor.apply(raw);
        let value: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(value["customer"]["name"], "***");
        assert_eq!(value["tags"], serde_json::json!([{}, {}]));
        assert!(value.get("note").is_none());
        let hashed = value["customer"]["email"].as_str().unwrap();
        assert_eq!(hashed.len(), 64);
        assert!(!text.contains("a@b.test") && !text.contains("Ann"));
        assert!(text.starts_with(r#"{"id": 7, "customer": {"email": ""#), "{text}");
        assert_eq!(
            applied,
            [
                "/customer/email:hash",
                "/customer/name:mask",
                "/tags/*/ssn:drop",
                "/note:drop"
            ]
        );
        // Joinable: the same value hashes the same.
        let (again, _) = redactor.apply(r#"{"customer": {"email": "a@b.test"}}"#);
        assert!(again.contains(hashed));
    }

    #[test]
    fn wildcards_over_keys_and_array_elements() {
        let raw = r#"{"contacts": {"home": {"phone": "1"}, "work": {"phone": "2"}}, "list": ["a", "b"]}"#;
        let redactor = Redactor::new(&[
            rule("/contacts/*/phone", RedactAction::Mask),
            rule("/list/*", RedactAction::Drop),
        ]);
        let (text, _) = redactor.apply(raw);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["contacts"]["home"]["phone"], "***");
        assert_eq!(value["contacts"]["work"]["phone"], "***");
        assert_eq!(value["list"], serde_json::json!([]));
    }

    #[test]
    fn keys_with_escaped_quotes() {
        let raw = r#"{"a\"b": 1, "secret": "s"}"#;
        let (text, _) = Redactor::new(&[rule("/secret", RedactAction::Drop)]).apply(raw);
        assert_eq!(text, r#"{"a\"b": 1}"#);
    }
}
