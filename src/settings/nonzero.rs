//! Config counts that must be at least 1, held as `NonZero*` so nothing past loading can
//! see a 0. A 0 is refused while the config is read, with the words the checks use:
//! "must be at least 1" (with `serde(deserialize_with = ...)`; a plain `NonZero*` field would
//! say "expected a nonzero u32").

use std::fmt::Display;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error};

/// A `NonZero*` integer, read from its primitive.
pub trait NonZero: Sized {
    type Int: DeserializeOwned + Display;
    fn from_int(int: Self::Int) -> Option<Self>;
}

macro_rules! non_zero {
    ($($non_zero:ty => $int:ty),*) => {$(
        impl NonZero for $non_zero {
            type Int = $int;
            fn from_int(int: $int) -> Option<Self> {
                <$non_zero>::new(int)
            }
        }
    )*};
}

non_zero!(NonZeroU32 => u32, NonZeroU64 => u64, NonZeroUsize => usize);

/// `deserialize_with` for a count of at least 1.
pub fn at_least_one<'de, D: Deserializer<'de>, T: NonZero>(deserializer: D) -> Result<T, D::Error> {
    let int = T::Int::deserialize(deserializer)?;
    T::from_int(int).ok_or_else(|| D::Error::custom("must be at least 1"))
}

/// `deserialize_with` for a count of at least 1, or null (no limit).
pub fn at_least_one_or_null<'de, D: Deserializer<'de>, T: NonZero>(deserializer: D) -> Result<Option<T>, D::Error> {
    match Option::<T::Int>::deserialize(deserializer)? {
        None => Ok(None),
        Some(int) => T::from_int(int)
            .map(Some)
            .ok_or_else(|| D::Error::custom("must be at least 1 or null")),
    }
}

/// As [`at_least_one`], for a field of an internally tagged enum (`pagination`): serde reads
/// such a variant from a buffer, where the error's path stops at the enum, so the message
/// names the key itself: "limit: must be at least 1".
pub fn named_at_least_one<'de, D: Deserializer<'de>, T: NonZero>(deserializer: D, key: &str) -> Result<T, D::Error> {
    at_least_one(deserializer).map_err(|error: D::Error| D::Error::custom(format!("{key}: {error}")))
}

/// As [`at_least_one_or_null`], for a field of an internally tagged enum.
pub fn named_at_least_one_or_null<'de, D: Deserializer<'de>, T: NonZero>(
    deserializer: D,
    key: &str,
) -> Result<Option<T>, D::Error> {
    at_least_one_or_null(deserializer).map_err(|error: D::Error| D::Error::custom(format!("{key}: {error}")))
}
