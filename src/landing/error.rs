//! Errors of the landing zone, and how `object_store`'s errors map onto them: every error
//! names the object's full URL (bucket and prefix included), and a permission error also
//! names the permission the operation needs on that store.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use super::options::Backend;
use crate::error::{Classify, ErrorCode};

/// What Landfall was doing to an object when the store answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A put, a multipart upload or a server-side copy.
    Write,
    /// A get or a head.
    Read,
    /// A listing under a prefix.
    List,
    /// A delete (the `check` probe, staging objects, state reset).
    Delete,
    /// Aborting an unfinished multipart upload.
    Abort,
}

impl Operation {
    /// The verb used in messages.
    pub fn verb(self) -> &'static str {
        match self {
            Operation::Write => "write",
            Operation::Read => "read",
            Operation::List => "list",
            Operation::Delete => "delete",
            Operation::Abort => "abort the multipart upload of",
        }
    }

    /// The permission this operation needs on `backend`, as the store's IAM names it
    /// (docs/credentials.md has the full least-privilege setup).
    pub fn needs(self, backend: Backend) -> &'static str {
        match (backend, self) {
            (Backend::S3, Operation::Write) => "s3:PutObject",
            (Backend::S3, Operation::Read) => "s3:GetObject",
            (Backend::S3, Operation::List) => "s3:ListBucket",
            (Backend::S3, Operation::Delete) => "s3:DeleteObject",
            (Backend::S3, Operation::Abort) => "s3:AbortMultipartUpload",
            (Backend::Azure, Operation::Write | Operation::Abort) => {
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write (SAS: c, w)"
            }
            (Backend::Azure, Operation::Read) => {
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read (SAS: r)"
            }
            (Backend::Azure, Operation::List) => {
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read (SAS: l)"
            }
            (Backend::Azure, Operation::Delete) => {
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete (SAS: d)"
            }
            (Backend::Gcs, Operation::Write) => {
                "storage.objects.create (and storage.objects.delete to replace a checkpoint)"
            }
            (Backend::Gcs, Operation::Read) => "storage.objects.get",
            (Backend::Gcs, Operation::List) => "storage.objects.list",
            (Backend::Gcs, Operation::Delete) => "storage.objects.delete",
            (Backend::Gcs, Operation::Abort) => "storage.multipartUploads.abort",
            (Backend::Local, Operation::Read | Operation::List) => "read permission on the folder",
            (Backend::Local, _) => "write permission on the folder",
            (Backend::Memory, _) => "nothing (in-memory store)",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// Errors from the landing zone; each names the object it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LandingError {
    #[error("invalid landing URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error("landing.options.{key}: {message}")]
    Option { key: String, message: String },
    #[error("cannot set up the {backend} client for {url}: {message}")]
    Client {
        backend: Backend,
        url: String,
        message: String,
    },
    #[error("{url} already exists; parts are written create-only and never overwritten")]
    AlreadyExists { path: String, url: String },
    #[error("{url} changed since it was read (version {expected}); the conditional update was refused")]
    VersionMismatch {
        path: String,
        url: String,
        expected: String,
    },
    #[error("permission denied to {operation} {url}: it needs {needs}; the store said: {message}")]
    PermissionDenied {
        path: String,
        url: String,
        operation: Operation,
        needs: &'static str,
        message: String,
    },
    #[error("{backend} store at {url} does not support {what}: {message}")]
    Unsupported {
        backend: Backend,
        url: String,
        what: String,
        message: String,
    },
    #[error("storage error on {url} ({operation}): {message}")]
    Store {
        path: String,
        url: String,
        operation: Operation,
        message: String,
        retryable: bool,
    },
    #[error("cannot encode {path}: {message}")]
    Encode { path: String, message: String },
}

impl Classify for LandingError {
    fn code(&self) -> ErrorCode {
        match self {
            LandingError::Url { .. } | LandingError::Option { .. } | LandingError::Client { .. } => {
                ErrorCode::ConfigError
            }
            LandingError::PermissionDenied { .. } => ErrorCode::AuthFailed,
            LandingError::Unsupported { .. } => ErrorCode::Unsupported,
            _ => ErrorCode::StorageError,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, LandingError::Store { retryable: true, .. })
    }
}

/// Where an error happened: the object and the operation, for messages.
pub(crate) struct Site<'a> {
    pub backend: Backend,
    pub path: &'a str,
    pub url: String,
    pub operation: Operation,
}

impl Site<'_> {
    /// Maps an `object_store` error. `AlreadyExists` and `Precondition` both mean "the
    /// object exists" here (S3 answers a create-only put with 412); conditional updates
    /// map `Precondition` themselves.
    pub(crate) fn error(self, error: object_store::Error) -> LandingError {
        match error {
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
                LandingError::AlreadyExists {
                    path: self.path.to_owned(),
                    url: self.url,
                }
            }
            object_store::Error::PermissionDenied { source, .. } => LandingError::PermissionDenied {
                path: self.path.to_owned(),
                url: self.url,
                operation: self.operation,
                needs: self.operation.needs(self.backend),
                message: store_said(&crate::error::describe(source.as_ref())),
            },
            object_store::Error::Unauthenticated { source, .. } => LandingError::PermissionDenied {
                path: self.path.to_owned(),
                url: self.url,
                operation: self.operation,
                needs: "valid credentials from the environment (docs/credentials.md)",
                message: store_said(&crate::error::describe(source.as_ref())),
            },
            object_store::Error::NotImplemented { operation, .. } => LandingError::Unsupported {
                backend: self.backend,
                url: self.url,
                what: operation,
                message: "see docs/credentials.md, conditional writes".to_owned(),
            },
            object_store::Error::NotSupported { source } => LandingError::Unsupported {
                backend: self.backend,
                url: self.url,
                what: self.operation.verb().to_owned(),
                message: scrub(&source.to_string()),
            },
            other if denied_by_the_file_system(&other) => LandingError::PermissionDenied {
                path: self.path.to_owned(),
                url: self.url,
                operation: self.operation,
                needs: self.operation.needs(self.backend),
                message: store_said(&crate::error::describe(&other)),
            },
            other => {
                let retryable = is_transient(&other);
                LandingError::Store {
                    path: self.path.to_owned(),
                    url: self.url,
                    operation: self.operation,
                    message: scrub(&crate::error::describe(&other)),
                    retryable,
                }
            }
        }
    }
}

/// Whether a local file system refused the operation (`EACCES`, `EPERM`, `EROFS`): a
/// permission error (exit 4), not a transient storage failure.
pub(crate) fn denied_by_the_file_system(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && is_permission_io(io)
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Whether an I/O error says the file system refused access or is read-only.
pub(crate) fn is_permission_io(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    ) || matches!(io.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS))
}

/// Whether an error is worth retrying later: a transport failure, a timeout, or a 5xx, 429
/// or 408 answer. `object_store` has already retried these with backoff (`landing.retry`)
/// by the time one reaches Landfall, so a run that fails on one exits 75 and the scheduler
/// retries the whole run, which resumes from its checkpoint.
pub(crate) fn is_transient(error: &object_store::Error) -> bool {
    let object_store::Error::Generic { source, .. } = error else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(current) = cause {
        if let Some(http) = current.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind;
            return matches!(
                http.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Timeout | HttpErrorKind::Interrupted
            );
        }
        cause = current.source();
    }
    // object_store keeps the HTTP status in a private error type; its message is stable:
    // "Server returned non-2xx status code: 503 Service Unavailable: ...".
    static STATUS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"non-2xx status code: (\d{3})").expect("valid regex"));
    STATUS
        .captures(&error.to_string())
        .and_then(|captures| captures[1].parse::<u16>().ok())
        .is_some_and(|status| status >= 500 || status == 429 || status == 408)
}

/// The store's own words from an error body: `Code: Message` of an S3, Azure or GCS XML
/// error (GCS adds `Details`, which names the missing permission), or the JSON `message`,
/// falling back to the whole description.
pub(crate) fn store_said(description: &str) -> String {
    static XML_FIELD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?s)<(Code|Message|Details)>(.*?)</(?:Code|Message|Details)>").expect("valid regex")
    });
    static JSON_MESSAGE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""message"\s*:\s*"((?:[^"\\]|\\.)*)""#).expect("valid regex"));
    let mut fields: Vec<String> = Vec::new();
    for captures in XML_FIELD.captures_iter(description) {
        // Azure appends request ids and timestamps to its message on new lines.
        let text = captures[2].lines().next().unwrap_or_default().trim().to_owned();
        if !text.is_empty() && !fields.contains(&text) {
            fields.push(text);
        }
    }
    let said = if !fields.is_empty() {
        fields.join(": ")
    } else if let Some(captures) = JSON_MESSAGE.captures(description) {
        captures[1].to_owned()
    } else {
        description.to_owned()
    };
    scrub(&said)
}

/// Masks registered secrets and the signature-bearing query parameters of presigned or SAS
/// URLs that may appear in a store's error messages.
pub(crate) fn scrub(text: &str) -> String {
    static SIGNED_QUERY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(sig|se|st|sv|sp|skoid|sktid|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|X-Goog-Signature|X-Goog-Credential)=[^&\s]+")
            .expect("valid regex")
    });
    let scrubbed = crate::redact::scrub(text);
    SIGNED_QUERY
        .replace_all(&scrubbed, |captures: &regex::Captures<'_>| {
            format!("{}={}", &captures[1], crate::redact::MASK)
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: a read-only or access-denied local landing is a permission error (exit 4),
    /// not a retryable storage error. (Root ignores EACCES, so this is checked on the error
    /// mapping rather than on a chmod-ed folder.)
    #[test]
    fn local_permission_and_read_only_errors_are_permission_denied() {
        for errno in [libc::EACCES, libc::EPERM, libc::EROFS] {
            let site = Site {
                backend: Backend::Local,
                path: "shop/_state/orders.json",
                url: "file:///landing/shop/_state/orders.json".to_owned(),
                operation: Operation::Write,
            };
            let error = site.error(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(std::io::Error::from_raw_os_error(errno)),
            });
            assert!(
                matches!(error, LandingError::PermissionDenied { .. }),
                "{errno}: {error}"
            );
            assert_eq!(error.code(), ErrorCode::AuthFailed);
            assert_eq!(crate::error::Exit::for_error(error.code(), error.retryable()).code(), 4);
        }
        let other = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(!is_permission_io(&other));
    }

    #[test]
    fn the_store_is_quoted_briefly() {
        let s3 = "Error performing PUT http://127.0.0.1:1/b/k in 2ms - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>User: arn:aws:iam::1:user/x is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::b/k\"</Message><RequestId>R</RequestId></Error>";
        assert_eq!(
            store_said(s3),
            "AccessDenied: User: arn:aws:iam::1:user/x is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::b/k\""
        );
        let azure = "<Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.\nRequestId:1\nTime:2</Message></Error>";
        assert_eq!(
            store_said(azure),
            "AuthorizationPermissionMismatch: This request is not authorized to perform this operation using this permission."
        );
        let gcs = "<Error><Code>AccessDenied</Code><Message>Access denied.</Message><Details>bot@p.iam.gserviceaccount.com does not have storage.objects.create access to the Google Cloud Storage object.</Details></Error>";
        assert!(
            store_said(gcs)
                .ends_with("does not have storage.objects.create access to the Google Cloud Storage object.")
        );
        assert_eq!(
            store_said(r#"{"error": {"code": 403, "message": "no \"access\""}}"#),
            r#"no \"access\""#
        );
    }

    #[test]
    fn sas_signatures_never_reach_a_message() {
        let text = scrub("GET http://a/c/b?sv=2021-08-06&sp=r&sig=abc%2Bdef&comp=list failed");
        assert!(!text.contains("abc%2Bdef"), "{text}");
        assert!(text.contains("sig=***") && text.contains("comp=list"), "{text}");
    }

    #[test]
    fn every_operation_names_a_permission_on_every_cloud() {
        for backend in [Backend::S3, Backend::Azure, Backend::Gcs] {
            for operation in [
                Operation::Write,
                Operation::Read,
                Operation::List,
                Operation::Delete,
                Operation::Abort,
            ] {
                assert!(!operation.needs(backend).is_empty());
            }
        }
        assert_eq!(Operation::Delete.needs(Backend::S3), "s3:DeleteObject");
        assert_eq!(Operation::List.needs(Backend::Gcs), "storage.objects.list");
    }
}
