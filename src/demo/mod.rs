//! `landfall demo`: serve the sample API on loopback and run a real extraction into a local
//! folder, then say where everything landed.

pub mod api;

use std::path::{Path, PathBuf};

use crate::config::{ConnectorConfig, LoadedConfig, Resolve};
use crate::settings::ConfigError;

/// The demo connector config, shipped as `config-examples/demo.yaml`.
pub const DEMO_CONFIG: &str = include_str!("../../config-examples/demo.yaml");

/// The demo config pointed at a running sample API and a landing folder.
pub fn config(api_url: &str, landing: &Path) -> Result<LoadedConfig, ConfigError> {
    let landing_url = format!("file://{}", landing.display());
    ConnectorConfig::from_yaml(DEMO_CONFIG, Resolve::References, &|name| match name {
        "DEMO_API_URL" => Some(api_url.to_owned()),
        "LANDFALL_LANDING_URL" => Some(landing_url.clone()),
        other => std::env::var(other).ok(),
    })
}

/// The landing folder as an absolute path.
pub fn absolute(folder: &Path) -> PathBuf {
    if folder.is_absolute() {
        folder.to_owned()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(folder))
            .unwrap_or_else(|_| folder.to_owned())
    }
}
