//! One stream's extraction: a fetcher that pages through the API and a writer that lands
//! the records, joined by a bounded channel so fetching and writing overlap while memory
//! stays flat. The checkpoint moves only after the part holding its records is stored.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::request::{self, Bounds, RequestBuilder};
use crate::config::{ConnectorConfig, StreamConfig};
use crate::cursor;
use crate::envelope::{self, EnvelopeTemplate, PageFields};
use crate::error::{Classify, ErrorCode, ErrorRecord};
use crate::events::Events;
use crate::http::{HttpClient, HttpError, RequestContext};
use crate::landing::part::{PartDirs, PartLimits, PartWriter, StoredPart};
use crate::landing::{Landing, LandingError, layout};
use crate::manifest::{Status, StreamReport};
use crate::pagination::{PageView, PaginationError, Paginator};
use crate::records;
use crate::state::{StateError, StateStore};

/// Pages buffered between fetcher and writer.
const PAGE_BUFFER: usize = 4;

/// Why a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("page {page} of {endpoint} (request {request_id}): {source}")]
    Records {
        page: u64,
        endpoint: String,
        request_id: String,
        source: records::RecordsError,
    },
    #[error(transparent)]
    Pagination(#[from] PaginationError),
    #[error(transparent)]
    Landing(#[from] LandingError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("invalid stream URL: {0}")]
    Url(#[from] url::ParseError),
}

impl StreamError {
    /// The stage the stream failed in.
    pub fn stage(&self) -> &'static str {
        match self {
            StreamError::Http(_) | StreamError::Url(_) => "fetch",
            StreamError::Records { .. } => "parse",
            StreamError::Pagination(_) => "paginate",
            StreamError::Landing(_) => "store",
            StreamError::State(_) => "checkpoint",
        }
    }
}

impl Classify for StreamError {
    fn code(&self) -> ErrorCode {
        match self {
            StreamError::Http(error) => error.code(),
            StreamError::Records { .. } => ErrorCode::ParsingError,
            StreamError::Pagination(error) => error.code(),
            StreamError::Landing(error) => error.code(),
            StreamError::State(error) => error.code(),
            StreamError::Url(_) => ErrorCode::ConfigError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            StreamError::Http(error) => error.retryable(),
            StreamError::Records { .. } => true,
            StreamError::Pagination(error) => error.retryable(),
            StreamError::Landing(error) => error.retryable(),
            StreamError::State(error) => error.retryable(),
            StreamError::Url(_) => false,
        }
    }
}

/// Everything a stream's extraction needs.
#[derive(Clone)]
pub struct StreamJob {
    pub config: Arc<ConnectorConfig>,
    pub stream: StreamConfig,
    pub client: HttpClient,
    pub landing: Landing,
    pub state: StateStore,
    pub events: Events,
    pub run_id: String,
    pub extracted_date: String,
    /// Explicit window from `--start` / `--end`.
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub full_refresh: bool,
}

/// A fetched page on its way to the writer.
struct FetchedPage {
    number: u64,
    endpoint: String,
    extracted_at: String,
    body: Bytes,
    records: Vec<RecordMeta>,
}

struct RecordMeta {
    range: Range<usize>,
    id: Option<String>,
    cursor: Option<String>,
}

#[derive(Default)]
struct FetchStats {
    pages: u64,
    requests: u64,
    retries: u64,
    rows_read: u64,
    endpoint: String,
}

#[derive(Default)]
struct WriteStats {
    files: Vec<StoredPart>,
    rows_written: u64,
    /// Largest cursor among stored records.
    stored_cursor: Option<String>,
}

impl StreamJob {
    /// Runs the stream to completion or failure and reports what happened.
    pub async fn run(self) -> StreamReport {
        let incremental = self.stream.incremental.clone();
        let checkpoint = match &incremental {
            Some(_) => match self.state.load(&self.stream.name).await {
                Ok(state) => state.and_then(|state| state.cursor),
                Err(error) => return self.failed_before_start(StreamError::State(error)),
            },
            None => None,
        };
        let cursor_start = incremental.as_ref().map(|incremental| {
            if let Some(start) = &self.window_start {
                start.clone()
            } else if let (Some(checkpoint), false) = (&checkpoint, self.full_refresh) {
                cursor::minus(checkpoint, incremental.lookback.0)
            } else {
                incremental.start.clone()
            }
        });
        let bounds = Bounds {
            lower: incremental
                .as_ref()
                .zip(cursor_start.clone())
                .map(|(incremental, value)| (incremental.param.clone(), value)),
            upper: incremental.as_ref().and_then(|incremental| {
                let end = self.window_end.clone()?;
                match &incremental.end_param {
                    Some(param) => Some((param.clone(), end)),
                    None => {
                        tracing::warn!(stream = %self.stream.name, "--end given but the stream has no incremental.end_param; the upper bound is not sent");
                        None
                    }
                }
            }),
        };
        self.events
            .stream_started(&self.stream.name, self.stream.sync_mode(), cursor_start.as_deref());

        let builder = match RequestBuilder::new(&self.config, &self.stream) {
            Ok(builder) => builder,
            Err(error) => return self.failed_before_start(StreamError::Url(error)),
        };
        let (sender, receiver) = mpsc::channel(PAGE_BUFFER);
        let fetcher = tokio::spawn(self.clone().fetch(builder, bounds, sender));
        let (write_stats, write_error) = self.write(receiver, checkpoint.clone()).await;
        let (fetch_stats, fetch_error) = match fetcher.await {
            Ok(result) => result,
            Err(join_error) => (
                FetchStats::default(),
                Some(StreamError::Landing(LandingError::Encode {
                    path: self.stream.name.clone(),
                    message: format!("fetcher task failed: {join_error}"),
                })),
            ),
        };
        // A writer failure explains a fetcher stopped by the closed channel, so it wins.
        let error = write_error.or(fetch_error);
        let sorted = incremental.as_ref().is_some_and(|incremental| incremental.sorted);
        let mut error = error;
        if error.is_none() && incremental.is_some() && !sorted {
            // Unsorted streams checkpoint only once everything is stored.
            if let Some(cursor) = &write_stats.stored_cursor
                && let Err(state_error) = self.commit_checkpoint(checkpoint.as_deref(), cursor).await
            {
                error = Some(state_error.into());
            }
        }
        let cursor_end = match &error {
            Some(_) if !sorted => checkpoint.clone(),
            _ => write_stats.stored_cursor.clone().or(checkpoint.clone()),
        };
        let report = StreamReport {
            name: self.stream.name.clone(),
            sync_mode: self.stream.sync_mode().to_owned(),
            endpoint: fetch_stats.endpoint.clone(),
            cursor_start,
            cursor_end: cursor_end.clone(),
            pages: fetch_stats.pages,
            requests: fetch_stats.requests,
            retries: fetch_stats.retries,
            rows_read: fetch_stats.rows_read,
            rows_written: write_stats.rows_written,
            duplicate_rows: 0,
            dead_letter_rows: 0,
            bytes_written: write_stats.files.iter().map(|file| file.bytes).sum(),
            lag_seconds: write_stats
                .stored_cursor
                .as_deref()
                .and_then(|cursor| cursor::lag_seconds(cursor, chrono::Utc::now())),
            status: if error.is_some() {
                Status::Failed
            } else {
                Status::Succeeded
            },
            error: error.as_ref().map(ErrorRecord::from_error),
            files: write_stats.files,
        };
        match (&error, &report.error) {
            (Some(error), Some(record)) => self.events.stream_failed(&self.stream.name, error.stage(), record),
            _ => self.events.stream_finished(
                &self.stream.name,
                report.status.as_str(),
                report.rows_written,
                report.pages,
                cursor_end.as_deref(),
            ),
        }
        report
    }

    fn failed_before_start(&self, error: StreamError) -> StreamReport {
        let record = ErrorRecord::from_error(&error);
        self.events.stream_failed(&self.stream.name, error.stage(), &record);
        StreamReport {
            name: self.stream.name.clone(),
            sync_mode: self.stream.sync_mode().to_owned(),
            endpoint: String::new(),
            cursor_start: None,
            cursor_end: None,
            pages: 0,
            requests: 0,
            retries: 0,
            rows_read: 0,
            rows_written: 0,
            duplicate_rows: 0,
            dead_letter_rows: 0,
            bytes_written: 0,
            lag_seconds: None,
            status: Status::Failed,
            error: Some(record),
            files: vec![],
        }
    }

    async fn fetch(
        self,
        builder: RequestBuilder,
        bounds: Bounds,
        sender: mpsc::Sender<FetchedPage>,
    ) -> (FetchStats, Option<StreamError>) {
        let mut stats = FetchStats {
            endpoint: request::endpoint(self.stream.method, builder.base_url()),
            ..Default::default()
        };
        let mut paginator = Paginator::new(&self.stream.pagination, builder.base_url());
        let mut token = paginator.first();
        let cursor_field = self
            .stream
            .incremental
            .as_ref()
            .map(|incremental| incremental.cursor_field.clone());
        loop {
            let number = stats.pages + 1;
            let spec = builder.build(&token, &bounds);
            let endpoint = request::endpoint(spec.method, &spec.url);
            let context = RequestContext {
                stream: &self.stream.name,
                page: number,
            };
            let response = match self.client.send(&spec, context).await {
                Ok(response) => response,
                Err(error) => {
                    stats.requests += u64::from(error.attempt);
                    stats.retries += u64::from(error.attempt.saturating_sub(1));
                    return (stats, Some(error.into()));
                }
            };
            stats.requests += u64::from(response.attempts);
            stats.retries += u64::from(response.attempts - 1);
            let extracted_at = crate::clock::now_rfc3339();
            let parsed = parse_page(&response.body, &self.stream, cursor_field.as_deref());
            let (records, next) = match parsed {
                Ok((records, document)) => {
                    let view = PageView {
                        url: &spec.url,
                        headers: &response.headers,
                        document: Some(document),
                        records: records.len(),
                    };
                    let next = paginator.next(&token, &view);
                    (records, next)
                }
                Err(source) => {
                    return (
                        stats,
                        Some(StreamError::Records {
                            page: number,
                            endpoint,
                            request_id: response.request_id,
                            source,
                        }),
                    );
                }
            };
            stats.pages = number;
            stats.rows_read += records.len() as u64;
            self.events.page_fetched(
                &self.stream.name,
                number,
                &response.request_id,
                response.status,
                records.len(),
                response.body.len(),
                response.elapsed.as_millis() as u64,
            );
            let page = FetchedPage {
                number,
                endpoint,
                extracted_at,
                body: response.body,
                records,
            };
            // The page is handed over before a pagination error is reported: what was read
            // is landed either way.
            if sender.send(page).await.is_err() {
                return (stats, None);
            }
            match next {
                Ok(Some(next)) => token = next,
                Ok(None) => return (stats, None),
                Err(error) => return (stats, Some(error.into())),
            }
        }
    }

    async fn write(
        &self,
        mut receiver: mpsc::Receiver<FetchedPage>,
        checkpoint: Option<String>,
    ) -> (WriteStats, Option<StreamError>) {
        let landing_config = &self.config.landing;
        let mut writer = PartWriter::new(
            self.landing.clone(),
            PartDirs {
                dir: layout::parts_dir(
                    &self.config.source.name,
                    &self.stream.name,
                    &self.extracted_date,
                    &self.run_id,
                ),
                staging_dir: layout::staging_dir(&self.config.source.name, &self.run_id, &self.stream.name),
                run_id: self.run_id.clone(),
            },
            landing_config.compression,
            PartLimits {
                max_records: landing_config.part_max_records,
                max_bytes: landing_config.part_max_bytes.0,
                multipart_chunk: landing_config.multipart_chunk.0 as usize,
            },
        );
        let template = EnvelopeTemplate::new(
            &self.config.source.name,
            &self.stream.name,
            &self.run_id,
            self.config.source.tenant.as_deref(),
            self.config.source.environment.as_deref(),
        );
        let sorted = self
            .stream
            .incremental
            .as_ref()
            .is_some_and(|incremental| incremental.sorted);
        let mut stats = WriteStats::default();
        let mut open_cursor: Option<String> = None;
        let mut committed = checkpoint;
        let mut line = Vec::with_capacity(4096);
        let result: Result<(), StreamError> = async {
            while let Some(page) = receiver.recv().await {
                let body = std::str::from_utf8(&page.body).expect("pages are checked to be UTF-8 when parsed");
                let fields = PageFields::new(&page.endpoint, &page.extracted_at, page.number);
                for record in &page.records {
                    line.clear();
                    let loaded_at = crate::clock::now_rfc3339();
                    envelope::write_line(
                        &mut line,
                        &template,
                        &fields,
                        record.id.as_deref(),
                        record.cursor.as_deref(),
                        &loaded_at,
                        &body[record.range.clone()],
                    );
                    writer.append(&line)?;
                    if let Some(value) = &record.cursor {
                        open_cursor = cursor::max(open_cursor.take(), value);
                    }
                    if writer.is_full() {
                        self.store_part(&mut writer, &mut stats, &mut open_cursor, sorted, &mut committed)
                            .await?;
                    }
                }
                writer.flush_chunk().await?;
            }
            self.store_part(&mut writer, &mut stats, &mut open_cursor, sorted, &mut committed)
                .await
        }
        .await;
        if result.is_err() {
            writer.abort().await;
        }
        (stats, result.err())
    }

    async fn store_part(
        &self,
        writer: &mut PartWriter,
        stats: &mut WriteStats,
        open_cursor: &mut Option<String>,
        sorted: bool,
        committed: &mut Option<String>,
    ) -> Result<(), StreamError> {
        let Some(part) = writer.finish().await? else {
            return Ok(());
        };
        self.events.part_stored(
            &self.stream.name,
            &self.landing.url_of(&part.path),
            part.rows,
            part.bytes,
            &part.sha256,
            if part.multipart { "multipart" } else { "single" },
        );
        stats.rows_written += part.rows;
        stats.files.push(part);
        if let Some(cursor) = open_cursor.take() {
            stats.stored_cursor = cursor::max(stats.stored_cursor.take(), &cursor);
        }
        if sorted
            && self.stream.incremental.is_some()
            && let Some(cursor) = stats.stored_cursor.clone()
        {
            self.commit_checkpoint(committed.as_deref(), &cursor).await?;
            *committed = cursor::max(committed.take(), &cursor);
        }
        Ok(())
    }

    /// Moves the checkpoint forward to `cursor`; never backwards (a backfill window that
    /// ends before the checkpoint leaves it alone).
    async fn commit_checkpoint(&self, current: Option<&str>, cursor: &str) -> Result<(), StateError> {
        if current.is_some_and(|current| cursor::compare(current, cursor) != std::cmp::Ordering::Less) {
            return Ok(());
        }
        self.state.commit(&self.stream.name, Some(cursor), &self.run_id).await?;
        self.events.checkpoint_committed(&self.stream.name, cursor);
        Ok(())
    }
}

/// Finds the records of a page and what the writer needs of each.
fn parse_page<'a>(
    body: &'a Bytes,
    stream: &StreamConfig,
    cursor_field: Option<&str>,
) -> Result<(Vec<RecordMeta>, &'a serde_json::value::RawValue), records::RecordsError> {
    let document = records::parse(body)?;
    let items = records::records_at(document, &stream.records_path)?;
    let mut metas = Vec::with_capacity(items.len());
    for raw in items {
        metas.push(RecordMeta {
            range: records::range_in(body, raw),
            id: records::primary_key_text(raw, &stream.primary_key),
            cursor: cursor_field
                .and_then(|field| records::field(raw, field))
                .and_then(records::scalar_text),
        });
    }
    Ok((metas, document))
}
