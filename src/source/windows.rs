//! Incremental windows: the lower and upper bounds each request of a stream carries, and
//! the slicing of a long window into `step`-sized sub-windows.

use chrono::{DateTime, Utc};

use crate::config::IncrementalConfig;
use crate::cursor::{Cursor, CursorFormat};

/// One window of an incremental stream (both bounds optional), in the stream's format's
/// precision: what the requests carry is exactly these values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub lower: Option<Cursor>,
    pub upper: Option<Cursor>,
}

/// The lower bound a stream starts from: an explicit `--start` (stepped back by `lookback`
/// when `start_lookback`, the DAG's interval mode), else the checkpoint minus `lookback`
/// (unless a full refresh), else `incremental.start`.
pub fn lower_bound(
    incremental: &IncrementalConfig,
    format: &CursorFormat,
    window_start: Option<&Cursor>,
    start_lookback: bool,
    checkpoint: Option<&Cursor>,
    full_refresh: bool,
    configured_start: &Cursor,
) -> Cursor {
    let lookback = incremental.lookback.0;
    let lower = match (window_start, checkpoint, full_refresh) {
        (Some(start), _, _) if start_lookback => format.minus(start, lookback),
        (Some(start), _, _) => start.clone(),
        (None, Some(checkpoint), false) => format.minus(checkpoint, lookback),
        _ => configured_start.clone(),
    };
    format.floor(lower)
}

/// Plans the windows of a run: one window from `lower` to `upper`, or `step`-sized slices of
/// it (the last one open-ended when no upper bound was given). Slices are cut at the
/// format's precision and are contiguous: each starts where the previous one ended.
pub fn plan(
    incremental: &IncrementalConfig,
    format: &CursorFormat,
    lower: &Cursor,
    upper: Option<&Cursor>,
    now: DateTime<Utc>,
) -> Vec<Window> {
    let single = || {
        vec![Window {
            lower: Some(lower.clone()),
            upper: upper.cloned(),
        }]
    };
    let (Some(step), Cursor::Instant(start)) = (incremental.step, lower) else {
        return single();
    };
    let end = match upper {
        Some(Cursor::Instant(upper)) => *upper,
        Some(_) => return single(),
        None => now,
    };
    let step = chrono::Duration::from_std(step.0).unwrap_or(chrono::Duration::MAX);
    // Cut points after the lower bound and before the end, floored and deduplicated (a step
    // shorter than the format's precision would otherwise give empty windows).
    let mut cuts: Vec<Cursor> = Vec::new();
    let mut from = *start;
    while let Some(to) = from.checked_add_signed(step).filter(|to| *to < end) {
        let cut = format.floor(Cursor::Instant(to));
        if cut > *lower && cuts.last().is_none_or(|last| *last < cut) {
            cuts.push(cut);
        }
        from = to;
    }
    let mut windows = Vec::with_capacity(cuts.len() + 1);
    let mut previous = lower.clone();
    for cut in cuts {
        windows.push(Window {
            lower: Some(previous),
            upper: Some(cut.clone()),
        });
        previous = cut;
    }
    windows.push(Window {
        lower: Some(previous),
        upper: upper.cloned(),
    });
    windows
}

/// The most windows `landfall plan` prints: each becomes a mapped task, and more than this
/// is a mistake in `--step` rather than a plan.
pub const MAX_PLANNED_WINDOWS: usize = 10_000;

/// Why `landfall plan` cannot slice a range.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("--end ({end}) must be after --start ({start})")]
    EmptyRange { start: String, end: String },
    #[error("--step {step} cuts the range into more than {MAX_PLANNED_WINDOWS} windows; use a longer --step")]
    TooManyWindows { step: String },
}

/// One backfill window, `[start, end)`.
pub type BackfillWindow = (DateTime<Utc>, DateTime<Utc>);

/// `[start, end)` cut into contiguous `step`-long windows, the last one shorter when `step`
/// does not divide the range: the windows `landfall plan` prints for a backfill that is
/// spread over several processes (Airflow dynamic task mapping).
pub fn backfill_windows(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: std::time::Duration,
) -> Result<Vec<BackfillWindow>, PlanError> {
    if end <= start {
        return Err(PlanError::EmptyRange {
            start: start.to_rfc3339(),
            end: end.to_rfc3339(),
        });
    }
    // A step too long for chrono covers any range in one window.
    let step_length = chrono::Duration::from_std(step).unwrap_or(chrono::Duration::MAX);
    let mut windows = Vec::new();
    let mut from = start;
    while from < end {
        if windows.len() == MAX_PLANNED_WINDOWS {
            return Err(PlanError::TooManyWindows {
                step: format!("{step:?}"),
            });
        }
        let to = from
            .checked_add_signed(step_length)
            .filter(|to| *to < end)
            .unwrap_or(end);
        windows.push((from, to));
        from = to;
    }
    Ok(windows)
}

/// Whether `value` lies in the window `[lower, upper)`.
pub fn contains(window: &Window, value: &Cursor) -> bool {
    window.lower.as_ref().is_none_or(|lower| value >= lower) && window.upper.as_ref().is_none_or(|upper| value < upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::HumanDuration;

    fn incremental(step: Option<u64>) -> IncrementalConfig {
        IncrementalConfig {
            mode: Default::default(),
            cursor_field: "updated_at".into(),
            param: "since".into(),
            end_param: Some("until".into()),
            start: "2024-01-01T00:00:00Z".into(),
            lookback: HumanDuration::from_secs(3600),
            sorted: true,
            step: step.map(HumanDuration::from_secs),
            client_side_filter: false,
            format: None,
        }
    }

    fn at(text: &str) -> Cursor {
        CursorFormat::Rfc3339.parse(text).unwrap()
    }

    fn rendered(format: &CursorFormat, windows: &[Window]) -> Vec<(Option<String>, Option<String>)> {
        windows
            .iter()
            .map(|w| {
                (
                    w.lower.as_ref().map(|c| format.render(c)),
                    w.upper.as_ref().map(|c| format.render(c)),
                )
            })
            .collect()
    }

    #[test]
    fn lower_bound_precedence() {
        let config = incremental(None);
        let format = CursorFormat::Rfc3339;
        let start = at("2024-01-01T00:00:00Z");
        let window = at("2024-05-01T00:00:00Z");
        let checkpoint = at("2024-06-01T00:00:00Z");
        let bound = |window, lookback, checkpoint, full| {
            lower_bound(&config, &format, window, lookback, checkpoint, full, &start)
        };
        assert_eq!(bound(Some(&window), false, Some(&checkpoint), false), window);
        // Interval mode: the window's start stepped back by the lookback.
        assert_eq!(
            bound(Some(&window), true, Some(&checkpoint), false),
            at("2024-04-30T23:00:00Z")
        );
        assert_eq!(bound(None, false, Some(&checkpoint), false), at("2024-05-31T23:00:00Z"));
        assert_eq!(bound(None, false, Some(&checkpoint), true), start);
        assert_eq!(bound(None, false, None, false), start);
    }

    #[test]
    fn steps_slice_the_window() {
        let config = incremental(Some(86_400));
        let format = CursorFormat::Rfc3339;
        let now = Utc::now();
        let windows = plan(
            &config,
            &format,
            &at("2024-01-01T00:00:00Z"),
            Some(&at("2024-01-03T12:00:00Z")),
            now,
        );
        let expected = [
            ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"),
            ("2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"),
            ("2024-01-03T00:00:00Z", "2024-01-03T12:00:00Z"),
        ];
        assert_eq!(
            rendered(&format, &windows),
            expected.map(|(a, b)| (Some(a.to_owned()), Some(b.to_owned())))
        );
        let open = plan(
            &config,
            &format,
            &at("2024-01-01T00:00:00Z"),
            None,
            "2024-01-02T06:00:00Z".parse().unwrap(),
        );
        assert_eq!(open.len(), 2);
        assert_eq!(open[1].upper, None);
    }

    #[test]
    fn slices_are_cut_in_the_streams_format() {
        let seconds = CursorFormat::UnixSeconds;
        let windows = plan(
            &incremental(Some(86_400)),
            &seconds,
            &seconds.parse("2024-03-01T00:00:00+00:00").unwrap(),
            Some(&seconds.parse("2024-03-02T12:00:00+00:00").unwrap()),
            Utc::now(),
        );
        assert_eq!(
            rendered(&seconds, &windows),
            [
                (Some("1709251200".into()), Some("1709337600".into())),
                (Some("1709337600".into()), Some("1709380800".into())),
            ]
        );
        // A step finer than a day on a date cursor never yields an empty window.
        let day = CursorFormat::Date;
        let windows = plan(
            &incremental(Some(6 * 3600)),
            &day,
            &day.parse("2024-03-01").unwrap(),
            Some(&day.parse("2024-03-03").unwrap()),
            Utc::now(),
        );
        assert_eq!(
            rendered(&day, &windows),
            [
                (Some("2024-03-01".into()), Some("2024-03-02".into())),
                (Some("2024-03-02".into()), Some("2024-03-03".into())),
            ]
        );
    }

    #[test]
    fn backfill_windows_are_contiguous_and_bounded() {
        let day = std::time::Duration::from_secs(86_400);
        let instant = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        let windows = backfill_windows(instant("2024-03-01T00:00:00Z"), instant("2024-03-03T12:00:00Z"), day).unwrap();
        assert_eq!(
            windows,
            [
                (instant("2024-03-01T00:00:00Z"), instant("2024-03-02T00:00:00Z")),
                (instant("2024-03-02T00:00:00Z"), instant("2024-03-03T00:00:00Z")),
                (instant("2024-03-03T00:00:00Z"), instant("2024-03-03T12:00:00Z")),
            ]
        );
        let whole = backfill_windows(
            instant("2024-03-01T00:00:00Z"),
            instant("2024-03-02T00:00:00Z"),
            std::time::Duration::from_secs(u64::MAX),
        )
        .unwrap();
        assert_eq!(whole.len(), 1);
        assert!(matches!(
            backfill_windows(instant("2024-03-02T00:00:00Z"), instant("2024-03-01T00:00:00Z"), day),
            Err(PlanError::EmptyRange { .. })
        ));
        assert!(matches!(
            backfill_windows(
                instant("2000-01-01T00:00:00Z"),
                instant("2024-01-01T00:00:00Z"),
                std::time::Duration::from_secs(60)
            ),
            Err(PlanError::TooManyWindows { .. })
        ));
    }

    #[test]
    fn window_membership_is_half_open() {
        let window = Window {
            lower: Some(at("2024-01-01T00:00:00Z")),
            upper: Some(at("2024-01-02T00:00:00Z")),
        };
        assert!(contains(&window, &at("2024-01-01T00:00:00Z")));
        assert!(contains(&window, &at("2024-01-01T23:59:59Z")));
        assert!(!contains(&window, &at("2024-01-02T00:00:00Z")));
        assert!(!contains(&window, &at("2023-12-31T23:59:59Z")));
    }
}
