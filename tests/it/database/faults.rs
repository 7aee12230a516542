//! Kill it anywhere, lose nothing, for database sources: the fault-injection suite
//! (`fault_injection.rs`, with its checks from `common/faults.rs`) against the real servers.
//! A table of thousands of rows is read in small chunks into small parts while `landfall
//! run` is SIGKILLed at seeded random moments (after a random number of this run's parts
//! are stored, plus a random delay: mid-chunk, mid-part, before the first chunk), restarted
//! each time until a run completes; between runs rows are inserted and updated (the cursor
//! moves), and deleted for a full refresh. After every kill and at the end:
//!
//! - every part object decompresses and parses;
//! - no checkpoint (nor its `.prev`) passes an unstored row: every row in its current
//!   version below the cursor (or, in xmin mode, written by a transaction below the
//!   checkpoint) is landed in that version;
//! - a manifest exists only for a finished run, every file it lists present with its rows;
//!   a full refresh's finished run holds the table exactly, each row once;
//! - at the end every row is landed at least once in its latest version, every landed line
//!   is a version the table held, and no version landed with two payloads.
//!
//! `LANDFALL_FAULT_TRIALS` sets the kills per case (8 here, so the database suite stays
//! short; `scripts/test nightly` runs many), `LANDFALL_FAULT_SEED` the seed, printed first
//! and in every failure. The xmin case is in `postgres_xmin.rs`, whose tests run alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rand::Rng;
use rand::seq::IteratorRandom;
use serde_json::Value;

use super::{config as write_config, postgres_url, run, spawn};
use crate::common::faults::{self, Kills, Outcome};
use crate::common::{self, Workspace};

const INITIAL_ROWS: i64 = 2_000;
const INSERTED_PER_TRIAL: i64 = 500;
const UPDATED_PER_TRIAL: usize = 300;
/// Full refresh only (an incremental stream cannot see deletes): as many as are inserted, so
/// the table, which every run reads whole, does not grow with the trials.
const DELETED_PER_TRIAL: usize = INSERTED_PER_TRIAL as usize;
const CHUNK_SIZE: u32 = 100;
const PART_MAX_RECORDS: u32 = 200;
const LEASE_TTL: Duration = Duration::from_millis(400);
const DEFAULT_TRIALS: u64 = 8;
const BASE: &str = "2024-01-01T00:00:00Z";

/// How the stream reads the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// `incremental.cursor_field: updated_at`.
    Cursor,
    /// PostgreSQL `incremental: {mode: xmin}`.
    Xmin,
    /// No `incremental`: every run reads the whole table.
    FullRefresh,
}

/// A connection to the server holding the table, for changing it between runs.
pub enum Database {
    Postgres(tokio_postgres::Client),
    /// In UTC (`time_zone = '+00:00'`).
    Mysql(mysql_async::Conn),
}

impl Database {
    async fn execute(&mut self, sql: &str) {
        match self {
            Database::Postgres(client) => client.batch_execute(sql).await.unwrap(),
            Database::Mysql(conn) => conn.query_drop(sql).await.unwrap(),
        }
    }

    /// The SQL literal of `BASE` plus `minute` minutes.
    fn timestamp(&self, minute: i64) -> String {
        match self {
            Database::Postgres(_) => format!("timestamptz '2024-01-01 00:00:00+00' + {minute} * interval '1 minute'"),
            Database::Mysql(_) => format!("TIMESTAMP '2024-01-01 00:00:00' + INTERVAL {minute} MINUTE"),
        }
    }

    fn create_table(&self, table: &str) -> String {
        match self {
            Database::Postgres(_) => format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, updated_at timestamptz NOT NULL)"
            ),
            Database::Mysql(_) => format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, name varchar(100) NOT NULL, updated_at timestamp(6) NOT NULL)"
            ),
        }
    }

    /// PostgreSQL: each row's id, name and xmin (the suite's server is young: its
    /// transaction ids are in epoch 0, where the 32-bit xmin is the full id).
    async fn xmins(&self, table: &str) -> Vec<(i64, String, u64)> {
        let Database::Postgres(client) = self else {
            panic!("xmin is PostgreSQL's")
        };
        client
            .query(&format!("SELECT id, name, xmin::text::bigint FROM {table}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get::<_, i64>(2) as u64))
            .collect()
    }
}

/// A version of a row: id, name, and `updated_at` in minutes after `BASE`. Each change
/// gives a row a new name and a new minute.
type Version = (i64, String, i64);

/// The table as the test changed it: what it holds now and every version it ever held.
struct Table {
    name: String,
    current: BTreeMap<i64, (String, i64)>,
    history: BTreeSet<Version>,
    next_id: i64,
    next_minute: i64,
}

impl Table {
    async fn create(db: &mut Database, name: &str) -> Self {
        let mut table = Self {
            name: name.to_owned(),
            current: BTreeMap::new(),
            history: BTreeSet::new(),
            next_id: 1,
            next_minute: 1,
        };
        db.execute(&db.create_table(name)).await;
        table.insert(db, INITIAL_ROWS, 0).await;
        table
    }

    /// Inserts `count` rows, each at a minute of its own.
    async fn insert(&mut self, db: &mut Database, count: i64, trial: u64) {
        let mut values = Vec::new();
        for id in self.next_id..self.next_id + count {
            let name = format!("item {id} v{trial}");
            let minute = self.next_minute;
            self.next_minute += 1;
            values.push(format!("({id}, '{name}', {})", db.timestamp(minute)));
            self.current.insert(id, (name.clone(), minute));
            self.history.insert((id, name, minute));
        }
        self.next_id += count;
        db.execute(&format!(
            "INSERT INTO {} (id, name, updated_at) VALUES {}",
            self.name,
            values.join(", ")
        ))
        .await;
    }

    /// Updates `count` random rows in one statement, all to one new minute (rows sharing a
    /// cursor value, as a bulk update with `now()` leaves them).
    async fn update(&mut self, db: &mut Database, count: usize, trial: u64, rng: &mut impl Rng) {
        let ids: Vec<i64> = self.current.keys().copied().choose_multiple(rng, count);
        let minute = self.next_minute;
        self.next_minute += 1;
        for id in &ids {
            let name = format!("item {id} v{trial}");
            self.current.insert(*id, (name.clone(), minute));
            self.history.insert((*id, name, minute));
        }
        db.execute(&format!(
            "UPDATE {} SET name = CONCAT('item ', id, ' v{trial}'), updated_at = {} WHERE id IN ({})",
            self.name,
            db.timestamp(minute),
            join(&ids)
        ))
        .await;
    }

    async fn delete(&mut self, db: &mut Database, count: usize, rng: &mut impl Rng) {
        let ids: Vec<i64> = self.current.keys().copied().choose_multiple(rng, count);
        for id in &ids {
            self.current.remove(id);
        }
        db.execute(&format!("DELETE FROM {} WHERE id IN ({})", self.name, join(&ids)))
            .await;
    }

    fn current_versions(&self) -> BTreeSet<Version> {
        self.current
            .iter()
            .map(|(id, (name, minute))| (*id, name.clone(), *minute))
            .collect()
    }
}

fn join(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// Minutes after `BASE` of an RFC 3339 instant (a landed `updated_at`, a checkpoint).
fn minute(text: &str, context: &str) -> i64 {
    let base = chrono::DateTime::parse_from_rfc3339(BASE).unwrap();
    let instant = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{context}: {text:?} is not RFC 3339: {e}"));
    let seconds = (instant - base).num_seconds();
    assert_eq!(seconds % 60, 0, "{context}: {text} is on a whole minute");
    seconds / 60
}

/// The version a landed line holds (its `_raw` is exactly the table's columns, and its
/// `_source_record_id` the id).
fn version(line: &Value, context: &str) -> Version {
    let raw: Value = serde_json::from_str(line["_raw"].as_str().unwrap()).unwrap();
    let keys: Vec<&String> = raw.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "name", "updated_at"], "{context}: {raw}");
    let id = raw["id"].as_i64().unwrap();
    assert_eq!(line["_source_record_id"], id.to_string(), "{context}: {line}");
    (
        id,
        raw["name"].as_str().unwrap().to_owned(),
        minute(raw["updated_at"].as_str().unwrap(), context),
    )
}

/// Checks after a kill (or a finished run), before the table changes again.
async fn check(ws: &Workspace, db: &Database, table: &Table, mode: Mode, context: &str) -> Vec<Value> {
    let lines = faults::landed(ws, "db", "items");
    let landed: BTreeSet<Version> = lines.iter().map(|line| version(line, context)).collect();
    faults::check_manifests(ws, "db", context);
    let checkpoints = faults::checkpoints(ws, "db", "items", &lines, context);
    match mode {
        Mode::Cursor => {
            for (name, cursor) in checkpoints {
                let at = minute(&cursor, context);
                for (id, (row_name, row_minute)) in &table.current {
                    let current = (*id, row_name.clone(), *row_minute);
                    assert!(
                        *row_minute >= at || landed.contains(&current),
                        "{context}: {name} is at {cursor} but row {current:?} is not stored"
                    );
                }
            }
        }
        Mode::Xmin => {
            let named: BTreeSet<(i64, &str)> = landed.iter().map(|(id, name, _)| (*id, name.as_str())).collect();
            let rows = db.xmins(&table.name).await;
            for (name, cursor) in checkpoints {
                let at: u64 = cursor
                    .parse()
                    .unwrap_or_else(|_| panic!("{context}: the xmin checkpoint {cursor:?} is an integer"));
                for (id, row_name, xmin) in &rows {
                    assert!(
                        *xmin >= at || named.contains(&(*id, row_name.as_str())),
                        "{context}: {name} is at xid {at} but row {id} ({row_name}, xmin {xmin}) is not stored"
                    );
                }
            }
        }
        Mode::FullRefresh => {
            assert!(
                checkpoints.is_empty(),
                "{context}: a full refresh checkpoints nothing: {checkpoints:?}"
            );
        }
    }
    lines
}

/// A full refresh's finished run landed the table exactly as it is now, each row once.
fn check_finished_full_refresh(ws: &Workspace, table: &Table, run_id: &str, context: &str) {
    let manifest = ws
        .manifests("db")
        .into_iter()
        .find(|manifest| manifest["run_id"] == run_id)
        .unwrap_or_else(|| panic!("{context}: the finished run {run_id} has a manifest"));
    let mut rows: Vec<Version> = Vec::new();
    for file in common::stream_report(&manifest, "items")["files"].as_array().unwrap() {
        let path = ws.landing().join(file["path"].as_str().unwrap());
        rows.extend(common::read_part(&path).iter().map(|line| version(line, context)));
    }
    let count = rows.len();
    let rows: BTreeSet<Version> = rows.into_iter().collect();
    assert_eq!(count, rows.len(), "{context}: run {run_id} landed a row twice");
    assert!(
        rows == table.current_versions(),
        "{context}: run {run_id} landed {count} rows, the table holds {}",
        table.current.len()
    );
}

/// The fault-injection series for one stream (`mode`) of the `kind` source at `url`, over
/// `table`, which `db` reaches (an empty schema or database: the test creates the table).
pub async fn sigkill_at_random_moments(kind: &str, url: &str, mut db: Database, table: &str, mode: Mode) {
    let mut kills = Kills::from_env(
        &format!("database fault injection ({kind}, {mode:?})"),
        20_261_207,
        DEFAULT_TRIALS,
    );
    let seed = kills.seed;
    let mut table = Table::create(&mut db, table).await;
    let incremental = match mode {
        Mode::Cursor => ", incremental: {cursor_field: updated_at, start: '2024-01-01T00:00:00Z'}",
        Mode::Xmin => ", incremental: {mode: xmin}",
        Mode::FullRefresh => "",
    };
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        kind,
        "",
        &format!(
            "  - {{name: items, table: {}, primary_key: [id], chunk_size: {CHUNK_SIZE}{incremental}}}\n",
            table.name
        ),
    );
    super::small_parts(&config, PART_MAX_RECORDS);
    let lease_ttl = format!("{}ms", LEASE_TTL.as_millis());
    let mut trial = 0;
    let mut mid_read = 0;

    while !kills.done() {
        trial += 1;
        let run_id = uuid::Uuid::now_v7().to_string();
        let stored_before = ws.part_files("db", "items").len();
        // The moment: after `parts` more parts are stored, plus up to 150 ms; every fourth run
        // is let finish, so the checkpoint moves between kills in every mode (an xmin
        // checkpoint moves only when a run finishes).
        let parts = kills.rng.random_range(0..=6);
        let delay = Duration::from_millis(kills.rng.random_range(0..150));
        let finish = trial % 4 == 0;
        let context = format!(
            "seed {seed}, trial {trial} ({} kills before), run {run_id}, {}",
            kills.kills,
            if finish {
                "let finish".to_owned()
            } else {
                format!("killed {delay:?} after {parts} parts stored")
            }
        );
        let moment = async {
            if finish {
                std::future::pending::<()>().await;
            }
            common::wait_until(Duration::from_secs(120), || {
                ws.part_files("db", "items").len() >= stored_before + parts
            })
            .await;
            tokio::time::sleep(delay).await;
        };
        let child = spawn(&config, url, &["--run-id", &run_id, "--lease-ttl", &lease_ttl]);
        let outcome = kills.kill_at(child, moment, LEASE_TTL, &context).await;
        if let Outcome::Killed = outcome
            && ws.part_files("db", "items").len() > stored_before
        {
            mid_read += 1;
        }
        check(&ws, &db, &table, mode, &context).await;
        let committed = ws.manifests("db").iter().any(|manifest| manifest["run_id"] == run_id);
        if mode == Mode::FullRefresh && committed {
            check_finished_full_refresh(&ws, &table, &run_id, &context);
        }

        // The table keeps changing: new rows, updated rows (their cursor moves).
        table.insert(&mut db, INSERTED_PER_TRIAL, trial).await;
        table.update(&mut db, UPDATED_PER_TRIAL, trial, &mut kills.rng).await;
        if mode == Mode::FullRefresh {
            table.delete(&mut db, DELETED_PER_TRIAL, &mut kills.rng).await;
        }
    }

    // Now let it finish.
    let context = format!("seed {seed}, final run");
    let run_id = uuid::Uuid::now_v7().to_string();
    let output = run(&config, url, &["--run-id", &run_id]).await;
    assert!(output.status.success(), "{context}: {}", common::stderr(&output));
    let lines = check(&ws, &db, &table, mode, &context).await;
    if mode == Mode::FullRefresh {
        check_finished_full_refresh(&ws, &table, &run_id, &context);
    }

    // One payload per version; every landed version is one the table held, and every row
    // is landed in its current version.
    let deduplicated = faults::deduplicate(&lines, |line| match mode {
        Mode::Cursor => (
            line["_source_record_id"].as_str().unwrap().to_owned(),
            line["_source_updated_at"].as_str().unwrap().to_owned(),
        ),
        Mode::Xmin | Mode::FullRefresh => {
            let (id, name, _) = version(line, &context);
            (id.to_string(), name)
        }
    });
    let landed: BTreeSet<Version> = lines.iter().map(|line| version(line, &context)).collect();
    assert_eq!(deduplicated.len(), landed.len(), "{context}: one key per version");
    let unknown: Vec<&Version> = landed.difference(&table.history).take(5).collect();
    assert!(
        unknown.is_empty(),
        "{context}: versions the table never held: {unknown:?}"
    );
    let missing: Vec<Version> = table.current_versions().difference(&landed).take(5).cloned().collect();
    assert!(
        missing.is_empty(),
        "{context}: rows not landed in their current version (first 5): {missing:?}"
    );
    println!(
        "database fault injection ({kind}, {mode:?}): {} kills ({mid_read} after a part of their run was stored), \
         {} runs finished before their kill, {} lines landed for {} rows ({} versions)",
        kills.kills,
        kills.finished,
        lines.len(),
        table.current.len(),
        table.history.len()
    );
    if kills.trials >= 4 {
        assert!(mid_read > 0, "{context}: no kill landed mid-read");
    }
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn postgres_cursor_incremental() {
    let client = super::postgres::schema("lf_fault_cursor").await;
    let url = postgres_url();
    sigkill_at_random_moments(
        "postgres",
        &url,
        Database::Postgres(client),
        "lf_fault_cursor.items",
        Mode::Cursor,
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn postgres_full_refresh() {
    let client = super::postgres::schema("lf_fault_full").await;
    let url = postgres_url();
    sigkill_at_random_moments(
        "postgres",
        &url,
        Database::Postgres(client),
        "lf_fault_full.items",
        Mode::FullRefresh,
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn mysql_cursor_incremental() {
    let conn = super::mysql::database("lf_fault_cursor").await;
    sigkill_at_random_moments(
        "mysql",
        &super::mysql::url("lf_fault_cursor"),
        Database::Mysql(conn),
        "items",
        Mode::Cursor,
    )
    .await;
}
