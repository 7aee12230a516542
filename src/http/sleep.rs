//! Waiting, and the clock waits are measured by. Every wait in the HTTP stack (retry
//! backoff, rate limits, circuit cooldown, token expiry, the run deadline) goes through a
//! [`Sleeper`], so tests swap in a [`VirtualClock`] and run without real waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// Waits, and tells the time the waits are measured by.
#[async_trait]
pub trait Sleeper: Send + Sync + std::fmt::Debug {
    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);

    /// The current instant on this sleeper's clock. Default: the monotonic clock.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Sleeps on the tokio timer; the clock is the monotonic clock.
#[derive(Debug, Default)]
pub struct TokioSleeper;

#[async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock for tests: a sleep returns at once and moves virtual time forward by its
/// duration. Every sleep is recorded, so a test can assert what would have been waited.
#[derive(Debug)]
pub struct VirtualClock {
    origin: Instant,
    offset: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl VirtualClock {
    /// A virtual clock starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
            sleeps: Mutex::new(Vec::new()),
        })
    }

    /// Moves virtual time forward without recording a sleep.
    pub fn advance(&self, duration: Duration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += duration;
    }

    /// Virtual time passed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Forgets the recorded sleeps (virtual time stays where it is).
    pub fn clear_sleeps(&self) {
        self.sleeps.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[async_trait]
impl Sleeper for VirtualClock {
    async fn sleep(&self, duration: Duration) {
        self.sleeps.lock().unwrap_or_else(|e| e.into_inner()).push(duration);
        self.advance(duration);
        // Let other tasks run, as a real sleep would.
        tokio::task::yield_now().await;
    }

    fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_sleeps_advance_time_and_are_recorded() {
        let clock = VirtualClock::new();
        let start = clock.now();
        clock.sleep(Duration::from_secs(90)).await;
        clock.advance(Duration::from_secs(10));
        assert_eq!(clock.now() - start, Duration::from_secs(100));
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(90)]);
    }
}
