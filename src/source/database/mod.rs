//! Database sources (`source.type: postgres | mysql`): a stream reads a table or a
//! read-only query in keyset chunks, each one statement ordered by the cursor column (when
//! incremental) and the primary key, resuming after the last row read, never with `OFFSET`.
//! The server renders each row as JSON (`row_to_json` on PostgreSQL, `JSON_OBJECT` on
//! MySQL), so `_raw` is the server's exact, deterministic text (columns in select order)
//! and numbers keep every digit; `docs/databases.md` has the type mapping.
//!
//! The loop here is the same for every database ([`Dialect`] is what differs): rows go to
//! the writer in pages of at most [`PAGE_ROWS`] rows or [`PAGE_BYTES`] bytes, so memory
//! does not grow with `chunk_size`; a window is done when a chunk comes back short. A lost
//! connection (a server restart, a network error) is retried with a new connection from
//! the last row sent, as `source.retry` allows, so nothing is read twice or lost.

pub mod discover;
pub mod mysql;
pub mod postgres;
mod sql;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::config::{ConnectorConfig, StreamConfig};
use crate::cursor::{Cursor, CursorFormat};
use crate::error::{ErrorCode, Stage};
use crate::http::config::SourceKind;
use crate::source::{
    Item, ItemSender, Page, ReadError, ReadOutcome, ReadPlan, ReadStats, RecordMeta, RecordReader, Source,
};

pub use sql::{Column, ReadSpec};

/// A page sent to the writer holds at most this many rows...
pub const PAGE_ROWS: usize = 5_000;
/// ...or about this many bytes of row JSON.
pub const PAGE_BYTES: usize = 2 << 20;
/// Rows per chunk when `chunk_size` is not set.
pub const DEFAULT_CHUNK_SIZE: u32 = 10_000;
/// How long connecting may take when `source.connect_timeout` is not set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a database read failed: a code, whether a rerun may help, and a message that names
/// what failed (a privilege, a table, a column) and never a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DatabaseError {
    pub code: ErrorCode,
    /// A rerun (or, inside a run, a new connection) may succeed.
    pub retryable: bool,
    /// The connection broke: a new one may continue where the read stopped.
    pub reconnect: bool,
    pub stage: Stage,
    pub message: String,
}

impl DatabaseError {
    pub fn new(code: ErrorCode, retryable: bool, message: impl Into<String>) -> Self {
        Self {
            code,
            retryable,
            reconnect: false,
            stage: Stage::Fetch,
            message: message.into(),
        }
    }

    /// A broken connection: retried with a new one.
    pub fn connection(message: impl Into<String>) -> Self {
        Self {
            reconnect: true,
            ..Self::new(ErrorCode::NetworkError, true, message)
        }
    }

    /// A config the server refuses (an unknown table or column, a query that does not parse).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ConfigError, false, message)
    }
}

impl crate::error::Classify for DatabaseError {
    fn code(&self) -> ErrorCode {
        self.code
    }

    fn retryable(&self) -> bool {
        self.retryable
    }
}

/// One row of a chunk: its JSON text and its keyset values as text (cursor first, then the
/// primary key columns).
pub struct Row {
    pub json: String,
    pub keys: Vec<Option<String>>,
}

/// An open connection inside the stream's read-only transaction.
#[async_trait]
pub trait Connection: Send {
    /// The columns the stream's table or query returns, in order.
    async fn describe(&mut self, spec: &ReadSpec) -> Result<Vec<Column>, DatabaseError>;

    /// Runs one chunk's statement with its text parameters; rows arrive as the server sends
    /// them.
    async fn chunk<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [String],
    ) -> Result<BoxStream<'a, Result<Row, DatabaseError>>, DatabaseError>;

    /// The catalog (`landfall discover`): a row per column of every table and view of
    /// `schemas` (empty: every schema but the system ones), ordered by schema, table and
    /// column position.
    async fn discover(&mut self, schemas: &[String]) -> Result<Vec<discover::CatalogColumn>, DatabaseError>;

    /// The consistent snapshot the transaction reads, when the server names it cheaply.
    fn snapshot(&self) -> Option<Snapshot> {
        None
    }
}

/// The consistent snapshot a connection's transaction reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// What names it: `pg_current_snapshot`, `gtid_current_pos` (MariaDB) or
    /// `gtid_executed` (MySQL).
    pub kind: &'static str,
    /// How the server names it: PostgreSQL's `pg_current_snapshot()` (`xmin:xmax:xip,..`,
    /// 64-bit transaction ids), MariaDB's `@@gtid_current_pos`, MySQL's `@@gtid_executed`.
    pub text: String,
    /// PostgreSQL: the snapshot's xmin (the oldest transaction still in progress: every
    /// earlier one is finished) and xmax (the first not yet assigned), full 64-bit ids.
    pub xids: Option<(u64, u64)>,
}

/// What differs between databases: connecting and the SQL of a chunk.
#[async_trait]
pub trait Dialect: Send + Sync {
    /// Connects, applies the session settings (UTC, ISO formats, statement timeout) and
    /// begins a `REPEATABLE READ READ ONLY` transaction.
    async fn connect(&self) -> Result<Box<dyn Connection>, DatabaseError>;

    /// The statement reading one chunk: `columns` of `spec` rendered as one JSON text, then
    /// the keyset columns as text, filtered by the window and after the last row read,
    /// ordered by the keyset, `limit` rows.
    fn chunk_sql(&self, spec: &ReadSpec, columns: &[Column], bounds: &sql::Bounds, limit: u32) -> String;
}

/// A database stream.
pub struct DatabaseSource {
    pub config: Arc<ConnectorConfig>,
    pub stream: StreamConfig,
    pub events: crate::observe::events::Events,
    pub cancel: CancellationToken,
}

impl DatabaseSource {
    fn dialect(&self) -> Box<dyn Dialect> {
        dialect(&self.config.source)
    }
}

/// The dialect of a database `source`.
fn dialect(source: &crate::http::config::SourceConfig) -> Box<dyn Dialect> {
    match source.kind {
        SourceKind::Postgres => Box::new(postgres::Postgres::new(source)),
        SourceKind::Mysql => Box::new(mysql::Mysql::new(source)),
        SourceKind::Rest => {
            // Only database configs build a DatabaseSource (StreamJob::source) or discover.
            Box::new(postgres::Postgres::new(source))
        }
    }
}

impl DatabaseSource {
    /// `landfall check`'s probe of the stream: connects (once, no retry), reads the columns,
    /// checks the keyset against them and reads one row, which proves the `SELECT` grant.
    /// Returns what it found.
    pub async fn probe(&self) -> Result<String, DatabaseError> {
        let dialect = self.dialect();
        let spec = ReadSpec::new(&self.stream);
        let mut connection = dialect.connect().await?;
        let columns = connection.describe(&spec).await?;
        spec.check_columns(&columns)?;
        let statement = dialect.chunk_sql(&spec, &columns, &sql::Bounds::default(), 1);
        let mut rows = connection.chunk(&statement, &[]).await?;
        let mut read = 0;
        while let Some(row) = rows.next().await {
            row?;
            read += 1;
        }
        Ok(format!(
            "{}: {} columns ({}), ordered by {}; {read} row read",
            spec.endpoint(),
            columns.len(),
            columns
                .iter()
                .map(|column| column.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            spec.keyset.join(", ")
        ))
    }
}

impl Source for DatabaseSource {
    fn endpoint(&self) -> Result<String, ReadError> {
        Ok(ReadSpec::new(&self.stream).endpoint())
    }

    fn read(self: Box<Self>, plan: ReadPlan, out: ItemSender) -> BoxFuture<'static, ReadOutcome> {
        Box::pin(async move {
            let mut stats = ReadStats {
                endpoint: ReadSpec::new(&self.stream).endpoint(),
                ..ReadStats::default()
            };
            let error = self.read_windows(plan, &out, &mut stats).await.err().flatten();
            (stats, error)
        })
    }
}

impl DatabaseSource {
    /// Reads every window; `Err(None)`: the writer went away.
    async fn read_windows(
        &self,
        plan: ReadPlan,
        out: &ItemSender,
        stats: &mut ReadStats,
    ) -> Result<(), Option<ReadError>> {
        let dialect = self.dialect();
        let spec = ReadSpec::new(&self.stream);
        let format = self
            .stream
            .incremental
            .as_ref()
            .map(|incremental| incremental.cursor_format())
            .unwrap_or(CursorFormat::Text);
        let cursor = self
            .stream
            .incremental
            .as_ref()
            .and_then(|incremental| incremental.cursor_column())
            .map(|column| (column, &format));
        let reader = RecordReader::new(&self.stream, cursor, None, &plan.validator);
        let chunk_size = self.stream.chunk_size.map_or(DEFAULT_CHUNK_SIZE, |size| size.get());
        let retry = &self.config.source.retry;
        let mut attempts = 0u32;
        let mut delay = retry.initial_delay.0;

        let (mut connection, columns) = loop {
            let mut connection = self.connect(dialect.as_ref(), &mut attempts, &mut delay, stats).await?;
            match connection.describe(&spec).await {
                Ok(columns) => break (connection, columns),
                Err(error) if error.reconnect => self.wait_to_retry(error, &mut attempts, &mut delay, stats).await?,
                Err(error) => return Err(Some(error.into())),
            }
        };
        spec.check_columns(&columns).map_err(|error| Some(error.into()))?;
        let mut snapshot = self.opened(connection.as_ref(), &spec, stats)?;

        for window in plan.windows {
            let mut after: Option<Vec<String>> = None;
            loop {
                if self.cancel.is_cancelled() {
                    return Err(Some(ReadError::Cancelled));
                }
                let mut bounds = sql::Bounds::new(&window, &format, after.clone());
                if spec.xmin {
                    // The whole stream is one window from the checkpoint; the widening is
                    // relative to the snapshot that reads the chunk.
                    bounds.upper = None;
                    bounds.xid_horizon = snapshot
                        .as_ref()
                        .and_then(|snapshot| snapshot.xids)
                        .map(|(_, xmax)| xmax);
                }
                let statement = dialect.chunk_sql(&spec, &columns, &bounds, chunk_size);
                stats.requests += 1;
                let read = self
                    .read_chunk(connection.as_mut(), &statement, &bounds.params(), &reader, out, stats)
                    .await;
                let (rows, last, error) = read?;
                if let Some(last) = last {
                    after = Some(last);
                }
                match error {
                    None => {
                        attempts = 0;
                        delay = retry.initial_delay.0;
                        if rows < u64::from(chunk_size) {
                            break;
                        }
                    }
                    Some(error) if error.reconnect => {
                        // The rows before the break were sent: read on after the last one.
                        // `request_retried` (below) says so.
                        self.wait_to_retry(error, &mut attempts, &mut delay, stats).await?;
                        connection = self.connect(dialect.as_ref(), &mut attempts, &mut delay, stats).await?;
                        snapshot = self.opened(connection.as_ref(), &spec, stats)?;
                    }
                    Some(error) => return Err(Some(error.into())),
                }
            }
            if let Some(xmin) = stats.xmin_checkpoint
                && out
                    .send(Item::Checkpoint(Cursor::Integer(i128::from(xmin))))
                    .await
                    .is_err()
            {
                return Err(None);
            }
            if out.send(Item::WindowDone(window)).await.is_err() {
                return Err(None);
            }
        }
        Ok(())
    }

    /// `connection`'s transaction began: returns its snapshot. The first one names the
    /// stream's snapshot in the manifest; with `mode: xmin`, the checkpoint is the xmin of the
    /// earliest (a reconnect's snapshot is later, and a transaction in progress for the first
    /// one may have changed rows read before the break).
    fn opened(
        &self,
        connection: &dyn Connection,
        spec: &ReadSpec,
        stats: &mut ReadStats,
    ) -> Result<Option<Snapshot>, Option<ReadError>> {
        let snapshot = connection.snapshot();
        if let Some(snapshot) = &snapshot {
            tracing::debug!(stream = %self.stream.name, snapshot = %snapshot.text, "reading in one snapshot");
            stats
                .snapshot
                .get_or_insert_with(|| (snapshot.kind.to_owned(), snapshot.text.clone()));
        }
        if spec.xmin {
            let Some((xmin, _)) = snapshot.as_ref().and_then(|snapshot| snapshot.xids) else {
                return Err(Some(
                    DatabaseError::config(
                        "incremental.mode: xmin needs the snapshot's transaction ids (PostgreSQL 13 or later)",
                    )
                    .into(),
                ));
            };
            stats.xmin_checkpoint = Some(stats.xmin_checkpoint.map_or(xmin, |earlier| earlier.min(xmin)));
        }
        Ok(snapshot)
    }

    /// Connects, retrying a connection that fails as `source.retry` allows.
    async fn connect(
        &self,
        dialect: &dyn Dialect,
        attempts: &mut u32,
        delay: &mut Duration,
        stats: &mut ReadStats,
    ) -> Result<Box<dyn Connection>, Option<ReadError>> {
        loop {
            match dialect.connect().await {
                Ok(connection) => return Ok(connection),
                Err(error) if error.reconnect => {
                    self.wait_to_retry(error, attempts, delay, stats).await?;
                }
                Err(error) => return Err(Some(error.into())),
            }
        }
    }

    /// Waits before another attempt (counted in the manifest's `retries`), or gives up with
    /// `error` when `source.retry` allows no more.
    async fn wait_to_retry(
        &self,
        error: DatabaseError,
        attempts: &mut u32,
        delay: &mut Duration,
        stats: &mut ReadStats,
    ) -> Result<(), Option<ReadError>> {
        let retry = &self.config.source.retry;
        *attempts += 1;
        if *attempts >= retry.max_attempts.get() {
            let message = format!("{} (after {} attempts)", error.message, attempts);
            return Err(Some(DatabaseError { message, ..error }.into()));
        }
        stats.retries += 1;
        self.events.request_retried(
            &self.stream.name,
            stats.pages + 1,
            "",
            *attempts,
            delay.as_millis() as u64,
            error.code.as_str(),
            &error.message,
        );
        tokio::select! {
            _ = tokio::time::sleep(*delay) => {}
            _ = self.cancel.cancelled() => return Err(Some(ReadError::Cancelled)),
        }
        *delay = delay.mul_f64(retry.multiplier).min(retry.max_delay.0);
        Ok(())
    }

    /// Reads one chunk, sending its rows in pages. Returns the rows read, the keyset values
    /// of the last row sent, and the error that broke the chunk (its rows before the break
    /// were sent).
    async fn read_chunk(
        &self,
        connection: &mut dyn Connection,
        statement: &str,
        params: &[String],
        reader: &RecordReader<'_>,
        out: &ItemSender,
        stats: &mut ReadStats,
    ) -> Result<(u64, Option<Vec<String>>, Option<DatabaseError>), Option<ReadError>> {
        let mut rows = match connection.chunk(statement, params).await {
            Ok(rows) => rows,
            Err(error) => return Ok((0, None, Some(error))),
        };
        let mut page = PageBuilder::default();
        let mut count = 0u64;
        let mut last = None;
        let mut failure = None;
        while let Some(row) = rows.next().await {
            let row = match row {
                Ok(row) => row,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            count += 1;
            page.push(&row.json);
            let Some(keys) = row.keys.into_iter().collect::<Option<Vec<String>>>() else {
                return Err(Some(
                    DatabaseError::config(format!(
                        "a row of {} has NULL in a primary key or cursor column; chunks are ordered by them, \
                         so they must not be NULL",
                        stats.endpoint
                    ))
                    .into(),
                ));
            };
            last = Some(keys);
            if page.is_full() {
                self.send(std::mem::take(&mut page), reader, out, stats).await?;
            }
        }
        drop(rows);
        if !page.is_empty() {
            self.send(page, reader, out, stats).await?;
        }
        Ok((count, last, failure))
    }

    /// Sends a page of rows to the writer.
    async fn send(
        &self,
        page: PageBuilder,
        reader: &RecordReader<'_>,
        out: &ItemSender,
        stats: &mut ReadStats,
    ) -> Result<(), Option<ReadError>> {
        if self.cancel.is_cancelled() {
            return Err(Some(ReadError::Cancelled));
        }
        stats.pages += 1;
        let body = Bytes::from(page.body);
        let mut records = Vec::with_capacity(page.ranges.len());
        for range in page.ranges {
            let text = std::str::from_utf8(&body[range.clone()]).map_err(|_| {
                Some(ReadError::from(DatabaseError::new(
                    ErrorCode::ParsingError,
                    false,
                    "the server sent a row that is not UTF-8",
                )))
            })?;
            let raw: &RawValue = serde_json::from_str(text).map_err(|error| {
                Some(ReadError::from(DatabaseError::new(
                    ErrorCode::ParsingError,
                    false,
                    format!("the server sent a row that is not JSON: {error}"),
                )))
            })?;
            let meta: RecordMeta = reader.meta(raw, range, &mut stats.schema);
            records.push(meta);
        }
        stats.rows_read += records.len() as u64;
        let page = Page {
            number: stats.pages,
            endpoint: stats.endpoint.clone(),
            extracted_at: crate::clock::now_rfc3339(),
            body,
            records,
            parent_key: None,
        };
        out.send(Item::Page(page)).await.map_err(|_| None)
    }
}

/// Rows gathered for one page: their JSON, one per line.
#[derive(Default)]
struct PageBuilder {
    body: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl PageBuilder {
    fn push(&mut self, json: &str) {
        let start = self.body.len();
        self.body.extend_from_slice(json.as_bytes());
        self.ranges.push(start..self.body.len());
        self.body.push(b'\n');
    }

    fn is_full(&self) -> bool {
        self.ranges.len() >= PAGE_ROWS || self.body.len() >= PAGE_BYTES
    }

    fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}
