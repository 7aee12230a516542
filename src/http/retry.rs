//! When and how long to wait before retrying a request: decided here and nowhere else.
//! The client asks [`RetryPolicy::decide`] after every failed attempt.

use std::time::{Duration, SystemTime};

use rand::Rng;

use super::error::{HttpError, Reason};
use crate::http::config::RetryConfig;

pub use super::sleep::{Sleeper, TokioSleeper, VirtualClock};

/// The retry policy of a source (`source.retry`).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    /// The total wait one request may spend between its attempts.
    pub budget: Duration,
    /// Statuses that are retried; every other status fails at once.
    pub retry_on_status: Vec<u16>,
    /// Whether `Retry-After` replaces the computed backoff.
    pub respect_retry_after: bool,
}

/// What the policy says after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then send the request again.
    Retry(Duration),
    /// The failure is final: it is not retryable, the request may not be replayed, or the
    /// attempts or the budget are spent.
    GiveUp,
}

impl RetryPolicy {
    /// The policy of `source.retry`.
    pub fn from_config(config: &RetryConfig) -> Self {
        Self {
            max_attempts: config.max_attempts.get(),
            initial_delay: config.initial_delay.0,
            max_delay: config.max_delay.0,
            multiplier: config.multiplier,
            budget: config.budget.0,
            retry_on_status: config.retry_on_status.clone(),
            respect_retry_after: config.respect_retry_after,
        }
    }

    /// Whether a response status is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        self.retry_on_status.contains(&status)
    }

    /// Decides what follows attempt number `attempt` (from 1), which failed with `failure`.
    ///
    /// `replayable` says whether the request may be sent twice (a GET, or a POST with an
    /// idempotency key or declared safe). A request that never reached the source (no
    /// connection, or its credentials could not be fetched) is retried even when it is not
    /// replayable. `waited` is what the
    /// request has waited between attempts so far; `retry_after` is the server's
    /// `Retry-After`, if it sent one.
    pub fn decide(
        &self,
        failure: &HttpError,
        replayable: bool,
        attempt: u32,
        waited: Duration,
        retry_after: Option<Duration>,
    ) -> Decision {
        let never_sent = matches!(failure.reason, Reason::Connect | Reason::Credentials);
        if !failure.retryable || !(replayable || never_sent) {
            return Decision::GiveUp;
        }
        match self.next_delay(attempt, waited, retry_after) {
            Some(delay) => Decision::Retry(delay),
            None => Decision::GiveUp,
        }
    }

    /// Decides what follows attempt number `attempt` (from 1) of a page whose response came
    /// back but whose body does not parse (it may be truncated): the page is fetched again
    /// while attempts remain. Each fetch had its own HTTP retries, so these waits do not
    /// count against the HTTP retry budget.
    pub fn decide_unparseable(&self, attempt: u32) -> Decision {
        match self.next_delay(attempt, Duration::ZERO, None) {
            Some(delay) if attempt < self.max_attempts => Decision::Retry(delay),
            _ => Decision::GiveUp,
        }
    }

    /// Whether a request finds the circuit open and waits out its cooldown `wait` (then
    /// probes) rather than failing: only a request already retrying (`sent` attempts so far,
    /// `counted` of them against `max_attempts`), and only while its attempts and its budget
    /// (`waited` so far) allow. A new request fails fast.
    pub fn waits_for_circuit(&self, sent: u32, counted: u32, waited: Duration, wait: Duration) -> bool {
        sent > 0 && !wait.is_zero() && counted < self.max_attempts && waited + wait <= self.budget
    }

    /// The backoff before retry number `retry` (0 for the first retry), without jitter:
    /// `min(initial_delay × multiplier^retry, max_delay)`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let factor = self.multiplier.powi(retry.min(64) as i32);
        let secs = (self.initial_delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        clamped_seconds(secs, self.max_delay)
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
        (waited.saturating_add(delay) <= self.budget).then_some(delay)
    }
}

/// The longest wait a server can impose (`Retry-After`, a rate-limit reset, a token
/// lifetime): larger values are read as this. A day is longer than any retry budget, so a
/// request told to wait longer gives up instead of overflowing a clock.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(86_400);

/// `seconds` as a duration between zero and `max`: never panics, whatever the number
/// (negative, NaN, infinite, 1e308).
pub fn clamped_seconds(seconds: f64, max: Duration) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).map_or(max, |duration| duration.min(max))
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date, at most
/// [`MAX_SERVER_WAIT`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_SERVER_WAIT));
    }
    if value.bytes().all(|byte| byte.is_ascii_digit()) && !value.is_empty() {
        // More digits than a u64 holds.
        return Some(MAX_SERVER_WAIT);
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(clamped_seconds(seconds, MAX_SERVER_WAIT));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_SERVER_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::from_config(&RetryConfig {
            max_attempts: std::num::NonZeroU32::new(5).unwrap(),
            initial_delay: crate::settings::HumanDuration(Duration::from_millis(100)),
            max_delay: crate::settings::HumanDuration(Duration::from_millis(1000)),
            multiplier: 2.0,
            budget: crate::settings::HumanDuration(Duration::from_secs(2)),
            retry_on_status: vec![500],
            respect_retry_after: true,
        })
    }

    #[test]
    fn only_a_retrying_request_waits_for_an_open_circuit_within_its_attempts_and_budget() {
        let policy = policy();
        let second = Duration::from_secs(1);
        assert!(
            !policy.waits_for_circuit(0, 0, Duration::ZERO, second),
            "a new request fails fast"
        );
        assert!(policy.waits_for_circuit(1, 1, Duration::ZERO, second));
        assert!(
            !policy.waits_for_circuit(5, 5, Duration::ZERO, second),
            "attempts spent"
        );
        assert!(
            !policy.waits_for_circuit(1, 1, second + second / 2, second),
            "past the 2 s budget"
        );
        assert!(
            !policy.waits_for_circuit(1, 1, Duration::ZERO, Duration::ZERO),
            "nothing to wait for"
        );
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
    fn an_unparseable_page_is_fetched_again_while_attempts_remain_whatever_the_budget() {
        let policy = policy();
        for attempt in 1..5 {
            let Decision::Retry(delay) = policy.decide_unparseable(attempt) else {
                panic!("attempt {attempt} is retried");
            };
            let base = policy.base_delay(attempt - 1);
            assert!(delay >= base / 2 && delay <= base, "{delay:?} for attempt {attempt}");
        }
        assert_eq!(policy.decide_unparseable(5), Decision::GiveUp);
        assert_eq!(policy.decide_unparseable(9), Decision::GiveUp);
        let once = RetryPolicy {
            max_attempts: 1,
            ..policy
        };
        assert_eq!(once.decide_unparseable(1), Decision::GiveUp);
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

    #[test]
    fn huge_retry_after_values_are_clamped_not_panics() {
        // Each of these panicked in Duration::from_secs_f64 or in Instant arithmetic.
        let now = SystemTime::now();
        for value in [
            "1e20",
            "1.5e308",
            "12345678901234567890123",
            "18446744073709551615",
            "1e400",
        ] {
            let wait = parse_retry_after(value, now);
            assert!(wait.is_none_or(|wait| wait <= MAX_SERVER_WAIT), "{value}: {wait:?}");
        }
        assert_eq!(parse_retry_after("1e20", now), Some(MAX_SERVER_WAIT));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        let policy = policy();
        assert_eq!(policy.next_delay(1, Duration::MAX, Some(MAX_SERVER_WAIT)), None);
        assert_eq!(clamped_seconds(f64::INFINITY, MAX_SERVER_WAIT), MAX_SERVER_WAIT);
        assert_eq!(clamped_seconds(-1.0, MAX_SERVER_WAIT), Duration::ZERO);
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Any Retry-After value parses to at most a day, or to nothing, without a panic.
        #[test]
        fn retry_after_never_panics(value in proptest::prop_oneof![
            ".*",
            "[0-9]{15,40}",
            proptest::prelude::any::<f64>().prop_map(|number| number.to_string()),
            proptest::prelude::any::<f64>().prop_map(|number| format!("{number:e}")),
            proptest::prelude::any::<u128>().prop_map(|number| number.to_string()),
        ]) {
            let now = SystemTime::now();
            if let Some(wait) = parse_retry_after(&value, now) {
                proptest::prop_assert!(wait <= MAX_SERVER_WAIT);
                let _ = policy().next_delay(1, Duration::from_secs(1), Some(wait));
            }
        }

        #[test]
        fn clamped_seconds_never_panics(seconds in proptest::num::f64::ANY) {
            proptest::prop_assert!(clamped_seconds(seconds, MAX_SERVER_WAIT) <= MAX_SERVER_WAIT);
        }
    }
}
