//! Single writer per stream: a lease object `_state/{stream}.lock`, created create-only,
//! holding the run id and an expiry that the run renews. A second run finds it live and
//! stops with `LEASE_HELD` (exit 75); an expired lease is taken over.
//!
//! A window run (a backfill, `--start`) leases its window instead:
//! `_state/{stream}.window-{key}.lock`, keyed by the window's bounds, with the same expiry,
//! renewal and fencing. Two runs of one window exclude each other; different windows of a
//! stream, and the run that follows the checkpoint, run side by side, and their checkpoint
//! writes meet in the checkpoint's compare-and-swap ([`crate::state::StateStore::advance`]).
//!
//! The lease fences the run's checkpoint writes: before each one the run renews its lease
//! with a compare-and-swap on the version it wrote last ([`Lease::fence`]). A run that was
//! paused past its expiry and whose lease another run took over fails that renewal and
//! writes nothing (`LEASE_LOST`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock::StoredTime;
use crate::error::{Classify, ErrorCode};
use crate::landing::{LandingError, ObjectVersion, layout};
use crate::observe::events::Events;
use crate::state::{Fence, StateStore, Written};

/// What a lease object holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub run_id: String,
    /// Unique per acquisition, so two holders never write identical bytes.
    #[serde(default)]
    pub nonce: String,
    pub stream: String,
    pub acquired_at: StoredTime,
    /// Past it (or unreadable), the lease may be taken over.
    pub expires_at: StoredTime,
    /// The window a window lease covers; absent on a stream's lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<LeasedWindow>,
}

/// The bounds of a leased window, in the stream's cursor format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeasedWindow {
    pub start: String,
    /// Absent: open-ended (up to now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// What a lease covers.
#[derive(Clone, Copy, Debug)]
pub enum LeaseScope<'a> {
    /// The whole stream: the run that follows its checkpoint (or reads it all).
    Stream,
    /// One window `[start, end)` of the stream, in its cursor format: a backfill.
    Window { start: &'a str, end: Option<&'a str> },
}

impl LeaseScope<'_> {
    fn path(&self, source: &str, stream: &str) -> String {
        match self {
            LeaseScope::Stream => layout::lease(source, stream),
            LeaseScope::Window { start, end } => {
                // The bounds may hold any character a cursor format renders: the object
                // name carries a hash of them, the record the bounds themselves.
                let bounds = format!("{start}\n{}", end.unwrap_or(""));
                let key = &crate::hash::sha256_hex(bounds.as_bytes())[..16];
                layout::window_lease(source, stream, key)
            }
        }
    }

    fn window(&self) -> Option<LeasedWindow> {
        match self {
            LeaseScope::Stream => None,
            LeaseScope::Window { start, end } => Some(LeasedWindow {
                start: (*start).to_owned(),
                end: end.map(str::to_owned),
            }),
        }
    }
}

/// A leased window as events carry it: `[start, end)`.
fn window_text(window: Option<&LeasedWindow>) -> Option<String> {
    window.map(|window| format!("[{}, {})", window.start, window.end.as_deref().unwrap_or("now")))
}

/// How a held lease's scope reads in an error: "stream `orders`" or "window [a, b) of stream `orders`".
fn describe(stream: &str, window: &Option<Box<LeasedWindow>>) -> String {
    match window {
        None => format!("stream `{stream}`"),
        Some(window) => format!(
            "window {} of stream `{stream}`",
            window_text(Some(window)).unwrap_or_default()
        ),
    }
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "{} is being extracted by run {holder} (lease {path} valid until {expires_at}); \
         retry later, or if that run is dead, wait for the lease to expire",
        describe(stream, window)
    )]
    Held {
        stream: String,
        window: Option<Box<LeasedWindow>>,
        holder: String,
        path: String,
        expires_at: String,
    },
    #[error(transparent)]
    Landing(#[from] LandingError),
}

impl Classify for LeaseError {
    fn code(&self) -> ErrorCode {
        match self {
            LeaseError::Held { .. } => ErrorCode::LeaseHeld,
            LeaseError::Landing(error) => error.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            LeaseError::Held { .. } => true,
            LeaseError::Landing(error) => error.retryable(),
        }
    }
}

/// A held lease; renewed in the background until released.
pub struct Lease {
    state: StateStore,
    path: String,
    run_id: String,
    stream: String,
    events: Events,
    held: Arc<Held>,
    stop: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
}

/// What the renewer and the fence share: the lease as last written, and whether it was lost.
struct Held {
    state: StateStore,
    path: String,
    ttl: Duration,
    inner: tokio::sync::Mutex<HeldInner>,
    /// Cancelled when the lease is found taken away.
    lost_token: CancellationToken,
    events: Events,
}

struct HeldInner {
    mine: LeaseRecord,
    version: ObjectVersion,
    /// Why the lease is not ours any more.
    lost: Option<String>,
}

impl Held {
    /// Renews the lease with a compare-and-swap on the version written last. An error
    /// that is not a lost race (storage unavailable) leaves the lease as it was.
    async fn renew(&self) -> Result<(), String> {
        let mut inner = self.inner.lock().await;
        if let Some(reason) = &inner.lost {
            return Err(reason.clone());
        }
        let mine = &inner.mine;
        let renewed = LeaseRecord {
            expires_at: expiry(self.ttl),
            ..mine.clone()
        };
        match self
            .state
            .write_object(&self.path, encode(&renewed), Some(&inner.version))
            .await
        {
            Ok(Written::Stored(version)) => {
                inner.version = version;
                inner.mine = renewed;
                Ok(())
            }
            Ok(Written::Conflict) => {
                let holder = read(&self.state, &self.path)
                    .await
                    .ok()
                    .flatten()
                    .map(|record| record.run_id)
                    .unwrap_or_else(|| "nobody".to_owned());
                let reason = format!("lease {} is now held by {holder}", self.path);
                self.events.lease_held(
                    &inner.mine.stream,
                    window_text(inner.mine.window.as_ref()).as_deref(),
                    &holder,
                    "lost",
                );
                inner.lost = Some(reason.clone());
                self.lost_token.cancel();
                Err(reason)
            }
            Err(error) => {
                self.events.lease_renewal_failed(
                    &inner.mine.stream,
                    &self.path,
                    error.code().as_str(),
                    &error.to_string(),
                );
                Err(format!("cannot renew lease {}: {error}", self.path))
            }
        }
    }
}

/// The fence a run's checkpoint writes pass: the lease, renewed on the spot.
struct LeaseFence(Arc<Held>);

#[async_trait::async_trait]
impl Fence for LeaseFence {
    async fn confirm(&self) -> Result<(), String> {
        self.0.renew().await
    }
}

/// A fence for writers that hold no lease (operator commands, tests).
pub struct Unfenced;

#[async_trait::async_trait]
impl Fence for Unfenced {
    async fn confirm(&self) -> Result<(), String> {
        Ok(())
    }
}

fn expiry(ttl: Duration) -> StoredTime {
    let now = Utc::now();
    (now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)).into()
}

fn encode(record: &LeaseRecord) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(record).expect("lease serializes"))
}

async fn read(state: &StateStore, path: &str) -> Result<Option<LeaseRecord>, LandingError> {
    Ok(read_versioned(state, path).await?.and_then(|(record, _)| record))
}

/// The lease object and its version; the record is `None` when it does not parse.
async fn read_versioned(
    state: &StateStore,
    path: &str,
) -> Result<Option<(Option<LeaseRecord>, ObjectVersion)>, LandingError> {
    Ok(state
        .read_object(path)
        .await?
        .map(|(bytes, version)| (serde_json::from_slice::<LeaseRecord>(&bytes).ok(), version)))
}

/// Whether a lease may be taken over: its expiry has passed, or cannot be read.
fn expired(record: &LeaseRecord, now: chrono::DateTime<Utc>) -> bool {
    record.expires_at.instant().is_none_or(|expiry| expiry <= now)
}

impl Lease {
    /// Takes the lease of `stream` (or of one window of it, by `scope`) for `run_id`, or
    /// says who holds it. `lost` is cancelled if the lease is ever taken away (renewal
    /// found another holder).
    pub async fn acquire(
        state: &StateStore,
        stream: &str,
        scope: LeaseScope<'_>,
        run_id: &str,
        ttl: Duration,
        events: &Events,
        lost: CancellationToken,
    ) -> Result<Self, LeaseError> {
        let landing = state.landing();
        let path = scope.path(state.source(), stream);
        let mine = LeaseRecord {
            run_id: run_id.to_owned(),
            nonce: uuid::Uuid::now_v7().to_string(),
            stream: stream.to_owned(),
            acquired_at: Utc::now().into(),
            expires_at: expiry(ttl),
            window: scope.window(),
        };
        let held = |holder: String, expires_at: String| LeaseError::Held {
            stream: stream.to_owned(),
            window: scope.window().map(Box::new),
            holder,
            path: landing.url_of(&path),
            expires_at,
        };
        let taken = || held("another run".to_owned(), "unknown".to_owned());
        let version = match state.write_object(&path, encode(&mine), None).await? {
            Written::Stored(version) => version,
            Written::Conflict => match read_versioned(state, &path).await? {
                Some((Some(current), _)) if !expired(&current, Utc::now()) => {
                    events.lease_held(
                        stream,
                        window_text(mine.window.as_ref()).as_deref(),
                        &current.run_id,
                        current.expires_at.as_str(),
                    );
                    return Err(held(current.run_id, current.expires_at.to_string()));
                }
                // Expired (or unreadable): take it over with a compare-and-swap on the
                // version just read, so of two runs taking over at once only one wins.
                Some((_, version)) => match state.write_object(&path, encode(&mine), Some(&version)).await? {
                    Written::Stored(version) => version,
                    Written::Conflict => return Err(taken()),
                },
                // Released between our create and our read: try once more.
                None => match state.write_object(&path, encode(&mine), None).await? {
                    Written::Stored(version) => version,
                    Written::Conflict => return Err(taken()),
                },
            },
        };
        events.lease_acquired(
            stream,
            window_text(mine.window.as_ref()).as_deref(),
            mine.expires_at.as_str(),
        );
        let shared = Arc::new(Held {
            state: state.clone(),
            path: path.clone(),
            ttl,
            inner: tokio::sync::Mutex::new(HeldInner {
                mine,
                version,
                lost: None,
            }),
            lost_token: lost,
            events: events.clone(),
        });
        let stop = CancellationToken::new();
        let renewer = tokio::spawn(renew(shared.clone(), stop.clone()));
        Ok(Self {
            state: state.clone(),
            path,
            run_id: run_id.to_owned(),
            stream: stream.to_owned(),
            events: events.clone(),
            held: shared,
            stop,
            renewer,
        })
    }

    /// The fence the run's checkpoint writes of this stream pass.
    pub fn fence(&self) -> Arc<dyn Fence> {
        Arc::new(LeaseFence(self.held.clone()))
    }

    /// Stops renewing and removes the lease if it is still ours.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.renewer.await;
        if self.held.inner.lock().await.lost.is_some() {
            return;
        }
        // Renewed first (conditionally): nobody can take it over between the check and the
        // delete, which no store can make conditional.
        let renewed = self.held.renew().await.is_ok();
        match read(&self.state, &self.path).await {
            Ok(Some(current)) if renewed && current.run_id == self.run_id => {
                if let Err(error) = self.state.remove_object(&self.path).await {
                    self.events.lease_release_failed(
                        &self.stream,
                        &self.path,
                        error.code().as_str(),
                        &error.to_string(),
                    );
                }
            }
            _ => {}
        }
    }
}

async fn renew(held: Arc<Held>, stop: CancellationToken) {
    let interval = (held.ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        // Compare-and-swap on the version we wrote last: if anyone else wrote the lease, it
        // is not ours any more.
        if held.renew().await.is_err() && held.inner.lock().await.lost.is_some() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::state::test_store as store;

    /// Writes the lease of `orders` as another writer (a person, another version) would.
    async fn foreign_lease(state: &StateStore, expires_at: &str) {
        let text = format!(
            r#"{{"run_id": "other", "stream": "orders", "acquired_at": "now-ish", "expires_at": "{expires_at}"}}"#
        );
        let path = layout::lease("shop", "orders");
        assert!(matches!(
            state.write_object(&path, Bytes::from(text), None).await.unwrap(),
            Written::Stored(_)
        ));
    }

    async fn acquire(state: &StateStore) -> Result<Lease, LeaseError> {
        Lease::acquire(
            state,
            "orders",
            LeaseScope::Stream,
            "mine",
            Duration::from_secs(60),
            &Events::new("mine", "shop"),
            CancellationToken::new(),
        )
        .await
    }

    #[tokio::test]
    async fn a_live_foreign_lease_is_reported_as_written_and_an_unreadable_expiry_is_expired() {
        let (_dir, state) = store();
        // Live, in another offset and precision: held, its expiry shown as it was written.
        foreign_lease(&state, "2999-01-01T02:00:00+02:00").await;
        let error = acquire(&state).await.err().expect("the lease is held");
        assert!(
            matches!(&error, LeaseError::Held { holder, expires_at, .. }
            if holder == "other" && expires_at == "2999-01-01T02:00:00+02:00"),
            "{error}"
        );

        // An expiry that is not a timestamp counts as expired: the lease is taken over, and
        // the new record's times are written as `now_rfc3339` writes them.
        let (_dir, state) = store();
        foreign_lease(&state, "soon").await;
        let lease = acquire(&state).await.unwrap();
        let (bytes, _) = state
            .read_object(&layout::lease("shop", "orders"))
            .await
            .unwrap()
            .unwrap();
        let written: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(written["run_id"], "mine");
        for key in ["acquired_at", "expires_at"] {
            let text = written[key].as_str().unwrap();
            let instant = crate::clock::parse_rfc3339(text).unwrap();
            assert_eq!(text, crate::clock::rfc3339_micros(instant), "{key}");
        }
        lease.release().await;
    }

    #[test]
    fn expiry_is_compared_as_an_instant() {
        let record = |expires_at: &str| LeaseRecord {
            run_id: "r".to_owned(),
            nonce: String::new(),
            stream: "orders".to_owned(),
            acquired_at: StoredTime::read("2024-05-01T10:00:00Z"),
            expires_at: StoredTime::read(expires_at),
            window: None,
        };
        let now = crate::clock::parse_rfc3339("2024-05-01T10:00:00Z").unwrap();
        // 11:00+02:00 is 09:00 UTC: expired, although its text sorts after `now`'s.
        assert!(expired(&record("2024-05-01T11:00:00+02:00"), now));
        assert!(!expired(&record("2024-05-01T10:00:00.000001Z"), now));
        assert!(expired(&record("2024-05-01T10:00:00Z"), now));
        assert!(expired(&record(""), now));
    }
}
