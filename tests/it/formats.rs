//! Response formats other than one JSON document (`streams[].format`): CSV, TSV, XML and
//! NDJSON bodies from loopback servers, in a declared encoding, gzip-compressed, with
//! malformed rows, incrementally, and large, each run through the real binary.

use crate::common;

use std::io::Write;

use common::{Workspace, stderr};
use serde_json::Value;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Serves `body` at `/export` as `content_type`.
async fn serve(body: Vec<u8>, content_type: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/export"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, content_type))
        .mount(&server)
        .await;
    server
}

/// Runs the stream `stream` (YAML flow mapping without its name and path) against `server`.
async fn run(server: &MockServer, stream: &str) -> (Workspace, std::process::Output) {
    let ws = Workspace::new();
    let config = ws.config(&common::one_stream(
        &server.uri(),
        &format!("{{name: export, path: /export, {stream}}}"),
    ));
    let output = common::run(&config, &[]).await;
    (ws, output)
}

fn dead_letters(ws: &Workspace) -> Vec<Value> {
    common::files_under(&ws.landing().join("shop/_dead_letter/export"))
        .iter()
        .flat_map(|path| common::read_part(path))
        .collect()
}

fn sha256(text: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text))
}

fn record(line: &Value) -> Value {
    serde_json::from_str(line["_record"].as_str().expect("_record is JSON text")).unwrap()
}

#[tokio::test]
async fn csv_rows_land_as_sent_with_their_parsed_form() {
    let body = "id,name,note\r\n1,\"Smith, J\",\"said \"\"hi\"\"\r\nthen left\"\r\n2,Ann,\r\n";
    let server = serve(body.as_bytes().to_vec(), "text/csv").await;
    let (ws, output) = run(&server, "format: csv, primary_key: [id]").await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = ws.lines("shop", "export");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["_raw"], "1,\"Smith, J\",\"said \"\"hi\"\"\r\nthen left\"");
    assert_eq!(
        record(&lines[0]),
        serde_json::json!({"id": "1", "name": "Smith, J", "note": "said \"hi\"\r\nthen left"})
    );
    assert_eq!(lines[0]["_source_record_id"], "1");
    assert_eq!(
        lines[0]["_payload_sha256"],
        sha256(lines[0]["_raw"].as_str().unwrap().as_bytes()).as_str()
    );
    assert_eq!(lines[1]["_raw"], "2,Ann,");
    assert_eq!(
        record(&lines[1]),
        serde_json::json!({"id": "2", "name": "Ann", "note": ""})
    );
    // Column order is the header's.
    assert!(lines[1]["_record"].as_str().unwrap().starts_with("{\"id\""));
    let manifest = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(manifest["rows_written"], 2);
    assert_eq!(manifest["dead_letter_rows"], 0);

    // `check` reads the first page's rows the same way.
    let config = ws.config(&common::one_stream(
        &server.uri(),
        "{name: export, path: /export, format: csv, primary_key: [id]}",
    ));
    let output = common::landfall(&["check", "--config", config.to_str().unwrap()], &[]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let said = format!("{}{}", common::stdout(&output), stderr(&output));
    assert!(said.contains("HTTP 200 with 2 records on the first page"), "{said}");
}

#[tokio::test]
async fn tsv_with_explicit_columns_and_no_header() {
    let server = serve(b"a1\tx;y\nb2\t\"q\"\n".to_vec(), "text/tab-separated-values").await;
    let (ws, output) = run(
        &server,
        "format: tsv, csv: {header: false, columns: [code, value]}, primary_key: [code]",
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = ws.lines("shop", "export");
    let records: Vec<Value> = lines.iter().map(record).collect();
    assert_eq!(
        records,
        [
            serde_json::json!({"code": "a1", "value": "x;y"}),
            serde_json::json!({"code": "b2", "value": "q"})
        ]
    );
    assert_eq!(lines[1]["_raw"], "b2\t\"q\"");
}

const CBR: &str = "<?xml version=\"1.0\" encoding=\"windows-1251\"?>\n<ValCurs Date=\"02.03.2024\" name=\"Foreign Currency Market\"><Valute ID=\"R01235\"><NumCode>840</NumCode><CharCode>USD</CharCode><Nominal>1</Nominal><Name>Доллар США</Name><Value>92,5058</Value><VunitRate>92,5058</VunitRate></Valute><Valute ID=\"R01239\"><NumCode>978</NumCode><CharCode>EUR</CharCode><Nominal>1</Nominal><Name>Евро</Name><Value>99,7703</Value><VunitRate>99,7703</VunitRate></Valute></ValCurs>";

/// The Central Bank of Russia's daily rates: XML in windows-1251, as `XML_daily.asp` serves it.
#[tokio::test]
async fn cbr_daily_rates_in_windows_1251_land_element_by_element() {
    let (body, _, _) = encoding_rs::WINDOWS_1251.encode(CBR);
    let server = serve(body.into_owned(), "application/xml; charset=windows-1251").await;
    let (ws, output) = run(
        &server,
        "format: xml, xml: {record_path: /ValCurs/Valute}, primary_key: [\"@ID\"]",
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = ws.lines("shop", "export");
    assert_eq!(lines.len(), 2);
    let usd = "<Valute ID=\"R01235\"><NumCode>840</NumCode><CharCode>USD</CharCode><Nominal>1</Nominal><Name>Доллар США</Name><Value>92,5058</Value><VunitRate>92,5058</VunitRate></Valute>";
    assert_eq!(lines[0]["_raw"], usd);
    assert_eq!(lines[0]["_payload_sha256"], sha256(usd.as_bytes()).as_str());
    assert_eq!(lines[0]["_source_record_id"], "R01235");
    assert_eq!(
        record(&lines[0]),
        serde_json::json!({"@ID": "R01235", "NumCode": "840", "CharCode": "USD", "Nominal": "1",
                           "Name": "Доллар США", "Value": "92,5058", "VunitRate": "92,5058"})
    );
    assert_eq!(record(&lines[1])["Name"], "Евро");

    // The example config reads the same answer.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config-examples/cbr.yaml");
    let daily = MockServer::start().await;
    let (body, _, _) = encoding_rs::WINDOWS_1251.encode(CBR);
    Mock::given(method("GET"))
        .and(path("/scripts/XML_daily.asp"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(body.into_owned(), "application/xml; charset=windows-1251"),
        )
        .mount(&daily)
        .await;
    let ws = Workspace::new();
    let landing = format!("file://{}", ws.landing().display());
    let output = common::landfall(
        &["run", "--config", example],
        &[
            ("CBR_API_URL", daily.uri().as_str()),
            ("LANDFALL_LANDING_URL", landing.as_str()),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let ids: Vec<Value> = ws
        .lines("cbr", "daily_rates")
        .into_iter()
        .map(|line| line["_source_record_id"].clone())
        .collect();
    assert_eq!(ids, ["R01235", "R01239"]);
}

#[tokio::test]
async fn ndjson_lines_land_and_a_bad_line_is_a_dead_letter() {
    let server = serve(
        b"{\"id\": 1}\n{\"id\":2,\"x\":[1]}\r\n{\"id\": 3\n\n".to_vec(),
        "application/x-ndjson",
    )
    .await;
    let (ws, output) = run(&server, "format: ndjson, primary_key: [id], max_dead_letter_ratio: 0.5").await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = ws.lines("shop", "export");
    let raw: Vec<&str> = lines.iter().map(|line| line["_raw"].as_str().unwrap()).collect();
    assert_eq!(raw, ["{\"id\": 1}", "{\"id\":2,\"x\":[1]}"]);
    assert!(lines[0].get("_record").is_none(), "an ndjson record is its _raw");
    let dead = dead_letters(&ws);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["_raw"], "{\"id\": 3");
    assert_eq!(dead[0]["_error"]["code"], "PARSING_ERROR");
}

/// A body served as `application/gzip` (not `Content-Encoding`): decompressed in a stream.
#[tokio::test]
async fn a_gzip_body_is_decompressed_as_it_is_read() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(b"id,v\n1,a\n2,b\n").unwrap();
    let server = serve(encoder.finish().unwrap(), "application/gzip").await;
    let (ws, output) = run(&server, "format: csv, compression: auto, primary_key: [id]").await;
    assert!(output.status.success(), "{}", stderr(&output));
    let raw: Vec<Value> = ws
        .lines("shop", "export")
        .into_iter()
        .map(|line| line["_raw"].clone())
        .collect();
    assert_eq!(raw, ["1,a", "2,b"]);

    // Without compression the gzip bytes are rows of garbage: the stream fails, nothing lost.
    let (ws, output) = run(&server, "format: csv, primary_key: [id]").await;
    assert!(!output.status.success());
    assert!(ws.lines("shop", "export").is_empty());
}

/// Each malformed row is a dead letter with its exact bytes (`_raw_base64` when they are
/// not UTF-8); the rows around it land.
#[tokio::test]
async fn malformed_rows_are_dead_letters_with_their_exact_bytes() {
    let body = b"id,v\n1,ok\n2,too,many\n3,bad\"quote\n4,\xff\xfe\n5,\"open\n".to_vec();
    let server = serve(body, "text/csv").await;
    let (ws, output) = run(&server, "format: csv, primary_key: [id], max_dead_letter_ratio: 1").await;
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = ws.lines("shop", "export");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["_raw"], "1,ok");
    let dead = dead_letters(&ws);
    let raw: Vec<&str> = dead.iter().map(|line| line["_raw"].as_str().unwrap()).collect();
    assert_eq!(raw, ["2,too,many", "3,bad\"quote", "4,\u{fffd}\u{fffd}", "5,\"open"]);
    assert_eq!(dead[2]["_raw_base64"], "NCz//g==");
    assert_eq!(dead[2]["_payload_sha256"], sha256(b"4,\xff\xfe").as_str());
    assert!(dead.iter().all(|line| line["_error"]["code"] == "PARSING_ERROR"));
    assert_eq!(ws.manifests("shop")[0]["streams"][0]["dead_letter_rows"], 4);

    // XML that breaks off: the records before land, the rest is one dead letter, the
    // stream fails.
    let server = serve(b"<r><i>1</i><i>2</x></r>".to_vec(), "application/xml").await;
    let (ws, output) = run(
        &server,
        "format: xml, xml: {record_path: /r/i}, max_dead_letter_ratio: 1",
    )
    .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("PARSING_ERROR"), "{}", stderr(&output));
    assert_eq!(ws.lines("shop", "export").len(), 1);
    let dead = dead_letters(&ws);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["_raw"], "<i>2</x></r>");
}

/// An incremental stream over a CSV column: the checkpoint is the greatest value landed,
/// and the next run asks from there.
#[tokio::test]
async fn an_incremental_run_over_a_csv_column() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/export"))
        .and(query_param("since", "2024-01-01"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(b"id,updated\n1,2024-01-03\n2,2024-01-05\n".to_vec(), "text/csv"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/export"))
        .and(query_param("since", "2024-01-05"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(b"id,updated\n2,2024-01-05\n3,2024-01-06\n".to_vec(), "text/csv"),
        )
        .mount(&server)
        .await;
    let ws = Workspace::new();
    let config = ws.config(&common::one_stream(
        &server.uri(),
        "{name: export, path: /export, format: csv, primary_key: [id], incremental: {cursor_field: updated, param: since, start: '2024-01-01', format: date}}",
    ));
    for _ in 0..2 {
        let output = common::run(&config, &[]).await;
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let state = ws.state("shop", "export").expect("a checkpoint");
    assert_eq!(state["cursor"], "2024-01-06", "{state}");
    let mut ids: Vec<String> = ws
        .lines("shop", "export")
        .iter()
        .map(|line| line["_source_record_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"], "row 2 (seen at the checkpoint) lands once");
}

/// A CSV body of tens of MiB lands row by row from its temporary file in flat memory.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_csv_body_lands_in_flat_memory() {
    const ROWS: usize = 600_000;
    let mut body = String::from("id,name,amount,note\n");
    for id in 0..ROWS {
        body.push_str(&format!(
            "{id},name {id},{}.{:02},\"a note, with a comma and some padding ............\"\n",
            id * 7,
            id % 100
        ));
    }
    let size = body.len();
    assert!(size > 40 << 20, "{size} bytes");
    let server = serve(body.into_bytes(), "text/csv").await;
    let ws = Workspace::new();
    let text = common::one_stream(
        &server.uri(),
        "{name: export, path: /export, format: csv, primary_key: [id]}",
    )
    .replace("landing:\n", "landing:\n  compression: none\n");
    let run = crate::hostile::run_measured(&ws.config(&text), &[]).await;
    run.assert_sane(0, "a large csv body");
    let stream = &ws.manifests("shop")[0]["streams"][0];
    assert_eq!(stream["rows_written"], ROWS);
    assert_eq!(stream["pages"], 1);
    assert!(
        run.peak_rss_mib < 64,
        "peak RSS {} MiB for a body of {} MiB",
        run.peak_rss_mib,
        size >> 20
    );
}
