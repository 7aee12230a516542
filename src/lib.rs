//! Landfall: a lean declarative REST API extractor that lands raw records as JSONL in object
//! storage, with provenance on every record, a run manifest as the commit marker and
//! checkpoints that make any crash resumable.
//!
//! The pipeline, by module: [`config`] (load, resolve references, compose the component configs), [`source`] (where records come
//! from: the `Source` trait, the REST family), [`http`] (requests, auth, retries, and the `source:` config),
//! [`pagination`] (each scheme end to end), [`records`] (byte-exact record extraction), [`envelope`] (provenance),
//! [`landing`] (object storage layout and parts), [`state`] (checkpoints and where they may
//! move, lease, credentials, cursors), [`report`] (manifest, XCom, metrics, lineage, dbt
//! sources), and [`extract`] which drives a run and writes what sources read. [`observe`] (events, logs, telemetry, progress) is
//! used by all; [`cli`] is the binary's edge and its commands. `docs/architecture.md` maps
//! them. Leaves below all of them: [`settings`] (what component configs are made of),
//! [`cursor`], [`error`], [`redact`], [`hash`], [`clock`].

pub mod cli;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod demo;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod hash;
pub mod http;
pub mod init;
pub mod landing;
pub mod observe;
pub mod pagination;
pub mod quality;
pub mod records;
pub mod redact;
pub mod report;
pub mod settings;
pub mod source;
pub mod state;

/// The connector version, as written into every record and manifest.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this binary was built from.
pub const GIT_SHA: &str = env!("LANDFALL_GIT_SHA");
