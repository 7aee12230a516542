//! Records repeated within a run (same primary key, cursor and payload), as overlapping
//! pages produce them: counted as duplicates and landed once.
//!
//! The memory is bounded: the last [`DEFAULT_WINDOW`] distinct records are remembered, each
//! as a 128-bit fingerprint, so a repeat further apart than that is landed again and removed
//! downstream by primary key and cursor.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};

/// Records remembered per stream.
pub const DEFAULT_WINDOW: usize = 100_000;

/// Remembers recent records of one stream.
#[derive(Debug)]
pub struct RunDeduper {
    seen: HashSet<u128, BuildHasherDefault<Fingerprint>>,
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
            // Twice the window: with the window's churn (a removal for every insertion) the
            // table then rehashes in place instead of doubling once it is full, so memory
            // is the same at 100k records as at 10M.
            seen: HashSet::with_capacity_and_hasher(2 * window, Default::default()),
            order: VecDeque::with_capacity(window + 1),
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

/// Hashes a fingerprint by taking its low bits: it is already a SHA-256 prefix, so
/// hashing it again (SipHash, for every record) would add nothing.
#[derive(Default)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
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
