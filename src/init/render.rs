//! Writing the proposal as a commented YAML config. Pure text building: every scalar goes
//! through [`scalar`] (plain only when YAML reads it back as the same string) and every
//! comment through [`Lines::comment`] (control characters removed, so nothing from a
//! response can end a comment and inject a key). Comments name fields and counts, never
//! record values.

use std::fmt::Write as _;

use super::infer::{CursorGuess, KeyEvidence, Order, PaginationGuess, Proposal, Shape, Stop};
use super::{AuthDraft, Draft};
use crate::http::config::ApiKeyLocation;

/// What the page looked like, for the header comment.
#[derive(Debug, Clone)]
pub struct PageFacts {
    /// Method and URL of the request, without credentials.
    pub request: String,
    pub status: u16,
    pub bytes: usize,
    /// When it was fetched (RFC 3339).
    pub fetched_at: String,
}

/// Width comments are wrapped at.
const WIDTH: usize = 96;

/// A YAML scalar for `text`: plain when that reads back as the same string, else
/// double-quoted with every non-ASCII or control character escaped.
pub fn scalar(text: &str) -> String {
    const RESERVED: &[&str] = &["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"];
    let plain = text
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == '/')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | ':'))
        && !text.ends_with(':')
        && !RESERVED.contains(&text.to_ascii_lowercase().as_str());
    if plain {
        return text.to_owned();
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            ' '..='~' => quoted.push(c),
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(quoted, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(quoted, "\\U{:08X}", c as u32);
            }
        }
    }
    quoted.push('"');
    quoted
}

/// A parameter value: integers and booleans as YAML numbers and booleans (as the examples
/// write `limit: 100`), anything else a string.
fn param_value(text: &str) -> String {
    let integer = !text.is_empty()
        && text.len() <= 15
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if integer || text == "true" || text == "false" {
        text.to_owned()
    } else {
        scalar(text)
    }
}

/// `[a, b]` with each item a scalar.
fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| scalar(item)).collect();
    format!("[{}]", items.join(", "))
}

/// Text safe inside a comment: one line, no control characters.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// A config being written, line by line.
#[derive(Default)]
struct Lines {
    text: String,
}

impl Lines {
    fn line(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.text, "{:indent$}{text}", "");
    }

    /// A comment wrapped at [`WIDTH`], each line starting `# ` at `indent`.
    fn comment(&mut self, indent: usize, text: &str) {
        let text = comment_safe(text);
        // Leading spaces (an indented command) are kept on the first line.
        let lead = text.len() - text.trim_start().len();
        let mut current = " ".repeat(lead);
        for word in text.split(' ').filter(|word| !word.is_empty()) {
            if !current.trim().is_empty() && indent + 2 + current.len() + 1 + word.len() > WIDTH {
                self.line(indent, &format!("# {current}"));
                current.clear();
            }
            if !current.trim().is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        self.line(indent, format!("# {current}").trim_end());
    }

    fn key(&mut self, indent: usize, key: &str, value: &str) {
        self.line(indent, &format!("{}: {value}", scalar(key)));
    }
}

fn render_source(lines: &mut Lines, draft: &Draft) {
    lines.line(0, "source:");
    lines.key(2, "name", &scalar(&draft.source_name));
    lines.key(2, "base_url", &scalar(&draft.base_url));
    if !draft.headers.is_empty() {
        lines.line(2, "headers:");
        for (name, value) in &draft.headers {
            lines.key(4, name, &scalar(value));
        }
    }
    lines.line(2, "auth:");
    match &draft.auth {
        AuthDraft::None => lines.key(4, "type", "none"),
        AuthDraft::Bearer { token } => {
            lines.key(4, "type", "bearer");
            lines.key(4, "token", &scalar(token));
        }
        AuthDraft::Basic { username, password } => {
            lines.key(4, "type", "basic");
            lines.key(4, "username", &scalar(username));
            if let Some(password) = password {
                lines.key(4, "password", &scalar(password));
            }
        }
        AuthDraft::ApiKey { location, name, value } => {
            lines.key(4, "type", "api_key");
            let location = match location {
                ApiKeyLocation::Header => "header",
                ApiKeyLocation::Query => "query",
            };
            lines.key(4, "in", location);
            lines.key(4, "name", &scalar(name));
            lines.key(4, "value", &scalar(value));
        }
        AuthDraft::OAuth2 {
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scopes,
        } => {
            lines.key(4, "type", "oauth2");
            let flow = if refresh_token.is_some() {
                "refresh_token"
            } else {
                "client_credentials"
            };
            lines.key(4, "flow", flow);
            lines.key(4, "token_url", &scalar(token_url));
            lines.key(4, "client_id", &scalar(client_id));
            lines.key(4, "client_secret", &scalar(client_secret));
            if let Some(token) = refresh_token {
                lines.key(4, "refresh_token", &scalar(token));
            }
            if !scopes.is_empty() {
                lines.key(4, "scopes", &list(scopes));
            }
        }
    }
}

fn render_stream_head(lines: &mut Lines, draft: &Draft, params: &[(String, String)]) {
    lines.line(0, "streams:");
    lines.line(2, &format!("- name: {}", scalar(&draft.stream_name)));
    lines.key(4, "path", &scalar(&draft.path));
    if !params.is_empty() {
        lines.line(4, "params:");
        for (name, value) in params {
            lines.key(6, name, &param_value(value));
        }
    }
}

/// The config `init` sends its one request with: the source as drafted and a stream that
/// takes the whole body (`records_path: /.`), no pagination.
pub fn probe(draft: &Draft, params: &[(String, String)]) -> String {
    let mut lines = Lines::default();
    lines.line(0, "version: 1");
    render_source(&mut lines, draft);
    render_stream_head(&mut lines, draft, params);
    lines.key(4, "records_path", "/.");
    lines.line(0, "landing:");
    lines.key(2, "url", "memory://");
    lines.text
}

/// The commented config.
pub fn config(draft: &Draft, proposal: &Proposal, page: &PageFacts) -> String {
    let mut lines = Lines::default();
    lines.comment(0, "Proposed by `landfall init` from one page of the API:");
    lines.comment(
        0,
        &format!(
            "  {} -> HTTP {}, {} bytes, {} record(s), fetched {}.",
            page.request, page.status, page.bytes, proposal.records.count, page.fetched_at
        ),
    );
    lines.comment(
        0,
        "Each guess below says what it was made from; lines marked TODO need a decision. One page \
         cannot show everything: read the vendor's API docs, then run",
    );
    lines.comment(0, "  landfall validate --config THIS_FILE");
    lines.comment(0, "  landfall check --config THIS_FILE");
    lines.comment(
        0,
        "Secrets are references (${env:NAME}, ${file:/path}) resolved at run time; none is written here.",
    );
    lines.line(0, "version: 1");
    render_source(&mut lines, draft);
    lines.comment(
        2,
        "TODO: timeout (30s), retry (3 attempts) and rate_limit (10 requests per second) are the \
         defaults; set rate_limit from the vendor's documented limits (README, \"Config reference\").",
    );
    render_stream_head(&mut lines, draft, &proposal.params);
    render_records(&mut lines, proposal);
    render_key(&mut lines, proposal);
    render_pagination(&mut lines, proposal);
    render_incremental(&mut lines, proposal);
    lines.comment(
        0,
        "Where to land: a local folder unless LANDFALL_LANDING_URL says otherwise (s3://, az://, gs://).",
    );
    lines.line(0, "landing:");
    lines.key(2, "url", &scalar("${env:LANDFALL_LANDING_URL:-file://./landing}"));
    lines.text
}

fn render_records(lines: &mut Lines, proposal: &Proposal) {
    let records = &proposal.records;
    let why = match records.shape {
        Shape::TopLevelArray => format!(
            "records_path: the body is a JSON array ({} object(s)); each element is a record.",
            records.count
        ),
        Shape::Array => format!(
            "records_path: the array of objects at {} ({} on this page) holds the records.",
            records.path, records.count
        ),
        Shape::Keyed => format!(
            "records_path: the body keeps its records as members keyed by position (\"0\", \"1\", ...; {} \
             here); `/*` takes each object-valued member as a record and skips the rest (totals, links).",
            records.count
        ),
        Shape::Document => "records_path: the body has no array of objects, so `/.` lands the whole document \
                            as one record per request (a snapshot). TODO: if the records are elsewhere, \
                            point records_path at them."
            .to_owned(),
    };
    lines.comment(4, &why);
    if records.count == 0 {
        lines.comment(
            4,
            "TODO: the page had no records, so the key, the cursor and their formats could not be seen: \
             fetch a page with records (another --path or --param) or fill them in from the API docs.",
        );
    }
    if !records.alternatives.is_empty() {
        lines.comment(
            4,
            &format!(
                "Other arrays of objects in the body: {}.",
                records.alternatives.join(", ")
            ),
        );
    }
    lines.key(4, "records_path", &scalar(&records.path));
}

fn render_key(lines: &mut Lines, proposal: &Proposal) {
    let key = &proposal.primary_key;
    let fields = key.fields.join(", ");
    let why = match key.evidence {
        KeyEvidence::IdField => format!(
            "primary_key: `{fields}` is in every record of the page and unique on it. Check that it is \
             unique across the whole API (downstream deduplicates on it)."
        ),
        KeyEvidence::WeakIdField => format!(
            "primary_key: TODO check `{fields}`: no field named like an id was unique on the page; this one \
             ends in _id and was unique here, which may be chance (it may name another object)."
        ),
        KeyEvidence::DocumentEcho => format!(
            "primary_key: the document is identified by `{fields}`: the request parameters it repeats and \
             its time field."
        ),
        KeyEvidence::DocumentNone => {
            "primary_key: none: one document per request, with nothing that identifies it (each run's \
             record stands alone)."
                .to_owned()
        }
        KeyEvidence::NotFound => "primary_key: TODO no field was present in every record and unique on the page; \
                                  name the record's key (a top-level field or a JSON pointer such as /a/id). \
                                  Empty means records are not deduplicated."
            .to_owned(),
        KeyEvidence::NoRecords => {
            "primary_key: TODO no records to look at; name the record's key (e.g. [id]).".to_owned()
        }
    };
    lines.comment(4, &why);
    lines.key(4, "primary_key", &list(&key.fields));
}

fn stop_lines(lines: &mut Lines, stop: Option<&Stop>) {
    if let Some(stop) = stop {
        lines.key(6, "stop_path", &scalar(&stop.path));
        lines.key(6, "stop_value", if stop.value { "true" } else { "false" });
    }
}

fn render_pagination(lines: &mut Lines, proposal: &Proposal) {
    let stop_text = |stop: Option<&Stop>| match stop {
        Some(stop) => format!(
            " `{}` = {} says the list ended, so no empty page is fetched.",
            stop.path, stop.value
        ),
        None => String::new(),
    };
    match &proposal.pagination {
        PaginationGuess::LinkHeader => {
            lines.comment(
                4,
                "pagination: the response has a Link header with rel=\"next\"; that URL is followed as is \
                 (it carries the query).",
            );
            lines.line(4, "pagination:");
            lines.key(6, "type", "link_header");
        }
        PaginationGuess::NextUrl {
            next_url_path,
            stop,
            relative,
        } => {
            let mut why = format!(
                "pagination: `{next_url_path}` holds the next page's URL, followed as is.{}",
                stop_text(stop.as_ref())
            );
            if *relative {
                why.push_str(
                    " TODO check: the URL is relative; if it drops the query (page size, filters), a \
                     cursor in the body is the better choice.",
                );
            }
            lines.comment(4, &why);
            lines.line(4, "pagination:");
            lines.key(6, "type", "next_url");
            lines.key(6, "next_url_path", &scalar(next_url_path));
            stop_lines(lines, stop.as_ref());
        }
        PaginationGuess::Cursor {
            cursor_path,
            cursor_param,
            param_confirmed,
            stop,
        } => {
            let param = if *param_confirmed {
                format!("the next link on the page sends it as `{cursor_param}`.")
            } else {
                format!("TODO check that the API takes it back as `{cursor_param}` (guessed from the member's name).")
            };
            lines.comment(
                4,
                &format!(
                    "pagination: `{cursor_path}` holds the next page's cursor; {param} A missing or null cursor \
                     ends the list.{}",
                    stop_text(stop.as_ref())
                ),
            );
            lines.line(4, "pagination:");
            lines.key(6, "type", "cursor");
            lines.key(6, "cursor_path", &scalar(cursor_path));
            lines.key(6, "cursor_param", &scalar(cursor_param));
            stop_lines(lines, stop.as_ref());
        }
        PaginationGuess::LastRecord {
            last_record_path,
            cursor_param,
            stop,
        } => {
            lines.comment(
                4,
                &format!(
                    "pagination: `{}` says whether more pages follow and records carry a unique `{last_record_path}`: \
                     the next page is asked for with the last record's key (Stripe's convention). TODO check the \
                     parameter's name (`{cursor_param}`; others use `after` or `since_id`).",
                    stop.path
                ),
            );
            lines.line(4, "pagination:");
            lines.key(6, "type", "cursor");
            lines.key(6, "last_record_path", &scalar(last_record_path));
            lines.key(6, "cursor_param", &scalar(cursor_param));
            stop_lines(lines, Some(stop));
        }
        PaginationGuess::Offset {
            offset_param,
            limit_param,
            limit,
            total_path,
            assumed,
        } => {
            let mut why = format!("pagination: offset `{offset_param}` and page size `{limit_param}`");
            match total_path {
                Some(total) => why.push_str(&format!(", stopping at the total in `{total}`.")),
                None => why.push_str("; a short page is the last."),
            }
            if *assumed {
                why.push_str(
                    " TODO check: only a total was seen, no offset parameter; the API may number pages \
                     instead (type: page_number, page_param: page).",
                );
            }
            lines.comment(4, &why);
            lines.line(4, "pagination:");
            lines.key(6, "type", "offset");
            lines.key(6, "offset_param", &scalar(offset_param));
            lines.key(6, "limit_param", &scalar(limit_param));
            lines.key(6, "limit", &limit.to_string());
            if let Some(total) = total_path {
                lines.key(6, "total_path", &scalar(total));
            }
        }
        PaginationGuess::PageNumber {
            page_param,
            page_size_param,
            page_size,
            start_page,
            total_pages_path,
        } => {
            let mut why = format!("pagination: the request numbers pages with `{page_param}` (from {start_page})");
            match page_size_param {
                Some(size) => why.push_str(&format!(", {page_size} records each (`{size}`)")),
                None => why.push_str(&format!(
                    ", TODO check the API's page size ({page_size} records on this page; add page_size_param if it takes one)"
                )),
            }
            match total_pages_path {
                Some(total) => why.push_str(&format!("; `{total}` gives the page count.")),
                None => why.push_str("; a short page is the last."),
            }
            lines.comment(4, &why);
            lines.line(4, "pagination:");
            lines.key(6, "type", "page_number");
            lines.key(6, "page_param", &scalar(page_param));
            if let Some(size) = page_size_param {
                lines.key(6, "page_size_param", &scalar(size));
            }
            lines.key(6, "page_size", &page_size.to_string());
            lines.key(6, "start_page", &start_page.to_string());
            if let Some(total) = total_pages_path {
                lines.key(6, "total_pages_path", &scalar(total));
            }
        }
        PaginationGuess::None { page_looks_full } => {
            let mut why = "pagination: TODO none seen on this page (no Link header, no next URL, cursor, \
                           has_more, total or page parameter). Only the first page is read until one is set: \
                           if the API pages, choose link_header, next_url, cursor, offset or page_number. \
                           Tip: ask for a small page (e.g. --param limit=2) so that a next page shows."
                .to_owned();
            if *page_looks_full {
                why.push_str(
                    " The page holds exactly as many records as the page size asked for: more pages are likely.",
                );
            }
            lines.comment(4, &why);
            lines.line(4, "pagination:");
            lines.key(6, "type", "none");
        }
    }
}

fn order_text(order: Order) -> &'static str {
    match order {
        Order::Ascending => "ascending on this page",
        Order::Descending => "newest first on this page",
        Order::Unordered => "in no order on this page",
        Order::Unknown => "order unknown (one record, or all equal)",
    }
}

fn render_incremental(lines: &mut Lines, proposal: &Proposal) {
    match &proposal.incremental {
        CursorGuess::Found {
            field,
            field_format,
            order,
            param,
            start,
            format,
        } => {
            let sorted = *order == Order::Ascending;
            let mut why = format!(
                "incremental: `{field}` holds {} in every record ({}); the request's `{param}` looks like its \
                 \"changed since\" filter and was given as {}, so that is the format every bound is sent in. \
                 The checkpoint moves to the newest stored `{field}`.",
                field_format.describe(),
                order_text(*order),
                format.describe()
            );
            if !sorted {
                why.push_str(
                    " sorted: false, as ascending order was not seen: the checkpoint moves once the whole \
                     window is stored.",
                );
            }
            if field.to_ascii_lowercase().contains("created") {
                why.push_str(
                    " TODO check: a creation time never changes, so later updates to a record are not re-read.",
                );
            }
            why.push_str(" TODO: a lookback (e.g. 1m) re-reads records changed while the previous run paged.");
            lines.comment(4, &why);
            lines.line(4, "incremental:");
            lines.key(6, "cursor_field", &scalar(field));
            lines.key(6, "param", &scalar(param));
            lines.key(6, "start", &scalar(start));
            lines.key(6, "format", format.as_str());
            lines.key(6, "sorted", if sorted { "true" } else { "false" });
        }
        CursorGuess::FieldOnly {
            field,
            field_format,
            order,
        } => {
            lines.comment(
                4,
                &format!(
                    "incremental: TODO `{field}` holds {} in every record ({}) and could be the cursor, but \
                     no request parameter that filters on it was given (e.g. --param updated_since=...). \
                     Until one is set, the stream is read in full every run (safe). To read only changes, \
                     uncomment this block and set `param` to the API's \"changed since\" parameter:",
                    field_format.describe(),
                    order_text(*order)
                ),
            );
            let start = match field_format {
                super::infer::TimeFormat::Rfc3339 => "2024-01-01T00:00:00Z",
                super::infer::TimeFormat::Date => "2024-01-01",
                super::infer::TimeFormat::UnixSeconds => "1704067200",
                super::infer::TimeFormat::UnixMillis => "1704067200000",
            };
            lines.line(4, "# incremental:");
            lines.line(4, &format!("#   cursor_field: {}", scalar(field)));
            lines.line(4, "#   param: TODO_changed_since_parameter");
            lines.line(4, &format!("#   start: \"{start}\""));
            lines.line(4, &format!("#   format: {}", field_format.as_str()));
            lines.line(
                4,
                &format!(
                    "#   sorted: {}",
                    if *order == Order::Ascending { "true" } else { "false" }
                ),
            );
        }
        CursorGuess::None => {
            let text = if proposal.records.shape == Shape::Document {
                "incremental: none: the document is read whole on every run."
            } else {
                "incremental: none: no field holds a time (RFC 3339, date, Unix seconds or milliseconds) in every \
                 record, so the stream is read in full every run (safe). TODO: if the API filters on a change \
                 time, add incremental (cursor_field, param, start, format)."
            };
            lines.comment(4, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back_as_the_same_string() {
        for text in [
            "id",
            "/case/case_id",
            "http://127.0.0.1:8080/v1",
            "true",
            "no",
            "100",
            "",
            "a: b",
            "x #y",
            "${env:TOKEN}",
            "created[gte]",
            "line\nbreak",
            "é\u{85}\u{1F600}",
            "trailing:",
            "-dash",
            "'quote\"",
        ] {
            let yaml = format!("key: {}\n", scalar(text));
            let read: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(read["key"].as_str(), Some(text), "{yaml}");
        }
    }

    #[test]
    fn comments_stay_comments_whatever_they_quote() {
        let mut lines = Lines::default();
        lines.comment(4, "field `a\nkey: injected` and \r more \u{2028} text");
        lines.line(0, "key: 1");
        let read: serde_yaml_ng::Value = serde_yaml_ng::from_str(&lines.text).unwrap();
        assert_eq!(read, serde_yaml_ng::from_str::<serde_yaml_ng::Value>("key: 1").unwrap());
        assert!(lines.text.lines().all(|line| line.len() <= WIDTH + 40));
    }

    #[test]
    fn parameter_values_keep_numbers_and_booleans() {
        assert_eq!(param_value("100"), "100");
        assert_eq!(param_value("0100"), "\"0100\"");
        assert_eq!(param_value("false"), "false");
        assert_eq!(param_value("all"), "all");
    }
}
