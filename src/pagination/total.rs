//! The total a page announces for its stream (records for `offset`'s `total_path`, pages
//! for `page_number`'s `total_pages_path`), read once per page for the progress display.

use super::config::PaginationConfig;
use crate::observe::progress::Expected;
use crate::records::{self, Document};

impl PaginationConfig {
    /// The total `document` announces, if this scheme reads one.
    pub fn expected(&self, document: Document<'_>) -> Option<Expected> {
        let number = |pointer: &str| {
            document
                .lookup(pointer)
                .ok()
                .flatten()
                .and_then(records::scalar_text)
                .and_then(|text| text.parse::<u64>().ok())
        };
        match self {
            PaginationConfig::Offset {
                total_path: Some(path), ..
            } => number(path).map(Expected::Records),
            PaginationConfig::PageNumber {
                total_pages_path: Some(path),
                ..
            } => number(path).map(Expected::Pages),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: &str) -> Box<serde_json::value::RawValue> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn totals_come_from_the_configured_pointer() {
        let offset: PaginationConfig = serde_yaml_ng::from_str("{type: offset, total_path: /meta/total}").unwrap();
        let document = page(r#"{"meta":{"total":"250"},"data":[]}"#);
        assert_eq!(offset.expected(Document::new(&document)), Some(Expected::Records(250)));
        let pages: PaginationConfig = serde_yaml_ng::from_str("{type: page_number, total_pages_path: /pages}").unwrap();
        let document = page(r#"{"pages":7}"#);
        assert_eq!(pages.expected(Document::new(&document)), Some(Expected::Pages(7)));
        let cursor: PaginationConfig =
            serde_yaml_ng::from_str("{type: cursor, cursor_path: /n, cursor_param: c}").unwrap();
        assert_eq!(cursor.expected(Document::new(&document)), None);
    }
}
