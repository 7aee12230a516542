//! Object names of the landing layout (contract §2). Paths are relative to the landing root.

/// The folder of a stream's parts for one run.
pub fn parts_dir(source: &str, stream: &str, date: &str, run_id: &str) -> String {
    format!("{source}/{stream}/extracted_date={date}/run_id={run_id}")
}

/// The folder of a stream's dead letters for one run.
pub fn dead_letter_dir(source: &str, stream: &str, date: &str, run_id: &str) -> String {
    format!("{source}/_dead_letter/{stream}/extracted_date={date}/run_id={run_id}")
}

/// A part's file name: `part-00000.jsonl.gz`.
pub fn part_name(index: u32, extension: &str) -> String {
    format!("part-{index:05}{extension}")
}

/// The run manifest, written last: the commit marker.
pub fn manifest(source: &str, date: &str, run_id: &str) -> String {
    format!("{source}/_manifests/extracted_date={date}/{run_id}.json")
}

/// A stream's checkpoint.
pub fn state(source: &str, stream: &str) -> String {
    format!("{source}/_state/{stream}.json")
}

/// The previous checkpoint, kept for rollback.
pub fn state_previous(source: &str, stream: &str) -> String {
    format!("{source}/_state/{stream}.json.prev")
}

/// The field paths and types a stream has carried (schema drift).
pub fn schema_state(source: &str, stream: &str) -> String {
    format!("{source}/_state/{stream}.schema.json")
}

/// A stream's single-writer lease.
pub fn lease(source: &str, stream: &str) -> String {
    format!("{source}/_state/{stream}.lock")
}

/// The lease of one window of a stream (a backfill, `run --start/--end`): `key` names
/// the window (a hash of its bounds, see [`crate::state::lease::LeaseScope`]). Window leases of
/// different windows, and the stream's own lease, do not exclude each other.
pub fn window_lease(source: &str, stream: &str, key: &str) -> String {
    format!("{source}/_state/{stream}.window-{key}.lock")
}

/// Credentials kept between runs (a rotated OAuth 2.0 refresh token, encrypted). Stream
/// names cannot start with `_`, so it never collides with a checkpoint.
pub fn auth_state(source: &str) -> String {
    format!("{source}/_state/_auth.json")
}

/// Where a source's large parts are staged before they are published create-only. Nothing
/// under it is data: downstream globs never match it, and a bucket lifecycle rule may
/// expire it (docs/credentials.md).
pub fn staging_root(source: &str) -> String {
    format!("{source}/_tmp")
}

/// The staging folder of one run's stream.
pub fn staging_dir(source: &str, run_id: &str, stream: &str) -> String {
    format!("{source}/_tmp/{run_id}/{stream}")
}

/// The staged object of a part while its multipart upload runs.
pub fn staged_part(staging_dir: &str, part_name: &str) -> String {
    format!("{staging_dir}/{part_name}{STAGED_SUFFIX}")
}

/// The marker that records a staged part's multipart upload, so that a later run can abort
/// an upload whose run was killed.
pub fn upload_marker(staging_dir: &str, part_name: &str) -> String {
    format!("{staging_dir}/{part_name}{MARKER_SUFFIX}")
}

/// Suffix of staged parts.
pub const STAGED_SUFFIX: &str = ".partial";
/// Suffix of upload markers.
pub const MARKER_SUFFIX: &str = ".upload.json";

/// Where `check` writes its probe object.
pub fn probe(source: &str, run_id: &str) -> String {
    format!("{source}/_check/{run_id}.probe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_contract() {
        assert_eq!(
            format!(
                "{}/{}",
                parts_dir("shop", "orders", "2026-11-21", "r1"),
                part_name(0, ".jsonl.gz")
            ),
            "shop/orders/extracted_date=2026-11-21/run_id=r1/part-00000.jsonl.gz"
        );
        assert_eq!(
            manifest("shop", "2026-11-21", "r1"),
            "shop/_manifests/extracted_date=2026-11-21/r1.json"
        );
        assert_eq!(state("shop", "orders"), "shop/_state/orders.json");
        let staging = staging_dir("shop", "r1", "orders");
        assert_eq!(
            staged_part(&staging, "part-00003.jsonl.gz"),
            "shop/_tmp/r1/orders/part-00003.jsonl.gz.partial"
        );
        assert_eq!(
            upload_marker(&staging, "part-00003.jsonl.gz"),
            "shop/_tmp/r1/orders/part-00003.jsonl.gz.upload.json"
        );
        assert_eq!(
            dead_letter_dir("shop", "orders", "2026-11-21", "r1"),
            "shop/_dead_letter/orders/extracted_date=2026-11-21/run_id=r1"
        );
    }
}
