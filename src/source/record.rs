//! A record as every source yields it ([`RecordMeta`]), and how its key, cursor, parent
//! fields and checks are read from a JSON record ([`RecordReader`]), the same way for every
//! source whose records are JSON (a page in memory, a spilled body, a database row
//! rendered as JSON).

use std::ops::Range;

use serde_json::value::RawValue;

use crate::config::{ParentConfig, StreamConfig};
use crate::cursor::{Cursor, CursorFormat};
use crate::quality::drift::SchemaTracker;
use crate::quality::validate::{RecordValidator, Violation};
use crate::records;
use crate::source::parents::ParentKey;

/// One record a source read: where its exact bytes are in its page's body, and what the
/// writer and the checkpoint need of it. Every source family yields these; nothing after
/// this point knows where the record came from.
#[derive(Debug)]
pub struct RecordMeta {
    /// The record's exact bytes: `page.body[range]`, never re-encoded.
    pub range: Range<usize>,
    /// The primary key as text (one value, or a JSON array of several).
    pub id: Option<String>,
    /// The cursor as the record holds it.
    pub cursor: Option<String>,
    /// The cursor parsed in the stream's format (`None` when it does not parse).
    pub cursor_value: Option<Cursor>,
    /// The fields a child stream needs of this (parent) record.
    pub parent: Option<ParentKey>,
    /// Set when the record fails validation: it goes to the dead letters.
    pub violation: Option<Violation>,
    /// For a csv, tsv or xml row: where the row's text as sent (`_raw`) is in the page's
    /// body; `range` then holds its parsed form (`_record`), which keys, cursors, checks
    /// and schema drift read.
    pub source_text: Option<Range<usize>>,
}

/// What the writer needs of each record, read the same way for pages in memory and pages
/// read from a spilled body.
pub struct RecordReader<'a> {
    pub(crate) stream: &'a StreamConfig,
    cursor: Option<(&'a str, &'a CursorFormat)>,
    parent_fields: Option<&'a [String]>,
    validator: &'a RecordValidator,
    /// The top-level names Landfall reads from each record: one of them twice in a record
    /// makes it ambiguous (readers disagree on which counts), and it goes to the dead letters.
    read_names: Vec<&'a str>,
}

impl<'a> RecordReader<'a> {
    pub fn new(
        stream: &'a StreamConfig,
        cursor: Option<(&'a str, &'a CursorFormat)>,
        parent_fields: Option<&'a [String]>,
        validator: &'a RecordValidator,
    ) -> Self {
        let read_names = stream
            .primary_key
            .iter()
            .map(String::as_str)
            .chain(cursor.map(|(field, _)| field))
            .filter(|name| !name.starts_with('/'))
            .collect();
        Self {
            stream,
            cursor,
            parent_fields,
            validator,
            read_names,
        }
    }

    /// The record `raw`, found at `range` of its page's body.
    pub fn meta(&self, raw: &RawValue, range: Range<usize>, schema: &mut SchemaTracker) -> RecordMeta {
        schema.observe(raw);
        let parent = self.parent_fields.and_then(|fields| {
            let values: Option<Vec<(String, String)>> = fields
                .iter()
                .map(|field| {
                    Some((
                        ParentConfig::placeholder(field),
                        records::scalar_text(records::field(raw, field)?)?,
                    ))
                })
                .collect();
            let values = values?;
            let key = match values.as_slice() {
                [(_, single)] => single.clone(),
                _ => serde_json::to_string(&values.iter().map(|(_, v)| v).collect::<Vec<_>>())
                    .expect("strings serialize"),
            };
            Some(ParentKey { key, values })
        });
        let id = records::primary_key_text(raw, &self.stream.primary_key);
        let text = self
            .cursor
            .and_then(|(field, _)| records::field(raw, field))
            .and_then(records::scalar_text);
        let cursor_value = self
            .cursor
            .zip(text.as_deref())
            .and_then(|((_, format), text)| format.parse(text).ok());
        let repeated = self.read_names.iter().find(|name| records::repeats_member(raw, name));
        RecordMeta {
            range,
            violation: match repeated {
                Some(name) => Some(Violation {
                    code: "VALIDATION_ERROR",
                    message: format!(
                        "member `{name}` appears more than once in the record; which one is meant is ambiguous"
                    ),
                    path: format!("/{name}"),
                }),
                None => self.validator.check(raw, id.is_some()),
            },
            id,
            cursor: text,
            cursor_value,
            parent,
            source_text: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_stream as stream;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_record_is_read_with_its_key_cursor_and_range() {
        let stream = stream("");
        let validator = RecordValidator::new(&stream).unwrap();
        let format = CursorFormat::Integer;
        let reader = RecordReader::new(&stream, Some(("seq", &format)), None, &validator);
        let mut schema = SchemaTracker::default();
        let record = reader.meta(raw(r#"{"id": 7, "seq": 42}"#), 3..24, &mut schema);
        assert_eq!(record.range, 3..24);
        assert_eq!(record.id.as_deref(), Some("7"));
        assert_eq!(record.cursor.as_deref(), Some("42"));
        assert_eq!(record.cursor_value, Some(Cursor::Integer(42)));
        assert!(record.violation.is_none());
        assert!(record.parent.is_none());
        assert_eq!(schema.records, 1);
    }

    #[test]
    fn a_cursor_that_does_not_parse_keeps_its_text_and_has_no_value() {
        let stream = stream("");
        let validator = RecordValidator::new(&stream).unwrap();
        let format = CursorFormat::Integer;
        let reader = RecordReader::new(&stream, Some(("seq", &format)), None, &validator);
        let record = reader.meta(raw(r#"{"id": 7, "seq": "soon"}"#), 0..1, &mut SchemaTracker::default());
        assert_eq!(record.cursor.as_deref(), Some("soon"));
        assert_eq!(record.cursor_value, None);
    }

    #[test]
    fn a_repeated_key_or_cursor_member_is_a_violation() {
        let stream = stream("");
        let validator = RecordValidator::new(&stream).unwrap();
        let format = CursorFormat::Integer;
        let reader = RecordReader::new(&stream, Some(("seq", &format)), None, &validator);
        for text in [r#"{"id": 1, "id": 2, "seq": 1}"#, r#"{"id": 1, "seq": 1, "seq": 2}"#] {
            let record = reader.meta(raw(text), 0..1, &mut SchemaTracker::default());
            let violation = record.violation.expect("ambiguous record");
            assert_eq!(violation.code, "VALIDATION_ERROR");
        }
    }

    #[test]
    fn a_record_without_its_primary_key_fails_validation() {
        let stream = stream("");
        let validator = RecordValidator::new(&stream).unwrap();
        let reader = RecordReader::new(&stream, None, None, &validator);
        let record = reader.meta(raw(r#"{"name": "x"}"#), 0..1, &mut SchemaTracker::default());
        assert_eq!(record.id, None);
        assert!(record.violation.is_some());
    }

    #[test]
    fn a_parent_record_carries_the_fields_its_children_need() {
        let stream = stream("");
        let validator = RecordValidator::new(&stream).unwrap();
        let one = ["id".to_owned()];
        let reader = RecordReader::new(&stream, None, Some(&one), &validator);
        let record = reader.meta(raw(r#"{"id": 7, "org": "a"}"#), 0..1, &mut SchemaTracker::default());
        let parent = record.parent.expect("parent fields");
        assert_eq!(parent.key, "7");
        assert_eq!(parent.values, [(ParentConfig::placeholder("id"), "7".to_owned())]);

        let two = ["id".to_owned(), "org".to_owned()];
        let reader = RecordReader::new(&stream, None, Some(&two), &validator);
        let record = reader.meta(raw(r#"{"id": 7, "org": "a"}"#), 0..1, &mut SchemaTracker::default());
        assert_eq!(record.parent.expect("parent fields").key, r#"["7","a"]"#);

        // A record without a field its children need is no parent.
        let record = reader.meta(raw(r#"{"id": 7}"#), 0..1, &mut SchemaTracker::default());
        assert!(record.parent.is_none());
    }
}
