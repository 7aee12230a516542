//! The fault-injection suite's machinery, shared by the HTTP case (`fault_injection.rs`)
//! and the database cases (`database/faults.rs`): seeded SIGKILLs at random moments, and
//! the checks that hold after every kill whatever the source:
//!
//! - every part object decompresses and parses ([`landed`]);
//! - a checkpoint (and its `.prev`) covers only stored records ([`checkpoints`] gives the
//!   cursors to check against the source; every record the checkpoint remembers as stored,
//!   its `recent` list, is landed);
//! - a manifest exists only for a finished run: every file it lists exists with its rows
//!   ([`check_manifests`]);
//! - one payload per version ([`deduplicate`]).
//!
//! `LANDFALL_FAULT_SEED` picks the seed, `LANDFALL_FAULT_TRIALS` the number of kills.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use rand::SeedableRng;
use serde_json::Value;

use super::Workspace;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A seeded series of kills: the seed from `LANDFALL_FAULT_SEED`, the number of kills from
/// `LANDFALL_FAULT_TRIALS`.
pub struct Kills {
    pub seed: u64,
    pub trials: u64,
    pub rng: rand::rngs::StdRng,
    /// Runs killed so far.
    pub kills: u64,
    /// Runs that finished before their kill.
    pub finished: u64,
}

/// How one run ended.
pub enum Outcome {
    Killed,
    Finished,
}

impl Kills {
    /// The series `name`, with `default_trials` kills unless `LANDFALL_FAULT_TRIALS` says.
    /// Prints the seed (shown with a failing test's output) for a rerun.
    pub fn from_env(name: &str, default_seed: u64, default_trials: u64) -> Self {
        let seed = env_number("LANDFALL_FAULT_SEED", default_seed);
        let trials = env_number("LANDFALL_FAULT_TRIALS", default_trials);
        println!("{name}: seed {seed}, {trials} kills (rerun with LANDFALL_FAULT_SEED={seed})");
        Self {
            seed,
            trials,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            kills: 0,
            finished: 0,
        }
    }

    pub fn done(&self) -> bool {
        self.kills >= self.trials
    }

    /// Lets `child` run until `moment` resolves, then SIGKILLs it and waits `lease_ttl` and a
    /// little more (the dead run's lease lapses on its own); a run that ends first must have
    /// succeeded.
    pub async fn kill_at(
        &mut self,
        mut child: tokio::process::Child,
        moment: impl Future<Output = ()>,
        lease_ttl: Duration,
        context: &str,
    ) -> Outcome {
        tokio::select! {
            status = child.wait() => {
                let status = status.unwrap();
                if !status.success() {
                    let output = child.wait_with_output().await.unwrap();
                    panic!("{context}: the run failed on its own ({status}): {}", super::stderr(&output));
                }
                self.finished += 1;
                Outcome::Finished
            }
            () = moment => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                self.kills += 1;
                tokio::time::sleep(lease_ttl + Duration::from_millis(50)).await;
                Outcome::Killed
            }
        }
    }
}

/// Every part line of `source`'s `stream` (`.jsonl.gz` objects under its folder), checking
/// that every part object is intact.
pub fn landed(ws: &Workspace, source: &str, stream: &str) -> Vec<Value> {
    let mut lines = Vec::new();
    for path in super::files_under(&ws.landing().join(source).join(stream)) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jsonl.gz") {
            // read_part panics on a corrupt gzip stream or a line that is not JSON.
            lines.extend(super::read_part(&path));
        }
    }
    lines
}

/// The `(_source_record_id, _source_updated_at)` of landed lines.
pub fn versions(lines: &[Value]) -> HashSet<(String, String)> {
    lines
        .iter()
        .map(|line| {
            (
                line["_source_record_id"].as_str().unwrap().to_owned(),
                line["_source_updated_at"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The cursors of `stream`'s checkpoint and of its `.prev` (`(file name, cursor)`), each
/// parsed (a corrupt state file fails); every record a checkpoint remembers as stored (its
/// `recent` list) must be among `lines`. The caller checks the records below each cursor.
pub fn checkpoints(
    ws: &Workspace,
    source: &str,
    stream: &str,
    lines: &[Value],
    context: &str,
) -> Vec<(String, String)> {
    let stored = versions(lines);
    let mut cursors = Vec::new();
    for name in [format!("{stream}.json"), format!("{stream}.json.prev")] {
        let path = ws.landing().join(source).join("_state").join(&name);
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let state: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{context}: {name} is corrupt: {e}"));
        for seen in state["recent"].as_array().into_iter().flatten() {
            let version = (
                seen["id"].as_str().unwrap().to_owned(),
                seen["cursor"].as_str().unwrap().to_owned(),
            );
            assert!(
                stored.contains(&version),
                "{context}: {name} remembers {version:?} as stored but it is not landed"
            );
        }
        if let Some(cursor) = state["cursor"].as_str() {
            cursors.push((name, cursor.to_owned()));
        }
    }
    cursors
}

/// Checks every manifest of `source` (each exists only for a finished run): every file it
/// lists exists, with the rows it says, and each stream's `rows_written` is their sum.
/// Returns the run ids of the manifests, in file order.
pub fn check_manifests(ws: &Workspace, source: &str, context: &str) -> Vec<String> {
    let mut run_ids = Vec::new();
    for manifest in ws.manifests(source) {
        for stream in manifest["streams"].as_array().unwrap() {
            let mut rows = 0;
            for file in stream["files"].as_array().unwrap() {
                let path = ws.landing().join(file["path"].as_str().unwrap());
                assert!(
                    path.exists(),
                    "{context}: manifest {} lists missing {}",
                    manifest["run_id"],
                    path.display()
                );
                assert_eq!(
                    super::read_part(&path).len() as u64,
                    file["rows"].as_u64().unwrap(),
                    "{context}"
                );
                rows += file["rows"].as_u64().unwrap();
            }
            assert_eq!(stream["rows_written"], rows, "{context}");
        }
        run_ids.push(manifest["run_id"].as_str().unwrap().to_owned());
    }
    run_ids
}

/// The landed lines' `_raw` by `key` (a version of a record: key and cursor, say), checking
/// each line's `_payload_sha256` and that no version landed with two different payloads.
pub fn deduplicate<K: Ord + std::fmt::Debug>(lines: &[Value], key: impl Fn(&Value) -> K) -> BTreeMap<K, String> {
    let mut deduplicated = BTreeMap::new();
    for line in lines {
        let raw = line["_raw"].as_str().unwrap().to_owned();
        assert_eq!(
            line["_payload_sha256"].as_str().unwrap(),
            landfall::hash::sha256_hex(raw.as_bytes())
        );
        let key = key(line);
        if let Some(previous) = deduplicated.get(&key) {
            assert_eq!(previous, &raw, "two different payloads for {key:?}");
        } else {
            deduplicated.insert(key, raw);
        }
    }
    deduplicated
}
