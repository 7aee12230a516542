//! The error taxonomy shared by every stage: stable codes that the manifest, the logs and
//! the runbooks use, and the mapping of errors to exit codes (contract §6).

use std::fmt;
use std::process::ExitCode;

use serde::Serialize;

/// Where in a stream's run an error happened: the `stage` of the `stream_failed` event
/// (`docs/events.md`). Stable names, like the error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Before the first request: the stream's settings could not be put to use.
    Plan,
    /// Sending requests and receiving responses.
    Fetch,
    /// Reading records out of a response.
    Parse,
    /// Finding the next page.
    Paginate,
    /// The stream's data-quality limits (dead-letter ratio, breaking drift).
    Validate,
    /// Writing parts to the landing zone.
    Store,
    /// Moving the checkpoint.
    Checkpoint,
}

impl Stage {
    /// Every stage, in the order a stream meets them.
    pub const ALL: [Stage; 7] = [
        Stage::Plan,
        Stage::Fetch,
        Stage::Parse,
        Stage::Paginate,
        Stage::Validate,
        Stage::Store,
        Stage::Checkpoint,
    ];

    /// The name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Plan => "plan",
            Stage::Fetch => "fetch",
            Stage::Parse => "parse",
            Stage::Paginate => "paginate",
            Stage::Validate => "validate",
            Stage::Store => "store",
            Stage::Checkpoint => "checkpoint",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable error codes. Runbooks refer to them by name; never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    NetworkError,
    Timeout,
    AuthFailed,
    RateLimit,
    InvalidRequest,
    ServerError,
    ParsingError,
    ValidationError,
    Cancelled,
    Unsupported,
    ConfigError,
    StorageError,
    PaginationError,
    LeaseHeld,
    LeaseLost,
    /// A response body passed `source.max_response_size` (after decompression).
    ResponseTooLarge,
    /// The source redirected where `source.redirects` does not allow.
    RedirectRefused,
    /// A host name resolved only to link-local or cloud metadata addresses.
    AddressRefused,
}

impl ErrorCode {
    /// Every code, for documentation and the runbook checks.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::NetworkError,
        ErrorCode::Timeout,
        ErrorCode::AuthFailed,
        ErrorCode::RateLimit,
        ErrorCode::InvalidRequest,
        ErrorCode::ServerError,
        ErrorCode::ParsingError,
        ErrorCode::ValidationError,
        ErrorCode::Cancelled,
        ErrorCode::Unsupported,
        ErrorCode::ConfigError,
        ErrorCode::StorageError,
        ErrorCode::PaginationError,
        ErrorCode::LeaseHeld,
        ErrorCode::LeaseLost,
        ErrorCode::ResponseTooLarge,
        ErrorCode::RedirectRefused,
        ErrorCode::AddressRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NetworkError => "NETWORK_ERROR",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::RateLimit => "RATE_LIMIT",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::ServerError => "SERVER_ERROR",
            ErrorCode::ParsingError => "PARSING_ERROR",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::ConfigError => "CONFIG_ERROR",
            ErrorCode::StorageError => "STORAGE_ERROR",
            ErrorCode::PaginationError => "PAGINATION_ERROR",
            ErrorCode::LeaseHeld => "LEASE_HELD",
            ErrorCode::LeaseLost => "LEASE_LOST",
            ErrorCode::ResponseTooLarge => "RESPONSE_TOO_LARGE",
            ErrorCode::RedirectRefused => "REDIRECT_REFUSED",
            ErrorCode::AddressRefused => "ADDRESS_REFUSED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors that carry a code and know whether retrying could help.
pub trait Classify {
    fn code(&self) -> ErrorCode;
    fn retryable(&self) -> bool;
}

/// Process exit codes (contract §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Succeeded = 0,
    Failure = 1,
    Usage = 2,
    Partial = 3,
    Auth = 4,
    Transient = 75,
}

impl Exit {
    /// The exit code for a failure of this class.
    pub fn for_error(code: ErrorCode, retryable: bool) -> Self {
        match code {
            ErrorCode::ConfigError => Exit::Usage,
            ErrorCode::AuthFailed => Exit::Auth,
            ErrorCode::LeaseHeld | ErrorCode::LeaseLost | ErrorCode::Cancelled => Exit::Transient,
            _ if retryable => Exit::Transient,
            _ => Exit::Failure,
        }
    }

    /// The code as a number.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A failure as recorded in the manifest and the XCom summary.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct ErrorRecord {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl ErrorRecord {
    /// Records `error` with its message scrubbed of secrets.
    pub fn from_error<E: Classify + fmt::Display>(error: &E) -> Self {
        Self {
            code: error.code().as_str().to_owned(),
            message: crate::redact::scrub(&error.to_string()).into_owned(),
            retryable: error.retryable(),
        }
    }
}

/// Describes an error with its causes, which reqwest and `object_store` hide behind
/// `source()`.
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

/// The server-certificate error somewhere in `error`'s chain, if a TLS handshake failed
/// because the peer's certificate did not verify (an unknown CA, a host name it does not
/// name, an expired certificate). rustls's error reaches reqwest and the database drivers
/// inside an `io::Error`, whose `source()` skips what it wraps, so those are opened too.
pub fn certificate_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::CertificateError> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(rustls::Error::InvalidCertificate(certificate)) = error.downcast_ref::<rustls::Error>() {
            return Some(certificate);
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| certificate_error(inner))
        {
            return Some(inner);
        }
        next = error.source();
    }
    None
}

/// Why a connection failed, when it is the server's certificate that did not verify: met
/// again by every retry and every rerun, so callers fail with a config error, not retried.
/// Names the reason and the key that fixes it.
pub fn untrusted_certificate(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    certificate_error(error).map(|certificate| {
        format!(
            "the server's TLS certificate did not verify: {certificate} (trust the CA that signed it with \
             source.tls.ca_file, and connect with a host name the certificate names)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_inside_io_errors_is_found() {
        let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls);
        let outer = std::io::Error::other(io);
        assert_eq!(
            certificate_error(&outer),
            Some(&rustls::CertificateError::UnknownIssuer)
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(certificate_error(&refused).is_none());
    }

    /// `docs/events.md` lists every stage a `stream_failed` event can carry.
    #[test]
    fn every_stage_is_documented_for_stream_failed() {
        let events = include_str!("../docs/events.md");
        let row = events
            .lines()
            .find(|line| line.starts_with("| `stage` | string | always | `plan`"))
            .expect("the stream_failed table has its stage row");
        for stage in Stage::ALL {
            assert!(row.contains(&format!("`{stage}`")), "{stage} is missing from {row}");
        }
    }
}
