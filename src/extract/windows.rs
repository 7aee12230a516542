//! Incremental windows: the lower and upper bounds each request of a stream carries, and
//! the slicing of a long window into `step`-sized sub-windows.

use chrono::{DateTime, Utc};

use crate::config::IncrementalConfig;
use crate::cursor;

/// One window of an incremental stream (both bounds optional).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub lower: Option<String>,
    pub upper: Option<String>,
}

/// Why windows could not be planned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WindowError {
    #[error("incremental.step needs timestamp bounds, but `{0}` is not an RFC 3339 timestamp")]
    NotATimestamp(String),
}

fn timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

fn format(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The lower bound a stream starts from: an explicit `--start`, else the checkpoint minus
/// `lookback` (unless a full refresh), else `incremental.start`.
pub fn lower_bound(
    incremental: &IncrementalConfig,
    window_start: Option<&str>,
    checkpoint: Option<&str>,
    full_refresh: bool,
) -> String {
    match (window_start, checkpoint, full_refresh) {
        (Some(start), _, _) => start.to_owned(),
        (None, Some(checkpoint), false) => cursor::minus(checkpoint, incremental.lookback.0),
        _ => incremental.start.clone(),
    }
}

/// Plans the windows of a run: one window from `lower` to `upper`, or `step`-sized slices of
/// it (the last one open-ended when no upper bound was given).
pub fn plan(
    incremental: &IncrementalConfig,
    lower: &str,
    upper: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Window>, WindowError> {
    let Some(step) = incremental.step else {
        return Ok(vec![Window {
            lower: Some(lower.to_owned()),
            upper: upper.map(str::to_owned),
        }]);
    };
    let start = timestamp(lower).ok_or_else(|| WindowError::NotATimestamp(lower.to_owned()))?;
    let end = match upper {
        Some(upper) => timestamp(upper).ok_or_else(|| WindowError::NotATimestamp(upper.to_owned()))?,
        None => now,
    };
    let step = chrono::Duration::from_std(step.0).unwrap_or(chrono::Duration::MAX);
    let mut windows = Vec::new();
    let mut from = start;
    while from < end {
        let to = from.checked_add_signed(step).filter(|to| *to < end).unwrap_or(end);
        let last = to >= end;
        windows.push(Window {
            lower: Some(if windows.is_empty() {
                lower.to_owned()
            } else {
                format(from)
            }),
            upper: match (last, upper) {
                (true, Some(upper)) => Some(upper.to_owned()),
                (true, None) => None,
                (false, _) => Some(format(to)),
            },
        });
        from = to;
    }
    if windows.is_empty() {
        windows.push(Window {
            lower: Some(lower.to_owned()),
            upper: upper.map(str::to_owned),
        });
    }
    Ok(windows)
}

/// Whether `value` lies in the window `[lower, upper)`.
pub fn contains(window: &Window, value: &str) -> bool {
    window
        .lower
        .as_deref()
        .is_none_or(|lower| cursor::compare(value, lower).is_ge())
        && window
            .upper
            .as_deref()
            .is_none_or(|upper| cursor::compare(value, upper).is_lt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn incremental(step: Option<u64>) -> IncrementalConfig {
        IncrementalConfig {
            cursor_field: "updated_at".into(),
            param: "since".into(),
            end_param: Some("until".into()),
            start: "2024-01-01T00:00:00Z".into(),
            lookback: HumanDuration::from_secs(3600),
            sorted: true,
            step: step.map(HumanDuration::from_secs),
            client_side_filter: false,
        }
    }

    #[test]
    fn lower_bound_precedence() {
        let config = incremental(None);
        assert_eq!(
            lower_bound(
                &config,
                Some("2024-05-01T00:00:00Z"),
                Some("2024-06-01T00:00:00Z"),
                false
            ),
            "2024-05-01T00:00:00Z"
        );
        assert_eq!(
            lower_bound(&config, None, Some("2024-06-01T00:00:00Z"), false),
            "2024-05-31T23:00:00Z"
        );
        assert_eq!(
            lower_bound(&config, None, Some("2024-06-01T00:00:00Z"), true),
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(lower_bound(&config, None, None, false), "2024-01-01T00:00:00Z");
    }

    #[test]
    fn steps_slice_the_window() {
        let config = incremental(Some(86_400));
        let now = Utc::now();
        let windows = plan(&config, "2024-01-01T00:00:00Z", Some("2024-01-03T12:00:00Z"), now).unwrap();
        let bounds: Vec<(Option<&str>, Option<&str>)> = windows
            .iter()
            .map(|w| (w.lower.as_deref(), w.upper.as_deref()))
            .collect();
        assert_eq!(
            bounds,
            [
                (Some("2024-01-01T00:00:00Z"), Some("2024-01-02T00:00:00Z")),
                (Some("2024-01-02T00:00:00Z"), Some("2024-01-03T00:00:00Z")),
                (Some("2024-01-03T00:00:00Z"), Some("2024-01-03T12:00:00Z")),
            ]
        );
        let open = plan(
            &config,
            "2024-01-01T00:00:00Z",
            None,
            timestamp("2024-01-02T06:00:00Z").unwrap(),
        )
        .unwrap();
        assert_eq!(open.len(), 2);
        assert_eq!(open[1].upper, None);
        assert!(plan(&config, "12345", None, now).is_err());
    }

    #[test]
    fn window_membership_is_half_open() {
        let window = Window {
            lower: Some("2024-01-01T00:00:00Z".into()),
            upper: Some("2024-01-02T00:00:00Z".into()),
        };
        assert!(contains(&window, "2024-01-01T00:00:00Z"));
        assert!(contains(&window, "2024-01-01T23:59:59Z"));
        assert!(!contains(&window, "2024-01-02T00:00:00Z"));
        assert!(!contains(&window, "2023-12-31T23:59:59Z"));
    }
}
