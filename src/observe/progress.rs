//! The progress display: on a terminal, one line for the running stream (records, pages,
//! rate, and a percentage when the API announces a total), refreshed four times a second
//! and kept as a summary line when the stream ends. Nothing of it is drawn when stderr is
//! not a terminal or the logs are JSON, so it never mixes with machine-read logs.
//!
//! The hot path only bumps counters ([`crate::observe::telemetry`]); drawing happens on a
//! separate thread. Log lines and the progress line share stderr: the log writer clears
//! the progress line before it writes ([`clear_stderr_line`]), and the next refresh draws
//! it again below the log.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::observe::telemetry::StreamLive;

/// How often the line is redrawn.
const REFRESH: Duration = Duration::from_millis(250);

/// Erases the current terminal line and returns the cursor to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// Whether a progress line is on stderr now (guarded by the stderr lock).
static STDERR_LINE_SHOWN: AtomicBool = AtomicBool::new(false);

/// `--progress`: whether to draw the progress display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// On a terminal with text logs (the default).
    #[default]
    Auto,
    /// Never.
    Never,
}

/// Whether the display is drawn: `auto` draws only when stderr is a terminal and logs are
/// text.
pub fn enabled(mode: ProgressMode, stderr_is_terminal: bool, json_logs: bool) -> bool {
    match mode {
        ProgressMode::Auto => stderr_is_terminal && !json_logs,
        ProgressMode::Never => false,
    }
}

/// How much a stream has to read, as the API announced it (its pagination scheme reads it:
/// `pagination::expected`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Records in all (offset pagination's `total_path`).
    Records(u64),
    /// Pages in all (page number pagination's `total_pages_path`).
    Pages(u64),
}

/// One line's worth of a stream's progress.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    pub stream: &'a str,
    pub records: u64,
    pub pages: u64,
    pub elapsed: Duration,
    pub expected: Option<Expected>,
    /// Set once the stream ended (`succeeded`, `failed`, ...).
    pub status: Option<&'a str>,
}

/// `12345` as `12,345`.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// Renders a snapshot as one line of at most `width - 1` characters (so it never wraps).
pub fn render(snapshot: &Snapshot<'_>, width: usize) -> String {
    let seconds = snapshot.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        (snapshot.records as f64 / seconds).round() as u64
    } else {
        0
    };
    let percent = snapshot.expected.and_then(|expected| {
        let (done, total) = match expected {
            Expected::Records(total) => (snapshot.records, total),
            Expected::Pages(total) => (snapshot.pages, total),
        };
        (total > 0).then(|| (done.saturating_mul(100) / total).min(100))
    });
    let mut line = format!(
        "{} {} records · {} pages",
        snapshot.stream,
        thousands(snapshot.records),
        thousands(snapshot.pages)
    );
    match snapshot.status {
        None => {
            line.push_str(&format!(" · {} rec/s", thousands(rate)));
            if let Some(percent) = percent {
                line.push_str(&format!(" · {percent}%"));
            }
        }
        Some(status) => {
            line = format!("{line} · {seconds:.1}s · {status}");
        }
    }
    let limit = width.saturating_sub(1).max(10);
    if line.chars().count() > limit {
        line = line.chars().take(limit - 1).collect::<String>() + "…";
    }
    line
}

/// Where the display draws.
#[derive(Debug)]
enum Sink {
    Stderr,
    /// For tests: what would have been drawn.
    Memory(Mutex<Vec<u8>>, AtomicBool),
}

#[derive(Debug)]
struct Shared {
    current: Mutex<Option<(String, Arc<StreamLive>)>>,
    width: usize,
    sink: Sink,
}

impl Shared {
    /// Replaces the progress line with `text`; `keep_open` leaves it to be redrawn, else
    /// it ends with a newline and stays as a summary.
    fn draw(&self, text: &str, keep_open: bool) {
        let suffix = if keep_open { "" } else { "\n" };
        match &self.sink {
            Sink::Stderr => {
                let mut stderr = io::stderr().lock();
                let _ = write!(stderr, "{CLEAR_LINE}{text}{suffix}");
                let _ = stderr.flush();
                STDERR_LINE_SHOWN.store(keep_open, Ordering::SeqCst);
            }
            Sink::Memory(buffer, shown) => {
                let mut buffer = buffer.lock().expect("buffer lock");
                let _ = write!(buffer, "{CLEAR_LINE}{text}{suffix}");
                shown.store(keep_open, Ordering::SeqCst);
            }
        }
    }

    fn tick(&self) {
        let current = self.current.lock().expect("progress lock");
        if let Some((stream, live)) = current.as_ref() {
            let line = render(
                &Snapshot {
                    stream,
                    records: live.records(),
                    pages: live.pages(),
                    elapsed: live.elapsed(),
                    expected: live.expected(),
                    status: None,
                },
                self.width,
            );
            self.draw(&line, true);
        }
    }
}

/// The progress display of a run; cheap to clone.
#[derive(Clone, Debug)]
pub struct Progress {
    shared: Arc<Shared>,
}

impl Progress {
    /// A display on stderr, redrawn by a background thread that ends with the display.
    pub fn stderr() -> Self {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|columns| columns.parse().ok())
            .unwrap_or(80);
        let progress = Self {
            shared: Arc::new(Shared {
                current: Mutex::new(None),
                width,
                sink: Sink::Stderr,
            }),
        };
        let weak: Weak<Shared> = Arc::downgrade(&progress.shared);
        std::thread::Builder::new()
            .name("landfall-progress".to_owned())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    shared.tick();
                    drop(shared);
                    std::thread::sleep(REFRESH);
                }
            })
            .expect("the progress thread starts");
        progress
    }

    /// A display into memory, drawn only by [`Progress::tick`] (tests).
    pub fn in_memory(width: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: Mutex::new(None),
                width,
                sink: Sink::Memory(Mutex::default(), AtomicBool::new(false)),
            }),
        }
    }

    /// Draws the running stream's line now.
    pub fn tick(&self) {
        self.shared.tick();
    }

    /// What an in-memory display drew.
    pub fn drawn(&self) -> String {
        match &self.shared.sink {
            Sink::Memory(buffer, _) => String::from_utf8_lossy(&buffer.lock().expect("buffer lock")).into_owned(),
            Sink::Stderr => String::new(),
        }
    }

    /// `stream` started: its line is drawn from now on.
    pub fn begin(&self, stream: &str, live: Arc<StreamLive>) {
        *self.shared.current.lock().expect("progress lock") = Some((stream.to_owned(), live));
    }

    /// `stream` ended: its line is drawn a last time with `status` and kept.
    pub fn end(&self, stream: &str, status: &str) {
        let mut current = self.shared.current.lock().expect("progress lock");
        let Some((name, live)) = current.take_if(|(name, _)| name == stream) else {
            return;
        };
        let line = render(
            &Snapshot {
                stream: &name,
                records: live.records(),
                pages: live.pages(),
                elapsed: live.elapsed(),
                expected: live.expected(),
                status: Some(status),
            },
            self.shared.width,
        );
        self.shared.draw(&line, false);
    }
}

/// Called by the log writer, holding the stderr lock, before it writes a log line: erases
/// an open progress line so the log starts on a clean line.
pub fn clear_stderr_line(stderr: &mut impl Write) {
    if STDERR_LINE_SHOWN.swap(false, Ordering::SeqCst) {
        let _ = stderr.write_all(CLEAR_LINE.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::telemetry::Telemetry;

    fn snapshot(records: u64, pages: u64, expected: Option<Expected>) -> Snapshot<'static> {
        Snapshot {
            stream: "orders",
            records,
            pages,
            elapsed: Duration::from_secs(4),
            expected,
            status: None,
        }
    }

    #[test]
    fn renders_records_pages_and_rate() {
        let line = render(&snapshot(12_345, 124, None), 120);
        assert_eq!(line, "orders 12,345 records · 124 pages · 3,086 rec/s");
    }

    #[test]
    fn renders_a_percentage_from_the_announced_total() {
        let by_records = render(&snapshot(450, 5, Some(Expected::Records(1000))), 120);
        assert!(by_records.ends_with(" · 45%"), "{by_records}");
        let by_pages = render(&snapshot(450, 3, Some(Expected::Pages(4))), 120);
        assert!(by_pages.ends_with(" · 75%"), "{by_pages}");
        // A total smaller than what arrived is capped; a zero total shows nothing.
        assert!(render(&snapshot(1200, 12, Some(Expected::Records(1000))), 120).ends_with(" · 100%"));
        assert!(!render(&snapshot(0, 1, Some(Expected::Records(0))), 120).contains('%'));
    }

    #[test]
    fn a_finished_line_shows_status_and_time_instead_of_rate() {
        let mut done = snapshot(10, 1, Some(Expected::Records(10)));
        done.status = Some("succeeded");
        assert_eq!(render(&done, 120), "orders 10 records · 1 pages · 4.0s · succeeded");
    }

    #[test]
    fn lines_never_wrap() {
        let mut long = snapshot(1, 1, None);
        let name = "s".repeat(200);
        long.stream = &name;
        let line = render(&long, 40);
        assert_eq!(line.chars().count(), 39);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn drawn_only_on_a_terminal_with_text_logs() {
        assert!(enabled(ProgressMode::Auto, true, false));
        assert!(!enabled(ProgressMode::Auto, false, false));
        assert!(!enabled(ProgressMode::Auto, true, true));
        assert!(!enabled(ProgressMode::Never, true, false));
    }

    #[test]
    fn draws_the_running_stream_and_keeps_a_summary_line() {
        let progress = Progress::in_memory(100);
        let telemetry = Telemetry::with_progress(progress.clone());
        telemetry.stream_started("orders");
        telemetry.page("orders", 100);
        telemetry.expect("orders", Some(Expected::Records(400)));
        progress.tick();
        telemetry.page("orders", 100);
        telemetry.stream_finished("orders", "succeeded");
        // Nothing is running any more: a tick draws nothing.
        progress.tick();
        let drawn = progress.drawn();
        let frames: Vec<&str> = drawn.split(CLEAR_LINE).filter(|frame| !frame.is_empty()).collect();
        assert_eq!(frames.len(), 2, "{drawn:?}");
        assert!(frames[0].starts_with("orders 100 records · 1 pages · "), "{drawn:?}");
        assert!(frames[0].ends_with(" · 25%"), "{drawn:?}");
        assert!(frames[1].starts_with("orders 200 records · 2 pages · "), "{drawn:?}");
        assert!(frames[1].ends_with(" · succeeded\n"), "{drawn:?}");
    }

    #[test]
    fn ending_another_stream_leaves_the_running_one_alone() {
        let progress = Progress::in_memory(100);
        let telemetry = Telemetry::with_progress(progress.clone());
        telemetry.stream_started("orders");
        telemetry.stream_finished("customers", "failed");
        assert_eq!(progress.drawn(), "");
        progress.tick();
        assert!(progress.drawn().contains("orders 0 records"));
    }
}
