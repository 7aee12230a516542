//! The conditional update of a `file://` landing zone. `object_store`'s local store has no
//! `PutMode::Update`, so Landfall takes an exclusive `flock` on the object's folder,
//! compares the object's current ETag (inode, modification time and size) with the
//! expected one, and replaces the file by an atomic rename while it holds the lock. Every
//! conditional update of the folder goes through the lock, on one machine; a network file
//! system whose `flock` is not shared between hosts gives no such guarantee.

use std::path::Path;

use bytes::Bytes;

use super::{Landing, LandingError, ObjectVersion, Operation};

pub(super) async fn put_if_version(
    landing: &Landing,
    folder: &Path,
    relative: &str,
    bytes: Bytes,
    expected: &ObjectVersion,
) -> Result<ObjectVersion, LandingError> {
    let mismatch = || landing.version_mismatch(relative, expected);
    let directory = match folder.join(relative).parent() {
        Some(directory) => directory.to_owned(),
        None => return Err(mismatch()),
    };
    let locked = tokio::task::spawn_blocking(move || lock(&directory))
        .await
        .map_err(std::io::Error::other)
        .and_then(|result| result);
    let _lock = match locked {
        Ok(lock) => lock,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(mismatch()),
        Err(error) => {
            return Err(landing
                .site(relative, Operation::Write)
                .error(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(error),
                }));
        }
    };
    match landing.head(relative).await? {
        Some((_, current)) if current.e_tag.is_some() && current.e_tag == expected.e_tag => {
            landing.put_replace(relative, bytes).await
        }
        _ => Err(mismatch()),
    }
}

/// How long a writer waits for another's folder lock: a holder that is paused (SIGSTOP, a
/// frozen container) must not block every other writer of the landing forever.
#[cfg(unix)]
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(unix)]
fn lock(directory: &Path) -> std::io::Result<std::fs::File> {
    let handle = std::fs::File::open(directory)?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&handle, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(handle),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(errno) => return Err(errno.into()),
        }
    }
}

#[cfg(not(unix))]
fn lock(_directory: &Path) -> std::io::Result<std::fs::File> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "conditional updates of file:// landing zones need flock (unix)",
    ))
}
