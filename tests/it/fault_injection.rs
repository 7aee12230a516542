//! Kill it anywhere, lose nothing: an incremental extraction from a loopback source of tens
//! of thousands of records, SIGKILLed at random moments (seeded, reproducible), restarted
//! each time until a run completes. After every kill and at the end:
//!
//! - every part object decompresses and parses;
//! - every record below a checkpoint (and its `.prev`) is landed;
//! - a manifest exists only for a finished run: every file it lists exists with its rows;
//! - at the end every source record is landed, and the landed set deduplicated by primary
//!   key and cursor equals the source exactly, byte for byte.
//!
//! `LANDFALL_FAULT_SEED` picks the seed, `LANDFALL_FAULT_TRIALS` the number of kills (30).

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::Workspace;
use common::api::{Record, Source, records, records_config};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const INITIAL_RECORDS: u64 = 20_000;
const APPENDED_PER_TRIAL: u64 = 400;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Part lines by path, checking that every part object is intact.
fn landed(ws: &Workspace) -> Vec<Value> {
    let mut lines = Vec::new();
    for path in common::files_under(&ws.landing().join("src/records")) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jsonl.gz") {
            // read_part panics on a corrupt gzip stream or a line that is not JSON.
            lines.extend(common::read_part(&path));
        }
    }
    lines
}

fn check_checkpoint(ws: &Workspace, source: &[Record], landed_ids: &HashSet<String>, context: &str) {
    for name in ["records.json", "records.json.prev"] {
        let path = ws.landing().join("src/_state").join(name);
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let state: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{context}: {name} is corrupt: {e}"));
        let Some(cursor) = state["cursor"].as_str() else {
            continue;
        };
        for record in source {
            if record.updated_text().as_str() < cursor {
                assert!(
                    landed_ids.contains(&record.id.to_string()),
                    "{context}: {name} is at {cursor} but record {} ({}) is not stored",
                    record.id,
                    record.updated_text()
                );
            }
        }
    }
}

fn check_manifests(ws: &Workspace, context: &str) -> Vec<String> {
    let mut run_ids = Vec::new();
    for manifest in ws.manifests("src") {
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
                    common::read_part(&path).len() as u64,
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

#[tokio::test]
async fn sigkill_at_random_moments_loses_nothing() {
    let seed = env_number("LANDFALL_FAULT_SEED", 20_261_121);
    let trials = env_number("LANDFALL_FAULT_TRIALS", 30);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    println!("fault injection: seed {seed}, {trials} kills");

    let source = Source::new(records(INITIAL_RECORDS));
    source.set_latency(Duration::from_millis(2));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, "", "\n  part_max_records: 700"));
    let mut next_id = INITIAL_RECORDS + 1;
    let mut killed_runs = Vec::new();
    let mut kills = 0;
    let mut completed_early = 0;

    while kills < trials {
        let run_id = uuid::Uuid::now_v7().to_string();
        let mut child = common::spawn_run(&config, &["--run-id", &run_id, "--lease-ttl", "400ms"]);
        let delay = Duration::from_millis(rng.random_range(5..900));
        let finished = tokio::time::timeout(delay, child.wait()).await;
        match finished {
            Ok(status) => {
                assert!(status.unwrap().success(), "trial {kills}: run failed on its own");
                completed_early += 1;
            }
            Err(_) => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                killed_runs.push(run_id.clone());
                kills += 1;
                // The dead run's lease lapses on its own.
                tokio::time::sleep(Duration::from_millis(450)).await;
            }
        }
        let context = format!("seed {seed}, trial {kills}, run {run_id}, killed after {delay:?}");
        let lines = landed(&ws);
        let ids: HashSet<String> = lines
            .iter()
            .map(|l| l["_source_record_id"].as_str().unwrap().to_owned())
            .collect();
        let snapshot = source.records.lock().unwrap().clone();
        check_checkpoint(&ws, &snapshot, &ids, &context);
        check_manifests(&ws, &context);
        // The API keeps producing: newer records, later cursors.
        let mut appended = records(next_id + APPENDED_PER_TRIAL - 1);
        appended.retain(|record| record.id >= next_id);
        next_id += APPENDED_PER_TRIAL;
        source.records.lock().unwrap().extend(appended);
    }

    // Now let it finish.
    let output = common::run(&config, &["--lease-ttl", "400ms"]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let finished_runs = check_manifests(&ws, "final");
    for run_id in &killed_runs {
        if finished_runs.contains(run_id) {
            // Killed after its manifest was written: it had finished (checked above).
            println!("run {run_id} was killed after committing");
        }
    }

    let lines = landed(&ws);
    let source_records = source.records.lock().unwrap().clone();
    let mut deduplicated: BTreeMap<(String, String), String> = BTreeMap::new();
    for line in &lines {
        let key = (
            line["_source_record_id"].as_str().unwrap().to_owned(),
            line["_source_updated_at"].as_str().unwrap().to_owned(),
        );
        let raw = line["_raw"].as_str().unwrap().to_owned();
        assert_eq!(
            line["_payload_sha256"].as_str().unwrap(),
            landfall::hash::sha256_hex(raw.as_bytes())
        );
        if let Some(previous) = deduplicated.insert(key.clone(), raw.clone()) {
            assert_eq!(previous, raw, "two different payloads for {key:?}");
        }
    }
    let expected: BTreeMap<(String, String), String> = source_records
        .iter()
        .map(|record| {
            (
                (record.id.to_string(), record.updated_text()),
                record.json().to_string(),
            )
        })
        .collect();
    assert_eq!(
        deduplicated.len(),
        expected.len(),
        "landed (deduplicated) vs source record count"
    );
    assert!(deduplicated == expected, "the landed set differs from the source");
    println!(
        "fault injection: {kills} kills, {completed_early} runs finished before their kill, {} lines landed for {} records",
        lines.len(),
        expected.len()
    );
    let ids: HashSet<String> = lines
        .iter()
        .map(|l| l["_source_record_id"].as_str().unwrap().to_owned())
        .collect();
    check_checkpoint(&ws, &source_records, &ids, "final");
}
