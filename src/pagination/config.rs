//! `streams[].pagination`: each scheme's settings, defaults and checks (made without I/O).
//! The rest of a scheme is in this folder: the next token ([`super::Paginator`]), where the
//! token goes in a request ([`super::inject`]), whether pages can be fetched ahead
//! ([`super::ahead`]) and the total it announces for progress ([`super::total`]).

use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use crate::http::config::Method;
use crate::settings::ConfigError;
use crate::settings::check::{check_field, check_pointer, non_empty};
use crate::settings::nonzero;

/// Where a page token (cursor, offset, page number) goes in the next request.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum InjectInto {
    #[default]
    Query,
    Body,
    Header,
}

/// `streams[].pagination`, chosen by `type`.
///
/// (`none` has no fields rather than being a unit variant, so a misplaced key is refused:
/// see [`crate::http::config::AuthConfig`].)
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaginationConfig {
    None {},
    Cursor {
        /// JSON pointer to the next cursor in the response body. Exactly one of
        /// `cursor_path` and `last_record_path` is set. Default: none.
        #[serde(default)]
        cursor_path: Option<String>,
        /// Field of the page's last record (a JSON pointer or a top-level name) that is the
        /// next cursor, for APIs like Stripe's `starting_after=<last id>`. Default: none.
        #[serde(default)]
        last_record_path: Option<String>,
        /// Name of the parameter that carries the cursor.
        cursor_param: String,
        #[serde(default)]
        inject_into: InjectInto,
        /// JSON pointer to a value in the body that says the stream ended, compared with
        /// `stop_value` (Zendesk `/end_of_stream`; Stripe `/has_more` with `stop_value:
        /// false`). Default: none.
        #[serde(default)]
        stop_path: Option<String>,
        /// The value at `stop_path` that ends the stream. Default: true.
        #[serde(default = "default_stop_value")]
        stop_value: serde_json::Value,
        /// Most pages to read; reaching it while more remain is an error. Default: none.
        #[serde(default, deserialize_with = "max_pages")]
        max_pages: Option<NonZeroU64>,
        /// The stream's `records_path`, filled in when the config is loaded so that
        /// `last_record_path` finds the last record. Not a config key.
        #[serde(skip)]
        records_path: String,
    },
    NextUrl {
        /// JSON pointer to the next page's URL (absolute or relative) in the body.
        next_url_path: String,
        /// As for `cursor`: a value in the body that says the stream ended. Default: none.
        #[serde(default)]
        stop_path: Option<String>,
        /// The value at `stop_path` that ends the stream. Default: true.
        #[serde(default = "default_stop_value")]
        stop_value: serde_json::Value,
        /// Most pages to read; reaching it while more remain is an error. Default: none.
        #[serde(default, deserialize_with = "max_pages")]
        max_pages: Option<NonZeroU64>,
    },
    LinkHeader {
        /// Most pages to read; reaching it while more remain is an error. Default: none.
        #[serde(default, deserialize_with = "max_pages")]
        max_pages: Option<NonZeroU64>,
    },
    Offset {
        /// Default: `offset`.
        #[serde(default = "default_offset_param")]
        offset_param: String,
        /// Default: `limit`.
        #[serde(default = "default_limit_param")]
        limit_param: String,
        /// Page size. Default: 100.
        #[serde(default = "default_page_size", deserialize_with = "limit")]
        limit: NonZeroU64,
        /// JSON pointer to the total record count, if the API gives one.
        #[serde(default)]
        total_path: Option<String>,
        #[serde(default)]
        inject_into: InjectInto,
        /// Most pages to read; reaching it while more remain is an error. Default: none.
        #[serde(default, deserialize_with = "max_pages")]
        max_pages: Option<NonZeroU64>,
    },
    PageNumber {
        /// Default: `page`.
        #[serde(default = "default_page_param")]
        page_param: String,
        /// Default: none (the API's own page size).
        #[serde(default)]
        page_size_param: Option<String>,
        /// Default: 100.
        #[serde(default = "default_page_size", deserialize_with = "page_size")]
        page_size: NonZeroU64,
        /// Default: 1.
        #[serde(default = "default_start_page")]
        start_page: u64,
        /// JSON pointer to the total page count, if the API gives one.
        #[serde(default)]
        total_pages_path: Option<String>,
        #[serde(default)]
        inject_into: InjectInto,
        /// Most pages to read; reaching it while more remain is an error. Default: none.
        #[serde(default, deserialize_with = "max_pages")]
        max_pages: Option<NonZeroU64>,
    },
}

impl Default for PaginationConfig {
    fn default() -> Self {
        Self::None {}
    }
}

fn default_stop_value() -> serde_json::Value {
    serde_json::Value::Bool(true)
}
fn default_offset_param() -> String {
    "offset".to_owned()
}
fn default_limit_param() -> String {
    "limit".to_owned()
}
fn default_page_param() -> String {
    "page".to_owned()
}
fn default_page_size() -> NonZeroU64 {
    NonZeroU64::new(100).expect("100 is not 0")
}

// The variants are read from serde's buffer of the tagged enum, where the error path stops at
// `pagination`: these name their key in the message.
fn limit<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<NonZeroU64, D::Error> {
    nonzero::named_at_least_one(deserializer, "limit")
}
fn page_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<NonZeroU64, D::Error> {
    nonzero::named_at_least_one(deserializer, "page_size")
}
fn max_pages<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<NonZeroU64>, D::Error> {
    nonzero::named_at_least_one_or_null(deserializer, "max_pages")
}
fn default_start_page() -> u64 {
    1
}

impl PaginationConfig {
    pub fn max_pages(&self) -> Option<u64> {
        match self {
            PaginationConfig::None {} => None,
            PaginationConfig::Cursor { max_pages, .. }
            | PaginationConfig::NextUrl { max_pages, .. }
            | PaginationConfig::LinkHeader { max_pages }
            | PaginationConfig::Offset { max_pages, .. }
            | PaginationConfig::PageNumber { max_pages, .. } => max_pages.map(NonZeroU64::get),
        }
    }

    /// The JSON pointers into the response body this pagination reads (next cursor or
    /// URL, stop flag, totals).
    pub fn body_pointers(&self) -> Vec<&str> {
        match self {
            PaginationConfig::None {} | PaginationConfig::LinkHeader { .. } => vec![],
            PaginationConfig::Cursor {
                cursor_path, stop_path, ..
            } => cursor_path.iter().chain(stop_path).map(String::as_str).collect(),
            PaginationConfig::NextUrl {
                next_url_path,
                stop_path,
                ..
            } => std::iter::once(next_url_path)
                .chain(stop_path)
                .map(String::as_str)
                .collect(),
            PaginationConfig::Offset { total_path, .. } => total_path.iter().map(String::as_str).collect(),
            PaginationConfig::PageNumber { total_pages_path, .. } => {
                total_pages_path.iter().map(String::as_str).collect()
            }
        }
    }

    /// Tells a `cursor` pagination where the stream's records are, for
    /// `last_record_path`; called when the config is loaded.
    pub fn attach_records_path(&mut self, stream_records_path: &str) {
        if let PaginationConfig::Cursor { records_path, .. } = self {
            stream_records_path.clone_into(records_path);
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            PaginationConfig::None {} => "none",
            PaginationConfig::Cursor { .. } => "cursor",
            PaginationConfig::NextUrl { .. } => "next_url",
            PaginationConfig::LinkHeader { .. } => "link_header",
            PaginationConfig::Offset { .. } => "offset",
            PaginationConfig::PageNumber { .. } => "page_number",
        }
    }
}

impl PaginationConfig {
    /// Checks the scheme's settings; `at` is its path (`streams[i].pagination`), `method`
    /// the stream's (a token goes in the body only of a POST).
    pub fn validate(&self, at: &str, method: Method) -> Result<(), ConfigError> {
        let body_needed = |inject: InjectInto| -> Result<(), ConfigError> {
            if inject == InjectInto::Body && method != Method::Post {
                return Err(ConfigError::invalid(
                    format!("{at}.inject_into"),
                    "inject_into: body needs method: POST",
                ));
            }
            Ok(())
        };
        // An optional JSON pointer into the body (`stop_path`, `total_path`, ...).
        let optional_pointer = |key: &str, pointer: &Option<String>| match pointer {
            Some(pointer) => check_pointer(&format!("{at}.{key}"), pointer),
            None => Ok(()),
        };
        match self {
            PaginationConfig::None {} | PaginationConfig::LinkHeader { .. } => {}
            PaginationConfig::Cursor {
                cursor_path,
                last_record_path,
                cursor_param,
                inject_into,
                stop_path,
                ..
            } => {
                match (cursor_path, last_record_path) {
                    (Some(cursor_path), None) => check_pointer(&format!("{at}.cursor_path"), cursor_path)?,
                    (None, Some(field)) => check_field(&format!("{at}.last_record_path"), field)?,
                    _ => {
                        return Err(ConfigError::invalid(
                            at.to_owned(),
                            "set exactly one of cursor_path (the cursor in the body) and last_record_path \
                             (a field of the page's last record)",
                        ));
                    }
                }
                non_empty(&format!("{at}.cursor_param"), cursor_param)?;
                optional_pointer("stop_path", stop_path)?;
                body_needed(*inject_into)?;
            }
            PaginationConfig::NextUrl {
                next_url_path,
                stop_path,
                ..
            } => {
                check_pointer(&format!("{at}.next_url_path"), next_url_path)?;
                optional_pointer("stop_path", stop_path)?;
            }
            PaginationConfig::Offset {
                offset_param,
                limit_param,
                total_path,
                inject_into,
                ..
            } => {
                non_empty(&format!("{at}.offset_param"), offset_param)?;
                non_empty(&format!("{at}.limit_param"), limit_param)?;
                optional_pointer("total_path", total_path)?;
                body_needed(*inject_into)?;
            }
            PaginationConfig::PageNumber {
                page_param,
                total_pages_path,
                inject_into,
                ..
            } => {
                non_empty(&format!("{at}.page_param"), page_param)?;
                optional_pointer("total_pages_path", total_pages_path)?;
                body_needed(*inject_into)?;
            }
        }
        Ok(())
    }
}
