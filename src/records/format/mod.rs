//! Bodies that are not one JSON document: NDJSON, CSV, TSV and XML (`streams[].format`),
//! read row by row from any [`BufRead`] (a body in memory or spilled to a temporary file),
//! so a body of any size takes the memory of a few rows.
//!
//! Each row keeps its exact text (`_raw`: the line or the element as the source sent it,
//! decoded to UTF-8 from the declared encoding) and, for CSV, TSV and XML, a parsed form as
//! JSON text (`_record`, `docs/contract.md` §3). A row that cannot be read (a wrong field
//! count, bad quoting, bytes invalid in the encoding, a malformed element) comes back as
//! [`Next::Malformed`] with its exact bytes; a body whose structure breaks (an XML document
//! that is no longer well formed) ends with [`Next::Fatal`] holding the rest of the body.

use std::io::{self, BufRead, Read};

use encoding_rs::Encoding;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod csv;
mod lines;
mod xml;

/// `streams[].format`: how a response body holds its records.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON document; the records are the array at `records_path`.
    #[default]
    Json,
    /// One JSON value per line.
    Ndjson,
    /// Comma-separated values (RFC 4180).
    Csv,
    /// Tab-separated values (CSV with a tab delimiter).
    Tsv,
    /// XML; the records are the elements at `xml.record_path`.
    Xml,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Xml => "xml",
        }
    }

    /// Whether records carry a parsed form beside `_raw` (`_record`).
    pub fn has_parsed_form(self) -> bool {
        matches!(self, Format::Csv | Format::Tsv | Format::Xml)
    }
}

/// `streams[].compression`: how a body is compressed beyond its `Content-Encoding` (which
/// the HTTP client always decodes), e.g. an export served as `application/gzip`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BodyCompression {
    /// The body is read as it is.
    #[default]
    None,
    /// The body is gzip (one or more members).
    Gzip,
    /// gzip when the body starts with the gzip magic bytes, else as it is.
    Auto,
}

fn default_quote() -> String {
    "\"".to_owned()
}

fn default_true() -> bool {
    true
}

/// `streams[].csv`: how a `csv` or `tsv` body is written.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// One ASCII character between fields. Default: `,` for csv, a tab for tsv.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// One ASCII character around fields that hold the delimiter, the quote or a line
    /// break (doubled inside them). Default: `"`.
    #[serde(default = "default_quote")]
    pub quote: String,
    /// Whether the first row names the columns. Default: true.
    #[serde(default = "default_true")]
    pub header: bool,
    /// The column names, in order; with `header: true` the header row is read and
    /// dropped. Default: the header row's names.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            quote: default_quote(),
            header: true,
            columns: Vec::new(),
        }
    }
}

/// `streams[].xml`: where the records of an `xml` body are.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct XmlOptions {
    /// The repeated element, as the names from the root down: `/ValCurs/Valute`.
    pub record_path: String,
}

/// Everything a row reader needs, checked when the config is loaded.
#[derive(Clone, Debug)]
pub struct FormatSpec {
    pub format: Format,
    pub delimiter: u8,
    pub quote: u8,
    pub header: bool,
    pub columns: Vec<String>,
    /// The element names from the root to a record (xml).
    pub record_path: Vec<String>,
    /// The declared encoding; `None`: UTF-8, or for xml what the document declares.
    pub encoding: Option<&'static Encoding>,
}

/// A single ASCII character option (`csv.delimiter`, `csv.quote`).
pub fn ascii_char(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [byte] if byte.is_ascii() && *byte != b'\n' && *byte != b'\r' => Some(*byte),
        _ => None,
    }
}

/// The encoding an `encoding` label names, when Landfall can read it: ASCII-compatible
/// encodings (UTF-8, windows-125x, ISO-8859-x, KOI8, Shift_JIS, GBK, ...), where the
/// delimiters, quotes and markup are the ASCII bytes. UTF-16 is not.
pub fn encoding_for(label: &str) -> Option<&'static Encoding> {
    Encoding::for_label(label.trim().as_bytes()).filter(|encoding| encoding.is_ascii_compatible())
}

/// One step of reading a body.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A row: its exact text (`_raw`) and, for csv, tsv and xml, its parsed form as JSON
    /// text (`_record`); for ndjson the text is the record.
    Row { raw: String, record: Option<String> },
    /// A row that cannot be read: its exact bytes (in the source's encoding) and why.
    Malformed { bytes: Vec<u8>, message: String },
    /// The body cannot be read past this point: the rest of it, from the row it broke in.
    Fatal(Rest),
    /// The body ended.
    End,
}

/// What is left of a body that broke: its first [`REST_HEAD`] bytes, and the whole rest's
/// length and hex SHA-256.
#[derive(Debug, PartialEq)]
pub struct Rest {
    pub head: Vec<u8>,
    pub len: u64,
    pub sha256: String,
    pub message: String,
}

/// Bytes of a broken body's rest kept in its dead letter (as for a spilled page).
pub const REST_HEAD: usize = 1 << 20;

/// `start` and what `input` still holds, as a [`Rest`]: read to its end, hashed, never
/// held past [`REST_HEAD`] bytes.
pub(crate) fn rest(start: &[u8], input: &mut dyn Read, message: String) -> io::Result<Rest> {
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut len = 0u64;
    let mut keep = |bytes: &[u8], head: &mut Vec<u8>| {
        hasher.update(bytes);
        len += bytes.len() as u64;
        let room = REST_HEAD.saturating_sub(head.len());
        head.extend_from_slice(&bytes[..bytes.len().min(room)]);
    };
    keep(start, &mut head);
    let mut buffer = vec![0; 64 << 10];
    loop {
        let read = input.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        keep(&buffer[..read], &mut head);
    }
    Ok(Rest {
        head,
        len,
        sha256: crate::hash::hex_lower(&hasher.finalize()),
        message,
    })
}

/// Decodes `bytes` from `encoding`, refusing bytes the encoding does not define.
pub(crate) fn decode(encoding: &'static Encoding, bytes: &[u8]) -> Option<String> {
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(std::borrow::Cow::into_owned)
}

/// Appends `value` as a JSON string.
pub(crate) fn push_json_string(out: &mut String, value: &str) {
    out.push_str(&serde_json::to_string(value).expect("strings serialize"));
}

/// Reads the rows of one body.
pub enum RowReader<R: BufRead> {
    Lines(lines::LineRows<R>),
    Csv(Box<csv::CsvRows<R>>),
    Xml(Box<xml::XmlRows<R>>),
}

impl<R: BufRead> RowReader<R> {
    /// A reader of `input` (decompressed already) in `spec`'s format; `json` is not read
    /// here.
    pub fn new(spec: &FormatSpec, input: R) -> Self {
        match spec.format {
            Format::Json | Format::Ndjson => RowReader::Lines(lines::LineRows::new(input, spec.encoding)),
            Format::Csv | Format::Tsv => RowReader::Csv(Box::new(csv::CsvRows::new(input, spec))),
            Format::Xml => RowReader::Xml(Box::new(xml::XmlRows::new(input, spec))),
        }
    }

    /// The next row, malformed row, or the end. An `Err` is a read failure of the input
    /// itself (a local disk error, a corrupt gzip stream).
    pub fn next_row(&mut self) -> io::Result<Next> {
        match self {
            RowReader::Lines(rows) => rows.next_row(),
            RowReader::Csv(rows) => rows.next_row(),
            RowReader::Xml(rows) => rows.next_row(),
        }
    }
}

/// Counts the bytes read through it and fails past `limit` (a decompressed body obeys
/// `source.max_response_size` as a plain one does).
pub struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R> Limited<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Self { inner, read: 0, limit }
    }
}

/// The message of the error [`Limited`] fails with.
pub const TOO_LARGE: &str = "the decompressed body passes source.max_response_size";

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.read = self.read.saturating_add(read as u64);
        if self.read > self.limit {
            return Err(io::Error::other(TOO_LARGE));
        }
        Ok(read)
    }
}

/// `input` decompressed as `compression` says (`content_type` for `auto`), within `limit`
/// decompressed bytes.
pub fn decompressed<'a, R: BufRead + Send + 'a>(
    mut input: R,
    compression: BodyCompression,
    content_type: Option<&str>,
    limit: u64,
) -> io::Result<Box<dyn BufRead + Send + 'a>> {
    let gzip = match compression {
        BodyCompression::None => false,
        BodyCompression::Gzip => true,
        BodyCompression::Auto => {
            let typed = content_type.is_some_and(|value| {
                let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                essence == "application/gzip" || essence == "application/x-gzip"
            });
            typed || input.fill_buf()?.starts_with(&[0x1f, 0x8b])
        }
    };
    Ok(if gzip {
        let decoder = flate2::bufread::MultiGzDecoder::new(input);
        Box::new(io::BufReader::with_capacity(256 << 10, Limited::new(decoder, limit)))
    } else {
        Box::new(input)
    })
}

#[cfg(test)]
pub(crate) fn spec(format: Format) -> FormatSpec {
    FormatSpec {
        format,
        delimiter: if format == Format::Tsv { b'\t' } else { b',' },
        quote: b'"',
        header: true,
        columns: Vec::new(),
        record_path: Vec::new(),
        encoding: None,
    }
}

#[cfg(test)]
pub(crate) fn read_all(spec: &FormatSpec, body: &[u8]) -> Vec<Next> {
    let mut reader = RowReader::new(spec, body);
    let mut out = Vec::new();
    loop {
        match reader.next_row().unwrap() {
            Next::End => return out,
            next => out.push(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_gzip_body_is_read_decompressed_and_a_plain_one_as_it_is() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"{\"a\":1}\n").unwrap();
        let gz = encoder.finish().unwrap();
        for (compression, body, content_type) in [
            (BodyCompression::Gzip, &gz[..], None),
            (BodyCompression::Auto, &gz[..], None),
            (BodyCompression::Auto, &gz[..], Some("application/gzip")),
            (BodyCompression::Auto, &b"{\"a\":1}\n"[..], None),
            (BodyCompression::None, &b"{\"a\":1}\n"[..], None),
        ] {
            let mut out = String::new();
            decompressed(body, compression, content_type, 1 << 20)
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, "{\"a\":1}\n", "{compression:?}");
        }
        let mut out = Vec::new();
        let error = decompressed(&gz[..], BodyCompression::Gzip, None, 3)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(error.to_string(), TOO_LARGE);
    }

    #[test]
    fn only_ascii_compatible_encodings_are_read() {
        assert_eq!(encoding_for("windows-1251"), Some(encoding_rs::WINDOWS_1251));
        assert_eq!(encoding_for("cp1251"), Some(encoding_rs::WINDOWS_1251));
        assert_eq!(encoding_for("utf-8"), Some(encoding_rs::UTF_8));
        assert_eq!(encoding_for("utf-16le"), None);
        assert_eq!(encoding_for("klingon"), None);
    }
}
