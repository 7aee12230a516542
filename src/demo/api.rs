//! The built-in sample API behind `landfall demo`: a small shop with three streams, each
//! paginated a different way, deterministic so every run sees the same data.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The token the sample API accepts.
pub const DEMO_TOKEN: &str = "demo-token";

const CUSTOMERS: u64 = 1000;
const ORDERS: u64 = 3000;
const PRODUCTS: u64 = 200;
const COUNTRIES: &[&str] = &["DE", "FR", "NL", "US", "GB", "JP", "BR"];
const STATUSES: &[&str] = &["pending", "paid", "shipped", "refunded"];

fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn customer(id: u64) -> (String, Value) {
    let updated = stamp(epoch() + Duration::minutes(37 * id as i64));
    let record = json!({
        "id": id,
        "name": format!("Customer {id}"),
        "email": format!("customer{id}@example.com"),
        "country": COUNTRIES[(id as usize) % COUNTRIES.len()],
        "created_at": stamp(epoch() - Duration::days(400) + Duration::hours(id as i64)),
        "updated_at": updated,
    });
    (updated, record)
}

fn order(index: u64) -> (String, Value) {
    let updated = stamp(epoch() + Duration::minutes(11 * index as i64));
    let cents = (index * 7919) % 50_000 + 100;
    let record = json!({
        "id": format!("ord_{index:06}"),
        "customer_id": (index * 7) % CUSTOMERS + 1,
        "amount": cents as f64 / 100.0,
        "currency": if index % 3 == 0 { "USD" } else { "EUR" },
        "status": STATUSES[(index as usize) % STATUSES.len()],
        "updated_at": updated,
    });
    (updated, record)
}

fn product(index: u64) -> Value {
    json!({
        "sku": format!("SKU-{index:04}"),
        "title": format!("Product {index}"),
        "price": ((index * 313) % 10_000) as f64 / 100.0 + 1.0,
        "active": index % 5 != 0,
    })
}

fn time_param(query: &HashMap<String, String>, name: &str) -> Option<DateTime<Utc>> {
    query
        .get(name)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Whether `updated` lies in `[updated_since, updated_until)`.
fn in_window(query: &HashMap<String, String>, updated: &str) -> bool {
    let updated = DateTime::parse_from_rfc3339(updated)
        .expect("valid")
        .with_timezone(&Utc);
    time_param(query, "updated_since").is_none_or(|since| updated >= since)
        && time_param(query, "updated_until").is_none_or(|until| updated < until)
}

fn number(query: &HashMap<String, String>, name: &str, default: u64) -> u64 {
    query.get(name).and_then(|text| text.parse().ok()).unwrap_or(default)
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == format!("Bearer {DEMO_TOKEN}"))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "missing or wrong bearer token"})),
    )
        .into_response()
}

/// Customers: `{"data": [...], "meta": {"next_cursor": ..}}`, the cursor being the last id.
async fn customers(headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let limit = number(&query, "limit", 100).clamp(1, 1000);
    let after = number(&query, "cursor", 0);
    let mut data = Vec::new();
    let mut last = None;
    for id in (after + 1)..=CUSTOMERS {
        let (updated, record) = customer(id);
        if !in_window(&query, &updated) {
            continue;
        }
        data.push(record);
        last = Some(id);
        if data.len() as u64 == limit {
            break;
        }
    }
    let more = last.is_some_and(|id| id < CUSTOMERS);
    let next = if more {
        json!(last.map(|id| id.to_string()))
    } else {
        Value::Null
    };
    axum::Json(json!({"data": data, "meta": {"next_cursor": next}})).into_response()
}

/// Orders: a bare JSON array, the next page in an RFC 8288 `Link` header.
async fn orders(
    State(base): State<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let per_page = number(&query, "per_page", 100).clamp(1, 1000);
    let page = number(&query, "page", 1).max(1);
    let matching: Vec<Value> = (1..=ORDERS)
        .map(order)
        .filter(|(updated, _)| in_window(&query, updated))
        .map(|(_, record)| record)
        .collect();
    let start = ((page - 1) * per_page) as usize;
    let slice: Vec<Value> = matching.iter().skip(start).take(per_page as usize).cloned().collect();
    let mut response = axum::Json(slice).into_response();
    if start + (per_page as usize) < matching.len() {
        let mut next = url::Url::parse(&format!("{base}/v1/orders")).expect("valid base");
        {
            let mut pairs = next.query_pairs_mut();
            for (name, value) in &query {
                if name != "page" {
                    pairs.append_pair(name, value);
                }
            }
            pairs.append_pair("page", &(page + 1).to_string());
        }
        let link = format!("<{next}>; rel=\"next\"");
        response
            .headers_mut()
            .insert(header::LINK, HeaderValue::from_str(&link).expect("valid header"));
    }
    response
}

/// Products: `{"items": [...], "total": N}` by offset and limit.
async fn products(headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let offset = number(&query, "offset", 0);
    let limit = number(&query, "limit", 50).clamp(1, 500);
    let items: Vec<Value> = (offset + 1..=PRODUCTS).take(limit as usize).map(product).collect();
    axum::Json(json!({"items": items, "total": PRODUCTS})).into_response()
}

/// A running sample API.
pub struct SampleApi {
    pub address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl SampleApi {
    /// Binds `127.0.0.1:port` (0 for an ephemeral port) and serves in the background.
    pub async fn start(port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let address = listener.local_addr()?;
        let base = format!("http://{address}");
        let app = Router::new()
            .route("/v1/customers", get(customers))
            .route("/v1/orders", get(orders))
            .route("/v1/products", get(products))
            .with_state(base);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops serving and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Record counts per stream, for the demo summary and tests.
pub fn expected_counts() -> [(&'static str, u64); 3] {
    [("customers", CUSTOMERS), ("orders", ORDERS), ("products", PRODUCTS)]
}
