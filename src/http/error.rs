//! The HTTP error type: what failed, where, and whether a retry could help.

use std::fmt;

use crate::error::{Classify, ErrorCode};

/// The part of the HTTP stack an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subsystem {
    /// Connecting, TLS, sending and receiving.
    Transport,
    /// Credentials: applying them, fetching or refreshing tokens, keeping rotated ones.
    Auth,
    /// The rate limiter and the circuit breaker.
    RateLimit,
    /// Reading a response that is not what was expected (a token endpoint's JSON).
    Deserialize,
}

impl Subsystem {
    /// The name used in logs: `transport`, `auth`, `rate_limit`, `deserialize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subsystem::Transport => "transport",
            Subsystem::Auth => "auth",
            Subsystem::RateLimit => "rate_limit",
            Subsystem::Deserialize => "deserialize",
        }
    }
}

/// What happened to a request that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No connection could be made: the request never reached the source, so it is safe to
    /// send again whatever its method.
    Connect,
    /// The connection failed after the request may have been sent (reset, timeout, TLS).
    Transport,
    /// The source answered with a status that is not a success.
    Status,
    /// The response body could not be read.
    Body,
    /// Credentials could not be obtained, applied or kept.
    Credentials,
    /// The circuit breaker is open: the request was not sent.
    CircuitOpen,
    /// Waiting (for a rate limit, mostly) would pass the run's deadline: the stream stops
    /// cleanly at its last checkpoint with status `partial`.
    RunDeadline,
    /// The response body passed `source.max_response_size`: reading stopped there.
    TooLarge,
    /// The source redirected where `source.redirects` does not allow.
    Redirect,
    /// A large body could not be spilled to a temporary file (a local disk error).
    Spill,
    /// The host name resolved only to link-local or cloud metadata addresses.
    Address,
}

/// A failed request, after any retries. It carries everything the manifest and the logs
/// say about a failure; the URL is redacted and the message is scrubbed when displayed.
#[derive(Clone, Debug)]
pub struct HttpError {
    /// The stable error code (`NETWORK_ERROR`, `AUTH_FAILED`, `RATE_LIMIT`, ...).
    pub code: ErrorCode,
    /// The response status, when the source answered.
    pub status: Option<u16>,
    /// Whether sending the request again later could succeed.
    pub retryable: bool,
    /// The source's request id (from a request-id response header) or the `X-Request-Id`
    /// Landfall sent.
    pub request_id: String,
    /// Attempts sent to the source, the failed one included (0 when none was sent).
    pub attempt: u32,
    pub method: &'static str,
    /// The URL with secrets masked.
    pub url: String,
    pub subsystem: Subsystem,
    pub reason: Reason,
    pub message: String,
}

impl HttpError {
    /// Whether this failure stops the stream cleanly (status `partial`) instead of failing it.
    pub fn stops_cleanly(&self) -> bool {
        self.reason == Reason::RunDeadline
    }
}

/// What every error of one attempt shares: the request it concerns.
#[derive(Clone, Debug)]
pub(crate) struct ErrorContext {
    pub method: &'static str,
    pub url: String,
    pub request_id: String,
    pub attempt: u32,
}

impl ErrorContext {
    /// An error about this request.
    pub fn error(
        &self,
        code: ErrorCode,
        status: Option<u16>,
        retryable: bool,
        subsystem: Subsystem,
        reason: Reason,
        message: impl Into<String>,
    ) -> HttpError {
        HttpError {
            code,
            status,
            retryable,
            request_id: self.request_id.clone(),
            attempt: self.attempt,
            method: self.method,
            url: self.url.clone(),
            subsystem,
            reason,
            message: message.into(),
        }
    }
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

/// Whether a response carries rate-limit evidence: a `Retry-After`, or a remaining count of
/// zero (`X-RateLimit-Remaining` or `RateLimit-Remaining`) with its reset
/// (`X-RateLimit-Reset` or `RateLimit-Reset`). GitHub answers both its primary limit and its
/// secondary limits with `403` and these headers; a `403` without them is a refusal.
pub fn rate_limit_evidence(headers: &reqwest::header::HeaderMap) -> bool {
    let number = |names: &[&str]| super::rate_limit::header_number(headers, names);
    headers.contains_key(reqwest::header::RETRY_AFTER)
        || (number(&["x-ratelimit-remaining", "ratelimit-remaining"]) == Some(0.0)
            && number(&["x-ratelimit-reset", "ratelimit-reset"]).is_some())
}

/// The status a refused response is treated as: a `403` with rate-limit evidence is a rate
/// limit (`429`: code `RATE_LIMIT`, retried and waited out as a `429` is); any other status
/// is itself.
pub fn effective_status(status: u16, headers: &reqwest::header::HeaderMap) -> u16 {
    if status == 403 && rate_limit_evidence(headers) {
        429
    } else {
        status
    }
}

/// The code of a transport failure (no response), and whether the request never left.
pub fn classify_transport(error: &reqwest::Error) -> (ErrorCode, Reason) {
    let code = if error.is_timeout() {
        ErrorCode::Timeout
    } else {
        ErrorCode::NetworkError
    };
    let reason = if error.is_connect() {
        Reason::Connect
    } else {
        Reason::Transport
    };
    (code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_403_with_rate_limit_evidence_is_a_rate_limit() {
        // GitHub's secondary limit: 403 with Retry-After.
        let secondary = headers(&[("retry-after", "60")]);
        assert_eq!(effective_status(403, &secondary), 429);
        // GitHub's primary limit: 403 with nothing remaining until the reset.
        let primary = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000000")]);
        assert_eq!(effective_status(403, &primary), 429);
        assert_eq!(
            effective_status(
                403,
                &headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "30")])
            ),
            429
        );
        assert_eq!(classify_status(effective_status(403, &primary)).0, ErrorCode::RateLimit);
    }

    #[test]
    fn a_403_without_evidence_stays_a_refusal() {
        assert_eq!(effective_status(403, &HeaderMap::new()), 403);
        // Requests left, or no reset to wait for: a permission problem, not a limit.
        let left = headers(&[("x-ratelimit-remaining", "4999"), ("x-ratelimit-reset", "1700000000")]);
        assert_eq!(effective_status(403, &left), 403);
        assert_eq!(effective_status(403, &headers(&[("x-ratelimit-remaining", "0")])), 403);
        assert_eq!(
            effective_status(403, &headers(&[("x-ratelimit-remaining", "junk")])),
            403
        );
        assert_eq!(classify_status(403).0, ErrorCode::AuthFailed);
        // Only 403 is reread: a 401 with Retry-After is still a refusal.
        assert_eq!(effective_status(401, &headers(&[("retry-after", "60")])), 401);
    }
}
