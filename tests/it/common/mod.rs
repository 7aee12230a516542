//! Helpers shared by the binary's integration tests: configs in temp folders, running the
//! real `landfall` binary, and reading back what it landed.
#![allow(dead_code)]

pub mod api;
pub mod faults;
pub mod servers;
pub mod vendors;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// A temp folder holding a config and its landing zone.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

/// With `LANDFALL_TEST_ARTIFACTS` set, workspaces and run logs are kept there (not deleted)
/// so the suite's secret scan can grep everything the tests produced.
fn artifacts_dir() -> Option<PathBuf> {
    std::env::var_os("LANDFALL_TEST_ARTIFACTS").map(PathBuf::from)
}

impl Workspace {
    pub fn new() -> Self {
        let dir = match artifacts_dir() {
            Some(root) => {
                std::fs::create_dir_all(&root).expect("artifacts dir");
                tempfile::Builder::new()
                    .prefix("ws-")
                    .disable_cleanup(true)
                    .tempdir_in(root)
                    .expect("temp dir")
            }
            None => tempfile::tempdir().expect("temp dir"),
        };
        Self { dir }
    }

    pub fn landing(&self) -> PathBuf {
        self.dir.path().join("landing")
    }

    /// Writes `config.yaml`; `{landing}` in the text becomes this workspace's landing URL.
    pub fn config(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("config.yaml");
        let text = text.replace("{landing}", &format!("file://{}", self.landing().display()));
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Every landed part line of `stream`, parsed, in file order.
    pub fn lines(&self, source: &str, stream: &str) -> Vec<Value> {
        self.part_files(source, stream)
            .iter()
            .flat_map(|path| read_part(path))
            .collect()
    }

    /// Part files of `stream`, sorted.
    pub fn part_files(&self, source: &str, stream: &str) -> Vec<PathBuf> {
        let mut files = files_under(&self.landing().join(source).join(stream));
        files.retain(|path| path.to_string_lossy().contains("part-"));
        files.sort();
        files
    }

    /// The manifests of `source`, parsed.
    pub fn manifests(&self, source: &str) -> Vec<Value> {
        let mut files = files_under(&self.landing().join(source).join("_manifests"));
        files.sort();
        files
            .iter()
            .map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).expect("manifest is JSON"))
            .collect()
    }

    pub fn state(&self, source: &str, stream: &str) -> Option<Value> {
        let path = self
            .landing()
            .join(source)
            .join("_state")
            .join(format!("{stream}.json"));
        std::fs::read(path)
            .ok()
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
    }
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Decompresses (when `.gz`) and parses every line of a part.
pub fn read_part(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).expect("read part");
    let text = if path.extension().is_some_and(|ext| ext == "gz") {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("valid gzip");
        text
    } else if path.extension().is_some_and(|ext| ext == "zst") {
        let mut text = String::new();
        zstd::stream::read::Decoder::new(&bytes[..])
            .expect("a zstd decoder")
            .read_to_string(&mut text)
            .expect("valid zstd");
        text
    } else {
        String::from_utf8(bytes).expect("utf-8")
    };
    text.lines()
        .map(|line| serde_json::from_str(line).expect("line is JSON"))
        .collect()
}

/// Runs the real binary with JSON logs.
pub async fn landfall(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_landfall"));
    command
        .args(args)
        .env("LANDFALL_LOG_FORMAT", "json")
        .env_remove("LANDFALL_CONFIG");
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command.output().await.expect("landfall runs");
    keep_log(args, &output);
    output
}

/// Keeps a run's output under the artifacts dir, for the secret scan.
pub fn keep_log(args: &[&str], output: &Output) {
    if let Some(root) = artifacts_dir() {
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        let mut text = format!("$ landfall {}\n", args.join(" "));
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        std::fs::write(logs.join(format!("{}.log", uuid::Uuid::now_v7())), text).expect("write log");
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JSON log events in stderr.
pub fn events(output: &Output) -> Vec<Value> {
    stderr(output)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

/// Runs `landfall run --config <config>` with extra args.
pub async fn run(config: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    landfall(&args, &[]).await
}

/// A config for one stream against `base_url`, landing into the workspace.
pub fn one_stream(base_url: &str, stream: &str) -> String {
    format!(
        "version: 1\nsource:\n  name: shop\n  base_url: {base_url}\n  retry: {{max_attempts: 3, initial_delay: 10ms, max_delay: 50ms}}\nstreams:\n  - {stream}\nlanding:\n  url: {{landing}}\n"
    )
}

/// Runs one `stream` against `server` in a fresh workspace.
pub async fn run_stream(server: &wiremock::MockServer, stream: &str) -> (Workspace, Output) {
    let ws = Workspace::new();
    let config = ws.config(&one_stream(&server.uri(), stream));
    let output = run(&config, &[]).await;
    (ws, output)
}

/// Runs one `stream` against `server` in a fresh workspace and asserts that the run succeeded.
pub async fn run_ok(server: &wiremock::MockServer, stream: &str) -> (Workspace, Output) {
    let (ws, output) = run_stream(server, stream).await;
    assert!(output.status.success(), "{}", stderr(&output));
    (ws, output)
}

/// The item of the array `value[array]` whose `key` is `name`: a manifest's stream report, a
/// `landfall check` report's step.
pub fn named<'a>(value: &'a Value, array: &str, key: &str, name: &str) -> &'a Value {
    value[array]
        .as_array()
        .unwrap_or_else(|| panic!("no array `{array}` in {value:#}"))
        .iter()
        .find(|item| item[key] == name)
        .unwrap_or_else(|| panic!("no `{array}` item with {key} {name} in {value:#}"))
}

/// The report of stream `name` in a run manifest.
pub fn stream_report<'a>(manifest: &'a Value, name: &str) -> &'a Value {
    named(manifest, "streams", "name", name)
}

/// Starts `landfall run` without waiting for it (stderr captured).
pub fn spawn_run(config: &Path, extra: &[&str]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_landfall"));
    command
        .args(["run", "--config", config.to_str().unwrap()])
        .args(extra)
        .env("LANDFALL_LOG_FORMAT", "json")
        .env_remove("LANDFALL_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command.spawn().expect("landfall starts")
}

/// Sends a signal (e.g. "TERM") to a child process.
pub fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("child is running").to_string();
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until `predicate` holds, polling every 10 ms, at most `timeout`.
pub async fn wait_until(timeout: std::time::Duration, mut predicate: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if predicate() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    predicate()
}
