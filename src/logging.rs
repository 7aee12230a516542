//! Log setup: `tracing` events to stderr, JSON when stderr is not a terminal (or
//! `LANDFALL_LOG_FORMAT=json`), readable text otherwise; filtered by `LANDFALL_LOG`
//! (`info` by default, e.g. `LANDFALL_LOG=debug`). Every line passes through the
//! redaction layer before it is written, and clears the progress line first
//! ([`crate::progress`]).

use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// A writer that scrubs registered secrets from everything written through it.
pub struct ScrubbingWriter<W>(W);

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(crate::redact::scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

struct ScrubbingStderr;

impl<'a> MakeWriter<'a> for ScrubbingStderr {
    type Writer = ScrubbingWriter<io::StderrLock<'static>>;

    fn make_writer(&'a self) -> Self::Writer {
        let mut stderr = io::stderr().lock();
        crate::progress::clear_stderr_line(&mut stderr);
        ScrubbingWriter(stderr)
    }
}

/// Whether [`init`] chose JSON logs.
static JSON_LOGS: OnceLock<bool> = OnceLock::new();

/// Whether the logs are JSON (`true` before [`init`] ran, the safe assumption for
/// anything that draws on stderr).
pub fn json_logs() -> bool {
    *JSON_LOGS.get().unwrap_or(&true)
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init() {
    let filter = EnvFilter::try_from_env("LANDFALL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("LANDFALL_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !io::stderr().is_terminal(),
    };
    let _ = JSON_LOGS.set(json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbingStderr)
        .with_target(false);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
