//! The REST source's page loop: window by window (and parent by parent for child
//! streams), each request built with its page token and bounds, sent through the HTTP
//! client, its records found in the body (in memory, or in a body spilled to a temporary
//! file) and sent to the writer page by page. A body that does not parse is fetched again
//! as the retry policy allows, then dead-lettered.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{ConnectorConfig, Format, StreamConfig};
use crate::cursor::CursorFormat;
use crate::error::ErrorCode;
use crate::http::{HttpClient, HttpError, RequestContext, Response, SpilledBody};
use crate::observe::events::Events;
use crate::pagination::{PageToken, PageView, PaginationError, Paginator, RecordsDigest};
use crate::quality::drift::SchemaTracker;
use crate::quality::validate::{RecordValidator, Violation};
use crate::records;
use crate::source::dead_body::DeadBody;
use crate::source::parents::{ParentKey, ParentKeys};
use crate::source::rest::prefetch::Prefetcher;
use crate::source::rest::request::{self, Bounds, RequestBuilder};
use crate::source::windows::Window;
use crate::source::{
    self, DeadPage, Item, ItemSender, Page, ReadError, ReadOutcome, ReadPlan, ReadStats, RecordMeta, RecordReader,
    Source,
};

/// A REST API stream, read page by page through the source's HTTP client.
#[derive(Clone)]
pub struct RestSource {
    pub config: Arc<ConnectorConfig>,
    pub stream: StreamConfig,
    /// Shared by every stream of the source (rate limiter, breaker, token cache).
    pub client: HttpClient,
    pub events: Events,
    pub cancel: CancellationToken,
    /// The parent records of a child stream.
    pub parents: Option<ParentKeys>,
    /// Set on a parent stream: the fields its children need.
    pub collect_parent_fields: Option<Vec<String>>,
    /// The asynchronous job an earlier run created and did not land (`async_job`).
    pub resume_job: Option<crate::state::AsyncJobState>,
    /// The run, recorded with a job it creates.
    pub run_id: String,
}

impl Source for RestSource {
    fn endpoint(&self) -> Result<String, ReadError> {
        let builder = RequestBuilder::new(&self.config, &self.stream)?;
        Ok(request::endpoint(self.stream.method, builder.base_url()))
    }

    fn read(self: Box<Self>, plan: ReadPlan, out: ItemSender) -> BoxFuture<'static, ReadOutcome> {
        Box::pin((*self).fetch(plan.windows, out, plan.validator))
    }
}

/// The records of a spilled page go to the writer in pieces of about this many bytes.
const SPILLED_PIECE: usize = 1 << 20;

/// The rows of a body that is not JSON go to the writer in pieces of about this many bytes
/// (each row twice: as sent and parsed).
const ROWS_PIECE: usize = 256 << 10;

/// One run through a stream's pages: a request builder, its bounds, the parent it belongs
/// to, and the window records are filtered to (with `client_side_filter`).
pub(super) struct PageSequence<'a> {
    pub(super) builder: &'a RequestBuilder,
    pub(super) bounds: &'a Bounds,
    pub(super) parent: Option<&'a ParentKey>,
    pub(super) filter: Option<&'a Window>,
    /// Fetches pages ahead (offset and page-number pagination with concurrency > 1).
    pub(super) prefetch: Option<&'a mut Prefetcher<Result<Response, HttpError>>>,
}

/// How a page's records were read.
enum Parsed {
    /// From the body in memory.
    InMemory(Vec<RecordMeta>),
    /// To be read from the body's temporary file, piece by piece.
    Spilled(SpilledPage),
}

/// A page whose body is in a temporary file and whose records array was found there.
struct SpilledPage {
    file: std::fs::File,
    len: u64,
    layout: records::spilled::Layout,
    digest: Option<u64>,
}

/// What opening a spilled body gave.
enum Opened {
    Served(SpilledPage),
    /// The body, read back into memory: the file reader does not serve it
    /// ([`records::spilled`]).
    InMemory(Bytes),
    /// A body that is not one JSON value, found so from its file: never read into memory.
    Invalid {
        body: DeadBody,
        error: records::RecordsError,
    },
}

/// Whether the records of a spilled page of `stream` may be read from the file: the page's
/// other lookups (pagination's pointers) must not reach into the records array, which the
/// skeleton document they run against holds empty.
fn spill_serves(stream: &StreamConfig) -> bool {
    let records_path = stream.records_path.as_str();
    let inside = format!("{records_path}/");
    !stream
        .pagination
        .body_pointers()
        .iter()
        .any(|pointer| *pointer == records_path || pointer.starts_with(&inside))
}

impl RestSource {
    /// The request builder of the stream, or of one parent record's requests.
    fn builder(&self, parent: Option<&ParentKey>) -> Result<RequestBuilder, url::ParseError> {
        match parent {
            None => RequestBuilder::new(&self.config, &self.stream),
            Some(parent) => RequestBuilder::new(&self.config, &interpolate(&self.stream, &parent.values)),
        }
    }

    /// The parent records to page through (read from the parent's file, one at a time), or
    /// one pass without a parent.
    fn passes(&self) -> Box<dyn Iterator<Item = std::io::Result<Option<ParentKey>>> + Send> {
        match &self.parents {
            None => Box::new(std::iter::once(Ok(None))),
            Some(parents) => Box::new(parents.iter().map(|parent| parent.map(Some))),
        }
    }

    async fn fetch(
        self,
        planned: Vec<Window>,
        sender: ItemSender,
        validator: Arc<RecordValidator>,
    ) -> (ReadStats, Option<ReadError>) {
        let mut stats = ReadStats::default();
        // A stream whose URL does not parse fails before its first request.
        if self.parents.is_none()
            && let Err(error) = self.builder(None)
        {
            return (stats, Some(error.into()));
        }
        let incremental = self.stream.incremental.clone();
        let format = incremental
            .as_ref()
            .map(|incremental| incremental.cursor_format())
            .unwrap_or(CursorFormat::Text);
        for window in planned {
            // Every bound reaches the request in the stream's cursor format.
            let bounds = Bounds {
                lower: incremental
                    .as_ref()
                    .zip(window.lower.as_ref())
                    .map(|(incremental, value)| (incremental.param.clone(), format.render(value))),
                upper: incremental.as_ref().and_then(|incremental| {
                    Some((incremental.end_param.clone()?, format.render(window.upper.as_ref()?)))
                }),
            };
            let filter = incremental
                .as_ref()
                .is_some_and(|incremental| incremental.client_side_filter);
            if self.stream.async_job.is_some() {
                let filter = filter.then_some(&window);
                if let Err(error) = self.read_job(&bounds, filter, &sender, &validator, &mut stats).await {
                    return (stats, error);
                }
                // The job is forgotten once the window's parts (and checkpoint) are stored.
                if sender.send(Item::WindowDone(window)).await.is_err()
                    || sender.send(Item::AsyncJob(None)).await.is_err()
                {
                    return (stats, None);
                }
                continue;
            }
            for parent in self.passes() {
                let parent = match parent {
                    Ok(parent) => parent,
                    Err(error) => return (stats, Some(parent_keys_error(&error))),
                };
                let builder = match self.builder(parent.as_ref()) {
                    Ok(builder) => builder,
                    Err(error) => return (stats, Some(error.into())),
                };
                let builder = &builder;
                let filter = filter.then_some(&window);
                let mut prefetch =
                    Prefetcher::new(&self.stream.pagination, self.config.source.rate_limit.concurrency.get());
                let fetched = self
                    .fetch_pages(
                        PageSequence {
                            builder,
                            bounds: &bounds,
                            parent: parent.as_ref(),
                            filter,
                            prefetch: prefetch.as_mut(),
                        },
                        &sender,
                        &validator,
                        &mut stats,
                    )
                    .await;
                if let Some(prefetch) = prefetch {
                    let discarded = prefetch.finish();
                    stats.requests += discarded.requests;
                    stats.retries += discarded.retries;
                }
                if let Err(error) = fetched {
                    return (stats, error);
                }
            }
            if sender.send(Item::WindowDone(window)).await.is_err() {
                return (stats, None);
            }
        }
        (stats, None)
    }

    /// Pages through one request sequence. `Err(None)` means the writer went away.
    pub(super) async fn fetch_pages(
        &self,
        sequence: PageSequence<'_>,
        sender: &ItemSender,
        validator: &RecordValidator,
        stats: &mut ReadStats,
    ) -> Result<(), Option<ReadError>> {
        let PageSequence {
            builder,
            bounds,
            parent,
            filter,
            mut prefetch,
        } = sequence;
        if stats.endpoint.is_empty() {
            stats.endpoint = request::endpoint(self.stream.method, builder.base_url());
        }
        let mut paginator = Paginator::new(&self.stream.pagination, builder.base_url());
        let mut token = paginator.first();
        let cursor = self
            .stream
            .incremental
            .as_ref()
            .map(|incremental| (incremental.cursor_field.clone(), incremental.cursor_format()));
        let record_reader = RecordReader::new(
            &self.stream,
            cursor.as_ref().map(|(field, format)| (field.as_str(), format)),
            self.collect_parent_fields.as_deref(),
            validator,
        );
        'pages: loop {
            if self.cancel.is_cancelled() {
                return Err(Some(ReadError::Cancelled));
            }
            let number = stats.pages + 1;
            let spec = builder.build(&token, bounds);
            let endpoint = request::endpoint(spec.method, &spec.url);
            let context = RequestContext {
                stream: &self.stream.name,
                page: number,
            };
            // A body that does not parse may be truncated: fetch the page again, as the
            // retry policy allows, before giving up on it.
            let mut parse_attempt = 1;
            let (response, parsed, next) = loop {
                let send = async {
                    match prefetch.as_deref_mut().filter(|_| parse_attempt == 1) {
                        Some(prefetch) => {
                            let launch =
                                |token: &PageToken, ahead: u64| self.send_page(builder, bounds, token, number + ahead);
                            prefetch.next(&token, launch).await
                        }
                        None => self.client.send(&spec, context).await,
                    }
                };
                let response = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Err(Some(ReadError::Cancelled)),
                    response = send.instrument(crate::observe::telemetry::fetch_span(&self.stream.name, number)) => response,
                };
                let response = match response {
                    Ok(response) => response,
                    Err(error) => {
                        stats.requests += u64::from(error.attempt);
                        stats.retries += u64::from(error.attempt.saturating_sub(1));
                        if error.code == ErrorCode::ResponseTooLarge {
                            // The page is recorded in the dead letters (without its body,
                            // which was not kept) so it can be found and replayed.
                            let dead = DeadPage {
                                number,
                                endpoint: endpoint.clone(),
                                extracted_at: crate::clock::now_rfc3339(),
                                body: DeadBody::Whole(Bytes::new()),
                                error: Violation {
                                    code: ErrorCode::ResponseTooLarge.as_str(),
                                    message: format!("request {}: {}", error.request_id, error.message),
                                    path: String::new(),
                                },
                            };
                            let _ = sender.send(Item::DeadPage(dead)).await;
                        }
                        return Err(Some(error.into()));
                    }
                };
                stats.requests += u64::from(response.attempts);
                stats.retries += u64::from(response.attempts - 1);
                let mut response = response;
                if self.stream.format != Format::Json {
                    // Rows are landed as they are read: a page is not fetched again.
                    stats.pages = number;
                    let head = PageHead {
                        number,
                        endpoint: endpoint.clone(),
                        extracted_at: crate::clock::now_rfc3339(),
                        parent_key: parent.map(|parent| parent.key.clone()),
                    };
                    let next = self
                        .land_rows(
                            response,
                            head,
                            &mut paginator,
                            &token,
                            filter,
                            &record_reader,
                            sender,
                            stats,
                        )
                        .await?;
                    match next {
                        Ok(Some(next)) => token = next,
                        Ok(None) => return Ok(()),
                        Err(error) => return Err(Some(error.into())),
                    }
                    continue 'pages;
                }
                let spilled = response.spilled.is_some();
                let mut invalid = None;
                if let Some(body) = response.spilled.take() {
                    match self.open_spilled(body, number).await.map_err(Some)? {
                        Opened::Served(page) => {
                            let document =
                                records::Document::spilled(&page.layout.skeleton, page.layout.last.as_deref());
                            let next = self.next_token(
                                &mut paginator,
                                &token,
                                &response,
                                document,
                                page.layout.records,
                                page.digest,
                            );
                            break (response, Parsed::Spilled(page), next);
                        }
                        Opened::InMemory(body) => response.body = body,
                        Opened::Invalid { body, error } => invalid = Some((error, body)),
                    }
                }
                let (source, body) = match invalid {
                    Some(invalid) => invalid,
                    None => {
                        // A page with bytes that are not UTF-8 is read with the bad sequences
                        // replaced, so its records without them still land (byte for byte as
                        // sent); its exact bytes go to the dead letters (base64).
                        let original = std::str::from_utf8(&response.body)
                            .is_err()
                            .then(|| response.body.clone());
                        if let Some(original) = &original {
                            response.body = Bytes::from(String::from_utf8_lossy(original).into_owned());
                        }
                        let parsed = {
                            let _transform =
                                crate::observe::telemetry::transform_span(&self.stream.name, number).entered();
                            parse_page(&response.body, &record_reader, &mut stats.schema)
                        };
                        match parsed {
                            Ok((mut records, document)) => {
                                if let Some(original) = &original {
                                    mark_replaced_bytes(&response.body, &mut records);
                                    let invalid = std::str::from_utf8(original)
                                        .err()
                                        .map(|e| e.to_string())
                                        .unwrap_or_default();
                                    let dead = DeadPage {
                                        number,
                                        endpoint: endpoint.clone(),
                                        extracted_at: crate::clock::now_rfc3339(),
                                        body: DeadBody::of(original.clone(), spilled),
                                        error: Violation {
                                            code: "PARSING_ERROR",
                                            message: format!(
                                                "request {}: the page is not valid UTF-8 ({invalid}); its exact bytes are in _raw_base64, its records without invalid bytes were landed",
                                                response.request_id
                                            ),
                                            path: String::new(),
                                        },
                                    };
                                    if sender.send(Item::DeadPage(dead)).await.is_err() {
                                        return Err(None);
                                    }
                                }
                                let digest = crate::pagination::records_digest(
                                    records.iter().map(|record| &response.body[record.range.clone()]),
                                );
                                let next =
                                    self.next_token(&mut paginator, &token, &response, document, records.len(), digest);
                                break (response, Parsed::InMemory(records), next);
                            }
                            Err(source) => {
                                let body = original.unwrap_or_else(|| response.body.clone());
                                (source, DeadBody::of(body, spilled))
                            }
                        }
                    }
                };
                if self
                    .client
                    .retry_unparseable(context, &response.request_id, parse_attempt, &source.to_string())
                    .await
                {
                    stats.retries += 1;
                    parse_attempt += 1;
                    continue;
                }
                let dead = DeadPage {
                    number,
                    endpoint: endpoint.clone(),
                    extracted_at: crate::clock::now_rfc3339(),
                    body,
                    error: Violation {
                        code: "PARSING_ERROR",
                        message: format!("request {}: {source}", response.request_id),
                        path: self.stream.records_path.clone(),
                    },
                };
                let _ = sender.send(Item::DeadPage(dead)).await;
                return Err(Some(ReadError::Records {
                    page: number,
                    endpoint,
                    request_id: response.request_id,
                    source,
                }));
            };
            let extracted_at = crate::clock::now_rfc3339();
            stats.pages = number;
            let mut records = match parsed {
                Parsed::InMemory(records) => records,
                Parsed::Spilled(page) => {
                    let head = PageHead {
                        number,
                        endpoint,
                        extracted_at,
                        parent_key: parent.map(|parent| parent.key.clone()),
                    };
                    self.land_spilled(page, head, &response, filter, &record_reader, sender, stats)
                        .await?;
                    match next {
                        Ok(Some(next)) => token = next,
                        Ok(None) => return Ok(()),
                        Err(error) => return Err(Some(error.into())),
                    }
                    continue;
                }
            };
            stats.rows_read += records.len() as u64;
            stats.filtered_rows += source::keep_in_window(&mut records, filter);

            self.events.page_fetched(
                &self.stream.name,
                number,
                &response.request_id,
                response.status,
                records.len(),
                response.body.len(),
                response.elapsed.as_millis() as u64,
            );
            let page = Page {
                number,
                endpoint,
                extracted_at,
                body: response.body,
                records,
                parent_key: parent.map(|parent| parent.key.clone()),
            };
            // The page is handed over before a pagination error is reported: what was read
            // is landed either way.
            if sender.send(Item::Page(page)).await.is_err() {
                return Err(None);
            }
            match next {
                Ok(Some(next)) => token = next,
                Ok(None) => return Ok(()),
                Err(error) => return Err(Some(error.into())),
            }
        }
    }

    /// What a page says of the next one (and of the stream's expected total, for progress),
    /// whether its records are held in memory or in a spilled file.
    fn next_token(
        &self,
        paginator: &mut Paginator,
        token: &PageToken,
        response: &Response,
        document: records::Document<'_>,
        records: usize,
        records_digest: Option<u64>,
    ) -> Result<Option<PageToken>, PaginationError> {
        let total = self.stream.expected(document);
        self.events.telemetry().expect(&self.stream.name, total);
        let view = PageView {
            url: &response.url,
            headers: &response.headers,
            document: Some(document),
            records,
            records_digest,
        };
        paginator.next(token, &view)
    }

    /// Finds the records array of a spilled body, off the async threads; a body the file
    /// reader does not serve is read back into memory.
    async fn open_spilled(&self, mut spilled: SpilledBody, page: u64) -> Result<Opened, ReadError> {
        let served = spilled.utf8 && spill_serves(&self.stream);
        let records_path = self.stream.records_path.clone();
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<Opened> {
            if served {
                let mut digest = RecordsDigest::default();
                let located = records::spilled::locate(&mut spilled.file, spilled.len, &records_path, |record| {
                    digest.push(record)
                })?;
                // A repeated member on the way to the records is an error the in-memory
                // path reports (with the body, for the dead letters).
                if let records::spilled::Located::Served(layout) = located
                    && records::repeated_on_path(&layout.skeleton, &records_path).is_none()
                {
                    return Ok(Opened::Served(SpilledPage {
                        file: spilled.file,
                        len: spilled.len,
                        layout,
                        digest: digest.finish(),
                    }));
                }
            }
            // A body that is not JSON at all is found so from the file, and only its head
            // is kept for the dead letters: it never costs its size in memory.
            if let Err(error) = records::spilled::check_json(&mut spilled.file, spilled.len)? {
                let body = DeadBody::from_file(&mut spilled.file, spilled.len)?;
                return Ok(Opened::Invalid { body, error });
            }
            spilled.read_all().map(Opened::InMemory)
        })
        .await
        .map_err(|error| ReadError::Task(error.to_string()))?;
        opened.map_err(|error| spill_error(page, &error))
    }

    /// Reads the records of a spilled page from its file and hands them to the writer in
    /// pieces of about [`SPILLED_PIECE`] bytes, each a page of its own with the page's
    /// number: the writer lands them as it would land the page.
    ///
    /// The file is read on the fetcher's task: a read of the page cache takes about as
    /// long as parsing the records it holds, which runs there too.
    #[allow(clippy::too_many_arguments)]
    async fn land_spilled(
        &self,
        page: SpilledPage,
        head: PageHead,
        response: &Response,
        filter: Option<&Window>,
        reader: &RecordReader<'_>,
        sender: &ItemSender,
        stats: &mut ReadStats,
    ) -> Result<(), Option<ReadError>> {
        let failed = |error: std::io::Error| Some(spill_error(head.number, &error));
        let mut records = records::spilled::Records::open(page.file, &page.layout).map_err(failed)?;
        let mut record = Vec::new();
        let mut kept = 0;
        let mut more = true;
        while more {
            let mut body = Vec::with_capacity(SPILLED_PIECE + SPILLED_PIECE / 4);
            let mut metas = Vec::new();
            while body.len() < SPILLED_PIECE {
                more = records.next_into(&mut record).map_err(failed)?;
                if !more {
                    break;
                }
                let raw = serde_json::from_slice::<&RawValue>(&record).map_err(|error| failed(error.into()))?;
                let start = body.len();
                body.extend_from_slice(&record);
                metas.push(reader.meta(raw, start..body.len(), &mut stats.schema));
            }
            kept += head.send_piece(Bytes::from(body), metas, filter, sender, stats).await?;
        }
        self.events.page_fetched(
            &self.stream.name,
            head.number,
            &response.request_id,
            response.status,
            kept,
            page.len as usize,
            response.elapsed.as_millis() as u64,
        );
        Ok(())
    }

    /// Reads the rows of a page that is not one JSON document (`format: ndjson | csv | tsv
    /// | xml`) from its body, in memory or spilled to a temporary file, decompressed as
    /// `compression` says, and hands them to the writer in pieces of about
    /// [`ROWS_PIECE`] bytes, each a page of its own with the page's number. A malformed
    /// row is a dead letter with its exact bytes; a body that breaks off (malformed XML)
    /// dead-letters its rest and fails the stream. Returns what the page says of the next.
    #[allow(clippy::too_many_arguments)]
    async fn land_rows(
        &self,
        mut response: Response,
        head: PageHead,
        paginator: &mut Paginator,
        token: &PageToken,
        filter: Option<&Window>,
        reader: &RecordReader<'_>,
        sender: &ItemSender,
        stats: &mut ReadStats,
    ) -> Result<Result<Option<PageToken>, PaginationError>, Option<ReadError>> {
        use std::io::Seek;

        use crate::records::format::{self, Next, RowReader};

        let number = head.number;
        let failed = |error: std::io::Error| Some(spill_error(number, &error));
        let spec = self.stream.format_spec();
        let content_type = response
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let (input, received): (Box<dyn std::io::BufRead + Send>, u64) = match response.spilled.take() {
            Some(spilled) => {
                let mut file = spilled.file;
                file.seek(std::io::SeekFrom::Start(0)).map_err(failed)?;
                (
                    Box::new(std::io::BufReader::with_capacity(256 << 10, file)),
                    spilled.len,
                )
            }
            None => {
                let body = std::mem::take(&mut response.body);
                let len = body.len() as u64;
                (Box::new(std::io::Cursor::new(body)), len)
            }
        };
        let input = format::decompressed(
            input,
            self.stream.compression,
            content_type.as_deref(),
            self.config.source.max_response_size.0,
        )
        .map_err(failed)?;
        let mut rows = RowReader::new(&spec, input);
        let mut digest = RecordsDigest::default();
        let (mut read, mut kept) = (0usize, 0usize);
        let mut broken = None;
        let dead = |bytes: DeadBody, code: &'static str, message: String| {
            Item::DeadPage(DeadPage {
                number,
                endpoint: head.endpoint.clone(),
                extracted_at: head.extracted_at.clone(),
                body: bytes,
                error: Violation {
                    code,
                    message: format!("request {}: {message}", response.request_id),
                    path: String::new(),
                },
            })
        };
        let mut ended = false;
        while !ended {
            let mut body = String::with_capacity(ROWS_PIECE + ROWS_PIECE / 4);
            let mut metas = Vec::new();
            while body.len() < ROWS_PIECE {
                let next = match rows.next_row() {
                    Ok(next) => next,
                    Err(error) => {
                        // A corrupt gzip stream, a body past max_response_size once
                        // decompressed (recorded like RESPONSE_TOO_LARGE, without its
                        // bytes), or a local disk error: the rows read so far land.
                        let message = format!("the body could not be read on: {error}");
                        if error.to_string() == format::TOO_LARGE {
                            let item = dead(
                                DeadBody::Whole(Bytes::new()),
                                ErrorCode::ResponseTooLarge.as_str(),
                                message.clone(),
                            );
                            if sender.send(item).await.is_err() {
                                return Err(None);
                            }
                        }
                        broken = Some(message);
                        ended = true;
                        break;
                    }
                };
                match next {
                    Next::Row { raw, record } => {
                        read += 1;
                        digest.push(raw.as_bytes());
                        let meta = match record {
                            Some(record) => {
                                let Ok(value) = serde_json::from_str::<&RawValue>(&record) else {
                                    return Err(Some(ReadError::Task("a row's parsed form is not JSON".to_owned())));
                                };
                                let range = body.len()..body.len() + record.len();
                                let mut meta = reader.meta(value, range, &mut stats.schema);
                                body.push_str(&record);
                                let start = body.len();
                                body.push_str(&raw);
                                meta.source_text = Some(start..body.len());
                                meta
                            }
                            None => {
                                let Ok(value) = serde_json::from_str::<&RawValue>(&raw) else {
                                    return Err(Some(ReadError::Task("an ndjson row is not JSON".to_owned())));
                                };
                                let range = body.len()..body.len() + raw.len();
                                let meta = reader.meta(value, range, &mut stats.schema);
                                body.push_str(&raw);
                                meta
                            }
                        };
                        metas.push(meta);
                    }
                    Next::Malformed { bytes, message } => {
                        read += 1;
                        stats.rows_read += 1;
                        let item = dead(DeadBody::Whole(Bytes::from(bytes)), "PARSING_ERROR", message);
                        if sender.send(item).await.is_err() {
                            return Err(None);
                        }
                    }
                    Next::Fatal(rest) => {
                        let body = if rest.len as usize == rest.head.len() {
                            DeadBody::Whole(Bytes::from(rest.head))
                        } else {
                            DeadBody::Head {
                                head: Bytes::from(rest.head),
                                len: rest.len,
                                sha256: rest.sha256,
                            }
                        };
                        let message = format!("{}; the body's rest from there is in this dead letter", rest.message);
                        if sender.send(dead(body, "PARSING_ERROR", message)).await.is_err() {
                            return Err(None);
                        }
                        broken = Some(rest.message);
                        ended = true;
                        break;
                    }
                    Next::End => {
                        ended = true;
                        break;
                    }
                }
            }
            kept += head.send_piece(Bytes::from(body), metas, filter, sender, stats).await?;
        }
        self.events.page_fetched(
            &self.stream.name,
            number,
            &response.request_id,
            response.status,
            kept,
            received as usize,
            response.elapsed.as_millis() as u64,
        );
        if let Some(message) = broken {
            return Err(Some(ReadError::Records {
                page: number,
                endpoint: head.endpoint,
                request_id: response.request_id,
                source: records::RecordsError::Rows(message),
            }));
        }
        let view = PageView {
            url: &response.url,
            headers: &response.headers,
            document: None,
            records: read,
            records_digest: digest.finish(),
        };
        Ok(paginator.next(token, &view))
    }

    /// The request for the page `token` (page `number` of the stream), as a task of its own.
    fn send_page(
        &self,
        builder: &RequestBuilder,
        bounds: &Bounds,
        token: &PageToken,
        number: u64,
    ) -> impl Future<Output = Result<Response, HttpError>> + Send + 'static + use<> {
        let spec = builder.build(token, bounds);
        let client = self.client.clone();
        let stream = self.stream.name.clone();
        async move {
            let context = RequestContext {
                stream: &stream,
                page: number,
            };
            client.send(&spec, context).await
        }
    }
}

/// The child stream with `{parent.<name>}` replaced in its path and params.
pub(crate) fn interpolate(stream: &StreamConfig, values: &[(String, String)]) -> StreamConfig {
    let mut stream = stream.clone();
    for (name, value) in values {
        let placeholder = format!("{{parent.{name}}}");
        let encoded = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
        stream.path = stream.path.replace(&placeholder, &encoded);
        for param in stream.params.values_mut() {
            if let serde_json::Value::String(text) = param
                && text.contains(&placeholder)
            {
                *text = text.replace(&placeholder, value);
            }
        }
    }
    stream
}

/// What the pieces of a page read piece by piece (spilled, or not one JSON document) share.
struct PageHead {
    number: u64,
    endpoint: String,
    extracted_at: String,
    parent_key: Option<String>,
}

impl PageHead {
    /// Counts a piece's records, drops those outside the window, and sends the rest to the
    /// writer as a page of their own with the page's number. Returns the records sent.
    async fn send_piece(
        &self,
        body: Bytes,
        mut records: Vec<RecordMeta>,
        filter: Option<&Window>,
        sender: &ItemSender,
        stats: &mut ReadStats,
    ) -> Result<usize, Option<ReadError>> {
        stats.rows_read += records.len() as u64;
        stats.filtered_rows += source::keep_in_window(&mut records, filter);
        let kept = records.len();
        if kept == 0 {
            return Ok(0);
        }
        let piece = Page {
            number: self.number,
            endpoint: self.endpoint.clone(),
            extracted_at: self.extracted_at.clone(),
            body,
            records,
            parent_key: self.parent_key.clone(),
        };
        sender.send(Item::Page(piece)).await.map_err(|_| None)?;
        Ok(kept)
    }
}

fn parent_keys_error(error: &std::io::Error) -> ReadError {
    let (dir, message) = super::super::error::parent_keys_message(error);
    ReadError::ParentKeys { dir, message }
}

fn spill_error(page: u64, error: &std::io::Error) -> ReadError {
    ReadError::Spill {
        page,
        dir: std::env::temp_dir().display().to_string(),
        message: error.to_string(),
    }
}

/// Sends the records of a page read with invalid UTF-8 replaced (U+FFFD) to the dead
/// letters when they hold a replacement: their bytes are not the source's.
fn mark_replaced_bytes(body: &[u8], records: &mut [RecordMeta]) {
    const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
    for record in records.iter_mut().filter(|record| record.violation.is_none()) {
        if memchr::memmem::find(&body[record.range.clone()], REPLACEMENT).is_some() {
            record.violation = Some(Violation {
                code: "PARSING_ERROR",
                message: "the record holds bytes that are not UTF-8 (replaced by U+FFFD here); the page's exact bytes are dead-lettered with _raw_base64".to_owned(),
                path: String::new(),
            });
        }
    }
}

/// Finds the records of a page and what the writer needs of each.
fn parse_page<'a>(
    body: &'a Bytes,
    reader: &RecordReader<'_>,
    schema: &mut SchemaTracker,
) -> Result<(Vec<RecordMeta>, records::Document<'a>), records::RecordsError> {
    let document = records::parse(body)?;
    if let Some(repeated) = records::repeated_on_path(document, &reader.stream.records_path) {
        return Err(records::RecordsError::RepeatedMember(repeated));
    }
    let (items, document) = records::page_records(document, &reader.stream.records_path)?;
    let metas = items
        .into_iter()
        .map(|raw| reader.meta(raw, records::range_in(body, raw), schema))
        .collect();
    Ok((metas, document))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(extra: &str) -> StreamConfig {
        let mut stream: StreamConfig = serde_json::from_str(&format!(
            r#"{{"name": "s", "path": "/orgs/{{parent.id}}/users", "records_path": "/data", "primary_key": ["id"]{extra}}}"#
        ))
        .unwrap();
        stream.pagination.attach_records_path(&stream.records_path.clone());
        stream
    }

    #[test]
    fn a_spilled_page_is_read_from_its_file_unless_pagination_looks_into_its_records() {
        assert!(spill_serves(&stream("")));
        assert!(spill_serves(&stream(
            r#", "pagination": {"type": "cursor", "cursor_path": "/meta/next", "cursor_param": "c"}"#
        )));
        assert!(!spill_serves(&stream(
            r#", "pagination": {"type": "cursor", "cursor_path": "/data/99/id", "cursor_param": "c"}"#
        )));
        assert!(!spill_serves(&stream(
            r#", "pagination": {"type": "next_url", "next_url_path": "/data"}"#
        )));
        // A sibling whose name starts like the records array is not inside it.
        assert!(spill_serves(&stream(
            r#", "pagination": {"type": "next_url", "next_url_path": "/data_next"}"#
        )));
    }

    #[test]
    fn parent_values_are_encoded_in_the_path_and_kept_in_params() {
        let stream = stream(r#", "params": {"org": "{parent.id}", "n": 1}"#);
        let child = interpolate(&stream, &[("id".to_owned(), "a/b c".to_owned())]);
        assert_eq!(child.path, "/orgs/a%2Fb%20c/users");
        assert_eq!(child.params["org"], serde_json::json!("a/b c"));
        assert_eq!(child.params["n"], serde_json::json!(1));
    }

    #[test]
    fn records_holding_replaced_bytes_go_to_the_dead_letters() {
        let body = "[{\"a\":\"ok\"},{\"a\":\"\u{FFFD}\"}]";
        let second = body.find(",{").unwrap() + 1;
        let mut records: Vec<RecordMeta> = [1..second - 1, second..body.len() - 1]
            .into_iter()
            .map(|range| RecordMeta {
                range,
                id: None,
                cursor: None,
                cursor_value: None,
                parent: None,
                violation: None,
                source_text: None,
            })
            .collect();
        mark_replaced_bytes(body.as_bytes(), &mut records);
        assert!(records[0].violation.is_none());
        assert_eq!(records[1].violation.as_ref().map(|v| v.code), Some("PARSING_ERROR"));
    }

    #[test]
    fn a_page_is_parsed_into_records_with_exact_byte_ranges() {
        let stream = stream("");
        let validator = RecordValidator::new(&stream).unwrap();
        let reader = RecordReader::new(&stream, None, None, &validator);
        let body = Bytes::from_static(br#"{"data": [{"id": 1,  "x": 1.50}, {"id": 2}], "meta": {}}"#);
        let mut schema = SchemaTracker::default();
        let (records, _) = parse_page(&body, &reader, &mut schema).unwrap();
        let texts: Vec<&[u8]> = records.iter().map(|record| &body[record.range.clone()]).collect();
        assert_eq!(texts, [&br#"{"id": 1,  "x": 1.50}"#[..], br#"{"id": 2}"#]);
        assert_eq!(records[1].id.as_deref(), Some("2"));

        let repeated = Bytes::from_static(br#"{"data": [], "data": [{"id": 1}]}"#);
        assert!(parse_page(&repeated, &reader, &mut schema).is_err());
        let truncated = Bytes::from_static(br#"{"data": [{"id": 1}"#);
        assert!(parse_page(&truncated, &reader, &mut schema).is_err());
    }
}
