//! Client-side rate limiting (`source.rate_limit`): token buckets per second, minute and
//! hour, a concurrency cap independent of the rate, and an adaptive mode that reads the
//! server's rate-limit headers and slows down before the server answers 429.
//!
//! The buckets work by reservation: a request takes its token at once, possibly going into
//! debt, and waits until the debt is paid. Waiting requests therefore queue in order and
//! never wake together to compete for the same token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::config::RateLimitConfig;

/// The longest wait the local buckets impose (a deep queue of reservations at a slow rate).
const MAX_LOCAL_WAIT: Duration = Duration::from_secs(1_000_000_000);

/// Why a request waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `rate_limit.requests_per_second`.
    RequestsPerSecond,
    /// `rate_limit.requests_per_minute`.
    RequestsPerMinute,
    /// `rate_limit.requests_per_hour`.
    RequestsPerHour,
    /// The server sent `Retry-After` with a 429 or 503.
    RetryAfter,
    /// The server said no request is left until its window resets.
    RemainingExhausted,
    /// The server said few requests are left: they are spread until its window resets.
    RemainingLow,
}

impl Cause {
    /// The name used in `rate_limited` events.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::RequestsPerSecond => "requests_per_second",
            Cause::RequestsPerMinute => "requests_per_minute",
            Cause::RequestsPerHour => "requests_per_hour",
            Cause::RetryAfter => "retry_after",
            Cause::RemainingExhausted => "remaining_exhausted",
            Cause::RemainingLow => "remaining_low",
        }
    }

    /// Whether the server, not the config, imposed the wait.
    pub fn from_server(self) -> bool {
        matches!(
            self,
            Cause::RetryAfter | Cause::RemainingExhausted | Cause::RemainingLow
        )
    }
}

/// How long a request must wait before it is sent, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub wait: Duration,
    /// The limit that imposed the longest wait; `None` when there is no wait.
    pub cause: Option<Cause>,
}

/// What the adaptive mode learnt from a response.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    /// No request is sent for `wait`.
    Paused { wait: Duration, cause: Cause },
    /// Requests are spread one per `interval` until the server's window resets.
    Paced {
        interval: Duration,
        remaining: u64,
        reset: Duration,
    },
}

#[derive(Debug)]
struct Bucket {
    cause: Cause,
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Option<Instant>,
}

impl Bucket {
    fn new(cause: Cause, limit: f64, window: Duration, burst: u32) -> Self {
        let capacity = f64::from(burst).min(limit).max(1.0);
        Self {
            cause,
            capacity,
            per_second: limit / window.as_secs_f64(),
            tokens: capacity,
            updated: None,
        }
    }

    /// Takes one token; returns the wait until it is paid for.
    fn reserve(&mut self, now: Instant) -> Duration {
        if let Some(updated) = self.updated {
            let elapsed = now.saturating_duration_since(updated).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        }
        self.updated = Some(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            // Validation keeps rates at one a day or more; the cap keeps clock arithmetic
            // safe whatever the debt.
            super::retry::clamped_seconds(-self.tokens / self.per_second, MAX_LOCAL_WAIT)
        }
    }
}

#[derive(Debug)]
struct Pacing {
    interval: Duration,
    next_slot: Instant,
    until: Instant,
}

#[derive(Debug, Default)]
struct LimiterState {
    buckets: Vec<Bucket>,
    paused_until: Option<(Instant, Cause)>,
    pacing: Option<Pacing>,
}

/// The rate limiter of one source, shared by all its streams.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<LimiterState>,
    concurrency: Arc<Semaphore>,
    adaptive: bool,
}

/// A fixed `Retry-After`-style header value: seconds, or a Unix time in seconds or
/// milliseconds (vendors differ; anything past 2001 is taken as a time).
fn reset_delay(value: f64, wall: SystemTime) -> Duration {
    let epoch_now = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let seconds = if value > 1e12 {
        value / 1000.0 - epoch_now
    } else if value > 1e9 {
        value - epoch_now
    } else {
        value
    };
    super::retry::clamped_seconds(seconds, super::retry::MAX_SERVER_WAIT)
}

/// The leading number of the first of `names` that is present (`50` in `50, 100;w=60`).
pub(crate) fn header_number(headers: &HeaderMap, names: &[&str]) -> Option<f64> {
    names.iter().find_map(|name| {
        let text = headers.get(*name)?.to_str().ok()?.trim();
        let end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        text[..end].parse::<f64>().ok().filter(|value| value.is_finite())
    })
}

impl RateLimiter {
    /// The limiter of `source.rate_limit`.
    pub fn new(config: &RateLimitConfig) -> Self {
        let mut buckets = Vec::new();
        for (cause, limit, window) in [
            (Cause::RequestsPerSecond, config.requests_per_second, 1),
            (Cause::RequestsPerMinute, config.requests_per_minute, 60),
            (Cause::RequestsPerHour, config.requests_per_hour, 3600),
        ] {
            if let Some(limit) = limit {
                buckets.push(Bucket::new(
                    cause,
                    limit,
                    Duration::from_secs(window),
                    config.burst.get(),
                ));
            }
        }
        Self {
            state: Mutex::new(LimiterState {
                buckets,
                ..Default::default()
            }),
            concurrency: Arc::new(Semaphore::new(config.concurrency.get() as usize)),
            adaptive: config.adaptive,
        }
    }

    /// A slot among the requests in flight; held while one attempt is on the wire.
    pub async fn permit(&self) -> OwnedSemaphorePermit {
        self.concurrency
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Takes one request's share of every limit at `now` and says how long the request must
    /// wait before it is sent.
    pub fn reserve(&self, now: Instant) -> Reservation {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut longest = Reservation {
            wait: Duration::ZERO,
            cause: None,
        };
        fn consider(longest: &mut Reservation, wait: Duration, cause: Cause) {
            if wait > longest.wait {
                *longest = Reservation {
                    wait,
                    cause: Some(cause),
                };
            }
        }
        for bucket in &mut state.buckets {
            let wait = bucket.reserve(now);
            consider(&mut longest, wait, bucket.cause);
        }
        if let Some((until, cause)) = state.paused_until {
            if until > now {
                consider(&mut longest, until - now, cause);
            } else {
                state.paused_until = None;
            }
        }
        if let Some(pacing) = &mut state.pacing {
            if now < pacing.until {
                // Past the reset the server's budget is whole again: no slot waits beyond it
                // (many queued requests at a low remaining count would otherwise wait for
                // several resets).
                let slot = pacing.next_slot.min(pacing.until).max(now + longest.wait);
                pacing.next_slot = slot + pacing.interval;
                consider(&mut longest, slot - now, Cause::RemainingLow);
            } else {
                state.pacing = None;
            }
        }
        longest
    }

    /// Learns from a response (adaptive mode only): `Retry-After` on a 403, 429 or 503 pauses
    /// every request; `RateLimit-Remaining` / `X-RateLimit-Remaining` with the matching
    /// `-Reset` pauses until the reset when nothing is left, and spreads the rest evenly
    /// until the reset when a tenth of the limit (or 10, without a limit header) or less is
    /// left. Returns what changed, for the `rate_limited` event.
    pub fn observe(&self, status: u16, headers: &HeaderMap, now: Instant, wall: SystemTime) -> Option<Signal> {
        if !self.adaptive {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(status, 403 | 429 | 503)
            && let Some(wait) = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| super::retry::parse_retry_after(value, wall))
                .filter(|wait| !wait.is_zero())
        {
            let until = now + wait;
            if state.paused_until.is_none_or(|(current, _)| current < until) {
                state.paused_until = Some((until, Cause::RetryAfter));
            }
            return Some(Signal::Paused {
                wait,
                cause: Cause::RetryAfter,
            });
        }
        let remaining = header_number(headers, &["ratelimit-remaining", "x-ratelimit-remaining"])?;
        let limit = header_number(headers, &["ratelimit-limit", "x-ratelimit-limit"]);
        let reset =
            header_number(headers, &["ratelimit-reset", "x-ratelimit-reset"]).map(|value| reset_delay(value, wall));
        let low = match limit {
            Some(limit) => remaining * 10.0 <= limit,
            None => remaining <= 10.0,
        };
        match reset {
            Some(reset) if remaining < 1.0 && !reset.is_zero() => {
                let until = now + reset;
                state.pacing = None;
                if state.paused_until.is_none_or(|(current, _)| current < until) {
                    state.paused_until = Some((until, Cause::RemainingExhausted));
                }
                Some(Signal::Paused {
                    wait: reset,
                    cause: Cause::RemainingExhausted,
                })
            }
            Some(reset) if low && remaining >= 1.0 && !reset.is_zero() => {
                let interval = reset.div_f64(remaining);
                let engaged = state.pacing.is_none();
                let next_slot = state.pacing.as_ref().map_or(now, |pacing| pacing.next_slot);
                state.pacing = Some(Pacing {
                    interval,
                    next_slot,
                    until: now + reset,
                });
                engaged.then_some(Signal::Paced {
                    interval,
                    remaining: remaining as u64,
                    reset,
                })
            }
            _ => {
                if !low {
                    state.pacing = None;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn config(rps: Option<f64>, rpm: Option<f64>, burst: u32) -> RateLimitConfig {
        RateLimitConfig {
            requests_per_second: rps,
            requests_per_minute: rpm,
            requests_per_hour: None,
            burst: std::num::NonZeroU32::new(burst).unwrap(),
            concurrency: std::num::NonZeroU32::new(4).unwrap(),
            adaptive: true,
        }
    }

    /// Sends `count` requests as fast as the limiter allows; returns when the last is sent.
    fn drive(limiter: &RateLimiter, start: Instant, count: usize) -> Duration {
        let mut now = start;
        for _ in 0..count {
            now += limiter.reserve(now).wait;
        }
        now - start
    }

    #[test]
    fn per_second_rate_is_held_after_the_burst() {
        let limiter = RateLimiter::new(&config(Some(10.0), None, 5));
        // 5 go at once (the burst), the next 100 at 10 per second.
        let took = drive(&limiter, Instant::now(), 105);
        assert!((took.as_secs_f64() - 10.0).abs() < 1e-6, "{took:?}");
    }

    #[test]
    fn the_tightest_window_wins() {
        let limiter = RateLimiter::new(&config(Some(10.0), Some(60.0), 1));
        let start = Instant::now();
        let took = drive(&limiter, start, 121);
        // 60 per minute is slower than 10 per second: 120 intervals of a second.
        assert!((took.as_secs_f64() - 120.0).abs() < 1e-6, "{took:?}");
        assert_eq!(limiter.reserve(start + took).cause, Some(Cause::RequestsPerMinute));
    }

    #[test]
    fn reservations_queue_in_order() {
        let limiter = RateLimiter::new(&config(Some(2.0), None, 1));
        let now = Instant::now();
        let waits: Vec<_> = (0..4).map(|_| limiter.reserve(now).wait).collect();
        assert_eq!(waits, [0.0, 0.5, 1.0, 1.5].map(Duration::from_secs_f64));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn exhausted_remaining_pauses_until_reset() {
        let limiter = RateLimiter::new(&config(None, None, 1));
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // X-RateLimit-Reset as a Unix time 30 s ahead.
        let signal = limiter.observe(
            200,
            &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000030")]),
            now,
            wall,
        );
        assert_eq!(
            signal,
            Some(Signal::Paused {
                wait: Duration::from_secs(30),
                cause: Cause::RemainingExhausted
            })
        );
        let reservation = limiter.reserve(now + Duration::from_secs(10));
        assert_eq!(reservation.wait, Duration::from_secs(20));
        assert_eq!(reservation.cause, Some(Cause::RemainingExhausted));
    }

    #[test]
    fn low_remaining_spreads_requests_until_reset() {
        let limiter = RateLimiter::new(&config(None, None, 1));
        let now = Instant::now();
        let signal = limiter.observe(
            200,
            &headers(&[
                ("ratelimit-limit", "100"),
                ("ratelimit-remaining", "4"),
                ("ratelimit-reset", "8"),
            ]),
            now,
            SystemTime::now(),
        );
        assert!(matches!(signal, Some(Signal::Paced { interval, .. }) if interval == Duration::from_secs(2)));
        let waits: Vec<_> = (0..3).map(|_| limiter.reserve(now).wait).collect();
        assert_eq!(waits, [0, 2, 4].map(Duration::from_secs));
        // Plenty left again: pacing ends.
        limiter.observe(
            200,
            &headers(&[("ratelimit-limit", "100"), ("ratelimit-remaining", "90")]),
            now,
            SystemTime::now(),
        );
        assert_eq!(limiter.reserve(now).wait, Duration::ZERO);
    }

    #[test]
    fn retry_after_pauses_everyone_and_non_adaptive_ignores_headers() {
        let limiter = RateLimiter::new(&config(None, None, 1));
        let now = Instant::now();
        limiter.observe(429, &headers(&[("retry-after", "7")]), now, SystemTime::now());
        assert_eq!(limiter.reserve(now).wait, Duration::from_secs(7));
        let fixed = RateLimiter::new(&RateLimitConfig {
            adaptive: false,
            ..config(None, None, 1)
        });
        assert_eq!(
            fixed.observe(429, &headers(&[("retry-after", "7")]), now, SystemTime::now()),
            None
        );
        assert_eq!(fixed.reserve(now).wait, Duration::ZERO);
    }

    #[test]
    fn huge_or_malformed_rate_limit_headers_do_not_panic() {
        let limiter = RateLimiter::new(&config(None, None, 1));
        let now = Instant::now();
        let wall = SystemTime::now();
        for (name, value) in [
            ("retry-after", "1e20"),
            ("retry-after", "1.5e308"),
            ("retry-after", "12345678901234567890123"),
            ("x-ratelimit-reset", "1e308"),
            ("x-ratelimit-reset", "123456789012345678901234567890"),
        ] {
            let signal = limiter.observe(
                429,
                &headers(&[(name, value), ("x-ratelimit-remaining", "0")]),
                now,
                wall,
            );
            if let Some(Signal::Paused { wait, .. }) = signal {
                assert!(wait <= crate::http::retry::MAX_SERVER_WAIT, "{name}: {value}");
            }
            assert!(limiter.reserve(now).wait <= crate::http::retry::MAX_SERVER_WAIT);
        }
        let slow = RateLimiter::new(&config(Some(1e-300), None, 1));
        slow.reserve(now);
        assert_eq!(slow.reserve(now).wait, MAX_LOCAL_WAIT);
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any rate-limit headers on any status: the limiter learns without a panic, and
        /// no wait it imposes is longer than the longest a server may impose.
        #[test]
        fn rate_limit_headers_never_panic(
            status in 100u16..600,
            pairs in proptest::collection::vec((0usize..7, proptest::prop_oneof![
                "[ -~]{0,30}",
                "[0-9]{1,40}",
                proptest::prelude::any::<f64>().prop_map(|number| number.to_string()),
            ]), 0..8),
        ) {
            const NAMES: [&str; 7] = [
                "retry-after", "ratelimit-remaining", "x-ratelimit-remaining", "ratelimit-limit",
                "x-ratelimit-limit", "ratelimit-reset", "x-ratelimit-reset",
            ];
            let mut map = HeaderMap::new();
            for (name, value) in &pairs {
                if let Ok(value) = HeaderValue::from_str(value) {
                    map.append(NAMES[*name], value);
                }
            }
            let limiter = RateLimiter::new(&config(Some(10.0), None, 1));
            let now = Instant::now();
            let _ = limiter.observe(status, &map, now, SystemTime::now());
            for step in 0..3 {
                let wait = limiter.reserve(now + Duration::from_secs(step)).wait;
                proptest::prop_assert!(wait <= crate::http::retry::MAX_SERVER_WAIT + Duration::from_secs(60));
            }
        }
    }
}
