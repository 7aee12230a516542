//! The HTTP error type: what failed, where, and whether a retry could help.

use std::fmt;

use crate::error::{Classify, ErrorCode};

/// The part of the HTTP stack an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subsystem {
    Transport,
    Auth,
    RateLimit,
    Deserialize,
}

impl Subsystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Subsystem::Transport => "transport",
            Subsystem::Auth => "auth",
            Subsystem::RateLimit => "rate_limit",
            Subsystem::Deserialize => "deserialize",
        }
    }
}

/// A failed request, after any retries.
#[derive(Clone, Debug)]
pub struct HttpError {
    pub code: ErrorCode,
    pub status: Option<u16>,
    pub retryable: bool,
    pub request_id: String,
    pub attempt: u32,
    pub method: &'static str,
    /// The URL with secrets masked.
    pub url: String,
    pub subsystem: Subsystem,
    pub message: String,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)?;
        if let Some(status) = self.status {
            write!(f, " answered {status}")?;
        }
        write!(
            f,
            ": {} (request {}, attempt {}, {})",
            crate::redact::scrub(&self.message),
            self.request_id,
            self.attempt,
            self.subsystem.as_str()
        )
    }
}

impl std::error::Error for HttpError {}

impl Classify for HttpError {
    fn code(&self) -> ErrorCode {
        self.code
    }

    fn retryable(&self) -> bool {
        self.retryable
    }
}

/// The code and subsystem of a response status that is not a success.
pub fn classify_status(status: u16) -> (ErrorCode, Subsystem) {
    match status {
        401 | 403 => (ErrorCode::AuthFailed, Subsystem::Auth),
        408 => (ErrorCode::Timeout, Subsystem::Transport),
        429 => (ErrorCode::RateLimit, Subsystem::RateLimit),
        400..=499 => (ErrorCode::InvalidRequest, Subsystem::Transport),
        _ => (ErrorCode::ServerError, Subsystem::Transport),
    }
}

/// The code of a transport failure (no response).
pub fn classify_transport(error: &reqwest::Error) -> ErrorCode {
    if error.is_timeout() {
        ErrorCode::Timeout
    } else {
        ErrorCode::NetworkError
    }
}

/// Describes a transport error with its causes, which reqwest hides behind `source()`.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
