//! Log setup: `tracing` events to stderr in the format `--log-format` (or
//! `LANDFALL_LOG_FORMAT`) names: `auto` (the default) writes readable, coloured text when
//! stderr is a terminal and JSON lines otherwise; `json` and `text` force one. Both formats
//! carry the same events with the same fields. Filtered by `LANDFALL_LOG` (`info` by
//! default, e.g. `LANDFALL_LOG=debug`). Every formatted line passes through the redaction
//! layer ([`crate::redact::scrub`], which also masks a secret's JSON- and Debug-escaped
//! forms) before it is written, and clears the progress line first ([`crate::observe::progress`]).

use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// `--log-format`: how log events are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise (the default).
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Readable text, coloured when stderr is a terminal and `NO_COLOR` is unset.
    Text,
}

impl LogFormat {
    /// Whether this format writes JSON, given whether stderr is a terminal.
    pub fn is_json(self, stderr_is_terminal: bool) -> bool {
        match self {
            Self::Auto => !stderr_is_terminal,
            Self::Json => true,
            Self::Text => false,
        }
    }
}

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

/// Hands out scrubbing writers over what `make` gives.
struct Scrubbing<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Scrubbing<M> {
    type Writer = ScrubbingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter(self.0.make_writer())
    }
}

struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = io::StderrLock<'static>;

    fn make_writer(&'a self) -> Self::Writer {
        let mut stderr = io::stderr().lock();
        crate::observe::progress::clear_stderr_line(&mut stderr);
        stderr
    }
}

/// Whether [`init`] chose JSON logs.
static JSON_LOGS: OnceLock<bool> = OnceLock::new();

/// Whether the logs are JSON (`true` before [`init`] ran, the safe assumption for
/// anything that draws on stderr).
pub fn json_logs() -> bool {
    *JSON_LOGS.get().unwrap_or(&true)
}

/// The subscriber for `json` or text logs written through `writer`, always scrubbed.
fn subscriber<W>(json: bool, ansi: bool, filter: EnvFilter, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Scrubbing(writer))
        .with_target(false);
    if json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        )
    } else {
        Box::new(builder.with_ansi(ansi).finish())
    }
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LANDFALL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = io::stderr().is_terminal();
    let json = format.is_json(terminal);
    let _ = JSON_LOGS.set(json);
    // Colour only for a person at a terminal: never in a file or a pipe, nor with NO_COLOR
    // (https://no-color.org).
    let ansi = terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let _ = subscriber(json, ansi, filter, Stderr).try_init();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn logged(json: bool, ansi: bool, emit: impl Fn()) -> String {
        let captured = Captured::default();
        // Debug level: log macros above debug belong in src/observe/events.rs only.
        let subscriber = subscriber(json, ansi, EnvFilter::new("debug"), captured.clone());
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn auto_is_text_on_a_terminal_and_json_elsewhere() {
        assert!(!LogFormat::Auto.is_json(true));
        assert!(LogFormat::Auto.is_json(false));
        assert!(LogFormat::Json.is_json(true));
        assert!(!LogFormat::Text.is_json(false));
    }

    /// A secret with quotes and a backslash is escaped differently by JSON (`\"`) and by
    /// Debug formatting; neither escaped form may slip past the redaction layer.
    #[test]
    fn secrets_are_masked_in_every_format_even_when_escaped() {
        let secret = r#"tok"en\with-quote-and-slash-77"#;
        crate::redact::register(secret);
        let emit = || {
            tracing::debug!(event = "request_retried", header = %secret, debug = ?secret, "retrying {secret}");
        };
        for (json, ansi) in [(true, false), (false, false), (false, true)] {
            let text = logged(json, ansi, emit);
            assert!(text.contains("request_retried"), "{text}");
            assert!(
                !text.contains("with-quote-and-slash-77"),
                "json {json} ansi {ansi}: {text}"
            );
            assert!(text.contains(crate::redact::MASK), "{text}");
        }
    }

    #[test]
    fn text_and_json_carry_the_same_fields() {
        let emit = || {
            tracing::debug!(
                event = "page_fetched",
                run_id = "r1",
                stream = "items",
                page = 2_u64,
                "page fetched"
            )
        };
        let json: serde_json::Value = serde_json::from_str(logged(true, false, emit).trim()).unwrap();
        let text = logged(false, false, emit);
        for (name, value) in json.as_object().unwrap() {
            if name == "timestamp" || name == "level" {
                continue;
            }
            if name == "message" {
                assert!(text.contains(value.as_str().unwrap()), "{text}");
                continue;
            }
            let shown = value.as_str().map_or_else(|| value.to_string(), ToOwned::to_owned);
            assert!(
                text.contains(&format!("{name}={shown}")) || text.contains(&format!("{name}=\"{shown}\"")),
                "{name} in {text}"
            );
        }
        assert!(!text.contains('\x1b'), "no colour without a terminal: {text:?}");
        assert!(logged(false, true, emit).contains('\x1b'), "colour on a terminal");
    }
}
