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
//! The checks are shared with the database cases (`database/faults.rs`): `common/faults.rs`.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::Workspace;
use common::api::{Record, Source, records, records_config};
use common::faults::{self, Kills, Outcome};
use rand::Rng;
use serde_json::Value;

const INITIAL_RECORDS: u64 = 20_000;
const APPENDED_PER_TRIAL: u64 = 400;
const LEASE_TTL: Duration = Duration::from_millis(400);

/// Every source record below a checkpoint (and its `.prev`) is landed.
fn check_checkpoint(ws: &Workspace, source: &[Record], lines: &[Value], context: &str) {
    let landed_ids: HashSet<String> = lines
        .iter()
        .map(|l| l["_source_record_id"].as_str().unwrap().to_owned())
        .collect();
    for (name, cursor) in faults::checkpoints(ws, "src", "records", lines, context) {
        for record in source {
            if record.updated_text() < cursor {
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

#[tokio::test]
async fn sigkill_at_random_moments_loses_nothing() {
    let mut kills = Kills::from_env("fault injection", 20_261_121, 30);
    let seed = kills.seed;

    let source = Source::new(records(INITIAL_RECORDS));
    source.set_latency(Duration::from_millis(2));
    let base = source.serve().await;
    let ws = Workspace::new();
    let config = ws.config(&records_config(&base, "", "\n  part_max_records: 700"));
    let mut next_id = INITIAL_RECORDS + 1;
    let mut killed_runs = Vec::new();

    while !kills.done() {
        let run_id = uuid::Uuid::now_v7().to_string();
        let child = common::spawn_run(&config, &["--run-id", &run_id, "--lease-ttl", "400ms"]);
        let delay = Duration::from_millis(kills.rng.random_range(5..900));
        let context = format!(
            "seed {seed}, trial {}, run {run_id}, killed after {delay:?}",
            kills.kills
        );
        if let Outcome::Killed = kills
            .kill_at(child, tokio::time::sleep(delay), LEASE_TTL, &context)
            .await
        {
            killed_runs.push(run_id.clone());
        }
        let lines = faults::landed(&ws, "src", "records");
        let snapshot = source.records.lock().unwrap().clone();
        check_checkpoint(&ws, &snapshot, &lines, &context);
        faults::check_manifests(&ws, "src", &context);
        // The API keeps producing: newer records, later cursors.
        let mut appended = records(next_id + APPENDED_PER_TRIAL - 1);
        appended.retain(|record| record.id >= next_id);
        next_id += APPENDED_PER_TRIAL;
        source.records.lock().unwrap().extend(appended);
    }

    // Now let it finish.
    let output = common::run(&config, &["--lease-ttl", "400ms"]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let finished_runs = faults::check_manifests(&ws, "src", "final");
    for run_id in &killed_runs {
        if finished_runs.contains(run_id) {
            // Killed after its manifest was written: it had finished (checked above).
            println!("run {run_id} was killed after committing");
        }
    }

    let lines = faults::landed(&ws, "src", "records");
    let source_records = source.records.lock().unwrap().clone();
    let deduplicated = faults::deduplicate(&lines, |line| {
        (
            line["_source_record_id"].as_str().unwrap().to_owned(),
            line["_source_updated_at"].as_str().unwrap().to_owned(),
        )
    });
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
        "fault injection: {} kills, {} runs finished before their kill, {} lines landed for {} records",
        kills.kills,
        kills.finished,
        lines.len(),
        expected.len()
    );
    check_checkpoint(&ws, &source_records, &lines, "final");
}
