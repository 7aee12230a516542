//! The landing zone's config (`landing:`): where parts go, how they are compressed and
//! rolled, how storage requests are retried, with its checks, made without I/O (the URL and
//! the backend's `landing.options` are parsed, no store is contacted).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::LandingError;
use super::options::Backend;
use crate::settings::check::{has_reference, non_empty};
use crate::settings::{ByteSize, ConfigError, HumanDuration};

/// Part compression.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    /// Zstandard frames (`.jsonl.zst`).
    Zstd,
    None,
}

/// `landing`: where and how parts are written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LandingConfig {
    /// `file://`, `memory://`, `s3://`, `az://`, `gs://`. Default: `file://./landing`.
    #[serde(default = "default_landing_url")]
    pub url: String,
    /// Backend options by `object_store` config key names; scalar values (`true`, `30`)
    /// are taken as their text. Credentials are refused. Default: none.
    #[serde(default, deserialize_with = "scalar_text_map")]
    pub options: BTreeMap<String, String>,
    /// Default: gzip.
    #[serde(default)]
    pub compression: Compression,
    /// The gzip or zstd level, 1 (fastest) to 12 (smallest): libdeflate's scale for gzip,
    /// zstd's own levels 1 to 12 for zstd. Default: 1; for gzip it compresses JSONL about 12%
    /// larger than level 5 in 60% of its time.
    #[serde(default)]
    pub compression_level: Option<u8>,
    /// Records per part before it is rolled. Default: 100000.
    #[serde(
        default = "default_part_max_records",
        deserialize_with = "crate::settings::nonzero::at_least_one"
    )]
    pub part_max_records: std::num::NonZeroU64,
    /// Uncompressed bytes per part before it is rolled. Default: 64MiB.
    #[serde(default = "default_part_max_bytes")]
    pub part_max_bytes: ByteSize,
    /// Compressed bytes after which a part streams through a multipart upload, in chunks
    /// of this size (S3 and GCS need at least 5MiB). Default: 8MiB.
    #[serde(default = "default_multipart_chunk")]
    pub multipart_chunk: ByteSize,
    /// How failed storage requests are retried. Default: see [`StorageRetryConfig`].
    #[serde(default)]
    pub retry: StorageRetryConfig,
    /// A run aborts the unfinished multipart uploads that earlier runs left under
    /// `{source}/_tmp/` once they are older than this (a killed run cannot abort its own).
    /// Default: 24h.
    #[serde(default = "default_stale_upload_after")]
    pub stale_upload_after: HumanDuration,
}

/// `landing.retry`: how storage requests that fail with a 5xx, 429, 408, a timeout or a
/// connection error are retried (exponential backoff with jitter, by `object_store`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageRetryConfig {
    /// Retries per request after the first attempt; 0 disables retries. Default: 10.
    #[serde(default = "default_storage_max_retries")]
    pub max_retries: u32,
    /// The first backoff. Default: 100ms.
    #[serde(default = "default_storage_initial_backoff")]
    pub initial_backoff: HumanDuration,
    /// The longest backoff. Default: 15s.
    #[serde(default = "default_storage_max_backoff")]
    pub max_backoff: HumanDuration,
    /// No retry starts later than this after a request's first attempt. Default: 3m.
    #[serde(default = "default_storage_budget")]
    pub budget: HumanDuration,
}

fn default_storage_max_retries() -> u32 {
    10
}
fn default_storage_initial_backoff() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(100))
}
fn default_storage_max_backoff() -> HumanDuration {
    HumanDuration::from_secs(15)
}
fn default_storage_budget() -> HumanDuration {
    HumanDuration::from_secs(180)
}
fn default_stale_upload_after() -> HumanDuration {
    HumanDuration::from_secs(24 * 3600)
}

impl Default for StorageRetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_storage_max_retries(),
            initial_backoff: default_storage_initial_backoff(),
            max_backoff: default_storage_max_backoff(),
            budget: default_storage_budget(),
        }
    }
}

/// A map whose values are strings, booleans or numbers, each kept as its text, so that
/// `allow_http: true` reads as `object_store` expects it.
fn scalar_text_map<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(deserializer)?;
    raw.into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => Ok((key, text)),
            serde_json::Value::Bool(flag) => Ok((key, flag.to_string())),
            serde_json::Value::Number(number) => Ok((key, number.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "`{key}` must be a string, a boolean or a number, not {other}"
            ))),
        })
        .collect()
}

/// The gzip or zstd level used when `landing.compression_level` is not set.
pub const DEFAULT_COMPRESSION_LEVEL: u8 = 1;

impl LandingConfig {
    /// The gzip or zstd level in effect.
    pub fn level(&self) -> u8 {
        self.compression_level.unwrap_or(DEFAULT_COMPRESSION_LEVEL)
    }
}

fn default_multipart_chunk() -> ByteSize {
    ByteSize(8 << 20)
}

fn default_landing_url() -> String {
    "file://./landing".to_owned()
}
fn default_part_max_records() -> std::num::NonZeroU64 {
    std::num::NonZeroU64::new(100_000).expect("100,000 is not 0")
}
fn default_part_max_bytes() -> ByteSize {
    ByteSize(64 << 20)
}

impl Default for LandingConfig {
    fn default() -> Self {
        Self {
            url: default_landing_url(),
            options: BTreeMap::new(),
            compression: Compression::Gzip,
            compression_level: None,
            part_max_records: default_part_max_records(),
            part_max_bytes: default_part_max_bytes(),
            multipart_chunk: default_multipart_chunk(),
            retry: StorageRetryConfig::default(),
            stale_upload_after: default_stale_upload_after(),
        }
    }
}

impl LandingConfig {
    /// Checks the landing settings without I/O (errors name `landing.<key>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let landing = self;
        non_empty("landing.url", &landing.url)?;
        if let Some(level) = landing.compression_level {
            if landing.compression == Compression::None {
                return Err(ConfigError::invalid(
                    "landing.compression_level",
                    "applies to gzip and zstd only; remove it or set landing.compression: gzip or zstd",
                ));
            }
            if !(1..=12).contains(&level) {
                return Err(ConfigError::invalid(
                    "landing.compression_level",
                    format!("must be 1 (fastest) to 12 (smallest), not {level}"),
                ));
            }
        }
        if landing.part_max_bytes.0 < 1024 {
            return Err(ConfigError::invalid("landing.part_max_bytes", "must be at least 1KiB"));
        }
        if landing.multipart_chunk.0 < 1024 {
            return Err(ConfigError::invalid("landing.multipart_chunk", "must be at least 1KiB"));
        }
        if landing.retry.initial_backoff.0 > landing.retry.max_backoff.0 {
            return Err(ConfigError::invalid(
                "landing.retry.initial_backoff",
                "must not exceed landing.retry.max_backoff",
            ));
        }
        if !has_reference(&landing.url) {
            let parsed =
                super::store::parse(&landing.url).map_err(|message| ConfigError::invalid("landing.url", message))?;
            super::store::check(&landing.url, &landing.options).map_err(|error| match error {
                LandingError::Option { key, message } => {
                    ConfigError::invalid(format!("landing.options.{key}"), message)
                }
                other => ConfigError::invalid("landing.url", other.to_string()),
            })?;
            // A staged part is published by one server-side copy, which S3 caps at 5 GiB.
            if parsed.backend() == Backend::S3 && landing.part_max_bytes.0 > 5 << 30 {
                return Err(ConfigError::invalid(
                    "landing.part_max_bytes",
                    "S3 publishes a part with one server-side copy, at most 5GiB",
                ));
            }
            // S3 and GCS refuse multipart parts under 5 MiB (all but the last).
            if matches!(parsed.backend(), Backend::S3 | Backend::Gcs) && landing.multipart_chunk.0 < 5 << 20 {
                return Err(ConfigError::invalid(
                    "landing.multipart_chunk",
                    format!("{} needs multipart chunks of at least 5MiB", parsed.backend()),
                ));
            }
        }
        Ok(())
    }
}
