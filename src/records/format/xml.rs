//! XML: the records are the elements at `xml.record_path` (element names from the root).
//!
//! The body is read event by event through a tap that keeps the bytes of the element being
//! read, so a record's `_raw` is its element exactly as sent (from `<` of its start tag to
//! `>` of its end tag), decoded from the body's encoding. Its `_record` maps the element to
//! JSON (`docs/contract.md` §3): attributes as `"@name"`, child elements by name (an array
//! when a name repeats), text as a string for a plain element or `"#text"` beside
//! attributes and children.

use std::io::{self, BufRead, Read};

use encoding_rs::Encoding;
use quick_xml::events::Event;

use super::{FormatSpec, Next, decode, push_json_string, rest};

/// A reader that keeps the bytes consumed through it since the last [`Tap::clear`].
struct Tap<R> {
    inner: R,
    tape: Vec<u8>,
    /// The body offset of `tape[0]`.
    base: u64,
    /// Bytes consumed so far.
    position: u64,
}

impl<R: BufRead> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let read = available.len().min(buf.len());
        buf[..read].copy_from_slice(&available[..read]);
        self.consume(read);
        Ok(read)
    }
}

impl<R: BufRead> BufRead for Tap<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Ok(available) = self.inner.fill_buf() {
            self.tape.extend_from_slice(&available[..amount.min(available.len())]);
        }
        self.position += amount as u64;
        self.inner.consume(amount);
    }
}

impl<R> Tap<R> {
    /// Drops the kept bytes before body offset `from`.
    fn clear(&mut self, from: u64) {
        let drop = (from.saturating_sub(self.base) as usize).min(self.tape.len());
        self.tape.drain(..drop);
        self.base += drop as u64;
    }

    /// The kept bytes from body offset `from` to `to`.
    fn slice(&self, from: u64, to: u64) -> &[u8] {
        let start = (from.saturating_sub(self.base) as usize).min(self.tape.len());
        let end = (to.saturating_sub(self.base) as usize).clamp(start, self.tape.len());
        &self.tape[start..end]
    }
}

pub struct XmlRows<R> {
    reader: quick_xml::Reader<Tap<R>>,
    path: Vec<Vec<u8>>,
    /// The open elements' names.
    open: Vec<Vec<u8>>,
    /// Body offset of the record being read (its `<`).
    record_start: Option<u64>,
    encoding: Option<&'static Encoding>,
    buffer: Vec<u8>,
    done: bool,
}

impl<R: BufRead> XmlRows<R> {
    pub fn new(input: R, spec: &FormatSpec) -> Self {
        let tap = Tap {
            inner: input,
            tape: Vec::new(),
            base: 0,
            position: 0,
        };
        let mut reader = quick_xml::Reader::from_reader(tap);
        reader.config_mut().check_end_names = true;
        Self {
            reader,
            path: spec.record_path.iter().map(|name| name.as_bytes().to_vec()).collect(),
            open: Vec::new(),
            record_start: None,
            encoding: spec.encoding,
            buffer: Vec::new(),
            done: false,
        }
    }

    fn encoding(&self) -> &'static Encoding {
        self.encoding.unwrap_or(encoding_rs::UTF_8)
    }

    /// The body offset of the `<` of the tag just read, which ends at `end`.
    fn tag_start(&self, before: u64, end: u64) -> u64 {
        let tap = self.reader.get_ref();
        // The tag starts at `before`, or one byte earlier when the text before it took its `<`.
        (before.saturating_sub(1)..=before)
            .rev()
            .find(|at| tap.slice(*at, end).first() == Some(&b'<'))
            .unwrap_or(before)
    }

    fn fatal(&mut self, message: String) -> io::Result<Next> {
        self.done = true;
        let from = self.record_start.unwrap_or(self.reader.get_ref().position);
        let tap = self.reader.get_mut();
        let start = tap.slice(from, tap.position).to_vec();
        tap.tape.clear();
        Ok(Next::Fatal(rest(&start, &mut tap.inner, message)?))
    }

    pub fn next_row(&mut self) -> io::Result<Next> {
        if self.done {
            return Ok(Next::End);
        }
        loop {
            let before = self.reader.buffer_position();
            if self.record_start.is_none() {
                // Keep one byte: the `<` of a start tag may be taken by the text before it.
                self.reader.get_mut().clear(before.saturating_sub(1));
            }
            self.buffer.clear();
            let event = match self.reader.read_event_into(&mut self.buffer) {
                Ok(event) => event,
                Err(quick_xml::Error::Io(error)) => return Err(io::Error::other(error.to_string())),
                Err(error) => {
                    let message = format!("the XML is malformed at byte {}: {error}", self.reader.error_position());
                    return self.fatal(message);
                }
            };
            let end = self.reader.buffer_position();
            let (opened, empty) = match &event {
                Event::Start(start) => (Some(start.name().as_ref().to_vec()), false),
                Event::Empty(start) => (Some(start.name().as_ref().to_vec()), true),
                Event::End(_) => {
                    self.open.pop();
                    if self.record_start.is_some() && self.open.len() + 1 == self.path.len() {
                        return Ok(self.record(end));
                    }
                    continue;
                }
                Event::Decl(declaration) if self.encoding.is_none() => {
                    if let Some(Ok(label)) = declaration.encoding() {
                        let label = String::from_utf8_lossy(&label).into_owned();
                        match super::encoding_for(&label) {
                            Some(encoding) => self.encoding = Some(encoding),
                            None => return self.fatal(format!("the document's encoding `{label}` cannot be read")),
                        }
                    }
                    continue;
                }
                Event::Eof => {
                    if !self.open.is_empty() {
                        return self.fatal("the XML ends inside an element".to_owned());
                    }
                    self.done = true;
                    return Ok(Next::End);
                }
                _ => continue,
            };
            let name = opened.expect("start or empty");
            let at_record = self.record_start.is_none() && self.open.len() + 1 == self.path.len() && {
                self.open.iter().zip(&self.path).all(|(open, path)| open == path) && self.path.last() == Some(&name)
            };
            if at_record {
                self.record_start = Some(self.tag_start(before, end));
            }
            if empty {
                if at_record {
                    return Ok(self.record(end));
                }
            } else {
                self.open.push(name);
            }
        }
    }

    /// The record that ends at body offset `end`.
    fn record(&mut self, end: u64) -> Next {
        let start = self.record_start.take().expect("a record is open");
        let bytes = self.reader.get_ref().slice(start, end).to_vec();
        self.reader.get_mut().clear(end);
        let Some(raw) = decode(self.encoding(), &bytes) else {
            return Next::Malformed {
                message: format!("the element holds bytes that are not valid {}", self.encoding().name()),
                bytes,
            };
        };
        match to_json(&raw) {
            Ok(record) => Next::Row {
                raw,
                record: Some(record),
            },
            Err(message) => Next::Malformed { bytes, message },
        }
    }
}

/// An element read for its JSON form.
#[derive(Default)]
struct Node {
    attributes: Vec<(String, String)>,
    /// Children grouped by name, in the order each name first appears.
    children: Vec<(String, Vec<Node>)>,
    text: String,
}

impl Node {
    fn write(&self, out: &mut String) {
        if self.attributes.is_empty() && self.children.is_empty() {
            push_json_string(out, &self.text);
            return;
        }
        out.push('{');
        let mut first = true;
        let mut comma = |out: &mut String| {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
        };
        for (name, value) in &self.attributes {
            comma(out);
            push_json_string(out, &format!("@{name}"));
            out.push(':');
            push_json_string(out, value);
        }
        for (name, nodes) in &self.children {
            comma(out);
            push_json_string(out, name);
            out.push(':');
            if let [node] = nodes.as_slice() {
                node.write(out);
            } else {
                out.push('[');
                for (at, node) in nodes.iter().enumerate() {
                    if at > 0 {
                        out.push(',');
                    }
                    node.write(out);
                }
                out.push(']');
            }
        }
        let text = self.text.trim();
        if !text.is_empty() {
            comma(out);
            out.push_str("\"#text\":");
            push_json_string(out, text);
        }
        out.push('}');
    }
}

fn attributes(start: &quick_xml::events::BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    start
        .attributes()
        .map(|attribute| {
            let attribute = attribute.map_err(|error| error.to_string())?;
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|error| error.to_string())?;
            Ok((
                String::from_utf8_lossy(attribute.key.as_ref()).into_owned(),
                value.into_owned(),
            ))
        })
        .collect()
}

/// The JSON form of one element's text (already UTF-8).
fn to_json(element: &str) -> Result<String, String> {
    let malformed = |error: &dyn std::fmt::Display| format!("the element is malformed: {error}");
    let mut reader = quick_xml::Reader::from_str(element);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<(String, Node)> = Vec::new();
    let mut root = None;
    loop {
        let event = reader.read_event().map_err(|error| malformed(&error))?;
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                let node = Node {
                    attributes: attributes(&start).map_err(|error| malformed(&error))?,
                    ..Node::default()
                };
                stack.push((name, node));
            }
            Event::Empty(start) => {
                let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                let node = Node {
                    attributes: attributes(&start).map_err(|error| malformed(&error))?,
                    ..Node::default()
                };
                close(&mut stack, &mut root, name, node);
            }
            Event::End(_) => {
                let (name, node) = stack.pop().ok_or_else(|| malformed(&"an end tag without a start"))?;
                close(&mut stack, &mut root, name, node);
            }
            Event::Text(text) => {
                if let Some((_, node)) = stack.last_mut() {
                    node.text.push_str(&text.decode().map_err(|error| malformed(&error))?);
                }
            }
            Event::CData(text) => {
                if let Some((_, node)) = stack.last_mut() {
                    node.text.push_str(&text.decode().map_err(|error| malformed(&error))?);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|error| malformed(&error))? {
                    Some(char) => char.to_string(),
                    None => {
                        let name = reference.decode().map_err(|error| malformed(&error))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| malformed(&format!("undefined entity `&{name};`")))?
                            .to_owned()
                    }
                };
                if let Some((_, node)) = stack.last_mut() {
                    node.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let root = root.ok_or_else(|| malformed(&"no element"))?;
    let mut out = String::with_capacity(element.len());
    root.write(&mut out);
    Ok(out)
}

fn close(stack: &mut [(String, Node)], root: &mut Option<Node>, name: String, node: Node) {
    match stack.last_mut() {
        Some((_, parent)) => match parent.children.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, nodes)) => nodes.push(node),
            None => parent.children.push((name, vec![node])),
        },
        None => *root = Some(node),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Next, read_all, spec};

    fn cbr() -> super::super::FormatSpec {
        let mut spec = spec(Format::Xml);
        spec.record_path = vec!["ValCurs".into(), "Valute".into()];
        spec
    }

    #[test]
    fn cbr_daily_rates_in_windows_1251_are_read_element_by_element() {
        let text = "<?xml version=\"1.0\" encoding=\"windows-1251\"?>\r\n<ValCurs Date=\"02.03.2024\" name=\"Foreign Currency Market\"><Valute ID=\"R01235\"><NumCode>840</NumCode><CharCode>USD</CharCode><Nominal>1</Nominal><Name>Доллар США</Name><Value>92,5058</Value><VunitRate>92,5058</VunitRate></Valute>\n  <Valute ID=\"R01239\"><Name>Евро &amp; co</Name></Valute><Valute ID=\"R0\"/></ValCurs>";
        let (body, _, _) = encoding_rs::WINDOWS_1251.encode(text);
        let rows = read_all(&cbr(), &body);
        assert_eq!(
            rows,
            [
                Next::Row {
                    raw: "<Valute ID=\"R01235\"><NumCode>840</NumCode><CharCode>USD</CharCode><Nominal>1</Nominal><Name>Доллар США</Name><Value>92,5058</Value><VunitRate>92,5058</VunitRate></Valute>".into(),
                    record: Some("{\"@ID\":\"R01235\",\"NumCode\":\"840\",\"CharCode\":\"USD\",\"Nominal\":\"1\",\"Name\":\"Доллар США\",\"Value\":\"92,5058\",\"VunitRate\":\"92,5058\"}".into()),
                },
                Next::Row {
                    raw: "<Valute ID=\"R01239\"><Name>Евро &amp; co</Name></Valute>".into(),
                    record: Some("{\"@ID\":\"R01239\",\"Name\":\"Евро & co\"}".into()),
                },
                Next::Row {
                    raw: "<Valute ID=\"R0\"/>".into(),
                    record: Some("{\"@ID\":\"R0\"}".into()),
                },
            ]
        );
    }

    #[test]
    fn repeated_children_text_and_nesting_map_to_json() {
        let mut spec = spec(Format::Xml);
        spec.record_path = vec!["r".into(), "i".into()];
        let body = "<r><i a=\"1\">text<t>x</t><t>y</t><n><m/></n><![CDATA[<c>]]></i><other><i>no</i></other></r>";
        assert_eq!(
            read_all(&spec, body.as_bytes()),
            [Next::Row {
                raw: "<i a=\"1\">text<t>x</t><t>y</t><n><m/></n><![CDATA[<c>]]></i>".into(),
                record: Some("{\"@a\":\"1\",\"t\":[\"x\",\"y\"],\"n\":{\"m\":\"\"},\"#text\":\"text<c>\"}".into()),
            }]
        );
    }

    #[test]
    fn a_bad_entity_is_a_malformed_record_and_broken_xml_ends_the_body() {
        let body = "<r><i>&bogus;</i><i>ok</i><i>cut</r> trailing";
        let rows = read_all(
            &{
                let mut spec = spec(Format::Xml);
                spec.record_path = vec!["r".into(), "i".into()];
                spec
            },
            body.as_bytes(),
        );
        assert!(
            matches!(&rows[0], Next::Malformed { bytes, .. } if bytes == b"<i>&bogus;</i>"),
            "{rows:?}"
        );
        assert!(matches!(&rows[1], Next::Row { raw, .. } if raw == "<i>ok</i>"));
        let Next::Fatal(rest) = &rows[2] else {
            panic!("{rows:?}")
        };
        assert_eq!(rest.head, b"<i>cut</r> trailing");
        assert_eq!(rows.len(), 3);
    }
}
