//! A secret value from the config, registered with the redaction layer and never printed.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A secret from the config: resolved from a reference, registered with the redaction
/// layer, and never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// The secret's value, for the one place that must send it (a header, a signature).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Builds a secret from an already resolved value (tests and the demo).
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        crate::redact::register(&value);
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::redact::MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        crate::redact::register(&value);
        Ok(Self(value))
    }
}
