//! PostgreSQL (`source.type: postgres`), through `tokio-postgres` with rustls.
//!
//! Each row is rendered by the server: `row_to_json` over the selected columns, with the
//! session in UTC and ISO formats (`TimeZone`, `DateStyle`, `IntervalStyle = iso_8601`),
//! `bytea` as base64 and `money` as numeric. Every chunk of a stream runs in one `REPEATABLE
//! READ READ ONLY` transaction: one snapshot for the whole stream (a reconnect after a
//! broken connection opens a new one, from the last row read).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_postgres::error::SqlState;

use super::discover::{CatalogColumn, TypeClass};
use super::sql::{Bounds, Column, ROW, ReadSpec, SUBQUERY, finish_chunk, quote_identifier};
use super::{Connection, DEFAULT_CONNECT_TIMEOUT, DatabaseError, Dialect, Row, Snapshot};
use crate::error::ErrorCode;
use crate::http::config::{SourceConfig, TlsMode};

/// How to reach the server, built once from `source:`.
pub struct Postgres {
    config: Result<tokio_postgres::Config, DatabaseError>,
    ca_file: Option<String>,
    statement_timeout: Option<std::time::Duration>,
}

impl Postgres {
    pub fn new(source: &SourceConfig) -> Self {
        Self {
            config: connection_config(source),
            ca_file: source.tls.ca_file.clone(),
            statement_timeout: source.statement_timeout.map(|timeout| timeout.0),
        }
    }

    fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DatabaseError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &self.ca_file {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|error| {
                DatabaseError::config(format!("source.tls.ca_file `{path}` cannot be read: {error}"))
            })?;
            for cert in certs {
                let cert = cert.map_err(|error| {
                    DatabaseError::config(format!(
                        "source.tls.ca_file `{path}` holds no valid PEM certificate: {error}"
                    ))
                })?;
                roots
                    .add(cert)
                    .map_err(|error| DatabaseError::config(format!("source.tls.ca_file `{path}`: {error}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| DatabaseError::config(format!("TLS: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

/// The connection settings: `url` or `host`/`port`/`database`/`user`/`password`, with
/// Landfall's defaults (application name, connect timeout, TLS when offered).
fn connection_config(source: &SourceConfig) -> Result<tokio_postgres::Config, DatabaseError> {
    let mut config = match &source.url {
        // The parser's message may quote the URL, which may hold the password: never shown.
        Some(url) => url.expose().parse::<tokio_postgres::Config>().map_err(|_| {
            DatabaseError::config("source.url is not a PostgreSQL URL (postgres://user@host:5432/database)")
        })?,
        None => tokio_postgres::Config::new(),
    };
    if let Some(host) = &source.host {
        config.host(host);
    }
    if let Some(port) = source.port {
        config.port(port);
    } else if source.host.is_some() {
        config.port(5432);
    }
    if let Some(database) = &source.database {
        config.dbname(database);
    }
    if let Some(user) = &source.user {
        config.user(user);
    }
    if let Some(password) = &source.password {
        config.password(password.expose());
    }
    if config.get_application_name().is_none() || source.application_name.is_some() {
        config.application_name(source.application_name.as_deref().unwrap_or("landfall"));
    }
    if config.get_connect_timeout().is_none() || source.connect_timeout.is_some() {
        config.connect_timeout(
            source
                .connect_timeout
                .map_or(DEFAULT_CONNECT_TIMEOUT, |timeout| timeout.0),
        );
    }
    if let Some(mode) = source.tls.mode {
        config.ssl_mode(match mode {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
    }
    if config.get_user().is_none() {
        return Err(DatabaseError::config(
            "no user: set source.user or put it in source.url",
        ));
    }
    Ok(config)
}

#[async_trait]
impl Dialect for Postgres {
    async fn connect(&self) -> Result<Box<dyn Connection>, DatabaseError> {
        let config = self.config.clone()?;
        let tls = self.tls()?;
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|error| classify(&error, "connecting"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "postgres connection closed");
            }
        });
        let mut setup = String::from(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; \
             SET extra_float_digits = 3; SET standard_conforming_strings = on; ",
        );
        if let Some(timeout) = self.statement_timeout {
            setup.push_str(&format!("SET statement_timeout = {}; ", timeout.as_millis().max(1)));
        }
        setup.push_str("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;");
        client
            .batch_execute(&setup)
            .await
            .map_err(|error| classify(&error, "starting the read-only transaction"))?;
        // The transaction's snapshot is taken by its first statement: this one.
        let row = client
            .query_one(
                "SELECT s::text, pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text FROM pg_current_snapshot() AS s",
                &[],
            )
            .await
            .map_err(|error| classify(&error, "reading the snapshot"))?;
        let xid = |index: usize| {
            row.try_get::<_, String>(index)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
        };
        let snapshot = row.try_get::<_, String>(0).ok().map(|text| Snapshot {
            kind: "pg_current_snapshot",
            text,
            xids: xid(1).zip(xid(2)),
        });
        Ok(Box::new(PostgresConnection { client, snapshot }))
    }

    fn chunk_sql(&self, spec: &ReadSpec, columns: &[Column], bounds: &Bounds, limit: u32) -> String {
        let q = |name: &str| format!("{SUBQUERY}.{}", quote_identifier(name, '"'));
        let rendered: Vec<String> = columns
            .iter()
            .map(|column| {
                let value = match column.type_name.as_str() {
                    "pg_catalog.bytea" => format!("translate(encode({}, 'base64'), E'\\n', '')", q(&column.name)),
                    "pg_catalog.money" => format!("{}::numeric", q(&column.name)),
                    _ => q(&column.name),
                };
                format!("{value} AS {}", quote_identifier(&column.name, '"'))
            })
            .collect();
        let keyset = spec.keyset_columns(columns);
        let mut sql = format!("SELECT row_to_json({ROW})::text");
        for column in &keyset {
            sql.push_str(&format!(", {}::text", q(&column.name)));
        }
        let mut param = 0;
        let mut next = || {
            param += 1;
            format!("${param}::text")
        };
        let mut relation = spec.relation_sql('"');
        if let (true, Some(_), Some(horizon)) = (spec.xmin, &bounds.lower, bounds.xid_horizon) {
            // The table's own `xmin`, inside the relation: the subquery has no system columns.
            relation.push_str(&format!(
                " WHERE {} >= CAST({} AS bigint)",
                widened_xmin("xmin", horizon),
                next()
            ));
        }
        sql.push_str(&format!(
            " FROM ({relation}) {SUBQUERY} CROSS JOIN LATERAL (SELECT {}) {ROW}",
            rendered.join(", ")
        ));
        let mut conditions = Vec::new();
        let cast = |placeholder: String, column: &Column| format!("CAST({placeholder} AS {})", column.type_name);
        if let Some(cursor) = keyset.first().filter(|_| spec.cursor.is_some()) {
            if bounds.lower.is_some() {
                conditions.push(format!("{} >= {}", q(&cursor.name), cast(next(), cursor)));
            }
            if bounds.upper.is_some() {
                conditions.push(format!("{} < {}", q(&cursor.name), cast(next(), cursor)));
            }
        }
        if bounds.after.is_some() {
            let names: Vec<String> = keyset.iter().map(|column| q(&column.name)).collect();
            let values: Vec<String> = keyset.iter().map(|column| cast(next(), column)).collect();
            conditions.push(format!("({}) > ({})", names.join(", "), values.join(", ")));
        }
        let order: Vec<String> = keyset.iter().map(|column| q(&column.name)).collect();
        finish_chunk(&mut sql, &conditions, &order, limit);
        sql
    }
}

/// Every column of the tables and views the login may read, outside the system schemas
/// (`pg_catalog`, `information_schema`, `pg_toast` and the other `pg_` ones), partitions
/// left to their parent; `$1`: the schemas to read (empty: all). Columns: schema, table,
/// kind, column, type as written, `typname`, `typcategory`, nullable, position in the
/// primary key.
const CATALOG_SQL: &str = "SELECT n.nspname::text, c.relname::text, \
    CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized_view' WHEN 'f' THEN 'foreign_table' \
    ELSE 'table' END, \
    a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typname::text, t.typcategory::text, \
    NOT a.attnotnull, \
    (SELECT k.position FROM pg_catalog.pg_constraint p \
     CROSS JOIN LATERAL unnest(p.conkey) WITH ORDINALITY AS k(attnum, position) \
     WHERE p.conrelid = c.oid AND p.contype = 'p' AND k.attnum = a.attnum) \
    FROM pg_catalog.pg_class c \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition \
    AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
    AND pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_table_privilege(c.oid, 'SELECT') \
    AND (cardinality($1::text[]) = 0 OR n.nspname::text = ANY($1::text[])) \
    ORDER BY 1, 2, a.attnum";
/// A row's 32-bit `xid` (the SQL expression `xid`, e.g. the `xmin` column) as a 64-bit full
/// transaction id: the largest full id at or below `horizon` (the snapshot's xmax, a full id
/// above every transaction the snapshot sees) whose low 32 bits are the xid, that is
/// `horizon - ((horizon mod 2^32) - xid) mod 2^32`. Exact for every transaction less than
/// 2^32 ids before `horizon` (PostgreSQL's wraparound protection keeps the live ones within
/// 2^31); for an older one (a frozen row keeps its original xmin) it is never below the
/// true id, so such a row may be read again but never missed. The special ids below 3
/// (invalid, bootstrap, frozen) are 0.
pub fn widened_xmin(xid: &str, horizon: u64) -> String {
    const EPOCH: u64 = 1 << 32;
    let low = horizon % EPOCH;
    format!(
        "(CASE WHEN {xid}::text::bigint < 3 THEN 0::bigint \
         ELSE {horizon}::bigint - ((({low} - {xid}::text::bigint) % {EPOCH} + {EPOCH}) % {EPOCH}) END)"
    )
}

struct PostgresConnection {
    client: tokio_postgres::Client,
    snapshot: Option<Snapshot>,
}

#[async_trait]
impl Connection for PostgresConnection {
    async fn describe(&mut self, spec: &ReadSpec) -> Result<Vec<Column>, DatabaseError> {
        let statement = self
            .client
            .prepare(&format!(
                "SELECT * FROM ({}) {SUBQUERY} LIMIT 0",
                spec.relation_sql('"')
            ))
            .await
            .map_err(|error| classify(&error, &format!("reading the columns of {}", spec.endpoint())))?;
        Ok(statement
            .columns()
            .iter()
            .map(|column| Column {
                name: column.name().to_owned(),
                type_name: format!("{}.{}", column.type_().schema(), column.type_().name()),
            })
            .map(|mut column| {
                // Built-in types are written bare in pg_catalog; others are quoted.
                if let Some((schema, name)) = column.type_name.split_once('.')
                    && schema != "pg_catalog"
                {
                    column.type_name = format!("{}.{}", quote_identifier(schema, '"'), quote_identifier(name, '"'));
                }
                column
            })
            .collect())
    }

    async fn discover(&mut self, schemas: &[String]) -> Result<Vec<CatalogColumn>, DatabaseError> {
        let rows = self
            .client
            .query(CATALOG_SQL, &[&schemas])
            .await
            .map_err(|error| classify(&error, "reading the catalog"))?;
        let text = |row: &tokio_postgres::Row, index: usize| -> Result<String, DatabaseError> {
            row.try_get::<_, String>(index)
                .map_err(|error| DatabaseError::new(ErrorCode::ParsingError, false, error.to_string()))
        };
        rows.iter()
            .map(|row| {
                let key_position: Option<i64> = row
                    .try_get(8)
                    .map_err(|error| DatabaseError::new(ErrorCode::ParsingError, false, error.to_string()))?;
                let nullable: bool = row
                    .try_get(7)
                    .map_err(|error| DatabaseError::new(ErrorCode::ParsingError, false, error.to_string()))?;
                Ok(CatalogColumn {
                    schema: text(row, 0)?,
                    table: text(row, 1)?,
                    kind: text(row, 2)?,
                    column: text(row, 3)?,
                    type_name: text(row, 4)?,
                    class: TypeClass::of_postgres(&text(row, 5)?, &text(row, 6)?),
                    nullable,
                    key_position,
                })
            })
            .collect()
    }

    async fn chunk<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [String],
    ) -> Result<BoxStream<'a, Result<Row, DatabaseError>>, DatabaseError> {
        let rows = self
            .client
            .query_raw(sql, params.iter().map(String::as_str))
            .await
            .map_err(|error| classify(&error, "reading a chunk"))?;
        Ok(rows
            .map(|row| {
                let row = row.map_err(|error| classify(&error, "reading a chunk"))?;
                let json: String = row
                    .try_get(0)
                    .map_err(|error| DatabaseError::new(ErrorCode::ParsingError, false, error.to_string()))?;
                let keys = (1..row.len())
                    .map(|index| row.try_get::<_, Option<String>>(index))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| DatabaseError::new(ErrorCode::ParsingError, false, error.to_string()))?;
                Ok(Row { json, keys })
            })
            .boxed())
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot.clone()
    }
}

/// What a PostgreSQL error means for the run: its code, whether a rerun (or a new
/// connection) may help, and a message naming what failed. The server's messages name the
/// table, column or privilege, never a password.
fn classify(error: &tokio_postgres::Error, doing: &str) -> DatabaseError {
    let Some(db) = error.as_db_error() else {
        if let Some(failure) = super::tls::certificate_failure(error, &format!("postgres: {doing}")) {
            return failure;
        }
        // No answer from the server: refused, reset, timed out or closed.
        return DatabaseError::connection(format!("postgres: {doing}: {error}"));
    };
    let state = db.code();
    let message = format!("postgres: {doing}: {} (SQLSTATE {})", db.message(), state.code());
    let class = &state.code()[..2];
    if *state == SqlState::INVALID_PASSWORD || *state == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        DatabaseError::new(ErrorCode::AuthFailed, false, message)
    } else if *state == SqlState::INSUFFICIENT_PRIVILEGE {
        DatabaseError::new(
            ErrorCode::AuthFailed,
            false,
            format!("{message}; grant the login that privilege (e.g. GRANT SELECT ON the table)"),
        )
    } else if *state == SqlState::READ_ONLY_SQL_TRANSACTION {
        DatabaseError::new(
            ErrorCode::InvalidRequest,
            false,
            format!("{message}; database streams run in a READ ONLY transaction and never write"),
        )
    } else if *state == SqlState::QUERY_CANCELED {
        DatabaseError::new(
            ErrorCode::Timeout,
            true,
            format!(
                "{message}; raise source.statement_timeout or lower the stream's chunk_size \
                 (a statement waiting for a lock that another session holds counts too)"
            ),
        )
    } else if *state == SqlState::LOCK_NOT_AVAILABLE
        || *state == SqlState::T_R_SERIALIZATION_FAILURE
        || *state == SqlState::T_R_DEADLOCK_DETECTED
        || *state == SqlState::TOO_MANY_CONNECTIONS
        || *state == SqlState::ADMIN_SHUTDOWN
        || *state == SqlState::CRASH_SHUTDOWN
        || *state == SqlState::CANNOT_CONNECT_NOW
        || class == "08"
    {
        DatabaseError::connection(message)
    } else if class == "42" || class == "3D" || class == "3F" {
        // Syntax, unknown table or column, unknown database or schema.
        DatabaseError::config(message)
    } else if class == "53" || class == "58" || class == "XX" {
        DatabaseError::new(ErrorCode::ServerError, true, message)
    } else {
        DatabaseError::new(ErrorCode::ServerError, false, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_stream;

    #[test]
    fn an_xmin_chunk_filters_the_table_by_widened_xmin_and_orders_by_the_key_alone() {
        let spec = ReadSpec::new(&test_stream(
            r#", "table": "public.events", "incremental": {"mode": "xmin"}"#,
        ));
        assert!(spec.xmin);
        assert_eq!(spec.keyset, ["id"]);
        let columns = [Column {
            name: "id".into(),
            type_name: "pg_catalog.int8".into(),
        }];
        let bounds = Bounds {
            lower: Some("4294967301".into()),
            upper: None,
            after: Some(vec!["7".into()]),
            xid_horizon: Some((1 << 32) + 10),
        };
        let postgres = Postgres {
            config: Err(DatabaseError::config("unused")),
            ca_file: None,
            statement_timeout: None,
        };
        let sql = postgres.chunk_sql(&spec, &columns, &bounds, 30);
        let inner = format!(
            "(SELECT * FROM \"public\".\"events\" WHERE {} >= CAST($1::text AS bigint))",
            widened_xmin("xmin", (1 << 32) + 10)
        );
        assert!(sql.contains(&inner), "{sql}");
        assert!(
            sql.ends_with(&format!(
                "WHERE ({SUBQUERY}.\"id\") > (CAST($2::text AS pg_catalog.int8)) ORDER BY {SUBQUERY}.\"id\" LIMIT 30"
            )),
            "{sql}"
        );
        assert_eq!(bounds.params(), ["4294967301", "7"]);
        assert!(widened_xmin("xmin", (1 << 32) + 10).contains("4294967306::bigint - (((10 - xmin::text::bigint)"));
    }
}
