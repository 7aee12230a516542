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
use crate::landing::{Landing, LandingError, layout};

/// What a lease object holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub run_id: String,
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

fn record(run_id: &str, stream: &str, acquired_at: &str, ttl: Duration) -> LeaseRecord {
    let now = Utc::now();
    LeaseRecord {
        run_id: run_id.to_owned(),
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
    Ok(landing
        .get(path)
        .await?
        .and_then(|bytes| serde_json::from_slice::<LeaseRecord>(&bytes).ok()))
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
        let mine = record(run_id, stream, &acquired_at, ttl);
        match landing.put_new(&path, encode(&mine)).await {
            Ok(()) => {}
            Err(LandingError::AlreadyExists { .. }) => {
                let current = read(landing, &path).await?;
                match current {
                    Some(current) if !expired(&current) => {
                        events.lease_held(stream, &current.run_id, &current.expires_at);
                        return Err(LeaseError::Held {
                            stream: stream.to_owned(),
                            holder: current.run_id,
                            path: landing.url_of(&path),
                            expires_at: current.expires_at,
                        });
                    }
                    // Expired (or unreadable): take it over. Create-only again, so of two
                    // runs taking over at once only one wins.
                    _ => {
                        landing.delete(&path).await?;
                        landing
                            .put_new(&path, encode(&mine))
                            .await
                            .map_err(|error| match error {
                                LandingError::AlreadyExists { .. } => LeaseError::Held {
                                    stream: stream.to_owned(),
                                    holder: "another run".to_owned(),
                                    path: landing.url_of(&path),
                                    expires_at: "unknown".to_owned(),
                                },
                                other => other.into(),
                            })?;
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
        events.lease_acquired(stream, &mine.expires_at);
        let stop = CancellationToken::new();
        let renewer = tokio::spawn(renew(
            landing.clone(),
            path.clone(),
            mine,
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

async fn renew(
    landing: Landing,
    path: String,
    mut mine: LeaseRecord,
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
        match read(&landing, &path).await {
            Ok(Some(current)) if current.run_id == mine.run_id => {
                mine = record(&mine.run_id, &mine.stream, &mine.acquired_at, ttl);
                if let Err(error) = landing.put_replace(&path, encode(&mine)).await {
                    events.lease_renewal_failed(&mine.stream, &path, error.code().as_str(), &error.to_string());
                }
            }
            Ok(other) => {
                let holder = other.map(|record| record.run_id).unwrap_or_else(|| "nobody".to_owned());
                events.lease_held(&mine.stream, &holder, "lost");
                lost.cancel();
                return;
            }
            Err(error) => events.lease_renewal_failed(&mine.stream, &path, error.code().as_str(), &error.to_string()),
        }
    }
}
