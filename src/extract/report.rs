//! What a stream's run reports: its [`StreamReport`] for the manifest, and the events that
//! end it (`stream_finished` or `stream_failed`, and `cursor_unparseable`).

use super::error::StreamError;
use super::stream::{StreamJob, StreamOutcome};
use super::write::WriteStats;
use crate::cursor::Cursor;
use crate::error::ErrorRecord;
use crate::quality::drift::SchemaChange;
use crate::report::manifest::{SourceSnapshot, Status, StreamReport};
use crate::source::ReadStats;
use crate::source::parents::ParentKeys;

/// What a stream's read and write left, for its report.
pub(super) struct StreamEnd {
    pub read: ReadStats,
    pub write: WriteStats,
    /// What the source reads, named when nothing was read.
    pub endpoint: String,
    pub cursor_start: Option<String>,
    /// The checkpoint after the run.
    pub cursor_end: Option<String>,
    pub schema_changes: Vec<SchemaChange>,
    /// The largest cursor among stored records, for the lag.
    pub stored_cursor: Option<Cursor>,
}

/// The status a stream ended with.
pub(super) fn status(error: Option<&StreamError>) -> Status {
    match error {
        None => Status::Succeeded,
        Some(error) if error.is_cancelled() => Status::Cancelled,
        Some(error) if error.stops_cleanly() => Status::Partial,
        Some(_) => Status::Failed,
    }
}

impl StreamJob {
    /// The stream's report, and the events that end it.
    pub(super) fn report(&self, end: StreamEnd, error: Option<&StreamError>) -> StreamReport {
        let StreamEnd {
            read,
            write,
            endpoint,
            cursor_start,
            cursor_end,
            schema_changes,
            stored_cursor,
        } = end;
        let report = StreamReport {
            name: self.stream.name.clone(),
            sync_mode: self.stream.sync_mode(),
            endpoint: if read.endpoint.is_empty() {
                endpoint
            } else {
                read.endpoint.clone()
            },
            cursor_start,
            cursor_end,
            pages: read.pages,
            requests: read.requests,
            retries: read.retries,
            rows_read: read.rows_read,
            rows_written: write.rows_written,
            duplicate_rows: write.duplicate_rows,
            filtered_rows: read.filtered_rows,
            dead_letter_rows: write.dead_letter_rows,
            bytes_written: write.files.iter().map(|file| file.bytes).sum(),
            lag_seconds: stored_cursor
                .as_ref()
                .and_then(|cursor| cursor.lag_seconds(chrono::Utc::now())),
            status: status(error),
            error: error.map(ErrorRecord::from_error),
            files: write.files,
            dead_letter_files: write.dead_letter_files,
            schema_changes,
            duration_seconds: 0.0,
            rate_limit_waits_seconds: 0.0,
            source_snapshot: read.snapshot.clone().map(|(kind, snapshot)| SourceSnapshot {
                kind,
                snapshot,
                xmin_checkpoint: read.xmin_checkpoint,
            }),
            async_job: read
                .async_job_id
                .clone()
                .map(|id| crate::report::manifest::AsyncJobReport {
                    id,
                    resumed: read.async_job_resumed,
                    expired: read.async_jobs_expired,
                }),
        };
        if let (Some(incremental), Some(example)) = (
            self.stream.incremental.as_ref(),
            write.cursor_unparseable_example.as_deref(),
        ) {
            self.events.cursor_unparseable(
                &self.stream.name,
                incremental.cursor_column().unwrap_or_default(),
                &incremental.cursor_format().to_string(),
                write.cursor_unparseable_rows,
                example,
            );
        }
        match (error, &report.error) {
            (Some(error), Some(record)) if !error.stops_cleanly() => {
                self.events.stream_failed(&self.stream.name, error.stage(), record)
            }
            _ => self.events.stream_finished(
                &self.stream.name,
                report.status.as_str(),
                report.rows_written,
                report.pages,
                report.cursor_end.as_deref(),
            ),
        }
        report
    }

    /// The outcome of a stream that failed before reading anything.
    pub(super) fn failed_before_start(&self, error: StreamError) -> StreamOutcome {
        let record = ErrorRecord::from_error(&error);
        self.events.stream_failed(&self.stream.name, error.stage(), &record);
        let status = if error.is_cancelled() {
            Status::Cancelled
        } else {
            Status::Failed
        };
        StreamOutcome {
            report: StreamReport::not_run(&self.stream, status, record),
            parent_keys: ParentKeys::default(),
            deferred: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ReadError;

    #[test]
    fn status_follows_the_error() {
        assert_eq!(status(None), Status::Succeeded);
        assert_eq!(status(Some(&ReadError::Cancelled.into())), Status::Cancelled);
        assert_eq!(status(Some(&StreamError::SchemaDrift("x".into()))), Status::Failed);
    }
}
