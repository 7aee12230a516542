//! What a run tells the people watching it while it runs: the events catalogue
//! ([`events`], the only place that logs above debug), the log formats and redaction layer
//! ([`logging`]), live counters and spans ([`telemetry`]) and the terminal progress display
//! ([`progress`]).

pub mod events;
pub mod logging;
pub mod progress;
pub mod telemetry;
