//! TLS failures of database connections. A server certificate that does not verify (an
//! unknown CA, a host name it does not name, an expired certificate) is met again by every
//! retry and every rerun: it is a `CONFIG_ERROR`, not retried, whose message says why and
//! what to set; the drivers' own messages hide the cause ("error performing TLS handshake").

use std::error::Error;

use super::DatabaseError;

/// `Some` when `error` is a server certificate that did not verify.
pub(super) fn certificate_failure(error: &(dyn Error + 'static), doing: &str) -> Option<DatabaseError> {
    let message = crate::error::untrusted_certificate(error)?;
    Some(DatabaseError::config(format!("{doing}: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_failure_is_a_config_error_naming_the_key() {
        // Finding it in a driver's error chain: crate::error::certificate_error's test.
        let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let failure = certificate_failure(&rustls, "postgres: connecting").expect("a certificate failure");
        assert_eq!(failure.code, crate::error::ErrorCode::ConfigError);
        assert!(!failure.retryable);
        assert!(failure.message.contains("UnknownIssuer"), "{}", failure.message);
        assert!(failure.message.contains("source.tls.ca_file"));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(certificate_failure(&refused, "connecting").is_none());
    }
}
