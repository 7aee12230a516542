//! Records repeated within a run (same primary key, cursor and payload), as overlapping
//! pages produce them: counted as duplicates and landed once.
//!
//! The memory is bounded: the last [`DEFAULT_WINDOW`] distinct records are remembered, each
//! as a 128-bit fingerprint, so a repeat further apart than that is landed again and removed
//! downstream by primary key and cursor.

use std::collections::{HashSet, VecDeque};

use sha2::{Digest, Sha256};

/// Records remembered per stream.
pub const DEFAULT_WINDOW: usize = 100_000;

/// Remembers recent records of one stream.
#[derive(Debug)]
pub struct RunDeduper {
    seen: HashSet<u128>,
    order: VecDeque<u128>,
    window: usize,
}

impl Default for RunDeduper {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl RunDeduper {
    pub fn new(window: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            window,
        }
    }

    /// Whether this record was already seen in this run; remembers it if not.
    pub fn is_duplicate(&mut self, id: &str, cursor: Option<&str>, sha256: &str) -> bool {
        let mut hasher = Sha256::new();
        for part in [id, cursor.unwrap_or("\u{0}null"), sha256] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        let digest = hasher.finalize();
        let fingerprint = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        if !self.seen.insert(fingerprint) {
            return true;
        }
        self.order.push_back(fingerprint);
        if self.order.len() > self.window
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_cursor_and_payload_is_a_duplicate() {
        let mut deduper = RunDeduper::new(3);
        assert!(!deduper.is_duplicate("1", Some("t1"), "aa"));
        assert!(deduper.is_duplicate("1", Some("t1"), "aa"));
        assert!(
            !deduper.is_duplicate("1", Some("t1"), "bb"),
            "a changed payload is a new version"
        );
        assert!(
            !deduper.is_duplicate("1", Some("t2"), "aa"),
            "a new cursor is a new version"
        );
        assert!(!deduper.is_duplicate("1", None, "aa"));
        // The window forgets the oldest.
        assert!(!deduper.is_duplicate("1", Some("t1"), "aa"));
    }
}
