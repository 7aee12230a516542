//! Loopback servers that reproduce the example connectors' vendors (GitHub, Stripe,
//! HubSpot, Zendesk, Open Exchange Rates, Omnidesk): response shapes, pagination,
//! authentication (wrong credentials are refused) and rate-limit headers. Used by
//! `tests/it/connectors.rs` (the examples run end to end) and `tests/it/init.rs` (`landfall init`
//! proposes the examples' essentials from them).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One request as the fixture saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes()).into_owned().collect()
    }
}

/// The requests a fixture received, in order.
#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub async fn record(&self, request: Request) -> Seen {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let seen = Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        self.0.lock().unwrap().push(seen.clone());
        seen
    }

    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    pub fn on(&self, path: &str) -> Vec<Seen> {
        self.all().into_iter().filter(|seen| seen.path == path).collect()
    }
}

pub fn respond(status: StatusCode, body: String, headers: &[(&str, String)]) -> Response {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8");
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(body)).unwrap()
}

pub fn basic(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// A loopback server; `url` is its root (`http://127.0.0.1:PORT`).
pub struct Fixture {
    pub url: String,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

pub fn serve(listener: tokio::net::TcpListener, url: String, router: Router) -> Fixture {
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Fixture { url, task }
}

pub const GITHUB_TOKEN: &str = "github_pat_11FIXTURE0token0abcdefghijklmnop";

pub struct GitHub {
    pub url: String,
    pub log: Log,
    pub issues: Mutex<Vec<Value>>,
    pub comments: Vec<Value>,
    pub served: AtomicUsize,
    /// Rate-limit refusals the next requests get, last first.
    pub refusals: Mutex<Vec<Refusal>>,
}

#[derive(Clone, Copy)]
pub enum Refusal {
    Secondary,
    Primary,
}

pub fn github_issue(number: u64, minutes: i64, title: &str) -> Value {
    let updated =
        chrono::DateTime::parse_from_rfc3339("2024-01-02T00:00:00Z").unwrap() + chrono::Duration::minutes(minutes);
    let updated = updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let closed = number % 10 == 0;
    json!({"id": 1_000_000 + number, "number": number, "title": title, "state": if closed { "closed" } else { "open" },
           "user": {"login": "octocat"}, "created_at": "2024-01-01T00:00:00Z",
           "updated_at": updated, "closed_at": if closed { Value::String(updated.clone()) } else { Value::Null }})
}

pub async fn github_list(State(api): State<Arc<GitHub>>, request: Request) -> Response {
    let seen = api.log.record(request).await;
    if seen.header("authorization") != Some(&format!("Bearer {GITHUB_TOKEN}")) {
        return respond(
            StatusCode::UNAUTHORIZED,
            r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}"#.into(),
            &[],
        );
    }
    assert_eq!(seen.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(seen.header("x-github-api-version"), Some("2022-11-28"));
    // GitHub answers a secondary limit with 403 and Retry-After, and a spent primary limit
    // with 403, x-ratelimit-remaining: 0 and the reset ("Rate limits for the REST API").
    if let Some(refusal) = api.refusals.lock().unwrap().pop() {
        let (message, headers) = match refusal {
            Refusal::Secondary => (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                vec![
                    ("retry-after", "1".to_owned()),
                    ("x-ratelimit-remaining", "4990".to_owned()),
                ],
            ),
            Refusal::Primary => (
                "API rate limit exceeded for user ID 1.",
                vec![
                    ("x-ratelimit-limit", "5000".to_owned()),
                    ("x-ratelimit-remaining", "0".to_owned()),
                    ("x-ratelimit-reset", (unix_now() + 2).to_string()),
                ],
            ),
        };
        let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api", "status": "403"});
        return respond(StatusCode::FORBIDDEN, body.to_string(), &headers);
    }
    let items = if seen.path.ends_with("/issues/comments") {
        api.comments.clone()
    } else {
        api.issues.lock().unwrap().clone()
    };
    let since = seen.param("since").unwrap_or("1970-01-01T00:00:00Z").to_owned();
    let mut matching: Vec<Value> = items
        .into_iter()
        .filter(|item| item["updated_at"].as_str().unwrap() >= since.as_str())
        .collect();
    matching.sort_by(|a, b| a["updated_at"].as_str().cmp(&b["updated_at"].as_str()));
    let per_page: usize = seen.param("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let page: usize = seen.param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let body: Vec<&Value> = matching.iter().skip((page - 1) * per_page).take(per_page).collect();
    let last_page = matching.len().div_ceil(per_page).max(1);
    let link_to = |page: usize| {
        let mut query: Vec<(String, String)> = seen.query.iter().filter(|(k, _)| k != "page").cloned().collect();
        query.push(("page".into(), page.to_string()));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        format!("{}{}?{query}", api.url, seen.path)
    };
    let mut links = Vec::new();
    if page < last_page {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(last_page)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
    }
    // The second response says the hour's budget is spent until two seconds from now.
    let served = api.served.fetch_add(1, Ordering::SeqCst) + 1;
    let (remaining, reset) = if served == 2 {
        (0, unix_now() + 2)
    } else {
        (5000 - served, unix_now() + 3600)
    };
    let mut headers = vec![
        ("x-ratelimit-limit", "5000".to_owned()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-used", served.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-resource", "core".to_owned()),
        ("x-github-request-id", format!("F1X7:{served}")),
    ];
    if !links.is_empty() {
        headers.push(("link", links.join(", ")));
    }
    respond(StatusCode::OK, serde_json::to_string_pretty(&body).unwrap(), &headers)
}

pub async fn github_fixture() -> (Fixture, Arc<GitHub>) {
    let (listener, url) = bind().await;
    let api = Arc::new(GitHub {
        url: url.clone(),
        log: Log::default(),
        issues: Mutex::new(
            (1..=250)
                .map(|n| github_issue(n, n as i64, &format!("issue {n}")))
                .collect(),
        ),
        comments: (1..=30)
            .map(|n| {
                json!({"id": 5_000 + n, "issue_url": format!("{url}/repos/acme/widgets/issues/{n}"),
                       "user": {"login": "hubot"}, "body": format!("comment {n}"),
                       "created_at": "2024-01-03T00:00:00Z", "updated_at": format!("2024-01-03T00:{:02}:00Z", n)})
            })
            .collect(),
        served: AtomicUsize::new(0),
        refusals: Mutex::new(Vec::new()),
    });
    let router = Router::new()
        .route("/repos/acme/widgets/issues", get(github_list))
        .route("/repos/acme/widgets/issues/comments", get(github_list))
        .with_state(api.clone());
    (serve(listener, url, router), api)
}

pub const STRIPE_KEY: &str = "sk_test_51FixtureKeyAbCdEfGhIjKlMnOpQrStUvWxYz";

pub struct Stripe {
    pub log: Log,
    pub customers: Vec<Value>,
    pub charges: Mutex<Vec<Value>>,
    /// Events of the account (Stripe keeps 30 days of them).
    pub events: Mutex<Vec<Value>>,
    pub throttled: AtomicUsize,
}

pub fn stripe_event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "api_version": "2024-06-20", "type": kind, "created": created,
           "livemode": false, "pending_webhooks": 0, "request": {"id": null, "idempotency_key": null},
           "data": {"object": object}})
}

pub async fn stripe_list(State(api): State<Arc<Stripe>>, request: Request) -> Response {
    let seen = api.log.record(request).await;
    if seen.header("authorization") != Some(&basic(STRIPE_KEY, "")) {
        return respond(
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"message":"Invalid API Key provided","type":"invalid_request_error"}}"#.into(),
            &[],
        );
    }
    assert_eq!(seen.header("stripe-version"), Some("2024-06-20"));
    // Stripe's 429 carries no Retry-After ("Rate limits").
    if seen.path == "/v1/events" && api.throttled.fetch_add(1, Ordering::SeqCst) == 0 {
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":{"code":"rate_limit","message":"Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.","type":"invalid_request_error"}}"#.into(),
            &[],
        );
    }
    let all = match seen.path.as_str() {
        "/v1/customers" => api.customers.clone(),
        "/v1/events" => api.events.lock().unwrap().clone(),
        _ => api.charges.lock().unwrap().clone(),
    };
    let gte: i64 = seen.param("created[gte]").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut list: Vec<Value> = all
        .into_iter()
        .filter(|item| item["created"].as_i64().unwrap() >= gte)
        .collect();
    list.sort_by_key(|item| std::cmp::Reverse(item["created"].as_i64().unwrap()));
    let start = match seen.param("starting_after") {
        Some(after) => match list.iter().position(|item| item["id"] == after) {
            Some(index) => index + 1,
            None => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    format!(r#"{{"error":{{"message":"No such object: '{after}'","param":"starting_after"}}}}"#),
                    &[],
                );
            }
        },
        None => 0,
    };
    let limit: usize = seen.param("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    let page: Vec<Value> = list.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < list.len();
    let body = json!({"object": "list", "data": page, "has_more": has_more, "url": seen.path});
    respond(
        StatusCode::OK,
        serde_json::to_string_pretty(&body).unwrap(),
        &[("request-id", format!("req_{}", api.log.all().len()))],
    )
}

pub const HUBSPOT_CLIENT_ID: &str = "5f2c1a3e-fixture-client";
pub const HUBSPOT_CLIENT_SECRET: &str = "hubspot-client-secret-fixture-9d8c7b6a";
pub const HUBSPOT_REFRESH_TOKEN: &str = "na1-refresh-fixture-0f1e2d3c4b5a";

pub struct HubSpot {
    pub log: Log,
    pub tokens_issued: AtomicUsize,
    pub api_calls: AtomicUsize,
    /// Last-modified times changed by the test, by (search path, record index).
    pub modified: Mutex<HashMap<(String, usize), String>>,
}

pub async fn hubspot_token(State(api): State<Arc<HubSpot>>, request: Request) -> Response {
    let seen = api.log.record(request).await;
    let form = seen.form();
    let expected = [
        ("grant_type", "refresh_token"),
        ("client_id", HUBSPOT_CLIENT_ID),
        ("client_secret", HUBSPOT_CLIENT_SECRET),
        ("refresh_token", HUBSPOT_REFRESH_TOKEN),
    ];
    if expected
        .iter()
        .any(|(key, value)| form.get(*key).map(String::as_str) != Some(*value))
    {
        return respond(
            StatusCode::BAD_REQUEST,
            r#"{"status":"BAD_REFRESH_TOKEN","message":"missing or unknown refresh token"}"#.into(),
            &[],
        );
    }
    let issued = api.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    let body = json!({"token_type": "bearer", "refresh_token": HUBSPOT_REFRESH_TOKEN,
                      "access_token": format!("CJT-access-fixture-{issued}"), "expires_in": 1800});
    respond(StatusCode::OK, body.to_string(), &[])
}

/// Answers 401 unless the request carries the current access token; the first token stops
/// working at the second contacts search, as an expired one would. Counted on one endpoint:
/// the streams run concurrently, so the order of calls across streams is not fixed.
pub fn hubspot_refused(api: &HubSpot, seen: &Seen) -> Option<Response> {
    let calls = if seen.path == "/crm/v3/objects/contacts/search" {
        api.api_calls.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        api.api_calls.load(Ordering::SeqCst)
    };
    let current = format!("Bearer CJT-access-fixture-{}", api.tokens_issued.load(Ordering::SeqCst));
    let revoked = calls >= 2 && seen.header("authorization") == Some("Bearer CJT-access-fixture-1");
    (seen.header("authorization") != Some(current.as_str()) || revoked).then(|| {
        respond(
            StatusCode::UNAUTHORIZED,
            r#"{"status":"error","message":"Authentication credentials not found.","category":"EXPIRED_AUTHENTICATION"}"#.into(),
            &[],
        )
    })
}

/// A CRM record as HubSpot answers it: the requested properties (null when unset) and a few
/// defaults.
pub fn hubspot_record(index: usize, modified: &str, archived: bool, requested: &[String]) -> Value {
    let id = (100 + index).to_string();
    let mut properties = serde_json::Map::new();
    properties.insert("hs_object_id".into(), json!(id));
    properties.insert("createdate".into(), json!("2024-01-01T00:00:00.000Z"));
    for name in requested {
        let value = match name.as_str() {
            "email" => json!(format!("contact{index}@example.com")),
            "domain" => json!(format!("company{index}.example.com")),
            "industry" if index % 2 == 0 => Value::Null,
            "lastmodifieddate" | "hs_lastmodifieddate" => json!(modified),
            other => json!(format!("{other} {index}")),
        };
        properties.insert(name.clone(), value);
    }
    let mut record = json!({"id": id, "properties": properties, "createdAt": "2024-01-01T00:00:00.000Z",
                            "updatedAt": modified, "archived": archived});
    if archived {
        record["archivedAt"] = json!("2024-03-01T00:00:00.000Z");
    }
    record
}

/// When record `index` of an object was last modified: one minute apart, oldest first.
pub fn hubspot_modified(index: usize) -> String {
    let at =
        chrono::DateTime::parse_from_rfc3339("2024-02-01T00:00:00Z").unwrap() + chrono::Duration::minutes(index as i64);
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An RFC 3339 time as the epoch milliseconds HubSpot's search filters take.
pub fn hubspot_millis(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
        .to_string()
}

pub fn hubspot_total(path: &str) -> usize {
    if path.contains("/contacts") {
        HUBSPOT_CONTACTS
    } else {
        40
    }
}

pub const HUBSPOT_CONTACTS: usize = 10_050;

/// `GET /crm/v3/objects/{type}`: here only `archived=true` is asked for (search has the rest).
pub async fn hubspot_list(State(api): State<Arc<HubSpot>>, request: Request) -> Response {
    let seen = api.log.record(request).await;
    if let Some(refused) = hubspot_refused(&api, &seen) {
        return refused;
    }
    let archived = seen.param("archived") == Some("true");
    let total = if archived { 3 } else { hubspot_total(&seen.path) };
    let after: usize = seen.param("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let limit: usize = seen.param("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    let requested: Vec<String> = seen
        .param("properties")
        .unwrap_or("")
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    let results: Vec<Value> = (after..(after + limit).min(total))
        .map(|index| hubspot_record(50_000 + index, &hubspot_modified(index), archived, &requested))
        .collect();
    let mut body = json!({"results": results});
    if after + limit < total {
        body["paging"] = json!({"next": {"after": (after + limit).to_string(),
                                         "link": format!("{}?after={}", seen.path, after + limit)}});
    }
    respond(
        StatusCode::OK,
        body.to_string(),
        &[
            ("x-hubspot-ratelimit-max", "110".into()),
            ("x-hubspot-ratelimit-remaining", "100".into()),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000".into()),
        ],
    )
}

/// `POST /crm/v3/objects/{type}/search` ("Search the CRM"): filters, sorts, properties,
/// `limit` (at most 200) and `after` in the body; at most 10,000 results per query, a 400
/// past them; no X-HubSpot-RateLimit-* headers.
pub async fn hubspot_search(State(api): State<Arc<HubSpot>>, request: Request) -> Response {
    let seen = api.log.record(request).await;
    if let Some(refused) = hubspot_refused(&api, &seen) {
        return refused;
    }
    let invalid = |message: &str| {
        respond(
            StatusCode::BAD_REQUEST,
            json!({"status": "error", "message": message, "category": "VALIDATION_ERROR",
                   "correlationId": "5c1ef0ad-fixture"})
            .to_string(),
            &[],
        )
    };
    let Ok(body) = serde_json::from_str::<Value>(&seen.body) else {
        return invalid("Invalid input JSON");
    };
    let property = if seen.path.contains("/contacts") {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    };
    let filter = &body["filterGroups"][0]["filters"][0];
    if filter["propertyName"] != property || filter["operator"] != "GTE" {
        return invalid("expected one GTE filter on the last-modified property");
    }
    if body["sorts"][0] != json!({"propertyName": property, "direction": "ASCENDING"}) {
        return invalid("expected results sorted by the last-modified property, ascending");
    }
    // HubSpot documents Unix milliseconds for timestamps; ISO 8601 is accepted as well.
    let text = filter["value"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| filter["value"].to_string());
    let since = match text.parse::<i64>() {
        Ok(millis) => chrono::DateTime::from_timestamp_millis(millis).map(|at| at.fixed_offset()),
        Err(_) => chrono::DateTime::parse_from_rfc3339(&text).ok(),
    };
    let Some(since) = since else {
        return invalid(&format!("{text} is not a valid datetime"));
    };
    let limit = body["limit"].as_u64().unwrap_or(10) as usize;
    if limit > 200 {
        return invalid("limit must be at most 200");
    }
    let after: usize = body["after"].as_str().and_then(|a| a.parse().ok()).unwrap_or(0);
    if after + limit > 10_000 {
        return invalid("The search endpoints are limited to 10,000 total results for any given query");
    }
    let requested: Vec<String> = body["properties"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let modified = api.modified.lock().unwrap().clone();
    let matching: Vec<usize> = (0..hubspot_total(&seen.path))
        .filter(|index| {
            let at = modified
                .get(&(seen.path.clone(), *index))
                .cloned()
                .unwrap_or_else(|| hubspot_modified(*index));
            chrono::DateTime::parse_from_rfc3339(&at).unwrap() >= since
        })
        .collect();
    let mut ordered: Vec<(String, usize)> = matching
        .iter()
        .map(|index| {
            let at = modified
                .get(&(seen.path.clone(), *index))
                .cloned()
                .unwrap_or_else(|| hubspot_modified(*index));
            (at, *index)
        })
        .collect();
    ordered.sort();
    let results: Vec<Value> = ordered
        .iter()
        .skip(after)
        .take(limit)
        .map(|(at, index)| hubspot_record(*index, at, false, &requested))
        .collect();
    let mut response = json!({"total": ordered.len(), "results": results});
    if after + limit < ordered.len() {
        response["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    respond(StatusCode::OK, response.to_string(), &[])
}

pub const ZENDESK_EMAIL: &str = "agent@example.com";
pub const ZENDESK_TOKEN: &str = "zd-api-token-fixture-6Yh2kP0qLm";
pub const ZENDESK_START: i64 = 1_704_067_200;

pub struct Zendesk {
    pub url: String,
    pub log: Log,
    pub tickets: Mutex<Vec<Value>>,
    pub users: Vec<Value>,
    /// The server's clock (Unix seconds): what changed in the minute before it is left out.
    pub now: std::sync::atomic::AtomicI64,
    pub throttled: AtomicUsize,
}

pub fn zendesk_ticket(id: i64, generated: i64) -> Value {
    json!({"id": id, "subject": format!("ticket {id}"), "status": "open", "priority": "normal", "requester_id": 9,
           "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z", "generated_timestamp": generated})
}

/// Where an item sits in the export: its change time (Unix seconds) and id.
pub fn zendesk_position(item: &Value) -> (i64, i64) {
    let time = match item.get("generated_timestamp") {
        Some(generated) => generated.as_i64().unwrap(),
        None => chrono::DateTime::parse_from_rfc3339(item["updated_at"].as_str().unwrap())
            .unwrap()
            .timestamp(),
    };
    (time, item["id"].as_i64().unwrap())
}

pub fn zendesk_invalid(description: &str) -> Response {
    respond(
        StatusCode::BAD_REQUEST,
        json!({"error": "InvalidValue", "description": description}).to_string(),
        &[],
    )
}

pub async fn zendesk_export(State(api): State<Arc<Zendesk>>, request: Request) -> Response {
    let seen = api.log.record(request).await;
    let limits = [
        ("x-rate-limit", "10".to_owned()),
        ("x-rate-limit-remaining", "9".to_owned()),
    ];
    if seen.header("authorization") != Some(&basic(&format!("{ZENDESK_EMAIL}/token"), ZENDESK_TOKEN)) {
        return respond(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"Couldn't authenticate you"}"#.into(),
            &limits,
        );
    }
    // The first tickets request is throttled (streams run concurrently: "the first request
    // overall" could be either stream's).
    if seen.path.contains("/tickets/") && api.throttled.fetch_add(1, Ordering::SeqCst) == 0 {
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":"APIRateLimitExceeded","description":"Number of allowed incremental export API requests per minute exceeded"}"#.into(),
            &[("retry-after", "1".into()), ("x-rate-limit", "10".into()), ("x-rate-limit-remaining", "0".into())],
        );
    }
    let (key, mut items) = if seen.path.ends_with("/tickets/cursor.json") {
        ("tickets", api.tickets.lock().unwrap().clone())
    } else {
        ("users", api.users.clone())
    };
    items.sort_by_key(zendesk_position);
    let now = api.now.load(Ordering::SeqCst);
    // The first request names a start time; every later page its cursor (the after_url).
    let after = match (seen.param("cursor"), seen.param("start_time")) {
        (Some(cursor), _) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            match decoded.as_deref().and_then(|text| text.split_once('|')) {
                Some((time, id)) => (time.parse::<i64>().unwrap(), id.parse::<i64>().unwrap()),
                None => return zendesk_invalid("cursor is invalid"),
            }
        }
        (None, Some(start_time)) => {
            let Ok(start_time) = start_time.parse::<i64>() else {
                return zendesk_invalid("start_time must be an integer (Unix epoch time in seconds)");
            };
            if start_time > now - 60 {
                return zendesk_invalid("Too recent start_time. Use a start_time older than 1 minute");
            }
            (start_time, i64::MIN)
        }
        (None, None) => return zendesk_invalid("start_time or cursor is required"),
    };
    let per_page: usize = seen.param("per_page").and_then(|p| p.parse().ok()).unwrap_or(1000);
    // Nothing that changed in the minute before the request is exported.
    let exportable: Vec<Value> = items
        .into_iter()
        .filter(|item| {
            let position = zendesk_position(item);
            position.0 <= now - 60 && (seen.param("cursor").is_none() || position > after) && position.0 >= after.0
        })
        .collect();
    let page: Vec<Value> = exportable.iter().take(per_page).cloned().collect();
    let last = page.last().map(zendesk_position).unwrap_or(after);
    let cursor = base64::engine::general_purpose::STANDARD.encode(format!("{}|{}", last.0, last.1));
    let body = json!({
        key: page, "after_cursor": cursor, "before_cursor": null, "before_url": null,
        "after_url": format!("{}{}?cursor={cursor}", api.url, seen.path),
        "end_of_stream": exportable.len() <= per_page,
    });
    respond(StatusCode::OK, body.to_string(), &limits)
}

pub const OXR_APP_ID: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
pub const OXR_LATEST: &str = r#"{
  "disclaimer": "Usage subject to terms: https://openexchangerates.org/terms",
  "license": "https://openexchangerates.org/license",
  "timestamp": 1704070800,
  "base": "USD",
  "rates": {
    "EUR": 0.905762,
    "GBP": 0.785431,
    "JPY": 141.0045,
    "CHF": 0.841234
  }
}"#;
pub const OXR_CURRENCIES: &str = r#"{"CHF":"Swiss Franc","EUR":"Euro","GBP":"British Pound Sterling","JPY":"Japanese Yen","USD":"United States Dollar"}"#;

pub async fn oxr(State(log): State<Log>, request: Request) -> Response {
    let seen = log.record(request).await;
    if seen.param("app_id") != Some(OXR_APP_ID) {
        return respond(
            StatusCode::UNAUTHORIZED,
            r#"{"error":true,"status":401,"message":"invalid_app_id","description":"Invalid App ID provided."}"#.into(),
            &[],
        );
    }
    let body = if seen.path.ends_with("/latest.json") {
        OXR_LATEST
    } else {
        OXR_CURRENCIES
    };
    respond(
        StatusCode::OK,
        body.into(),
        &[("cache-control", "public, max-age=3600".into())],
    )
}

pub async fn oxr_over_quota(State(log): State<Log>, request: Request) -> Response {
    log.record(request).await;
    respond(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"error":true,"status":429,"message":"access_restricted","description":"Access restricted for repeated over-use (status: 429), or other reason given in 'description' (403)."}"#.into(),
        &[],
    )
}

pub const OMNIDESK_EMAIL: &str = "staff@example.com";
pub const OMNIDESK_KEY: &str = "omni-api-key-fixture-c0ffee42";

pub struct Omnidesk {
    pub log: Log,
    pub throttled: AtomicUsize,
}

pub async fn omnidesk_list(State(api): State<Arc<Omnidesk>>, request: Request) -> Response {
    let seen = api.log.record(request).await;
    let calls = api.log.all().len();
    let limits = [
        ("rate_limit_per_minute", "60".to_owned()),
        ("api_calls_left", (60 - calls.min(59)).to_string()),
    ];
    if seen.header("authorization") != Some(&basic(OMNIDESK_EMAIL, OMNIDESK_KEY)) {
        return respond(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"authorization_error"}"#.into(),
            &limits,
        );
    }
    let page: usize = seen.param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    if page == 2 && api.throttled.fetch_add(1, Ordering::SeqCst) == 0 {
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"error":"too_many_requests"}"#.into(),
            &[
                ("rate_limit_per_minute", "60".into()),
                ("api_calls_left", "0".into()),
                ("retry_after", "1".into()),
            ],
        );
    }
    let limit: usize = seen.param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let (total, kind) = if seen.path.ends_with("/cases.json") {
        (230, "case")
    } else {
        (5, "user")
    };
    // Hand-built to keep the vendor's member order: "0", "1", ..., "total_count".
    let mut body = String::from("{");
    for (position, index) in ((page - 1) * limit..(page * limit).min(total)).enumerate() {
        let record = if kind == "case" {
            json!({"case": {"case_id": 2000 + index, "case_number": format!("664-{index:06}"), "subject": format!("case {index}"),
                            "status": "open", "priority": "normal", "channel": "email", "deleted": false,
                            "created_at": "Mon, 05 May 2014 00:15:17 +0300", "updated_at": "Tue, 23 Dec 2014 10:55:23 +0200"}})
        } else {
            json!({"user": {"user_id": 300 + index, "user_full_name": format!("User {index}"), "user_email": format!("u{index}@example.com"),
                            "created_at": "Mon, 05 May 2014 00:15:17 +0300", "updated_at": "Tue, 23 Dec 2014 10:55:23 +0200"}})
        };
        body.push_str(&format!("\"{position}\": {record}, "));
    }
    body.push_str(&format!("\"total_count\": {total}}}"));
    respond(StatusCode::OK, body, &limits)
}

pub async fn stripe_fixture() -> (Fixture, Arc<Stripe>) {
    let (listener, url) = bind().await;
    let charge = |n: i64| {
        json!({"id": format!("ch_{n:04}"), "object": "charge", "amount": n * 100, "amount_refunded": 0, "refunded": false,
               "disputed": false, "currency": "eur", "status": "succeeded", "customer": "cus_0001", "created": 1_704_067_200 + n * 3600})
    };
    let api = Arc::new(Stripe {
        throttled: AtomicUsize::new(0),
        events: Mutex::new(
            (1..=50)
                .map(|n| {
                    stripe_event(
                        &format!("evt_{n:04}"),
                        "charge.succeeded",
                        1_704_067_200 + n * 3600,
                        charge(n),
                    )
                })
                .collect(),
        ),
        log: Log::default(),
        customers: (1..=230)
            .map(|n| {
                json!({"id": format!("cus_{n:04}"), "object": "customer", "email": format!("c{n}@example.com"),
                            "name": format!("Customer {n}"), "created": 1_704_067_200 + n * 60, "livemode": false})
            })
            .collect(),
        charges: Mutex::new((1..=50).map(charge).collect()),
    });
    let router = Router::new()
        .route("/v1/customers", get(stripe_list))
        .route("/v1/charges", get(stripe_list))
        .route("/v1/events", get(stripe_list))
        .with_state(api.clone());
    (serve(listener, url, router), api)
}

pub async fn hubspot_fixture() -> (Fixture, Arc<HubSpot>) {
    let (listener, url) = bind().await;
    let api = Arc::new(HubSpot {
        log: Log::default(),
        tokens_issued: AtomicUsize::new(0),
        api_calls: AtomicUsize::new(0),
        modified: Mutex::new(HashMap::new()),
    });
    let router = Router::new()
        .route("/oauth/v1/token", post(hubspot_token))
        .route("/crm/v3/objects/contacts", get(hubspot_list))
        .route("/crm/v3/objects/companies", get(hubspot_list))
        .route("/crm/v3/objects/contacts/search", post(hubspot_search))
        .route("/crm/v3/objects/companies/search", post(hubspot_search))
        .with_state(api.clone());
    (serve(listener, url, router), api)
}

pub async fn zendesk_fixture() -> (Fixture, Arc<Zendesk>) {
    let (listener, url) = bind().await;
    let last_ticket = ZENDESK_START + 2500 * 10;
    let api = Arc::new(Zendesk {
        url: url.clone(),
        log: Log::default(),
        tickets: Mutex::new(
            (1..=2500)
                .map(|id| zendesk_ticket(id, ZENDESK_START + id * 10))
                .collect(),
        ),
        // Zendesk's sample user has no generated_timestamp: updated_at is the cursor.
        users: (1..=40)
            .map(|id| {
                let updated = chrono::DateTime::from_timestamp(ZENDESK_START + id, 0).unwrap();
                json!({"id": 700 + id, "name": format!("user {id}"), "email": format!("u{id}@example.com"),
                       "role": "end-user", "active": id != 40, "created_at": "2024-01-01T00:00:00Z",
                       "updated_at": updated.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
            })
            .collect(),
        // Tickets 2496 to 2500 changed in the last minute: the first run cannot see them.
        now: std::sync::atomic::AtomicI64::new(last_ticket + 15),
        throttled: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/api/v2/incremental/tickets/cursor.json", get(zendesk_export))
        .route("/api/v2/incremental/users/cursor.json", get(zendesk_export))
        .with_state(api.clone());
    (serve(listener, url, router), api)
}

pub async fn oxr_fixture() -> (Fixture, Log) {
    let (listener, url) = bind().await;
    let log = Log::default();
    let router = Router::new()
        .route("/api/latest.json", get(oxr))
        .route("/api/currencies.json", get(oxr))
        .with_state(log.clone());
    (serve(listener, url, router), log)
}

pub async fn omnidesk_fixture() -> (Fixture, Arc<Omnidesk>) {
    let (listener, url) = bind().await;
    let api = Arc::new(Omnidesk {
        log: Log::default(),
        throttled: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/api/cases.json", get(omnidesk_list))
        .route("/api/users.json", get(omnidesk_list))
        .with_state(api.clone());
    (serve(listener, url, router), api)
}
