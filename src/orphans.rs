//! `landfall orphans`: objects of the landing layout that no run manifest covers. A run
//! killed before its manifest, a run still going, or a manifest deleted by hand leave parts
//! (and dead-letter parts) that downstream readers keyed on manifests never see, and staged
//! multipart uploads under `{source}/_tmp/`. They are listed with their age; with
//! `--delete`, only those older than `--older-than` (24 hours by default) are removed, so the
//! parts of a run still in progress are kept.
//!
//! A manifest that cannot be read covers every object of its run: nothing is deleted on a
//! guess.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::landing::upload::{self, StaleUpload};
use crate::landing::{Landing, LandingError, ListedObject};
use crate::manifest::Manifest;

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
    };
    for (mut orphan, staged) in found {
        if Duration::from_secs(orphan.age_seconds) < older_than {
            orphan.action = Action::KeptTooRecent;
            report.kept_too_recent += 1;
        } else if delete {
            remove(landing, &orphan, staged.as_ref()).await?;
            orphan.action = Action::Deleted;
            report.deleted += 1;
        }
        report.orphans.push(orphan);
    }
    Ok(report)
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
    }
}
