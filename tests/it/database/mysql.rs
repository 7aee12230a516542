//! MySQL and MariaDB sources (`source.type: mysql`) against the suite's real MariaDB.

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use super::{config as write_config, ids, mysql_url, records, run, with_database};
use crate::common::{self, Workspace};

/// A fresh database `name` (dropped first) on the suite's server, and a connection to it in
/// UTC, for one test's tables.
pub(super) async fn database(name: &str) -> mysql_async::Conn {
    let mut admin = mysql_async::Conn::from_url(mysql_url())
        .await
        .expect("the suite's MariaDB accepts connections");
    admin
        .query_drop(format!(
            "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4;"
        ))
        .await
        .unwrap();
    drop(admin);
    let mut conn = mysql_async::Conn::from_url(url(name)).await.unwrap();
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    conn
}

/// The suite's URL with database `name`.
pub(super) fn url(name: &str) -> String {
    with_database(&mysql_url(), name)
}

/// Creates `items` with `count` rows: id, name, updated_at one minute apart.
async fn items(conn: &mut mysql_async::Conn, count: i64) {
    conn.query_drop(format!(
        "CREATE TABLE items (id bigint PRIMARY KEY, name varchar(100) NOT NULL, updated_at timestamp(6) NOT NULL);
         INSERT INTO items SELECT seq, CONCAT('item ', seq), TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE
         FROM seq_1_to_{count};"
    ))
    .await
    .unwrap();
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn every_column_type_lands_exactly() {
    let mut conn = database("lf_my_types").await;
    conn.query_drop(
        "CREATE TABLE t (
            id bigint PRIMARY KEY, big bigint unsigned, small smallint, flag tinyint(1),
            amount decimal(40,20), f float, d double, name varchar(100),
            latin varchar(20) CHARACTER SET latin1, `Mixed Case` char(3), `quo\"te` int,
            at timestamp(6) NULL, local datetime(3), whole datetime, day date, clock time(3),
            yr year, bits bit(10), mood enum('sad', 'happy'), tags set('a', 'b', 'c'),
            blob_col blob, bin binary(4), vbin varbinary(8), doc json, place point, nothing text);
         SET time_zone = '+03:00';
         INSERT INTO t VALUES (
            1, 18446744073709551615, -32768, 1,
            12345678901234567890.12345678901234567890, 1.5, 0.1,
            CONCAT('line', CHAR(10), 'break \"quoted\" \\\\ back', CHAR(9), CHAR(1), ' 😀'),
            'café', 'x', 7,
            '2024-02-29 23:59:59.123456', '2024-02-29 23:59:59.999', '2024-02-29 23:59:59', '2024-02-29',
            '-12:34:56.5', 2024, b'1010101010', 'happy', 'a,c',
            REPEAT(x'ff', 100), x'41', x'00ff10', '{\"z\": 1, \"a\": [1, 2.50, \"x\"]}', ST_GeomFromText('POINT(1 2)'), NULL);
         SET time_zone = '+00:00';",
    )
    .await
    .unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "mysql",
        "",
        "  - {name: t, table: lf_my_types.t, primary_key: [id]}\n",
    );
    let output = run(&config, &url("lf_my_types"), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let lines = ws.lines("db", "t");
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    let raw = line["_raw"].as_str().unwrap();
    assert_eq!(line["_source_endpoint"], "table lf_my_types.t");
    assert_eq!(line["_source_record_id"], "1");
    assert_eq!(
        line["_payload_sha256"],
        landfall::hash::sha256_hex(raw.as_bytes()),
        "the hash is of _raw's exact text"
    );
    // Numbers keep every digit: checked in the text, which no float ever held.
    assert!(raw.contains(r#""big": 18446744073709551615"#), "{raw}");
    assert!(
        raw.contains(r#""amount": 12345678901234567890.12345678901234567890"#),
        "{raw}"
    );
    let record: serde_json::Map<String, Value> = serde_json::from_str(raw).unwrap();
    let names: Vec<&str> = record.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "id",
            "big",
            "small",
            "flag",
            "amount",
            "f",
            "d",
            "name",
            "latin",
            "Mixed Case",
            "quo\"te",
            "at",
            "local",
            "whole",
            "day",
            "clock",
            "yr",
            "bits",
            "mood",
            "tags",
            "blob_col",
            "bin",
            "vbin",
            "doc",
            "place",
            "nothing"
        ],
        "columns in table order"
    );
    let expected = json!({
        "id": 1, "small": -32768, "flag": 1, "f": 1.5, "d": 0.1,
        "name": "line\nbreak \"quoted\" \\ back\t\u{1} 😀", "latin": "café", "Mixed Case": "x",
        "quo\"te": 7,
        "at": "2024-02-29T20:59:59.123456+00:00",
        "local": "2024-02-29T23:59:59.999",
        "whole": "2024-02-29T23:59:59",
        "day": "2024-02-29", "clock": "-12:34:56.500", "yr": 2024, "bits": 682,
        "mood": "happy", "tags": "a,c",
        "blob_col": format!("{}/w==", "////".repeat(33)),
        "bin": "QQAAAA==", "vbin": "AP8Q",
        "doc": {"z": 1, "a": [1, 2.5, "x"]},
        // SRID 0, then the WKB of POINT(1 2).
        "place": "AAAAAAEBAAAAAAAAAAAA8D8AAAAAAAAAQA==",
        "nothing": null,
    });
    for (name, value) in expected.as_object().unwrap() {
        assert_eq!(&record[name], value, "column {name} in {raw}");
    }
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn keyset_chunks_read_every_row_once() {
    let mut conn = database("lf_my_chunks").await;
    items(&mut conn, 2_345).await;
    // A composite key whose first column repeats across chunk boundaries.
    conn.query_drop(
        "CREATE TABLE pairs (a int, b varbinary(4), PRIMARY KEY (a, b));
         INSERT INTO pairs SELECT seq DIV 10, UNHEX(LPAD(HEX(seq), 4, '0')) FROM seq_1_to_1000;",
    )
    .await
    .unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "mysql",
        "",
        "  - {name: items, table: items, primary_key: [id], chunk_size: 100}\n  - {name: evens, query: 'SELECT id, name FROM items WHERE id % 2 = 0', primary_key: [id], chunk_size: 64}\n  - {name: pairs, table: lf_my_chunks.pairs, primary_key: [a, b], chunk_size: 7}\n",
    );
    let output = run(&config, &url("lf_my_chunks"), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(ids(&records(&ws, "items")), (1..=2_345).collect::<Vec<_>>());
    assert_eq!(
        ids(&records(&ws, "evens")),
        (1..=1_172).map(|n| n * 2).collect::<Vec<_>>()
    );
    let pairs = records(&ws, "pairs");
    let mut keys: Vec<String> = pairs
        .iter()
        .map(|record| record["b"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!((pairs.len(), keys.len()), (1_000, 1_000), "every pair once");
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
    assert_eq!(evens["requests"], 19, "1,172 rows in chunks of 64: {evens:#}");
    // 1,000 rows in chunks of 7: 143 statements, the last one short.
    assert_eq!(common::stream_report(manifest, "pairs")["requests"], 143);
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn incremental_reads_what_changed_since_the_checkpoint() {
    let mut conn = database("lf_my_incremental").await;
    items(&mut conn, 500).await;
    // DATETIME has no offset: its cursor is read with a pattern, as UTC.
    conn.query_drop(
        "CREATE TABLE events (id int PRIMARY KEY, changed datetime(3) NOT NULL);
         INSERT INTO events SELECT seq, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq * 1500 MICROSECOND FROM seq_1_to_300;",
    )
    .await
    .unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "mysql",
        "",
        "  - {name: items, table: items, primary_key: [id], chunk_size: 50, incremental: {cursor_field: updated_at, start: '2024-01-01T00:00:00Z'}}\n  - {name: events, table: events, primary_key: [id], chunk_size: 40, incremental: {cursor_field: changed, format: 'strftime:%Y-%m-%dT%H:%M:%S%.f', start: '2024-01-01T00:00:00'}}\n",
    );
    let output = run(&config, &url("lf_my_incremental"), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(records(&ws, "items").len(), 500);
    let state = ws.state("db", "items").expect("a checkpoint");
    assert_eq!(state["cursor"], "2024-01-01T08:20:00Z", "{state:#}");
    assert_eq!(records(&ws, "events").len(), 300);
    let state = ws.state("db", "events").expect("a checkpoint");
    assert_eq!(state["cursor"], "2024-01-01T00:00:00.450", "{state:#}");
    // The manifest names the range read, and the GTID position when the server has one.
    let manifest = &ws.manifests("db")[0];
    let report = common::stream_report(manifest, "items");
    assert_eq!(report["cursor_start"], "2024-01-01T00:00:00Z", "{report:#}");
    assert_eq!(report["cursor_end"], "2024-01-01T08:20:00Z", "{report:#}");
    let position: Option<String> = conn.query_first("SELECT @@gtid_current_pos").await.unwrap();
    match position.filter(|position| !position.is_empty()) {
        Some(_) => assert_eq!(report["source_snapshot"]["kind"], "gtid_current_pos", "{report:#}"),
        None => assert!(report.get("source_snapshot").is_none(), "{report:#}"),
    }

    // Ten rows change, four are new; one new row shares the checkpoint's instant.
    conn.query_drop(
        "UPDATE items SET name = 'changed', updated_at = TIMESTAMP '2024-01-02 00:00:00' + INTERVAL id SECOND WHERE id <= 10;
         INSERT INTO items SELECT seq, 'new', TIMESTAMP '2024-01-03 00:00:00.5' FROM seq_501_to_504;
         INSERT INTO items VALUES (505, 'same instant', TIMESTAMP '2024-01-01 08:20:00');",
    )
    .await
    .unwrap();
    let before = ws.lines("db", "items").len();
    let output = run(&config, &url("lf_my_incremental"), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let second: Vec<Value> = records(&ws, "items").split_off(before);
    let mut expected: Vec<i64> = (1..=10).chain(501..=505).collect();
    expected.sort_unstable();
    assert_eq!(
        ids(&second),
        expected,
        "the second run reads the changed and new rows only"
    );
    let state = ws.state("db", "items").unwrap();
    assert_eq!(state["cursor"], "2024-01-03T00:00:00.500Z");
    conn.query_drop("INSERT INTO events VALUES (301, '2024-01-01 00:00:00.451')")
        .await
        .unwrap();
    let before = ws.lines("db", "events").len();
    let output = run(&config, &url("lf_my_incremental"), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let third = records(&ws, "events").split_off(before);
    assert_eq!(ids(&third), [301], "only the new event");
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_killed_connection_is_resumed_after_the_last_row_read() {
    let mut conn = database("lf_my_reconnect").await;
    items(&mut conn, 60_000).await;
    drop(conn);
    let mut admin = mysql_async::Conn::from_url(mysql_url()).await.unwrap();
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "mysql",
        "",
        "  - {name: items, table: items, primary_key: [id], chunk_size: 500}\n",
    );
    let child = super::spawn(&config, &url("lf_my_reconnect"), &[]);
    // Kill Landfall's session (the only one on its database) twice while it reads a chunk.
    let mut killed = 0;
    for _ in 0..800 {
        let sessions: Vec<u64> = admin
            .query(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = 'lf_my_reconnect' AND ID <> CONNECTION_ID() \
                 AND COMMAND IN ('Execute', 'Query')",
            )
            .await
            .unwrap();
        for id in sessions {
            if admin.query_drop(format!("KILL CONNECTION {id}")).await.is_ok() {
                killed += 1;
            }
        }
        if killed >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let output = child.wait_with_output().await.unwrap();
    assert!(killed >= 1, "the test never caught the session");
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(
        ids(&records(&ws, "items")),
        (1..=60_000).collect::<Vec<_>>(),
        "every row once"
    );
    let manifest = &ws.manifests("db")[0];
    let report = common::stream_report(manifest, "items");
    assert!(report["retries"].as_u64().unwrap() >= 1, "{report:#}");
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_server_restart_mid_read_is_resumed_after_the_last_row_read() {
    let mut conn = database("lf_my_restart").await;
    items(&mut conn, 100_000).await;
    drop(conn);
    super::server_restart_mid_read(
        "mysql",
        &url("lf_my_restart"),
        "items",
        100_000,
        "LANDFALL_TEST_MYSQL_RESTART",
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn auth_and_privilege_failures_exit_4_without_the_password() {
    let mut conn = database("lf_my_auth").await;
    items(&mut conn, 3).await;
    conn.query_drop("CREATE TABLE other (id int PRIMARY KEY)")
        .await
        .unwrap();
    for host in ["%", "localhost", "127.0.0.1"] {
        conn.query_drop(format!(
            "DROP USER IF EXISTS 'lf_my_reader'@'{host}';
             CREATE USER 'lf_my_reader'@'{host}' IDENTIFIED BY 'right-Secret-4417';
             GRANT SELECT ON lf_my_auth.other TO 'lf_my_reader'@'{host}';"
        ))
        .await
        .unwrap();
    }
    let base = url::Url::parse(&url("lf_my_auth")).unwrap();
    let with_login = |password: &str| {
        let mut url = base.clone();
        url.set_username("lf_my_reader").unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    };
    let ws = Workspace::new();
    let config = write_config(&ws, "mysql", "", "  - {name: items, table: items, primary_key: [id]}\n");

    let output = run(&config, &with_login("wrong-Secret-9931"), &[]).await;
    assert_eq!(output.status.code(), Some(4), "{}", common::stderr(&output));
    let everything = format!("{}{}", common::stderr(&output), common::stdout(&output));
    assert!(everything.contains("AUTH_FAILED"), "{everything}");
    assert!(
        everything.contains("Access denied for user 'lf_my_reader'"),
        "{everything}"
    );
    assert!(!everything.contains("wrong-Secret-9931") && !everything.contains("right-Secret-4417"));

    // The right password, but no SELECT on the table: the error names the privilege.
    let output = run(&config, &with_login("right-Secret-4417"), &[]).await;
    assert_eq!(output.status.code(), Some(4), "{}", common::stderr(&output));
    let everything = format!("{}{}", common::stderr(&output), common::stdout(&output));
    assert!(everything.contains("SELECT command denied"), "{everything}");
    assert!(everything.contains("`items`"), "{everything}");
    assert!(!everything.contains("right-Secret-4417"));
    for manifest in ws.manifests("db") {
        assert!(!manifest.to_string().contains("Secret-"), "{manifest:#}");
    }
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_query_that_writes_or_lacks_its_key_is_refused_clearly() {
    let mut conn = database("lf_my_refused").await;
    items(&mut conn, 3).await;
    conn.query_drop(
        "CREATE TABLE log (n int);
         CREATE FUNCTION lf_write() RETURNS int MODIFIES SQL DATA BEGIN INSERT INTO log VALUES (1); RETURN 1; END",
    )
    .await
    .unwrap();
    for query in ["SELECT lf_write() AS id", "SELECT id, name FROM items FOR UPDATE"] {
        let ws = Workspace::new();
        let config = write_config(
            &ws,
            "mysql",
            "",
            &format!("  - {{name: writes, query: \"{query}\", primary_key: [id]}}\n"),
        );
        let output = run(&config, &url("lf_my_refused"), &[]).await;
        assert!(!output.status.success());
        let stderr = common::stderr(&output);
        assert!(
            stderr.contains("INVALID_REQUEST")
                && stderr.contains("Cannot execute statement in a READ ONLY transaction")
                && stderr.contains("never write"),
            "{query}: {stderr}"
        );
    }
    let written: Option<i64> = conn.query_first("SELECT COUNT(*) FROM log").await.unwrap();
    assert_eq!(written, Some(0), "the function never wrote");

    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "mysql",
        "",
        "  - {name: keyless, query: 'SELECT name FROM items', primary_key: [id]}\n",
    );
    let output = run(&config, &url("lf_my_refused"), &[]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "not retryable: {}",
        common::stderr(&output)
    );
    let stderr = common::stderr(&output);
    assert!(stderr.contains("returns no primary key column `id`"), "{stderr}");
    assert!(stderr.contains("CONFIG_ERROR"), "{stderr}");

    // A placeholder the driver would fill is a config error, not a connection to retry.
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "mysql",
        "",
        "  - {name: placeholder, query: 'SELECT id FROM items WHERE name <> :oops', primary_key: [id]}\n",
    );
    let output = run(&config, &url("lf_my_refused"), &[]).await;
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CONFIG_ERROR") && stderr.contains("outside quotes"),
        "{stderr}"
    );
    assert!(!stderr.contains("retrying"), "{stderr}");

    // A table that does not exist is a config error naming it.
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "mysql",
        "",
        "  - {name: gone, table: nowhere, primary_key: [id]}\n",
    );
    let output = run(&config, &url("lf_my_refused"), &[]).await;
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CONFIG_ERROR") && stderr.contains("nowhere"),
        "{stderr}"
    );
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn a_statement_timeout_is_a_timeout_that_names_the_setting() {
    let mut conn = database("lf_my_timeout").await;
    items(&mut conn, 3).await;
    let ws = Workspace::new();
    let config = write_config(
        &ws,
        "mysql",
        "  statement_timeout: 200ms\n",
        "  - {name: slow, query: 'SELECT id, SLEEP(1) AS slept FROM items', primary_key: [id]}\n",
    );
    let started = std::time::Instant::now();
    let output = run(&config, &url("lf_my_timeout"), &[]).await;
    assert!(!output.status.success());
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains("TIMEOUT") && stderr.contains("statement_timeout") && stderr.contains("max_statement_time"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "the server stopped the statement"
    );
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn tls_modes_verify_the_certificate_and_host_name() {
    drop(database("lf_my_tls").await);
    super::tls_against_the_suite_certificate(
        "mysql",
        &url("lf_my_tls"),
        "SELECT 1 AS id, VARIABLE_VALUE AS tls FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_VERSION'",
    )
    .await;
}

/// Run last by `tests/database/run.sh`, after it restarted MariaDB without TLS.
#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn tls_modes_prefer_and_require_against_a_server_without_tls() {
    let mut conn = database("lf_my_plain").await;
    let have_ssl: Option<String> = conn.query_first("SELECT @@have_ssl").await.unwrap();
    assert_ne!(
        have_ssl.as_deref(),
        Some("YES"),
        "needs MariaDB without TLS: tests/database/run.sh runs this test last, after restarting it so"
    );
    items(&mut conn, 3).await;
    let streams = "  - {name: items, table: items, primary_key: [id]}\n";
    // prefer (the default): the server offers no TLS, so the connection is plain.
    let ws = Workspace::new();
    let config = write_config(&ws, "mysql", "", streams);
    let output = run(&config, &url("lf_my_plain"), &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(records(&ws, "items").len(), 3);
    // require: no connection without TLS, and the error says which setting asked for it.
    let ws = Workspace::new();
    let config = write_config(&ws, "mysql", "  tls: {mode: require}\n", streams);
    let output = run(&config, &url("lf_my_plain"), &[]).await;
    let stderr = common::stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("offers no TLS") && stderr.contains("source.tls.mode"),
        "{stderr}"
    );
}
