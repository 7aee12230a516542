//! Timestamps as the contract writes them: UTC RFC 3339 with microseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats an instant as `2026-11-21T11:12:14.123456Z`.
pub fn rfc3339_micros(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Now, formatted as [`rfc3339_micros`].
pub fn now_rfc3339() -> String {
    rfc3339_micros(Utc::now())
}
