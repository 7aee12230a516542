//! Reading response bodies within a limit: a body is counted as it arrives, after
//! decompression, and reading stops at the limit, so neither a compression bomb nor an
//! endless body can take more memory than the limit allows.

use bytes::{Bytes, BytesMut};

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
}

/// Reads the whole body of `response`, failing with [`ReadError::TooLarge`] as soon as it
/// passes `limit` bytes (decoded).
pub async fn read_limited(response: &mut reqwest::Response, limit: u64) -> Result<Bytes, ReadError> {
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
    }
    Ok(body.freeze())
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
