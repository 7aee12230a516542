//! Incremental cursor values: RFC 3339 timestamps, integers or opaque strings, compared in
//! the way their kind calls for.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

fn timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// Compares two cursor values: numerically when both are integers, by instant when both
/// are RFC 3339 timestamps, otherwise as strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<i128>(), b.parse::<i128>()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (timestamp(a), timestamp(b)) {
        return x.cmp(&y);
    }
    a.cmp(b)
}

/// The larger of two optional cursors.
pub fn max(current: Option<String>, candidate: &str) -> Option<String> {
    match current {
        Some(current) if compare(&current, candidate) != Ordering::Less => Some(current),
        _ => Some(candidate.to_owned()),
    }
}

/// Steps a cursor back by `lookback`: timestamps by the duration, integers by its seconds
/// (epoch cursors); opaque strings cannot be stepped back and are returned unchanged.
pub fn minus(cursor: &str, lookback: Duration) -> String {
    if lookback.is_zero() {
        return cursor.to_owned();
    }
    if let Some(instant) = timestamp(cursor) {
        let back = instant - chrono::Duration::from_std(lookback).unwrap_or_default();
        return back.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    }
    if let Ok(number) = cursor.parse::<i128>() {
        return (number - lookback.as_secs() as i128).to_string();
    }
    cursor.to_owned()
}

/// Seconds between now and the newest cursor, when the cursor is a timestamp.
pub fn lag_seconds(cursor: &str, now: DateTime<Utc>) -> Option<f64> {
    timestamp(cursor).map(|newest| ((now - newest).num_milliseconds() as f64 / 1000.0).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_by_kind() {
        assert_eq!(compare("9", "10"), Ordering::Less);
        assert_eq!(
            compare("2024-01-01T10:00:00+02:00", "2024-01-01T09:00:00Z"),
            Ordering::Less
        );
        assert_eq!(compare("b", "a"), Ordering::Greater);
        assert_eq!(max(Some("10".into()), "9").as_deref(), Some("10"));
        assert_eq!(max(None, "9").as_deref(), Some("9"));
    }

    #[test]
    fn steps_back() {
        assert_eq!(
            minus("2024-01-02T00:00:00Z", Duration::from_secs(3600)),
            "2024-01-01T23:00:00Z"
        );
        assert_eq!(minus("1000", Duration::from_secs(60)), "940");
        assert_eq!(minus("opaque", Duration::from_secs(60)), "opaque");
    }
}
