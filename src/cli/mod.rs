//! The command line: arguments parsed by clap, then each command run with its errors
//! printed once and mapped to the contract's exit codes.

mod args;
pub mod check;
mod discover;
mod init;
pub mod orphans;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::config::{ConnectorConfig, LoadedConfig, Resolve};
use crate::error::{Classify, ErrorCode, ErrorRecord, Exit};
use crate::extract::{self, RunOptions};
use crate::landing::Landing;
use crate::settings::ConfigError;
use crate::state::StateStore;

pub use args::{Cli, Command, StateAction};

/// Entry point of the binary.
pub fn main() -> ExitCode {
    keep_memory_flat();
    let cli = Cli::parse();
    crate::observe::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("landfall: cannot start the async runtime: {error}");
            return Exit::Failure.into();
        }
    };
    runtime.block_on(execute(cli)).into()
}

/// Pins glibc's mmap threshold at its default of 128 KiB. Left alone, glibc raises it to
/// the size of every large block freed, so response bodies (fetched on one thread, freed on
/// another after they are landed) move into its per-thread arenas and fragment them: peak
/// memory then grows with the record count (33 MiB at 100k records, 43 MiB at 1M).
/// Pinned, large blocks go back to the system when freed and the peak stays flat.
#[allow(unsafe_code)]
fn keep_memory_flat() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread
    // exists, and M_MMAP_THRESHOLD accepts any value up to 32 MiB.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn fail(message: impl std::fmt::Display, exit: Exit) -> Exit {
    eprintln!("landfall: {}", crate::redact::scrub(&message.to_string()));
    exit
}

fn config_path(path: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    path.ok_or(ConfigError::Missing)
}

fn load(path: Option<PathBuf>, resolve: Resolve) -> Result<LoadedConfig, Exit> {
    config_path(path)
        .and_then(|path| ConnectorConfig::load(&path, resolve))
        .map_err(|error| fail(format_args!("invalid config: {error}"), Exit::Usage))
}

async fn execute(cli: Cli) -> Exit {
    match cli.command {
        Command::Spec => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::config::spec::schema()).expect("schema serializes")
            );
            Exit::Succeeded
        }
        Command::Validate { config, no_resolve } => {
            let resolve = if no_resolve {
                Resolve::SyntaxOnly
            } else {
                Resolve::References
            };
            match load(config, resolve) {
                Ok(loaded) => {
                    println!(
                        "config is valid: source {} with {} stream(s)",
                        loaded.config.source.name,
                        loaded.config.streams.len()
                    );
                    Exit::Succeeded
                }
                Err(exit) => exit,
            }
        }
        Command::Check { config } => {
            let loaded = match load(config, Resolve::References) {
                Ok(loaded) => loaded,
                Err(exit) => return exit,
            };
            let (report, exit) = crate::cli::check::check(&loaded).await;
            println!(
                "{}",
                crate::redact::scrub(&serde_json::to_string_pretty(&report).expect("report serializes"))
            );
            if let Some(step) = &report.failed_step {
                eprintln!("landfall: check failed at step {step}");
            }
            exit
        }
        Command::Run(run) => {
            let run_id = run.run_id.unwrap_or_else(uuid::Uuid::now_v7).to_string();
            let loaded = match load(run.config.clone(), Resolve::References) {
                Ok(loaded) => loaded,
                Err(exit) => {
                    write_failed_xcom(
                        run.xcom_output.as_deref(),
                        "unknown",
                        Some(&run_id),
                        exit,
                        ErrorCode::ConfigError,
                        "invalid config",
                    );
                    return exit;
                }
            };
            let source = loaded.config.source.name.clone();
            let started = std::time::Instant::now();
            let cancel = tokio_util::sync::CancellationToken::new();
            let telemetry = crate::observe::telemetry::Telemetry::for_stderr(run.progress);
            let events = crate::observe::events::Events::new(&run_id, &source).with_telemetry(telemetry.clone());
            let lineage = match lineage(&run, &loaded, &run_id, &events) {
                Ok(lineage) => lineage,
                Err(error) => {
                    let message = format!("invalid lineage settings: {error}");
                    write_failed_xcom(
                        run.xcom_output.as_deref(),
                        &source,
                        Some(&run_id),
                        Exit::Usage,
                        error.code(),
                        &message,
                    );
                    return fail(message, Exit::Usage);
                }
            };
            let metrics = crate::report::metrics::MetricsTargets {
                push_url: run.metrics_push_url.clone(),
                file: run.metrics_file.clone(),
            };
            if let Some(lineage) = &lineage {
                lineage.start().await;
            }
            tokio::spawn(stop_on_signal(cancel.clone(), run.grace_period.0, events.clone()));
            let options = RunOptions {
                streams: run.stream.clone(),
                run_id: Some(run_id.clone()),
                start: run.start,
                end: run.end,
                start_lookback: run.start_lookback,
                data_interval: (run.data_interval_start.is_some() || run.data_interval_end.is_some()).then(|| {
                    crate::report::manifest::DataInterval {
                        start: run.data_interval_start.clone(),
                        end: run.data_interval_end.clone(),
                    }
                }),
                full_refresh: run.full_refresh,
                sleeper: None,
                cancel,
                rate_share: run.rate_share,
                lease_ttl: Some(run.lease_ttl.0),
                max_duration: run.max_duration,
                telemetry,
            };
            match extract::run(&loaded, options).await {
                Ok(outcome) => {
                    metrics
                        .export(&crate::report::metrics::manifest_samples(&outcome.manifest), &events)
                        .await;
                    if let Some(lineage) = &lineage {
                        lineage.finish(&outcome.manifest).await;
                    }
                    if let Some(path) = &run.xcom_output {
                        let summary = crate::report::xcom::Summary::from_manifest(
                            &outcome.manifest,
                            &outcome.manifest_url,
                            outcome.exit.code(),
                        );
                        if let Err(error) = summary.write(path) {
                            return fail(
                                format_args!("cannot write --xcom-output {}: {error}", path.display()),
                                Exit::Failure,
                            );
                        }
                    }
                    println!("{}", outcome.manifest_url);
                    outcome.exit
                }
                Err(error) => {
                    let exit = Exit::for_error(error.code(), error.retryable());
                    let record = ErrorRecord::from_error(&error);
                    let samples = crate::report::metrics::run_samples(
                        &source,
                        "failed",
                        started.elapsed().as_secs_f64(),
                        chrono::Utc::now(),
                    );
                    metrics.export(&samples, &events).await;
                    if let Some(lineage) = &lineage {
                        lineage.fail(&record).await;
                    }
                    write_failed_xcom(
                        run.xcom_output.as_deref(),
                        &source,
                        Some(&run_id),
                        exit,
                        error.code(),
                        &error.to_string(),
                    );
                    fail(error, exit)
                }
            }
        }
        Command::Plan(plan) => plan_windows(plan),
        Command::State { action } => state(action).await,
        Command::DbtSources {
            config,
            out,
            adapter,
            location,
            staging,
        } => dbt_sources(config, out, &adapter, location, staging),
        Command::Orphans {
            config,
            delete,
            older_than,
        } => orphans(config, delete, older_than).await,
        Command::Discover(args) => discover::discover(args).await,
        Command::Init(args) => init::init(args).await,
        Command::Demo { landing, serve, port } => demo(landing, serve, port).await,
    }
}

/// `landfall dbt-sources`: the sources file to stdout or `out/<source>.yml`, and the staging
/// models into `staging` when given.
fn dbt_sources(
    config: Option<PathBuf>,
    out: Option<PathBuf>,
    adapter: &str,
    location: Option<String>,
    staging: Option<PathBuf>,
) -> Exit {
    let adapter = match adapter.parse::<crate::report::dbt::Adapter>() {
        Ok(adapter) => adapter,
        Err(error) => return fail(error, Exit::Usage),
    };
    let loaded = match load(config, Resolve::SyntaxOnly) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    if let Err(error) = adapter.reads(loaded.config.landing.compression) {
        return fail(error, Exit::Usage);
    }
    let options = crate::report::dbt::SourcesOptions { adapter, location };
    let text = crate::report::dbt::render_sources(&loaded.config, &options);
    // With the sources file on stdout, the written paths go to stderr.
    let paths_on_stdout = out.is_some();
    let write = |path: PathBuf, text: &str| -> Result<(), Exit> {
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        match std::fs::create_dir_all(&folder).and_then(|()| std::fs::write(&path, text)) {
            Ok(()) => {
                if paths_on_stdout {
                    println!("{}", path.display());
                } else {
                    eprintln!("{}", path.display());
                }
                Ok(())
            }
            Err(error) => Err(fail(
                format_args!("cannot write {}: {error}", path.display()),
                Exit::Failure,
            )),
        }
    };
    match out {
        None => print!("{text}"),
        Some(folder) => {
            if let Err(exit) = write(folder.join(format!("{}.yml", loaded.config.source.name)), &text) {
                return exit;
            }
        }
    }
    if let Some(folder) = staging {
        for file in crate::report::dbt::render_staging(&loaded.config) {
            if let Err(exit) = write(folder.join(&file.name), &file.text) {
                return exit;
            }
        }
    }
    Exit::Succeeded
}

/// `landfall plan`: the range cut into windows, checked against the config's incremental
/// streams (each must carry the bounds in its cursor format), printed as one JSON array.
fn plan_windows(plan: args::PlanArgs) -> Exit {
    let loaded = match load(plan.config, Resolve::SyntaxOnly) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let instant = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|instant| instant.with_timezone(&chrono::Utc))
            .expect("clap checked the RFC 3339 form")
    };
    let windows = match extract::windows::backfill_windows(instant(&plan.start), instant(&plan.end), plan.step) {
        Ok(windows) => windows,
        Err(error) => return fail(error, Exit::Usage),
    };
    let config = &loaded.config;
    for name in &plan.stream {
        if config.stream(name).is_none() {
            return fail(format_args!("unknown stream `{name}`"), Exit::Usage);
        }
    }
    let checked = config
        .streams
        .iter()
        .filter(|stream| plan.stream.is_empty() || plan.stream.contains(&stream.name));
    for stream in checked {
        let Some(incremental) = &stream.incremental else {
            continue;
        };
        let format = incremental.cursor_format();
        if let Err(error) = format.parse(&plan.start) {
            return fail(
                format_args!("stream `{}` cannot be run in windows: {error}", stream.name),
                Exit::Usage,
            );
        }
    }
    let text = |instant: chrono::DateTime<chrono::Utc>| instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let windows: Vec<serde_json::Value> = windows
        .into_iter()
        .map(|(start, end)| serde_json::json!({"start": text(start), "end": text(end)}))
        .collect();
    println!("{}", serde_json::Value::Array(windows));
    Exit::Succeeded
}

/// On SIGTERM or SIGINT: cancel the run so it stores what it read and writes its manifest;
/// if that takes longer than the grace period, exit anyway (exit 75: safe to retry, the
/// checkpoint never passed unstored data).
async fn stop_on_signal(
    cancel: tokio_util::sync::CancellationToken,
    grace: std::time::Duration,
    events: crate::observe::events::Events,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return;
    };
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    events.run_cancelled(name, grace.as_secs_f64());
    cancel.cancel();
    tokio::time::sleep(grace).await;
    eprintln!("landfall: grace period of {grace:?} after {name} elapsed; exiting before the run finished");
    std::process::exit(i32::from(Exit::Transient.code()));
}

/// The run's OpenLineage emitter, when `--openlineage-url` / `--openlineage-file` (or
/// their environment variables) ask for one. Invalid lineage settings are usage errors.
fn lineage(
    run: &args::RunArgs,
    loaded: &LoadedConfig,
    run_id: &str,
    events: &crate::observe::events::Events,
) -> Result<Option<crate::report::openlineage::RunLineage>, crate::report::openlineage::LineageError> {
    let env = |name: &str| std::env::var(name).ok();
    let config = crate::report::openlineage::LineageConfig::from_env(
        run.openlineage_url.as_deref(),
        run.openlineage_file.clone(),
        &env,
    )?;
    Ok(config.map(|config| {
        crate::report::openlineage::RunLineage::new(config, &loaded.config, &run.stream, run_id, events.clone())
    }))
}

fn write_failed_xcom(
    path: Option<&Path>,
    source: &str,
    run_id: Option<&str>,
    exit: Exit,
    code: ErrorCode,
    message: &str,
) {
    if let Some(path) = path {
        let record = ErrorRecord {
            code: code.as_str().to_owned(),
            message: crate::redact::scrub(message).into_owned(),
            retryable: exit == Exit::Transient,
        };
        if let Err(error) = crate::report::xcom::Summary::failed(source, run_id, exit.code(), record).write(path) {
            eprintln!("landfall: cannot write --xcom-output {}: {error}", path.display());
        }
    }
}

async fn state(action: StateAction) -> Exit {
    let (config, stream) = match &action {
        StateAction::Show { config, stream }
        | StateAction::Reset { config, stream }
        | StateAction::ForgetJob { config, stream }
        | StateAction::Set { config, stream, .. } => (config.clone(), stream.clone()),
    };
    let loaded = match load(config, Resolve::References) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    if loaded.config.stream(&stream).is_none() {
        return fail(format_args!("unknown stream `{stream}`"), Exit::Usage);
    }
    let landing = match Landing::open(&loaded.config.landing) {
        Ok(landing) => landing,
        Err(error) => return fail(&error, Exit::for_error(error.code(), error.retryable())),
    };
    // A value the stream's cursor type cannot read is refused: it would reach the API.
    let action = match action {
        StateAction::Set { config, stream, value } => {
            match loaded.config.stream(&stream).and_then(|s| s.incremental.as_ref()) {
                Some(incremental) => {
                    let format = incremental.cursor_format();
                    match format.parse(&value) {
                        Ok(cursor) => StateAction::Set {
                            config,
                            stream,
                            value: format.render(&cursor),
                        },
                        Err(error) => return fail(format_args!("--value for stream `{stream}`: {error}"), Exit::Usage),
                    }
                }
                None => StateAction::Set { config, stream, value },
            }
        }
        other => other,
    };
    let store = StateStore::new(landing, &loaded.config.source.name);
    let operator_run = format!("operator-{}", uuid::Uuid::now_v7());
    let result = match action {
        StateAction::Show { .. } => store.load(&stream).await.map(|state| {
            println!("{}", serde_json::to_string_pretty(&state).expect("state serializes"));
        }),
        StateAction::Set { value, .. } => store.set(&stream, &value, &operator_run).await.map(|state| {
            println!("{}", serde_json::to_string_pretty(&state).expect("state serializes"));
        }),
        StateAction::ForgetJob { .. } => match store.load(&stream).await {
            Ok(Some(state)) if state.async_job.is_some() => {
                let job = state.async_job.map(|job| job.id).unwrap_or_default();
                store
                    .set_async_job(&stream, None, &operator_run, &crate::state::lease::Unfenced)
                    .await
                    .map(|()| println!("async job {job} of {stream} forgotten; the next run creates a new job"))
            }
            Ok(_) => {
                println!("stream {stream} holds no async job");
                Ok(())
            }
            Err(error) => Err(error),
        },
        StateAction::Reset { .. } => store.reset(&stream).await.map(|previous| {
            println!(
                "state of {stream} reset; previous kept as {stream}.json.prev: {}",
                serde_json::to_string(&previous).expect("state serializes")
            );
        }),
    };
    match result {
        Ok(()) => Exit::Succeeded,
        Err(error) => fail(&error, Exit::for_error(error.code(), error.retryable())),
    }
}

async fn orphans(config: Option<PathBuf>, delete: bool, older_than: std::time::Duration) -> Exit {
    let loaded = match load(config, Resolve::References) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let landing = match Landing::open(&loaded.config.landing) {
        Ok(landing) => landing,
        Err(error) => return fail(&error, Exit::for_error(error.code(), error.retryable())),
    };
    match crate::cli::orphans::orphans(&landing, &loaded.config.source.name, older_than, delete).await {
        Ok(report) => {
            println!(
                "{}",
                crate::redact::scrub(&serde_json::to_string_pretty(&report).expect("report serializes"))
            );
            Exit::Succeeded
        }
        Err(error) => fail(&error, Exit::for_error(error.code(), error.retryable())),
    }
}

async fn demo(landing: PathBuf, serve: bool, port: u16) -> Exit {
    let api = match crate::demo::api::SampleApi::start(port).await {
        Ok(api) => api,
        Err(error) => return fail(format_args!("cannot start the sample API: {error}"), Exit::Failure),
    };
    if serve {
        println!("listening on {}", api.url());
        let _ = tokio::signal::ctrl_c().await;
        api.stop().await;
        return Exit::Succeeded;
    }
    let folder = crate::demo::absolute(&landing);
    let loaded = match crate::demo::config(&api.url(), &folder) {
        Ok(loaded) => loaded,
        Err(error) => return fail(format_args!("demo config: {error}"), Exit::Failure),
    };
    let options = RunOptions {
        telemetry: crate::observe::telemetry::Telemetry::for_stderr(crate::observe::progress::ProgressMode::Auto),
        ..RunOptions::default()
    };
    let outcome = extract::run(&loaded, options).await;
    api.stop().await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => return fail(&error, Exit::for_error(error.code(), error.retryable())),
    };
    println!(
        "\nLandfall demo: {} run {}",
        outcome.manifest.status.as_str(),
        outcome.manifest.run_id
    );
    for stream in &outcome.manifest.streams {
        println!(
            "  {:<10} {:>6} records in {} part(s), {} pages, cursor_end {}",
            stream.name,
            stream.rows_written,
            stream.files.len(),
            stream.pages,
            stream.cursor_end.as_deref().unwrap_or("-")
        );
    }
    let source = &outcome.manifest.source_system;
    println!("\nLanded under {}/{source}/", folder.display());
    println!("Manifest:     {}", outcome.manifest_url);
    println!("\nLook at it:");
    println!("  find {} -type f | sort", folder.display());
    println!(
        "  zcat {}/{source}/customers/*/*/part-00000.jsonl.gz | head -n 2",
        folder.display()
    );
    println!("  cat {}/{source}/_manifests/*/*.json", folder.display());
    println!("  cat {}/{source}/_state/customers.json", folder.display());
    println!("Run it again: incremental streams resume from their checkpoints.");
    outcome.exit
}
