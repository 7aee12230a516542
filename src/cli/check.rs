//! `landfall check`: proves, step by step, that a config can run: secrets resolve, every
//! stream's first page answers and parses (a child stream's with the values of its
//! parent's first record), and the landing prefix takes a write, a read, a list and a
//! delete.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::config::{LoadedConfig, ParentConfig};
use crate::error::{Classify, ErrorCode, ErrorRecord, Exit};
use crate::http::{HttpClient, RequestContext};
use crate::landing::{Landing, layout};
use crate::observe::events::Events;
use crate::pagination::Paginator;
use crate::records;
use crate::source::rest::request::{Bounds, RequestBuilder};

/// One step of the check.
#[derive(Debug, Serialize)]
pub struct Step {
    pub step: String,
    pub ok: bool,
    /// The step could not be tried (a child stream whose parent gave no record to take
    /// its `{parent.*}` values from); it does not fail the check.
    pub skipped: bool,
    pub detail: String,
    pub error: Option<ErrorRecord>,
}

/// The check's report, printed as JSON.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub source: String,
    /// The first failing step, if any.
    pub failed_step: Option<String>,
    pub steps: Vec<Step>,
}

struct Recorder {
    steps: Vec<Step>,
    exit: Exit,
    events: Events,
}

impl Recorder {
    fn pass(&mut self, step: impl Into<String>, detail: impl Into<String>) {
        let (step, detail) = (step.into(), detail.into());
        self.events.check_step(&step, &detail, None);
        self.steps.push(Step {
            step,
            ok: true,
            skipped: false,
            detail,
            error: None,
        });
    }

    fn skip(&mut self, step: impl Into<String>, reason: impl std::fmt::Display) {
        let (step, detail) = (step.into(), format!("skipped: {reason}"));
        self.events.check_step(&step, &detail, None);
        self.steps.push(Step {
            step,
            ok: true,
            skipped: true,
            detail,
            error: None,
        });
    }

    fn fail<E: Classify + std::fmt::Display>(&mut self, step: impl Into<String>, error: &E) {
        let step = step.into();
        let record = ErrorRecord::from_error(error);
        self.events.check_step(&step, &record.message, Some(&record));
        if self.exit == Exit::Succeeded {
            self.exit = Exit::for_error(error.code(), error.retryable());
        }
        self.steps.push(Step {
            step,
            ok: false,
            skipped: false,
            detail: record.message.clone(),
            error: Some(record),
        });
    }
}

/// A failure described by text, for steps whose error is not a typed one.
#[derive(Debug)]
struct StepFailure(ErrorCode, String);

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl Classify for StepFailure {
    fn code(&self) -> ErrorCode {
        self.0
    }
    fn retryable(&self) -> bool {
        false
    }
}

/// Runs every step and returns the report and the exit code it calls for.
pub async fn check(loaded: &LoadedConfig) -> (Report, Exit) {
    let config = &loaded.config;
    let check_id = uuid::Uuid::now_v7().to_string();
    let events = Events::new(&check_id, &config.source.name);
    let mut recorder = Recorder {
        steps: Vec::new(),
        exit: Exit::Succeeded,
        events: events.clone(),
    };
    recorder.pass("config", "parsed and validated; secrets resolved");

    if config.source.kind.is_database() {
        // A database source: each stream's probe connects, reads its columns and one row.
        for stream in &config.streams {
            let source = crate::source::database::DatabaseSource {
                config: Arc::new(config.clone()),
                stream: stream.clone(),
                events: events.clone(),
                cancel: tokio_util::sync::CancellationToken::new(),
            };
            let step = format!("stream:{}", stream.name);
            match source.probe().await {
                Ok(found) => recorder.pass(step, found),
                Err(error) => recorder.fail(step, &error),
            }
        }
    } else {
        check_http(&mut recorder, loaded, &events).await;
    }

    match Landing::open(&config.landing) {
        Ok(landing) => {
            let landing = landing.with_events(events.clone());
            check_landing(&mut recorder, &landing, &config.source.name, &check_id).await;
            report_staging(
                &mut recorder,
                &landing,
                &config.source.name,
                config.landing.stale_upload_after.0,
            )
            .await;
        }
        Err(error) => recorder.fail("landing_open", &error),
    }

    let failed_step = recorder
        .steps
        .iter()
        .find(|step| !step.ok)
        .map(|step| step.step.clone());
    let report = Report {
        ok: failed_step.is_none(),
        source: config.source.name.clone(),
        failed_step,
        steps: recorder.steps,
    };
    (report, recorder.exit)
}

/// The HTTP steps of a `rest` source: the client, then one request per stream (parents
/// first).
async fn check_http(recorder: &mut Recorder, loaded: &LoadedConfig, events: &Events) {
    let config = &loaded.config;
    match HttpClient::new(&config.source, events.clone()) {
        Ok(mut client) => {
            // A rotated refresh token must be kept even when only `check` used it.
            if let Ok(landing) = Landing::open(&config.landing) {
                client = client.with_credential_store(Arc::new(
                    crate::state::credentials::LandingCredentialStore::new(landing, &config.source.name),
                ));
            }
            recorder.pass("http_client", format!("auth {}", config.source.auth.kind()));
            // Parents first, as a run orders them: a child is probed with its parent's
            // first record's values in place of `{parent.*}`.
            let mut samples: HashMap<&str, Option<FirstPage>> = HashMap::new();
            let (parents, children): (Vec<_>, Vec<_>) =
                config.streams.iter().partition(|stream| stream.parent.is_none());
            for stream in parents {
                let page = check_stream(recorder, &client, loaded, stream, None).await;
                samples.insert(stream.name.as_str(), page);
            }
            for stream in children {
                let Some(parent) = &stream.parent else { continue };
                let step = format!("stream:{}", stream.name);
                match samples.get(parent.stream.as_str()) {
                    Some(Some(page)) => match page.parent_values(&parent.fields) {
                        Ok(values) => {
                            let child = crate::extract::interpolate(stream, &values);
                            check_stream(recorder, &client, loaded, &child, Some(&parent.stream)).await;
                        }
                        Err(reason) => recorder.skip(step, reason),
                    },
                    _ => recorder.skip(
                        step,
                        format_args!(
                            "parent stream `{}` failed its check, so no parent record gives the values of {{parent.*}}",
                            parent.stream
                        ),
                    ),
                }
            }
        }
        Err(error) => recorder.fail("http_client", &StepFailure(ErrorCode::ConfigError, error.to_string())),
    }
}

/// The first page a stream's probe read, for its children's `{parent.*}` values.
struct FirstPage {
    stream: String,
    body: Bytes,
    records: Vec<Range<usize>>,
}

impl FirstPage {
    /// `(placeholder, value)` pairs from the first record that has every field, or why
    /// there is none.
    fn parent_values(&self, fields: &[String]) -> Result<Vec<(String, String)>, String> {
        if self.records.is_empty() {
            return Err(format!(
                "parent stream `{}` returned no records on its first page, so there is no value for {{parent.*}}",
                self.stream
            ));
        }
        self.records
            .iter()
            .filter_map(|range| serde_json::from_slice::<&RawValue>(&self.body[range.clone()]).ok())
            .find_map(|record| {
                fields
                    .iter()
                    .map(|field| {
                        let text = records::scalar_text(records::field(record, field)?)?;
                        Some((ParentConfig::placeholder(field), text))
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                format!(
                    "no record on the first page of parent stream `{}` has a scalar value for each of {}",
                    self.stream,
                    fields.join(", ")
                )
            })
    }
}

/// `incremental.start` as the stream's first run sends it: in the cursor's `format` (an
/// RFC 3339 `start` of a `unix_seconds` stream goes out as Unix seconds).
fn first_lower_bound(incremental: &crate::config::IncrementalConfig) -> String {
    let format = incremental.cursor_format();
    format
        .parse(incremental.first_start())
        .map(|cursor| format.render(&format.floor(cursor)))
        .unwrap_or_else(|_| incremental.first_start().to_owned())
}

/// Probes a stream's first page; a child arrives with its `{parent.*}` already replaced
/// (`parent` names the parent stream). Returns the page when the probe passed.
async fn check_stream(
    recorder: &mut Recorder,
    client: &HttpClient,
    loaded: &LoadedConfig,
    stream: &crate::config::StreamConfig,
    parent: Option<&str>,
) -> Option<FirstPage> {
    let step = format!("stream:{}", stream.name);
    if stream.async_job.is_some() {
        // Creating a job would spend the vendor's export quota and leave a job nobody lands.
        recorder.skip(
            step,
            "an async_job stream is not probed: a probe would create a job (and spend the vendor's quota); `landfall run` creates it",
        );
        return None;
    }
    let builder = match RequestBuilder::new(&loaded.config, stream) {
        Ok(builder) => builder,
        Err(error) => {
            recorder.fail(step, &StepFailure(ErrorCode::ConfigError, error.to_string()));
            return None;
        }
    };
    let bounds = Bounds {
        lower: stream
            .incremental
            .as_ref()
            .map(|incremental| (incremental.param.clone(), first_lower_bound(incremental))),
        upper: None,
    };
    let token = Paginator::new(&stream.pagination, builder.base_url()).first();
    let spec = builder.build(&token, &bounds);
    let response = match client
        .send(
            &spec,
            RequestContext {
                stream: &stream.name,
                page: 1,
            },
        )
        .await
    {
        Ok(response) => response,
        Err(error) => {
            recorder.fail(step, &error);
            return None;
        }
    };
    let mut response = response;
    let parsed = if stream.format == crate::config::Format::Json {
        records::record_ranges(&response.body, &stream.records_path).map(|ranges| (response.body.clone(), ranges))
    } else {
        first_rows(stream, &mut response, loaded.config.source.max_response_size.0)
    };
    match parsed {
        Ok((body, ranges)) => {
            let of_parent = parent
                .map(|parent| format!(" (for the first record of parent stream `{parent}`)"))
                .unwrap_or_default();
            recorder.pass(
                step,
                format!(
                    "HTTP {} with {} records on the first page{of_parent}",
                    response.status,
                    ranges.len()
                ),
            );
            Some(FirstPage {
                stream: stream.name.clone(),
                body,
                records: ranges,
            })
        }
        Err(error) => {
            recorder.fail(
                step,
                &StepFailure(
                    ErrorCode::ParsingError,
                    format!("request {}: {error}", response.request_id),
                ),
            );
            None
        }
    }
}

/// The rows of the first page of a stream whose `format` is not json (at most
/// [`FIRST_ROWS`]), as the JSON records they parse to; malformed rows are skipped, a body
/// that breaks before its first row fails.
fn first_rows(
    stream: &crate::config::StreamConfig,
    response: &mut crate::http::Response,
    limit: u64,
) -> Result<(Bytes, Vec<Range<usize>>), records::RecordsError> {
    use std::io::{BufRead, Seek};

    use records::format::{self, Next, RowReader};
    let failed = |error: std::io::Error| records::RecordsError::Rows(format!("the body could not be read: {error}"));
    let input: Box<dyn BufRead + Send> = match response.spilled.take() {
        Some(spilled) => {
            let mut file = spilled.file;
            file.seek(std::io::SeekFrom::Start(0)).map_err(failed)?;
            Box::new(std::io::BufReader::new(file))
        }
        None => Box::new(std::io::Cursor::new(response.body.clone())),
    };
    let content_type = response
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let input = format::decompressed(input, stream.compression, content_type, limit).map_err(failed)?;
    let mut rows = RowReader::new(&stream.format_spec(), input);
    let (mut body, mut ranges) = (String::new(), Vec::new());
    while ranges.len() < FIRST_ROWS {
        match rows.next_row().map_err(failed)? {
            Next::Row { raw, record } => {
                let start = body.len();
                body.push_str(record.as_deref().unwrap_or(&raw));
                ranges.push(start..body.len());
            }
            Next::Malformed { .. } => {}
            Next::Fatal(rest) if ranges.is_empty() => return Err(records::RecordsError::Rows(rest.message)),
            Next::Fatal(_) | Next::End => break,
        }
    }
    Ok((Bytes::from(body), ranges))
}

/// Rows of a non-JSON first page `check` reads.
const FIRST_ROWS: usize = 1000;

async fn check_landing(recorder: &mut Recorder, landing: &Landing, source: &str, check_id: &str) {
    let probe = layout::probe(source, check_id);
    let payload = Bytes::from(format!("landfall check {check_id}\n"));
    if let Err(error) = landing.put_new(&probe, payload.clone()).await {
        return recorder.fail("landing_write", &error);
    }
    recorder.pass("landing_write", landing.url_of(&probe));
    match landing.get(&probe).await {
        Ok(Some(bytes)) if bytes == payload => recorder.pass("landing_read", "probe read back intact"),
        Ok(_) => recorder.fail(
            "landing_read",
            &StepFailure(ErrorCode::StorageError, "probe read back differs".into()),
        ),
        Err(error) => recorder.fail("landing_read", &error),
    }
    let prefix = format!("{source}/_check");
    match landing.list(&prefix).await {
        Ok(paths) if paths.contains(&probe) => recorder.pass("landing_list", "probe listed"),
        Ok(_) => recorder.fail(
            "landing_list",
            &StepFailure(ErrorCode::StorageError, "probe missing from listing".into()),
        ),
        Err(error) => recorder.fail("landing_list", &error),
    }
    match landing.delete(&probe).await {
        Ok(()) => recorder.pass("landing_delete", "probe deleted"),
        Err(error) => recorder.fail("landing_delete", &error),
    }
}

/// Reports unfinished uploads under `{source}/_tmp/` (left by killed runs); the next run
/// aborts those older than `landing.stale_upload_after`. Not a failure: a run in progress
/// has uploads there too.
async fn report_staging(recorder: &mut Recorder, landing: &Landing, source: &str, stale_after: std::time::Duration) {
    let root = layout::staging_root(source);
    match crate::landing::upload::find_stale(landing, source, std::time::Duration::ZERO, None).await {
        Ok(uploads) if uploads.is_empty() => {
            recorder.pass("landing_staging", format!("no unfinished uploads under {root}/"))
        }
        Ok(uploads) => {
            let stale = uploads.iter().filter(|upload| upload.age >= stale_after).count();
            let runs: std::collections::BTreeSet<&str> = uploads.iter().map(|upload| upload.run_id.as_str()).collect();
            recorder.pass(
                "landing_staging",
                format!(
                    "{} unfinished upload(s) under {root}/ from run(s) {}; {stale} older than {} will be aborted by the next run",
                    uploads.len(),
                    runs.into_iter().collect::<Vec<_>>().join(", "),
                    humantime::format_duration(stale_after)
                ),
            )
        }
        Err(error) => recorder.fail("landing_staging", &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IncrementalConfig;
    use crate::settings::HumanDuration;

    fn incremental(start: &str, format: Option<&str>) -> IncrementalConfig {
        IncrementalConfig {
            mode: Default::default(),
            cursor_field: "updated_at".into(),
            param: "start_time".into(),
            end_param: None,
            start: start.into(),
            lookback: HumanDuration::from_secs(0),
            sorted: true,
            step: None,
            client_side_filter: false,
            format: format.map(|text| serde_json::from_value(serde_json::json!(text)).unwrap()),
        }
    }

    /// tests/simulation found `check` sending an RFC 3339 `start` verbatim to a Unix-seconds
    /// API (400), while `run` converts it: the probe now sends what the first run sends.
    #[test]
    fn check_probe_sends_start_in_the_streams_cursor_format() {
        let unix = incremental("2024-01-01T00:00:00Z", Some("unix_seconds"));
        assert_eq!(first_lower_bound(&unix), "1704067200");
        let millis = incremental("2024-01-01T00:00:00Z", Some("unix_millis"));
        assert_eq!(first_lower_bound(&millis), "1704067200000");
        let rfc = incremental("2024-01-01T00:00:00Z", None);
        assert_eq!(first_lower_bound(&rfc), "2024-01-01T00:00:00Z");
        let opaque = incremental("abc", Some("string"));
        assert_eq!(first_lower_bound(&opaque), "abc");
    }
}
