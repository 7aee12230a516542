//! Database sources against real servers: PostgreSQL 15 and MariaDB 10.11, started by
//! `tests/database/run.sh`, which exports their URLs and runs these tests (`--ignored`:
//! the plain `cargo test` has no servers). Each test works in a schema (PostgreSQL) or
//! database (MariaDB) of its own, so they run in parallel.
#![allow(dead_code)]

mod mysql;
mod postgres;
mod postgres_xmin;

use std::path::PathBuf;
use std::process::Output;

use crate::common::{self, Workspace};

/// The URL of the suite's PostgreSQL server (a superuser login), or a failure saying how
/// to get one.
pub fn postgres_url() -> String {
    std::env::var("LANDFALL_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("LANDFALL_TEST_POSTGRES_URL is not set: run the database tests with tests/database/run.sh")
    })
}

/// The URL of the suite's MariaDB server (a login with every privilege).
pub fn mysql_url() -> String {
    std::env::var("LANDFALL_TEST_MYSQL_URL").unwrap_or_else(|_| {
        panic!("LANDFALL_TEST_MYSQL_URL is not set: run the database tests with tests/database/run.sh")
    })
}

/// `url` with its path (the database) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let mut url = url::Url::parse(url).expect("a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// A config of a `kind` source reading `streams` (YAML list items, indented by 2), whose
/// URL comes from `DATABASE_URL`.
pub fn config(ws: &Workspace, kind: &str, source_extra: &str, streams: &str) -> PathBuf {
    ws.config(&format!(
        "version: 1\nsource:\n  name: db\n  type: {kind}\n  url: ${{env:DATABASE_URL}}\n  retry: {{max_attempts: 5, initial_delay: 50ms, max_delay: 500ms}}\n{source_extra}streams:\n{streams}landing:\n  url: {{landing}}\n"
    ))
}

/// Runs `landfall run` with `DATABASE_URL`.
pub async fn run(config: &std::path::Path, url: &str, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = common::landfall(&args, &[("DATABASE_URL", url)]).await;
    common::keep_log(&args, &output);
    output
}

/// Starts `landfall run` with `DATABASE_URL` without waiting for it (output captured).
pub fn spawn(config: &std::path::Path, url: &str, extra: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_landfall"))
        .args(["run", "--config", config.to_str().unwrap()])
        .args(extra)
        .env("LANDFALL_LOG_FORMAT", "json")
        .env("DATABASE_URL", url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("landfall starts")
}

/// The `_raw` record of each landed line of `stream`, parsed.
pub fn records(ws: &Workspace, stream: &str) -> Vec<serde_json::Value> {
    ws.lines("db", stream)
        .iter()
        .map(|line| serde_json::from_str(line["_raw"].as_str().expect("_raw is text")).expect("_raw is JSON"))
        .collect()
}
