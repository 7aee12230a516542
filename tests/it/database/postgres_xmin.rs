//! PostgreSQL `incremental: {mode: xmin}` (tables without an updated-at column) and the
//! manifest's `source_snapshot`, against the suite's real server.

use std::collections::BTreeSet;

use serde_json::Value;

use super::ids;
use super::postgres::{admin, schema};
use super::{config as write_config, postgres_url, records, run};
use crate::common::{self, Workspace};

/// The full transaction id a transaction on `client` runs as (assigned by this call).
async fn current_xid(client: &tokio_postgres::Client) -> u64 {
    let row = client
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .unwrap();
    row.get::<_, String>(0).parse().unwrap()
}

/// The ids of the rows whose 32-bit xmin is at or after `checkpoint` (the suite's server is
/// young: its transaction ids are still in epoch 0, where the widening is the identity).
async fn ids_written_since(client: &tokio_postgres::Client, table: &str, checkpoint: u64) -> Vec<i64> {
    client
        .query(
            &format!("SELECT id FROM {table} WHERE xmin::text::bigint >= $1 ORDER BY id"),
            &[&i64::try_from(checkpoint).unwrap()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, i64>(0))
        .collect()
}

/// The last manifest's report of `stream`.
fn last_report(ws: &Workspace, stream: &str) -> Value {
    let manifests = ws.manifests("db");
    common::stream_report(manifests.last().expect("a manifest"), stream).clone()
}

fn checkpoint(ws: &Workspace) -> u64 {
    let state = ws.state("db", "events").expect("a checkpoint");
    state["cursor"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("the xmin checkpoint is an integer: {state:#}"))
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn xmin_reads_the_rows_written_since_the_snapshot_and_waits_for_open_transactions() {
    let client = schema("lf_xmin").await;
    // A table without an updated-at column.
    client
        .batch_execute(
            "CREATE TABLE lf_xmin.events (id bigint PRIMARY KEY, payload text NOT NULL);
             INSERT INTO lf_xmin.events SELECT g, 'event ' || g FROM generate_series(1, 200) g;",
        )
        .await
        .unwrap();
    let written = client
        .query_one("SELECT max(xmin::text::bigint) FROM lf_xmin.events", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: events, table: lf_xmin.events, primary_key: [id], chunk_size: 30, incremental: {mode: xmin}}\n",
    );

    // The first run lands every row and checkpoints its snapshot's xmin.
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&records(&ws, "events")), (1..=200).collect::<Vec<_>>());
    let first = checkpoint(&ws);
    assert!(
        first > written as u64,
        "the snapshot's xmin {first} is after the committed insert {written}"
    );
    let report = last_report(&ws, "events");
    assert_eq!(report["cursor_start"], "0", "{report:#}");
    assert_eq!(report["cursor_end"], first.to_string(), "{report:#}");
    let snapshot = &report["source_snapshot"];
    assert_eq!(snapshot["kind"], "pg_current_snapshot", "{report:#}");
    assert_eq!(snapshot["xmin_checkpoint"], first, "{report:#}");
    assert!(
        snapshot["snapshot"].as_str().unwrap().starts_with(&format!("{first}:")),
        "{report:#}"
    );
    // Records are the table's columns, nothing added.
    let record = &records(&ws, "events")[0];
    assert_eq!(
        record.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "payload"]
    );
    // `landfall state` shows the checkpoint.
    let shown = common::landfall(
        &[
            "state",
            "show",
            "--config",
            config.to_str().unwrap(),
            "--stream",
            "events",
        ],
        &[("DATABASE_URL", &postgres_url())],
    )
    .await;
    assert!(
        common::stdout(&shown).contains(&first.to_string()),
        "{}{}",
        common::stdout(&shown),
        common::stderr(&shown)
    );

    // Updates and inserts after it are read by the next run; untouched rows are not.
    client
        .batch_execute(
            "UPDATE lf_xmin.events SET payload = 'changed' WHERE id <= 5;
             INSERT INTO lf_xmin.events SELECT g, 'new' FROM generate_series(201, 203) g;",
        )
        .await
        .unwrap();
    let expected = ids_written_since(&client, "lf_xmin.events", first).await;
    let before = ws.lines("db", "events").len();
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let second = records(&ws, "events").split_off(before);
    assert_eq!(ids(&second), expected, "the rows written at or after the checkpoint");
    assert_eq!(
        ids(&second),
        [1, 2, 3, 4, 5, 201, 202, 203],
        "the changed and new rows only"
    );
    assert!(
        second
            .iter()
            .filter(|record| record["id"].as_i64() < Some(6))
            .all(|record| record["payload"] == "changed")
    );
    let second_checkpoint = checkpoint(&ws);
    assert!(second_checkpoint > first);
    let report = last_report(&ws, "events");
    assert_eq!(report["cursor_start"], first.to_string(), "{report:#}");
    assert_eq!(report["cursor_end"], second_checkpoint.to_string(), "{report:#}");

    // A transaction left open during a run: its row is not visible, and the checkpoint
    // stays at or below it, so the run after its commit lands it.
    let other = admin().await;
    other
        .batch_execute("BEGIN; INSERT INTO lf_xmin.events VALUES (300, 'late');")
        .await
        .unwrap();
    let open_xid = current_xid(&other).await;
    client
        .batch_execute("UPDATE lf_xmin.events SET payload = 'meanwhile' WHERE id = 7;")
        .await
        .unwrap();
    let before = ws.lines("db", "events").len();
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let third = records(&ws, "events").split_off(before);
    assert!(ids(&third).contains(&7), "{third:?}");
    assert!(!ids(&third).contains(&300), "an uncommitted row is invisible");
    let held = checkpoint(&ws);
    assert!(
        held <= open_xid,
        "checkpoint {held} passed the open transaction {open_xid}"
    );
    let report = last_report(&ws, "events");
    assert!(
        report["source_snapshot"]["snapshot"]
            .as_str()
            .unwrap()
            .contains(&open_xid.to_string()),
        "the open transaction is in the snapshot: {report:#}"
    );
    other.batch_execute("COMMIT;").await.unwrap();
    let before = ws.lines("db", "events").len();
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let fourth = records(&ws, "events").split_off(before);
    assert!(ids(&fourth).contains(&300), "the committed row lands: {fourth:?}");
    // Rows of transactions between the held checkpoint and the commit are read again (at
    // least once): row 7 here.
    let fourth_ids: BTreeSet<i64> = ids(&fourth).into_iter().collect();
    assert!(fourth_ids.is_subset(&[7, 300].into_iter().collect()), "{fourth_ids:?}");
    assert!(checkpoint(&ws) > open_xid);
}

/// The widening of a row's 32-bit xmin against the snapshot's full xmax, as the server
/// computes it, across epoch boundaries.
#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn the_xmin_widening_is_exact_across_epochs() {
    const EPOCH: u64 = 1 << 32;
    let client = admin().await;
    // (horizon, 32-bit xid, full id)
    let cases = [
        (1_000, 999, 999),
        (1_000, 3, 3),
        (1_000, 2, 0),
        (1_000, 1, 0),
        (EPOCH + 10, 5, EPOCH + 5),
        (EPOCH + 10, 10, EPOCH + 10),
        (EPOCH + 10, (EPOCH - 6) as u32, EPOCH - 6),
        (EPOCH + 10, 11, 11),
        (EPOCH, (EPOCH - 1) as u32, EPOCH - 1),
        (3 * EPOCH + (1 << 31), 100, 3 * EPOCH + 100),
        (3 * EPOCH + 5, 4_000_000_000, 2 * EPOCH + 4_000_000_000),
        (7 * EPOCH - 1, (EPOCH - 1) as u32, 7 * EPOCH - 1),
        (7 * EPOCH - 1, (EPOCH - 2) as u32, 7 * EPOCH - 2),
    ];
    for (horizon, xid, full) in cases {
        let expression = landfall::source::database::postgres::widened_xmin(&format!("'{xid}'::xid"), horizon);
        let row = client.query_one(&format!("SELECT {expression}"), &[]).await.unwrap();
        assert_eq!(
            row.get::<_, i64>(0),
            full as i64,
            "xid {xid} against horizon {horizon} ({expression})"
        );
    }
}

/// The fault-injection series (`faults.rs`) over an xmin stream: here, since the xmin tests
/// run alone.
#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn fault_injection_sigkill_at_random_moments() {
    let client = schema("lf_fault_xmin").await;
    super::faults::sigkill_at_random_moments(
        "postgres",
        &postgres_url(),
        super::faults::Database::Postgres(client),
        "lf_fault_xmin.items",
        super::faults::Mode::Xmin,
    )
    .await;
}
