//! Single writer per stream: a lease object `_state/{stream}.lock`, created create-only,
//! holding the run id and an expiry that the run renews. A second run finds it live and
//! stops with `LEASE_HELD` (exit 75); an expired lease is taken over.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Classify, ErrorCode};
use crate::events::Events;
use crate::landing::{Landing, LandingError, ObjectVersion, layout};

/// What a lease object holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub run_id: String,
    /// Unique per acquisition, so two holders never write identical bytes.
    #[serde(default)]
    pub nonce: String,
    pub stream: String,
    pub acquired_at: String,
    pub expires_at: String,
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "stream `{stream}` is being extracted by run {holder} (lease {path} valid until {expires_at}); \
         retry later, or if that run is dead, wait for the lease to expire"
    )]
    Held {
        stream: String,
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
    landing: Landing,
    path: String,
    run_id: String,
    stream: String,
    events: Events,
    stop: CancellationToken,
    renewer: tokio::task::JoinHandle<()>,
}

fn record(run_id: &str, nonce: &str, stream: &str, acquired_at: &str, ttl: Duration) -> LeaseRecord {
    let now = Utc::now();
    LeaseRecord {
        run_id: run_id.to_owned(),
        nonce: nonce.to_owned(),
        stream: stream.to_owned(),
        acquired_at: acquired_at.to_owned(),
        expires_at: crate::clock::rfc3339_micros(
            now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
        ),
    }
}

fn encode(record: &LeaseRecord) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(record).expect("lease serializes"))
}

async fn read(landing: &Landing, path: &str) -> Result<Option<LeaseRecord>, LandingError> {
    Ok(read_versioned(landing, path).await?.and_then(|(record, _)| record))
}

/// The lease object and its version; the record is `None` when it does not parse.
async fn read_versioned(
    landing: &Landing,
    path: &str,
) -> Result<Option<(Option<LeaseRecord>, ObjectVersion)>, LandingError> {
    Ok(landing
        .get_versioned(path)
        .await?
        .map(|(bytes, version)| (serde_json::from_slice::<LeaseRecord>(&bytes).ok(), version)))
}

fn expired(record: &LeaseRecord) -> bool {
    DateTime::parse_from_rfc3339(&record.expires_at).map_or(true, |expiry| expiry.with_timezone(&Utc) <= Utc::now())
}

impl Lease {
    /// Takes the lease of `stream` for `run_id`, or says who holds it. `lost` is cancelled
    /// if the lease is ever taken away (renewal found another holder).
    pub async fn acquire(
        landing: &Landing,
        source: &str,
        stream: &str,
        run_id: &str,
        ttl: Duration,
        events: &Events,
        lost: CancellationToken,
    ) -> Result<Self, LeaseError> {
        let path = layout::lease(source, stream);
        let acquired_at = crate::clock::now_rfc3339();
        let nonce = uuid::Uuid::now_v7().to_string();
        let mine = record(run_id, &nonce, stream, &acquired_at, ttl);
        let held = |holder: String, expires_at: String| LeaseError::Held {
            stream: stream.to_owned(),
            holder,
            path: landing.url_of(&path),
            expires_at,
        };
        let version = match landing.put_new(&path, encode(&mine)).await {
            Ok(version) => version,
            Err(LandingError::AlreadyExists { .. }) => match read_versioned(landing, &path).await? {
                Some((Some(current), _)) if !expired(&current) => {
                    events.lease_held(stream, &current.run_id, &current.expires_at);
                    return Err(held(current.run_id, current.expires_at));
                }
                // Expired (or unreadable): take it over with a compare-and-swap on the
                // version just read, so of two runs taking over at once only one wins.
                Some((_, version)) => match landing.put_if_version(&path, encode(&mine), &version).await {
                    Ok(version) => version,
                    Err(LandingError::VersionMismatch { .. }) => {
                        return Err(held("another run".to_owned(), "unknown".to_owned()));
                    }
                    Err(error) => return Err(error.into()),
                },
                // Released between our create and our read: try once more.
                None => landing
                    .put_new(&path, encode(&mine))
                    .await
                    .map_err(|error| match error {
                        LandingError::AlreadyExists { .. } => held("another run".to_owned(), "unknown".to_owned()),
                        other => other.into(),
                    })?,
            },
            Err(error) => return Err(error.into()),
        };
        events.lease_acquired(stream, &mine.expires_at);
        let stop = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            landing.clone(),
            path.clone(),
            mine,
            version,
            ttl,
            stop.clone(),
            lost,
            events.clone(),
        ));
        Ok(Self {
            landing: landing.clone(),
            path,
            run_id: run_id.to_owned(),
            stream: stream.to_owned(),
            events: events.clone(),
            stop,
            renewer,
        })
    }

    /// Stops renewing and removes the lease if it is still ours.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.renewer.await;
        match read(&self.landing, &self.path).await {
            Ok(Some(current)) if current.run_id == self.run_id => {
                if let Err(error) = self.landing.delete(&self.path).await {
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

#[allow(clippy::too_many_arguments)]
async fn renew(
    landing: Landing,
    path: String,
    mut mine: LeaseRecord,
    mut version: ObjectVersion,
    ttl: Duration,
    stop: CancellationToken,
    lost: CancellationToken,
    events: Events,
) {
    let interval = (ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let renewed = record(&mine.run_id, &mine.nonce, &mine.stream, &mine.acquired_at, ttl);
        // Compare-and-swap on the version we wrote last: if anyone else wrote the lease, it
        // is not ours any more.
        match landing.put_if_version(&path, encode(&renewed), &version).await {
            Ok(next) => {
                version = next;
                mine = renewed;
            }
            Err(LandingError::VersionMismatch { .. }) => {
                let holder = read(&landing, &path)
                    .await
                    .ok()
                    .flatten()
                    .map(|record| record.run_id)
                    .unwrap_or_else(|| "nobody".to_owned());
                events.lease_held(&mine.stream, &holder, "lost");
                lost.cancel();
                return;
            }
            Err(error) => events.lease_renewal_failed(&mine.stream, &path, error.code().as_str(), &error.to_string()),
        }
    }
}
