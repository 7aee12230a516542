//! Reading response bodies within a limit: a body is counted as it arrives, after
//! decompression, and reading stops at the limit, so neither a compression bomb nor an
//! endless body can take more memory than the limit allows.
//!
//! A body larger than the spill threshold (`source.spill_threshold`) is written to an
//! unnamed temporary file as it arrives instead of being held in memory: its records are
//! then read from the file one at a time ([`crate::records::spilled`]), so a page of any
//! size (up to the limit) takes the memory of a few records.

use std::io::{Seek, SeekFrom};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

/// The most bytes of an error response read to quote it in the error (the quote itself is
/// [`crate::redact::EXCERPT_CHARS`] characters).
pub const ERROR_BODY_LIMIT: u64 = 64 << 10;

/// Why a body was not read whole.
#[derive(Debug)]
pub enum ReadError {
    /// The body holds more than the limit: what was read is dropped.
    TooLarge,
    /// The connection failed while reading.
    Failed(reqwest::Error),
    /// The temporary file a large body is spilled to could not be written.
    Spill(std::io::Error),
}

/// A body read whole: in memory, or spilled to a temporary file.
#[derive(Debug)]
pub enum ReadBody {
    Memory(Bytes),
    Spilled(SpilledBody),
}

/// A body written to an unnamed temporary file (under `TMPDIR`), removed by the operating
/// system when the file is closed, whatever happens to the process.
#[derive(Debug)]
pub struct SpilledBody {
    /// The file, positioned at its start.
    pub file: std::fs::File,
    /// The body's length in bytes (decoded).
    pub len: u64,
    /// Whether the whole body is valid UTF-8.
    pub utf8: bool,
}

impl SpilledBody {
    /// Reads the whole body back into memory (for the pages the file reader does not
    /// serve); at most `max_response_size` bytes, as a body read in memory would be.
    pub fn read_all(&mut self) -> std::io::Result<Bytes> {
        use std::io::Read;
        self.file.seek(SeekFrom::Start(0))?;
        let mut bytes = Vec::with_capacity(self.len as usize);
        (&mut self.file).take(self.len).read_to_end(&mut bytes)?;
        Ok(Bytes::from(bytes))
    }
}

/// Reads the whole body of `response`, failing with [`ReadError::TooLarge`] as soon as it
/// passes `limit` bytes (decoded). A body that passes `spill_at` bytes goes on into a
/// temporary file.
pub async fn read_limited(
    response: &mut reqwest::Response,
    limit: u64,
    spill_at: Option<u64>,
) -> Result<ReadBody, ReadError> {
    // Content-Length is the encoded size: it can only tell early that a plain body is too
    // large, never that a compressed one fits.
    if response.content_length().is_some_and(|length| length > limit) {
        return Err(ReadError::TooLarge);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Failed)? {
        if (body.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
        if spill_at.is_some_and(|threshold| body.len() as u64 > threshold) {
            return spill(response, body.freeze(), limit).await.map(ReadBody::Spilled);
        }
    }
    Ok(ReadBody::Memory(body.freeze()))
}

/// Writes `start` and the rest of the body to a temporary file, within `limit`.
async fn spill(response: &mut reqwest::Response, start: Bytes, limit: u64) -> Result<SpilledBody, ReadError> {
    let file = tokio::task::spawn_blocking(tempfile::tempfile)
        .await
        .map_err(|error| ReadError::Spill(std::io::Error::other(error)))?
        .map_err(ReadError::Spill)?;
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let mut utf8 = Utf8Check::default();
    let mut len = start.len() as u64;
    utf8.feed(&start);
    writer.write_all(&start).await.map_err(ReadError::Spill)?;
    drop(start);
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Failed)? {
        len = len.saturating_add(chunk.len() as u64);
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        utf8.feed(&chunk);
        writer.write_all(&chunk).await.map_err(ReadError::Spill)?;
    }
    writer.flush().await.map_err(ReadError::Spill)?;
    let mut file = writer.into_inner().into_std().await;
    file.seek(SeekFrom::Start(0)).map_err(ReadError::Spill)?;
    Ok(SpilledBody {
        file,
        len,
        utf8: utf8.finish(),
    })
}

/// Checks that a text arriving in pieces is UTF-8, whatever the cuts between pieces.
#[derive(Debug)]
struct Utf8Check {
    /// The start of a sequence cut at the end of the last piece (at most 3 bytes).
    carry: Vec<u8>,
    valid: bool,
}

impl Default for Utf8Check {
    fn default() -> Self {
        Self {
            carry: Vec::new(),
            valid: true,
        }
    }
}

impl Utf8Check {
    fn feed(&mut self, mut piece: &[u8]) {
        if !self.valid {
            return;
        }
        while !self.carry.is_empty() {
            let Some((&byte, rest)) = piece.split_first() else {
                return;
            };
            piece = rest;
            self.carry.push(byte);
            match std::str::from_utf8(&self.carry) {
                Ok(_) => self.carry.clear(),
                Err(error) if error.error_len().is_some() => {
                    self.valid = false;
                    return;
                }
                Err(_) => {}
            }
        }
        if let Err(error) = std::str::from_utf8(piece) {
            match error.error_len() {
                Some(_) => self.valid = false,
                None => self.carry = piece[error.valid_up_to()..].to_vec(),
            }
        }
    }

    fn finish(&self) -> bool {
        self.valid && self.carry.is_empty()
    }
}

/// Reads at most `limit` bytes of `response`'s body, for quoting it; the rest is not read.
pub async fn read_prefix(response: &mut reqwest::Response, limit: u64) -> Bytes {
    let mut body = BytesMut::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = (limit as usize).saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() as u64 >= limit {
            break;
        }
    }
    body.freeze()
}

#[cfg(test)]
mod tests {
    use super::Utf8Check;

    /// Every cut of valid and invalid texts gives what checking the whole text gives.
    #[test]
    fn utf8_is_checked_across_any_cut() {
        let texts: [&[u8]; 6] = [
            "caf\u{e9} \u{1F600} \u{20AC}".as_bytes(),
            b"caf\xe9",
            b"\xf0\x9f\x98",
            b"ok\xf0\x9f\x98\x80ok",
            b"\xed\xa0\x80",
            b"",
        ];
        for text in texts {
            let whole = std::str::from_utf8(text).is_ok();
            for cut in 0..=text.len() {
                for second in cut..=text.len() {
                    let mut check = Utf8Check::default();
                    check.feed(&text[..cut]);
                    check.feed(&text[cut..second]);
                    check.feed(&text[second..]);
                    assert_eq!(check.finish(), whole, "{text:?} cut at {cut} and {second}");
                }
            }
        }
    }
}
