//! Asynchronous jobs (`streams[].async_job`): a report API answers with a job, not records.
//! The job is created (its id recorded in the stream's state at once, through
//! [`Item::AsyncJob`]), polled until its status is done or failed, and its result downloaded
//! and landed like the stream's pages (any `format`). A run that finds a job in the state
//! polls it instead of creating another, so a stopped run does not pay the vendor's quota
//! twice; a job or result URL that answers 404 or 410 has expired, and one new job is made.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::RestSource;
use super::fetch::PageSequence;
use super::request::{Bounds, RequestBuilder};
use crate::config::StreamConfig;
use crate::config::async_job::{AsyncJobConfig, JOB_ID_PLACEHOLDER};
use crate::error::{Classify, ErrorCode};
use crate::http::{RequestContext, Response};
use crate::pagination::PageToken;
use crate::quality::validate::RecordValidator;
use crate::source::windows::Window;
use crate::source::{Item, ItemSender, ReadError, ReadStats};
use crate::state::AsyncJobState;

/// Why an asynchronous job did not yield its records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The vendor reports a status of `poll.failed_values`. The job is forgotten: the next
    /// run creates a new one.
    #[error("async job {job_id} failed: its status is `{status}` (one of poll.failed_values)")]
    Failed { job_id: String, status: String },
    /// `poll.timeout` passed: the job's id stays in the state and the next run polls it.
    #[error(
        "async job {job_id} is still running (status `{status}`) after {waited_secs}s of polling \
         (poll.timeout); its id is kept in the stream's state and the next run polls the same job"
    )]
    StillRunning {
        job_id: String,
        status: String,
        waited_secs: u64,
    },
    /// The job made after an expired one expired too.
    #[error(
        "async job {job_id} expired ({during} answered {status}) and so did the job created before it \
         in this run; giving up"
    )]
    ExpiredAgain {
        job_id: String,
        status: u16,
        during: &'static str,
    },
    /// A create or poll response without what the config points at.
    #[error("async job {what}: {message}")]
    Response { what: &'static str, message: String },
}

impl Classify for JobError {
    fn code(&self) -> ErrorCode {
        match self {
            JobError::Failed { .. } | JobError::ExpiredAgain { .. } => ErrorCode::ServerError,
            JobError::StillRunning { .. } => ErrorCode::Timeout,
            JobError::Response { .. } => ErrorCode::ParsingError,
        }
    }

    fn retryable(&self) -> bool {
        !matches!(self, JobError::Response { .. })
    }
}

/// How landing a job's result ended early.
enum Stop {
    /// The job or its result URL answered 404 or 410.
    Expired { status: u16, during: &'static str },
    /// Any other error (`None`: the writer went away).
    Read(Option<ReadError>),
}

impl From<JobError> for Stop {
    fn from(error: JobError) -> Self {
        Stop::Read(Some(error.into()))
    }
}

/// The status of an expired job or URL, if `error` is one.
fn expiry(error: &Option<ReadError>) -> Option<u16> {
    match error {
        Some(ReadError::Http(error)) => error.status.filter(|status| matches!(status, 404 | 410)),
        _ => None,
    }
}

/// The text of the value at `pointer`: a string as it is, a number or boolean as JSON.
fn text_at(document: &Value, pointer: &str) -> Option<String> {
    match document.pointer(pointer)? {
        Value::String(text) => Some(text.clone()),
        value @ (Value::Number(_) | Value::Bool(_)) => Some(value.to_string()),
        _ => None,
    }
}

/// What is percent-encoded of a job id in a path: everything but RFC 3986's unreserved
/// characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `template` with `{job_id}` replaced by the id, percent-encoded.
fn with_job_id(template: &str, job_id: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(job_id, PATH_SEGMENT).to_string();
    template.replace(JOB_ID_PLACEHOLDER, &encoded)
}

/// A response body as one JSON document (create and poll responses are small: one spilled
/// to a file is refused).
fn document(response: &Response, what: &'static str) -> Result<Value, JobError> {
    if response.spilled.is_some() {
        return Err(JobError::Response {
            what,
            message: "the response is too large for a job status".to_owned(),
        });
    }
    serde_json::from_slice(&response.body).map_err(|error| JobError::Response {
        what,
        message: format!("the response is not JSON: {error}"),
    })
}

impl RestSource {
    fn job_config(&self) -> &AsyncJobConfig {
        self.stream.async_job.as_ref().expect("an async job stream")
    }

    /// The stream with the request of a job step in place of its own.
    fn job_request(&self, path: String, method: crate::http::config::Method, body: Option<Value>) -> StreamConfig {
        let mut stream = self.stream.clone();
        stream.path = path;
        stream.method = method;
        stream.body = body;
        stream.params.clear();
        stream.pagination = Default::default();
        stream
    }

    /// Reads one window through an asynchronous job: the one in the state when it was
    /// created for this window, else a new one.
    pub(super) async fn read_job(
        &self,
        bounds: &Bounds,
        filter: Option<&Window>,
        sender: &ItemSender,
        validator: &RecordValidator,
        stats: &mut ReadStats,
    ) -> Result<(), Option<ReadError>> {
        let window_start = bounds.lower.as_ref().map(|(_, value)| value.clone());
        let mut resumed = self.resume_job.clone().filter(|job| job.window_start == window_start);
        let mut recreated = false;
        loop {
            let job_id = match resumed.take() {
                Some(job) => {
                    self.events.async_job_resumed(&self.stream.name, &job.id, &job.run_id);
                    stats.async_job_resumed = true;
                    job.id
                }
                None => {
                    let job_id = self.create_job(bounds, stats).await?;
                    let job = AsyncJobState {
                        id: job_id.clone(),
                        window_start: window_start.clone(),
                        run_id: self.run_id.clone(),
                        created_at: chrono::Utc::now().into(),
                    };
                    if sender.send(Item::AsyncJob(Some(job))).await.is_err() {
                        return Err(None);
                    }
                    self.events.async_job_created(&self.stream.name, &job_id);
                    stats.async_job_resumed = false;
                    job_id
                }
            };
            stats.async_job_id = Some(job_id.clone());
            match self.land_job(&job_id, filter, sender, validator, stats).await {
                Ok(()) => return Ok(()),
                Err(Stop::Expired { status, during }) if !recreated => {
                    self.events
                        .async_job_expired(&self.stream.name, &job_id, status, during);
                    if sender.send(Item::AsyncJob(None)).await.is_err() {
                        return Err(None);
                    }
                    stats.async_jobs_expired += 1;
                    recreated = true;
                }
                Err(Stop::Expired { status, during }) => {
                    return Err(Some(JobError::ExpiredAgain { job_id, status, during }.into()));
                }
                Err(Stop::Read(error)) => {
                    if let Some(ReadError::AsyncJob(JobError::Failed { .. })) = &error
                        && sender.send(Item::AsyncJob(None)).await.is_err()
                    {
                        return Err(None);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Sends the create request; returns the job's id.
    async fn create_job(&self, bounds: &Bounds, stats: &mut ReadStats) -> Result<String, Option<ReadError>> {
        let job = self.job_config();
        let stream = self.job_request(job.create.path.clone(), job.create.method, job.create.body.clone());
        let builder = RequestBuilder::new(&self.config, &stream).map_err(|error| Some(error.into()))?;
        let spec = builder.build(&PageToken::Initial, bounds);
        let response = self.send_job_request(&spec, stats).await.map_err(Some)?;
        let document = document(&response, "create").map_err(|error| Some(error.into()))?;
        text_at(&document, &job.id_path).ok_or_else(|| {
            Some(
                JobError::Response {
                    what: "create",
                    message: format!(
                        "the response has no job id (string or number) at id_path `{}`",
                        job.id_path
                    ),
                }
                .into(),
            )
        })
    }

    async fn send_job_request(
        &self,
        spec: &crate::http::RequestSpec,
        stats: &mut ReadStats,
    ) -> Result<Response, ReadError> {
        let context = RequestContext {
            stream: &self.stream.name,
            page: 0,
        };
        let response = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(ReadError::Cancelled),
            response = self.client.send(spec, context) => response,
        };
        match response {
            Ok(response) => {
                stats.requests += u64::from(response.attempts);
                stats.retries += u64::from(response.attempts - 1);
                Ok(response)
            }
            Err(error) => {
                stats.requests += u64::from(error.attempt);
                stats.retries += u64::from(error.attempt.saturating_sub(1));
                Err(error.into())
            }
        }
    }

    /// Polls the job until it is done, then lands its result.
    async fn land_job(
        &self,
        job_id: &str,
        filter: Option<&Window>,
        sender: &ItemSender,
        validator: &RecordValidator,
        stats: &mut ReadStats,
    ) -> Result<(), Stop> {
        let done = self.poll(job_id, stats).await?;
        let job = self.job_config();
        let mut builders = Vec::new();
        if let Some(path) = &job.result.path {
            let mut stream = self.stream.clone();
            stream.path = with_job_id(path, job_id);
            stream.method = crate::http::config::Method::Get;
            stream.body = None;
            builders.push(RequestBuilder::new(&self.config, &stream).map_err(|error| Stop::Read(Some(error.into())))?);
        }
        if let Some(urls_path) = &job.result.urls_path {
            let urls: Vec<String> = match done.pointer(urls_path) {
                Some(Value::String(url)) => vec![url.clone()],
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| JobError::Response {
                        what: "poll",
                        message: format!("result.urls_path `{urls_path}` holds an item that is not a URL string"),
                    })?,
                _ => {
                    return Err(JobError::Response {
                        what: "poll",
                        message: format!(
                            "the finished job's response has no URL or array of URLs at result.urls_path `{urls_path}`"
                        ),
                    }
                    .into());
                }
            };
            let mut stream = self.stream.clone();
            stream.method = crate::http::config::Method::Get;
            stream.body = None;
            let base = self.config.source.base_url.trim_end_matches('/');
            for url in urls {
                let parsed = Url::parse(&url)
                    .or_else(|_| Url::parse(&format!("{base}{url}")))
                    .map_err(|error| JobError::Response {
                        what: "poll",
                        message: format!(
                            "a result URL does not parse ({error}): {}",
                            crate::redact::excerpt(&url, 100)
                        ),
                    })?;
                builders.push(
                    RequestBuilder::for_url(&self.config, &stream, parsed)
                        .map_err(|error| Stop::Read(Some(error.into())))?,
                );
            }
        }
        for builder in &builders {
            let sequence = PageSequence {
                builder,
                bounds: &Bounds::default(),
                parent: None,
                filter,
                prefetch: None,
            };
            if let Err(error) = self.fetch_pages(sequence, sender, validator, stats).await {
                if let Some(status) = expiry(&error) {
                    return Err(Stop::Expired {
                        status,
                        during: "download",
                    });
                }
                return Err(Stop::Read(error));
            }
        }
        Ok(())
    }

    /// Polls until the job's status is done (returns the last response) or failed, or
    /// `poll.timeout` passes.
    async fn poll(&self, job_id: &str, stats: &mut ReadStats) -> Result<Value, Stop> {
        let job = self.job_config();
        let stream = self.job_request(
            with_job_id(&job.poll.path, job_id),
            crate::http::config::Method::Get,
            None,
        );
        let builder = RequestBuilder::new(&self.config, &stream).map_err(|error| Stop::Read(Some(error.into())))?;
        let spec = builder.build(&PageToken::Initial, &Bounds::default());
        let started = tokio::time::Instant::now();
        let interval: Duration = job.poll.interval.0;
        loop {
            let response = match self.send_job_request(&spec, stats).await {
                Ok(response) => response,
                Err(error) => {
                    let error = Some(error);
                    return Err(match expiry(&error) {
                        Some(status) => Stop::Expired { status, during: "poll" },
                        None => Stop::Read(error),
                    });
                }
            };
            let document = document(&response, "poll")?;
            let status = text_at(&document, &job.poll.status_path).ok_or_else(|| JobError::Response {
                what: "poll",
                message: format!(
                    "the response of job {job_id} has no status (string or number) at poll.status_path `{}`",
                    job.poll.status_path
                ),
            })?;
            if job.poll.done_values.contains(&status) {
                return Ok(document);
            }
            let shown = crate::redact::excerpt(&status, 100);
            if job.poll.failed_values.contains(&status) {
                return Err(JobError::Failed {
                    job_id: job_id.to_owned(),
                    status: shown,
                }
                .into());
            }
            if started.elapsed() + interval > job.poll.timeout.0 {
                return Err(JobError::StillRunning {
                    job_id: job_id.to_owned(),
                    status: shown,
                    waited_secs: started.elapsed().as_secs(),
                }
                .into());
            }
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Stop::Read(Some(ReadError::Cancelled))),
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_is_encoded_in_paths_and_read_as_text() {
        assert_eq!(
            with_job_id("/exports/{job_id}/status", "a/b c-1.x_~"),
            "/exports/a%2Fb%20c-1.x_~/status"
        );
        let document = serde_json::json!({"id": 42, "job": {"id": "x"}, "list": [1]});
        assert_eq!(text_at(&document, "/id").as_deref(), Some("42"));
        assert_eq!(text_at(&document, "/job/id").as_deref(), Some("x"));
        assert_eq!(text_at(&document, "/list"), None);
        assert_eq!(text_at(&document, "/missing"), None);
    }
}
