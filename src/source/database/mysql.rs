//! MySQL and MariaDB (`source.type: mysql`), through `mysql_async` with rustls.
//!
//! Each row is rendered by the server: `JSON_OBJECT('column', expression, ...)` over the
//! selected columns in select order, each expression chosen from the column's type so the
//! JSON is exact (`docs/databases.md` has the mapping): DECIMAL and 64-bit integers
//! as JSON numbers with every digit, DATETIME and TIMESTAMP as RFC 3339 text with their
//! declared fractional digits (TIMESTAMP in UTC, `+00:00`), binary strings as base64. The
//! session runs in UTC (`time_zone = '+00:00'`) with utf8mb4 results, and every chunk of a
//! stream runs in one `REPEATABLE READ` transaction started `WITH CONSISTENT SNAPSHOT, READ
//! ONLY`: one snapshot for the stream, and a statement that would write is refused by the
//! server (a reconnect after a broken connection opens a new snapshot, from the last row
//! read).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, Params, SslOpts, Value};

use super::discover::{CatalogColumn, TypeClass};
use super::sql::{Bounds, Column, ROW, ReadSpec, SUBQUERY, finish_chunk, quote_identifier};
use super::{Connection, DEFAULT_CONNECT_TIMEOUT, DatabaseError, Dialect, Row, Snapshot};
use crate::error::ErrorCode;
use crate::http::config::{SourceConfig, TlsMode};

/// The port when `source.port` is not set.
pub const DEFAULT_PORT: u16 = 3306;

/// How to reach the server, built once from `source:`.
pub struct Mysql {
    opts: Result<OptsBuilder, DatabaseError>,
    tls: TlsChoice,
    ca_file: Option<String>,
    connect_timeout: Duration,
    statement_timeout: Option<Duration>,
}

/// What `source.tls.mode` asks of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsChoice {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain TCP when it does not; a certificate that does
    /// not verify is an error, never a reason to go plain.
    Prefer,
    /// TLS, or no connection.
    Require,
    /// What the URL's own parameters (`require_ssl=true`, ...) say: `source.tls.mode` unset.
    Url,
}

impl Mysql {
    pub fn new(source: &SourceConfig) -> Self {
        let opts = connection_opts(source);
        let url_has_tls = opts
            .as_ref()
            .is_ok_and(|opts| Opts::from(opts.clone()).ssl_opts().is_some());
        let tls = match source.tls.mode {
            Some(TlsMode::Disable) => TlsChoice::Disable,
            Some(TlsMode::Prefer) => TlsChoice::Prefer,
            Some(TlsMode::Require | TlsMode::VerifyFull) => TlsChoice::Require,
            None if url_has_tls => TlsChoice::Url,
            None => TlsChoice::Prefer,
        };
        let opts = opts.map(|opts| match tls {
            TlsChoice::Disable => opts.ssl_opts(None::<SslOpts>),
            TlsChoice::Prefer | TlsChoice::Require => opts.ssl_opts(ssl_opts(source.tls.ca_file.as_deref())),
            // The URL's TLS settings, with the CA file added to its roots.
            TlsChoice::Url => match (&source.tls.ca_file, Opts::from(opts.clone()).ssl_opts()) {
                (Some(path), Some(url_tls)) => {
                    let mut roots = url_tls.root_certs().to_vec();
                    roots.push(std::path::PathBuf::from(path).into());
                    let url_tls = url_tls.clone().with_root_certs(roots);
                    opts.ssl_opts(url_tls)
                }
                _ => opts,
            },
        });
        Self {
            opts,
            tls,
            ca_file: source.tls.ca_file.clone(),
            connect_timeout: source
                .connect_timeout
                .map_or(DEFAULT_CONNECT_TIMEOUT, |timeout| timeout.0),
            statement_timeout: source.statement_timeout.map(|timeout| timeout.0),
        }
    }

    /// Opens a connection within `source.connect_timeout`; `Ok(None)`: TLS was asked for
    /// and the server offers none.
    async fn open(&self, opts: OptsBuilder) -> Result<Option<Conn>, DatabaseError> {
        match tokio::time::timeout(self.connect_timeout, Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(Some(conn)),
            Ok(Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))) => Ok(None),
            Ok(Err(error)) => Err(classify(&error, "connecting")),
            Err(_) => Err(DatabaseError::connection(format!(
                "mysql: connecting: no connection within {:?} (source.connect_timeout)",
                self.connect_timeout
            ))),
        }
    }
}

/// TLS verifying the server's certificate and host name against the Mozilla roots (webpki)
/// and `source.tls.ca_file`.
fn ssl_opts(ca_file: Option<&str>) -> SslOpts {
    let roots = ca_file
        .map(|path| vec![std::path::PathBuf::from(path).into()])
        .unwrap_or_default();
    SslOpts::default().with_root_certs(roots)
}

/// The connection settings: `url` (`mysql://` or `mariadb://`) or
/// `host`/`port`/`database`/`user`/`password`, with Landfall's program name.
fn connection_opts(source: &SourceConfig) -> Result<OptsBuilder, DatabaseError> {
    let mut opts = match &source.url {
        Some(url) => {
            let url = url.expose();
            let url = match url.strip_prefix("mariadb://") {
                Some(rest) => format!("mysql://{rest}"),
                None => url.to_owned(),
            };
            // The parser's message may quote the URL, which may hold the password: never shown.
            let parsed = Opts::from_url(&url).map_err(|_| {
                DatabaseError::config("source.url is not a MySQL URL (mysql://user@host:3306/database, or mariadb://)")
            })?;
            OptsBuilder::from_opts(parsed)
        }
        None => OptsBuilder::default().tcp_port(DEFAULT_PORT),
    };
    if let Some(host) = &source.host {
        opts = opts.ip_or_hostname(host.clone());
    }
    if let Some(port) = source.port {
        opts = opts.tcp_port(port);
    }
    if let Some(database) = &source.database {
        opts = opts.db_name(Some(database.clone()));
    }
    if let Some(user) = &source.user {
        opts = opts.user(Some(user.clone()));
    }
    if let Some(password) = &source.password {
        opts = opts.pass(Some(password.expose().to_owned()));
    }
    let program = source.application_name.as_deref().unwrap_or("landfall");
    opts = opts
        // mysql_async would otherwise switch a loopback connection to the server's Unix
        // socket, another path with other permissions than the one configured.
        .prefer_socket(false)
        .connect_attribute("program_name", program);
    if Opts::from(opts.clone()).user().is_none() {
        return Err(DatabaseError::config(
            "no user: set source.user or put it in source.url",
        ));
    }
    Ok(opts)
}

#[async_trait]
impl Dialect for Mysql {
    async fn connect(&self) -> Result<Box<dyn Connection>, DatabaseError> {
        let opts = self.opts.clone()?;
        if let Some(path) = self.ca_file.as_deref().filter(|_| self.tls != TlsChoice::Disable) {
            // Read again at the handshake; a file that is not there is a config error, not
            // a connection to retry.
            std::fs::metadata(path).map_err(|error| {
                DatabaseError::config(format!("source.tls.ca_file `{path}` cannot be read: {error}"))
            })?;
        }
        let plain = opts.clone().ssl_opts(None::<SslOpts>);
        let mut conn = match self.open(opts).await? {
            Some(conn) => conn,
            // `prefer`: the server offers no TLS at all, so plain TCP is what it has.
            None if self.tls == TlsChoice::Prefer => self.open(plain).await?.ok_or_else(|| {
                DatabaseError::connection("mysql: connecting: the server asked for TLS on a plain connection")
            })?,
            None => {
                return Err(DatabaseError::config(
                    "mysql: connecting: the server offers no TLS and source.tls.mode (or the URL's require_ssl) requires it \
                     (set source.tls.mode: prefer or disable, or enable TLS on the server)",
                ));
            }
        };
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|error| classify(&error, "reading the server version"))?;
        let mariadb = version.as_deref().is_some_and(|version| version.contains("MariaDB"));
        let mut setup = vec!["SET NAMES utf8mb4".to_owned(), "SET time_zone = '+00:00'".to_owned()];
        if let Some(timeout) = self.statement_timeout {
            setup.push(if mariadb {
                format!(
                    "SET SESSION max_statement_time = {:.3}",
                    timeout.as_secs_f64().max(0.001)
                )
            } else {
                format!(
                    "SET SESSION max_execution_time = {}",
                    timeout.as_millis().clamp(1, u128::from(u32::MAX))
                )
            });
        }
        setup.push("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ".to_owned());
        setup.push("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY".to_owned());
        for statement in setup {
            conn.query_drop(&statement)
                .await
                .map_err(|error| classify(&error, "starting the read-only transaction"))?;
        }
        // What names the snapshot without extra privileges: the GTID position, read right
        // after the snapshot opened (at or after it). Empty without a binary log: omitted.
        let (kind, gtid) = if mariadb {
            ("gtid_current_pos", "SELECT @@gtid_current_pos")
        } else {
            ("gtid_executed", "SELECT @@global.gtid_executed")
        };
        let snapshot = conn
            .query_first::<Option<String>, _>(gtid)
            .await
            .ok()
            .flatten()
            .flatten()
            .map(|position| position.trim().to_owned())
            .filter(|position| !position.is_empty())
            .map(|position| Snapshot {
                kind,
                text: position,
                xids: None,
            });
        Ok(Box::new(MysqlConnection {
            conn,
            mariadb,
            snapshot,
        }))
    }

    fn chunk_sql(&self, spec: &ReadSpec, columns: &[Column], bounds: &Bounds, limit: u32) -> String {
        let q = |name: &str| format!("{SUBQUERY}.{}", quote_identifier(name, '`'));
        let pairs: Vec<String> = columns
            .iter()
            .map(|column| {
                let kind = Kind::of(&column.type_name);
                format!("{}, {}", string_literal(&column.name), kind.render(&q(&column.name)))
            })
            .collect();
        let keyset = spec.keyset_columns(columns);
        let mut sql = format!("SELECT JSON_OBJECT({}) AS {ROW}", pairs.join(", "));
        for column in &keyset {
            sql.push_str(&format!(", {}", Kind::of(&column.type_name).key_text(&q(&column.name))));
        }
        sql.push_str(&format!(" FROM ({}) AS {SUBQUERY}", spec.relation_sql('`')));
        let mut conditions = Vec::new();
        let mut param = 0;
        let mut next = |column: &Column| {
            let placeholder = format!(":{PARAM}{param}");
            param += 1;
            Kind::of(&column.type_name).cast(&placeholder)
        };
        if let Some(cursor) = keyset.first().filter(|_| spec.cursor.is_some()) {
            if bounds.lower.is_some() {
                conditions.push(format!("{} >= {}", q(&cursor.name), next(cursor)));
            }
            if bounds.upper.is_some() {
                conditions.push(format!("{} < {}", q(&cursor.name), next(cursor)));
            }
        }
        if bounds.after.is_some() && !keyset.is_empty() {
            // Spelled out rather than `(a, b) > (x, y)`: MariaDB reads a row comparison by
            // scanning the index from its start, this form as a range.
            let values: Vec<String> = keyset.iter().map(|column| next(column)).collect();
            let names: Vec<String> = keyset.iter().map(|column| q(&column.name)).collect();
            let mut after = format!("{} > {}", names[names.len() - 1], values[values.len() - 1]);
            for index in (0..names.len() - 1).rev() {
                after = format!(
                    "({name} > {value} OR ({name} = {value} AND {after}))",
                    name = names[index],
                    value = values[index]
                );
            }
            if names.len() > 1 {
                after = format!("{} >= {} AND {after}", names[0], values[0]);
            }
            conditions.push(after);
        }
        let order: Vec<String> = keyset.iter().map(|column| q(&column.name)).collect();
        finish_chunk(&mut sql, &conditions, &order, limit);
        sql
    }
}

/// The prefix of a chunk's named parameters: a name no real column is likely to have.
const PARAM: &str = "landfall_p";

/// A string literal that reads the same whatever `sql_mode` says about backslashes: plain
/// names quoted, anything else as hex.
fn string_literal(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '-')
    {
        format!("'{text}'")
    } else {
        let hex: String = text.bytes().map(|byte| format!("{byte:02X}")).collect();
        format!("_utf8mb4 X'{hex}'")
    }
}

/// A column's type as far as rendering and comparing it goes, named in
/// [`Column::type_name`] by [`type_name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Signed,
    Unsigned,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Float,
    Bit,
    Date,
    Time,
    DateTime,
    Timestamp,
    Binary,
    /// Text, JSON, ENUM, SET, NULL: as the server renders them in JSON.
    Other,
}

impl Kind {
    fn of(type_name: &str) -> Kind {
        let base = type_name.split('(').next().unwrap_or(type_name);
        match base {
            "tinyint" | "smallint" | "mediumint" | "int" | "bigint" => Kind::Signed,
            "tinyint unsigned" | "smallint unsigned" | "mediumint unsigned" | "int unsigned" | "bigint unsigned"
            | "year" => Kind::Unsigned,
            "decimal" => {
                let digits = type_name
                    .trim_start_matches("decimal(")
                    .trim_end_matches(')')
                    .split_once(',')
                    .and_then(|(precision, scale)| Some((precision.parse().ok()?, scale.parse().ok()?)));
                let (precision, scale) = digits.unwrap_or((65, 30));
                Kind::Decimal { precision, scale }
            }
            "float" | "double" => Kind::Float,
            "bit" => Kind::Bit,
            "date" => Kind::Date,
            "time" => Kind::Time,
            "datetime" => Kind::DateTime,
            "timestamp" => Kind::Timestamp,
            "binary" | "geometry" => Kind::Binary,
            _ => Kind::Other,
        }
    }

    /// The expression of the column's value in the row's JSON.
    fn render(self, column: &str) -> String {
        match self {
            Kind::Bit => format!("CAST({column} AS UNSIGNED)"),
            Kind::Date | Kind::Time => format!("CAST({column} AS CHAR)"),
            Kind::DateTime => format!("REPLACE(CAST({column} AS CHAR), ' ', 'T')"),
            Kind::Timestamp => format!("CONCAT(REPLACE(CAST({column} AS CHAR), ' ', 'T'), '+00:00')"),
            // TO_BASE64 breaks lines every 76 characters.
            Kind::Binary => format!("REPLACE(TO_BASE64({column}), CHAR(10 USING utf8mb4), '')"),
            Kind::Signed | Kind::Unsigned | Kind::Decimal { .. } | Kind::Float | Kind::Other => column.to_owned(),
        }
    }

    /// The column's value as text, for resuming after the last row read; [`Kind::cast`]
    /// reads it back.
    fn key_text(self, column: &str) -> String {
        match self {
            Kind::Binary => format!("HEX({column})"),
            Kind::Bit => format!("CAST(CAST({column} AS UNSIGNED) AS CHAR)"),
            _ => format!("CAST({column} AS CHAR)"),
        }
    }

    /// A text parameter as a value of the column's type.
    fn cast(self, placeholder: &str) -> String {
        match self {
            Kind::Signed => format!("CAST({placeholder} AS SIGNED)"),
            Kind::Unsigned | Kind::Bit => format!("CAST({placeholder} AS UNSIGNED)"),
            Kind::Decimal { precision, scale } => format!("CAST({placeholder} AS DECIMAL({precision},{scale}))"),
            Kind::Float => format!("CAST({placeholder} AS DOUBLE)"),
            Kind::Date => format!("CAST({placeholder} AS DATE)"),
            Kind::Time => format!("CAST({placeholder} AS TIME(6))"),
            // A window bound is RFC 3339 in UTC (`...Z`), which the session's time zone is.
            Kind::DateTime | Kind::Timestamp => {
                format!("CAST(TRIM(TRAILING 'Z' FROM {placeholder}) AS DATETIME(6))")
            }
            Kind::Binary => format!("UNHEX({placeholder})"),
            Kind::Other => placeholder.to_owned(),
        }
    }
}

/// The binary character set's number: strings in it are bytes.
const BINARY_CHARSET: u16 = 63;

/// A column's type from the server's description of a result column, as written in a cast
/// where there is one: `bigint unsigned`, `decimal(40,20)`, `datetime(6)`, `binary`, ...
fn type_name(column: &mysql_async::Column) -> String {
    let flags = column.flags();
    let unsigned = if flags.contains(ColumnFlags::UNSIGNED_FLAG) {
        " unsigned"
    } else {
        ""
    };
    let fraction = column.decimals().min(6);
    let binary = column.character_set() == BINARY_CHARSET;
    match column.column_type() {
        ColumnType::MYSQL_TYPE_TINY => format!("tinyint{unsigned}"),
        ColumnType::MYSQL_TYPE_SHORT => format!("smallint{unsigned}"),
        ColumnType::MYSQL_TYPE_INT24 => format!("mediumint{unsigned}"),
        ColumnType::MYSQL_TYPE_LONG => format!("int{unsigned}"),
        ColumnType::MYSQL_TYPE_LONGLONG => format!("bigint{unsigned}"),
        ColumnType::MYSQL_TYPE_YEAR => "year".to_owned(),
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            // The display length counts the digits, a point and a sign.
            let scale = u32::from(column.decimals().min(38));
            let signs = u32::from(scale > 0) + u32::from(unsigned.is_empty());
            let precision = column.column_length().saturating_sub(signs).clamp(scale.max(1), 65);
            format!("decimal({precision},{scale})")
        }
        ColumnType::MYSQL_TYPE_FLOAT => "float".to_owned(),
        ColumnType::MYSQL_TYPE_DOUBLE => "double".to_owned(),
        ColumnType::MYSQL_TYPE_BIT => "bit".to_owned(),
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => "date".to_owned(),
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => format!("time({fraction})"),
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => format!("datetime({fraction})"),
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => format!("timestamp({fraction})"),
        // MySQL's JSON is sent in the binary character set; MariaDB's is LONGTEXT.
        ColumnType::MYSQL_TYPE_JSON => "json".to_owned(),
        ColumnType::MYSQL_TYPE_GEOMETRY => "geometry".to_owned(),
        ColumnType::MYSQL_TYPE_NULL => "null".to_owned(),
        _ if flags.contains(ColumnFlags::ENUM_FLAG) => "enum".to_owned(),
        _ if flags.contains(ColumnFlags::SET_FLAG) => "set".to_owned(),
        _ if binary => "binary".to_owned(),
        _ => "char".to_owned(),
    }
}

/// Every column of the tables and views the login sees (`information_schema` lists only
/// those it holds a privilege on), outside the system schemas. Columns: schema, table, table
/// type, column, type as written, `DATA_TYPE`, `IS_NULLABLE`, position in the primary key,
/// whether it holds JSON (`{json_check}`). The caller adds the schema filter and the order.
const CATALOG_SQL: &str = "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, t.TABLE_TYPE, c.COLUMN_NAME, c.COLUMN_TYPE, \
    c.DATA_TYPE, c.IS_NULLABLE, k.ORDINAL_POSITION, {json_check} \
    FROM information_schema.COLUMNS c \
    JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
    LEFT JOIN information_schema.KEY_COLUMN_USAGE k ON k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA \
    AND k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME \
    AND k.CONSTRAINT_NAME = 'PRIMARY' \
    WHERE t.TABLE_TYPE IN ('BASE TABLE', 'VIEW', 'SYSTEM VERSIONED') \
    AND c.TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')";

struct MysqlConnection {
    conn: Conn,
    /// MariaDB rather than MySQL (`VERSION()` says so).
    mariadb: bool,
    snapshot: Option<Snapshot>,
}

#[async_trait]
impl Connection for MysqlConnection {
    async fn describe(&mut self, spec: &ReadSpec) -> Result<Vec<Column>, DatabaseError> {
        let statement = self
            .conn
            .prep(format!(
                "SELECT * FROM ({}) AS {SUBQUERY} LIMIT 0",
                spec.relation_sql('`')
            ))
            .await
            .map_err(|error| classify(&error, &format!("reading the columns of {}", spec.endpoint())))?;
        let columns = statement
            .columns()
            .iter()
            .map(|column| Column {
                name: column.name_str().into_owned(),
                type_name: type_name(column),
            })
            .collect();
        self.conn
            .close(statement)
            .await
            .map_err(|error| classify(&error, "closing a statement"))?;
        Ok(columns)
    }

    async fn discover(&mut self, schemas: &[String]) -> Result<Vec<CatalogColumn>, DatabaseError> {
        // MariaDB's JSON is LONGTEXT with a `json_valid` check, and lands embedded as JSON.
        let json_check = if self.mariadb {
            "EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS j WHERE j.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA \
             AND j.TABLE_NAME = c.TABLE_NAME AND j.CHECK_CLAUSE = CONCAT('json_valid(`', c.COLUMN_NAME, '`)'))"
        } else {
            "0"
        };
        let mut sql = CATALOG_SQL.replace("{json_check}", json_check);
        if !schemas.is_empty() {
            sql.push_str(&format!(
                " AND c.TABLE_SCHEMA IN ({})",
                vec!["?"; schemas.len()].join(", ")
            ));
        }
        sql.push_str(" ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION");
        let params: Vec<Value> = schemas.iter().map(|schema| Value::from(schema.as_str())).collect();
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Positional(params)
        };
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(sql, params)
            .await
            .map_err(|error| classify(&error, "reading the catalog"))?;
        rows.into_iter()
            .map(|row| {
                let mut values = row.unwrap_raw().into_iter().map(|value| value.unwrap_or(Value::NULL));
                let mut next = || -> Result<String, DatabaseError> {
                    text(values.next().unwrap_or(Value::NULL))?.ok_or_else(|| {
                        DatabaseError::new(ErrorCode::ParsingError, false, "mysql: the catalog holds a NULL name")
                    })
                };
                let (schema, table, table_type, column, type_name, data_type, nullable) =
                    (next()?, next()?, next()?, next()?, next()?, next()?, next()?);
                let mut number = || -> Result<Option<i64>, DatabaseError> {
                    text(values.next().unwrap_or(Value::NULL))?
                        .map(|number| number.parse::<i64>())
                        .transpose()
                        .map_err(|_| {
                            DatabaseError::new(
                                ErrorCode::ParsingError,
                                false,
                                "mysql: the catalog sent a number that is not one",
                            )
                        })
                };
                let key_position = number()?;
                let json = number()? == Some(1);
                Ok(CatalogColumn {
                    schema,
                    table,
                    kind: if table_type == "VIEW" { "view" } else { "table" }.to_owned(),
                    column,
                    class: if json {
                        TypeClass::Json
                    } else {
                        TypeClass::of_mysql(&data_type)
                    },
                    type_name,
                    nullable: nullable == "YES",
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
        let params = if params.is_empty() {
            Params::Empty
        } else {
            Params::Named(
                params
                    .iter()
                    .enumerate()
                    .map(|(index, value)| (format!("{PARAM}{index}").into_bytes(), Value::from(value.as_str())))
                    .collect::<HashMap<_, _>>(),
            )
        };
        let result = self
            .conn
            .exec_iter(sql, params)
            .await
            .map_err(|error| classify(&error, "reading a chunk"))?;
        let Some(rows) = result
            .stream_and_drop::<mysql_async::Row>()
            .await
            .map_err(|error| classify(&error, "reading a chunk"))?
        else {
            return Ok(futures::stream::empty().boxed());
        };
        Ok(rows
            .map(|row| {
                let row = row.map_err(|error| classify(&error, "reading a chunk"))?;
                let mut values = row.unwrap_raw().into_iter().map(|value| value.unwrap_or(Value::NULL));
                let json = text(values.next().unwrap_or(Value::NULL))?.ok_or_else(|| {
                    DatabaseError::new(
                        ErrorCode::ParsingError,
                        false,
                        "mysql: the server rendered a row as NULL: JSON_OBJECT gives NULL for a row larger than \
                         max_allowed_packet; raise the server's max_allowed_packet or select fewer columns",
                    )
                })?;
                let keys = values.map(text).collect::<Result<Vec<_>, _>>()?;
                Ok(Row { json, keys })
            })
            .boxed())
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.snapshot.clone()
    }
}

/// A value the statement selected as text.
fn text(value: Value) -> Result<Option<String>, DatabaseError> {
    match value {
        Value::NULL => Ok(None),
        Value::Bytes(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            DatabaseError::new(
                ErrorCode::ParsingError,
                false,
                "mysql: the server sent text that is not UTF-8",
            )
        }),
        other => Ok(Some(other.as_sql(true).trim_matches('\'').to_owned())),
    }
}

/// What a MySQL or MariaDB error means for the run: its code, whether a rerun (or a new
/// connection) may help, and a message naming what failed. The server's messages name the
/// user, table, column or privilege, never a password.
fn classify(error: &mysql_async::Error, doing: &str) -> DatabaseError {
    let server = match error {
        mysql_async::Error::Server(server) => server,
        mysql_async::Error::Url(_) => {
            return DatabaseError::config(format!("mysql: {doing}: source.url is not a valid MySQL URL"));
        }
        // mysql_async reads `?` and `:name` outside quotes as parameters of the statement.
        mysql_async::Error::Driver(
            DriverError::Params(_)
            | DriverError::MixedParams
            | DriverError::StmtParamsMismatch { .. }
            | DriverError::StmtParamsNumberExceedsLimit { .. },
        ) => {
            return DatabaseError::config(format!(
                "mysql: {doing}: {error}; a query must not hold `?` or `:name` outside quotes \
                 (the driver reads them as parameters)"
            ));
        }
        mysql_async::Error::Driver(
            DriverError::UnknownAuthPlugin { .. }
            | DriverError::MysqlOldPasswordDisabled
            | DriverError::CleartextPluginDisabled,
        ) => {
            return DatabaseError::new(
                ErrorCode::AuthFailed,
                false,
                format!("mysql: {doing}: {error}; give the login a supported authentication plugin"),
            );
        }
        other => {
            if let Some(failure) = super::tls::certificate_failure(other, &format!("mysql: {doing}")) {
                return failure;
            }
            // No answer from the server: refused, reset, timed out, closed, or TLS that failed.
            return DatabaseError::connection(format!("mysql: {doing}: {other}"));
        }
    };
    let message = format!(
        "mysql: {doing}: {} (error {}, SQLSTATE {})",
        server.message, server.code, server.state
    );
    match server.code {
        // Access denied: a wrong password or user (1045), a database (1044).
        1044 | 1045 | 1698 => DatabaseError::new(ErrorCode::AuthFailed, false, message),
        // A missing grant: on a table (1142), a column (1143), a routine (1370), a global
        // privilege (1227).
        1142 | 1143 | 1227 | 1370 => DatabaseError::new(
            ErrorCode::AuthFailed,
            false,
            format!("{message}; grant the login that privilege (e.g. GRANT SELECT ON db.table TO the login)"),
        ),
        // A statement that would write, refused in the READ ONLY transaction (1792), or by a
        // read-only server (1290).
        1792 | 1290 => DatabaseError::new(
            ErrorCode::InvalidRequest,
            false,
            format!("{message}; database streams run in a READ ONLY transaction and never write"),
        ),
        // max_statement_time (MariaDB) or max_execution_time (MySQL) exceeded.
        1969 | 3024 => DatabaseError::new(
            ErrorCode::Timeout,
            true,
            format!(
                "{message}; raise source.statement_timeout or lower the stream's chunk_size \
                 (a statement waiting for a lock that another session holds counts too)"
            ),
        ),
        // Lost or killed connections, a server shutting down, too many connections, a
        // killed query, lock waits and deadlocks: a new connection resumes after the last
        // row read.
        1040 | 1053 | 1077 | 1078 | 1079 | 1080 | 1152 | 1153 | 1154 | 1156 | 1158 | 1159 | 1160 | 1161 | 1184
        | 1205 | 1213 | 1317 | 1927 | 2006 | 2013 | 4031 => DatabaseError::connection(message),
        // Unknown database (1049), table (1146), column (1054); syntax (1064, 1149); unknown
        // function (1305); and the rest of SQLSTATE class 42 (syntax or access rule).
        1049 | 1054 | 1064 | 1146 | 1149 | 1305 => DatabaseError::config(message),
        _ if server.state.starts_with("42") || server.state.starts_with("3D") => DatabaseError::config(message),
        _ if server.state.starts_with("08") => DatabaseError::connection(message),
        _ => DatabaseError::new(ErrorCode::ServerError, false, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_stream;

    fn columns(types: &[(&str, &str)]) -> Vec<Column> {
        types
            .iter()
            .map(|(name, type_name)| Column {
                name: (*name).into(),
                type_name: (*type_name).into(),
            })
            .collect()
    }

    #[test]
    fn a_chunk_renders_each_type_and_resumes_after_the_last_row_as_a_range() {
        let stream = test_stream(
            r#", "table": "shop.orders", "incremental": {"cursor_field": "updated_at", "start": "2024-01-01T00:00:00Z"}"#,
        );
        let spec = ReadSpec::new(&stream);
        let columns = columns(&[
            ("id", "bigint unsigned"),
            ("updated_at", "timestamp(6)"),
            ("blob", "binary"),
            ("we'ird", "char"),
        ]);
        let bounds = Bounds {
            lower: Some("2024-01-01T00:00:00Z".into()),
            upper: None,
            after: Some(vec!["2024-01-01 00:00:01.000000".into(), "7".into()]),
            xid_horizon: None,
        };
        let mysql = Mysql {
            opts: Err(DatabaseError::config("unused")),
            tls: TlsChoice::Disable,
            ca_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: None,
        };
        let sql = mysql.chunk_sql(&spec, &columns, &bounds, 500);
        assert!(sql.starts_with("SELECT JSON_OBJECT('id', _landfall_source.`id`, 'updated_at', CONCAT(REPLACE(CAST(_landfall_source.`updated_at` AS CHAR), ' ', 'T'), '+00:00'), 'blob', REPLACE(TO_BASE64(_landfall_source.`blob`), CHAR(10 USING utf8mb4), ''), _utf8mb4 X'776527697264', _landfall_source.`we'ird`) AS _landfall_row, CAST(_landfall_source.`updated_at` AS CHAR), CAST(_landfall_source.`id` AS CHAR) FROM (SELECT * FROM `shop`.`orders`) AS _landfall_source WHERE "), "{sql}");
        let cursor = "CAST(TRIM(TRAILING 'Z' FROM :landfall_p1) AS DATETIME(6))";
        assert!(
            sql.contains(&format!(
                "_landfall_source.`updated_at` >= CAST(TRIM(TRAILING 'Z' FROM :landfall_p0) AS DATETIME(6)) AND _landfall_source.`updated_at` >= {cursor} AND (_landfall_source.`updated_at` > {cursor} OR (_landfall_source.`updated_at` = {cursor} AND _landfall_source.`id` > CAST(:landfall_p2 AS UNSIGNED)))"
            )),
            "{sql}"
        );
        assert!(
            sql.ends_with(" ORDER BY _landfall_source.`updated_at`, _landfall_source.`id` LIMIT 500"),
            "{sql}"
        );
    }

    #[test]
    fn type_names_round_trip_to_their_kinds() {
        assert_eq!(
            Kind::of("decimal(40,20)"),
            Kind::Decimal {
                precision: 40,
                scale: 20
            }
        );
        assert_eq!(Kind::of("bigint unsigned"), Kind::Unsigned);
        assert_eq!(Kind::of("datetime(3)"), Kind::DateTime);
        assert_eq!(Kind::of("enum"), Kind::Other);
        assert_eq!(
            Kind::Decimal {
                precision: 40,
                scale: 20
            }
            .cast("?"),
            "CAST(? AS DECIMAL(40,20))"
        );
    }

    #[test]
    fn server_errors_are_classified_without_the_password() {
        let server = |code, state: &str, message: &str| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: message.into(),
                state: state.into(),
            })
        };
        let denied = classify(
            &server(
                1045,
                "28000",
                "Access denied for user 'x'@'localhost' (using password: YES)",
            ),
            "connecting",
        );
        assert_eq!(denied.code, ErrorCode::AuthFailed);
        let grant = classify(
            &server(
                1142,
                "42000",
                "SELECT command denied to user 'x'@'localhost' for table `db`.`t`",
            ),
            "reading",
        );
        assert_eq!(grant.code, ErrorCode::AuthFailed);
        assert!(grant.message.contains("SELECT command denied"), "{grant}");
        assert!(classify(&server(1927, "70100", "Connection was killed"), "reading").reconnect);
        assert!(classify(&server(1213, "40001", "Deadlock found"), "reading").reconnect);
        assert_eq!(
            classify(&server(3024, "HY000", "timeout"), "reading").code,
            ErrorCode::Timeout
        );
        assert_eq!(
            classify(&server(1146, "42S02", "no table"), "reading").code,
            ErrorCode::ConfigError
        );
        let write = classify(
            &server(1792, "25006", "Cannot execute statement in a READ ONLY transaction"),
            "reading",
        );
        assert_eq!(write.code, ErrorCode::InvalidRequest);
        assert!(write.message.contains("READ ONLY"));
    }
}
