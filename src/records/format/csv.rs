//! CSV and TSV, split into records by `csv_core` (quoted fields may hold delimiters,
//! quotes and line breaks) and checked strictly against RFC 4180's quoting: a quote inside
//! an unquoted field, text after a closing quote, or a quote left open is a malformed row.
//!
//! A row's `_raw` is its bytes from its first byte to its line terminator (not included),
//! decoded from the declared encoding; its `_record` is `{column: value}` with every value
//! a string, columns in order. A row whose field count is not the columns' is malformed.

use std::io::{self, BufRead};

use csv_core::{ReadRecordResult, ReaderBuilder};
use encoding_rs::Encoding;

use super::{FormatSpec, Next, Rest, decode, push_json_string};

pub struct CsvRows<R> {
    input: R,
    core: csv_core::Reader,
    encoding: &'static Encoding,
    delimiter: u8,
    quote: u8,
    /// The column names, once known.
    names: Option<Vec<String>>,
    /// Whether the next record is the header row.
    header: bool,
    /// Whether the body's first bytes are still to come (a UTF-8 BOM is dropped there).
    at_start: bool,
    /// Set once the body cannot be read on (a bad header row).
    done: bool,
    raw: Vec<u8>,
    fields: Vec<u8>,
    ends: Vec<usize>,
}

impl<R: BufRead> CsvRows<R> {
    pub fn new(input: R, spec: &FormatSpec) -> Self {
        let core = ReaderBuilder::new()
            .delimiter(spec.delimiter)
            .quote(spec.quote)
            .double_quote(true)
            .build();
        Self {
            input,
            core,
            encoding: spec.encoding.unwrap_or(encoding_rs::UTF_8),
            delimiter: spec.delimiter,
            quote: spec.quote,
            names: (!spec.columns.is_empty()).then(|| spec.columns.clone()),
            header: spec.header,
            at_start: true,
            done: false,
            raw: Vec::new(),
            fields: vec![0; 4096],
            ends: vec![0; 64],
        }
    }

    /// The next record's bytes into `raw`, its fields into `fields`/`ends`; the number of
    /// fields, or `None` at the end of the body.
    fn read_record(&mut self) -> io::Result<Option<usize>> {
        self.raw.clear();
        let (mut out, mut nends) = (0, 0);
        loop {
            let mut input = self.input.fill_buf()?;
            if self.at_start {
                if self.encoding == encoding_rs::UTF_8 && input.len() < 3 && !input.is_empty() {
                    // Too short to tell a BOM: read on byte by byte (rare: a tiny body).
                } else {
                    self.at_start = false;
                    if self.encoding == encoding_rs::UTF_8 && input.starts_with(b"\xef\xbb\xbf") {
                        self.input.consume(3);
                        input = self.input.fill_buf()?;
                    }
                }
            }
            let (result, read, written, ended) =
                self.core
                    .read_record(input, &mut self.fields[out..], &mut self.ends[nends..]);
            self.raw.extend_from_slice(&input[..read]);
            self.input.consume(read);
            out += written;
            nends += ended;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let grown = self.fields.len() * 2;
                    self.fields.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => return Ok(Some(nends)),
                ReadRecordResult::End => return Ok(None),
            }
        }
    }

    pub fn next_row(&mut self) -> io::Result<Next> {
        let next = self.read_row()?;
        self.done |= matches!(next, Next::Fatal(_) | Next::End);
        Ok(next)
    }

    fn read_row(&mut self) -> io::Result<Next> {
        if self.done {
            return Ok(Next::End);
        }
        loop {
            let Some(count) = self.read_record()? else {
                return Ok(Next::End);
            };
            let line = trim_terminators(&self.raw);
            if line.is_empty() {
                continue;
            }
            let line = line.to_vec();
            let malformed = |message: String| Next::Malformed {
                bytes: line.clone(),
                message,
            };
            if let Err(message) = check_quoting(&line, self.delimiter, self.quote) {
                if self.header {
                    return Ok(Next::Fatal(header_error(line.clone(), message)));
                }
                return Ok(malformed(message));
            }
            let Some(raw) = decode(self.encoding, &line) else {
                let message = format!("the row holds bytes that are not valid {}", self.encoding.name());
                if self.header {
                    return Ok(Next::Fatal(header_error(line.clone(), message)));
                }
                return Ok(malformed(message));
            };
            let mut values = Vec::with_capacity(count);
            let mut start = 0;
            for &end in &self.ends[..count] {
                match decode(self.encoding, &self.fields[start..end]) {
                    Some(value) => values.push(value),
                    None => return Ok(malformed(format!("a field is not valid {}", self.encoding.name()))),
                }
                start = end;
            }
            if self.header {
                self.header = false;
                if self.names.is_none() {
                    if let Some(repeated) = values
                        .iter()
                        .enumerate()
                        .find(|(at, name)| values[..*at].contains(name))
                    {
                        let message = format!("the header row names column `{}` twice", repeated.1);
                        return Ok(Next::Fatal(header_error(line, message)));
                    }
                    self.names = Some(values);
                }
                continue;
            }
            let Some(names) = self.names.as_ref() else {
                return Ok(Next::Fatal(header_error(
                    line,
                    "no column names: set csv.columns".to_owned(),
                )));
            };
            if values.len() != names.len() {
                return Ok(malformed(format!(
                    "the row has {} fields, the columns are {}",
                    values.len(),
                    names.len()
                )));
            }
            let mut record = String::with_capacity(raw.len() + names.len() * 8 + 2);
            record.push('{');
            for (at, (name, value)) in names.iter().zip(&values).enumerate() {
                if at > 0 {
                    record.push(',');
                }
                push_json_string(&mut record, name);
                record.push(':');
                push_json_string(&mut record, value);
            }
            record.push('}');
            return Ok(Next::Row {
                raw,
                record: Some(record),
            });
        }
    }
}

fn header_error(line: Vec<u8>, message: String) -> Rest {
    Rest {
        len: line.len() as u64,
        sha256: crate::hash::sha256_hex(&line),
        head: line,
        message: format!("header row: {message}"),
    }
}

/// A record's bytes without the line breaks before it (blank lines) and its terminator.
fn trim_terminators(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|byte| !matches!(byte, b'\r' | b'\n'))
        .unwrap_or(raw.len());
    let mut end = raw.len();
    while end > start && matches!(raw[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &raw[start..end]
}

/// Checks a record's quoting as RFC 4180 writes it.
fn check_quoting(line: &[u8], delimiter: u8, quote: u8) -> Result<(), String> {
    let mut at = 0;
    loop {
        // The start of a field.
        if line.get(at) == Some(&quote) {
            at += 1;
            loop {
                match line.get(at) {
                    None => return Err("a quoted field is not closed".to_owned()),
                    Some(&byte) if byte == quote => {
                        if line.get(at + 1) == Some(&quote) {
                            at += 2;
                            continue;
                        }
                        at += 1;
                        break;
                    }
                    Some(_) => at += 1,
                }
            }
            match line.get(at) {
                None => return Ok(()),
                Some(&byte) if byte == delimiter => at += 1,
                Some(_) => return Err(format!("text after the closing quote of field ending at byte {at}")),
            }
        } else {
            loop {
                match line.get(at) {
                    None => return Ok(()),
                    Some(&byte) if byte == delimiter => {
                        at += 1;
                        break;
                    }
                    Some(&byte) if byte == quote => {
                        return Err(format!("a quote inside an unquoted field at byte {at}"));
                    }
                    Some(_) => at += 1,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Next, read_all, spec};

    fn rows(rows: &[Next]) -> Vec<String> {
        rows.iter()
            .map(|row| match row {
                Next::Row { raw, record } => format!("{raw} => {}", record.as_deref().unwrap_or("")),
                Next::Malformed { bytes, .. } => format!("bad: {}", String::from_utf8_lossy(bytes)),
                Next::Fatal(rest) => format!("fatal: {}", rest.message),
                Next::End => "end".to_owned(),
            })
            .collect()
    }

    #[test]
    fn quoted_fields_keep_delimiters_quotes_and_line_breaks() {
        let body = "\u{feff}id,name,note\r\n1,\"Smith, J\",\"said \"\"hi\"\"\nthen left\"\r\n\r\n2,,x\n3,b,\"\"";
        assert_eq!(
            rows(&read_all(&spec(Format::Csv), body.as_bytes())),
            [
                "1,\"Smith, J\",\"said \"\"hi\"\"\nthen left\" => {\"id\":\"1\",\"name\":\"Smith, J\",\"note\":\"said \\\"hi\\\"\\nthen left\"}",
                "2,,x => {\"id\":\"2\",\"name\":\"\",\"note\":\"x\"}",
                "3,b,\"\" => {\"id\":\"3\",\"name\":\"b\",\"note\":\"\"}",
            ]
        );
    }

    #[test]
    fn bad_rows_are_malformed_and_reading_goes_on() {
        let body = b"a,b\n1,2,3\n1\n x\"y,2\n\"q\"z,2\n\xff,2\n5,6\n\"open,7";
        assert_eq!(
            rows(&read_all(&spec(Format::Csv), body)),
            [
                "bad: 1,2,3",
                "bad: 1",
                "bad:  x\"y,2",
                "bad: \"q\"z,2",
                "bad: \u{fffd},2",
                "5,6 => {\"a\":\"5\",\"b\":\"6\"}",
                "bad: \"open,7",
            ]
        );
    }

    #[test]
    fn tsv_with_explicit_columns_and_windows_1251() {
        let mut spec = spec(Format::Tsv);
        spec.header = false;
        spec.columns = vec!["code".into(), "name".into()];
        spec.encoding = Some(encoding_rs::WINDOWS_1251);
        let (body, _, _) = encoding_rs::WINDOWS_1251.encode("USD\tДоллар США\nEUR\tЕвро\n");
        assert_eq!(
            rows(&read_all(&spec, &body)),
            [
                "USD\tДоллар США => {\"code\":\"USD\",\"name\":\"Доллар США\"}",
                "EUR\tЕвро => {\"code\":\"EUR\",\"name\":\"Евро\"}",
            ]
        );
    }

    #[test]
    fn a_header_that_repeats_a_name_ends_the_body() {
        assert_eq!(
            rows(&read_all(&spec(Format::Csv), b"a,a\n1,2\n")),
            ["fatal: header row: the header row names column `a` twice"]
        );
    }
}
