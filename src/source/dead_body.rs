//! The body a dead-lettered page keeps.
//!
//! A page held in memory keeps all of its bytes. A page that was spilled to a temporary file
//! (past `source.spill_threshold`) and is longer than [`HEAD`] keeps its first [`HEAD`]
//! bytes, cut at a character boundary when the body is UTF-8, with the whole body's length
//! (`_raw_length`) and SHA-256 (`_payload_sha256`): a hostile or broken source cannot make
//! one dead letter cost the whole body in memory, and the page can still be found and its
//! replay checked by hash.

use std::io::{self, Read, Seek, SeekFrom};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Bytes a spilled page keeps in its dead letter.
pub const HEAD: usize = 1 << 20;

/// Reader buffer for hashing a spilled body.
const BUFFER: usize = 256 << 10;

/// A dead-lettered page's bytes.
pub enum DeadBody {
    /// The exact body.
    Whole(Bytes),
    /// The first bytes of a spilled body, with the whole body's length and hex SHA-256.
    Head { head: Bytes, len: u64, sha256: String },
}

impl DeadBody {
    /// What a dead letter keeps of `body`; `spilled` when the body passed
    /// `source.spill_threshold` (and was read back from its file).
    pub fn of(body: Bytes, spilled: bool) -> Self {
        if !spilled || body.len() <= HEAD {
            return DeadBody::Whole(body);
        }
        let sha256 = crate::hash::sha256_hex(&body);
        let len = body.len() as u64;
        let cut = char_boundary(&body, HEAD);
        DeadBody::Head {
            head: body.slice(..cut),
            len,
            sha256,
        }
    }

    /// What a dead letter keeps of a spilled body of `len` bytes, read from its file
    /// without holding more than [`HEAD`] bytes of it.
    pub fn from_file(file: &mut std::fs::File, len: u64) -> io::Result<Self> {
        file.seek(SeekFrom::Start(0))?;
        let keep = len.min(HEAD as u64) as usize;
        let mut head = vec![0; keep];
        file.read_exact(&mut head)?;
        let mut hasher = Sha256::new();
        hasher.update(&head);
        let mut buffer = vec![0; BUFFER];
        let mut rest = (&mut *file).take(len - keep as u64);
        loop {
            let read = rest.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        let sha256 = crate::hash::hex_lower(&hasher.finalize());
        if len as usize <= HEAD {
            // Small enough to keep whole (a spill threshold under `HEAD`).
            debug_assert_eq!(crate::hash::sha256_hex(&head), sha256);
            return Ok(DeadBody::Whole(Bytes::from(head)));
        }
        let cut = char_boundary(&head, HEAD);
        head.truncate(cut);
        Ok(DeadBody::Head {
            head: Bytes::from(head),
            len,
            sha256,
        })
    }

    /// The whole body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            DeadBody::Whole(body) => body.len() as u64,
            DeadBody::Head { len, .. } => *len,
        }
    }

    /// The bytes kept.
    pub fn kept(&self) -> &Bytes {
        match self {
            DeadBody::Whole(body) => body,
            DeadBody::Head { head, .. } => head,
        }
    }

    /// The hex SHA-256 of the whole body.
    pub fn sha256(&self) -> String {
        match self {
            DeadBody::Whole(body) => crate::hash::sha256_hex(body),
            DeadBody::Head { sha256, .. } => sha256.clone(),
        }
    }

    /// The whole body's length, when only its head is kept (`_raw_length`).
    pub fn cut_from(&self) -> Option<u64> {
        match self {
            DeadBody::Whole(_) => None,
            DeadBody::Head { len, .. } => Some(*len),
        }
    }
}

/// The length of `bytes[..at]` cut back to a character boundary when `bytes` is UTF-8 up
/// to `at` (a sequence cut by `at` is dropped); `at` otherwise (the kept bytes are not
/// UTF-8 anyway and go to `_raw_base64`). At most `bytes.len()`.
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let at = at.min(bytes.len());
    match std::str::from_utf8(&bytes[..at]) {
        Ok(_) => at,
        // Only an incomplete sequence at the very end: cut before it.
        Err(error) if error.error_len().is_none() => error.valid_up_to(),
        Err(_) => at,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn small_or_unspilled_bodies_are_kept_whole() {
        let body = Bytes::from(vec![b'x'; HEAD + 10]);
        assert!(matches!(DeadBody::of(body.clone(), false), DeadBody::Whole(b) if b.len() == HEAD + 10));
        let small = Bytes::from_static(b"not json");
        assert!(matches!(DeadBody::of(small, true), DeadBody::Whole(_)));
    }

    #[test]
    fn a_spilled_body_keeps_its_head_at_a_character_boundary_and_the_whole_hash() {
        // A three-byte character straddles the cut.
        let mut body = vec![b'a'; HEAD - 1];
        body.extend_from_slice("€".as_bytes());
        body.extend_from_slice(&[b'z'; 100]);
        let dead = DeadBody::of(Bytes::from(body.clone()), true);
        assert_eq!(dead.kept().len(), HEAD - 1);
        assert!(std::str::from_utf8(dead.kept()).is_ok());
        assert_eq!(dead.len(), body.len() as u64);
        assert_eq!(dead.cut_from(), Some(body.len() as u64));
        assert_eq!(dead.sha256(), crate::hash::sha256_hex(&body));

        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&body).unwrap();
        let from_file = DeadBody::from_file(&mut file, body.len() as u64).unwrap();
        assert_eq!(from_file.kept(), dead.kept());
        assert_eq!(from_file.sha256(), dead.sha256());
        assert_eq!(from_file.cut_from(), dead.cut_from());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_cut_at_the_limit() {
        let mut body = vec![0xff; HEAD + 5];
        body[0] = b'{';
        let dead = DeadBody::of(Bytes::from(body), true);
        assert_eq!(dead.kept().len(), HEAD);
    }

    #[test]
    fn a_file_under_the_head_is_kept_whole() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"{\"data\": [1,").unwrap();
        let dead = DeadBody::from_file(&mut file, 12).unwrap();
        assert!(matches!(&dead, DeadBody::Whole(b) if &b[..] == b"{\"data\": [1,"));
        assert_eq!(dead.cut_from(), None);
    }
}
