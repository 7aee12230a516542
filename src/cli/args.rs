//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("LANDFALL_GIT_SHA"), ")");

/// Landfall lands REST API data as raw JSONL with provenance in object storage.
#[derive(Debug, Parser)]
#[command(name = "landfall", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr: `auto` writes coloured text when stderr is a terminal and JSON
    /// lines otherwise; `json` and `text` force one. Same events and fields in both.
    #[arg(
        long,
        global = true,
        value_enum,
        ignore_case = true,
        default_value = "auto",
        env = "LANDFALL_LOG_FORMAT"
    )]
    pub log_format: crate::observe::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the `run` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the config's JSON Schema (Airbyte connector-spec conventions).
    Spec,
    /// Parse and validate a config without network access.
    Validate {
        #[arg(long, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        /// Check reference syntax only; do not resolve ${env:..} / ${file:..}.
        #[arg(long)]
        no_resolve: bool,
    },
    /// Test connectivity: one request per stream and a probe write/read/list/delete.
    Check {
        #[arg(long, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Extract and land the config's streams.
    Run(RunArgs),
    /// Print the windows of a backfill as JSON (`[{"start", "end"}, ...]`), for Airflow
    /// dynamic task mapping: each window is one `landfall run --start --end`.
    Plan(PlanArgs),
    /// Inspect or change a stream's checkpoint.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Write the dbt sources file of a config (to stdout, or DIR/<source>.yml), and with
    /// --staging its staging models.
    DbtSources {
        #[arg(long, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        /// Folder to write `<source>.yml` into (e.g. dbt/models/sources).
        #[arg(long)]
        out: Option<PathBuf>,
        /// dbt adapter: duckdb reads the files directly; the warehouses get
        /// dbt-external-tables `external:` blocks (run `stage_external_sources` before builds).
        #[arg(long, default_value = "duckdb", value_parser = clap::builder::PossibleValuesParser::new(crate::report::dbt::Adapter::NAMES))]
        adapter: String,
        /// Landing root as the warehouse reads it (s3://..., gs://..., abfss://..., or a
        /// Snowflake stage @db.schema.stage). Default: var landfall_external_root, else
        /// LANDFALL_LANDING_URL (Snowflake: LANDFALL_SNOWFLAKE_STAGE), read by dbt at parse time.
        #[arg(long, value_name = "ROOT")]
        location: Option<String>,
        /// Also write the staging models (stg_<source>__<stream>.sql and _stg_<source>.yml)
        /// into DIR (e.g. dbt/models/staging/<source>).
        #[arg(long, value_name = "DIR")]
        staging: Option<PathBuf>,
    },
    /// List parts, dead-letter parts and staged uploads that no run manifest covers (JSON);
    /// with --delete, remove those older than --older-than.
    Orphans {
        #[arg(long, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        /// Delete the orphans older than --older-than (default: only list them).
        #[arg(long)]
        delete: bool,
        /// Only orphans at least this old count as deletable; younger ones may belong to a
        /// run in progress. Keep it longer than the longest run.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        older_than: std::time::Duration,
    },
    /// Read a database source's catalog (schemas, tables and views, columns with their
    /// types, primary keys, cursor candidates) as JSON; with --write-config, also a starter
    /// config with a stream per table that has a primary key.
    Discover(DiscoverArgs),
    /// Propose a connector config from one page of an API: records_path, primary key,
    /// pagination and incremental cursor, written as commented YAML (to -o FILE or stdout).
    Init(InitArgs),
    /// Serve a sample API on loopback and land it into a local folder.
    Demo {
        /// Landing folder.
        #[arg(long, default_value = "landing")]
        landing: PathBuf,
        /// Only serve the sample API (prints `listening on URL`) until interrupted.
        #[arg(long)]
        serve: bool,
        /// Port for the sample API (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long, env = "LANDFALL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Run only these streams (repeatable); default all.
    #[arg(long)]
    pub stream: Vec<String>,
    /// Use this run id instead of a fresh UUIDv7. It must be a UUID (it becomes the path
    /// segment `run_id=...`): anything else is a usage error (exit 2) before the run starts.
    #[arg(long)]
    pub run_id: Option<uuid::Uuid>,
    /// Lower bound of an explicit window (e.g. the Airflow data interval start).
    #[arg(long)]
    pub start: Option<String>,
    /// Upper bound of an explicit window.
    #[arg(long)]
    pub end: Option<String>,
    /// Step --start back by each stream's incremental.lookback (the DAG's interval mode);
    /// without --start it changes nothing.
    #[arg(long)]
    pub start_lookback: bool,
    /// Start of the orchestrator's data interval, recorded in the manifest for audit; it
    /// does not change what is read (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    pub data_interval_start: Option<String>,
    /// End of the orchestrator's data interval, recorded in the manifest for audit (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    pub data_interval_end: Option<String>,
    /// Ignore checkpoints: read incremental streams from `incremental.start`.
    #[arg(long)]
    pub full_refresh: bool,
    /// Write a JSON run summary here (Airflow XCom).
    #[arg(long)]
    pub xcom_output: Option<PathBuf>,
    /// After SIGTERM/SIGINT, how long to spend storing what was read before exiting.
    #[arg(long, default_value = "20s")]
    pub grace_period: crate::settings::HumanDuration,
    /// Take 1/N of the source's rate budget: `source.rate_limit`'s rates, burst and
    /// concurrency divided by N (burst and concurrency at least 1), so N processes run at
    /// once (mapped backfill tasks) together stay within the configured rate. 1 to 1000.
    #[arg(long, value_name = "N", env = "LANDFALL_RATE_SHARE", value_parser = parse_rate_share)]
    pub rate_share: Option<std::num::NonZeroU32>,
    /// Lifetime of a stream's single-writer lease; renewed every third of it. A run killed
    /// without a chance to release its lease blocks the next run of the stream for at most
    /// this long.
    #[arg(long, env = "LANDFALL_LEASE_TTL", default_value = "5m")]
    pub lease_ttl: crate::settings::HumanDuration,
    /// Push the run's metrics to this Prometheus Pushgateway (e.g. http://pushgateway:9091),
    /// one group per source and stream. A failed push is logged, never fails the run.
    #[arg(long, env = "LANDFALL_METRICS_PUSH_URL")]
    pub metrics_push_url: Option<url::Url>,
    /// Write the run's metrics to this file for node exporter's textfile collector
    /// (e.g. /var/lib/node_exporter/textfile/landfall_shop.prom), atomically.
    #[arg(long, env = "LANDFALL_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Send OpenLineage run events (START, COMPLETE, FAIL, ABORT) to this server:
    /// POST {url}/api/v1/lineage.
    #[arg(long, env = "OPENLINEAGE_URL")]
    pub openlineage_url: Option<String>,
    /// Append OpenLineage run events to this file, one JSON event per line.
    #[arg(long, env = "OPENLINEAGE_FILE")]
    pub openlineage_file: Option<PathBuf>,
    /// Progress display on stderr: `auto` draws it when stderr is a terminal and logs are
    /// text; `never` does not.
    #[arg(long, value_enum, default_value = "auto", env = "LANDFALL_PROGRESS")]
    pub progress: crate::observe::progress::ProgressMode,
    /// The longest the run may take (e.g. 50m); a rate-limit wait that would pass it stops
    /// the stream at its last checkpoint with status partial (exit 3). Overrides
    /// source.max_run_duration.
    #[arg(long, value_parser = parse_duration)]
    pub max_duration: Option<std::time::Duration>,
}

/// `source.auth` kinds `init` can write (hmac is configured by hand).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InitAuth {
    None,
    Bearer,
    Basic,
    #[value(name = "api_key", alias = "api-key")]
    ApiKey,
    Oauth2,
}

/// `landfall init`. Secrets are named by environment variable (`--token-env NAME`) and
/// written as `${env:NAME}`; their values are read only to send the one request.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The API root, e.g. https://api.example.com/v1.
    #[arg(long)]
    pub base_url: String,
    /// The endpoint that lists records, relative to --base-url, e.g. /customers.
    #[arg(long)]
    pub path: String,
    /// The source's name ([a-z][a-z0-9_]*). Default: from the host (api.github.com -> github).
    #[arg(long)]
    pub name: Option<String>,
    /// The stream's name. Default: from the path (/v1/customers -> customers).
    #[arg(long)]
    pub stream: Option<String>,
    /// A query parameter of the request (repeatable), e.g. --param per_page=2. A
    /// "changed since" one (since, updated_since, start_time, created[gte], ...) holding a
    /// time becomes the incremental bound; page, offset and size ones become pagination.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A header sent with every request (repeatable), e.g. --header 'Accept: application/json'.
    /// Not for credentials: use the auth flags.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The auth kind. Default: from the auth flags given (none without any).
    #[arg(long, value_enum)]
    pub auth: Option<InitAuth>,
    /// bearer: the variable holding the token.
    #[arg(long, value_name = "ENV")]
    pub token_env: Option<String>,
    /// basic: the user name as text; may contain references (`${env:EMAIL}/token`).
    #[arg(long, conflicts_with = "username_env")]
    pub username: Option<String>,
    /// basic: the variable holding the user name (some APIs take the key as user name).
    #[arg(long, value_name = "ENV")]
    pub username_env: Option<String>,
    /// basic: the variable holding the password.
    #[arg(long, value_name = "ENV")]
    pub password_env: Option<String>,
    /// api_key: the header carrying the key and the variable holding it, e.g. X-Api-Key=API_KEY.
    #[arg(long, value_name = "HEADER=ENV", conflicts_with = "query_env")]
    pub header_env: Option<String>,
    /// api_key: the query parameter carrying the key and the variable holding it, e.g. app_id=APP_ID.
    #[arg(long, value_name = "PARAM=ENV")]
    pub query_env: Option<String>,
    /// oauth2: the token endpoint.
    #[arg(long)]
    pub token_url: Option<String>,
    /// oauth2: the client id (not a secret).
    #[arg(long)]
    pub client_id: Option<String>,
    /// oauth2: the variable holding the client secret.
    #[arg(long, value_name = "ENV")]
    pub client_secret_env: Option<String>,
    /// oauth2: the variable holding a refresh token (the refresh_token flow; without it,
    /// client_credentials).
    #[arg(long, value_name = "ENV")]
    pub refresh_token_env: Option<String>,
    /// oauth2: a scope to request (repeatable).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// Write the config here instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite the -o file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `landfall discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// A config whose `source:` is postgres or mysql (its streams, if any, are not read).
    #[arg(long, env = "LANDFALL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Only this schema (MySQL: database); repeatable. Default: every schema but the system
    /// ones.
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Also write a starter config here: the config's `source:` and `landing:` as written
    /// (references unresolved) and a stream per table that has a primary key.
    #[arg(long, value_name = "FILE")]
    pub write_config: Option<PathBuf>,
    /// Overwrite the --write-config file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[arg(long, env = "LANDFALL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check the windows against these streams only (repeatable); default all.
    #[arg(long)]
    pub stream: Vec<String>,
    /// Start of the range (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    pub start: String,
    /// End of the range, exclusive (RFC 3339).
    #[arg(long, value_parser = parse_instant)]
    pub end: String,
    /// Length of each window (e.g. 1d, 6h); the last one may be shorter.
    #[arg(long, value_parser = parse_duration)]
    pub step: std::time::Duration,
}

fn parse_instant(text: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|_| text.to_owned())
        .map_err(|_| "must be an RFC 3339 timestamp, e.g. 2024-03-01T00:00:00+00:00".to_owned())
}

/// The most processes a source's rate budget is shared among.
pub const MAX_RATE_SHARE: u32 = 1000;

fn parse_rate_share(text: &str) -> Result<std::num::NonZeroU32, String> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|parts| (1..=MAX_RATE_SHARE).contains(parts))
        .and_then(std::num::NonZeroU32::new)
        .ok_or_else(|| {
            format!("must be a whole number from 1 to {MAX_RATE_SHARE}: the number of processes sharing the source's rate_limit")
        })
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = text.parse::<crate::settings::HumanDuration>()?.0;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Print a stream's checkpoint.
    Show {
        #[arg(long, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        stream: String,
    },
    /// Set a stream's checkpoint cursor (the previous one is kept as .prev).
    Set {
        #[arg(long, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        stream: String,
        #[arg(long)]
        value: String,
    },
    /// Remove a stream's checkpoint (kept as .prev) so the next run starts from `start`.
    Reset {
        #[arg(long, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        stream: String,
    },
    /// Forget the asynchronous job (`async_job`) a stream's state holds, keeping its
    /// checkpoint: the next run creates a new job instead of polling that one.
    ForgetJob {
        #[arg(long, env = "LANDFALL_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        stream: String,
    },
}
