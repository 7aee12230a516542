//! Schema drift: the field paths and JSON types a stream's records carry, kept in
//! `_state/{stream}.schema.json` and compared run to run.
//!
//! Paths are JSON pointers; array elements share the path segment `*`. Added fields and
//! widened types (integer to number, or a field becoming nullable) are not breaking.
//! Removed fields (present in the previous run, absent from this one) and changed or
//! narrowed types are breaking, and fail the stream when `on_breaking_drift: fail`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::records::scan;

/// Fields deeper than this are not tracked.
const MAX_DEPTH: usize = 8;
/// Distinct paths tracked per stream; beyond it new paths are ignored.
pub const MAX_PATHS: usize = 2_000;

const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const INTEGER: u8 = 4;
const NUMBER: u8 = 8;
const STRING: u8 = 16;
const OBJECT: u8 = 32;
const ARRAY: u8 = 64;
const NAMES: [(u8, &str); 7] = [
    (NULL, "null"),
    (BOOLEAN, "boolean"),
    (INTEGER, "integer"),
    (NUMBER, "number"),
    (STRING, "string"),
    (OBJECT, "object"),
    (ARRAY, "array"),
];

fn type_names(bits: u8) -> Vec<String> {
    NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

fn type_bits(names: &[String]) -> u8 {
    names
        .iter()
        .filter_map(|name| NAMES.iter().find(|(_, known)| known == name).map(|(bit, _)| *bit))
        .fold(0, |bits, bit| bits | bit)
}

/// The paths and types seen in this run, as a tree of paths: a record's members are found
/// among their parent's children, by position first (records of one stream mostly list
/// their members in the same order), then by name.
#[derive(Debug)]
pub struct SchemaTracker {
    /// `nodes[0]` is the record itself (the empty path, not tracked).
    nodes: Vec<Node>,
    pub records: u64,
}

#[derive(Debug, Default)]
struct Node {
    bits: u8,
    /// Member names (decoded UTF-8), or `*` for array elements, with their nodes.
    children: Vec<(Box<[u8]>, usize)>,
}

impl Default for SchemaTracker {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
            records: 0,
        }
    }
}

impl SchemaTracker {
    /// Adds one record's fields.
    ///
    /// The record is valid JSON (a `RawValue`), so it is walked by scanning its text: only
    /// member names with escapes are decoded. A walk cut short by text it does not expect
    /// keeps what it saw.
    pub fn observe(&mut self, record: &RawValue) {
        self.records += 1;
        let bytes = record.get().as_bytes();
        let _ = self.value(bytes, scan::whitespace(bytes, 0), 0, 0);
    }

    /// Every path seen (JSON pointers, `*` for array elements) with its types.
    pub fn paths(&self) -> BTreeMap<String, u8> {
        let mut paths = BTreeMap::new();
        let mut stack: Vec<(usize, String)> = vec![(0, String::new())];
        while let Some((node, path)) = stack.pop() {
            if node != 0 {
                paths.insert(path.clone(), self.nodes[node].bits);
            }
            for (name, child) in &self.nodes[node].children {
                let name = String::from_utf8_lossy(name);
                let segment = if name.contains(['~', '/']) {
                    name.replace('~', "~0").replace('/', "~1")
                } else {
                    name.to_string()
                };
                stack.push((*child, format!("{path}/{segment}")));
            }
        }
        paths
    }

    /// The child of `node` named `name`, the `position`-th member of its object; created
    /// while fewer than [`MAX_PATHS`] paths are tracked.
    fn child(&mut self, node: usize, name: &[u8], position: usize) -> Option<usize> {
        let children = &self.nodes[node].children;
        if let Some((known, child)) = children.get(position)
            && **known == *name
        {
            return Some(*child);
        }
        if let Some((_, child)) = children.iter().find(|(known, _)| **known == *name) {
            return Some(*child);
        }
        if self.nodes.len() > MAX_PATHS {
            return None;
        }
        let child = self.nodes.len();
        self.nodes.push(Node::default());
        self.nodes[node].children.push((name.into(), child));
        Some(child)
    }

    /// Notes the value at `at` (not whitespace) under `node`; returns the index past it,
    /// or `None` where the text is not what valid JSON would have there.
    fn value(&mut self, bytes: &[u8], at: usize, node: usize, depth: usize) -> Option<usize> {
        let (bits, end) = match *bytes.get(at)? {
            b'{' => return self.object(bytes, at, node, depth),
            b'[' => return self.array(bytes, at, node, depth),
            b'"' => (STRING, scan::string_end(bytes, at)),
            b't' => (BOOLEAN, at + 4),
            b'f' => (BOOLEAN, at + 5),
            b'n' => (NULL, at + 4),
            _ => {
                let end = scan::value_end(bytes, at);
                (number_bits(bytes.get(at..end)?), end)
            }
        };
        self.nodes[node].bits |= bits;
        Some(end)
    }

    fn object(&mut self, bytes: &[u8], at: usize, node: usize, depth: usize) -> Option<usize> {
        self.nodes[node].bits |= OBJECT;
        let mut at = scan::whitespace(bytes, at + 1);
        if bytes.get(at) == Some(&b'}') {
            return Some(at + 1);
        }
        let mut position = 0;
        loop {
            if bytes.get(at) != Some(&b'"') {
                return None;
            }
            let name_end = scan::string_end(bytes, at);
            let name = bytes.get(at + 1..name_end.checked_sub(1)?)?;
            let colon = scan::whitespace(bytes, name_end);
            if bytes.get(colon) != Some(&b':') {
                return None;
            }
            let start = scan::whitespace(bytes, colon + 1);
            let child = if depth >= MAX_DEPTH {
                None
            } else if name.contains(&b'\\') {
                let decoded: String = serde_json::from_slice(bytes.get(at..name_end)?).ok()?;
                self.child(node, decoded.as_bytes(), position)
            } else {
                self.child(node, name, position)
            };
            let end = match child {
                Some(child) => self.value(bytes, start, child, depth + 1)?,
                None => scan::value_end(bytes, start),
            };
            position += 1;
            at = scan::whitespace(bytes, end);
            match bytes.get(at) {
                Some(b',') => at = scan::whitespace(bytes, at + 1),
                Some(b'}') => return Some(at + 1),
                _ => return None,
            }
        }
    }

    fn array(&mut self, bytes: &[u8], at: usize, node: usize, depth: usize) -> Option<usize> {
        self.nodes[node].bits |= ARRAY;
        let mut at = scan::whitespace(bytes, at + 1);
        if bytes.get(at) == Some(&b']') {
            return Some(at + 1);
        }
        let child = if depth >= MAX_DEPTH {
            None
        } else {
            self.child(node, b"*", 0)
        };
        loop {
            let end = match child {
                Some(child) => self.value(bytes, at, child, depth + 1)?,
                None => scan::value_end(bytes, at),
            };
            at = scan::whitespace(bytes, end);
            match bytes.get(at) {
                Some(b',') => at = scan::whitespace(bytes, at + 1),
                Some(b']') => return Some(at + 1),
                _ => return None,
            }
        }
    }
}

/// The type of a number as serde_json reads it: an integer if it has no fraction or
/// exponent and fits 64 bits, a number otherwise (and `-0`, which only a float holds).
fn number_bits(text: &[u8]) -> u8 {
    if text == b"-0" || text.iter().any(|byte| matches!(byte, b'.' | b'e' | b'E')) {
        return NUMBER;
    }
    let digits = text.len() - usize::from(text.first() == Some(&b'-'));
    if digits < 19 {
        return INTEGER;
    }
    let text = std::str::from_utf8(text).unwrap_or_default();
    if text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok() {
        INTEGER
    } else {
        NUMBER
    }
}

/// A path as remembered in the schema state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnownPath {
    pub types: Vec<String>,
    pub first_seen_run: String,
    pub last_seen_run: String,
}

/// `_state/{stream}.schema.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaState {
    pub schema_version: u32,
    pub stream: String,
    /// The last run that updated it.
    pub run_id: String,
    pub paths: BTreeMap<String, KnownPath>,
}

/// One difference between runs, as the manifest's `schema_changes` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaChange {
    pub path: String,
    /// `added`, `removed`, `widened`, `narrowed` or `type_changed`.
    pub change: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub breaking: bool,
}

fn change(path: &str, kind: &str, from: u8, to: u8, breaking: bool) -> SchemaChange {
    SchemaChange {
        path: path.to_owned(),
        change: kind.to_owned(),
        from: type_names(from),
        to: type_names(to),
        breaking,
    }
}

/// Compares this run with the stored state; returns the changes and the next state.
pub fn compare(
    previous: Option<&SchemaState>,
    current: &SchemaTracker,
    stream: &str,
    run_id: &str,
) -> (Vec<SchemaChange>, SchemaState) {
    let mut next = previous.cloned().unwrap_or_else(|| SchemaState {
        schema_version: 1,
        stream: stream.to_owned(),
        ..Default::default()
    });
    let mut changes = Vec::new();
    if current.records == 0 {
        return (changes, next);
    }
    let current = current.paths();
    let previous_run = previous.map(|state| state.run_id.clone());
    if let Some(previous) = previous {
        for (path, known) in &previous.paths {
            let was_in_last_run = previous_run.as_deref() == Some(known.last_seen_run.as_str());
            if was_in_last_run && !current.contains_key(path) {
                changes.push(change(path, "removed", type_bits(&known.types), 0, true));
            }
        }
    }
    for (path, &bits) in &current {
        match next.paths.get_mut(path) {
            None => {
                if previous.is_some() {
                    changes.push(change(path, "added", 0, bits, false));
                }
                next.paths.insert(
                    path.clone(),
                    KnownPath {
                        types: type_names(bits),
                        first_seen_run: run_id.to_owned(),
                        last_seen_run: run_id.to_owned(),
                    },
                );
            }
            Some(known) => {
                let old = type_bits(&known.types);
                let new_types = bits & !old;
                if new_types != 0 {
                    let widening = new_types & !(NULL | if old & INTEGER != 0 { NUMBER } else { 0 }) == 0;
                    let narrowing = old & NUMBER != 0 && new_types == INTEGER && bits & NUMBER == 0;
                    let kind = if widening {
                        "widened"
                    } else if narrowing {
                        "narrowed"
                    } else {
                        "type_changed"
                    };
                    changes.push(change(path, kind, old, bits, !widening));
                    known.types = type_names(old | bits);
                }
                known.last_seen_run = run_id.to_owned();
            }
        }
    }
    next.run_id = run_id.to_owned();
    (changes, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    /// The walk as serde_json reads a record: the reference the scanning walk must match.
    fn reference(records: &[&str]) -> BTreeMap<String, u8> {
        struct Walker<'t> {
            paths: &'t mut BTreeMap<String, u8>,
            path: String,
            depth: usize,
        }
        impl Walker<'_> {
            fn note(&mut self, bits: u8) {
                if self.path.is_empty() {
                    return;
                }
                if let Some(seen) = self.paths.get_mut(&self.path) {
                    *seen |= bits;
                } else if self.paths.len() < MAX_PATHS {
                    self.paths.insert(self.path.clone(), bits);
                }
            }
            fn at(&mut self, path: String, depth: usize) -> Walker<'_> {
                Walker {
                    paths: &mut *self.paths,
                    path,
                    depth,
                }
            }
        }
        impl<'de> DeserializeSeed<'de> for Walker<'_> {
            type Value = ();
            fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
                deserializer.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for Walker<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(mut self) -> Result<(), E> {
                self.note(NULL);
                Ok(())
            }
            fn visit_bool<E>(mut self, _: bool) -> Result<(), E> {
                self.note(BOOLEAN);
                Ok(())
            }
            fn visit_i64<E>(mut self, _: i64) -> Result<(), E> {
                self.note(INTEGER);
                Ok(())
            }
            fn visit_u64<E>(mut self, _: u64) -> Result<(), E> {
                self.note(INTEGER);
                Ok(())
            }
            fn visit_f64<E>(mut self, _: f64) -> Result<(), E> {
                self.note(NUMBER);
                Ok(())
            }
            fn visit_str<E>(mut self, _: &str) -> Result<(), E> {
                self.note(STRING);
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
                self.note(OBJECT);
                while let Some(key) = map.next_key::<String>()? {
                    if self.depth >= MAX_DEPTH {
                        map.next_value::<de::IgnoredAny>()?;
                        continue;
                    }
                    let path = format!("{}/{}", self.path, key.replace('~', "~0").replace('/', "~1"));
                    let depth = self.depth + 1;
                    map.next_value_seed(self.at(path, depth))?;
                }
                Ok(())
            }
            fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
                self.note(ARRAY);
                let path = format!("{}/*", self.path);
                let depth = self.depth + 1;
                loop {
                    let more = if self.depth >= MAX_DEPTH {
                        seq.next_element::<de::IgnoredAny>()?.is_some()
                    } else {
                        seq.next_element_seed(self.at(path.clone(), depth))?.is_some()
                    };
                    if !more {
                        return Ok(());
                    }
                }
            }
        }
        let mut paths = BTreeMap::new();
        for record in records {
            let mut deserializer = serde_json::Deserializer::from_str(record);
            Walker {
                paths: &mut paths,
                path: String::new(),
                depth: 0,
            }
            .deserialize(&mut deserializer)
            .unwrap();
        }
        paths
    }

    #[test]
    fn the_scanning_walk_matches_serde() {
        let deep = format!("{}1{}", "{\"d\": [".repeat(6), "]}".repeat(6));
        let many: String = format!(
            "{{{}}}",
            (0..2_100)
                .map(|i| format!("\"k{i}\": {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let cases: Vec<Vec<&str>> = vec![
            vec![r#"{"id": 1, "a": {"b": "x"}, "tags": [1, 2.5], "n": null}"#],
            vec![r#" { "s" : "a\"b\\" , "t":true,"f" :false , "e": [] , "o": {} } "#],
            vec![r#"{"\u0069d": 1, "id": "x", "a/b": {"~c": [[1], [2.0e3]]}, "\/": -0}"#],
            vec![
                r#"{"big": 18446744073709551615, "bigger": 18446744073709551616, "neg": -9223372036854775808, "negger": -9223372036854775809, "x": 1E2}"#,
            ],
            vec![r#"[{"a": 1}, {"b": [null, "s", {"c": true}]}]"#, r#""scalar""#, "17"],
            vec![
                r#"{"a": 1, "b": 2}"#,
                r#"{"b": "x", "a": null, "c": {"d": 1}}"#,
                r#"{"c": 5}"#,
            ],
            vec![deep.as_str()],
            vec![r#"{"x": {"a": 1}}"#, many.as_str(), r#"{"x": {"b": 1}, "k5": "s"}"#],
            vec![r#"{"ü": "é", "日本": [1.5, -2]}"#],
        ];
        for records in cases {
            let mut tracker = SchemaTracker::default();
            for record in &records {
                tracker.observe(serde_json::from_str(record).unwrap());
            }
            assert_eq!(tracker.paths(), reference(&records), "{records:?}");
        }
    }

    fn tracker(records: &[&str]) -> SchemaTracker {
        let mut tracker = SchemaTracker::default();
        for record in records {
            tracker.observe(serde_json::from_str(record).unwrap());
        }
        tracker
    }

    #[test]
    fn tracks_nested_paths_and_types() {
        let tracker = tracker(&[r#"{"id": 1, "a": {"b": "x"}, "tags": [1, 2.5], "n": null}"#]);
        let paths = tracker.paths();
        let paths: Vec<(&str, Vec<String>)> = paths.iter().map(|(p, b)| (p.as_str(), type_names(*b))).collect();
        assert_eq!(
            paths,
            [
                ("/a", vec!["object".to_owned()]),
                ("/a/b", vec!["string".to_owned()]),
                ("/id", vec!["integer".to_owned()]),
                ("/n", vec!["null".to_owned()]),
                ("/tags", vec!["array".to_owned()]),
                ("/tags/*", vec!["integer".to_owned(), "number".to_owned()]),
            ]
        );
    }

    #[test]
    fn classifies_changes_across_runs() {
        let (first, state) = compare(
            None,
            &tracker(&[r#"{"id": 1, "price": 1, "code": "a", "gone": true}"#]),
            "s",
            "r1",
        );
        assert!(first.is_empty(), "the first run only records");
        let (changes, _) = compare(
            Some(&state),
            &tracker(&[r#"{"id": 1, "price": 1.5, "code": 7, "new": "x"}"#]),
            "s",
            "r2",
        );
        let summary: Vec<(&str, &str, bool)> = changes
            .iter()
            .map(|c| (c.path.as_str(), c.change.as_str(), c.breaking))
            .collect();
        assert_eq!(
            summary,
            [
                ("/gone", "removed", true),
                ("/code", "type_changed", true),
                ("/new", "added", false),
                ("/price", "widened", false),
            ]
        );
    }
}
