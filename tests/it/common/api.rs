//! A loopback source for incremental and crash tests: records with an `updated_at` cursor,
//! cursor pagination, `updated_since` / `updated_until` filters, optional latency, and a
//! parent/child pair of endpoints.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// One source record.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: u64,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl Record {
    pub fn updated_text(&self) -> String {
        self.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    pub fn json(&self) -> Value {
        json!({"id": self.id, "updated_at": self.updated_text(), "version": self.version, "payload": format!("record {} v{}", self.id, self.version)})
    }
}

/// Shared, mutable source data and what the server saw.
#[derive(Clone, Default)]
pub struct Source {
    pub records: Arc<Mutex<Vec<Record>>>,
    pub requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
    pub page_latency: Arc<Mutex<Duration>>,
    pub unsorted: Arc<Mutex<bool>>,
    /// Parent ids whose children answer this status.
    pub failing_parents: Arc<Mutex<HashMap<u64, u16>>>,
    pub hits: Arc<AtomicUsize>,
}

/// `count` records, three per second of `updated_at` from 2024-01-01 (so cursors repeat).
pub fn records(count: u64) -> Vec<Record> {
    let base = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    (1..=count)
        .map(|id| Record {
            id,
            updated_at: base + chrono::Duration::seconds((id / 3) as i64 * 60),
            version: 1,
        })
        .collect()
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

async fn list(State(source): State<Source>, Query(query): Query<HashMap<String, String>>) -> Response {
    source.hits.fetch_add(1, Ordering::SeqCst);
    source.requests.lock().unwrap().push(query.clone());
    let latency = *source.page_latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let since = query.get("updated_since").and_then(|t| parse_time(t));
    let until = query.get("updated_until").and_then(|t| parse_time(t));
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let offset: usize = query.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut matching: Vec<Record> = source
        .records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| since.is_none_or(|s| r.updated_at >= s) && until.is_none_or(|u| r.updated_at < u))
        .cloned()
        .collect();
    if *source.unsorted.lock().unwrap() {
        // A fixed interleaving: odd positions reversed against even ones.
        let (mut even, odd): (Vec<_>, Vec<_>) = matching.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        even.extend(odd.into_iter().rev());
        matching = even.into_iter().map(|(_, r)| r).collect();
    }
    let page: Vec<Value> = matching.iter().skip(offset).take(limit).map(Record::json).collect();
    let next = (offset + limit < matching.len()).then(|| (offset + limit).to_string());
    axum::Json(json!({"data": page, "next": next})).into_response()
}

async fn lines(State(source): State<Source>, Path(order): Path<u64>) -> Response {
    source.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = source.failing_parents.lock().unwrap().get(&order) {
        return StatusCode::from_u16(*status).unwrap().into_response();
    }
    let lines: Vec<Value> = (1..=2)
        .map(|n| json!({"line_id": format!("{order}-{n}"), "order_id": order, "qty": n}))
        .collect();
    axum::Json(json!({"data": lines})).into_response()
}

impl Source {
    pub fn new(records: Vec<Record>) -> Self {
        let source = Source::default();
        *source.records.lock().unwrap() = records;
        source
    }

    /// Serves on 127.0.0.1 in the background; returns the base URL.
    pub async fn serve(&self) -> String {
        let app = Router::new()
            .route("/records", get(list))
            .route("/orders/{order}/lines", get(lines))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        format!("http://{address}")
    }

    pub fn set_latency(&self, latency: Duration) {
        *self.page_latency.lock().unwrap() = latency;
    }

    pub fn seen_params(&self, name: &str) -> Vec<Option<String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|q| q.get(name).cloned())
            .collect()
    }
}

/// A config for the `records` stream of a [`Source`].
pub fn records_config(base: &str, incremental_extra: &str, landing_extra: &str) -> String {
    format!(
        "version: 1
source:
  name: src
  base_url: {base}
  retry: {{max_attempts: 5, initial_delay: 10ms, max_delay: 100ms}}
streams:
  - name: records
    path: /records
    params: {{limit: 100}}
    records_path: /data
    primary_key: [id]
    pagination: {{type: cursor, cursor_path: /next, cursor_param: cursor}}
    incremental: {{cursor_field: updated_at, param: updated_since, start: '2024-01-01T00:00:00Z'{incremental_extra}}}
landing:
  url: {{landing}}
  part_max_records: 250{landing_extra}
"
    )
}
