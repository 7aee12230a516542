//! Where a page token goes in the next request: the scheme's parameter names and its
//! `inject_into` (query, header or a JSON body). `extract/request.rs` places the fields.

use super::PageToken;
use super::config::{InjectInto, PaginationConfig};

impl PaginationConfig {
    /// The fields that carry `token` in the request, each with where it goes (query,
    /// header or body) and its name; a whole next URL (`next_url`, `link_header`) carries
    /// itself and needs none.
    pub fn token_fields(&self, token: &PageToken) -> Vec<(InjectInto, String, serde_json::Value)> {
        match (self, token) {
            (
                PaginationConfig::Cursor {
                    cursor_param,
                    inject_into,
                    ..
                },
                PageToken::Cursor(cursor),
            ) => {
                vec![(
                    *inject_into,
                    cursor_param.clone(),
                    serde_json::Value::String(cursor.clone()),
                )]
            }
            (
                PaginationConfig::Offset {
                    offset_param,
                    limit_param,
                    limit,
                    inject_into,
                    ..
                },
                PageToken::Offset(offset),
            ) => vec![
                (*inject_into, offset_param.clone(), (*offset).into()),
                (*inject_into, limit_param.clone(), limit.get().into()),
            ],
            (
                PaginationConfig::PageNumber {
                    page_param,
                    page_size_param,
                    page_size,
                    inject_into,
                    ..
                },
                PageToken::Page(number),
            ) => {
                let mut fields = vec![(*inject_into, page_param.clone(), (*number).into())];
                if let Some(size_param) = page_size_param {
                    fields.push((*inject_into, size_param.clone(), page_size.get().into()));
                }
                fields
            }
            _ => vec![],
        }
    }
}
