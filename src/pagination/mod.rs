//! Pagination: from one page's response, the token of the next page, or the end.
//!
//! A cursor or next URL that repeats is an error (it would loop forever), and so is a page
//! whose records are exactly the previous page's (an API that ignores the offset, page or
//! cursor parameter), and reaching `max_pages` while the API still has more: never a
//! silent stop.

use std::collections::HashSet;

use reqwest::header::HeaderMap;
use url::Url;

pub mod ahead;
pub mod config;
pub mod inject;
pub mod total;

use crate::error::{Classify, ErrorCode};
use crate::records;
use config::PaginationConfig;

/// What selects a page in a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageToken {
    /// The first request of a stream that has no token of its own.
    Initial,
    Cursor(String),
    /// A complete URL to fetch as is (next_url, link_header).
    Url(Url),
    Offset(u64),
    Page(u64),
}

/// Why pagination could not continue.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PaginationError {
    #[error("the API returned cursor `{0}` again after page {1}; stopping instead of looping forever")]
    RepeatedCursor(String, u64),
    #[error("the API returned next URL `{0}` again after page {1}; stopping instead of looping forever")]
    RepeatedUrl(String, u64),
    #[error(
        "page {0} repeats the records of page {1}: the API ignores the pagination parameter \
         (check `{2}`); stopping instead of looping forever"
    )]
    RepeatedPage(u64, u64, String),
    #[error("reached max_pages ({0}) while the API still had more pages; raise max_pages or narrow the request")]
    MaxPages(u64),
    #[error("next page URL `{0}` is not a valid URL: {1}")]
    InvalidUrl(String, String),
    #[error("next page URL `{0}` leaves the source's origin {1}; refusing to send credentials there")]
    ForeignOrigin(String, String),
    #[error("{0}")]
    Body(String),
}

impl Classify for PaginationError {
    fn code(&self) -> ErrorCode {
        ErrorCode::PaginationError
    }

    fn retryable(&self) -> bool {
        false
    }
}

/// What the paginator needs to know about a fetched page.
pub struct PageView<'a> {
    /// The URL that answered (after any redirect): a relative next URL resolves against it
    /// (RFC 3986), while it must stay on the source's origin.
    pub url: &'a Url,
    pub headers: &'a HeaderMap,
    pub document: Option<records::Document<'a>>,
    pub records: usize,
    /// A digest of the page's records (their bytes, in order), `None` for a page without
    /// records: two consecutive pages with the same digest are the same page.
    pub records_digest: Option<u64>,
}

/// The digest [`PageView::records_digest`] expects: of each record's bytes, in order.
pub fn records_digest<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Option<u64> {
    let mut digest = RecordsDigest::default();
    for record in records {
        digest.push(record);
    }
    digest.finish()
}

/// [`records_digest`] of records that arrive one at a time.
#[derive(Default)]
pub struct RecordsDigest {
    hasher: std::hash::DefaultHasher,
    any: bool,
}

impl RecordsDigest {
    pub fn push(&mut self, record: &[u8]) {
        use std::hash::Hasher;
        self.any = true;
        self.hasher.write(record);
        self.hasher.write_u8(0xff);
    }

    pub fn finish(&self) -> Option<u64> {
        use std::hash::Hasher;
        self.any.then(|| self.hasher.finish())
    }
}

/// Walks a stream's pages.
#[derive(Debug)]
pub struct Paginator {
    config: PaginationConfig,
    origin: url::Origin,
    pages: u64,
    seen: HashSet<String>,
    /// The records digest of the previous page.
    previous_digest: Option<u64>,
}

impl Paginator {
    pub fn new(config: &PaginationConfig, base_url: &Url) -> Self {
        Self {
            config: config.clone(),
            origin: base_url.origin(),
            pages: 0,
            seen: HashSet::new(),
            previous_digest: None,
        }
    }

    /// The token of the first page.
    pub fn first(&self) -> PageToken {
        match &self.config {
            PaginationConfig::Offset { .. } => PageToken::Offset(0),
            PaginationConfig::PageNumber { start_page, .. } => PageToken::Page(*start_page),
            _ => PageToken::Initial,
        }
    }

    /// Pages seen so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Records one fetched page and returns the next page's token, or `None` at the end.
    pub fn next(&mut self, current: &PageToken, page: &PageView<'_>) -> Result<Option<PageToken>, PaginationError> {
        self.pages += 1;
        let next = self.next_token(current, page)?;
        let previous = std::mem::replace(&mut self.previous_digest, page.records_digest);
        if next.is_some() && page.records_digest.is_some() && page.records_digest == previous {
            return Err(PaginationError::RepeatedPage(
                self.pages,
                self.pages - 1,
                parameter_hint(&self.config),
            ));
        }
        if next.is_some()
            && let Some(max_pages) = self.config.max_pages()
            && self.pages >= max_pages
        {
            return Err(PaginationError::MaxPages(max_pages));
        }
        Ok(next)
    }

    fn next_token(&mut self, current: &PageToken, page: &PageView<'_>) -> Result<Option<PageToken>, PaginationError> {
        let pointer_text = |pointer: &str| -> Result<Option<String>, PaginationError> {
            let Some(document) = page.document else { return Ok(None) };
            let found = document.lookup(pointer).map_err(PaginationError::Body)?;
            Ok(found.and_then(records::scalar_text).filter(|text| !text.is_empty()))
        };
        match &self.config {
            PaginationConfig::None {} => Ok(None),
            PaginationConfig::Cursor {
                cursor_path,
                last_record_path,
                stop_path,
                stop_value,
                records_path,
                ..
            } => {
                if stop_reached(page.document, stop_path.as_deref(), stop_value)? {
                    return Ok(None);
                }
                let cursor = match (cursor_path, last_record_path) {
                    (Some(cursor_path), _) => pointer_text(cursor_path)?,
                    (None, Some(field)) => last_record_text(page.document, records_path, field)?,
                    (None, None) => None,
                };
                let Some(cursor) = cursor else {
                    return Ok(None);
                };
                if !self.seen.insert(cursor.clone()) || *current == PageToken::Cursor(cursor.clone()) {
                    return Err(PaginationError::RepeatedCursor(cursor, self.pages));
                }
                Ok(Some(PageToken::Cursor(cursor)))
            }
            PaginationConfig::NextUrl {
                next_url_path,
                stop_path,
                stop_value,
                ..
            } => {
                if stop_reached(page.document, stop_path.as_deref(), stop_value)? {
                    return Ok(None);
                }
                match pointer_text(next_url_path)? {
                    Some(next) => self.follow(page.url, &next).map(Some),
                    None => Ok(None),
                }
            }
            PaginationConfig::LinkHeader { .. } => {
                let next = page
                    .headers
                    .get_all(reqwest::header::LINK)
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .find_map(next_link);
                match next {
                    Some(next) => self.follow(page.url, &next).map(Some),
                    None => Ok(None),
                }
            }
            PaginationConfig::Offset { limit, total_path, .. } => {
                let PageToken::Offset(offset) = current else {
                    return Ok(None);
                };
                let next = offset.saturating_add(page.records as u64);
                if page.records == 0 || (page.records as u64) < limit.get() {
                    return Ok(None);
                }
                if let Some(total_path) = total_path
                    && let Some(total) = pointer_text(total_path)?.and_then(|text| text.parse::<u64>().ok())
                    && next >= total
                {
                    return Ok(None);
                }
                Ok(Some(PageToken::Offset(next)))
            }
            PaginationConfig::PageNumber {
                page_size,
                page_size_param,
                total_pages_path,
                ..
            } => {
                let PageToken::Page(number) = current else {
                    return Ok(None);
                };
                if page.records == 0 {
                    return Ok(None);
                }
                // A short page ends the stream only when we asked for the page size; an API's
                // own size is unknown, so there only an empty page (or the total) ends it.
                if page_size_param.is_some() && (page.records as u64) < page_size.get() {
                    return Ok(None);
                }
                if let Some(total_pages_path) = total_pages_path
                    && let Some(total) = pointer_text(total_pages_path)?.and_then(|text| text.parse::<u64>().ok())
                    && *number >= total
                {
                    return Ok(None);
                }
                Ok(Some(PageToken::Page(number.saturating_add(1))))
            }
        }
    }

    fn follow(&mut self, current: &Url, next: &str) -> Result<PageToken, PaginationError> {
        let url = current
            .join(next)
            .map_err(|error| PaginationError::InvalidUrl(crate::redact::scrub(next).into_owned(), error.to_string()))?;
        if url.origin() != self.origin {
            return Err(PaginationError::ForeignOrigin(
                crate::redact::url(&url),
                self.origin.ascii_serialization(),
            ));
        }
        if !self.seen.insert(url.as_str().to_owned()) || url == *current {
            return Err(PaginationError::RepeatedUrl(crate::redact::url(&url), self.pages));
        }
        Ok(PageToken::Url(url))
    }
}

/// The config key that names the parameter an API ignores when it repeats a page.
fn parameter_hint(config: &PaginationConfig) -> String {
    match config {
        PaginationConfig::Offset { offset_param, .. } => format!("pagination.offset_param: {offset_param}"),
        PaginationConfig::PageNumber { page_param, .. } => format!("pagination.page_param: {page_param}"),
        PaginationConfig::Cursor { cursor_param, .. } => format!("pagination.cursor_param: {cursor_param}"),
        PaginationConfig::NextUrl { next_url_path, .. } => format!("pagination.next_url_path: {next_url_path}"),
        PaginationConfig::LinkHeader { .. } | PaginationConfig::None {} => "the Link header".to_owned(),
    }
}

/// Whether the value at `stop_path` in the body equals `stop_value` (the API says the
/// stream ended). A missing value does not stop the stream.
fn stop_reached(
    document: Option<records::Document<'_>>,
    stop_path: Option<&str>,
    stop_value: &serde_json::Value,
) -> Result<bool, PaginationError> {
    let (Some(document), Some(stop_path)) = (document, stop_path) else {
        return Ok(false);
    };
    let Some(found) = document.lookup(stop_path).map_err(PaginationError::Body)? else {
        return Ok(false);
    };
    Ok(serde_json::from_str::<serde_json::Value>(found.get()).is_ok_and(|value| value == *stop_value))
}

/// The text of `field` in the last record of the page; `None` on an empty page or when
/// the field is missing, null or empty.
fn last_record_text(
    document: Option<records::Document<'_>>,
    records_path: &str,
    field: &str,
) -> Result<Option<String>, PaginationError> {
    let Some(document) = document else { return Ok(None) };
    let last = document
        .last_record(records_path)
        .map_err(|error| PaginationError::Body(error.to_string()))?;
    Ok(last
        .and_then(|record| records::field(record, field))
        .and_then(records::scalar_text)
        .filter(|text| !text.is_empty()))
}

/// The `rel="next"` target of an RFC 8288 `Link` header value.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let params_end = rest[end..].find('<').map(|offset| end + offset).unwrap_or(rest.len());
        let params = rest[end + 1..params_end].trim().trim_end_matches(',');
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &rest[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        let header = r#"<https://api.test/x?page=1>; rel="prev", <https://api.test/x?page=3>; rel="next", <https://api.test/x?page=9>; rel="last""#;
        assert_eq!(next_link(header).as_deref(), Some("https://api.test/x?page=3"));
        assert_eq!(
            next_link(r#"<https://a.test/?a=1,2>; rel="first next""#).as_deref(),
            Some("https://a.test/?a=1,2")
        );
        assert_eq!(next_link(r#"<https://api.test/x?page=1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
    }

    fn view<'a>(
        url: &'a Url,
        headers: &'a HeaderMap,
        document: Option<&'a serde_json::value::RawValue>,
        records: usize,
    ) -> PageView<'a> {
        PageView {
            url,
            headers,
            document: document.map(records::Document::new),
            records,
            records_digest: None,
        }
    }

    #[test]
    fn cursor_repeats_are_errors() {
        let config: PaginationConfig =
            serde_json::from_str(r#"{"type":"cursor","cursor_path":"/next","cursor_param":"c"}"#).unwrap();
        let base = Url::parse("https://api.test/").unwrap();
        let mut paginator = Paginator::new(&config, &base);
        let headers = HeaderMap::new();
        let body = parse(r#"{"next":"a"}"#);
        let first = paginator
            .next(&PageToken::Initial, &view(&base, &headers, Some(body), 1))
            .unwrap();
        assert_eq!(first, Some(PageToken::Cursor("a".into())));
        let error = paginator
            .next(&first.unwrap(), &view(&base, &headers, Some(body), 1))
            .unwrap_err();
        assert_eq!(error, PaginationError::RepeatedCursor("a".into(), 2));
        let end = parse(r#"{"next":null}"#);
        assert_eq!(
            paginator
                .next(&PageToken::Initial, &view(&base, &headers, Some(end), 0))
                .unwrap(),
            None
        );
    }

    fn parse(text: &'static str) -> &'static serde_json::value::RawValue {
        serde_json::from_str(text).unwrap()
    }

    fn cursor_config(json: &str, records_path: &str) -> PaginationConfig {
        let mut config: PaginationConfig = serde_json::from_str(json).unwrap();
        config.attach_records_path(records_path);
        config
    }

    #[test]
    fn cursor_from_the_last_record_until_has_more_is_false() {
        // Stripe: `starting_after` is the id of the page's last object; `has_more` says
        // whether another page exists.
        let config = cursor_config(
            r#"{"type":"cursor","last_record_path":"/id","cursor_param":"starting_after",
                "stop_path":"/has_more","stop_value":false}"#,
            "/data",
        );
        let base = Url::parse("https://api.test/v1/customers").unwrap();
        let headers = HeaderMap::new();
        let mut paginator = Paginator::new(&config, &base);
        let first = parse(r#"{"object":"list","data":[{"id":"cus_1"},{"id":"cus_2"}],"has_more":true}"#);
        let next = paginator
            .next(&PageToken::Initial, &view(&base, &headers, Some(first), 2))
            .unwrap();
        assert_eq!(next, Some(PageToken::Cursor("cus_2".into())));
        let last = parse(r#"{"object":"list","data":[{"id":"cus_3"}],"has_more":false}"#);
        assert_eq!(
            paginator
                .next(&next.unwrap(), &view(&base, &headers, Some(last), 1))
                .unwrap(),
            None,
            "has_more: false ends the stream although the page has a last record"
        );
    }

    #[test]
    fn cursor_from_the_last_record_ends_on_an_empty_page_and_refuses_repeats() {
        let config = cursor_config(
            r#"{"type":"cursor","last_record_path":"id","cursor_param":"after"}"#,
            "",
        );
        let base = Url::parse("https://api.test/items").unwrap();
        let headers = HeaderMap::new();
        let mut paginator = Paginator::new(&config, &base);
        let page = parse(r#"[{"id":7},{"id":9}]"#);
        let next = paginator
            .next(&PageToken::Initial, &view(&base, &headers, Some(page), 2))
            .unwrap();
        assert_eq!(next, Some(PageToken::Cursor("9".into())));
        assert_eq!(
            paginator.next(&next.clone().unwrap(), &view(&base, &headers, Some(page), 2)),
            Err(PaginationError::RepeatedCursor("9".into(), 2)),
            "an API that ignores the cursor must not loop"
        );
        let empty = parse("[]");
        let mut paginator = Paginator::new(&config, &base);
        assert_eq!(
            paginator
                .next(&PageToken::Initial, &view(&base, &headers, Some(empty), 0))
                .unwrap(),
            None
        );
        let not_array = parse(r#"{"id":1}"#);
        assert!(matches!(
            paginator.next(&PageToken::Initial, &view(&base, &headers, Some(not_array), 1)),
            Err(PaginationError::Body(_))
        ));
    }

    #[test]
    fn stop_path_ends_a_body_cursor_and_a_next_url() {
        // Zendesk incremental export: `end_time` is the next `start_time`, and
        // `end_of_stream: true` says there is nothing after it (the cursor is still there).
        let config = cursor_config(
            r#"{"type":"cursor","cursor_path":"/end_time","cursor_param":"start_time","stop_path":"/end_of_stream"}"#,
            "/tickets",
        );
        let base = Url::parse("https://api.test/incremental/tickets.json").unwrap();
        let headers = HeaderMap::new();
        let mut paginator = Paginator::new(&config, &base);
        let more = parse(r#"{"tickets":[{"id":1}],"end_time":1700000100,"end_of_stream":false}"#);
        let next = paginator
            .next(&PageToken::Initial, &view(&base, &headers, Some(more), 1))
            .unwrap();
        assert_eq!(next, Some(PageToken::Cursor("1700000100".into())));
        let end = parse(r#"{"tickets":[{"id":2}],"end_time":1700000200,"end_of_stream":true}"#);
        assert_eq!(
            paginator
                .next(&next.unwrap(), &view(&base, &headers, Some(end), 1))
                .unwrap(),
            None
        );
        let missing = parse(r#"{"tickets":[],"end_time":1700000300}"#);
        assert_eq!(
            Paginator::new(&config, &base)
                .next(&PageToken::Initial, &view(&base, &headers, Some(missing), 0))
                .unwrap(),
            Some(PageToken::Cursor("1700000300".into())),
            "a missing stop value does not stop the stream"
        );

        let config: PaginationConfig =
            serde_json::from_str(r#"{"type":"next_url","next_url_path":"/next_page","stop_path":"/end_of_stream"}"#)
                .unwrap();
        let mut paginator = Paginator::new(&config, &base);
        let end =
            parse(r#"{"next_page":"https://api.test/incremental/tickets.json?start_time=5","end_of_stream":true}"#);
        assert_eq!(
            paginator
                .next(&PageToken::Initial, &view(&base, &headers, Some(end), 1))
                .unwrap(),
            None
        );
        let string_true =
            parse(r#"{"next_page":"https://api.test/incremental/tickets.json?start_time=5","end_of_stream":"true"}"#);
        assert!(
            paginator
                .next(&PageToken::Initial, &view(&base, &headers, Some(string_true), 1))
                .unwrap()
                .is_some(),
            "the string \"true\" is not the JSON value true"
        );
    }

    #[test]
    fn max_pages_is_an_error_only_when_more_remain() {
        let config: PaginationConfig = serde_json::from_str(r#"{"type":"offset","limit":2,"max_pages":1}"#).unwrap();
        let base = Url::parse("https://api.test/").unwrap();
        let headers = HeaderMap::new();
        let mut paginator = Paginator::new(&config, &base);
        let error = paginator
            .next(&PageToken::Offset(0), &view(&base, &headers, None, 2))
            .unwrap_err();
        assert_eq!(error, PaginationError::MaxPages(1));
        let mut paginator = Paginator::new(&config, &base);
        assert_eq!(
            paginator
                .next(&PageToken::Offset(0), &view(&base, &headers, None, 1))
                .unwrap(),
            None
        );
    }

    #[test]
    fn next_urls_stay_on_origin() {
        let config: PaginationConfig = serde_json::from_str(r#"{"type":"next_url","next_url_path":"/next"}"#).unwrap();
        let base = Url::parse("https://api.test/v1/items").unwrap();
        let headers = HeaderMap::new();
        let mut paginator = Paginator::new(&config, &base);
        let relative = parse(r#"{"next":"items?page=2"}"#);
        assert_eq!(
            paginator
                .next(&PageToken::Initial, &view(&base, &headers, Some(relative), 1))
                .unwrap(),
            Some(PageToken::Url(Url::parse("https://api.test/v1/items?page=2").unwrap()))
        );
        let foreign = parse(r#"{"next":"https://evil.test/steal"}"#);
        assert!(matches!(
            paginator.next(&PageToken::Initial, &view(&base, &headers, Some(foreign), 1)),
            Err(PaginationError::ForeignOrigin(..))
        ));
    }

    #[test]
    fn a_page_that_repeats_the_previous_one_is_an_error_for_every_type() {
        let base = Url::parse("https://api.test/items").unwrap();
        for (config, first, second) in [
            (r#"{"type":"offset","limit":2}"#, None, None),
            (
                r#"{"type":"page_number","page_size":2,"page_size_param":"per_page"}"#,
                None,
                None,
            ),
            (
                r#"{"type":"cursor","cursor_path":"/next","cursor_param":"c"}"#,
                Some(r#"{"next":"a"}"#),
                Some(r#"{"next":"b"}"#),
            ),
            (
                r#"{"type":"next_url","next_url_path":"/next"}"#,
                Some(r#"{"next":"/items?p=2"}"#),
                Some(r#"{"next":"/items?p=3"}"#),
            ),
            (r#"{"type":"link_header"}"#, None, None),
        ] {
            let config: PaginationConfig = serde_json::from_str(config).unwrap();
            let mut paginator = Paginator::new(&config, &base);
            let digest = records_digest([br#"{"id":1}"#.as_slice(), br#"{"id":2}"#.as_slice()]);
            let mut token = paginator.first();
            let mut outcome = Ok(None);
            for (number, body) in [first, second].into_iter().enumerate() {
                let mut headers = HeaderMap::new();
                headers.insert(
                    reqwest::header::LINK,
                    format!("<https://api.test/items?p={}>; rel=\"next\"", number + 2)
                        .parse()
                        .unwrap(),
                );
                let page = PageView {
                    url: &base,
                    headers: &headers,
                    document: body.map(|body| records::Document::new(parse(body))),
                    records: 2,
                    records_digest: digest,
                };
                outcome = paginator.next(&token, &page);
                if number == 0 {
                    token = match &outcome {
                        Ok(Some(next)) => next.clone(),
                        other => panic!("{}: no second page: {other:?}", config.kind()),
                    };
                }
            }
            let error = outcome.unwrap_err();
            assert!(
                matches!(error, PaginationError::RepeatedPage(2, 1, _)),
                "{}: {error}",
                config.kind()
            );
            assert_eq!(error.code(), ErrorCode::PaginationError);
        }
    }

    #[test]
    fn different_records_or_an_empty_last_page_are_not_repeats() {
        let config: PaginationConfig = serde_json::from_str(r#"{"type":"offset","limit":1}"#).unwrap();
        let base = Url::parse("https://api.test/items").unwrap();
        let headers = HeaderMap::new();
        let mut paginator = Paginator::new(&config, &base);
        let mut token = paginator.first();
        for id in 1..=3 {
            let record = format!("{{\"id\":{id}}}");
            let page = PageView {
                url: &base,
                headers: &headers,
                document: None,
                records: 1,
                records_digest: records_digest([record.as_bytes()]),
            };
            token = paginator.next(&token, &page).unwrap().unwrap();
        }
        assert_eq!(records_digest(std::iter::empty::<&[u8]>()), None);
    }
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// No Link header and no body makes a paginator panic (cursor and next-URL
        /// extraction, totals, stop flags), whatever page it is on.
        #[test]
        fn pagination_never_panics_on_hostile_pages(
            body in crate::records::arbitrary::body(),
            link in ".*",
            records in proptest::prelude::any::<usize>(),
            at in proptest::prelude::any::<u64>(),
        ) {
            let _ = next_link(&link);
            let base = Url::parse("https://api.test/v1/items").unwrap();
            let mut headers = HeaderMap::new();
            if let Ok(value) = reqwest::header::HeaderValue::from_str(&link) {
                headers.insert(reqwest::header::LINK, value);
            }
            let document = crate::records::parse(body.as_bytes()).ok();
            for (json, token) in [
                (r#"{"type":"cursor","cursor_path":"/next","cursor_param":"c"}"#, PageToken::Initial),
                (r#"{"type":"cursor","last_record_path":"/id","cursor_param":"c","stop_path":"/next","stop_value":false}"#, PageToken::Cursor("x".into())),
                (r#"{"type":"next_url","next_url_path":"/next"}"#, PageToken::Initial),
                (r#"{"type":"link_header"}"#, PageToken::Initial),
                (r#"{"type":"offset","limit":1,"total_path":"/total"}"#, PageToken::Offset(at)),
                (r#"{"type":"page_number","total_pages_path":"/total","page_size_param":"s","page_size":1}"#, PageToken::Page(at)),
            ] {
                let config = cursor_config(json, "/data");
                let mut paginator = Paginator::new(&config, &base);
                let document = document.and_then(|raw| crate::records::page_records(raw, "/data").ok().map(|(_, page)| page));
                let view = PageView { url: &base, headers: &headers, document, records, records_digest: None };
                let _ = paginator.next(&token, &view);
            }
        }
    }
}
