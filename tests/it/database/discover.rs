//! `landfall discover` against the suite's real servers: the catalog as JSON, the starter
//! config it writes (validated, run, and typed by `landfall dbt-sources`), and no secret in
//! anything it prints or writes.

use mysql_async::prelude::Queryable;
use serde_json::Value;

use super::{mysql_url, postgres_url, records, tls_ca, with_database};
use crate::common::{self, Workspace};

/// A config with only `source:` and `landing:` (discover proposes the streams), trusting
/// the suite's CA.
fn source_only(ws: &Workspace, kind: &str) -> std::path::PathBuf {
    ws.config(&format!(
        "version: 1\nsource:\n  name: db\n  type: {kind}\n  url: ${{env:DATABASE_URL}}\n  tls: {{ca_file: '{}'}}\nlanding:\n  url: {{landing}}\n",
        tls_ca()
    ))
}

/// `url` with its password replaced.
fn with_password(url: &str, password: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_password(Some(password)).unwrap();
    url.to_string()
}

fn password(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .password()
        .expect("the suite's URL holds a password")
        .to_owned()
}

async fn landfall(args: &[&str], url: &str) -> std::process::Output {
    common::landfall(args, &[("DATABASE_URL", url)]).await
}

/// The table `schema.name` of a discover report.
fn table<'a>(report: &'a Value, schema: &str, name: &str) -> &'a Value {
    let schema = common::named(report, "schemas", "name", schema);
    common::named(schema, "tables", "name", name)
}

fn column<'a>(table: &'a Value, name: &str) -> &'a Value {
    common::named(table, "columns", "name", name)
}

fn candidates(table: &Value) -> Vec<&str> {
    table["cursor_candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|candidate| candidate["column"].as_str().unwrap())
        .collect()
}

/// What both servers share: discover lists the schema without the system ones, the starter
/// config validates, runs and types the dbt staging columns, `--force` guards the file, a
/// wrong password exits 4, and no password reaches any output.
async fn discover_then_run(kind: &str, url: &str, schema: &str) -> (Value, String, Workspace) {
    let ws = Workspace::new();
    let config = source_only(&ws, kind);
    let config = config.to_str().unwrap();
    let secret = password(url);

    let output = landfall(&["discover", "--config", config], url).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON catalog");
    assert_eq!(report["type"], kind);
    let schemas: Vec<&str> = report["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|schema| schema["name"].as_str().unwrap())
        .collect();
    assert!(schemas.contains(&schema), "{schemas:?}");
    for system in [
        "pg_catalog",
        "information_schema",
        "pg_toast",
        "mysql",
        "performance_schema",
        "sys",
    ] {
        assert!(!schemas.contains(&system), "{system} is listed: {schemas:?}");
    }

    let starter = ws.landing().with_file_name("starter.yaml");
    let starter_arg = starter.to_str().unwrap();
    let args = [
        "discover",
        "--config",
        config,
        "--schema",
        schema,
        "--write-config",
        starter_arg,
    ];
    let output = landfall(&args, url).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let text = std::fs::read_to_string(&starter).expect("the starter config");
    let everything = format!("{}{}{text}", common::stdout(&output), common::stderr(&output));
    assert!(
        !everything.contains(&secret),
        "the resolved password was printed or written"
    );
    assert!(text.contains("url: ${env:DATABASE_URL}"), "{text}");
    let filtered: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(filtered["schemas"].as_array().unwrap().len(), 1, "{filtered:#}");

    // The file is not overwritten without --force.
    std::fs::write(&starter, "keep me").unwrap();
    let output = landfall(&args, url).await;
    assert_eq!(output.status.code(), Some(2), "{}", common::stderr(&output));
    assert!(
        common::stderr(&output).contains("--force"),
        "{}",
        common::stderr(&output)
    );
    assert_eq!(std::fs::read_to_string(&starter).unwrap(), "keep me");
    let mut forced = args.to_vec();
    forced.push("--force");
    let output = landfall(&forced, url).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert_eq!(std::fs::read_to_string(&starter).unwrap(), text);

    // The starter validates and runs as written.
    let output = landfall(&["validate", "--config", starter_arg], url).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let output = landfall(&["run", "--config", starter_arg], url).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(!common::stderr(&output).contains(&secret));

    // A wrong password: exit 4 as for `run` and `check`, the password in no output.
    let wrong = with_password(url, "wrong-Secret-5521");
    let output = landfall(&["discover", "--config", config], &wrong).await;
    assert_eq!(output.status.code(), Some(4), "{}", common::stderr(&output));
    let everything = format!("{}{}", common::stdout(&output), common::stderr(&output));
    assert!(everything.contains("AUTH_FAILED"), "{everything}");
    assert!(!everything.contains("wrong-Secret-5521") && !everything.contains(&secret));

    let output = landfall(&["dbt-sources", "--config", starter_arg], url).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    (filtered, format!("{text}\n---\n{}", common::stdout(&output)), ws)
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn postgres_discover_writes_a_starter_config_that_runs() {
    let url = postgres_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "DROP SCHEMA IF EXISTS lf_discover CASCADE; CREATE SCHEMA lf_discover;
             CREATE TABLE lf_discover.orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2),
               paid boolean NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, meta jsonb,
               tags text[]);
             INSERT INTO lf_discover.orders SELECT g, 'c' || g, g * 10.5, g % 2 = 0,
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour',
               timestamptz '2024-02-01 00:00:00+00' + g * interval '1 hour', '{\"k\": 1}', ARRAY['a']
               FROM generate_series(1, 25) g;
             CREATE TABLE lf_discover.order_lines (line int NOT NULL, order_id bigint NOT NULL, sku text NOT NULL,
               shipped_on date, PRIMARY KEY (order_id, line));
             INSERT INTO lf_discover.order_lines SELECT l, o, 'sku' || l, date '2024-03-01' + o
               FROM generate_series(1, 4) o, generate_series(1, 3) l;
             CREATE TABLE lf_discover.audit_log (at timestamptz NOT NULL, message text);
             CREATE VIEW lf_discover.big_orders AS SELECT id, amount FROM lf_discover.orders WHERE amount > 100;",
        )
        .await
        .unwrap();

    let (report, text, ws) = discover_then_run("postgres", &url, "lf_discover").await;

    let orders = table(&report, "lf_discover", "orders");
    assert_eq!(orders["kind"], "table");
    assert_eq!(orders["primary_key"], serde_json::json!(["id"]));
    for (name, database_type, nullable, dbt_type) in [
        ("id", "bigint", false, "integer"),
        ("customer", "text", false, "string"),
        ("amount", "numeric(12,2)", true, "number"),
        ("paid", "boolean", false, "boolean"),
        ("created_at", "timestamp with time zone", false, "timestamp"),
        ("meta", "jsonb", true, "json"),
        ("tags", "text[]", true, "json"),
    ] {
        let column = column(orders, name);
        assert_eq!(column["type"], database_type, "{column}");
        assert_eq!(column["nullable"], nullable, "{column}");
        assert_eq!(column["dbt_type"], dbt_type, "{column}");
    }
    assert_eq!(candidates(orders), ["updated_at", "created_at"]);
    let best = &orders["cursor_candidates"][0];
    assert!(best["reason"].as_str().unwrap().contains("last-change"), "{best}");
    assert_eq!(best["recommended"], true);

    let lines = table(&report, "lf_discover", "order_lines");
    assert_eq!(
        lines["primary_key"],
        serde_json::json!(["order_id", "line"]),
        "in key order"
    );
    assert_eq!(candidates(lines), ["shipped_on"]);
    assert_eq!(lines["cursor_candidates"][0]["recommended"], false);
    assert_eq!(
        table(&report, "lf_discover", "audit_log")["primary_key"],
        serde_json::json!([])
    );
    assert_eq!(table(&report, "lf_discover", "big_orders")["kind"], "view");

    // Streams for the keyed tables, the others in a comment.
    assert!(
        text.contains("#   lf_discover.audit_log (table): no primary key"),
        "{text}"
    );
    assert!(
        text.contains("#   lf_discover.big_orders (view): no primary key"),
        "{text}"
    );
    assert!(text.contains("cursor_field: updated_at"), "{text}");
    assert_eq!(records(&ws, "orders").len(), 25);
    assert_eq!(records(&ws, "order_lines").len(), 12);
    assert_eq!(
        ws.state("db", "orders").expect("a checkpoint")["cursor"],
        "2024-02-02T01:00:00Z"
    );
    // dbt-sources types the staging columns from the catalog.
    assert!(
        text.contains(
            "columns: {id: integer, customer: string, amount: number, paid: boolean, created_at: timestamp, updated_at: timestamp, meta: json, tags: json}"
        ),
        "{text}"
    );
    assert!(
        text.contains("columns: {line: integer, order_id: integer, sku: string, shipped_on: date}"),
        "{text}"
    );
}

#[tokio::test]
#[ignore = "needs the servers of tests/database/run.sh"]
async fn mariadb_discover_writes_a_starter_config_that_runs() {
    let mut admin = mysql_async::Conn::from_url(mysql_url()).await.unwrap();
    admin
        .query_drop("DROP DATABASE IF EXISTS lf_my_discover; CREATE DATABASE lf_my_discover CHARACTER SET utf8mb4;")
        .await
        .unwrap();
    drop(admin);
    let url = with_database(&mysql_url(), "lf_my_discover");
    let mut conn = mysql_async::Conn::from_url(url.clone()).await.unwrap();
    conn.query_drop(
        "SET time_zone = '+00:00';
         CREATE TABLE orders (id bigint PRIMARY KEY, customer varchar(100) NOT NULL, amount decimal(12,2),
           paid tinyint(1) NOT NULL, created_at timestamp(6) NOT NULL, updated_at datetime(6) NOT NULL, meta json);
         INSERT INTO orders SELECT seq, CONCAT('c', seq), seq * 10.5, seq % 2,
           TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq HOUR, TIMESTAMP '2024-02-01 00:00:00' + INTERVAL seq HOUR,
           '{\"k\": 1}' FROM seq_1_to_25;
         CREATE TABLE order_lines (line int NOT NULL, order_id bigint NOT NULL, sku varchar(20) NOT NULL,
           shipped_on date, PRIMARY KEY (order_id, line));
         INSERT INTO order_lines SELECT l.seq, o.seq, CONCAT('sku', l.seq), DATE '2024-03-01' + INTERVAL o.seq DAY
           FROM seq_1_to_4 o, seq_1_to_3 l;
         CREATE TABLE audit_log (at datetime NOT NULL, message text);
         CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 100;",
    )
    .await
    .unwrap();
    drop(conn);

    let (report, text, ws) = discover_then_run("mysql", &url, "lf_my_discover").await;

    let orders = table(&report, "lf_my_discover", "orders");
    assert_eq!(orders["kind"], "table");
    assert_eq!(orders["primary_key"], serde_json::json!(["id"]));
    for (name, database_type, nullable, dbt_type) in [
        ("id", "bigint(20)", false, "integer"),
        ("customer", "varchar(100)", false, "string"),
        ("amount", "decimal(12,2)", true, "number"),
        ("paid", "tinyint(1)", false, "integer"),
        ("created_at", "timestamp(6)", false, "timestamp"),
        ("updated_at", "datetime(6)", false, "timestamp"),
        // MariaDB's JSON is LONGTEXT with a json_valid check, and lands embedded.
        ("meta", "longtext", true, "json"),
    ] {
        let column = column(orders, name);
        assert_eq!(column["type"], database_type, "{column}");
        assert_eq!(column["nullable"], nullable, "{column}");
        assert_eq!(column["dbt_type"], dbt_type, "{column}");
    }
    assert_eq!(candidates(orders), ["updated_at", "created_at"]);
    let lines = table(&report, "lf_my_discover", "order_lines");
    assert_eq!(
        lines["primary_key"],
        serde_json::json!(["order_id", "line"]),
        "in key order"
    );
    assert_eq!(candidates(lines), ["shipped_on"]);
    assert_eq!(
        table(&report, "lf_my_discover", "audit_log")["primary_key"],
        serde_json::json!([])
    );
    assert_eq!(table(&report, "lf_my_discover", "big_orders")["kind"], "view");

    // DATETIME carries no offset: the starter sets the cursor format that reads it.
    assert!(
        text.contains("cursor_field: updated_at\n      start: \"1970-01-01T00:00:00\"\n      format: \"strftime:%Y-%m-%dT%H:%M:%S%.f\""),
        "{text}"
    );
    assert!(
        text.contains("#   lf_my_discover.audit_log (table): no primary key"),
        "{text}"
    );
    let orders = records(&ws, "orders");
    assert_eq!(orders.len(), 25);
    assert_eq!(
        orders[0]["meta"],
        serde_json::json!({"k": 1}),
        "the JSON lands embedded"
    );
    assert_eq!(records(&ws, "order_lines").len(), 12);
    assert_eq!(
        ws.state("db", "orders").expect("a checkpoint")["cursor"],
        "2024-02-02T01:00:00"
    );
    assert!(
        text.contains(
            "columns: {id: integer, customer: string, amount: number, paid: integer, created_at: timestamp, updated_at: timestamp, meta: json}"
        ),
        "{text}"
    );
}

/// No server needed: a REST config is refused as a config error, before any connection.
#[tokio::test]
async fn discover_refuses_a_rest_source_as_a_config_error() {
    let ws = Workspace::new();
    let config = ws.config(&common::one_stream("http://127.0.0.1:9", "items"));
    let output = common::landfall(&["discover", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", common::stderr(&output));
    assert!(
        common::stderr(&output).contains("discover reads the catalog of a database source"),
        "{}",
        common::stderr(&output)
    );
    assert!(output.stdout.is_empty());
}
