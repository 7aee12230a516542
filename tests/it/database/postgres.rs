//! PostgreSQL sources (`source.type: postgres`) against the suite's real server.

use serde_json::{Value, json};

use super::{config as write_config, ids, postgres_url, records, run};
use crate::common::{self, Workspace};

/// A connection to the suite's server (as its superuser), for setting up tables.
pub(super) async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("the suite's PostgreSQL accepts connections");
    tokio::spawn(connection);
    client
}

/// A fresh schema named `name` (dropped first), for one test's tables.
pub(super) async fn schema(name: &str) -> tokio_postgres::Client {
    let client = admin().await;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name};"))
        .await
        .unwrap();
    client
}

/// Creates `schema.items` with `count` rows: id, name, updated_at one minute apart.
async fn items(client: &tokio_postgres::Client, schema: &str, count: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {schema}.items (id bigint PRIMARY KEY, name text NOT NULL, updated_at timestamptz NOT NULL);
             INSERT INTO {schema}.items SELECT g, 'item ' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'
             FROM generate_series(1, {count}) g;"
        ))
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn every_column_type_lands_exactly() {
    let client = schema("lf_types").await;
    client
        .batch_execute(
            r#"CREATE TYPE lf_types.mood AS ENUM ('sad', 'happy');
            CREATE TABLE lf_types.t (
                id bigint PRIMARY KEY, big bigint, small smallint, amount numeric(40,20), nan numeric,
                f double precision, r real, flag boolean, name text, "Mixed Case" varchar(10),
                at timestamptz, local timestamp(6), day date, clock time, span interval,
                blob bytea, doc json, docb jsonb, tags text[], grid int[], u uuid, m lf_types.mood,
                ip inet, cash money, nothing text);
            INSERT INTO lf_types.t VALUES (
                1, 9223372036854775807, -32768, 12345678901234567890.12345678901234567890, 'NaN',
                0.1, 1.5, true, E'line\nbreak "quoted" \\ back', 'x',
                '2024-02-29 23:59:59.123456+03', '2024-02-29 23:59:59.999999', '2024-02-29', '12:34:56.789',
                interval '1 year 2 months 3 days 04:05:06.5',
                '\x00ff10'::bytea, '{"z": 1, "a" : [1, 2]}', '{"z": 1, "a": 2}', ARRAY['a', 'b"c'], ARRAY[1, NULL, 3],
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '192.168.0.1/24', 1234.56, NULL);"#,
        )
        .await
        .unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: t, table: lf_types.t, primary_key: [id]}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let lines = ws.lines("db", "t");
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    let raw = line["_raw"].as_str().unwrap();
    assert_eq!(line["_source_endpoint"], "table lf_types.t");
    assert_eq!(line["_source_record_id"], "1");
    assert_eq!(
        line["_payload_sha256"],
        landfall::hash::sha256_hex(raw.as_bytes()),
        "the hash is of _raw's exact text"
    );
    // Numbers keep every digit: checked in the text, which no float ever held.
    assert!(raw.contains(r#""big":9223372036854775807"#), "{raw}");
    assert!(
        raw.contains(r#""amount":12345678901234567890.12345678901234567890"#),
        "{raw}"
    );
    assert!(
        raw.contains(r#""cash":1234.56"#),
        "money lands as an exact number: {raw}"
    );
    // Columns in table order.
    let record: serde_json::Map<String, Value> = serde_json::from_str(raw).unwrap();
    let names: Vec<&str> = record.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "id",
            "big",
            "small",
            "amount",
            "nan",
            "f",
            "r",
            "flag",
            "name",
            "Mixed Case",
            "at",
            "local",
            "day",
            "clock",
            "span",
            "blob",
            "doc",
            "docb",
            "tags",
            "grid",
            "u",
            "m",
            "ip",
            "cash",
            "nothing"
        ]
    );
    let expected = json!({
        "id": 1, "small": -32768, "nan": "NaN", "f": 0.1, "r": 1.5, "flag": true,
        "name": "line\nbreak \"quoted\" \\ back", "Mixed Case": "x",
        "at": "2024-02-29T20:59:59.123456+00:00",
        "local": "2024-02-29T23:59:59.999999",
        "day": "2024-02-29", "clock": "12:34:56.789",
        "span": "P1Y2M3DT4H5M6.5S",
        "blob": "AP8Q",
        "doc": {"z": 1, "a": [1, 2]}, "docb": {"a": 2, "z": 1},
        "tags": ["a", "b\"c"], "grid": [1, null, 3],
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "m": "happy", "ip": "192.168.0.1/24",
        "nothing": null,
    });
    for (name, value) in expected.as_object().unwrap() {
        assert_eq!(&record[name], value, "column {name} in {raw}");
    }
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn keyset_chunks_read_every_row_once() {
    let client = schema("lf_chunks").await;
    items(&client, "lf_chunks", 2_345).await;
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: items, table: lf_chunks.items, primary_key: [id], chunk_size: 100}\n  - {name: evens, query: 'SELECT id, name FROM lf_chunks.items WHERE id % 2 = 0', primary_key: [id], chunk_size: 64}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&records(&ws, "items")), (1..=2_345).collect::<Vec<_>>());
    assert_eq!(
        ids(&records(&ws, "evens")),
        (1..=1_172).map(|n| n * 2).collect::<Vec<_>>()
    );
    let manifest = &ws.manifests("db")[0];
    let report = common::stream_report(manifest, "items");
    assert_eq!(report["rows_written"], 2_345);
    // 2,345 rows in chunks of 100: 24 statements (the last one short).
    assert_eq!(report["requests"], 24, "{report:#}");
    let evens = common::stream_report(manifest, "evens");
    assert!(
        evens["endpoint"].as_str().unwrap().starts_with("query sha256:"),
        "{evens:#}"
    );
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn incremental_reads_what_changed_since_the_checkpoint() {
    let client = schema("lf_incremental").await;
    items(&client, "lf_incremental", 500).await;
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: items, table: lf_incremental.items, primary_key: [id], chunk_size: 50, incremental: {cursor_field: updated_at, start: '2024-01-01T00:00:00Z'}}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(records(&ws, "items").len(), 500);
    let state = ws.state("db", "items").expect("a checkpoint");
    assert_eq!(state["cursor"], "2024-01-01T08:20:00Z", "{state:#}");
    // The manifest names the range read and the snapshot it was read in.
    let manifest = &ws.manifests("db")[0];
    let report = common::stream_report(manifest, "items");
    assert_eq!(report["cursor_start"], "2024-01-01T00:00:00Z", "{report:#}");
    assert_eq!(report["cursor_end"], "2024-01-01T08:20:00Z", "{report:#}");
    assert_eq!(report["source_snapshot"]["kind"], "pg_current_snapshot", "{report:#}");
    let snapshot = report["source_snapshot"]["snapshot"].as_str().unwrap();
    assert_eq!(snapshot.split(':').count(), 3, "xmin:xmax:xip: {report:#}");
    assert!(report["source_snapshot"].get("xmin_checkpoint").is_none(), "{report:#}");

    // Ten rows change, five are new; one new row shares the checkpoint's timestamp.
    client
        .batch_execute(
            "UPDATE lf_incremental.items SET name = 'changed', updated_at = timestamptz '2024-01-02 00:00:00+00' + id * interval '1 second' WHERE id <= 10;
             INSERT INTO lf_incremental.items SELECT g, 'new', timestamptz '2024-01-03 00:00:00+00' FROM generate_series(501, 504) g;
             INSERT INTO lf_incremental.items VALUES (505, 'same instant', timestamptz '2024-01-01 08:20:00+00');",
        )
        .await
        .unwrap();
    let before = ws.lines("db", "items").len();
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let second: Vec<Value> = records(&ws, "items").split_off(before);
    let mut expected: Vec<i64> = (1..=10).chain(501..=505).collect();
    expected.sort_unstable();
    assert_eq!(
        ids(&second),
        expected,
        "the second run reads the changed and new rows only"
    );
    assert!(
        second
            .iter()
            .filter(|record| record["id"] != 505)
            .all(|record| record["name"] != "item 500")
    );
    let state = ws.state("db", "items").unwrap();
    assert_eq!(state["cursor"], "2024-01-03T00:00:00Z");
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn updates_reach_the_next_incremental_run_deletes_only_a_full_refresh() {
    let client = schema("lf_deletes").await;
    items(&client, "lf_deletes", 100).await;
    client
        .batch_execute("ALTER TABLE lf_deletes.items ADD COLUMN deleted_at timestamptz;")
        .await
        .unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: changed, table: lf_deletes.items, primary_key: [id], incremental: {cursor_field: updated_at, start: '2024-01-01T00:00:00Z'}}\n  - {name: everything, table: lf_deletes.items, primary_key: [id]}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&records(&ws, "changed")), (1..=100).collect::<Vec<_>>());

    // Row 1 is updated (its cursor moves), row 2 is deleted, row 3 is soft-deleted: marked,
    // with its cursor moved.
    client
        .batch_execute(
            "UPDATE lf_deletes.items SET name = 'renamed', updated_at = timestamptz '2024-02-01 00:00:00+00' WHERE id = 1;
             DELETE FROM lf_deletes.items WHERE id = 2;
             UPDATE lf_deletes.items SET deleted_at = timestamptz '2024-02-01 00:00:01+00', updated_at = timestamptz '2024-02-01 00:00:01+00' WHERE id = 3;",
        )
        .await
        .unwrap();
    let (changed_before, everything_before) = (ws.lines("db", "changed").len(), ws.lines("db", "everything").len());
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));

    // The incremental stream reads the update and the soft delete; the deleted row leaves no
    // trace in it (nothing to read past the cursor), and its first landing stays.
    let changed = records(&ws, "changed").split_off(changed_before);
    assert_eq!(ids(&changed), [1, 3], "{changed:?}");
    assert_eq!(changed[0]["name"], "renamed");
    let soft = changed.iter().find(|record| record["id"] == 3).unwrap();
    assert_eq!(soft["deleted_at"], "2024-02-01T00:00:01+00:00");
    assert!(
        ids(&records(&ws, "changed")).contains(&2),
        "the first landing keeps row 2"
    );

    // The full refresh lands the table as it is now: row 2 is absent from this run's rows.
    let everything = records(&ws, "everything").split_off(everything_before);
    let expected: Vec<i64> = (1..=100).filter(|id| *id != 2).collect();
    assert_eq!(ids(&everything), expected);
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_broken_connection_is_resumed_after_the_last_row_read() {
    let client = schema("lf_reconnect").await;
    // Small chunks (300 statements) keep the read going long after the first kill.
    items(&client, "lf_reconnect", 30_000).await;
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "  application_name: landfall_reconnect_test\n",
        "  - {name: items, table: lf_reconnect.items, primary_key: [id], chunk_size: 100}\n",
    );
    let child = super::spawn(&config, &postgres_url(), &[]);
    // Terminate Landfall's session twice while it reads: during a statement, or between two
    // (the next statement then finds the connection gone). Under load a 100-row statement is
    // rarely caught running, so both count.
    let mut terminated = 0;
    for _ in 0..400 {
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'landfall_reconnect_test' \
                 AND state IN ('active', 'idle in transaction')",
                &[],
            )
            .await
            .unwrap();
        terminated += rows.len();
        if terminated >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let output = child.wait_with_output().await.unwrap();
    assert!(terminated >= 1, "the test never caught the session");
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(
        ids(&records(&ws, "items")),
        (1..=30_000).collect::<Vec<_>>(),
        "every row once"
    );
    let manifest = &ws.manifests("db")[0];
    let report = common::stream_report(manifest, "items");
    assert!(report["retries"].as_u64().unwrap() >= 1, "{report:#}");
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn auth_and_privilege_failures_exit_4_without_the_password() {
    let client = schema("lf_auth").await;
    items(&client, "lf_auth", 3).await;
    client
        .batch_execute(
            "DROP ROLE IF EXISTS lf_auth_reader; CREATE ROLE lf_auth_reader LOGIN PASSWORD 'right-Secret-4417';
             GRANT USAGE ON SCHEMA lf_auth TO lf_auth_reader;",
        )
        .await
        .unwrap();
    let base = url::Url::parse(&postgres_url()).unwrap();
    let with_login = |password: &str| {
        let mut url = base.clone();
        url.set_username("lf_auth_reader").unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    };
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: items, table: lf_auth.items, primary_key: [id]}\n",
    );

    let output = run(&config, &with_login("wrong-Secret-9931"), &[]).await;
    assert_eq!(output.status.code(), Some(4), "{}", common::stderr(&output));
    let everything = format!("{}{}", common::stderr(&output), common::stdout(&output));
    assert!(everything.contains("AUTH_FAILED"), "{everything}");
    assert!(everything.contains("password authentication failed"), "{everything}");
    assert!(!everything.contains("wrong-Secret-9931") && !everything.contains("right-Secret-4417"));

    // The right password, but no SELECT on the table: the error names the privilege.
    let output = run(&config, &with_login("right-Secret-4417"), &[]).await;
    assert_eq!(output.status.code(), Some(4), "{}", common::stderr(&output));
    let everything = format!("{}{}", common::stderr(&output), common::stdout(&output));
    assert!(everything.contains("permission denied for table items"), "{everything}");
    assert!(!everything.contains("right-Secret-4417"));
    for manifest in ws.manifests("db") {
        assert!(!manifest.to_string().contains("Secret-"), "{manifest:#}");
    }

    // `landfall check` finds the same before any run: its stream step reads one row.
    let args = ["check", "--config", config.to_str().unwrap()];
    let output = common::landfall(&args, &[("DATABASE_URL", &with_login("right-Secret-4417"))]).await;
    assert_eq!(output.status.code(), Some(4), "{}", common::stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["failed_step"], "stream:items", "{report:#}");
    let step = common::named(&report, "steps", "step", "stream:items");
    assert!(
        step["detail"]
            .as_str()
            .unwrap()
            .contains("permission denied for table items"),
        "{step:#}"
    );
    assert!(!common::stderr(&output).contains("right-Secret-4417"));
    client
        .batch_execute("GRANT SELECT ON lf_auth.items TO lf_auth_reader;")
        .await
        .unwrap();
    let output = common::landfall(&args, &[("DATABASE_URL", &with_login("right-Secret-4417"))]).await;
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let step = common::named(&report, "steps", "step", "stream:items");
    assert!(
        step["detail"].as_str().unwrap().contains("ordered by id; 1 row read"),
        "{step:#}"
    );
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn pool_size_caps_the_streams_read_at_once() {
    let client = schema("lf_pool").await;
    items(&client, "lf_pool", 2_000).await;
    let ws = Workspace::new();
    let streams: String = (1..=3)
        .map(|n| format!("  - {{name: s{n}, table: lf_pool.items, primary_key: [id], chunk_size: 100}}\n"))
        .collect();
    let config = write_config(&ws, "postgres", "  pool_size: 1\n", &streams);
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    // One stream at a time: each starts after the previous one finished.
    let mut running = 0;
    let mut most = 0;
    for event in common::events(&output) {
        match event["event"].as_str() {
            Some("stream_started") => running += 1,
            Some("stream_finished") => running -= 1,
            _ => {}
        }
        most = most.max(running);
    }
    assert_eq!(most, 1, "pool_size 1 lets one stream read at a time");
    for n in 1..=3 {
        assert_eq!(records(&ws, &format!("s{n}")).len(), 2_000);
    }
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_column_type_change_is_recorded_as_schema_drift() {
    let client = schema("lf_drift").await;
    items(&client, "lf_drift", 10).await;
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: items, table: lf_drift.items, primary_key: [id]}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    client
        .batch_execute("ALTER TABLE lf_drift.items ALTER COLUMN name TYPE integer USING length(name);")
        .await
        .unwrap();
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(
        output.status.success(),
        "drift warns by default: {}",
        common::stderr(&output)
    );
    let manifests = ws.manifests("db");
    let report = common::stream_report(&manifests[1], "items");
    let changes = report["schema_changes"].to_string();
    assert!(changes.contains("name"), "{report:#}");
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_query_that_writes_or_lacks_its_key_is_refused_clearly() {
    let client = schema("lf_refused").await;
    items(&client, "lf_refused", 3).await;
    client.batch_execute("CREATE SEQUENCE lf_refused.seq;").await.unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: writes, query: \"SELECT nextval('lf_refused.seq') AS id\", primary_key: [id]}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(!output.status.success());
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains("read-only transaction") && stderr.contains("READ ONLY"),
        "{stderr}"
    );
    let value: i64 = client
        .query_one("SELECT last_value FROM lf_refused.seq", &[])
        .await
        .unwrap()
        .get(0);
    let called: bool = client
        .query_one("SELECT is_called FROM lf_refused.seq", &[])
        .await
        .unwrap()
        .get(0);
    assert!(value == 1 && !called, "the sequence never moved");

    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: keyless, query: 'SELECT name FROM lf_refused.items', primary_key: [id]}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "not retryable: {}",
        common::stderr(&output)
    );
    let stderr = common::stderr(&output);
    assert!(stderr.contains("returns no primary key column `id`"), "{stderr}");
    assert!(stderr.contains("CONFIG_ERROR"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_statement_timeout_is_a_timeout_that_names_the_setting() {
    let client = schema("lf_timeout").await;
    items(&client, "lf_timeout", 3).await;
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "  statement_timeout: 200ms\n",
        "  - {name: slow, query: 'SELECT id, pg_sleep(1)::text AS slept FROM lf_timeout.items', primary_key: [id]}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(!output.status.success());
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains("TIMEOUT") && stderr.contains("statement_timeout"),
        "{stderr}"
    );
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_server_restart_mid_read_is_resumed_after_the_last_row_read() {
    let client = schema("lf_restart").await;
    items(&client, "lf_restart", 100_000).await;
    drop(client);
    super::server_restart_mid_read(
        "postgres",
        &postgres_url(),
        "lf_restart.items",
        100_000,
        "LANDFALL_TEST_POSTGRES_RESTART",
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_lock_wait_past_the_statement_timeout_is_a_retryable_timeout_that_lands_nothing() {
    let client = schema("lf_lock").await;
    items(&client, "lf_lock", 10).await;
    // Another session holds the table's ACCESS EXCLUSIVE lock (an ALTER TABLE or a LOCK
    // TABLE in a long transaction): every read of the table waits for it.
    let holder = admin().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE lf_lock.items IN ACCESS EXCLUSIVE MODE;")
        .await
        .unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "  statement_timeout: 300ms\n",
        "  - {name: items, table: lf_lock.items, primary_key: [id], incremental: {cursor_field: updated_at, start: '2024-01-01T00:00:00Z'}}\n",
    );
    let output = run(&config, &postgres_url(), &[]).await;
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(75), "a rerun may help: {stderr}");
    assert!(
        stderr.contains("TIMEOUT") && stderr.contains("statement_timeout") && stderr.contains("lock"),
        "{stderr}"
    );
    assert!(ws.part_files("db", "items").is_empty(), "nothing landed");
    assert!(ws.state("db", "items").is_none(), "no checkpoint");

    // Once the lock is released, the rerun lands every row.
    holder.batch_execute("ROLLBACK;").await.unwrap();
    let output = run(&config, &postgres_url(), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&records(&ws, "items")), (1..=10).collect::<Vec<_>>());
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_table_dropped_during_a_read_waits_for_it_then_is_a_config_error_naming_it() {
    let client = schema("lf_dropped").await;
    items(&client, "lf_dropped", 30_000).await;
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: items, table: lf_dropped.items, primary_key: [id], chunk_size: 100}\n",
    );
    super::small_parts(&config, 2000);
    let child = super::spawn(&config, &postgres_url(), &[]);
    assert!(super::parts_stored(&ws, 1).await, "a part was stored before the drop");
    // The read holds the table's ACCESS SHARE lock until its transaction ends: the DROP waits
    // for it, and the read finishes in its snapshot.
    client.batch_execute("DROP TABLE lf_dropped.items;").await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&records(&ws, "items")), (1..=30_000).collect::<Vec<_>>());

    // The next run finds no table: not retried, named.
    let output = run(&config, &postgres_url(), &[]).await;
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CONFIG_ERROR") && stderr.contains("lf_dropped.items") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains("request_retried"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn very_wide_rows_land_exactly_in_bounded_memory() {
    let client = schema("lf_wide").await;
    // 300 columns, one of them 4 MB of text: 24 rows are about 100 MB, more than a run may
    // hold (held whole, with its copies in the page and the envelope, it would pass 200 MB).
    let columns: Vec<String> = (1..=300).map(|n| format!("c{n} integer DEFAULT {n}")).collect();
    client
        .batch_execute(&format!(
            "CREATE TABLE lf_wide.t (id bigint PRIMARY KEY, {}, big text NOT NULL);
             INSERT INTO lf_wide.t (id, big) SELECT g, repeat(chr(64 + g), 4 * 1024 * 1024) FROM generate_series(1, 24) g;",
            columns.join(", ")
        ))
        .await
        .unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "postgres",
        "",
        "  - {name: wide, table: lf_wide.t, primary_key: [id]}\n",
    );
    let child = super::spawn(&config, &postgres_url(), &[]);
    let pid = child.id().expect("landfall runs");
    let peak = tokio::spawn(super::peak_rss_kib(pid));
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{}", common::stderr(&output));
    let landed = records(&ws, "wide");
    assert_eq!(ids(&landed), (1..=24).collect::<Vec<_>>());
    for record in &landed {
        let id = record["id"].as_i64().unwrap();
        assert_eq!(record.as_object().unwrap().len(), 302, "every column");
        assert_eq!(record["c300"], 300);
        let big = record["big"].as_str().unwrap();
        assert_eq!(big.len(), 4 * 1024 * 1024);
        assert!(big.bytes().all(|byte| byte == 64 + id as u8));
    }
    // Rows go to the writer in pages of at most 2 MiB (or one row), whatever the chunk, and
    // at most 8 MiB of pages wait for the writer (src/source/channel.rs): two of these rows,
    // not four. A debug build idles at about 60 MB; this run peaked at about 104 MB (115 MB
    // with 12 rows when the pages in flight were only counted).
    let peak = peak.await.unwrap();
    eprintln!("very wide rows: peak RSS {peak} KiB");
    assert!(peak > 0 && peak < 140 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn tls_modes_verify_the_certificate_and_host_name() {
    super::tls_against_the_suite_certificate(
        "postgres",
        &postgres_url(),
        "SELECT 1 AS id, ssl AS tls FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
}
