//! Whether a scheme's pages can be fetched ahead: only when the next page's token does not
//! depend on the page (`offset + limit`, `page + 1`). `extract/prefetch.rs` does the
//! fetching and discards what the paginator does not confirm.

use super::PageToken;
use super::config::PaginationConfig;

/// How a page's token predicts its successor's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `offset + limit`.
    Offset(u64),
    /// `page + 1`.
    Page,
}

impl Step {
    /// The token of the page after `token`, when this step predicts it.
    pub fn after(self, token: &PageToken) -> Option<PageToken> {
        match (self, token) {
            (Step::Offset(limit), PageToken::Offset(offset)) => Some(PageToken::Offset(offset + limit)),
            (Step::Page, PageToken::Page(number)) => Some(PageToken::Page(number + 1)),
            _ => None,
        }
    }
}

impl PaginationConfig {
    /// How the next token follows from this one, or `None` when only the page says
    /// (cursor, next URL, link header) or there is no next page.
    pub fn step(&self) -> Option<Step> {
        match self {
            PaginationConfig::Offset { limit, .. } => Some(Step::Offset(limit.get())),
            PaginationConfig::PageNumber { .. } => Some(Step::Page),
            _ => None,
        }
    }
}
