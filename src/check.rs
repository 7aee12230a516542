//! `landfall check`: proves, step by step, that a config can run: secrets resolve, every
//! stream's first page answers and parses, and the landing prefix takes a write, a read, a
//! list and a delete.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::config::LoadedConfig;
use crate::error::{Classify, ErrorCode, ErrorRecord, Exit};
use crate::events::Events;
use crate::extract::request::{Bounds, RequestBuilder};
use crate::http::{HttpClient, RequestContext};
use crate::landing::{Landing, layout};
use crate::pagination::Paginator;
use crate::records;

/// One step of the check.
#[derive(Debug, Serialize)]
pub struct Step {
    pub step: String,
    pub ok: bool,
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

    match HttpClient::new(&config.source, events.clone()) {
        Ok(mut client) => {
            // A rotated refresh token must be kept even when only `check` used it.
            if let Ok(landing) = Landing::open(&config.landing) {
                client = client.with_credential_store(Arc::new(crate::credentials::LandingCredentialStore::new(
                    landing,
                    &config.source.name,
                )));
            }
            recorder.pass("http_client", format!("auth {}", config.source.auth.kind()));
            for stream in &config.streams {
                check_stream(&mut recorder, &client, loaded, stream).await;
            }
        }
        Err(error) => recorder.fail("http_client", &StepFailure(ErrorCode::ConfigError, error.to_string())),
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

async fn check_stream(
    recorder: &mut Recorder,
    client: &HttpClient,
    loaded: &LoadedConfig,
    stream: &crate::config::StreamConfig,
) {
    let step = format!("stream:{}", stream.name);
    let builder = match RequestBuilder::new(&loaded.config, stream) {
        Ok(builder) => builder,
        Err(error) => return recorder.fail(step, &StepFailure(ErrorCode::ConfigError, error.to_string())),
    };
    let bounds = Bounds {
        lower: stream
            .incremental
            .as_ref()
            .map(|incremental| (incremental.param.clone(), incremental.start.clone())),
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
        Err(error) => return recorder.fail(step, &error),
    };
    match records::record_ranges(&response.body, &stream.records_path) {
        Ok(ranges) => recorder.pass(
            step,
            format!(
                "HTTP {} with {} records on the first page",
                response.status,
                ranges.len()
            ),
        ),
        Err(error) => recorder.fail(
            step,
            &StepFailure(
                ErrorCode::ParsingError,
                format!("request {}: {error}", response.request_id),
            ),
        ),
    }
}

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
