//! Incremental cursors, typed: a stream's `incremental.format` says how its cursor is
//! written in requests and in the checkpoint (RFC 3339, Unix seconds or milliseconds, a date,
//! a strftime pattern, an integer or an opaque string). Every value is parsed once into a
//! [`Cursor`], compared within its kind, and rendered back in the stream's format whenever it
//! reaches a request or the state.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// How a stream's cursor is written (`incremental.format`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorFormat {
    /// `2024-03-01T00:00:00Z`.
    Rfc3339,
    /// `1709251200`.
    UnixSeconds,
    /// `1709251200000`.
    UnixMillis,
    /// `2024-03-01`.
    Date,
    /// A chrono strftime pattern, e.g. `%Y-%m-%d %H:%M:%S` (read as UTC without `%z`).
    Strftime(String),
    /// An ordered integer (a sequence number or version): no windows by time.
    Integer,
    /// An opaque string: compared as text, no lookback, no windows by time.
    Text,
}

/// A cursor value, parsed once; values of one stream are all of one kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cursor {
    Instant(DateTime<Utc>),
    Integer(i128),
    Text(String),
}

/// A value that is not a cursor of the stream's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {format} cursor{hint}")]
pub struct CursorError {
    pub value: String,
    pub format: String,
    hint: &'static str,
}

/// An `incremental.format` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "unknown cursor format `{0}`; expected rfc3339, unix_seconds, unix_millis, date, strftime:<pattern>, integer or string"
    )]
    Unknown(String),
    #[error("strftime pattern `{0}` is not valid")]
    BadPattern(String),
    #[error("strftime pattern `{0}` cannot be read back: it needs at least a year, month and day")]
    NotReversible(String),
}

impl FromStr for CursorFormat {
    type Err = FormatError;

    fn from_str(text: &str) -> Result<Self, FormatError> {
        Ok(match text {
            "rfc3339" => CursorFormat::Rfc3339,
            "unix_seconds" => CursorFormat::UnixSeconds,
            "unix_millis" => CursorFormat::UnixMillis,
            "date" => CursorFormat::Date,
            "integer" => CursorFormat::Integer,
            "string" => CursorFormat::Text,
            other => match other.strip_prefix("strftime:") {
                Some(pattern) => {
                    let bad = pattern.is_empty() || StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error));
                    if bad {
                        return Err(FormatError::BadPattern(pattern.to_owned()));
                    }
                    let format = CursorFormat::Strftime(pattern.to_owned());
                    // A pattern the cursor cannot be read back from would lose the checkpoint.
                    let sample = DateTime::parse_from_rfc3339("2024-03-01T12:34:56Z")
                        .expect("valid sample")
                        .with_timezone(&Utc);
                    if format.parse(&format.render(&Cursor::Instant(sample))).is_err() {
                        return Err(FormatError::NotReversible(pattern.to_owned()));
                    }
                    format
                }
                None => return Err(FormatError::Unknown(other.to_owned())),
            },
        })
    }
}

impl std::fmt::Display for CursorFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CursorFormat::Rfc3339 => f.write_str("rfc3339"),
            CursorFormat::UnixSeconds => f.write_str("unix_seconds"),
            CursorFormat::UnixMillis => f.write_str("unix_millis"),
            CursorFormat::Date => f.write_str("date"),
            CursorFormat::Strftime(pattern) => write!(f, "strftime:{pattern}"),
            CursorFormat::Integer => f.write_str("integer"),
            CursorFormat::Text => f.write_str("string"),
        }
    }
}

impl serde::Serialize for CursorFormat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CursorFormat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

fn date(text: &str) -> Option<DateTime<Utc>> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
}

fn strftime(text: &str, pattern: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_str(text, pattern) {
        return Some(instant.with_timezone(&Utc));
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, pattern) {
        return Some(naive.and_utc());
    }
    NaiveDate::parse_from_str(text, pattern)
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
}

impl CursorFormat {
    /// The format a config without `incremental.format` gets, from its `start` (as before
    /// formats existed): RFC 3339 timestamps, integers, otherwise opaque strings.
    pub fn infer(start: &str) -> CursorFormat {
        if rfc3339(start).is_some() {
            CursorFormat::Rfc3339
        } else if start.parse::<i128>().is_ok() {
            CursorFormat::Integer
        } else {
            CursorFormat::Text
        }
    }

    /// Whether the cursor is a point in time (lookback and `step` apply as durations).
    pub fn is_temporal(&self) -> bool {
        !matches!(self, CursorFormat::Integer | CursorFormat::Text)
    }

    /// Parses a cursor value. Time formats accept their own notation, RFC 3339 (what
    /// `--start`, `--end` and the Airflow data interval use) and `YYYY-MM-DD`.
    pub fn parse(&self, text: &str) -> Result<Cursor, CursorError> {
        let error = |hint| CursorError {
            value: text.chars().take(100).collect(),
            format: self.to_string(),
            hint,
        };
        let native = match self {
            CursorFormat::Integer => {
                return text
                    .parse::<i128>()
                    .map(Cursor::Integer)
                    .map_err(|_| error("; set incremental.format (e.g. unix_seconds) if it is a time"));
            }
            CursorFormat::Text => return Ok(Cursor::Text(text.to_owned())),
            CursorFormat::Rfc3339 => rfc3339(text),
            CursorFormat::UnixSeconds => text.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0)),
            CursorFormat::UnixMillis => text.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis),
            CursorFormat::Date => date(text),
            CursorFormat::Strftime(pattern) => strftime(text, pattern),
        };
        native
            .or_else(|| rfc3339(text))
            .or_else(|| date(text))
            .map(Cursor::Instant)
            .ok_or_else(|| error(""))
    }

    /// The text of a cursor in this format, as requests and the state carry it. Instants
    /// are floored to the format's precision (a bound is never moved later than asked).
    pub fn render(&self, cursor: &Cursor) -> String {
        let instant = match cursor {
            Cursor::Instant(instant) => *instant,
            Cursor::Integer(number) => return number.to_string(),
            Cursor::Text(text) => return text.clone(),
        };
        match self {
            CursorFormat::Rfc3339 | CursorFormat::Integer | CursorFormat::Text => {
                instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            }
            CursorFormat::UnixSeconds => instant.timestamp().to_string(),
            CursorFormat::UnixMillis => instant.timestamp_millis().to_string(),
            CursorFormat::Date => instant.format("%Y-%m-%d").to_string(),
            CursorFormat::Strftime(pattern) => {
                let mut text = String::new();
                // The pattern was checked when parsed; a failure still never panics.
                match write!(text, "{}", instant.format(pattern)) {
                    Ok(()) => text,
                    Err(_) => instant.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                }
            }
        }
    }

    /// The cursor as this format can carry it: an instant floored to the format's
    /// precision (a whole second, millisecond, day, or the pattern's smallest field).
    pub fn floor(&self, cursor: Cursor) -> Cursor {
        match &cursor {
            Cursor::Instant(_) => self.parse(&self.render(&cursor)).unwrap_or(cursor),
            _ => cursor,
        }
    }

    /// Steps a cursor back by `lookback`: instants by the duration, integers by its whole
    /// seconds (as before formats existed); strings are returned unchanged.
    pub fn minus(&self, cursor: &Cursor, lookback: Duration) -> Cursor {
        match cursor {
            Cursor::Instant(instant) => {
                let back = chrono::Duration::from_std(lookback)
                    .ok()
                    .and_then(|lookback| instant.checked_sub_signed(lookback))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                self.floor(Cursor::Instant(back))
            }
            Cursor::Integer(number) => Cursor::Integer(number.saturating_sub(i128::from(lookback.as_secs()))),
            Cursor::Text(_) => cursor.clone(),
        }
    }
}

impl Cursor {
    /// Seconds between now and this cursor, when it is a point in time.
    pub fn lag_seconds(&self, now: DateTime<Utc>) -> Option<f64> {
        match self {
            Cursor::Instant(newest) => Some(((now - *newest).num_milliseconds() as f64 / 1000.0).max(0.0)),
            _ => None,
        }
    }
}

/// Seconds between now and a cursor written as RFC 3339 (the manifest's `cursor_end` of a
/// timestamp stream); `None` for any other cursor.
pub fn lag_seconds(cursor: &str, now: DateTime<Utc>) -> Option<f64> {
    rfc3339(cursor).and_then(|newest| Cursor::Instant(newest).lag_seconds(now))
}

/// The larger of two optional cursors.
pub fn max(current: Option<Cursor>, candidate: Cursor) -> Option<Cursor> {
    match current {
        Some(current) if current >= candidate => Some(current),
        _ => Some(candidate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(text: &str) -> CursorFormat {
        text.parse().unwrap()
    }

    fn at(text: &str) -> Cursor {
        Cursor::Instant(rfc3339(text).unwrap())
    }

    #[test]
    fn time_formats_read_rfc3339_and_their_own_notation() {
        let seconds = format("unix_seconds");
        assert_eq!(seconds.parse("1709251200").unwrap(), at("2024-03-01T00:00:00Z"));
        assert_eq!(
            seconds.parse("2024-03-01T00:00:00+00:00").unwrap(),
            at("2024-03-01T00:00:00Z")
        );
        assert_eq!(seconds.render(&at("2024-03-01T00:00:00.900Z")), "1709251200");
        let millis = format("unix_millis");
        assert_eq!(millis.render(&at("2024-03-01T00:00:00.123456Z")), "1709251200123");
        assert_eq!(millis.parse("1709251200123").unwrap(), at("2024-03-01T00:00:00.123Z"));
        let day = format("date");
        assert_eq!(day.render(&at("2024-03-01T23:00:00+02:00")), "2024-03-01");
        assert_eq!(day.floor(at("2024-03-01T23:00:00Z")), at("2024-03-01T00:00:00Z"));
        let pattern = format("strftime:%Y/%m/%d %H:%M");
        assert_eq!(pattern.render(&at("2024-03-01T10:20:30Z")), "2024/03/01 10:20");
        assert_eq!(pattern.parse("2024/03/01 10:20").unwrap(), at("2024-03-01T10:20:00Z"));
        assert_eq!(
            format("rfc3339").render(&at("2024-01-01T10:00:00+02:00")),
            "2024-01-01T08:00:00Z"
        );
        assert!(seconds.parse("yesterday").is_err());
        assert!(seconds.parse("99999999999999999999").is_err());
        assert!(millis.parse(&i64::MAX.to_string()).is_err());
    }

    #[test]
    fn formats_are_checked() {
        assert!("unix".parse::<CursorFormat>().is_err());
        assert!("strftime:".parse::<CursorFormat>().is_err());
        assert!("strftime:%Y-%Q".parse::<CursorFormat>().is_err());
        assert!(matches!(
            "strftime:%H:%M".parse::<CursorFormat>(),
            Err(FormatError::NotReversible(_))
        ));
        assert_eq!(format("strftime:%Y%m%d").to_string(), "strftime:%Y%m%d");
        assert_eq!(CursorFormat::infer("2024-01-01T00:00:00Z"), CursorFormat::Rfc3339);
        assert_eq!(CursorFormat::infer("1704067200"), CursorFormat::Integer);
        assert_eq!(CursorFormat::infer("abc"), CursorFormat::Text);
    }

    #[test]
    fn compares_within_kind() {
        let integer = format("integer");
        assert!(integer.parse("9").unwrap() < integer.parse("10").unwrap());
        assert!(integer.parse("2024-01-01T00:00:00Z").is_err());
        let time = format("rfc3339");
        assert!(time.parse("2024-01-01T10:00:00+02:00").unwrap() < time.parse("2024-01-01T09:00:00Z").unwrap());
        let text = format("string");
        assert!(text.parse("b").unwrap() > text.parse("a").unwrap());
        assert_eq!(
            max(Some(Cursor::Integer(10)), Cursor::Integer(9)),
            Some(Cursor::Integer(10))
        );
        assert_eq!(max(None, Cursor::Integer(9)), Some(Cursor::Integer(9)));
    }

    #[test]
    fn steps_back() {
        let time = format("rfc3339");
        assert_eq!(
            time.minus(&at("2024-01-02T00:00:00Z"), Duration::from_secs(3600)),
            at("2024-01-01T23:00:00Z")
        );
        assert_eq!(
            format("date").minus(&at("2024-01-02T00:00:00Z"), Duration::from_secs(60)),
            at("2024-01-01T00:00:00Z")
        );
        assert_eq!(
            format("integer").minus(&Cursor::Integer(1000), Duration::from_secs(60)),
            Cursor::Integer(940)
        );
        let opaque = Cursor::Text("opaque".into());
        assert_eq!(format("string").minus(&opaque, Duration::from_secs(60)), opaque);
        // Huge lookbacks clamp, never panic.
        assert_eq!(
            time.minus(&at("2024-01-02T00:00:00Z"), Duration::MAX),
            Cursor::Instant(DateTime::<Utc>::MIN_UTC)
        );
    }
}
