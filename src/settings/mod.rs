//! What every component's config is made of, below all of them: human units
//! ([`units`]), secrets ([`secret`]), and the error a check returns with the small checks
//! the components share ([`check`]). Each component owns its config and its checks
//! (`http/config.rs`, `landing/config.rs`, `pagination/config.rs`, ...); `config/` loads the
//! YAML, resolves references and composes them.

pub mod check;
pub mod nonzero;
pub mod secret;
pub mod units;

pub use check::ConfigError;
pub use secret::Secret;
pub use units::{ByteSize, HumanDuration};
