//! The circuit breaker (`source.circuit_breaker`): after `failure_threshold` consecutive
//! failed requests to a source, no request is sent for `cooldown`; then one probe goes
//! through (half-open). A successful probe closes the circuit; a failed one opens it again.
//!
//! Failures are what say the source is unwell: no connection, a timeout, a 5xx or a 408.
//! A 4xx other than 408 is an answer, and a 429 is the rate limiter's business; both leave
//! the count alone but do not reset it either.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ErrorCode;

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Why a request was not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// How long until a probe is let through.
    pub retry_in: Duration,
    /// The code of the failure that opened the circuit.
    pub code: ErrorCode,
}

/// The circuit was opened by a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub failures: u32,
    pub cooldown: Duration,
}

/// What a finished attempt says about the source's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It answered (any status that is not a failure).
    Healthy,
    /// It failed: no connection, a timeout, a 5xx or a 408.
    Failed(ErrorCode),
    /// Neither (a 429, a client error): the count stays.
    Neutral,
}

/// The circuit breaker of one source, shared by all its streams.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<(State, ErrorCode)>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new((State::Closed { failures: 0 }, ErrorCode::ServerError)),
        }
    }

    /// Lets a request through, or refuses it while the circuit is open (and while the
    /// half-open probe is out).
    pub fn admit(&self, now: Instant) -> Result<(), Refusal> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, code) = &mut *guard;
        match state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < *until => Err(Refusal {
                retry_in: *until - now,
                code: *code,
            }),
            State::Open { .. } => {
                *state = State::HalfOpen { probing: true };
                Ok(())
            }
            State::HalfOpen { probing: true } => Err(Refusal {
                retry_in: Duration::ZERO,
                code: *code,
            }),
            State::HalfOpen { probing } => {
                *probing = true;
                Ok(())
            }
        }
    }

    /// Records how an admitted request ended; says when that opened the circuit.
    pub fn record(&self, outcome: Outcome, now: Instant) -> Option<Opened> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, code) = &mut *guard;
        match (outcome, &mut *state) {
            (Outcome::Healthy, _) => {
                *state = State::Closed { failures: 0 };
                None
            }
            (Outcome::Failed(failure), State::Closed { failures }) => {
                *failures += 1;
                if *failures >= self.threshold {
                    let failures = *failures;
                    *state = State::Open {
                        until: now + self.cooldown,
                    };
                    *code = failure;
                    Some(Opened {
                        failures,
                        cooldown: self.cooldown,
                    })
                } else {
                    None
                }
            }
            (Outcome::Failed(failure), State::HalfOpen { .. }) => {
                *state = State::Open {
                    until: now + self.cooldown,
                };
                *code = failure;
                Some(Opened {
                    failures: 1,
                    cooldown: self.cooldown,
                })
            }
            (Outcome::Neutral, State::HalfOpen { probing }) => {
                // The probe got an answer that says nothing about health: let another try.
                *probing = false;
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_for_one_probe() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        for _ in 0..2 {
            breaker.admit(t0).unwrap();
            assert_eq!(breaker.record(Outcome::Failed(ErrorCode::ServerError), t0), None);
        }
        // A client error neither counts nor resets.
        breaker.admit(t0).unwrap();
        assert_eq!(breaker.record(Outcome::Neutral, t0), None);
        breaker.admit(t0).unwrap();
        let opened = breaker.record(Outcome::Failed(ErrorCode::Timeout), t0);
        assert_eq!(
            opened,
            Some(Opened {
                failures: 3,
                cooldown: Duration::from_secs(30)
            })
        );
        let refusal = breaker.admit(t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(refusal.retry_in, Duration::from_secs(20));
        assert_eq!(refusal.code, ErrorCode::Timeout);
        // After the cooldown one probe goes; a second request waits for its verdict.
        let later = t0 + Duration::from_secs(30);
        breaker.admit(later).unwrap();
        assert!(breaker.admit(later).is_err());
        // A failed probe opens it again for a full cooldown.
        assert!(breaker.record(Outcome::Failed(ErrorCode::ServerError), later).is_some());
        assert!(breaker.admit(later + Duration::from_secs(29)).is_err());
        // A successful probe closes it.
        let recovered = later + Duration::from_secs(30);
        breaker.admit(recovered).unwrap();
        assert_eq!(breaker.record(Outcome::Healthy, recovered), None);
        breaker.admit(recovered).unwrap();
        breaker.admit(recovered).unwrap();
    }

    #[test]
    fn success_resets_the_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(1));
        let now = Instant::now();
        breaker.record(Outcome::Failed(ErrorCode::ServerError), now);
        breaker.record(Outcome::Healthy, now);
        assert_eq!(breaker.record(Outcome::Failed(ErrorCode::ServerError), now), None);
        breaker.admit(now).unwrap();
    }
}
