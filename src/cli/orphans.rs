//! `landfall orphans`: objects of the landing layout that no run manifest covers. A run
//! killed before its manifest, a run still going, or a manifest deleted by hand leave parts
//! (and dead-letter parts) that downstream readers keyed on manifests never see, and staged
//! multipart uploads under `{source}/_tmp/`. They are listed with their age; with
//! `--delete`, only those older than `--older-than` (24 hours by default) are removed, so the
//! parts of a run still in progress are kept.
//!
//! A manifest that cannot be read covers every object of its run: nothing is deleted on a
//! guess.
//!
//! An orphaned part may hold the only landed copy of its records: a run advances its
//! checkpoint as soon as a part is stored, so a run killed before its manifest may have moved
//! the checkpoint past records that no later run reads again. Such a part is deleted only when
//! every record in it (by `_payload_sha256`) is also in a part a manifest covers, of the same
//! stream and kind, landed on the orphan's `extracted_date` or later. Otherwise it is kept
//! (`kept_not_relanded`, with the count of records found nowhere else), however old.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::time::Duration;

use serde::Serialize;

use crate::landing::upload::{self, StaleUpload};
use crate::landing::{Landing, LandingError, ListedObject};
use crate::report::manifest::Manifest;

/// What kind of object an orphan is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanKind {
    /// A data part under `{source}/{stream}/`.
    Part,
    /// A part under `{source}/_dead_letter/{stream}/`.
    DeadLetter,
    /// A staged multipart upload (its marker, or a staged object without one) under
    /// `{source}/_tmp/`.
    StagedUpload,
}

/// What was done with an orphan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Old enough to delete; listed only (no `--delete`).
    WouldDelete,
    /// Deleted.
    Deleted,
    /// Younger than `--older-than`: kept (it may belong to a run in progress).
    KeptTooRecent,
    /// Holds records that no manifest-covered part holds (`unique_rows` of them): kept, since
    /// deleting it would lose them.
    KeptNotRelanded,
}

/// One object no manifest covers.
#[derive(Clone, Debug, Serialize)]
pub struct Orphan {
    pub kind: OrphanKind,
    /// Path relative to the landing root.
    pub path: String,
    pub url: String,
    pub stream: Option<String>,
    pub run_id: Option<String>,
    pub bytes: u64,
    pub last_modified: String,
    pub age_seconds: u64,
    pub action: Action,
    /// For a part or dead-letter part old enough to delete: how many of its records no
    /// manifest-covered part holds (0: all landed again, so deleting it loses nothing).
    /// Absent with `kept_not_relanded`: the part could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_rows: Option<u64>,
}

/// The command's report, printed as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub source: String,
    pub landing_url: String,
    pub delete: bool,
    pub older_than_seconds: u64,
    /// Manifests read.
    pub manifests: usize,
    /// Manifests that could not be parsed; every object of their runs counts as covered.
    pub unreadable_manifests: Vec<String>,
    pub orphans: Vec<Orphan>,
    pub deleted: usize,
    pub kept_too_recent: usize,
    pub kept_not_relanded: usize,
}

/// Lists (and with `delete`, removes) the orphans of `source` in `landing`.
pub async fn orphans(
    landing: &Landing,
    source: &str,
    older_than: Duration,
    delete: bool,
) -> Result<Report, LandingError> {
    let objects = landing.list_objects(source).await?;
    let sizes: BTreeMap<&str, &ListedObject> = objects.iter().map(|object| (object.path.as_str(), object)).collect();
    let mut covered = HashSet::new();
    let mut covered_runs = HashSet::new();
    let mut manifests = 0;
    let mut unreadable_manifests = Vec::new();
    for object in objects
        .iter()
        .filter(|object| top_folder(source, &object.path) == Some("_manifests"))
    {
        let Some(bytes) = landing.get(&object.path).await? else {
            continue;
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(manifest) => {
                manifests += 1;
                for stream in &manifest.streams {
                    covered.extend(
                        stream
                            .files
                            .iter()
                            .chain(&stream.dead_letter_files)
                            .map(|part| part.path.clone()),
                    );
                }
            }
            Err(_) => {
                unreadable_manifests.push(object.path.clone());
                if let Some(run_id) = object
                    .path
                    .rsplit('/')
                    .next()
                    .and_then(|name| name.strip_suffix(".json"))
                {
                    covered_runs.insert(run_id.to_owned());
                }
            }
        }
    }

    let now = chrono::Utc::now();
    let mut found = Vec::new();
    for object in &objects {
        let kind = match top_folder(source, &object.path) {
            Some("_dead_letter") => OrphanKind::DeadLetter,
            Some(folder) if !folder.starts_with('_') => OrphanKind::Part,
            _ => continue,
        };
        let run_id = run_of(&object.path);
        if covered.contains(&object.path) || run_id.as_ref().is_some_and(|run| covered_runs.contains(run)) {
            continue;
        }
        let stream = match kind {
            OrphanKind::DeadLetter => object.path.split('/').nth(2),
            _ => object.path.split('/').nth(1),
        };
        found.push((
            Orphan {
                kind,
                path: object.path.clone(),
                url: landing.url_of(&object.path),
                stream: stream.map(ToOwned::to_owned),
                run_id,
                bytes: object.size,
                last_modified: object.last_modified.to_rfc3339(),
                age_seconds: (now - object.last_modified).num_seconds().max(0).unsigned_abs(),
                action: Action::WouldDelete,
                unique_rows: None,
            },
            None,
        ));
    }
    for staged in upload::find_stale(landing, source, Duration::ZERO, None).await? {
        let listed = sizes.get(staged.path.as_str());
        found.push((
            Orphan {
                kind: OrphanKind::StagedUpload,
                path: staged.path.clone(),
                url: landing.url_of(&staged.path),
                stream: staged.path.split('/').nth(3).map(ToOwned::to_owned),
                run_id: Some(staged.run_id.clone()),
                bytes: listed.map_or(0, |object| object.size),
                last_modified: listed
                    .map(|object| object.last_modified.to_rfc3339())
                    .unwrap_or_default(),
                age_seconds: staged.age.as_secs(),
                action: Action::WouldDelete,
                unique_rows: None,
            },
            Some(staged),
        ));
    }

    let mut report = Report {
        source: source.to_owned(),
        landing_url: landing.url().to_owned(),
        delete,
        older_than_seconds: older_than.as_secs(),
        manifests,
        unreadable_manifests,
        orphans: Vec::with_capacity(found.len()),
        deleted: 0,
        kept_too_recent: 0,
        kept_not_relanded: 0,
    };
    let mut landed_again = LandedAgain::default();
    for (mut orphan, staged) in found {
        if Duration::from_secs(orphan.age_seconds) < older_than {
            orphan.action = Action::KeptTooRecent;
            report.kept_too_recent += 1;
            report.orphans.push(orphan);
            continue;
        }
        if matches!(orphan.kind, OrphanKind::Part | OrphanKind::DeadLetter) {
            // None: unreadable, or outside the layout; nothing proves its records landed again
            let unique = landed_again.unique_rows(landing, source, &covered, &orphan).await?;
            orphan.unique_rows = unique;
            if unique != Some(0) {
                orphan.action = Action::KeptNotRelanded;
                report.kept_not_relanded += 1;
                report.orphans.push(orphan);
                continue;
            }
        }
        if delete {
            remove(landing, &orphan, staged.as_ref()).await?;
            orphan.action = Action::Deleted;
            report.deleted += 1;
        }
        report.orphans.push(orphan);
    }
    Ok(report)
}

/// The payload hashes of the records that manifest-covered parts hold, per (kind, stream),
/// read once per pair from the earliest `extracted_date` asked for.
#[derive(Default)]
struct LandedAgain {
    hashes: HashMap<(bool, String), (String, HashSet<String>)>,
}

impl LandedAgain {
    /// How many records of `orphan` no covered part of its stream and kind holds; `None`
    /// when the orphan cannot be read or is outside the layout.
    async fn unique_rows(
        &mut self,
        landing: &Landing,
        source: &str,
        covered: &HashSet<String>,
        orphan: &Orphan,
    ) -> Result<Option<u64>, LandingError> {
        let dead_letter = orphan.kind == OrphanKind::DeadLetter;
        let (Some(stream), Some(date)) = (orphan.stream.clone(), date_of(&orphan.path)) else {
            return Ok(None);
        };
        let key = (dead_letter, stream.clone());
        let stale = self.hashes.get(&key).is_none_or(|(from, _)| from.as_str() > date);
        if stale {
            let mut hashes = HashSet::new();
            for path in covered.iter().filter(|path| {
                (top_folder(source, path) == Some("_dead_letter")) == dead_letter
                    && stream_of(source, path, dead_letter) == Some(stream.as_str())
                    && date_of(path).is_some_and(|landed| landed >= date)
            }) {
                let Some(bytes) = landing.get(path).await? else {
                    continue;
                };
                // an unreadable covered part proves nothing
                hashes.extend(payload_hashes(&bytes).into_iter().flatten().flatten());
            }
            self.hashes.insert(key.clone(), (date.to_owned(), hashes));
        }
        let Some(bytes) = landing.get(&orphan.path).await? else {
            return Ok(Some(0)); // gone since the listing: nothing left to lose
        };
        let known = &self.hashes[&key].1;
        Ok(payload_hashes(&bytes).map(|records| {
            records
                .iter()
                .filter(|hash| hash.as_ref().is_none_or(|hash| !known.contains(hash)))
                .count() as u64
        }))
    }
}

/// The `_payload_sha256` of each record of a part (gzip, zstd or plain JSONL), `None` for a line
/// without one; `None` for a part that does not decompress.
fn payload_hashes(bytes: &[u8]) -> Option<Vec<Option<String>>> {
    #[derive(serde::Deserialize)]
    struct Hash {
        #[serde(rename = "_payload_sha256")]
        hash: Option<String>,
    }
    let mut text = Vec::new();
    let decoded: &[u8] = if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut text).ok()?;
        &text
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(bytes)
            .ok()?
            .read_to_end(&mut text)
            .ok()?;
        &text
    } else {
        bytes
    };
    Some(
        decoded
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| serde_json::from_slice::<Hash>(line).ok().and_then(|record| record.hash))
            .collect(),
    )
}

/// The stream of a part (`{source}/{stream}/...`) or dead-letter part
/// (`{source}/_dead_letter/{stream}/...`).
fn stream_of<'a>(source: &str, path: &'a str, dead_letter: bool) -> Option<&'a str> {
    path.strip_prefix(source)?
        .strip_prefix('/')?
        .split('/')
        .nth(usize::from(dead_letter))
}

/// The `extracted_date=` of a path.
fn date_of(path: &str) -> Option<&str> {
    path.split('/')
        .find_map(|segment| segment.strip_prefix("extracted_date="))
}

async fn remove(landing: &Landing, orphan: &Orphan, staged: Option<&StaleUpload>) -> Result<(), LandingError> {
    match staged {
        // Aborts the multipart upload too, so the store frees its parts.
        Some(staged) => upload::clean_one(landing, staged).await,
        None => landing.delete(&orphan.path).await,
    }
}

/// The first folder under `{source}/` of `path`.
fn top_folder<'a>(source: &str, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(source)?.strip_prefix('/')?.split('/').next()
}

/// The run id of a path with a `run_id=` folder.
fn run_of(path: &str) -> Option<String> {
    path.split('/')
        .find_map(|segment| segment.strip_prefix("run_id="))
        .map(ToOwned::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_folder_and_run() {
        let part = "shop/items/extracted_date=2026-12-07/run_id=r1/part-00000.jsonl.gz";
        assert_eq!(top_folder("shop", part), Some("items"));
        assert_eq!(top_folder("shop", "shopping/items/x"), None);
        assert_eq!(run_of(part).as_deref(), Some("r1"));
        assert_eq!(run_of("shop/_state/items.json"), None);
        assert_eq!(date_of(part), Some("2026-12-07"));
        assert_eq!(stream_of("shop", part, false), Some("items"));
        let dead = "shop/_dead_letter/items/extracted_date=2026-12-07/run_id=r1/part-00000.jsonl.gz";
        assert_eq!(stream_of("shop", dead, true), Some("items"));
    }

    #[test]
    fn payload_hashes_read_plain_gzip_and_zstd_parts() {
        use std::io::Write;
        let text = "{\"_payload_sha256\": \"aa\"}\n{\"other\": 1}\nnot json\n\n";
        let plain = payload_hashes(text.as_bytes()).unwrap();
        assert_eq!(plain, vec![Some("aa".to_owned()), None, None]);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        let gz = encoder.finish().unwrap();
        assert_eq!(payload_hashes(&gz).unwrap(), plain);
        assert!(payload_hashes(&gz[..gz.len() / 2]).is_none());
        let zst = zstd::stream::encode_all(text.as_bytes(), 1).unwrap();
        assert_eq!(payload_hashes(&zst).unwrap(), plain);
        assert!(payload_hashes(&zst[..zst.len() / 2]).is_none());
    }
}
