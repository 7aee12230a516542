//! NDJSON: one JSON value per line (`\n`, or `\r\n`); blank lines are skipped.

use std::io::{self, BufRead};

use encoding_rs::Encoding;
use serde_json::value::RawValue;

use super::{Next, decode};

pub struct LineRows<R> {
    input: R,
    encoding: &'static Encoding,
    line: Vec<u8>,
}

impl<R: BufRead> LineRows<R> {
    pub fn new(input: R, encoding: Option<&'static Encoding>) -> Self {
        Self {
            input,
            encoding: encoding.unwrap_or(encoding_rs::UTF_8),
            line: Vec::new(),
        }
    }

    pub fn next_row(&mut self) -> io::Result<Next> {
        loop {
            self.line.clear();
            if self.input.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(Next::End);
            }
            let mut end = self.line.len();
            if self.line[..end].ends_with(b"\n") {
                end -= 1;
            }
            if self.line[..end].ends_with(b"\r") {
                end -= 1;
            }
            let bytes = &self.line[..end];
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Some(text) = decode(self.encoding, bytes) else {
                return Ok(Next::Malformed {
                    bytes: bytes.to_vec(),
                    message: format!("the line holds bytes that are not valid {}", self.encoding.name()),
                });
            };
            return Ok(match serde_json::from_str::<&RawValue>(&text) {
                Ok(_) => Next::Row {
                    raw: text,
                    record: None,
                },
                Err(error) => Next::Malformed {
                    bytes: bytes.to_vec(),
                    message: format!("the line is not one JSON value: {error}"),
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Next, read_all, spec};

    #[test]
    fn lines_are_records_and_a_bad_line_is_malformed() {
        let body = b"{\"id\":1}\r\n\n  \n{\"id\": 2 }\n{\"id\":\nnot json\n{\"id\":3}";
        let rows = read_all(&spec(Format::Ndjson), body);
        let raw: Vec<String> = rows
            .iter()
            .map(|row| match row {
                Next::Row { raw, .. } => raw.clone(),
                Next::Malformed { bytes, .. } => format!("bad:{}", String::from_utf8_lossy(bytes)),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            raw,
            [
                "{\"id\":1}",
                "{\"id\": 2 }",
                "bad:{\"id\":",
                "bad:not json",
                "{\"id\":3}"
            ]
        );
    }
}
