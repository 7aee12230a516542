//! `streams[].async_job`: a report API that answers with a job instead of records. The
//! job is created, polled until it is done, and its result downloaded and landed like the
//! stream's pages (`source/rest/async_job.rs` runs it).

use serde::{Deserialize, Serialize};

use crate::http::config::Method;
use crate::settings::{ConfigError, HumanDuration};

/// The placeholder of the job id in `poll.path` and `result.path`.
pub const JOB_ID_PLACEHOLDER: &str = "{job_id}";

/// `streams[].async_job`. Default: none (the stream's `path` answers with records).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AsyncJobConfig {
    /// The request that creates the job.
    pub create: JobCreate,
    /// JSON pointer to the job id in the create response (a string or a number). Required.
    pub id_path: String,
    /// How the job's status is polled.
    pub poll: JobPoll,
    /// Where the finished job's result is.
    pub result: JobResult,
}

/// `async_job.create`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobCreate {
    /// Default: POST.
    #[serde(default = "default_create_method")]
    pub method: Method,
    /// Path appended to `source.base_url`. Required.
    pub path: String,
    /// JSON body (it may hold `${env:...}` references; it is never logged). Default: none
    /// (`{}` for POST). An incremental stream's bounds are placed in it as in a POST body.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

/// `async_job.poll`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobPoll {
    /// Path appended to `source.base_url`, with `{job_id}`. Required.
    pub path: String,
    /// The pause between polls. Default: 5s.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// How long a run polls before it stops with a retryable error (the job id stays in
    /// the state, so the next run polls the same job). Default: 1h.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// JSON pointer to the job's status in the poll response. Required.
    pub status_path: String,
    /// Statuses meaning the result is ready (compared as text). Required, not empty.
    pub done_values: Vec<String>,
    /// Statuses meaning the job failed. Default: none.
    #[serde(default)]
    pub failed_values: Vec<String>,
}

/// `async_job.result`: exactly one of `urls_path` and `path`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobResult {
    /// JSON pointer, in the final poll response, to the result's URL or array of URLs
    /// (absolute, or relative to `source.base_url`). A URL on another origin than
    /// `source.base_url` gets none of the source's headers or credentials.
    #[serde(default)]
    pub urls_path: Option<String>,
    /// Path appended to `source.base_url`, with `{job_id}`, read with the stream's
    /// `params`, `headers` and `pagination`.
    #[serde(default)]
    pub path: Option<String>,
}

fn default_create_method() -> Method {
    Method::Post
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(3600)
}

/// The shortest poll interval: a shorter one would hammer the vendor.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

fn pointer(at: String, value: &str) -> Result<(), ConfigError> {
    if !value.is_empty() && !value.starts_with('/') {
        return Err(ConfigError::invalid(
            at,
            "must be a JSON pointer (`/a/b`, or `\"\"` for the whole document)",
        ));
    }
    Ok(())
}

fn path(at: String, value: &str) -> Result<(), ConfigError> {
    if !value.starts_with('/') {
        return Err(ConfigError::invalid(at, "must start with `/`"));
    }
    Ok(())
}

impl AsyncJobConfig {
    /// Checks the job's keys without I/O; `at` is the stream's config path.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let at = format!("{at}.async_job");
        path(format!("{at}.create.path"), &self.create.path)?;
        if self.create.path.contains(JOB_ID_PLACEHOLDER) {
            return Err(ConfigError::invalid(
                format!("{at}.create.path"),
                "cannot hold {job_id}: the job does not exist yet",
            ));
        }
        pointer(format!("{at}.id_path"), &self.id_path)?;
        path(format!("{at}.poll.path"), &self.poll.path)?;
        pointer(format!("{at}.poll.status_path"), &self.poll.status_path)?;
        if self.poll.interval.0 < MIN_INTERVAL {
            return Err(ConfigError::invalid(
                format!("{at}.poll.interval"),
                "must be at least 10ms",
            ));
        }
        if self.poll.timeout.0 < self.poll.interval.0 {
            return Err(ConfigError::invalid(
                format!("{at}.poll.timeout"),
                "must be at least poll.interval",
            ));
        }
        if self.poll.done_values.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.poll.done_values"),
                "must name at least one status",
            ));
        }
        if let Some(both) = self
            .poll
            .done_values
            .iter()
            .find(|value| self.poll.failed_values.contains(value))
        {
            return Err(ConfigError::invalid(
                format!("{at}.poll.failed_values"),
                format!("`{both}` is in done_values too"),
            ));
        }
        match (&self.result.urls_path, &self.result.path) {
            (Some(urls_path), None) => pointer(format!("{at}.result.urls_path"), urls_path),
            (None, Some(result_path)) => path(format!("{at}.result.path"), result_path),
            _ => Err(ConfigError::invalid(
                format!("{at}.result"),
                "needs exactly one of urls_path and path",
            )),
        }
    }
}
