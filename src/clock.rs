//! Timestamps as the contract writes them: UTC RFC 3339 with microseconds.
//!
//! The manifest, checkpoints and leases hold typed instants ([`DateTime<Utc>`] through
//! [`micros`], or [`StoredTime`] where a stored text that does not parse must be tolerated)
//! and write them as [`rfc3339_micros`] does, so their JSON text is what it always was.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Formats an instant as `2026-11-21T11:12:14.123456Z`.
pub fn rfc3339_micros(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Any RFC 3339 text (any offset, any fraction) as a UTC instant.
pub fn parse_rfc3339(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|instant| instant.with_timezone(&Utc))
}

/// Now, to the microsecond: what [`rfc3339_micros`] writes of it reads back equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Serde for a [`DateTime<Utc>`] field (`#[serde(with = "crate::clock::micros")]`): written
/// as [`rfc3339_micros`], read from any RFC 3339 text; other text is an error.
pub mod micros {
    use super::*;

    pub fn serialize<S: Serializer>(instant: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339_micros(*instant))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_rfc3339(&text).ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 timestamp")))
    }
}

/// A timestamp of a `_state/` object (a checkpoint's `updated_at`, a lease's `acquired_at`
/// and `expires_at`), which people and other versions may have written: the instant when the
/// text is RFC 3339, and always the text as found, which is what is shown and written back.
/// A text that does not parse is kept, not refused (a lease with an unreadable expiry counts
/// as expired; a checkpoint's `updated_at` is only informative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTime {
    text: String,
    instant: Option<DateTime<Utc>>,
}

impl StoredTime {
    /// A stored text, parsed when it is RFC 3339.
    pub fn read(text: impl Into<String>) -> Self {
        let text = text.into();
        let instant = parse_rfc3339(&text);
        Self { text, instant }
    }

    /// The instant, `None` when the stored text is not RFC 3339.
    pub fn instant(&self) -> Option<DateTime<Utc>> {
        self.instant
    }

    /// The text as stored (or as it will be written).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<DateTime<Utc>> for StoredTime {
    /// The instant to the microsecond, written as [`rfc3339_micros`].
    fn from(instant: DateTime<Utc>) -> Self {
        let instant = instant.trunc_subsecs(6);
        Self {
            text: rfc3339_micros(instant),
            instant: Some(instant),
        }
    }
}

impl std::fmt::Display for StoredTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for StoredTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for StoredTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::read)
    }
}

/// Now, formatted as [`rfc3339_micros`].
///
/// Called for every landed line (`_loaded_at`), so the text up to the second is formatted
/// once per second and thread, and only the microseconds are written each time.
pub fn now_rfc3339() -> String {
    let now = Utc::now();
    LAST_SECOND.with_borrow_mut(|(second, text)| {
        let micros = now.timestamp_subsec_micros();
        if *second != Some(now.timestamp()) || micros >= 1_000_000 {
            *text = rfc3339_micros(now);
            // The shortcut needs the fixed `YYYY-MM-DDTHH:MM:SS.ffffffZ` shape.
            *second = (text.len() == 27 && micros < 1_000_000).then(|| now.timestamp());
            return text.clone();
        }
        let mut line = String::with_capacity(27);
        line.push_str(&text[..20]);
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        line.push_str(std::str::from_utf8(&digits).expect("ASCII digits"));
        line.push('Z');
        line
    })
}

thread_local! {
    /// The second last formatted on this thread, and its text.
    static LAST_SECOND: std::cell::RefCell<(Option<i64>, String)> = const { std::cell::RefCell::new((None, String::new())) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_seconds_format_like_chrono() {
        for _ in 0..3 {
            let before = Utc::now();
            let text = now_rfc3339();
            let after = Utc::now();
            let parsed = chrono::DateTime::parse_from_rfc3339(&text).unwrap().with_timezone(&Utc);
            assert!(before.timestamp_micros() <= parsed.timestamp_micros(), "{text}");
            assert!(parsed.timestamp_micros() <= after.timestamp_micros(), "{text}");
            assert_eq!(text, rfc3339_micros(parsed), "same shape as chrono's");
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stamped {
        #[serde(with = "micros")]
        at: DateTime<Utc>,
        stored: StoredTime,
    }

    #[test]
    fn typed_timestamps_write_the_text_now_rfc3339_writes_and_read_any_rfc3339() {
        let at = now();
        let written = serde_json::to_value(Stamped { at, stored: at.into() }).unwrap();
        let text = rfc3339_micros(at);
        assert_eq!(text.len(), 27, "{text}");
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(written, serde_json::json!({"at": text, "stored": text}));
        let read: Stamped = serde_json::from_value(written).unwrap();
        assert_eq!((read.at, read.stored.instant()), (at, Some(at)));

        // Any offset and fraction reads; a stored text is written back as it was found.
        let read: Stamped =
            serde_json::from_str(r#"{"at": "2024-05-01T12:00:00+02:00", "stored": "2024-05-01T10:00:00.5Z"}"#).unwrap();
        assert_eq!(rfc3339_micros(read.at), "2024-05-01T10:00:00.000000Z");
        assert_eq!(
            read.stored.instant().map(rfc3339_micros).as_deref(),
            Some("2024-05-01T10:00:00.500000Z")
        );
        assert_eq!(
            serde_json::to_string(&read).unwrap(),
            r#"{"at":"2024-05-01T10:00:00.000000Z","stored":"2024-05-01T10:00:00.5Z"}"#
        );

        // A stored text that is not a timestamp is kept; a typed field refuses it.
        let read: Stamped = serde_json::from_str(r#"{"at": "2024-05-01T10:00:00Z", "stored": "yesterday"}"#).unwrap();
        assert_eq!((read.stored.instant(), read.stored.as_str()), (None, "yesterday"));
        assert!(
            serde_json::to_string(&read)
                .unwrap()
                .contains(r#""stored":"yesterday""#)
        );
        let error = serde_json::from_str::<Stamped>(r#"{"at": "yesterday", "stored": "x"}"#).unwrap_err();
        assert!(
            error.to_string().contains("`yesterday` is not an RFC 3339 timestamp"),
            "{error}"
        );
    }
}
