//! Human-friendly units in config values: durations (`30s`, `2m`, `1d`) and byte sizes
//! (`64MiB`, `512KB`, `1000`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `500ms`, `30s`, `2m`, `1h`, `1d` or combinations (`1h30m`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

/// The longest duration a config or flag may give (100 years): a longer one is a typo,
/// and clocks would overflow adding it.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

impl HumanDuration {
    /// `duration`, or an error when it passes [`MAX_DURATION`].
    fn bounded(duration: Duration, text: &str) -> Result<Self, String> {
        if duration > MAX_DURATION {
            return Err(format!("duration `{text}` is longer than 100 years"));
        }
        Ok(Self(duration))
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "0" {
            return Ok(Self(Duration::ZERO));
        }
        humantime::parse_duration(text)
            .map_err(|error| format!("invalid duration `{text}` ({error}); use e.g. 500ms, 30s, 2m, 1h, 1d"))
            .and_then(|duration| Self::bounded(duration, text))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = StringOrNumber::deserialize(deserializer)?;
        match text {
            StringOrNumber::Text(text) => text.parse().map_err(serde::de::Error::custom),
            StringOrNumber::Number(secs) => {
                Self::bounded(Duration::from_secs(secs), &secs.to_string()).map_err(serde::de::Error::custom)
            }
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A byte size written as `64MiB`, `512KiB`, `10MB`, `1GiB` or a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("invalid size `{text}`; use e.g. 64MiB, 512KiB, 10MB"))?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size unit `{other}` in `{text}`; use B, KB, MB, GB, KiB, MiB or GiB"
                ));
            }
        };
        Ok(Self((number * multiplier as f64) as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match StringOrNumber::deserialize(deserializer)? {
            StringOrNumber::Text(text) => text.parse().map_err(serde::de::Error::custom),
            StringOrNumber::Number(bytes) => Ok(Self(bytes)),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a string such as `30s` / `64MiB`, or a number")]
enum StringOrNumber {
    Text(String),
    Number(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!("30s".parse::<HumanDuration>().unwrap().0, Duration::from_secs(30));
        assert_eq!("2m".parse::<HumanDuration>().unwrap().0, Duration::from_secs(120));
        assert_eq!("1d".parse::<HumanDuration>().unwrap().0, Duration::from_secs(86_400));
        assert_eq!("500ms".parse::<HumanDuration>().unwrap().0, Duration::from_millis(500));
        assert_eq!("0s".parse::<HumanDuration>().unwrap().0, Duration::ZERO);
        assert_eq!("0".parse::<HumanDuration>().unwrap().0, Duration::ZERO);
        assert!("soon".parse::<HumanDuration>().is_err());
        // Instant + this overflowed: `max_run_duration: 18446744073709551615` panicked.
        assert!("200years".parse::<HumanDuration>().is_err());
        assert!(serde_json::from_str::<HumanDuration>("18446744073709551615").is_err());
        assert!(serde_json::from_str::<HumanDuration>("3600").is_ok());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert_eq!("10MB".parse::<ByteSize>().unwrap().0, 10_000_000);
        assert_eq!("1000".parse::<ByteSize>().unwrap().0, 1000);
        assert!("12 parsecs".parse::<ByteSize>().is_err());
    }
}
