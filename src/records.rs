//! Finding records and fields in a response without re-encoding anything: every record is
//! a byte range of the body exactly as the source sent it.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

pub mod format;
pub mod spilled;

/// Why a page's records could not be read.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum RecordsError {
    #[error("response is not valid JSON: {0}")]
    NotJson(String),
    /// The JSON ends before it is complete: the body was cut short on the way.
    #[error("response JSON is cut short: {0}")]
    Truncated(String),
    /// A csv, tsv or xml body that cannot be read on (`streams[].format`).
    #[error("{0}")]
    Rows(String),
    #[error("records_path `{0}` is not in the response")]
    PathMissing(String),
    /// A member on the way to the records appears twice: which one is meant is ambiguous.
    #[error("member `{0}` of records_path appears more than once in the response; which one is meant is ambiguous")]
    RepeatedMember(String),
    #[error("records_path `{pointer}` points at {found}, not an array")]
    NotAnArray { pointer: String, found: &'static str },
    #[error("records_path `{pointer}` points at {found}, not {expected}")]
    WrongKind {
        pointer: String,
        found: &'static str,
        expected: &'static str,
    },
}

/// The kind of JSON value a raw text holds, from its first byte.
pub fn kind(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

impl RecordsError {
    /// Whether fetching the page again could help: only for a body cut short. A body that
    /// is not JSON (an HTML login page with status 200) or lacks `records_path` is the
    /// same on every fetch.
    pub fn retryable(&self) -> bool {
        matches!(self, RecordsError::Truncated(_))
    }
}

/// Parses `body` as JSON, checking that it is valid.
pub fn parse(body: &[u8]) -> Result<&RawValue, RecordsError> {
    let text = std::str::from_utf8(body).map_err(|error| RecordsError::NotJson(error.to_string()))?;
    serde_json::from_str::<&RawValue>(text).map_err(|error| {
        if error.is_eof() {
            RecordsError::Truncated(error.to_string())
        } else {
            RecordsError::NotJson(error.to_string())
        }
    })
}

/// The records at `records_path` of a parsed document, borrowed from its text.
///
/// `records_path` is a JSON pointer to the array of records (`""`: the document is the
/// array). Two final segments serve APIs that answer without an array, read like paths in
/// a file system:
///
/// - `/*`: each entry of the object (or array) before it whose value is an object is a
///   record, in order; other entries are skipped. Omnidesk keys records by position:
///   `{"0": {"case": ..}, "1": {"case": ..}, "total_count": 2}` with `records_path: /*`.
/// - `/.`: the object before it is the one record (Open Exchange Rates' `latest.json`
///   with `records_path: /.`).
pub fn records_at<'a>(document: &'a RawValue, records_path: &str) -> Result<Vec<&'a RawValue>, RecordsError> {
    records_and_place(document, records_path).map(|(items, _)| items)
}

/// The records at `records_path`, and where the array holding them lies when it is one.
///
/// A plain pointer's array is found by scanning up to its start and read in one pass,
/// instead of being scanned to its end, validated and read.
fn records_and_place<'a>(
    document: &'a RawValue,
    records_path: &str,
) -> Result<(Vec<&'a RawValue>, Skip), RecordsError> {
    if let Some(parent) = records_path.strip_suffix("/*") {
        let container = lookup_required(document, parent, records_path)?;
        let records = match container.get().as_bytes().first() {
            Some(b'{') => members(container).into_iter().map(|(_, value)| value).collect(),
            Some(b'[') => elements(container),
            _ => {
                return Err(RecordsError::WrongKind {
                    pointer: records_path.to_owned(),
                    found: kind(container.get()),
                    expected: "an object or an array",
                });
            }
        };
        let objects = records
            .into_iter()
            .filter(|value| value.get().starts_with('{'))
            .collect();
        return Ok((objects, None));
    }
    if let Some(parent) = records_path.strip_suffix("/.") {
        let record = lookup_required(document, parent, records_path)?;
        return if record.get().starts_with('{') {
            Ok((vec![record], None))
        } else {
            Err(RecordsError::WrongKind {
                pointer: records_path.to_owned(),
                found: kind(record.get()),
                expected: "an object",
            })
        };
    }
    let text = match scan::open_lookup(document.get(), records_path) {
        Some(scan::Open::At(start)) => &document.get()[start..],
        Some(scan::Open::Missing) => return Err(RecordsError::PathMissing(records_path.to_owned())),
        // An array index or an escaped name on the way: resolved by parsing.
        None => lookup_required(document, records_path, records_path)?.get(),
    };
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Vec<&'a RawValue>>();
    match stream.next() {
        Some(Ok(items)) => Ok((items, Some((text.as_ptr() as usize, stream.byte_offset())))),
        _ => Err(RecordsError::NotAnArray {
            pointer: records_path.to_owned(),
            found: kind(text),
        }),
    }
}

/// A page's validated document, its last record, and where its records array lies: later
/// lookups (the next cursor, a total, a stop flag) step over the array instead of scanning
/// it again.
#[derive(Clone, Copy, Debug)]
pub struct Document<'a> {
    raw: &'a RawValue,
    records: Skip,
    /// `None` when the records were not read ([`Document::new`]).
    last_record: Option<Option<&'a RawValue>>,
}

impl<'a> Document<'a> {
    /// A document whose records have not been read.
    pub fn new(raw: &'a RawValue) -> Self {
        Self {
            raw,
            records: None,
            last_record: None,
        }
    }

    /// The document of a spilled page: its skeleton (the body with the records array
    /// emptied, [`spilled::Layout::skeleton`]) and its last record, read from the file.
    pub fn spilled(skeleton: &'a RawValue, last_record: Option<&'a RawValue>) -> Self {
        Self {
            raw: skeleton,
            records: None,
            last_record: Some(last_record),
        }
    }

    /// The last record at `records_path`: the one [`page_records`] read, or read now.
    pub fn last_record(&self, records_path: &str) -> Result<Option<&'a RawValue>, RecordsError> {
        match self.last_record {
            Some(last) => Ok(last),
            None => Ok(records_at(self.raw, records_path)?.last().copied()),
        }
    }

    /// [`lookup`], stepping over the records array.
    pub fn lookup(&self, pointer: &str) -> Result<Option<&'a RawValue>, String> {
        lookup_skipping(self.raw, pointer, self.records)
    }
}

/// A value already found in the body, as its first byte's address and its length: a scan
/// that reaches it jumps to its end.
type Skip = Option<(usize, usize)>;

/// The records at `records_path` of a parsed page ([`records_at`]), and the document that
/// knows where they are.
pub fn page_records<'a>(
    document: &'a RawValue,
    records_path: &str,
) -> Result<(Vec<&'a RawValue>, Document<'a>), RecordsError> {
    let (items, records) = records_and_place(document, records_path)?;
    let page = Document {
        raw: document,
        records,
        last_record: Some(items.last().copied()),
    };
    Ok((items, page))
}

fn lookup_required<'a>(
    document: &'a RawValue,
    pointer: &str,
    records_path: &str,
) -> Result<&'a RawValue, RecordsError> {
    lookup(document, pointer)
        .map_err(RecordsError::NotJson)?
        .ok_or_else(|| RecordsError::PathMissing(records_path.to_owned()))
}

/// The byte range of `raw` within `body`, which it must borrow from.
pub fn range_in(body: &[u8], raw: &RawValue) -> Range<usize> {
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    debug_assert!(start + raw.get().len() <= body.len());
    start..start + raw.get().len()
}

/// The byte ranges (within `body`) of the records at `records_path`.
pub fn record_ranges(body: &[u8], records_path: &str) -> Result<Vec<Range<usize>>, RecordsError> {
    let document = parse(body)?;
    Ok(records_at(document, records_path)?
        .into_iter()
        .map(|item| range_in(body, item))
        .collect())
}

/// Resolves a JSON pointer (RFC 6901) against raw JSON. `Ok(None)` when a step is missing.
pub fn lookup<'a>(value: &'a RawValue, pointer: &str) -> Result<Option<&'a RawValue>, String> {
    lookup_skipping(value, pointer, None)
}

fn lookup_skipping<'a>(mut value: &'a RawValue, pointer: &str, skip: Skip) -> Result<Option<&'a RawValue>, String> {
    if pointer.is_empty() {
        return Ok(Some(value));
    }
    let Some(tokens) = pointer.strip_prefix('/') else {
        return Err(format!("`{pointer}` is not a JSON pointer"));
    };
    for token in tokens.split('/') {
        let token: Cow<'_, str> = if token.contains('~') {
            Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(token)
        };
        let next = match value.get().as_bytes().first() {
            Some(b'{') => member(value, &token, skip),
            Some(b'[') => match token.parse::<usize>() {
                Ok(index) => {
                    let mut deserializer = serde_json::Deserializer::from_str(value.get());
                    FindIndex(index).deserialize(&mut deserializer)
                }
                Err(_) => return Ok(None),
            },
            _ => return Ok(None),
        }
        .map_err(|error| error.to_string())?;
        match next {
            Some(found) => value = found,
            None => return Ok(None),
        }
    }
    Ok(Some(value))
}

/// Looks up a record field given as a JSON pointer (`/a/b`) or a top-level name (`id`).
pub fn field<'a>(record: &'a RawValue, field: &str) -> Option<&'a RawValue> {
    if field.starts_with('/') {
        lookup(record, field).ok().flatten()
    } else if record.get().starts_with('{') {
        member(record, field, None).ok().flatten()
    } else {
        None
    }
}

/// The first member named `key` of a raw JSON object.
///
/// The object's text is valid JSON (every `RawValue` is), so the member is found by
/// scanning its text and stopping there, rather than by parsing the whole object as
/// [`FindKey`] does; this runs once or more per record. An escaped member name before the
/// match (it might spell `key`) hands the object to [`FindKey`], which decodes names.
fn member<'a>(object: &'a RawValue, key: &str, skip: Skip) -> Result<Option<&'a RawValue>, serde_json::Error> {
    match scan::member(object.get(), key, skip) {
        scan::Member::Found(text) => serde_json::from_str::<&RawValue>(text).map(Some),
        scan::Member::Missing => Ok(None),
        scan::Member::Unsure => {
            let mut deserializer = serde_json::Deserializer::from_str(object.get());
            FindKey(key).deserialize(&mut deserializer)
        }
    }
}

/// Scanning JSON text that is known to be valid: only strings and brackets need tracking.
pub(crate) mod scan {
    use memchr::memchr2;

    use super::Skip;

    /// What a scan for an object member found.
    pub enum Member<'a> {
        /// The member's value text.
        Found(&'a str),
        Missing,
        /// The scan cannot tell (an escaped member name, or text it does not expect).
        Unsure,
    }

    pub fn whitespace(bytes: &[u8], mut at: usize) -> usize {
        while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            at += 1;
        }
        at
    }

    /// The index just past the string whose opening quote is at `at`.
    pub fn string_end(bytes: &[u8], mut at: usize) -> usize {
        at += 1;
        // Most names and values are short: they end before a vectorised search pays off.
        let short = bytes.len().min(at + 24);
        while at < short {
            match bytes[at] {
                b'"' => return at + 1,
                b'\\' => at += 2,
                _ => at += 1,
            }
        }
        while let Some(offset) = bytes.get(at..).and_then(|rest| memchr2(b'"', b'\\', rest)) {
            at += offset;
            if bytes[at] == b'"' {
                return at + 1;
            }
            at += 2;
        }
        bytes.len()
    }

    /// The index just past the value that starts at `at`.
    pub fn value_end(bytes: &[u8], mut at: usize) -> usize {
        match bytes.get(at) {
            Some(b'"') => string_end(bytes, at),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(byte) = bytes.get(at) {
                    match byte {
                        b'"' => {
                            at = string_end(bytes, at);
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                return at + 1;
                            }
                        }
                        _ => {}
                    }
                    at += 1;
                }
                bytes.len()
            }
            _ => {
                while !matches!(
                    bytes.get(at),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    at += 1;
                }
                at
            }
        }
    }

    /// Where a value starts, found without reading to its end.
    pub enum Open {
        /// The index of its first byte.
        At(usize),
        Missing,
    }

    /// The first member named `key` (unescaped) of the object `text` (starting with `{`).
    pub fn member<'a>(text: &'a str, key: &str, skip: Skip) -> Member<'a> {
        match member_start(text, key, skip) {
            MemberAt::Found(start) => {
                let end = value_end(text.as_bytes(), start);
                match text.get(start..end) {
                    Some(value) if !value.is_empty() => Member::Found(value),
                    _ => Member::Unsure,
                }
            }
            MemberAt::Missing => Member::Missing,
            MemberAt::Unsure => Member::Unsure,
        }
    }

    /// Where `pointer` (object members only) starts in the valid JSON `text`, which may go
    /// on past it; `None` when scanning cannot tell (an array index, an escaped name).
    pub fn open_lookup(text: &str, pointer: &str) -> Option<Open> {
        let bytes = text.as_bytes();
        let mut at = whitespace(bytes, 0);
        if pointer.is_empty() {
            return Some(Open::At(at));
        }
        for token in pointer.strip_prefix('/')?.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            match bytes.get(at) {
                Some(b'{') => {}
                Some(b'[') | None => return None,
                Some(_) => return Some(Open::Missing),
            }
            match member_start(&text[at..], &token, None) {
                MemberAt::Found(start) => at += start,
                MemberAt::Missing => return Some(Open::Missing),
                MemberAt::Unsure => return None,
            }
        }
        Some(Open::At(at))
    }

    /// How many top-level members of the object `text` are named `key`, among those whose
    /// name starts at or before `until` (the text's length for all of them); `None` when a
    /// member name is escaped (it might spell `key`) or the text is unexpected.
    pub fn count_members(text: &str, key: &str, until: usize) -> Option<usize> {
        let bytes = text.as_bytes();
        if bytes.first() != Some(&b'{') {
            return None;
        }
        let mut count = 0;
        let mut at = whitespace(bytes, 1);
        while bytes.get(at) == Some(&b'"') {
            if at > until {
                return Some(count);
            }
            let name_end = string_end(bytes, at);
            let name = bytes.get(at + 1..name_end.saturating_sub(1))?;
            if name.contains(&b'\\') {
                return None;
            }
            if name == key.as_bytes() {
                count += 1;
            }
            let colon = whitespace(bytes, name_end);
            if bytes.get(colon) != Some(&b':') {
                return None;
            }
            let start = whitespace(bytes, colon + 1);
            at = whitespace(bytes, value_end(bytes, start));
            match bytes.get(at) {
                Some(b',') => at = whitespace(bytes, at + 1),
                Some(b'}') => return Some(count),
                _ => return None,
            }
        }
        (bytes.get(at) == Some(&b'}')).then_some(count)
    }

    enum MemberAt {
        Found(usize),
        Missing,
        Unsure,
    }

    /// The index where the value of the first member named `key` starts.
    fn member_start(text: &str, key: &str, skip: Skip) -> MemberAt {
        let bytes = text.as_bytes();
        if bytes.first() != Some(&b'{') {
            return MemberAt::Unsure;
        }
        let mut at = whitespace(bytes, 1);
        while bytes.get(at) == Some(&b'"') {
            let name_end = string_end(bytes, at);
            let Some(name) = bytes.get(at + 1..name_end.saturating_sub(1)) else {
                return MemberAt::Unsure;
            };
            if name.contains(&b'\\') {
                return MemberAt::Unsure;
            }
            let colon = whitespace(bytes, name_end);
            if bytes.get(colon) != Some(&b':') {
                return MemberAt::Unsure;
            }
            let start = whitespace(bytes, colon + 1);
            if name == key.as_bytes() {
                return if start < bytes.len() {
                    MemberAt::Found(start)
                } else {
                    MemberAt::Unsure
                };
            }
            let end = match skip {
                Some((address, len)) if address == bytes.as_ptr() as usize + start => start + len,
                _ => value_end(bytes, start),
            };
            at = whitespace(bytes, end);
            match bytes.get(at) {
                Some(b',') => at = whitespace(bytes, at + 1),
                Some(b'}') => return MemberAt::Missing,
                _ => return MemberAt::Unsure,
            }
        }
        if bytes.get(at) == Some(&b'}') {
            MemberAt::Missing
        } else {
            MemberAt::Unsure
        }
    }
}

/// The text of a scalar: strings unescaped, numbers and booleans as written; `None` for
/// null, objects and arrays.
pub fn scalar_text(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text).ok(),
        b'n' | b'{' | b'[' => None,
        _ => Some(text.to_owned()),
    }
}

/// A record's primary key as a string: the value's text for one field, JSON array text for
/// several. `None` when a key field is missing or null.
pub fn primary_key_text(record: &RawValue, primary_key: &[String]) -> Option<String> {
    match primary_key {
        [] => None,
        [single] => scalar_text(field(record, single)?),
        many => {
            let mut text = String::from("[");
            for (index, name) in many.iter().enumerate() {
                let value = field(record, name)?;
                if value.get() == "null" {
                    return None;
                }
                if index > 0 {
                    text.push(',');
                }
                text.push_str(value.get());
            }
            text.push(']');
            Some(text)
        }
    }
}

/// Whether the object `value` has more than one member named `key` (`{"id":1,"id":2}`).
/// JSON readers disagree on such an object (Landfall's lookups take the first, most
/// readers the last), so a record or page that repeats a key Landfall reads is ambiguous.
pub fn repeats_member(value: &RawValue, key: &str) -> bool {
    let text = value.get();
    if !text.starts_with('{') {
        return false;
    }
    let escaped = memchr::memchr(b'\\', text.as_bytes()).is_some();
    // Fast path: the name written plainly fewer than twice, and no escape that could spell it.
    let quoted = format!("\"{key}\"");
    let finder = memchr::memmem::Finder::new(quoted.as_bytes());
    let plain = finder.find_iter(text.as_bytes()).take(2).count();
    if plain < 2 && !escaped {
        return false;
    }
    // Without escapes, no member after the name's last plain occurrence can be named `key`:
    // the count stops there instead of reading the rest of the record.
    let last = if escaped {
        text.len()
    } else {
        memchr::memmem::rfind(text.as_bytes(), quoted.as_bytes()).unwrap_or(text.len())
    };
    match scan::count_members(text, key, last) {
        Some(count) => count > 1,
        // An escaped member name: decode the names.
        None => members(value).iter().filter(|(name, _)| name == key).count() > 1,
    }
}

/// The first member name along `pointer` (object steps of a JSON pointer, from `document`)
/// that its object repeats, if any.
pub fn repeated_on_path(document: &RawValue, pointer: &str) -> Option<String> {
    let pointer = pointer
        .strip_suffix("/*")
        .or_else(|| pointer.strip_suffix("/."))
        .unwrap_or(pointer);
    let mut current = document;
    let mut walked = String::new();
    let mut tokens = pointer.strip_prefix('/')?.split('/').peekable();
    while let Some(token) = tokens.next() {
        let name = token.replace("~1", "/").replace("~0", "~");
        if repeats_member(current, &name) {
            return Some(format!("{walked}/{token}"));
        }
        walked.push('/');
        walked.push_str(token);
        // The last step's value (the records array, the whole page) is never looked up:
        // finding it reads it to its end, once per page.
        if tokens.peek().is_some() {
            current = lookup(document, &walked).ok().flatten()?;
        }
    }
    None
}

/// The members of a raw JSON object, in order.
pub fn members(object: &RawValue) -> Vec<(String, &RawValue)> {
    serde_json::from_str::<Members<'_>>(object.get())
        .map(|members| members.0)
        .unwrap_or_default()
}

/// The elements of a raw JSON array, in order.
pub fn elements(array: &RawValue) -> Vec<&RawValue> {
    serde_json::from_str(array.get()).unwrap_or_default()
}

struct Members<'de>(Vec<(String, &'de RawValue)>);

impl<'de> de::Deserialize<'de> for Members<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    members.push((key.0.into_owned(), map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A map key that borrows from the input when it can.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(value.to_owned())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Finds one key of an object, skipping the other values without allocating them.
struct FindKey<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for FindKey<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindKey<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if found.is_none() && key.0 == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Finds one element of an array.
struct FindIndex(usize);

impl<'de> DeserializeSeed<'de> for FindIndex {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FindIndex {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut index = 0;
        let mut found = None;
        while found.is_none() {
            if index == self.0 {
                found = seq.next_element::<&'de RawValue>()?;
                if found.is_none() {
                    return Ok(None);
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(None);
            }
            index += 1;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"meta": {"next": "c2", "a/b": 1, "t~x": 2},
 "data": [ {"id": 1,  "name":"caf\u00e9", "big": 123456789012345678901234567890},
   {"id":"x2","nested":{"k":[10,20]}} ]}"#;

    #[test]
    fn ranges_are_exact_bytes() {
        let ranges = record_ranges(BODY.as_bytes(), "/data").unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            &BODY[ranges[0].clone()],
            r#"{"id": 1,  "name":"caf\u00e9", "big": 123456789012345678901234567890}"#
        );
        assert_eq!(&BODY[ranges[1].clone()], r#"{"id":"x2","nested":{"k":[10,20]}}"#);
    }

    #[test]
    fn document_as_array_and_errors() {
        assert_eq!(record_ranges(b"[1, 2]", "").unwrap().len(), 2);
        assert_eq!(
            record_ranges(BODY.as_bytes(), "/missing"),
            Err(RecordsError::PathMissing("/missing".into()))
        );
        assert!(matches!(
            record_ranges(BODY.as_bytes(), "/meta"),
            Err(RecordsError::NotAnArray { found: "an object", .. })
        ));
        assert!(matches!(
            record_ranges(b"{\"data\": [1,", "/data"),
            Err(RecordsError::Truncated(_))
        ));
        assert!(record_ranges(b"{\"data\": [1,", "/data").unwrap_err().retryable());
        let html = record_ranges(b"<html>log in</html>", "/data").unwrap_err();
        assert!(matches!(html, RecordsError::NotJson(_)) && !html.retryable());
        assert!(!record_ranges(BODY.as_bytes(), "/missing").unwrap_err().retryable());
    }

    #[test]
    fn records_keyed_by_position_and_single_object_documents() {
        // Omnidesk: records are the object-valued members; `total_count` is skipped.
        let omnidesk = br#"{"0": {"case": {"case_id": 1}}, "1": {"case": {"case_id": 2}}, "total_count": 2}"#;
        let ranges = record_ranges(omnidesk, "/*").unwrap();
        let texts: Vec<&[u8]> = ranges.iter().map(|range| &omnidesk[range.clone()]).collect();
        assert_eq!(
            texts,
            [&br#"{"case": {"case_id": 1}}"#[..], &br#"{"case": {"case_id": 2}}"#[..]]
        );
        assert_eq!(record_ranges(br#"{"total_count": 0}"#, "/*").unwrap().len(), 0);
        assert_eq!(
            record_ranges(br#"{"d": [{"a":1}, 2, {"b":3}]}"#, "/d/*").unwrap().len(),
            2
        );
        // Open Exchange Rates: the document is the one record, byte for byte.
        let rates = br#"{"timestamp": 1700000000, "base": "USD", "rates": {"EUR": 0.91}}"#;
        let ranges = record_ranges(rates, "/.").unwrap();
        assert_eq!(ranges.len(), 1);
        assert_eq!(ranges[0], 0..rates.len());
        assert_eq!(record_ranges(rates, "/rates/.").unwrap().len(), 1);
        assert!(matches!(
            record_ranges(rates, "/base/."),
            Err(RecordsError::WrongKind { found: "a string", .. })
        ));
        assert!(matches!(
            record_ranges(rates, "/timestamp/*"),
            Err(RecordsError::WrongKind { found: "a number", .. })
        ));
        assert_eq!(
            record_ranges(rates, "/missing/*"),
            Err(RecordsError::PathMissing("/missing/*".into()))
        );
    }

    /// Finding the records by their start, and lookups that step over them, give what
    /// the full scans give.
    #[test]
    fn page_records_match_records_at() {
        let documents = [
            BODY,
            r#"[{"id": 1}, {"id": 2}]"#,
            r#"{"data": [], "meta": {"next": null}}"#,
            r#"{"a": {"b/c": [{"id": 1}], "n": 1}, "next": "x"}"#,
            r#"{"\u0064ata": [{"id": 1}], "data": [{"id": 2}], "next": "y"}"#,
            r#"{"list": [{"items": [{"id": 3}]}], "next": 1}"#,
            r#"{"data": {"id": 1}, "next": 2}"#,
            r#"{"data": "text", "total": 5}"#,
            r#"{"data": [1, "two", [3], {"four": 4}]  ,  "meta": {"next": "z"}}"#,
        ];
        let paths = [
            "",
            "/data",
            "/a/b~1c",
            "/list/0/items",
            "/missing",
            "/meta",
            "/data/x",
            "/next",
        ];
        let pointers = ["/meta/next", "/next", "/total", "/data", "/a/n", "/nope"];
        for text in documents {
            let document = parse(text.as_bytes()).unwrap();
            for path in paths {
                let expected =
                    records_at(document, path).map(|items| items.iter().map(|item| item.get()).collect::<Vec<_>>());
                let found = page_records(document, path);
                let texts = found
                    .as_ref()
                    .map(|(items, _)| items.iter().map(|item| item.get()).collect::<Vec<_>>())
                    .map_err(Clone::clone);
                assert_eq!(texts, expected, "{path} in {text}");
                if let Ok((_, page)) = found {
                    for pointer in pointers {
                        assert_eq!(
                            page.lookup(pointer).map(|value| value.map(RawValue::get)),
                            lookup(document, pointer).map(|value| value.map(RawValue::get)),
                            "{pointer} after {path} in {text}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pointers_with_escapes_and_indexes() {
        let document = parse(BODY.as_bytes()).unwrap();
        assert_eq!(lookup(document, "/meta/next").unwrap().unwrap().get(), "\"c2\"");
        assert_eq!(lookup(document, "/meta/a~1b").unwrap().unwrap().get(), "1");
        assert_eq!(lookup(document, "/meta/t~0x").unwrap().unwrap().get(), "2");
        assert_eq!(lookup(document, "/data/1/nested/k/1").unwrap().unwrap().get(), "20");
        assert!(lookup(document, "/data/5").unwrap().is_none());
    }

    /// Every field of tricky records, found by scanning, equals what parsing finds.
    #[test]
    fn scanned_members_match_parsed_members() {
        let records = [
            r#"{"id":1,"b":"x"}"#,
            r#"{ "id" : 1 , "b" : "x" }"#,
            "{\n  \"a\": {\"id\": 9, \"s\": \"}]\\\"{\"},\n  \"id\":\t\"q\\\"\\\\\" ,\"z\":[1,[2,{\"id\":3}]],\"n\":null}",
            r#"{"s":"a\\","id":-1.5e3,"t":true,"f":false}"#,
            r#"{"\u0069d":1,"id":2}"#,
            r#"{"id":1,"id":2}"#,
            r#"{"x":"\u00e9\"","y":[],"w":{},"id":[1,"]"]}"#,
            r#"{}"#,
            r#"{"only":{"id":1}}"#,
        ];
        for text in records {
            let record: &RawValue = serde_json::from_str(text).unwrap();
            for key in [
                "id", "b", "a", "s", "z", "n", "t", "f", "x", "y", "w", "only", "missing", r"\u0069d",
            ] {
                let mut deserializer = serde_json::Deserializer::from_str(record.get());
                let parsed = FindKey(key).deserialize(&mut deserializer).unwrap().map(RawValue::get);
                assert_eq!(field(record, key).map(RawValue::get), parsed, "{key} in {text}");
            }
        }
        let escaped: &RawValue = serde_json::from_str(r#"{"\u0069d":1,"id":2}"#).unwrap();
        assert_eq!(
            field(escaped, "id").unwrap().get(),
            "1",
            "an escaped name counts as spelled"
        );
    }

    #[test]
    fn keys_and_scalars() {
        let document = parse(BODY.as_bytes()).unwrap();
        let first = lookup(document, "/data/0").unwrap().unwrap();
        assert_eq!(primary_key_text(first, &["id".into()]).as_deref(), Some("1"));
        assert_eq!(
            primary_key_text(first, &["big".into()]).as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(scalar_text(field(first, "name").unwrap()).as_deref(), Some("café"));
        assert_eq!(
            primary_key_text(first, &["id".into(), "name".into()]).as_deref(),
            Some(r#"[1,"caf\u00e9"]"#)
        );
        assert_eq!(primary_key_text(first, &["nope".into()]), None);
    }

    #[test]
    fn repeated_members_are_found_whatever_the_escapes() {
        let raw = |text: &'static str| serde_json::from_str::<&RawValue>(text).unwrap();
        assert!(repeats_member(raw(r#"{"id":1,"id":2}"#), "id"));
        assert!(repeats_member(raw(r#"{"id":1,"x":"\"id\"","i\u0064":2}"#), "id"));
        assert!(!repeats_member(raw(r#"{"id":1,"x":{"id":2},"y":"\"id\""}"#), "id"));
        assert!(!repeats_member(raw(r#"{"id":1,"note":"a\nb"}"#), "id"));
        assert!(!repeats_member(raw(r#"[{"id":1},{"id":2}]"#), "id"));
        // The count stops after the name's last plain occurrence, not before.
        assert!(!repeats_member(raw(r#"{"id":1,"c":{"id":2},"items":[{"a":1}]}"#), "id"));
        assert!(repeats_member(raw(r#"{"id":1,"c":{"id":2},"n":[1],"id" :3}"#), "id"));
        assert!(repeats_member(
            raw(r#"{"c":{"id":2},"id":1,"x":[{"y":1}],"id":3,"z":{}}"#),
            "id"
        ));
        let two_levels = raw(r#"{"a":{"b":[],"b":[1]},"a":{"b":[2]}}"#);
        assert_eq!(repeated_on_path(two_levels, "/a/b").as_deref(), Some("/a"));
        let inner = raw(r#"{"a":{"b":[],"b":[1]}}"#);
        assert_eq!(repeated_on_path(inner, "/a/b").as_deref(), Some("/a/b"));
        let page = raw(r#"{"data":[{"id":1}],"meta":{"data":[]},"data":[{"id":2}]}"#);
        assert_eq!(repeated_on_path(page, "/data").as_deref(), Some("/data"));
        let nested = raw(r#"{"result":{"items":[],"items":[1]},"items":0}"#);
        assert_eq!(
            repeated_on_path(nested, "/result/items").as_deref(),
            Some("/result/items")
        );
        assert_eq!(repeated_on_path(raw(r#"{"data":[{"id":1,"id":2}]}"#), "/data"), None);
        assert_eq!(repeated_on_path(page, ""), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// No body, however malformed, makes the records scanner panic; every record found
        /// is a range of the body that parses as JSON on its own.
        #[test]
        fn the_records_scanner_never_panics(body in arbitrary::body()) {
            let Ok(document) = parse(body.as_bytes()) else { return Ok(()) };
            for records_path in ["", "/data", "/data/*", "/data/.", "/*", "/.", "/a~1b/0", "/data/0", "/data/~0x"] {
                let _ = records_at(document, records_path);
                let _ = repeated_on_path(document, records_path);
                let _ = record_ranges(body.as_bytes(), records_path);
                let Ok((items, page)) = page_records(document, records_path) else { continue };
                for pointer in ["/next", "/total", "/data/0/id", "", "/a/b/c", "/x~1y"] {
                    let _ = page.lookup(pointer);
                }
                let _ = page.last_record(records_path);
                for record in items {
                    let range = range_in(body.as_bytes(), record);
                    proptest::prop_assert!(serde_json::from_slice::<&RawValue>(&body.as_bytes()[range]).is_ok());
                    for name in ["id", "next", "/id", "/a/0", "/data/0/id", "~", ""] {
                        let _ = field(record, name).map(scalar_text);
                    }
                    let _ = primary_key_text(record, &["id".to_owned()]);
                    let _ = repeats_member(record, "id");
                    let _ = primary_key_text(record, &["id".to_owned(), "next".to_owned()]);
                }
            }
        }

        /// The scan for repeated members (which stops after a name's last plain occurrence)
        /// agrees with decoding every member name.
        #[test]
        fn repeated_members_match_decoded_names(text in arbitrary::json()) {
            let Ok(value) = serde_json::from_str::<&RawValue>(&text) else { return Ok(()) };
            for key in ["id", "data", "next", "total", ""] {
                let decoded = value.get().starts_with('{')
                    && members(value).iter().filter(|(name, _)| name == key).count() > 1;
                proptest::prop_assert_eq!(repeats_member(value, key), decoded, "{} in {}", key, text);
            }
        }
    }
}

/// Arbitrary response bodies for property tests: JSON with big and odd numbers, escapes,
/// duplicate keys and deep nesting, JSON cut short, and text that is not JSON at all.
#[cfg(test)]
pub(crate) mod arbitrary {
    use proptest::prelude::*;

    /// A JSON text (possibly invalid where numbers are out of range).
    pub fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            any::<i64>().prop_map(|number| number.to_string()),
            any::<f64>().prop_map(|number| format!("{number:e}")),
            "-?[0-9]{1,30}(\\.[0-9]{0,5})?([eE][+-]?[0-9]{1,4})?",
            any::<String>().prop_map(|text| serde_json::to_string(&text).unwrap()),
            "\"([a-z]|\\\\[nt\"/]|\\\\u[0-9a-fA-F]{4}){0,6}\"",
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            let key = prop_oneof![
                Just("id".to_owned()),
                Just("data".to_owned()),
                Just("next".to_owned()),
                Just("total".to_owned()),
                "[a-z/~]{0,3}",
                Just("i\\u0064".to_owned()),
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec((key, inner), 0..6).prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(key, value)| format!("\"{key}\" : {value}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    /// A response body: JSON, a page of records, JSON cut short, or any text.
    pub fn body() -> impl Strategy<Value = String> {
        prop_oneof![
            json(),
            (json(), json()).prop_map(|(data, next)| format!(
                "{{\"data\": [{data}, {{\"id\": {next}}}], \"next\": {next}, \"total\": {data}}}"
            )),
            (json(), any::<prop::sample::Index>()).prop_map(|(text, index)| {
                let cut = index.index(text.len() + 1);
                text.get(..cut).unwrap_or_default().to_owned()
            }),
            ".*",
        ]
    }
}
