//! Landfall's integration tests: one test binary (`it`) with a module per area, so the
//! library and its dependencies are linked once instead of once per file (the layout
//! ripgrep uses). Run one area or one test by name filter:
//!
//! ```text
//! cargo test --test it                      # all of them
//! cargo test --test it http::               # one module
//! cargo test --test it hostile::a_1_gib     # one test (add -- --ignored if it is ignored)
//! ```
//!
//! A test that needs a service `cargo test` does not start (a storage emulator, a real vendor
//! or cloud) is `#[ignore = "needs <service>; run by <suite>"]`, so a plain `cargo test` lists
//! it as ignored instead of passing without running it; the suite named starts the service
//! and runs it with `--ignored` or `--include-ignored`.

mod common;

mod architecture;
mod async_job;
mod cli;
mod concurrency;
mod connectors;
mod database;
mod fault_injection;
mod formats;
mod google_auth;
mod hostile;
mod http;
mod incremental;
mod init;
mod landing;
mod live;
mod observability;
mod orphans;
mod pagination;
mod prefetch;
mod quality;
mod resilience;
mod runbooks;
mod schedule;
mod storage;
mod tls;
mod windows;
