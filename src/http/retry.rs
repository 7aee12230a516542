//! When and how long to wait before retrying a request: decided here and nowhere else.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rand::Rng;

use crate::config::RetryConfig;

/// Waits between attempts; injectable so tests run without real waiting.
#[async_trait]
pub trait Sleeper: Send + Sync + std::fmt::Debug {
    async fn sleep(&self, duration: Duration);
}

/// Sleeps on the tokio timer.
#[derive(Debug, Default)]
pub struct TokioSleeper;

#[async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// The retry policy of a source.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    pub budget: Duration,
    pub retry_on_status: Vec<u16>,
    pub respect_retry_after: bool,
    pub sleeper: Arc<dyn Sleeper>,
}

impl RetryPolicy {
    pub fn from_config(config: &RetryConfig) -> Self {
        Self {
            max_attempts: config.max_attempts,
            initial_delay: config.initial_delay.0,
            max_delay: config.max_delay.0,
            multiplier: config.multiplier,
            budget: config.budget.0,
            retry_on_status: config.retry_on_status.clone(),
            respect_retry_after: config.respect_retry_after,
            sleeper: Arc::new(TokioSleeper),
        }
    }

    /// The backoff before retry number `retry` (0 for the first retry), without jitter:
    /// `min(initial_delay × multiplier^retry, max_delay)`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let factor = self.multiplier.powi(retry.min(64) as i32);
        let secs = (self.initial_delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The base delay with jitter: `delay × (0.5 + random[0, 0.5))`.
    pub fn jittered_delay(&self, retry: u32) -> Duration {
        let jitter: f64 = rand::rng().random_range(0.0..0.5);
        self.base_delay(retry).mul_f64(0.5 + jitter)
    }

    /// The wait before the next attempt, or `None` when no retry is left: attempts
    /// exhausted, or the wait would take the request past its retry budget.
    pub fn next_delay(&self, attempt: u32, waited: Duration, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let delay = match retry_after {
            Some(server) if self.respect_retry_after => server,
            _ => self.jittered_delay(attempt - 1),
        };
        (waited + delay <= self.budget).then_some(delay)
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs_f64(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::from_config(&RetryConfig {
            max_attempts: 5,
            initial_delay: crate::config::HumanDuration(Duration::from_millis(100)),
            max_delay: crate::config::HumanDuration(Duration::from_millis(1000)),
            multiplier: 2.0,
            budget: crate::config::HumanDuration(Duration::from_secs(2)),
            retry_on_status: vec![500],
            respect_retry_after: true,
        })
    }

    #[test]
    fn exponential_backoff_capped_at_max_delay() {
        let policy = policy();
        assert_eq!(policy.base_delay(0), Duration::from_millis(100));
        assert_eq!(policy.base_delay(1), Duration::from_millis(200));
        assert_eq!(policy.base_delay(3), Duration::from_millis(800));
        assert_eq!(policy.base_delay(4), Duration::from_millis(1000));
        assert_eq!(policy.base_delay(30), Duration::from_millis(1000));
    }

    #[test]
    fn jitter_stays_within_half_to_full_delay() {
        let policy = policy();
        for retry in 0..5 {
            let base = policy.base_delay(retry);
            for _ in 0..200 {
                let delay = policy.jittered_delay(retry);
                assert!(delay >= base.mul_f64(0.5) && delay < base, "{delay:?} vs {base:?}");
            }
        }
    }

    #[test]
    fn stops_at_max_attempts_and_budget() {
        let policy = policy();
        assert!(policy.next_delay(1, Duration::ZERO, None).is_some());
        assert!(policy.next_delay(5, Duration::ZERO, None).is_none());
        // Retry-After of 3s exceeds the 2s budget.
        assert!(
            policy
                .next_delay(1, Duration::ZERO, Some(Duration::from_secs(3)))
                .is_none()
        );
        assert_eq!(
            policy.next_delay(1, Duration::ZERO, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn parses_retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
