//! Schema drift: the field paths and JSON types a stream's records carry, kept in
//! `_state/{stream}.schema.json` and compared run to run.
//!
//! Paths are JSON pointers; array elements share the path segment `*`. Added fields and
//! widened types (integer to number, or a field becoming nullable) are not breaking.
//! Removed fields (present in the previous run, absent from this one) and changed or
//! narrowed types are breaking, and fail the stream when `on_breaking_drift: fail`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// The paths and types seen in this run.
#[derive(Debug, Default)]
pub struct SchemaTracker {
    paths: BTreeMap<String, u8>,
    path: String,
    pub records: u64,
}

impl SchemaTracker {
    /// Adds one record's fields.
    pub fn observe(&mut self, record: &RawValue) {
        self.records += 1;
        self.path.clear();
        let mut deserializer = serde_json::Deserializer::from_str(record.get());
        let _ = Walker {
            tracker: self,
            depth: 0,
        }
        .deserialize(&mut deserializer);
    }

    fn note(&mut self, bits: u8) {
        if self.path.is_empty() {
            return;
        }
        if let Some(seen) = self.paths.get_mut(self.path.as_str()) {
            *seen |= bits;
        } else if self.paths.len() < MAX_PATHS {
            self.paths.insert(self.path.clone(), bits);
        }
    }
}

struct Walker<'t> {
    tracker: &'t mut SchemaTracker,
    depth: usize,
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

    fn visit_unit<E>(self) -> Result<(), E> {
        self.tracker.note(NULL);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.tracker.note(NULL);
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.tracker.note(BOOLEAN);
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.tracker.note(INTEGER);
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.tracker.note(INTEGER);
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.tracker.note(NUMBER);
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.tracker.note(STRING);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.tracker.note(OBJECT);
        let base = self.tracker.path.len();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.depth >= MAX_DEPTH {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            self.tracker.path.push('/');
            if key.contains(['~', '/']) {
                self.tracker.path.push_str(&key.replace('~', "~0").replace('/', "~1"));
            } else {
                self.tracker.path.push_str(&key);
            }
            map.next_value_seed(Walker {
                tracker: &mut *self.tracker,
                depth: self.depth + 1,
            })?;
            self.tracker.path.truncate(base);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.tracker.note(ARRAY);
        let base = self.tracker.path.len();
        self.tracker.path.push_str("/*");
        loop {
            let more = if self.depth >= MAX_DEPTH {
                seq.next_element::<de::IgnoredAny>()?.is_some()
            } else {
                seq.next_element_seed(Walker {
                    tracker: &mut *self.tracker,
                    depth: self.depth + 1,
                })?
                .is_some()
            };
            if !more {
                break;
            }
        }
        self.tracker.path.truncate(base);
        Ok(())
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
    let previous_run = previous.map(|state| state.run_id.clone());
    if let Some(previous) = previous {
        for (path, known) in &previous.paths {
            let was_in_last_run = previous_run.as_deref() == Some(known.last_seen_run.as_str());
            if was_in_last_run && !current.paths.contains_key(path) {
                changes.push(change(path, "removed", type_bits(&known.types), 0, true));
            }
        }
    }
    for (path, &bits) in &current.paths {
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
        let paths: Vec<(&str, Vec<String>)> = tracker
            .paths
            .iter()
            .map(|(p, b)| (p.as_str(), type_names(*b)))
            .collect();
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
