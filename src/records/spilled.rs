//! Records of a body spilled to a file, read one at a time.
//!
//! A spilled page is read in two passes, each holding one record at a time:
//!
//! 1. [`locate`] walks `records_path` to the records array, checks each record and the rest
//!    of the document (the *skeleton*: the body with the array emptied, `[]`) with
//!    serde_json, and reports what pagination needs (the record count, the records digest,
//!    the last record).
//! 2. [`Records`] reads the array again from its start, one record's raw text at a time.
//!
//! Each record being valid JSON, the skeleton being valid JSON and the separators between
//! records being checked here makes the whole body valid JSON, so a page read this way is
//! accepted exactly when the buffered path accepts it. Whatever this reader does not serve
//! (a body that is not valid JSON, an escaped member name or an array index on the way, a
//! path that is missing or not an array) is reported as [`Located::Unserved`]: the caller
//! then reads the body in memory and gets the buffered path's answer and error.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

use memchr::memchr2;
use serde_json::value::RawValue;

/// Reader buffer size.
const BUFFER: usize = 256 << 10;

/// Member names longer than this are never a `records_path` step: they are skipped unread.
const LONGEST_NAME: usize = 4096;

/// What [`locate`] found.
pub enum Located {
    Served(Layout),
    /// The file reader does not serve this body: read it in memory instead.
    Unserved,
}

/// Where the records of a spilled body lie, and what pagination reads of the page.
pub struct Layout {
    /// The offset of the records array's `[`.
    pub array_start: u64,
    /// The body with the records array emptied (`[]`): every other member, for pagination
    /// lookups. Valid JSON.
    pub skeleton: Box<RawValue>,
    /// Records in the array.
    pub records: usize,
    /// The last record, as sent.
    pub last: Option<Box<RawValue>>,
}

/// Walks `file` (a body of `len` bytes, valid UTF-8) to the array at `records_path` (a
/// JSON pointer of object members, or `""`), calling `each` with every record's text.
pub fn locate(
    file: &mut std::fs::File,
    len: u64,
    records_path: &str,
    mut each: impl FnMut(&[u8]),
) -> io::Result<Located> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = Reader::new(&mut *file);
    let Some(tokens) = steps(records_path) else {
        return Ok(Located::Unserved);
    };
    if !reader.walk(&tokens)? || reader.peek()? != Some(b'[') {
        return Ok(Located::Unserved);
    }
    let array_start = reader.position;
    let mut elements = Elements::open(reader)?;
    let mut record = Vec::new();
    let mut last = Vec::new();
    let mut records = 0;
    loop {
        match elements.next_into(&mut record)? {
            Next::Record => {}
            Next::End => break,
            Next::Malformed => return Ok(Located::Unserved),
        }
        // Read as the buffered path reads records (a number out of range is kept as sent).
        if serde_json::from_slice::<&RawValue>(&record).is_err() {
            return Ok(Located::Unserved);
        }
        each(&record);
        records += 1;
        std::mem::swap(&mut record, &mut last);
    }
    let array_end = elements.reader.position;
    let mut skeleton = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    (&mut *file).take(array_start).read_to_end(&mut skeleton)?;
    skeleton.extend_from_slice(b"[]");
    file.seek(SeekFrom::Start(array_end))?;
    (&mut *file)
        .take(len.saturating_sub(array_end))
        .read_to_end(&mut skeleton)?;
    let Ok(skeleton) = String::from_utf8(skeleton) else {
        return Ok(Located::Unserved);
    };
    let Ok(skeleton) = serde_json::from_str::<Box<RawValue>>(&skeleton) else {
        return Ok(Located::Unserved);
    };
    let last = if records == 0 {
        None
    } else {
        match String::from_utf8(last)
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
        {
            Some(last) => Some(last),
            None => return Ok(Located::Unserved),
        }
    };
    Ok(Located::Served(Layout {
        array_start,
        skeleton,
        records,
        last,
    }))
}

/// Whether a spilled body of `len` bytes is one JSON value, read from the file in a fixed
/// buffer: the error the buffered path would give ([`super::parse`]) for a body that is
/// not, so such a body is never read into memory. Bytes that are not UTF-8 inside strings
/// are not an error here (the buffered path reads them replaced).
pub fn check_json(file: &mut std::fs::File, len: u64) -> io::Result<Result<(), super::RecordsError>> {
    use serde::Deserialize;
    file.seek(SeekFrom::Start(0))?;
    let reader = BufReader::with_capacity(BUFFER, (&mut *file).take(len));
    let mut document = serde_json::Deserializer::from_reader(reader);
    let checked = serde::de::IgnoredAny::deserialize(&mut document).and_then(|_| document.end());
    Ok(match checked {
        Ok(()) => Ok(()),
        Err(error) if error.is_io() => return Err(io::Error::other(error)),
        Err(error) if error.is_eof() => Err(super::RecordsError::Truncated(error.to_string())),
        Err(error) => Err(super::RecordsError::NotJson(error.to_string())),
    })
}

/// The records of a spilled body, from the array [`locate`] found.
pub struct Records<R: Read> {
    elements: Elements<R>,
}

impl<R: Read + Seek> Records<R> {
    pub fn open(mut file: R, layout: &Layout) -> io::Result<Self> {
        file.seek(SeekFrom::Start(layout.array_start))?;
        let mut reader = Reader::new(file);
        reader.position = layout.array_start;
        Ok(Self {
            elements: Elements::open(reader)?,
        })
    }

    /// Reads the next record's text into `record` (cleared first); `false` after the last.
    pub fn next_into(&mut self, record: &mut Vec<u8>) -> io::Result<bool> {
        match self.elements.next_into(record)? {
            Next::Record => Ok(true),
            Next::End => Ok(false),
            Next::Malformed => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the spilled body changed between reads",
            )),
        }
    }
}

/// The steps of a plain JSON pointer of member names; `None` when it has a final `/*` or
/// `/.`, which the buffered path serves.
fn steps(records_path: &str) -> Option<Vec<Vec<u8>>> {
    if records_path.is_empty() {
        return Some(Vec::new());
    }
    if records_path.ends_with("/*") || records_path.ends_with("/.") {
        return None;
    }
    Some(
        records_path
            .strip_prefix('/')?
            .split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~").into_bytes())
            .collect(),
    )
}

enum Next {
    Record,
    End,
    /// Not the JSON this reader expects.
    Malformed,
}

/// The elements of an array, read one at a time.
struct Elements<R: Read> {
    reader: Reader<R>,
    first: bool,
    done: bool,
}

impl<R: Read> Elements<R> {
    /// Starts at the array's `[`.
    fn open(mut reader: Reader<R>) -> io::Result<Self> {
        reader.bump()?;
        Ok(Self {
            reader,
            first: true,
            done: false,
        })
    }

    fn next_into(&mut self, out: &mut Vec<u8>) -> io::Result<Next> {
        out.clear();
        if self.done {
            return Ok(Next::End);
        }
        self.reader.whitespace()?;
        let at = self.reader.peek()?;
        if at == Some(b']') && self.first {
            self.reader.bump()?;
            self.done = true;
            return Ok(Next::End);
        }
        if !self.first {
            match at {
                Some(b',') => {
                    self.reader.bump()?;
                    self.reader.whitespace()?;
                }
                Some(b']') => {
                    self.reader.bump()?;
                    self.done = true;
                    return Ok(Next::End);
                }
                _ => return Ok(Next::Malformed),
            }
        }
        self.first = false;
        if !self.reader.value(Some(out))? || out.is_empty() {
            return Ok(Next::Malformed);
        }
        Ok(Next::Record)
    }
}

/// A byte reader over valid JSON that knows its offset.
struct Reader<R: Read> {
    inner: BufReader<R>,
    position: u64,
}

impl<R: Read> Reader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(BUFFER, inner),
            position: 0,
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        Ok(self.inner.fill_buf()?.first().copied())
    }

    fn bump(&mut self) -> io::Result<Option<u8>> {
        let byte = self.peek()?;
        if byte.is_some() {
            self.inner.consume(1);
            self.position += 1;
        }
        Ok(byte)
    }

    fn take(&mut self, count: usize, out: &mut Option<&mut Vec<u8>>) {
        if let Some(out) = out {
            out.extend_from_slice(&self.inner.buffer()[..count]);
        }
        self.inner.consume(count);
        self.position += count as u64;
    }

    fn whitespace(&mut self) -> io::Result<()> {
        while matches!(self.peek()?, Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump()?;
        }
        Ok(())
    }

    /// Reads the string whose `"` is next; `false` at the end of the input.
    fn string(&mut self, out: &mut Option<&mut Vec<u8>>) -> io::Result<bool> {
        self.take_byte(out)?;
        loop {
            let buffer = self.inner.fill_buf()?;
            if buffer.is_empty() {
                return Ok(false);
            }
            match memchr2(b'"', b'\\', buffer) {
                None => {
                    let all = buffer.len();
                    self.take(all, out);
                }
                Some(at) => {
                    let quote = buffer[at] == b'"';
                    self.take(at + 1, out);
                    if quote {
                        return Ok(true);
                    }
                    if !self.take_byte(out)? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    fn take_byte(&mut self, out: &mut Option<&mut Vec<u8>>) -> io::Result<bool> {
        match self.bump()? {
            Some(byte) => {
                if let Some(out) = out {
                    out.push(byte);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads the value that starts next (copied into `out` when given); `false` when the
    /// input ends inside it.
    fn value(&mut self, mut out: Option<&mut Vec<u8>>) -> io::Result<bool> {
        match self.peek()? {
            None => Ok(false),
            Some(b'"') => self.string(&mut out),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    let buffer = self.inner.fill_buf()?;
                    if buffer.is_empty() {
                        return Ok(false);
                    }
                    // Up to the next byte that matters.
                    let plain = buffer
                        .iter()
                        .position(|byte| matches!(byte, b'"' | b'{' | b'[' | b'}' | b']'))
                        .unwrap_or(buffer.len());
                    if plain > 0 {
                        self.take(plain, &mut out);
                        continue;
                    }
                    match buffer[0] {
                        b'"' => {
                            if !self.string(&mut out)? {
                                return Ok(false);
                            }
                        }
                        b'{' | b'[' => {
                            depth += 1;
                            self.take(1, &mut out);
                        }
                        _ => {
                            self.take(1, &mut out);
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                return Ok(true);
                            }
                        }
                    }
                }
            }
            // A number or a literal: up to the next delimiter or the end of the input.
            Some(_) => loop {
                let buffer = self.inner.fill_buf()?;
                if buffer.is_empty() {
                    return Ok(true);
                }
                let all = buffer.len();
                match buffer
                    .iter()
                    .position(|byte| matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    Some(end) => {
                        self.take(end, &mut out);
                        return Ok(true);
                    }
                    None => self.take(all, &mut out),
                }
            },
        }
    }

    /// Walks the member names `tokens` from the value that starts next (first match, as the
    /// buffered path's scan). `false` when the walk cannot be served.
    fn walk(&mut self, tokens: &[Vec<u8>]) -> io::Result<bool> {
        self.whitespace()?;
        for token in tokens {
            if self.peek()? != Some(b'{') {
                return Ok(false);
            }
            self.bump()?;
            loop {
                self.whitespace()?;
                if self.peek()? != Some(b'"') {
                    return Ok(false);
                }
                let mut name = Vec::new();
                if !self.name(&mut name)? {
                    return Ok(false);
                }
                if name.contains(&b'\\') {
                    // An escaped name might spell the token.
                    return Ok(false);
                }
                self.whitespace()?;
                if self.bump()? != Some(b':') {
                    return Ok(false);
                }
                self.whitespace()?;
                if name.len() >= 2 && name[1..name.len() - 1] == token[..] {
                    break;
                }
                if !self.value(None)? {
                    return Ok(false);
                }
                self.whitespace()?;
                if self.bump()? != Some(b',') {
                    // The end of the object: the member is missing.
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Reads a member name (with its quotes) into `name`, or past it unread when it is
    /// longer than any step could be.
    fn name(&mut self, name: &mut Vec<u8>) -> io::Result<bool> {
        let mut scratch = Vec::new();
        if !self.string(&mut Some(&mut scratch))? {
            return Ok(false);
        }
        if scratch.len() <= LONGEST_NAME + 2 {
            *name = scratch;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// What the file reader finds in `body` at `records_path`: the records' texts, the
    /// skeleton and the last record; `None` when it does not serve the body.
    fn read(body: &str, records_path: &str) -> Option<(Vec<String>, String, Option<String>)> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(body.as_bytes()).unwrap();
        let mut seen = Vec::new();
        let located = locate(&mut file, body.len() as u64, records_path, |record| {
            seen.push(String::from_utf8(record.to_vec()).unwrap())
        })
        .unwrap();
        let Located::Served(layout) = located else { return None };
        let mut records = Records::open(&mut file, &layout).unwrap();
        let mut texts = Vec::new();
        let mut record = Vec::new();
        while records.next_into(&mut record).unwrap() {
            texts.push(String::from_utf8(record.clone()).unwrap());
        }
        assert_eq!(texts, seen, "both passes read the same records");
        assert_eq!(layout.records, texts.len());
        Some((
            texts,
            layout.skeleton.get().to_owned(),
            layout.last.map(|last| last.get().to_owned()),
        ))
    }

    /// The file check gives the buffered path's answer, error kind included.
    #[test]
    fn check_json_agrees_with_the_buffered_parse() {
        let bodies: [&[u8]; 9] = [
            b"{\"data\": [1, 2]}",
            b"  [] \n",
            b"<html>login</html>",
            b"{\"data\": [1, 2",
            b"{\"data\": [1]} trailing",
            b"",
            b"{\"a\": \"\xff\xfe\"}",
            b"{\"a\": 1e999999}",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        ];
        for body in bodies {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(body).unwrap();
            let checked = check_json(&mut file, body.len() as u64).unwrap();
            let buffered = super::super::parse(&String::from_utf8_lossy(body).into_owned().into_bytes()).map(|_| ());
            let kind = |result: &Result<(), super::super::RecordsError>| match result {
                Ok(()) => "ok",
                Err(super::super::RecordsError::Truncated(_)) => "truncated",
                Err(_) => "not json",
            };
            assert_eq!(kind(&checked), kind(&buffered), "{}", String::from_utf8_lossy(body));
        }
    }

    /// Where the file reader serves a body, it finds exactly the records the in-memory
    /// path finds, and a skeleton whose other members are the body's.
    fn same_as_in_memory(body: &str, records_path: &str) -> bool {
        let Some((texts, skeleton, last)) = read(body, records_path) else {
            return false;
        };
        let document = super::super::parse(body.as_bytes()).expect("a served body is valid JSON");
        let (items, page) = super::super::page_records(document, records_path).expect("its records are found");
        let expected: Vec<&str> = items.iter().map(|item| item.get()).collect();
        assert_eq!(texts, expected, "{records_path} in {body}");
        assert_eq!(
            last.as_deref(),
            page.last_record(records_path).unwrap().map(RawValue::get)
        );
        let skeleton = super::super::parse(skeleton.as_bytes()).expect("the skeleton is valid JSON");
        for pointer in ["/next", "/meta/next", "/total", "/meta"] {
            if !records_path.is_empty() && !pointer.starts_with(&format!("{records_path}/")) && pointer != records_path
            {
                assert_eq!(
                    super::super::lookup(skeleton, pointer).unwrap().map(RawValue::get),
                    super::super::lookup(document, pointer).unwrap().map(RawValue::get),
                    "{pointer} in {body}"
                );
            }
        }
        true
    }

    #[test]
    fn records_and_skeleton_match_the_in_memory_path() {
        let served = [
            (
                r#"{"data": [ {"id": 1, "s": "]}\"{["}, 2 , "x", [3,[4]], null, -1.5e400 ], "next": "c"}"#,
                "/data",
            ),
            (r#"[{"id":1},{"id":2}]"#, ""),
            ("  [ ]  ", ""),
            (
                r#"{"meta": {"next": 1, "total": 2}, "a": {"b/c": {"d": [{"x": "\u00e9"}]}}}"#,
                "/a/b~1c/d",
            ),
            (
                r#"{"pad": {"data": [9]}, "data": [{"id": "\\"}], "next": null}"#,
                "/data",
            ),
            ("{\n\t\"data\" :\r\n [\n1\n,\n2\n]\n}\n", "/data"),
        ];
        for (body, path) in served {
            assert!(same_as_in_memory(body, path), "served: {path} in {body}");
        }
        // Left to the in-memory path, which reports the error or finds the records.
        let unserved = [
            (r#"{"data": [1, 2,]}"#, "/data"),
            (r#"{"data": [1 2]}"#, "/data"),
            (r#"{"data": [1, 2]"#, "/data"),
            (r#"{"data": [1, 2]} x"#, "/data"),
            (r#"{"data": {"id": 1}}"#, "/data"),
            (r#"{"other": []}"#, "/data"),
            (r#"{"\u0064ata": [1], "data": [2]}"#, "/data"),
            (r#"{"list": [{"items": [1]}]}"#, "/list/0/items"),
            (r#"{"0": {"a": 1}}"#, "/*"),
            (r#"{"data": [tru]}"#, "/data"),
            (r#"{"data": ["a\x"]}"#, "/data"),
            ("<html>log in</html>", "/data"),
            ("", ""),
        ];
        for (body, path) in unserved {
            assert!(read(body, path).is_none(), "unserved: {path} in {body}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any body the file reader serves, it reads as the in-memory path does; none
        /// makes it panic.
        #[test]
        fn the_file_reader_agrees_with_the_in_memory_path(body in super::super::arbitrary::body()) {
            for records_path in ["", "/data", "/data/0", "/next"] {
                same_as_in_memory(&body, records_path);
            }
        }
    }
}
