//! What lands: byte-exact records, every envelope field, manifests that match the parts,
//! part rolling (plain and multipart) and create-only writes.

use crate::common;

use common::{Workspace, one_stream, run};
use serde_json::Value;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Records with odd spacing, escapes, astral characters, big and precise numbers, and a
/// pretty-printed record spanning lines.
const ODD_BODY: &str = "{\"data\": [ {\"id\" : 1 ,\"name\":\"Zo\\u00eb \\ud83d\\ude00 \u{1F680}\",\"big\": 123456789012345678901234567890 ,\"precise\":0.1000000000000000055511151231257827, \"exp\": 1E+400},\n  {\n    \"id\": 2,\n    \"text\": \"line\\nbreak \\\"quoted\\\" \\\\ slash \\/\"\n  }\t] }";

fn raw_records() -> Vec<&'static str> {
    let first_start = ODD_BODY.find("{\"id\" : 1").unwrap();
    let first_end = ODD_BODY.find("1E+400}").unwrap() + "1E+400}".len();
    let second_start = ODD_BODY.find("{\n    \"id\": 2").unwrap();
    let second_end = ODD_BODY.rfind("}\t]").unwrap() + 1;
    vec![&ODD_BODY[first_start..first_end], &ODD_BODY[second_start..second_end]]
}

async fn odd_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/odd"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(ODD_BODY.as_bytes().to_vec(), "application/json"))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn records_land_byte_for_byte_with_their_sha256() {
    let server = odd_server().await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: odd, path: /odd, records_path: /data, primary_key: [id]}",
    ));
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let lines = ws.lines("shop", "odd");
    let expected = raw_records();
    assert_eq!(lines.len(), 2);
    for (line, raw) in lines.iter().zip(expected) {
        assert_eq!(line["_raw"].as_str().unwrap(), raw, "raw bytes differ");
        assert_eq!(
            line["_payload_sha256"].as_str().unwrap(),
            landfall::hash::sha256_hex(raw.as_bytes())
        );
    }
    // Each envelope is exactly one line even though the second record spans several.
    let part = &ws.part_files("shop", "odd")[0];
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(&std::fs::read(part).unwrap()[..]),
        &mut text,
    )
    .unwrap();
    assert_eq!(text.lines().count(), 2);
}

fn is_rfc3339_micros(value: &Value) -> bool {
    let text = value.as_str().unwrap_or_default();
    text.len() == 27
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

#[tokio::test]
async fn every_envelope_field_is_right() {
    let server = MockServer::start().await;
    Mock::given(path("/orders"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": [
            {"id": "o1", "line": 1, "updated_at": "2024-05-01T10:00:00Z"},
            {"id": "o1", "line": 2, "updated_at": null}
        ]})))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let text = one_stream(
        &server.uri(),
        "{name: orders, path: /orders, params: {limit: 5}, records_path: /data, primary_key: [id, /line], incremental: {cursor_field: updated_at, param: since, start: '2024-01-01T00:00:00Z'}}",
    )
    .replace("  name: shop\n", "  name: shop\n  tenant: acme\n  environment: prod\n");
    let config = ws.config(&text);
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let manifest = &ws.manifests("shop")[0];
    let run_id = manifest["run_id"].as_str().unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(run_id).unwrap().get_version_num(),
        7,
        "run id is a UUIDv7"
    );
    let lines = ws.lines("shop", "orders");
    let first = &lines[0];
    assert_eq!(first["_source_system"], "shop");
    assert_eq!(first["_source_object"], "orders");
    assert_eq!(
        first["_source_endpoint"],
        "GET /orders?limit=5&since=2024-01-01T00%3A00%3A00Z"
    );
    assert_eq!(first["_source_record_id"], "[\"o1\",1]");
    assert_eq!(first["_source_updated_at"], "2024-05-01T10:00:00Z");
    assert!(lines[1]["_source_updated_at"].is_null());
    assert!(is_rfc3339_micros(&first["_extracted_at"]), "{}", first["_extracted_at"]);
    assert!(is_rfc3339_micros(&first["_loaded_at"]), "{}", first["_loaded_at"]);
    assert!(first["_loaded_at"].as_str() >= first["_extracted_at"].as_str());
    assert_eq!(first["_run_id"], run_id);
    assert_eq!(first["_connector_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(first["_tenant"], "acme");
    assert_eq!(first["_environment"], "prod");
    assert_eq!(first["_page"], 1);
    assert_eq!(
        first["_payload_sha256"].as_str().unwrap(),
        landfall::hash::sha256_hex(first["_raw"].as_str().unwrap().as_bytes())
    );
    assert_eq!(manifest["tenant"], "acme");
    assert_eq!(manifest["streams"][0]["cursor_end"], "2024-05-01T10:00:00Z");
    assert_eq!(ws.state("shop", "orders").unwrap()["cursor"], "2024-05-01T10:00:00Z");
}

fn numbered(count: usize, pad: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|i| serde_json::json!({"id": i, "pad": landfall::hash::sha256_hex(&i.to_be_bytes()).repeat(pad)}))
            .collect(),
    )
}

/// Checks the manifest against the part objects on disk.
fn assert_manifest_matches_parts(ws: &Workspace, stream: &str, expected_rows: u64) -> Value {
    let manifest = ws.manifests("shop").pop().unwrap();
    let report = common::stream_report(&manifest, stream).clone();
    let files = report["files"].as_array().unwrap();
    let mut rows = 0;
    let mut bytes = 0;
    for file in files {
        let path = ws.landing().join(file["path"].as_str().unwrap());
        let content = std::fs::read(&path).unwrap();
        assert_eq!(file["bytes"], content.len() as u64, "{}", path.display());
        assert_eq!(file["sha256"], landfall::hash::sha256_hex(&content));
        assert_eq!(file["rows"], common::read_part(&path).len() as u64);
        rows += file["rows"].as_u64().unwrap();
        bytes += file["bytes"].as_u64().unwrap();
    }
    assert_eq!(files.len(), ws.part_files("shop", stream).len(), "every part is listed");
    assert_eq!(report["rows_written"], rows);
    assert_eq!(report["rows_written"], expected_rows);
    assert_eq!(report["rows_read"], expected_rows);
    assert_eq!(report["bytes_written"], bytes);
    report
}

#[tokio::test]
async fn parts_roll_at_record_and_byte_limits() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(numbered(10, 1)))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(
        &one_stream(&server.uri(), "{name: items, path: /items, primary_key: [id]}")
            .replace("  url: {landing}", "  url: {landing}\n  part_max_records: 3"),
    );
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let report = assert_manifest_matches_parts(&ws, "items", 10);
    let rows: Vec<u64> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [3, 3, 3, 1]);
    let names: Vec<String> = ws
        .part_files("shop", "items")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "part-00000.jsonl.gz",
            "part-00001.jsonl.gz",
            "part-00002.jsonl.gz",
            "part-00003.jsonl.gz"
        ]
    );
    let ids: Vec<String> = ws
        .lines("shop", "items")
        .iter()
        .map(|l| l["_source_record_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());

    // Byte limit, uncompressed part files.
    let ws = Workspace::new();
    let config = ws.config(
        &one_stream(&server.uri(), "{name: items, path: /items, primary_key: [id]}").replace(
            "  url: {landing}",
            "  url: {landing}\n  compression: none\n  part_max_bytes: 1KiB",
        ),
    );
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let report = assert_manifest_matches_parts(&ws, "items", 10);
    assert!(report["files"].as_array().unwrap().len() >= 3, "{report}");
    for file in ws.part_files("shop", "items") {
        assert!(file.to_string_lossy().ends_with(".jsonl"));
        // A part rolls at the first line that reaches the limit.
        let size = std::fs::metadata(&file).unwrap().len();
        assert!(size < 1024 + 600, "{size}");
    }
}

#[tokio::test]
async fn large_parts_stream_through_multipart_upload() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(numbered(3000, 4)))
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(
        &one_stream(&server.uri(), "{name: items, path: /items, primary_key: [id]}")
            .replace("  url: {landing}", "  url: {landing}\n  multipart_chunk: 64KiB"),
    );
    let output = run(&config, &[]).await;
    assert!(output.status.success(), "{}", common::stderr(&output));
    let report = assert_manifest_matches_parts(&ws, "items", 3000);
    assert_eq!(report["files"].as_array().unwrap().len(), 1);
    assert!(
        report["bytes_written"].as_u64().unwrap() > 3 * 64 * 1024,
        "the part spans several chunks: {report}"
    );
    // No temporary upload files are left next to the part.
    let leftovers: Vec<_> = common::files_under(&ws.landing())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `compression: zstd` lands `.jsonl.zst` parts (frames of whole lines, a multipart upload
/// past the chunk size) whose lines, hashes and manifest are those of a gzip landing.
#[tokio::test]
async fn zstd_parts_hold_the_same_records_as_gzip_parts() {
    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(ResponseTemplate::new(200).set_body_json(numbered(3000, 4)))
        .mount(&server)
        .await;
    let mut landed = Vec::new();
    for compression in ["gzip", "zstd"] {
        let ws = Workspace::new();
        let config = ws.config(
            &one_stream(&server.uri(), "{name: items, path: /items, primary_key: [id]}").replace(
                "  url: {landing}",
                &format!(
                    "  url: {{landing}}\n  compression: {compression}\n  compression_level: 3\n  multipart_chunk: 16KiB"
                ),
            ),
        );
        let output = run(&config, &[]).await;
        assert!(output.status.success(), "{}", common::stderr(&output));
        assert_manifest_matches_parts(&ws, "items", 3000);
        let parts = ws.part_files("shop", "items");
        let suffix = if compression == "gzip" {
            ".jsonl.gz"
        } else {
            ".jsonl.zst"
        };
        assert!(
            parts.iter().all(|part| part.to_string_lossy().ends_with(suffix)),
            "{parts:?}"
        );
        let lines: Vec<(Value, Value)> = parts
            .iter()
            .flat_map(|part| common::read_part(part))
            .map(|line| (line["_source_record_id"].clone(), line["_payload_sha256"].clone()))
            .collect();
        landed.push(lines);
    }
    assert_eq!(landed[0].len(), 3000);
    assert_eq!(landed[0], landed[1]);
}

#[tokio::test]
async fn parts_are_never_overwritten() {
    let server = odd_server().await;
    let ws = Workspace::new();
    let config = ws.config(&one_stream(
        &server.uri(),
        "{name: odd, path: /odd, records_path: /data, primary_key: [id]}",
    ));
    let run_id = "01a1fd00-0000-7000-8000-000000000001";
    let first = run(&config, &["--run-id", run_id]).await;
    assert!(first.status.success(), "{}", common::stderr(&first));
    let part = ws.part_files("shop", "odd")[0].clone();
    let before = std::fs::read(&part).unwrap();
    // A finished run id is refused at once, clearly, and nothing is touched.
    let second = run(&config, &["--run-id", run_id]).await;
    assert_eq!(second.status.code(), Some(2));
    let stderr = common::stderr(&second);
    assert!(
        stderr.contains("already finished") && stderr.contains("_manifests"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&part).unwrap(),
        before,
        "the first run's part is untouched"
    );
    assert_eq!(ws.manifests("shop").len(), 1);

    // Issue 15: a killed attempt (parts stored, no manifest) rerun with its run id resumes:
    // its parts are kept, new ones numbered after them, and the run succeeds instead of
    // failing forever on the create-only part names.
    let manifests = ws.landing().join("shop/_manifests");
    std::fs::remove_dir_all(&manifests).unwrap();
    let resumed = run(&config, &["--run-id", run_id]).await;
    assert!(resumed.status.success(), "{}", common::stderr(&resumed));
    assert_eq!(
        std::fs::read(&part).unwrap(),
        before,
        "the killed attempt's part is kept"
    );
    let manifest = &ws.manifests("shop")[0];
    assert_eq!(manifest["status"], "succeeded");
    let files = manifest["streams"][0]["files"].as_array().unwrap();
    assert!(
        files[0]["path"].as_str().unwrap().ends_with("part-00001.jsonl.gz"),
        "{files:?}"
    );
    assert_eq!(ws.part_files("shop", "odd").len(), 2);
}
