//! Database sources against real servers: PostgreSQL 15 and MariaDB 10.11, started by
//! `tests/database/run.sh`, which exports their URLs and runs these tests (`--ignored`:
//! the plain `cargo test` has no servers). Each test works in a schema (PostgreSQL) or
//! database (MariaDB) of its own, so they run in parallel.
//!
//! Both servers serve TLS with a certificate for `127.0.0.1` signed by a throwaway CA
//! (`LANDFALL_TEST_TLS_CA`): every config here trusts that CA unless its test sets `tls:`
//! itself, so the default mode (`prefer`) reads over verified TLS. The tests whose name
//! contains `without_tls` need MariaDB without TLS: `run.sh` runs them last, after restarting
//! it so.
#![allow(dead_code)]

mod discover;
mod faults;
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

/// The CA (PEM) that signed both servers' certificate, whose only name is `127.0.0.1`.
pub fn tls_ca() -> String {
    std::env::var("LANDFALL_TEST_TLS_CA").unwrap_or_else(|_| {
        panic!("LANDFALL_TEST_TLS_CA is not set: run the database tests with tests/database/run.sh")
    })
}

/// A second CA (PEM), which signed neither server's certificate.
pub fn other_tls_ca() -> String {
    std::env::var("LANDFALL_TEST_TLS_OTHER_CA").unwrap_or_else(|_| {
        panic!("LANDFALL_TEST_TLS_OTHER_CA is not set: run the database tests with tests/database/run.sh")
    })
}

/// `url` with its path (the database) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let mut url = url::Url::parse(url).expect("a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// A config of a `kind` source reading `streams` (YAML list items, indented by 2), whose
/// URL comes from `DATABASE_URL`; it trusts the suite's CA unless `source_extra` sets `tls:`.
pub fn config(ws: &Workspace, kind: &str, source_extra: &str, streams: &str) -> PathBuf {
    let tls = if source_extra.contains("  tls:") {
        String::new()
    } else {
        format!("  tls: {{ca_file: '{}'}}\n", tls_ca())
    };
    ws.config(&format!(
        "version: 1\nsource:\n  name: db\n  type: {kind}\n  url: ${{env:DATABASE_URL}}\n  retry: {{max_attempts: 5, initial_delay: 50ms, max_delay: 500ms}}\n{tls}{source_extra}streams:\n{streams}landing:\n  url: {{landing}}\n"
    ))
}

/// Lands `config`'s records in parts of `records` (2,000, say), so a read stores several
/// parts (and moves its checkpoint) long before it ends.
pub fn small_parts(config: &std::path::Path, records: u32) {
    let text = std::fs::read_to_string(config).unwrap().replace(
        "landing:\n  url:",
        &format!("landing:\n  part_max_records: {records}\n  url:"),
    );
    std::fs::write(config, text).unwrap();
}

/// Waits (up to 2 minutes) until `count` parts of the stream `items` are stored: the read
/// is under way.
pub async fn parts_stored(ws: &Workspace, count: usize) -> bool {
    common::wait_until(std::time::Duration::from_secs(120), || {
        ws.part_files("db", "items").len() >= count
    })
    .await
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

/// The `id` of each record, sorted.
pub fn ids(records: &[serde_json::Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = records
        .iter()
        .map(|record| record["id"].as_i64().expect("an integer id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// The peak resident set (`VmHWM`, KiB) of process `pid`, read from `/proc` until it exits.
pub async fn peak_rss_kib(pid: u32) -> u64 {
    let mut peak = 0;
    loop {
        let Ok(status) = tokio::fs::read_to_string(format!("/proc/{pid}/status")).await else {
            return peak;
        };
        let Some(kib) = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        else {
            return peak; // exited, not yet reaped
        };
        peak = peak.max(kib);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Restarts the `kind` server at `url` (the suite's `restart` script, `fast`: sessions are
/// ended and the server is down for a moment) while `landfall run` reads `table` (`rows` rows
/// with ids 1 to `rows`) in small chunks, then checks that the run retried on a new
/// connection from the last row read: it succeeds, with every row exactly once. Tests that
/// call this have `server_restart` in their name: `run.sh` runs them alone, since the restart
/// ends every session on the server.
pub async fn server_restart_mid_read(kind: &str, url: &str, table: &str, rows: i64, restart: &str) {
    let ws = Workspace::new();
    let config = config(
        &ws,
        kind,
        "",
        &format!("  - {{name: items, table: {table}, primary_key: [id], chunk_size: 100}}\n"),
    );
    // Retries patient enough for a restart.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "retry: {max_attempts: 5, initial_delay: 50ms, max_delay: 500ms}",
        "retry: {max_attempts: 12, initial_delay: 250ms, max_delay: 2s}",
    );
    std::fs::write(&config, text).unwrap();
    small_parts(&config, 2000);
    let child = spawn(&config, url, &[]);
    assert!(parts_stored(&ws, 1).await, "a part was stored before the restart");
    let script = std::env::var(restart)
        .unwrap_or_else(|_| panic!("{restart} is not set: run the database tests with tests/database/run.sh"));
    let restarted = tokio::process::Command::new(&script)
        .arg("fast")
        .output()
        .await
        .unwrap();
    assert!(
        restarted.status.success(),
        "{script} fast: {}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(
        ids(&records(&ws, "items")),
        (1..=rows).collect::<Vec<_>>(),
        "every row exactly once"
    );
    let manifests = ws.manifests("db");
    let report = common::stream_report(&manifests[0], "items");
    assert!(
        report["retries"].as_u64().unwrap() >= 1,
        "the restart broke the read: {report:#}"
    );
}

/// TLS against the suite's certificate (a throwaway CA, the name `127.0.0.1` only), on the
/// `kind` source at `url`: `require` and `verify-full` with the CA as `ca_file` read over TLS
/// (`tls_query` returns `id` and `tls`: `true`, or the TLS version, while the session uses
/// TLS); `verify-full` with another CA, `verify-full` through a host name the certificate does
/// not name (`localhost`) and `prefer` without the CA are refused at once, not retried, with
/// an error that says what to set.
pub async fn tls_against_the_suite_certificate(kind: &str, url: &str, tls_query: &str) {
    let stream = format!("  - {{name: tls, query: \"{tls_query}\", primary_key: [id]}}\n");
    let ca = tls_ca();
    for mode in ["require", "verify-full"] {
        let ws = Workspace::new();
        let tls = format!("  tls: {{mode: {mode}, ca_file: '{ca}'}}\n");
        let output = run(&config(&ws, kind, &tls, &stream), url, &[]).await;
        assert!(output.status.success(), "{mode}: {}", common::stderr(&output));
        let landed = records(&ws, "tls");
        let tls = &landed[0]["tls"];
        assert!(
            *tls == serde_json::Value::Bool(true) || tls.as_str().is_some_and(|version| version.starts_with("TLSv")),
            "{mode}: the session uses TLS: {landed:?}"
        );
    }

    let mut localhost = url::Url::parse(url).unwrap();
    localhost.set_host(Some("localhost")).unwrap();
    let other_ca = other_tls_ca();
    let refused = [
        (
            "a CA that did not sign the certificate",
            format!("  tls: {{mode: verify-full, ca_file: '{other_ca}'}}\n"),
            url.to_owned(),
            "UnknownIssuer",
        ),
        (
            "a host name the certificate does not name",
            format!("  tls: {{mode: verify-full, ca_file: '{ca}'}}\n"),
            localhost.to_string(),
            "localhost",
        ),
        (
            "prefer without the CA",
            "  tls: {mode: prefer}\n".to_owned(),
            url.to_owned(),
            "UnknownIssuer",
        ),
    ];
    for (case, tls, url, detail) in refused {
        let ws = Workspace::new();
        let output = run(&config(&ws, kind, &tls, &stream), &url, &[]).await;
        let stderr = common::stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{case}: not retryable: {stderr}");
        assert!(
            stderr.contains("CONFIG_ERROR") && stderr.contains("certificate") && stderr.contains(detail),
            "{case}: {stderr}"
        );
        assert!(
            stderr.contains("source.tls.ca_file"),
            "{case}: the error says what to set: {stderr}"
        );
        assert!(!stderr.contains("request_retried"), "{case}: not retried: {stderr}");
        assert!(ws.part_files("db", "tls").is_empty(), "{case}: nothing landed");
    }
}
