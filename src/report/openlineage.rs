//! OpenLineage run events (spec 2-0-2): `START` when a run begins, then `COMPLETE`,
//! `FAIL` or `ABORT` when it ends, so Marquez and Airflow's lineage views connect the
//! extract to the dbt models that read what it landed.
//!
//! - The job is `<source>.<stream>` when one stream was asked for (`--stream`), else
//!   `<source>`, in the namespace `OPENLINEAGE_NAMESPACE` (default `landfall`).
//! - The inputs are the API endpoints: namespace `scheme://host[:port]` of `base_url`,
//!   name the endpoint's path. The outputs are the landing prefixes
//!   `{landing}/{source}/{stream}` (see [`output_dataset`]), with `outputStatistics`
//!   (rows and bytes written) on the final event.
//! - Run under Airflow, the run names its parent: the task instance's OpenLineage run,
//!   derived from the `AIRFLOW_CTX_*` variables exactly as Airflow's OpenLineage provider
//!   derives it (`OpenLineageAdapter.build_task_instance_run_id`), or given explicitly by
//!   `OPENLINEAGE_PARENT_ID` (`namespace/name/run_id`, the macro `lineage_parent_id`'s
//!   format) or `OPENLINEAGE_PARENT_RUN_ID` with `OPENLINEAGE_PARENT_JOB_NAMESPACE` and
//!   `OPENLINEAGE_PARENT_JOB_NAME`.
//!
//! Transports: HTTP (`--openlineage-url` / `OPENLINEAGE_URL`: `POST {url}/api/v1/lineage`,
//! `OPENLINEAGE_ENDPOINT` overrides the path, `OPENLINEAGE_API_KEY` is sent as a bearer
//! token) and a file (`--openlineage-file` / `OPENLINEAGE_FILE`: one event per line,
//! appended). Events pass through the redaction layer; URLs are shown through
//! [`crate::redact::url`]. Emitting never fails a run: a failure is the event
//! `lineage_emit_failed`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use url::Url;

use crate::config::ConnectorConfig;
use crate::error::{Classify, ErrorCode, ErrorRecord};
use crate::observe::events::Events;
use crate::report::manifest::{Manifest, Status};

/// The schema every event declares.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// The `producer` of every event and facet.
pub const PRODUCER: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/tree/v", env!("CARGO_PKG_VERSION"));
/// The default job namespace.
pub const DEFAULT_NAMESPACE: &str = "landfall";
/// The default path of the HTTP transport.
pub const DEFAULT_ENDPOINT: &str = "api/v1/lineage";

const PARENT_FACET: &str = "https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet";
const ERROR_FACET: &str =
    "https://openlineage.io/spec/facets/1-0-0/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const ENGINE_FACET: &str =
    "https://openlineage.io/spec/facets/1-1-0/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet";
const JOB_TYPE_FACET: &str = "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";
const OUTPUT_STATISTICS_FACET: &str = "https://openlineage.io/spec/facets/1-0-1/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet";

/// How long one HTTP emission may take.
const EMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why lineage could not be set up or sent.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("{name} `{value}` is not {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("sending to {url} failed: {message}")]
    Send { url: String, message: String },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("appending to {path} failed: {source}")]
    Write { path: String, source: std::io::Error },
}

impl Classify for LineageError {
    fn code(&self) -> ErrorCode {
        match self {
            LineageError::Invalid { .. } => ErrorCode::ConfigError,
            LineageError::Send { .. } => ErrorCode::NetworkError,
            LineageError::Status { status, .. } if *status >= 500 => ErrorCode::ServerError,
            LineageError::Status { status: 401 | 403, .. } => ErrorCode::AuthFailed,
            LineageError::Status { .. } => ErrorCode::InvalidRequest,
            LineageError::Write { .. } => ErrorCode::StorageError,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            LineageError::Send { .. } => true,
            LineageError::Status { status, .. } => *status >= 500 || *status == 429,
            LineageError::Invalid { .. } | LineageError::Write { .. } => false,
        }
    }
}

/// Where events go.
#[derive(Clone, Debug)]
pub enum Transport {
    /// `POST {url}/{endpoint}`.
    Http {
        url: Url,
        endpoint: String,
        api_key: Option<String>,
    },
    /// One event per line, appended.
    File(PathBuf),
}

impl Transport {
    fn kind(&self) -> &'static str {
        match self {
            Transport::Http { .. } => "http",
            Transport::File(_) => "file",
        }
    }
}

/// The run this one was started by: a job and one of its runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentRun {
    pub namespace: String,
    pub name: String,
    pub run_id: String,
}

/// Lineage settings, from the flags and the environment.
#[derive(Clone, Debug)]
pub struct LineageConfig {
    pub transports: Vec<Transport>,
    /// The job namespace (`OPENLINEAGE_NAMESPACE`, default `landfall`).
    pub namespace: String,
    pub parent: Option<ParentRun>,
}

fn invalid(name: &'static str, value: &str, expected: &'static str) -> LineageError {
    LineageError::Invalid {
        name,
        value: value.to_owned(),
        expected,
    }
}

fn uuid_text(name: &'static str, value: &str) -> Result<String, LineageError> {
    uuid::Uuid::parse_str(value.trim())
        .map(|id| id.to_string())
        .map_err(|_| invalid(name, value, "a UUID"))
}

impl LineageConfig {
    /// Lineage settings from `--openlineage-url` / `--openlineage-file` and `env` (the
    /// process environment, injectable for tests). `None` when no transport is set or
    /// `OPENLINEAGE_DISABLED` is true.
    pub fn from_env(
        url: Option<&str>,
        file: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, LineageError> {
        let get = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if get("OPENLINEAGE_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let mut transports = Vec::new();
        if let Some(text) = url.filter(|text| !text.trim().is_empty()) {
            let parsed = Url::parse(text.trim())
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https"))
                .ok_or_else(|| invalid("--openlineage-url", text, "an http(s) URL"))?;
            let api_key = get("OPENLINEAGE_API_KEY");
            if let Some(key) = &api_key {
                crate::redact::register(key);
            }
            transports.push(Transport::Http {
                url: parsed,
                endpoint: get("OPENLINEAGE_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
                api_key,
            });
        }
        if let Some(path) = file.filter(|path| !path.as_os_str().is_empty()) {
            transports.push(Transport::File(path));
        }
        if transports.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            transports,
            namespace: get("OPENLINEAGE_NAMESPACE").unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            parent: parent_from_env(&get)?,
        }))
    }
}

/// The parent run named by the environment, explicit variables first, then Airflow's.
pub fn parent_from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<ParentRun>, LineageError> {
    // Empty is unset: the DAGs template it, and render "" when Airflow's provider is off.
    if let Some(text) = get("OPENLINEAGE_PARENT_ID").filter(|text| !text.trim().is_empty()) {
        let expected = "namespace/name/run_id";
        let (namespace, rest) = text
            .split_once('/')
            .ok_or_else(|| invalid("OPENLINEAGE_PARENT_ID", &text, expected))?;
        let (name, run_id) = rest
            .rsplit_once('/')
            .ok_or_else(|| invalid("OPENLINEAGE_PARENT_ID", &text, expected))?;
        if namespace.is_empty() || name.is_empty() {
            return Err(invalid("OPENLINEAGE_PARENT_ID", &text, expected));
        }
        return Ok(Some(ParentRun {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            run_id: uuid_text("OPENLINEAGE_PARENT_ID", run_id)?,
        }));
    }
    if let Some(run_id) = get("OPENLINEAGE_PARENT_RUN_ID") {
        let name = get("OPENLINEAGE_PARENT_JOB_NAME").ok_or_else(|| {
            invalid(
                "OPENLINEAGE_PARENT_JOB_NAME",
                "",
                "set (OPENLINEAGE_PARENT_RUN_ID needs it)",
            )
        })?;
        return Ok(Some(ParentRun {
            namespace: get("OPENLINEAGE_PARENT_JOB_NAMESPACE").unwrap_or_else(|| "default".to_owned()),
            name,
            run_id: uuid_text("OPENLINEAGE_PARENT_RUN_ID", &run_id)?,
        }));
    }
    let (Some(dag_id), Some(task_id)) = (get("AIRFLOW_CTX_DAG_ID"), get("AIRFLOW_CTX_TASK_ID")) else {
        return Ok(None);
    };
    // Airflow 3 names the date AIRFLOW_CTX_LOGICAL_DATE, Airflow 2 AIRFLOW_CTX_EXECUTION_DATE.
    let Some((variable, date)) = ["AIRFLOW_CTX_LOGICAL_DATE", "AIRFLOW_CTX_EXECUTION_DATE"]
        .into_iter()
        .find_map(|variable| get(variable).map(|value| (variable, value)))
    else {
        return Ok(None);
    };
    let logical_date = DateTime::parse_from_rfc3339(date.trim())
        .map_err(|_| invalid(variable, &date, "an ISO 8601 date-time with offset"))?
        .with_timezone(&Utc);
    let try_number = match get("AIRFLOW_CTX_TRY_NUMBER") {
        Some(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| invalid("AIRFLOW_CTX_TRY_NUMBER", &text, "a number"))?,
        None => 1,
    };
    let map_index = match get("AIRFLOW_CTX_MAP_INDEX") {
        Some(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| invalid("AIRFLOW_CTX_MAP_INDEX", &text, "a number"))?,
        None => -1,
    };
    // Airflow's `conf.namespace()`: its [openlineage] namespace, else OPENLINEAGE_NAMESPACE.
    let namespace = get("AIRFLOW__OPENLINEAGE__NAMESPACE")
        .or_else(|| get("OPENLINEAGE_NAMESPACE"))
        .unwrap_or_else(|| "default".to_owned());
    let run_id = airflow_task_run_id(&namespace, &dag_id, &task_id, try_number, logical_date, map_index);
    Ok(Some(ParentRun {
        name: format!("{dag_id}.{task_id}"),
        namespace,
        run_id: run_id.to_string(),
    }))
}

/// The OpenLineage run id Airflow gives a task instance:
/// `generate_static_uuid(logical_date, "{namespace}.{dag_id}.{task_id}.{try_number}.{map_index}")`.
pub fn airflow_task_run_id(
    namespace: &str,
    dag_id: &str,
    task_id: &str,
    try_number: u64,
    logical_date: DateTime<Utc>,
    map_index: i64,
) -> uuid::Uuid {
    static_uuid(
        logical_date,
        format!("{namespace}.{dag_id}.{task_id}.{try_number}.{map_index}").as_bytes(),
    )
}

/// Python's `datetime.isoformat()` of a UTC time: microseconds only when not zero.
fn python_isoformat(instant: DateTime<Utc>) -> String {
    let base = instant.format("%Y-%m-%dT%H:%M:%S").to_string();
    match instant.timestamp_subsec_micros() {
        0 => format!("{base}+00:00"),
        micros => format!("{base}.{micros:06}+00:00"),
    }
}

/// openlineage-python's `generate_static_uuid`: a UUIDv7 whose time is `instant` and whose
/// other bits come from SHA-1 of the instant's ISO text and `data`, so the same inputs
/// always give the same id.
pub fn static_uuid(instant: DateTime<Utc>, data: &[u8]) -> uuid::Uuid {
    let timestamp_ms = instant.timestamp_millis() as u128;
    let mut hasher = Sha1::new();
    hasher.update(python_isoformat(instant).as_bytes());
    hasher.update(data);
    let digest = hasher.finalize();
    let mut top = [0u8; 16];
    top.copy_from_slice(&digest[..16]);
    // The first 76 bits of the 160-bit digest.
    let node = u128::from_be_bytes(top) >> (128 - 76);
    let mut value = ((timestamp_ms & 0xFFFF_FFFF_FFFF) << 80) | (node & ((1u128 << 80) - 1));
    value &= !(0xF000u128 << 64);
    value |= 7u128 << 76;
    value &= !(0xC000u128 << 48);
    value |= 0x8000u128 << 48;
    uuid::Uuid::from_u128(value)
}

/// A dataset's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
}

/// The input dataset of a stream: the API endpoint.
pub fn input_dataset(base_url: &str, stream_path: &str) -> Dataset {
    match Url::parse(base_url) {
        Ok(url) => {
            let authority = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            };
            let base_path = url.path().trim_end_matches('/');
            let path = if stream_path.starts_with('/') {
                format!("{base_path}{stream_path}")
            } else {
                format!("{base_path}/{stream_path}")
            };
            Dataset {
                namespace: format!("{}://{authority}", url.scheme()),
                name: crate::redact::scrub(&path).into_owned(),
            }
        }
        Err(_) => Dataset {
            namespace: "http".to_owned(),
            name: crate::redact::scrub(stream_path).into_owned(),
        },
    }
}

/// The output dataset of a stream: its landing prefix `{landing}/{source}/{stream}`, named
/// after OpenLineage's conventions: local folders in namespace `file` by absolute path;
/// object stores in namespace `scheme://bucket` (or container/account) by the key prefix.
pub fn output_dataset(landing_url: &str, source: &str, stream: &str) -> Dataset {
    let landing = landing_url.trim_end_matches('/');
    if let Some(path) = landing.strip_prefix("file://") {
        let folder = std::path::Path::new(path);
        let absolute = if folder.is_absolute() {
            folder.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(folder)
        };
        let absolute = absolute.display().to_string().replace("/./", "/");
        return Dataset {
            namespace: "file".to_owned(),
            name: format!("{}/{source}/{stream}", absolute.trim_end_matches('/')),
        };
    }
    match Url::parse(landing) {
        Ok(url) if url.has_host() => {
            let authority = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            };
            let authority = if url.username().is_empty() || url.password().is_some() {
                authority
            } else {
                // abfss://container@account...: the container is part of the namespace.
                format!("{}@{authority}", url.username())
            };
            let prefix = url.path().trim_matches('/');
            let name = if prefix.is_empty() {
                format!("{source}/{stream}")
            } else {
                format!("{prefix}/{source}/{stream}")
            };
            Dataset {
                namespace: format!("{}://{authority}", url.scheme()),
                name,
            }
        }
        _ => Dataset {
            namespace: landing.split("://").next().unwrap_or("landing").to_owned(),
            name: format!("{source}/{stream}"),
        },
    }
}

/// The job name of a run: `<source>.<stream>` when one stream was asked for, else
/// `<source>`.
pub fn job_name(source: &str, asked: &[String]) -> String {
    match asked {
        [stream] => format!("{source}.{stream}"),
        _ => source.to_owned(),
    }
}

/// The streams a run covers: those asked for and their parents, or all.
fn covered_streams(config: &ConnectorConfig, asked: &[String]) -> Vec<String> {
    config
        .streams
        .iter()
        .filter(|stream| {
            asked.is_empty()
                || asked.contains(&stream.name)
                || config.streams.iter().any(|child| {
                    asked.contains(&child.name)
                        && child.parent.as_ref().is_some_and(|parent| parent.stream == stream.name)
                })
        })
        .map(|stream| stream.name.clone())
        .collect()
}

fn facet(schema_url: &str, fields: Value) -> Value {
    let mut facet = json!({"_producer": PRODUCER, "_schemaURL": schema_url});
    if let (Some(facet), Value::Object(fields)) = (facet.as_object_mut(), fields) {
        facet.extend(fields);
    }
    facet
}

/// The lineage of one run: builds and sends its events.
#[derive(Clone, Debug)]
pub struct RunLineage {
    config: LineageConfig,
    run_id: String,
    job_name: String,
    /// Stream name, input and output of every stream the run covers.
    streams: Vec<(String, Dataset, Dataset)>,
    events: Events,
}

impl RunLineage {
    /// The lineage of run `run_id` of `connector`, for the streams `asked` (empty: all).
    pub fn new(
        config: LineageConfig,
        connector: &ConnectorConfig,
        asked: &[String],
        run_id: &str,
        events: Events,
    ) -> Self {
        let source = &connector.source.name;
        let streams = covered_streams(connector, asked)
            .into_iter()
            .filter_map(|name| {
                let stream = connector.stream(&name)?;
                Some((
                    name.clone(),
                    input_dataset(&connector.source.base_url, &stream.path),
                    output_dataset(&connector.landing.url, source, &name),
                ))
            })
            .collect();
        Self {
            config,
            run_id: run_id.to_owned(),
            job_name: job_name(source, asked),
            streams,
            events,
        }
    }

    fn event(&self, event_type: &str, error: Option<&ErrorRecord>, manifest: Option<&Manifest>) -> Value {
        let mut run_facets = serde_json::Map::new();
        run_facets.insert(
            "processing_engine".to_owned(),
            facet(
                ENGINE_FACET,
                json!({"name": "landfall", "version": crate::VERSION, "openlineageAdapterVersion": crate::VERSION}),
            ),
        );
        if let Some(parent) = &self.config.parent {
            run_facets.insert(
                "parent".to_owned(),
                facet(
                    PARENT_FACET,
                    json!({"run": {"runId": parent.run_id}, "job": {"namespace": parent.namespace, "name": parent.name}}),
                ),
            );
        }
        if let Some(error) = error {
            run_facets.insert(
                "errorMessage".to_owned(),
                facet(
                    ERROR_FACET,
                    json!({"message": format!("{}: {}", error.code, error.message), "programmingLanguage": "rust"}),
                ),
            );
        }
        let inputs: Vec<Value> = self
            .streams
            .iter()
            .map(|(_, input, _)| json!({"namespace": input.namespace, "name": input.name}))
            .collect();
        let outputs: Vec<Value> = self
            .streams
            .iter()
            .map(|(name, _, output)| {
                let mut dataset = json!({"namespace": output.namespace, "name": output.name});
                let report = manifest.and_then(|manifest| manifest.streams.iter().find(|stream| &stream.name == name));
                if let Some(report) = report {
                    dataset["outputFacets"] = json!({
                        "outputStatistics": facet(
                            OUTPUT_STATISTICS_FACET,
                            json!({"rowCount": report.rows_written, "size": report.bytes_written}),
                        )
                    });
                }
                dataset
            })
            .collect();
        json!({
            "eventType": event_type,
            "eventTime": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
            "run": {"runId": self.run_id, "facets": run_facets},
            "job": {
                "namespace": self.config.namespace,
                "name": self.job_name,
                "facets": {
                    "jobType": facet(JOB_TYPE_FACET, json!({"processingType": "BATCH", "integration": "LANDFALL", "jobType": "JOB"}))
                }
            },
            "inputs": inputs,
            "outputs": outputs,
        })
    }

    /// The `START` event.
    pub fn start_event(&self) -> Value {
        self.event("START", None, None)
    }

    /// The final event of a run that wrote its manifest: `COMPLETE` when it succeeded,
    /// `ABORT` when it was cancelled, else `FAIL` (a partial run stopped early).
    pub fn end_event(&self, manifest: &Manifest) -> Value {
        match manifest.status {
            Status::Succeeded => self.event("COMPLETE", None, Some(manifest)),
            Status::Cancelled => self.event("ABORT", None, Some(manifest)),
            Status::Failed | Status::Partial => {
                let error = manifest
                    .streams
                    .iter()
                    .find_map(|stream| stream.error.clone())
                    .unwrap_or_else(|| ErrorRecord {
                        code: manifest.status.as_str().to_uppercase(),
                        message: format!("the run ended {}", manifest.status.as_str()),
                        retryable: true,
                    });
                self.event("FAIL", Some(&error), Some(manifest))
            }
        }
    }

    /// The `FAIL` event of a run that stopped before writing a manifest.
    pub fn fail_event(&self, error: &ErrorRecord) -> Value {
        self.event("FAIL", Some(error), None)
    }

    /// Sends the `START` event.
    pub async fn start(&self) {
        self.emit(&self.start_event()).await;
    }

    /// Sends the final event of a run that wrote its manifest.
    pub async fn finish(&self, manifest: &Manifest) {
        self.emit(&self.end_event(manifest)).await;
    }

    /// Sends the `FAIL` event of a run that stopped before writing a manifest.
    pub async fn fail(&self, error: &ErrorRecord) {
        self.emit(&self.fail_event(error)).await;
    }

    /// Sends `event` to every transport; failures become events.
    pub async fn emit(&self, event: &Value) {
        let event_type = event["eventType"].as_str().unwrap_or_default();
        let text = crate::redact::scrub(&serde_json::to_string(event).expect("an event serializes")).into_owned();
        for transport in &self.config.transports {
            match send(transport, &text).await {
                Ok(()) => self
                    .events
                    .lineage_emitted(event_type, transport.kind(), &self.job_name),
                Err(error) => self.events.lineage_emit_failed(
                    event_type,
                    transport.kind(),
                    error.code().as_str(),
                    error.retryable(),
                    &error.to_string(),
                ),
            }
        }
    }
}

async fn send(transport: &Transport, text: &str) -> Result<(), LineageError> {
    match transport {
        Transport::File(path) => {
            let failed = |source| LineageError::Write {
                path: path.display().to_string(),
                source,
            };
            if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(failed)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(failed)?;
            // One write per line, so concurrent appenders do not interleave within a line.
            file.write_all(format!("{text}\n").as_bytes()).map_err(failed)
        }
        Transport::Http { url, endpoint, api_key } => {
            let target = format!(
                "{}/{}",
                url.as_str().trim_end_matches('/'),
                endpoint.trim_start_matches('/')
            );
            let shown = Url::parse(&target).map_or_else(|_| target.clone(), |url| crate::redact::url(&url));
            let client = reqwest::Client::builder()
                // never follow a redirect: a 307/308 would replay the credentials to another host
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(crate::http::user_agent())
                .timeout(EMIT_TIMEOUT)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|error| LineageError::Send {
                    url: shown.clone(),
                    message: error.to_string(),
                })?;
            let mut request = client
                .post(&target)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(text.to_owned());
            if let Some(key) = api_key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.map_err(|error| LineageError::Send {
                url: shown.clone(),
                message: crate::error::describe(&error),
            })?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(());
            }
            let mut response = response;
            let body = crate::http::body::read_prefix(&mut response, crate::http::body::ERROR_BODY_LIMIT).await;
            Err(LineageError::Status {
                url: shown,
                status,
                body: crate::redact::excerpt_bytes(&body, crate::redact::EXCERPT_CHARS),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    // Vectors from openlineage-python 1.54.0's `generate_static_uuid`.
    #[test]
    fn static_uuid_matches_openlineage_python() {
        assert_eq!(
            static_uuid(utc("2024-05-01T10:00:00Z"), b"default.shop_daily.extract_shop.1.-1").to_string(),
            "018f3398-c100-78a1-8847-557fcde2b487"
        );
        assert_eq!(
            static_uuid(utc("2024-05-01T10:00:00.123456Z"), b"prod.dag.task.3.2").to_string(),
            "018f3398-c17b-7ea5-b60e-482957b8569d"
        );
    }

    #[test]
    fn derives_the_airflow_task_instance_as_parent() {
        let get = env(&[
            ("AIRFLOW_CTX_DAG_ID", "shop_daily"),
            ("AIRFLOW_CTX_TASK_ID", "extract_shop"),
            ("AIRFLOW_CTX_LOGICAL_DATE", "2024-05-01T10:00:00+00:00"),
            ("AIRFLOW_CTX_TRY_NUMBER", "1"),
            ("AIRFLOW_CTX_DAG_RUN_ID", "scheduled__2024-05-01T10:00:00+00:00"),
        ]);
        let parent = parent_from_env(&get).unwrap().unwrap();
        assert_eq!(
            parent,
            ParentRun {
                namespace: "default".to_owned(),
                name: "shop_daily.extract_shop".to_owned(),
                run_id: "018f3398-c100-78a1-8847-557fcde2b487".to_owned(),
            }
        );
        // Airflow 2 names the date AIRFLOW_CTX_EXECUTION_DATE; an offset other than UTC is
        // the same instant.
        let get = env(&[
            ("AIRFLOW_CTX_DAG_ID", "shop_daily"),
            ("AIRFLOW_CTX_TASK_ID", "extract_shop"),
            ("AIRFLOW_CTX_EXECUTION_DATE", "2024-05-01T12:00:00+02:00"),
        ]);
        assert_eq!(
            parent_from_env(&get).unwrap().unwrap().run_id,
            "018f3398-c100-78a1-8847-557fcde2b487"
        );
    }

    #[test]
    fn explicit_parent_variables_win() {
        let get = env(&[
            (
                "OPENLINEAGE_PARENT_ID",
                "airflow/shop_daily.extract_shop/018f3398-c100-78a1-8847-557fcde2b487",
            ),
            ("AIRFLOW_CTX_DAG_ID", "other"),
            ("AIRFLOW_CTX_TASK_ID", "other"),
            ("AIRFLOW_CTX_LOGICAL_DATE", "2024-05-01T10:00:00+00:00"),
        ]);
        let parent = parent_from_env(&get).unwrap().unwrap();
        assert_eq!(
            (parent.namespace.as_str(), parent.name.as_str()),
            ("airflow", "shop_daily.extract_shop")
        );
        let get = env(&[
            ("OPENLINEAGE_PARENT_RUN_ID", "018f3398-c100-78a1-8847-557fcde2b487"),
            ("OPENLINEAGE_PARENT_JOB_NAMESPACE", "airflow"),
            ("OPENLINEAGE_PARENT_JOB_NAME", "dag.task"),
        ]);
        assert_eq!(parent_from_env(&get).unwrap().unwrap().name, "dag.task");
        let bad = env(&[("OPENLINEAGE_PARENT_ID", "airflow/job/not-a-uuid")]);
        assert!(matches!(parent_from_env(&bad), Err(LineageError::Invalid { .. })));
        assert_eq!(parent_from_env(&env(&[])).unwrap(), None);
        // the DAGs render "" when Airflow's OpenLineage provider is off: unset, not invalid
        let empty = env(&[("OPENLINEAGE_PARENT_ID", " ")]);
        assert_eq!(parent_from_env(&empty).unwrap(), None);
        let empty_with_airflow = env(&[
            ("OPENLINEAGE_PARENT_ID", ""),
            ("AIRFLOW_CTX_DAG_ID", "shop_daily"),
            ("AIRFLOW_CTX_TASK_ID", "extract_shop"),
            ("AIRFLOW_CTX_LOGICAL_DATE", "2024-05-01T10:00:00+00:00"),
        ]);
        assert_eq!(
            parent_from_env(&empty_with_airflow).unwrap().unwrap().name,
            "shop_daily.extract_shop"
        );
    }

    #[test]
    fn config_needs_a_transport_and_honours_disabled() {
        let none = LineageConfig::from_env(None, None, &env(&[])).unwrap();
        assert!(none.is_none());
        let config = LineageConfig::from_env(Some("http://127.0.0.1:5000"), None, &env(&[]))
            .unwrap()
            .unwrap();
        assert_eq!(config.namespace, "landfall");
        let disabled = LineageConfig::from_env(
            Some("http://127.0.0.1:5000"),
            None,
            &env(&[("OPENLINEAGE_DISABLED", "true")]),
        )
        .unwrap();
        assert!(disabled.is_none());
        assert!(LineageConfig::from_env(Some("ftp://x"), None, &env(&[])).is_err());
    }

    #[test]
    fn names_datasets_after_openlineage_conventions() {
        assert_eq!(
            input_dataset("https://user:pw@api.example.com/v2/", "/orders"),
            Dataset {
                namespace: "https://api.example.com".to_owned(),
                name: "/v2/orders".to_owned()
            }
        );
        assert_eq!(
            input_dataset("http://127.0.0.1:8080", "/a").namespace,
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            output_dataset("s3://lake/raw/", "shop", "orders"),
            Dataset {
                namespace: "s3://lake".to_owned(),
                name: "raw/shop/orders".to_owned()
            }
        );
        assert_eq!(output_dataset("gs://lake", "shop", "orders").name, "shop/orders");
        assert_eq!(
            output_dataset("abfss://raw@acct.dfs.core.windows.net/landing", "shop", "orders").namespace,
            "abfss://raw@acct.dfs.core.windows.net"
        );
        assert_eq!(
            output_dataset("file:///data/landing", "shop", "orders"),
            Dataset {
                namespace: "file".to_owned(),
                name: "/data/landing/shop/orders".to_owned()
            }
        );
        assert!(
            output_dataset("file://./landing", "shop", "orders")
                .name
                .starts_with('/')
        );
    }

    #[test]
    fn job_is_the_source_or_the_one_stream_asked_for() {
        assert_eq!(job_name("shop", &[]), "shop");
        assert_eq!(job_name("shop", &["orders".to_owned()]), "shop.orders");
        assert_eq!(job_name("shop", &["a".to_owned(), "b".to_owned()]), "shop");
    }
}
