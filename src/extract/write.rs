//! The source-agnostic write side of a stream: what a source sends ([`Item`]) becomes
//! envelope lines (with validation, PII redaction and in-run duplicates), parts and dead
//! letters in the landing zone, and checkpoint moves once the parts are stored. Schema
//! drift and the dead-letter ratio are checked when the stream ends.

use bytes::Bytes;
use tracing::Instrument;

use super::error::StreamError;
use super::stream::StreamJob;
use crate::cursor::Cursor;
use crate::envelope::{self, EnvelopeTemplate, PageFields, RecordFields};
use crate::landing::layout;
use crate::landing::part::{PartDirs, PartLimits, PartWriter, StoredPart};
use crate::quality::dedupe::RunDeduper;
use crate::quality::drift::{self, SchemaChange, SchemaTracker};
use crate::quality::pii::Redactor;
use crate::source::parents::ParentKeysWriter;
use crate::source::windows::Window;
use crate::source::{DeadPage, Item, ItemReceiver};
use crate::state::tracker::CheckpointTracker;
use crate::state::{SeenRecord, StateError, Written};

#[derive(Default)]
pub(super) struct WriteStats {
    pub(super) files: Vec<StoredPart>,
    pub(super) dead_letter_files: Vec<StoredPart>,
    pub(super) dead_letter_rows: u64,
    pub(super) rows_written: u64,
    pub(super) duplicate_rows: u64,
    pub(super) parent_keys: ParentKeysWriter,
    /// Stored records whose cursor value does not parse in the stream's format, and the
    /// first such value.
    pub(super) cursor_unparseable_rows: u64,
    pub(super) cursor_unparseable_example: Option<String>,
}

impl StreamJob {
    /// A writer of parts into `dir`, large ones staged under `staging_dir`.
    fn part_writer(&self, dir: String, staging_dir: String) -> PartWriter {
        let landing = &self.config.landing;
        PartWriter::new(
            self.landing.clone(),
            PartDirs {
                dir,
                staging_dir,
                run_id: self.run_id.clone(),
            },
            landing.compression,
            PartLimits {
                max_records: landing.part_max_records.get(),
                max_bytes: landing.part_max_bytes.0,
                multipart_chunk: landing.multipart_chunk.0 as usize,
                level: landing.level(),
            },
        )
    }

    /// Lands what the source sends until it ends (or a failure), and moves the checkpoint
    /// as parts are stored.
    pub(super) async fn write(
        &self,
        mut receiver: ItemReceiver,
        checkpoint: &mut CheckpointTracker,
    ) -> (WriteStats, Option<StreamError>) {
        let source = &self.config.source.name;
        let dead_letter_staging = format!("_dead_letter_{}", self.stream.name);
        let mut writer = self.part_writer(
            layout::parts_dir(source, &self.stream.name, &self.extracted_date, &self.run_id),
            layout::staging_dir(source, &self.run_id, &self.stream.name),
        );
        let mut dead_letters = self.part_writer(
            layout::dead_letter_dir(source, &self.stream.name, &self.extracted_date, &self.run_id),
            layout::staging_dir(source, &self.run_id, &dead_letter_staging),
        );
        let template = EnvelopeTemplate::new(
            source,
            &self.stream.name,
            &self.run_id,
            self.config.source.tenant.as_deref(),
            self.config.source.environment.as_deref(),
        );
        let redactor = Redactor::new(&self.stream.redact);
        let mut deduper = RunDeduper::default();
        let mut stats = WriteStats::default();
        if self.reused_run_id {
            for part_writer in [&mut writer, &mut dead_letters] {
                if let Err(error) = part_writer.skip_existing().await {
                    return (stats, Some(error.into()));
                }
            }
        }
        let mut line = Vec::with_capacity(4096);
        let result: Result<(), StreamError> = async {
            while let Some(delivery) = receiver.recv().await {
                // The page's share of the channel's byte budget goes back when it is landed.
                let _budget = delivery.budget;
                let page = match delivery.item {
                    Item::Page(page) => page,
                    Item::WindowDone(window) => {
                        self.store_part(&mut writer, &mut stats, checkpoint).await?;
                        self.window_done(&window, checkpoint).await?;
                        continue;
                    }
                    Item::Checkpoint(cursor) => {
                        checkpoint.source_position(cursor);
                        continue;
                    }
                    Item::DeadPage(dead) => {
                        self.write_dead_page(&mut dead_letters, &template, &redactor, dead, &mut stats)
                            .await?;
                        continue;
                    }
                    Item::AsyncJob(job) => {
                        // Forgetting a job comes after its records are stored.
                        if job.is_none() {
                            self.store_part(&mut writer, &mut stats, checkpoint).await?;
                        }
                        self.state
                            .set_async_job(&self.stream.name, job, &self.run_id, self.fence.as_ref())
                            .await?;
                        continue;
                    }
                };
                let body = std::str::from_utf8(&page.body).expect("pages are checked to be UTF-8 when parsed");
                let fields = PageFields::new(&page.endpoint, &page.extracted_at, page.number);
                for record in page.records {
                    // A csv, tsv or xml row lands as sent in `_raw`, its parsed form in
                    // `_record` (such streams have no redaction rules: validate refuses them).
                    let (raw, applied, parsed) = match &record.source_text {
                        Some(text) => (
                            std::borrow::Cow::Borrowed(&body[text.clone()]),
                            Vec::new(),
                            Some(&body[record.range.clone()]),
                        ),
                        None => {
                            let (raw, applied) = redactor.apply(&body[record.range.clone()]);
                            (raw, applied, None)
                        }
                    };
                    let sha256 = envelope::payload_sha256(&raw);
                    let redacted = (!redactor.is_empty()).then_some(applied.as_slice());
                    // A record that failed its checks goes to the dead letters, never
                    // deduplicated; any other record lands unless it was seen already.
                    let violation = record.violation.as_ref();
                    if violation.is_none() {
                        let repeated = record
                            .id
                            .as_deref()
                            .is_some_and(|id| deduper.is_duplicate(id, record.cursor.as_deref(), &sha256));
                        if repeated
                            || checkpoint.is_known_duplicate(
                                record.id.as_deref(),
                                record.cursor.as_deref(),
                                record.cursor_value.as_ref(),
                                &sha256,
                            )
                        {
                            stats.duplicate_rows += 1;
                            continue;
                        }
                    }
                    line.clear();
                    let fields_of_record = RecordFields {
                        record_id: record.id.as_deref(),
                        updated_at: record.cursor.as_deref(),
                        parent_key: page.parent_key.as_deref(),
                        sha256: &sha256,
                        redacted,
                        error: violation,
                        raw_base64: None,
                        raw_length: None,
                        record: parsed,
                    };
                    let loaded_at = crate::clock::now_rfc3339();
                    envelope::write_line(&mut line, &template, &fields, fields_of_record, &loaded_at, &raw);
                    if violation.is_some() {
                        dead_letters.append(&line).await?;
                        stats.dead_letter_rows += 1;
                        if dead_letters.is_full() {
                            self.store_dead_letters(&mut dead_letters, &mut stats).await?;
                        }
                        continue;
                    }
                    writer.append(&line).await?;
                    if record.cursor.is_some() && record.cursor_value.is_none() {
                        stats.cursor_unparseable_rows += 1;
                        if stats.cursor_unparseable_example.is_none() {
                            stats.cursor_unparseable_example =
                                record.cursor.as_deref().map(|text| text.chars().take(64).collect());
                        }
                    }
                    if let (Some(value), Some(typed)) = (record.cursor, record.cursor_value) {
                        checkpoint.landed(typed);
                        if let Some(id) = record.id {
                            checkpoint.remember(SeenRecord {
                                id,
                                cursor: value,
                                sha256,
                            });
                        }
                    }
                    if let Some(parent) = record.parent {
                        stats
                            .parent_keys
                            .push(&parent)
                            .map_err(|error| StreamError::parent_keys(&error))?;
                    }
                    if writer.is_full() {
                        self.store_part(&mut writer, &mut stats, checkpoint).await?;
                    }
                }
                writer.flush_chunk().await?;
            }
            self.store_dead_letters(&mut dead_letters, &mut stats).await?;
            if self.stream.deletes_of.is_some() && stats.files.is_empty() {
                // A deletes companion usually lists nothing; its table must still exist.
                writer.open_empty();
            }
            self.store_part(&mut writer, &mut stats, checkpoint).await
        }
        .await;
        if result.is_err() {
            // What was read is stored where it can be; only an unfinished upload is dropped.
            let _ = self.store_dead_letters(&mut dead_letters, &mut stats).await;
            writer.abort().await;
            dead_letters.abort().await;
        }
        (stats, result.err())
    }

    async fn write_dead_page(
        &self,
        dead_letters: &mut PartWriter,
        template: &EnvelopeTemplate,
        redactor: &Redactor,
        dead: DeadPage,
        stats: &mut WriteStats,
    ) -> Result<(), StreamError> {
        // The body cannot be redacted by pointer: a stream with redaction rules keeps only
        // its size and hash, never the bytes.
        let kept = dead.body.kept();
        let text = String::from_utf8_lossy(kept);
        let withheld = format!("<{} bytes withheld: the stream has redaction rules>", dead.body.len());
        let raw: &str = if redactor.is_empty() { &text } else { &withheld };
        // A body that is not UTF-8 is kept exactly too, so the page can be replayed and its
        // hash checked.
        let raw_base64 = (redactor.is_empty() && matches!(text, std::borrow::Cow::Owned(_)))
            .then(|| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, kept));
        let sha256 = dead.body.sha256();
        let fields = PageFields::new(&dead.endpoint, &dead.extracted_at, dead.number);
        let record = RecordFields {
            record_id: None,
            updated_at: None,
            parent_key: None,
            sha256: &sha256,
            redacted: None,
            error: Some(&dead.error),
            raw_base64: raw_base64.as_deref(),
            raw_length: dead.body.cut_from(),
            record: None,
        };
        let mut line = Vec::with_capacity(raw.len() + 512);
        envelope::write_line(&mut line, template, &fields, record, &crate::clock::now_rfc3339(), raw);
        dead_letters.append(&line).await?;
        stats.dead_letter_rows += 1;
        Ok(())
    }

    async fn store_dead_letters(
        &self,
        dead_letters: &mut PartWriter,
        stats: &mut WriteStats,
    ) -> Result<(), StreamError> {
        if let Some(part) = dead_letters.finish().await? {
            self.events
                .dead_letter_stored(&self.stream.name, &self.landing.url_of(&part.path), part.rows);
            stats.dead_letter_files.push(part);
        }
        Ok(())
    }

    pub(super) fn check_dead_letter_ratio(&self, read: u64, dead: u64) -> Result<(), StreamError> {
        if read == 0 || dead == 0 {
            return Ok(());
        }
        let ratio = dead as f64 / read as f64;
        let max = self.stream.max_dead_letter_ratio;
        if ratio > max {
            return Err(StreamError::DeadLetterRatio { dead, read, ratio, max });
        }
        Ok(())
    }

    /// Compares this run's fields with the stored schema, records the drift, and fails the
    /// stream on breaking drift when configured to (leaving the stored schema as it was, so
    /// the next run fails too until the change is accepted).
    pub(super) async fn schema_drift(
        &self,
        tracker: &SchemaTracker,
    ) -> Result<(Vec<SchemaChange>, Option<StreamError>), StateError> {
        let path = layout::schema_state(&self.config.source.name, &self.stream.name);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let stored = self.state.read_object(&path).await?;
            let previous: Option<drift::SchemaState> = stored
                .as_ref()
                .and_then(|(bytes, _)| serde_json::from_slice(bytes).ok());
            let (changes, next) = drift::compare(previous.as_ref(), tracker, &self.stream.name, &self.run_id);
            let breaking: Vec<&SchemaChange> = changes.iter().filter(|change| change.breaking).collect();
            let fail = !breaking.is_empty() && self.stream.on_breaking_drift == crate::config::DriftAction::Fail;
            if !fail && tracker.records > 0 {
                let mut bytes = serde_json::to_vec_pretty(&next).expect("schema state serializes");
                bytes.push(b'\n');
                let expected = stored.as_ref().map(|(_, version)| version);
                // Another run of the stream stored its schema since it was read: compare
                // with that one instead of overwriting it.
                if let Written::Conflict = self.state.write_object(&path, Bytes::from(bytes), expected).await? {
                    if attempts < 4 {
                        continue;
                    }
                    return Err(StateError::Contended { path, attempts });
                }
            }
            if !changes.is_empty() {
                let summary: Vec<String> = changes.iter().map(|c| format!("{} {}", c.change, c.path)).collect();
                let count = |kind: &str| changes.iter().filter(|c| c.change == kind).count();
                self.events.schema_drift_detected(
                    &self.stream.name,
                    count("added"),
                    count("removed"),
                    changes.len() - count("added") - count("removed"),
                    !breaking.is_empty(),
                    &summary.join(", "),
                );
            }
            if fail {
                let summary: Vec<String> = breaking.iter().map(|c| format!("{} {}", c.change, c.path)).collect();
                return Ok((changes, Some(StreamError::SchemaDrift(summary.join(", ")))));
            }
            return Ok((changes, None));
        }
    }

    async fn store_part(
        &self,
        writer: &mut PartWriter,
        stats: &mut WriteStats,
        checkpoint: &mut CheckpointTracker,
    ) -> Result<(), StreamError> {
        let Some(part) = writer
            .finish()
            .instrument(crate::observe::telemetry::store_span(&self.stream.name))
            .await?
        else {
            return Ok(());
        };
        self.events.part_stored(
            &self.stream.name,
            &self.landing.url_of(&part.path),
            part.rows,
            part.bytes,
            &part.sha256,
            if part.multipart { "multipart" } else { "single" },
        );
        stats.rows_written += part.rows;
        stats.files.push(part);
        // A run that joins the checkpoint moves it after every part; one that does not
        // records its range only when a window is complete (fewer contended writes).
        if let Some(cursor) = checkpoint.part_stored()
            && self.incremental_sorted()
        {
            self.commit(checkpoint, &cursor).await?;
        }
        Ok(())
    }

    /// A window's data is stored: its end becomes the checkpoint when it is in the past
    /// (nothing before it remains unread), else the largest stored cursor.
    async fn window_done(&self, window: &Window, checkpoint: &mut CheckpointTracker) -> Result<(), StreamError> {
        if self.stream.incremental.is_none() {
            return Ok(());
        }
        if let Some(candidate) = checkpoint.window_done(window.upper.as_ref(), chrono::Utc::now()) {
            self.commit(checkpoint, &candidate).await?;
        }
        Ok(())
    }

    /// Reports that this run's records from its start up to `cursor` are stored: the
    /// checkpoint moves forward to it when the run joins the checkpoint, else the range
    /// waits in the state until the gap before it is filled (by this run or others). Never
    /// backwards (a backfill window that ends before the checkpoint changes nothing), and
    /// never past a gap.
    pub(super) async fn commit(&self, checkpoint: &mut CheckpointTracker, cursor: &Cursor) -> Result<(), StateError> {
        let Some(advance) = checkpoint.advance(cursor, self.defer_checkpoint) else {
            return Ok(());
        };
        let (stored, changed) = self
            .state
            .advance(
                &self.stream.name,
                crate::state::StoredRange {
                    start: &advance.start,
                    end: &advance.end,
                    origin: &advance.origin,
                    format: checkpoint.format(),
                },
                advance.recent,
                &self.run_id,
                checkpoint.stored(),
                self.fence.as_ref(),
            )
            .await?;
        let Some(stored) = stored else {
            return Ok(());
        };
        if let Some(text) = checkpoint.committed_as(stored, changed) {
            self.events.checkpoint_committed(&self.stream.name, &text);
        }
        Ok(())
    }
}
