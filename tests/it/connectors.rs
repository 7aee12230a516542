//! The example connectors in `config-examples/`, each run end to end by the real binary
//! against a loopback server that reproduces its vendor's API: the response shape,
//! pagination, authentication (the server refuses wrong credentials) and rate-limit
//! headers. The configs are used as shipped; only the API root, the secrets and the
//! landing URL come from the environment, as they do in production.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use common::vendors::*;
use common::{Workspace, events, files_under, landfall, read_part, stderr, stdout, stream_report};

fn config_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config-examples")
        .join(format!("{name}.yaml"))
}

/// Runs `landfall <command> --config config-examples/<name>.yaml` with `envs`, landing
/// into the workspace.
async fn connector(command: &str, name: &str, workspace: &Workspace, envs: &[(&str, &str)]) -> Output {
    let landing = format!("file://{}", workspace.landing().display());
    let mut all: Vec<(&str, &str)> = vec![("LANDFALL_LANDING_URL", landing.as_str())];
    all.extend_from_slice(envs);
    let config = config_path(name);
    landfall(&[command, "--config", config.to_str().unwrap()], &all).await
}

/// Asserts exit 0 and returns the newest manifest.
fn succeeded(output: &Output, workspace: &Workspace, source: &str) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    let mut manifests = workspace.manifests(source);
    manifests.sort_by(|a, b| a["started_at"].as_str().cmp(&b["started_at"].as_str()));
    let manifest = manifests.pop().expect("a manifest");
    assert_eq!(manifest["status"], "succeeded", "{manifest:#}");
    manifest
}

/// The `_raw` records of a stream, parsed.
fn landed(workspace: &Workspace, source: &str, stream: &str) -> Vec<Value> {
    workspace
        .lines(source, stream)
        .iter()
        .map(|line| serde_json::from_str(line["_raw"].as_str().unwrap()).unwrap())
        .collect()
}

fn record_ids(workspace: &Workspace, source: &str, stream: &str) -> Vec<String> {
    workspace
        .lines(source, stream)
        .iter()
        .map(|line| line["_source_record_id"].as_str().unwrap().to_owned())
        .collect()
}

/// No secret appears in the output of any run, nor in any landed object (parts, manifests,
/// state, the encrypted auth state), compressed or not.
fn assert_no_secrets(workspace: &Workspace, outputs: &[&Output], secrets: &[&str]) {
    let mut texts: Vec<(String, String)> = outputs
        .iter()
        .flat_map(|output| {
            [
                ("stdout".to_owned(), stdout(output)),
                ("stderr".to_owned(), stderr(output)),
            ]
        })
        .collect();
    for path in files_under(&workspace.landing()) {
        let text = if path.extension().is_some_and(|ext| ext == "gz") {
            read_part(&path)
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()
        };
        texts.push((path.display().to_string(), text));
    }
    for secret in secrets {
        for (place, text) in &texts {
            assert!(!text.contains(secret), "secret {secret:?} leaked into {place}");
        }
    }
}

/// The data-type mapping of an example: every typed column a stream declares for its dbt
/// staging model is present in the landed records and holds a JSON value of that type
/// (null aside), so staging's casts will hold on the vendor's data.
fn assert_columns_typed(name: &str, workspace: &Workspace) {
    let text = std::fs::read_to_string(config_path(name)).unwrap();
    let config = landfall::config::ConnectorConfig::from_yaml(&text, landfall::config::Resolve::SyntaxOnly, &|_| None)
        .unwrap()
        .config;
    for stream in &config.streams {
        if stream.columns.is_empty() {
            continue;
        }
        let records = landed(workspace, &config.source.name, &stream.name);
        assert!(!records.is_empty(), "{name}.{}: nothing landed", stream.name);
        for (column, kind) in &stream.columns {
            let kind = kind.as_str().unwrap();
            let mut present = 0;
            for record in &records {
                let value = if column.starts_with('/') {
                    record.pointer(column)
                } else {
                    record.get(column)
                };
                let Some(value) = value.filter(|value| !value.is_null()) else {
                    continue;
                };
                present += 1;
                let fits = match kind {
                    "string" => value.is_string(),
                    "integer" => value.is_i64() || value.is_u64(),
                    "number" => value.is_number(),
                    "boolean" => value.is_boolean(),
                    "timestamp" => value
                        .as_str()
                        .is_some_and(|text| chrono::DateTime::parse_from_rfc3339(text).is_ok()),
                    "date" => value
                        .as_str()
                        .is_some_and(|text| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()),
                    "json" => value.is_object() || value.is_array(),
                    other => panic!("{name}.{}: unknown column type {other}", stream.name),
                };
                assert!(
                    fits,
                    "{name}.{}: column {column} is declared {kind} but holds {value}",
                    stream.name
                );
            }
            assert!(
                present > 0,
                "{name}.{}: column {column} is in no landed record (a typo in its pointer?)",
                stream.name
            );
        }
    }
}

fn event_count(output: &Output, name: &str) -> usize {
    events(output).iter().filter(|event| event["event"] == name).count()
}

// ---------------------------------------------------------------------------------------
// GitHub: a JSON array per page, RFC 8288 Link headers, bearer token, x-ratelimit-*.

#[tokio::test]
async fn github_link_header_bearer_rate_limit_headers_and_incremental_rerun() {
    let (fixture, api) = github_fixture().await;
    let workspace = Workspace::new();
    let envs = [
        ("GITHUB_API_URL", fixture.url.as_str()),
        ("GITHUB_TOKEN", GITHUB_TOKEN),
        ("GITHUB_REPOSITORY", "acme/widgets"),
    ];

    let first = connector("run", "github", &workspace, &envs).await;
    let manifest = succeeded(&first, &workspace, "github");
    assert_columns_typed("github", &workspace);
    let issues = stream_report(&manifest, "issues");
    assert_eq!(issues["rows_written"], 250);
    assert_eq!(issues["pages"], 3, "per_page 100: pages 1, 2, 3 through rel=\"next\"");
    assert_eq!(stream_report(&manifest, "issue_comments")["rows_written"], 30);
    let ids: BTreeSet<String> = record_ids(&workspace, "github", "issues").into_iter().collect();
    assert_eq!(ids, (1..=250).map(|n| (1_000_000 + n).to_string()).collect());

    let requests = api.log.on("/repos/acme/widgets/issues");
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].param("since"), Some("2024-01-01T00:00:00Z"));
    assert_eq!(requests[0].param("per_page"), Some("100"));
    assert_eq!(requests[0].param("page"), None);
    assert_eq!(requests[1].param("page"), Some("2"));
    assert_eq!(requests[2].param("page"), Some("3"));
    assert_eq!(
        requests[2].param("since"),
        Some("2024-01-01T00:00:00Z"),
        "the next URL is followed as is"
    );
    let exhausted: Vec<Value> = events(&first)
        .into_iter()
        .filter(|event| event["event"] == "rate_limited")
        .collect();
    assert!(
        exhausted.iter().any(|event| event["cause"] == "remaining_exhausted"),
        "x-ratelimit-remaining: 0 makes the next request wait for x-ratelimit-reset: {exhausted:?}"
    );
    assert_eq!(
        workspace.state("github", "issues").unwrap()["cursor"],
        "2024-01-02T04:10:00Z"
    );

    // Five issues change; the next run asks from the checkpoint minus the 1m lookback and
    // lands only what changed.
    {
        let mut issues = api.issues.lock().unwrap();
        for number in [3u64, 50, 100, 200, 250] {
            issues[(number - 1) as usize] =
                github_issue(number, 300 + number as i64, &format!("issue {number} edited"));
        }
    }
    // The second run meets both rate limits GitHub answers with 403 (issue 23): they are
    // waited out, not AUTH_FAILED.
    *api.refusals.lock().unwrap() = vec![Refusal::Primary, Refusal::Secondary];
    let second = connector("run", "github", &workspace, &envs).await;
    let manifest = succeeded(&second, &workspace, "github");
    let issues = stream_report(&manifest, "issues");
    assert_eq!(issues["rows_written"], 5, "{issues:#}");
    let retries =
        issues["retries"].as_u64().unwrap() + stream_report(&manifest, "issue_comments")["retries"].as_u64().unwrap();
    assert_eq!(retries, 2, "each 403 rate limit was retried once");
    let retried: Vec<Value> = events(&second)
        .into_iter()
        .filter(|event| event["event"] == "request_retried")
        .collect();
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert!(retried.iter().all(|event| event["code"] == "RATE_LIMIT"), "{retried:?}");
    let requests = api.log.on("/repos/acme/widgets/issues");
    assert_eq!(requests[3].param("since"), Some("2024-01-02T04:09:00Z"));
    let edited: Vec<Value> = landed(&workspace, "github", "issues")
        .into_iter()
        .filter(|issue| issue["title"].as_str().unwrap().ends_with("edited"))
        .collect();
    assert_eq!(edited.len(), 5);

    let check = connector("check", "github", &workspace, &envs).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(
        api.log
            .all()
            .iter()
            .all(|seen| seen.header("authorization") == Some(&format!("Bearer {GITHUB_TOKEN}"))),
        "every request carried the token"
    );
    assert_no_secrets(&workspace, &[&first, &second, &check], &[GITHUB_TOKEN]);

    let refused = connector(
        "run",
        "github",
        &workspace,
        &[
            ("GITHUB_API_URL", fixture.url.as_str()),
            ("GITHUB_TOKEN", "github_pat_revoked"),
            ("GITHUB_REPOSITORY", "acme/widgets"),
        ],
    )
    .await;
    assert_eq!(
        refused.status.code(),
        Some(4),
        "a refused token is exit 4: {}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("AUTH_FAILED"));
}

// ---------------------------------------------------------------------------------------
// Stripe: {"data": [...], "has_more": ..}, starting_after = last id, basic auth with the key.

#[tokio::test]
async fn stripe_last_record_cursor_has_more_basic_auth_and_incremental_rerun() {
    let (fixture, api) = stripe_fixture().await;
    let workspace = Workspace::new();
    let envs = [
        ("STRIPE_API_URL", fixture.url.as_str()),
        ("STRIPE_SECRET_KEY", STRIPE_KEY),
    ];

    let first = connector("run", "stripe", &workspace, &envs).await;
    let manifest = succeeded(&first, &workspace, "stripe");
    assert_columns_typed("stripe", &workspace);
    assert_eq!(stream_report(&manifest, "customers")["rows_written"], 230);
    assert_eq!(stream_report(&manifest, "charges")["rows_written"], 50);
    let requests = api.log.on("/v1/customers");
    assert_eq!(requests.len(), 3, "has_more: false ends the list without an empty page");
    let after: Vec<Option<&str>> = requests.iter().map(|seen| seen.param("starting_after")).collect();
    // Newest first: the last object of page one is cus_0131, of page two cus_0031.
    assert_eq!(after, [None, Some("cus_0131"), Some("cus_0031")]);
    let ids: BTreeSet<String> = record_ids(&workspace, "stripe", "customers").into_iter().collect();
    assert_eq!(ids.len(), 230);
    let charges = api.log.on("/v1/charges");
    assert_eq!(charges[0].param("created[gte]"), Some("1704067200"));
    assert_eq!(
        workspace.state("stripe", "charges").unwrap()["cursor"],
        (1_704_067_200 + 50 * 3600).to_string(),
        "unsorted: the checkpoint is the newest stored `created` once the window is done"
    );

    let events_report = stream_report(&manifest, "events");
    assert_eq!(events_report["rows_written"], 50, "{events_report:#}");
    assert_eq!(events_report["retries"], 1, "the 429 was retried with backoff");

    // After the first run: a new charge, a refund of ch_0007 and a dispute on ch_0008. Their
    // `created` does not change, so only the events stream can carry the refund and the
    // dispute (issue 23).
    let later = 1_704_067_200 + 60 * 3600;
    {
        let mut charges = api.charges.lock().unwrap();
        charges.push(
            json!({"id": "ch_0051", "object": "charge", "amount": 1, "amount_refunded": 0, "refunded": false,
                            "disputed": false, "currency": "eur", "status": "pending", "customer": "cus_0002",
                            "created": 1_704_067_200 + 51 * 3600}),
        );
        charges[6]["refunded"] = json!(true);
        charges[6]["amount_refunded"] = json!(700);
        charges[7]["disputed"] = json!(true);
        let mut events = api.events.lock().unwrap();
        events.push(stripe_event(
            "evt_0051",
            "charge.pending",
            1_704_067_200 + 51 * 3600,
            charges[50].clone(),
        ));
        events.push(stripe_event("evt_refund", "charge.refunded", later, charges[6].clone()));
        events.push(stripe_event(
            "evt_dispute",
            "charge.dispute.created",
            later + 1,
            json!({"id": "dp_0008", "object": "dispute", "charge": "ch_0008", "amount": 800, "status": "needs_response"}),
        ));
    }
    let second = connector("run", "stripe", &workspace, &envs).await;
    let manifest = succeeded(&second, &workspace, "stripe");
    let events_report = stream_report(&manifest, "events");
    assert_eq!(events_report["rows_written"], 3, "{events_report:#}");
    let landed_events = landed(&workspace, "stripe", "events");
    let refund = landed_events
        .iter()
        .find(|event| event["type"] == "charge.refunded")
        .expect("the refund arrives");
    assert_eq!(refund["data"]["object"]["id"], "ch_0007");
    assert_eq!(refund["data"]["object"]["amount_refunded"], 700);
    assert!(
        landed_events
            .iter()
            .any(|event| event["type"] == "charge.dispute.created" && event["data"]["object"]["charge"] == "ch_0008")
    );
    assert!(
        landed(&workspace, "stripe", "charges")
            .iter()
            .all(|charge| charge["refunded"] == false),
        "the charges stream alone never sees the refund: that is what the events stream is for"
    );
    let charges = stream_report(&manifest, "charges");
    assert_eq!(charges["rows_written"], 1, "{charges:#}");
    assert_eq!(
        charges["duplicate_rows"], 1,
        "the charge at the checkpoint is re-read, not landed"
    );
    assert_eq!(
        api.log.on("/v1/charges")[1].param("created[gte]"),
        Some((1_704_067_200 + 50 * 3600).to_string().as_str())
    );

    let check = connector("check", "stripe", &workspace, &envs).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_no_secrets(&workspace, &[&first, &second, &check], &[STRIPE_KEY]);
}

// ---------------------------------------------------------------------------------------
// HubSpot: {"results", "paging": {"next": {"after"}}}, OAuth 2.0 refresh token, 401 on an
// expired access token, X-HubSpot-RateLimit-* headers.

#[tokio::test]
async fn hubspot_search_incremental_10k_cap_archived_deletes_and_oauth2_refresh_token() {
    let (fixture, api) = hubspot_fixture().await;
    let token_url = format!("{}/oauth/v1/token", fixture.url);
    let workspace = Workspace::new();
    let envs = [
        ("HUBSPOT_API_URL", fixture.url.as_str()),
        ("HUBSPOT_TOKEN_URL", token_url.as_str()),
        ("HUBSPOT_CLIENT_ID", HUBSPOT_CLIENT_ID),
        ("HUBSPOT_CLIENT_SECRET", HUBSPOT_CLIENT_SECRET),
        ("HUBSPOT_REFRESH_TOKEN", HUBSPOT_REFRESH_TOKEN),
    ];

    // 10,050 contacts changed since the start: one search reaches its 10,000-result cap.
    let first = connector("run", "hubspot", &workspace, &envs).await;
    assert_ne!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_ne!(first.status.code(), Some(4), "{}", stderr(&first));
    let manifest = workspace.manifests("hubspot").pop().expect("a manifest");
    let contacts = stream_report(&manifest, "contacts");
    assert_eq!(contacts["rows_written"], 10_000, "{contacts:#}");
    assert_eq!(contacts["pages"], 100);
    assert_eq!(contacts["error"]["code"], "PAGINATION_ERROR", "{contacts:#}");
    assert_eq!(
        workspace.state("hubspot", "contacts").unwrap()["cursor"],
        hubspot_millis(&hubspot_modified(9_999)),
        "the checkpoint is the last stored contact (kept in epoch milliseconds, the stream's \
         format): the next run continues from it"
    );
    assert_eq!(stream_report(&manifest, "companies")["rows_written"], 40);
    assert_eq!(stream_report(&manifest, "contacts_archived")["rows_written"], 3);
    assert_eq!(stream_report(&manifest, "companies_archived")["rows_written"], 3);
    assert_columns_typed("hubspot", &workspace);
    let searches = api.log.on("/crm/v3/objects/contacts/search");
    assert!(searches.iter().all(|seen| seen.method == "POST"));
    let bodies: Vec<Value> = searches
        .iter()
        .map(|seen| serde_json::from_str(&seen.body).unwrap())
        .collect();
    assert_eq!(
        bodies[0]["filterGroups"][0]["filters"][0]["value"], "1704067200000",
        "incremental.start sent as epoch milliseconds, the format HubSpot documents"
    );
    assert_eq!(bodies[0]["after"], Value::Null);
    assert_eq!(
        bodies[0]["properties"],
        json!(["email", "firstname", "lastname", "lifecyclestage", "lastmodifieddate"])
    );
    assert!(
        bodies.iter().all(|body| body["after"]
            .as_str()
            .is_none_or(|after| after.parse::<usize>().unwrap() < 10_000)),
        "max_pages stops before HubSpot's 400"
    );
    let afters: Vec<&Value> = bodies.iter().take(3).map(|body| &body["after"]).collect();
    assert_eq!(
        afters,
        [&Value::Null, &json!("100"), &json!("100")],
        "page two is sent again with the refreshed token after the 401"
    );
    assert_eq!(
        api.tokens_issued.load(Ordering::SeqCst),
        2,
        "one token at start, one after the 401"
    );
    assert_eq!(event_count(&first, "token_refreshed"), 2);
    assert!(api.log.on("/oauth/v1/token").iter().all(|seen| seen.method == "POST"));
    assert!(
        api.log
            .on("/crm/v3/objects/contacts")
            .iter()
            .all(|seen| seen.param("archived") == Some("true"))
    );
    let archived = landed(&workspace, "hubspot", "contacts_archived");
    assert!(archived.iter().all(|record| record["archived"] == true));

    // Two contacts change; the second run continues after the cap and lands the rest.
    {
        let mut modified = api.modified.lock().unwrap();
        for index in [5usize, 7] {
            modified.insert(
                ("/crm/v3/objects/contacts/search".to_owned(), index),
                hubspot_modified(20_000 + index),
            );
        }
    }
    let second = connector("run", "hubspot", &workspace, &envs).await;
    let manifest = succeeded(&second, &workspace, "hubspot");
    let contacts = stream_report(&manifest, "contacts");
    assert_eq!(
        contacts["rows_written"], 52,
        "contacts 10,000 to 10,049 and the two changed: {contacts:#}"
    );
    assert_eq!(contacts["duplicate_rows"], 6, "the 5m lookback re-reads 6 contacts");
    let last = api.log.on("/crm/v3/objects/contacts/search").pop().unwrap();
    let body: Value = serde_json::from_str(&last.body).unwrap();
    assert_eq!(stream_report(&manifest, "companies")["rows_written"], 0);
    let resumed = api
        .log
        .on("/crm/v3/objects/contacts/search")
        .into_iter()
        .rev()
        .find(|seen| serde_json::from_str::<Value>(&seen.body).unwrap()["after"].is_null())
        .unwrap();
    let resumed: Value = serde_json::from_str(&resumed.body).unwrap();
    assert_eq!(
        resumed["filterGroups"][0]["filters"][0]["value"],
        hubspot_millis("2024-02-07T22:34:00Z"),
        "checkpoint (contact 9,999) minus the 5m lookback; {body}"
    );
    let ids: BTreeSet<String> = record_ids(&workspace, "hubspot", "contacts").into_iter().collect();
    assert_eq!(ids.len(), HUBSPOT_CONTACTS);

    let check = connector("check", "hubspot", &workspace, &envs).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_no_secrets(
        &workspace,
        &[&first, &second, &check],
        &[
            HUBSPOT_CLIENT_SECRET,
            HUBSPOT_REFRESH_TOKEN,
            "CJT-access-fixture-1",
            "CJT-access-fixture-2",
        ],
    );

    let mut wrong = envs;
    wrong[4] = ("HUBSPOT_REFRESH_TOKEN", "na1-refresh-revoked");
    let refused = connector("run", "hubspot", &workspace, &wrong).await;
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
}

// ---------------------------------------------------------------------------------------
// Zendesk: cursor-based incremental export, start_time then after_url, end_of_stream, the
// minute before each request left out, basic {email}/token, 10 requests per minute with a
// 429 + Retry-After.

#[tokio::test]
async fn zendesk_cursor_export_after_url_end_of_stream_excluded_minute_and_incremental_rerun() {
    let (fixture, api) = zendesk_fixture().await;
    let workspace = Workspace::new();
    let envs = [
        ("ZENDESK_API_URL", fixture.url.as_str()),
        ("ZENDESK_EMAIL", ZENDESK_EMAIL),
        ("ZENDESK_API_TOKEN", ZENDESK_TOKEN),
    ];

    let first = connector("run", "zendesk", &workspace, &envs).await;
    let manifest = succeeded(&first, &workspace, "zendesk");
    assert_columns_typed("zendesk", &workspace);
    let tickets = stream_report(&manifest, "tickets");
    assert_eq!(tickets["rows_written"], 2495, "{tickets:#}");
    assert_eq!(tickets["duplicate_rows"], 0, "cursor pages do not overlap");
    assert_eq!(tickets["pages"], 3, "1000 + 1000 + 495, the last with end_of_stream");
    assert_eq!(tickets["retries"], 1, "the 429 was retried after its Retry-After");
    assert_eq!(stream_report(&manifest, "users")["rows_written"], 40);
    assert_eq!(
        workspace.state("zendesk", "users").unwrap()["cursor"],
        (ZENDESK_START + 40).to_string().as_str(),
        "the users checkpoint moves on updated_at (2024-01-01T00:00:40Z), a field their records \
         have, and is kept in the stream's format (Unix seconds)"
    );
    let requests = api.log.on("/api/v2/incremental/tickets/cursor.json");
    let start = ZENDESK_START.to_string();
    let start_times: Vec<Option<&str>> = requests.iter().map(|seen| seen.param("start_time")).collect();
    assert_eq!(
        start_times,
        [Some(start.as_str()), Some(start.as_str()), None, None],
        "start_time on the first request (and its retry after the 429), then after_url"
    );
    assert!(requests[2..].iter().all(|seen| seen.param("cursor").is_some()));
    let checkpoint = (ZENDESK_START + 2495 * 10).to_string();
    assert_eq!(
        workspace.state("zendesk", "tickets").unwrap()["cursor"],
        checkpoint.as_str(),
        "the last stored ticket, not the time of the request"
    );

    // An hour later: the tickets of the excluded minute are exportable, and three are new.
    // The next run starts at the checkpoint, so the minute is no gap (issue 23).
    api.now.fetch_add(3600, Ordering::SeqCst);
    api.tickets
        .lock()
        .unwrap()
        .extend((2501..=2503).map(|id| zendesk_ticket(id, ZENDESK_START + id * 10)));
    let config = config_path("zendesk");
    let landing = format!("file://{}", workspace.landing().display());
    let mut second_envs = vec![("LANDFALL_LANDING_URL", landing.as_str())];
    second_envs.extend_from_slice(&envs);
    // Both streams: `incremental.format: unix_seconds` sends the users stream's RFC 3339
    // checkpoint (`updated_at`) as Unix seconds, which is all start_time accepts.
    let second = landfall(&["run", "--config", config.to_str().unwrap()], &second_envs).await;
    let manifest = succeeded(&second, &workspace, "zendesk");
    let tickets = stream_report(&manifest, "tickets");
    assert_eq!(tickets["rows_written"], 8, "2496 to 2503: {tickets:#}");
    assert_eq!(tickets["duplicate_rows"], 1, "the ticket at the checkpoint");
    let last = api.log.on("/api/v2/incremental/tickets/cursor.json");
    assert_eq!(last[4].param("start_time"), Some(checkpoint.as_str()));
    let ids: BTreeSet<String> = record_ids(&workspace, "zendesk", "tickets").into_iter().collect();
    assert_eq!(ids.len(), 2503, "every ticket landed, none lost to the excluded minute");

    // The users rerun sent its RFC 3339 checkpoint as the Unix seconds start_time demands.
    let users = api.log.on("/api/v2/incremental/users/cursor.json");
    let users_start = (ZENDESK_START + 40).to_string();
    assert_eq!(users.last().unwrap().param("start_time"), Some(users_start.as_str()));
    assert_eq!(stream_report(&manifest, "users")["status"], "succeeded");

    let check = connector("check", "zendesk", &workspace, &envs).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_no_secrets(&workspace, &[&first, &second, &check], &[ZENDESK_TOKEN]);
}

// ---------------------------------------------------------------------------------------
// Open Exchange Rates: one object per response, app_id in the query, no pagination.

#[tokio::test]
async fn open_exchange_rates_single_document_record_and_app_id_in_the_query() {
    let (fixture, log) = oxr_fixture().await;
    let api_url = format!("{}/api", fixture.url);
    let workspace = Workspace::new();
    let envs = [("OXR_API_URL", api_url.as_str()), ("OXR_APP_ID", OXR_APP_ID)];

    let run = connector("run", "openexchangerates", &workspace, &envs).await;
    let manifest = succeeded(&run, &workspace, "openexchangerates");
    assert_columns_typed("openexchangerates", &workspace);
    assert_eq!(stream_report(&manifest, "latest_rates")["rows_written"], 1);
    assert_eq!(stream_report(&manifest, "currencies")["rows_written"], 1);
    let lines = workspace.lines("openexchangerates", "latest_rates");
    assert_eq!(lines[0]["_raw"], OXR_LATEST, "the whole document, byte for byte");
    assert_eq!(lines[0]["_source_record_id"], r#"["USD",1704070800]"#);
    let endpoint = lines[0]["_source_endpoint"].as_str().unwrap();
    assert_eq!(
        endpoint, "GET /api/latest.json?base=USD&show_alternative=false",
        "the endpoint names the request without its credentials"
    );
    assert_eq!(
        workspace.lines("openexchangerates", "currencies")[0]["_raw"],
        OXR_CURRENCIES
    );
    let latest = log.on("/api/latest.json");
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].param("base"), Some("USD"));
    assert_eq!(latest[0].param("show_alternative"), Some("false"));

    let check = connector("check", "openexchangerates", &workspace, &envs).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_no_secrets(&workspace, &[&run, &check], &[OXR_APP_ID]);

    let refused = connector(
        "run",
        "openexchangerates",
        &workspace,
        &[("OXR_API_URL", api_url.as_str()), ("OXR_APP_ID", "wrong-app-id")],
    )
    .await;
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));

    // Over the monthly quota: 429 access_restricted, which no retry can fix. One request,
    // then RATE_LIMIT; no retry spends more of next month's quota.
    let (listener, url) = bind().await;
    let log = Log::default();
    let restricted = Router::new()
        .route("/api/latest.json", get(oxr_over_quota))
        .route("/api/currencies.json", get(oxr_over_quota))
        .with_state(log.clone());
    let over = serve(listener, url, restricted);
    let over_url = format!("{}/api", over.url);
    let run = connector(
        "run",
        "openexchangerates",
        &workspace,
        &[("OXR_API_URL", over_url.as_str()), ("OXR_APP_ID", OXR_APP_ID)],
    )
    .await;
    assert_ne!(run.status.code(), Some(0));
    assert!(stderr(&run).contains("RATE_LIMIT"), "{}", stderr(&run));
    assert_eq!(log.on("/api/latest.json").len(), 1, "not retried");
}

/// Runs of a five-field cron schedule in a 31-day month, for the forms the examples use:
/// fixed minute, and an hour that is `*`, `*/N`, a number or a comma list; day, month and
/// weekday `*`.
fn cron_runs_in_31_days(schedule: &str) -> u64 {
    match schedule {
        "@daily" | "@midnight" => return 31,
        "@hourly" => return 31 * 24,
        _ => {}
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "{schedule}");
    assert!(fields[0].parse::<u32>().is_ok(), "one run an hour at most: {schedule}");
    assert_eq!(&fields[2..], ["*", "*", "*"], "{schedule}");
    let hours = match fields[1] {
        "*" => 24,
        every if every.starts_with("*/") => 24_u64.div_ceil(every[2..].parse::<u64>().unwrap()),
        list => list.split(',').count() as u64,
    };
    hours * 31
}

/// Issue 23: the shipped schedule, with the DAG's check task, fits the Free plan's 1,000
/// requests a month, and the config's header states the same schedule.
#[test]
fn open_exchange_rates_schedule_fits_the_free_plan() {
    let sidecar = config_path("openexchangerates").with_extension("airflow.yaml");
    let settings: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(&sidecar).expect("config-examples/openexchangerates.airflow.yaml"),
    )
    .unwrap();
    let schedule = settings["schedule"].as_str().expect("a schedule");
    let text = std::fs::read_to_string(config_path("openexchangerates")).unwrap();
    let config = landfall::config::ConnectorConfig::from_yaml(&text, landfall::config::Resolve::SyntaxOnly, &|_| None)
        .unwrap()
        .config;
    // Per DAG run: `check` reads the first page of every stream, then each stream its one
    // page (no pagination).
    let per_run = 2 * config.streams.len() as u64;
    let month = cron_runs_in_31_days(schedule) * per_run;
    assert!(month <= 1000, "{schedule}: {month} requests in a 31-day month");
    assert!(text.contains(schedule), "the header states the schedule {schedule}");
    assert!(
        text.contains(&format!("{month} requests")),
        "the header states {month} requests"
    );
}

// ---------------------------------------------------------------------------------------
// Omnidesk: {"0": {"case": ..}, .., "total_count"}, page/limit, basic email + API key,
// non-standard rate-limit headers and a 429.

#[tokio::test]
async fn omnidesk_records_keyed_by_position_page_numbers_and_basic_auth() {
    let (fixture, api) = omnidesk_fixture().await;
    let workspace = Workspace::new();
    let envs = [
        ("OMNIDESK_API_URL", fixture.url.as_str()),
        ("OMNIDESK_STAFF_EMAIL", OMNIDESK_EMAIL),
        ("OMNIDESK_API_KEY", OMNIDESK_KEY),
    ];

    let run = connector("run", "omnidesk", &workspace, &envs).await;
    let manifest = succeeded(&run, &workspace, "omnidesk");
    assert_columns_typed("omnidesk", &workspace);
    let cases = stream_report(&manifest, "cases");
    assert_eq!(cases["rows_written"], 230, "{cases:#}");
    assert_eq!(cases["pages"], 3, "100 + 100 + 30: the short page is the last");
    assert_eq!(cases["retries"], 1, "the 429 was retried with backoff");
    assert_eq!(stream_report(&manifest, "users")["rows_written"], 5);
    let requests = api.log.on("/api/cases.json");
    let pages: Vec<Option<&str>> = requests.iter().map(|seen| seen.param("page")).collect();
    assert_eq!(pages, [Some("1"), Some("2"), Some("2"), Some("3")]);
    assert!(requests.iter().all(|seen| seen.param("limit") == Some("100")));
    let lines = workspace.lines("omnidesk", "cases");
    assert_eq!(lines[0]["_source_record_id"], "2000");
    assert!(
        lines[0]["_raw"]
            .as_str()
            .unwrap()
            .starts_with(r#"{"case":{"case_id":2000,"#),
        "each member's value is the record, byte for byte: {}",
        lines[0]["_raw"]
    );
    assert!(
        lines
            .iter()
            .all(|line| !line["_raw"].as_str().unwrap().contains("total_count"))
    );

    let check = connector("check", "omnidesk", &workspace, &envs).await;
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_no_secrets(&workspace, &[&run, &check], &[OMNIDESK_KEY]);
}

// ---------------------------------------------------------------------------------------
// Every example: documented, loadable without its secrets, its secrets named in
// `<name>.env.example` without values, and its vendor's rate limits written down.

fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("config-examples"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml")
                .filter(|name| !name.ends_with(".airflow"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The connectors these tests certify; each has a test above.
const VENDORS: &[&str] = &[
    "github",
    "hubspot",
    "omnidesk",
    "openexchangerates",
    "stripe",
    "zendesk",
];

#[test]
fn every_vendor_example_is_documented_and_names_its_secrets() {
    let names = example_names();
    for vendor in VENDORS {
        assert!(
            names.iter().any(|name| name == vendor),
            "config-examples/{vendor}.yaml is missing"
        );
    }
    let reference = regex::Regex::new(r"\$\{env:([A-Z0-9_]+)(:-[^}]*)?\}").unwrap();
    for name in VENDORS {
        let text = std::fs::read_to_string(config_path(name)).unwrap();
        landfall::config::ConnectorConfig::from_yaml(&text, landfall::config::Resolve::SyntaxOnly, &|_| None)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let lower = text.to_lowercase();
        assert!(
            lower.contains("rate limits ("),
            "{name}: the vendor's rate limits are documented with their source"
        );
        assert!(text.contains("rate_limit:"), "{name}: source.rate_limit reflects them");
        let env_example = std::fs::read_to_string(config_path(name).with_extension("env.example"))
            .unwrap_or_else(|_| panic!("config-examples/{name}.env.example is missing"));
        let declared: BTreeSet<&str> = env_example
            .lines()
            .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (key, value) = line
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{name}.env.example: `{line}`"));
                assert!(
                    value.is_empty(),
                    "{name}.env.example gives a value for {key}: examples name secrets, never hold them"
                );
                key
            })
            .collect();
        for captures in reference.captures_iter(&text) {
            assert!(
                declared.contains(&captures[1]),
                "{name}.env.example does not name {}",
                &captures[1]
            );
        }
    }
}

#[tokio::test]
async fn every_example_validates_offline_without_its_secrets() {
    for name in example_names() {
        let config = config_path(&name);
        let output = landfall(&["validate", "--no-resolve", "--config", config.to_str().unwrap()], &[]).await;
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
    }
}
