//! A fast, deterministic loopback JSON API for Landfall's benchmark.
//!
//! Record `i` (from 0) is the same bytes on every run and every endpoint: about 400 bytes
//! of JSON with an increasing `updated_at`. Endpoints (all take `total`, the number of
//! records the collection holds, default `--records`):
//!
//! - `GET /cursor?limit=L&cursor=C`: `{"data":[..],"meta":{"next_cursor":"C2"|null}}`.
//!   The cursor is opaque to clients (it is the next record's index as text, so the
//!   curl lower bound can enumerate the pages without parsing them).
//! - `GET /offset?offset=O&limit=L`: `{"data":[..],"total":T}`; past the end `data` is empty.
//! - `GET /pages?page=P&page_size=S`: `{"data":[..]}`, pages from 1.
//! - `GET /link?page=P&per_page=S`: a bare JSON array, with an RFC 8288
//!   `Link: <..>; rel="next"` header while records remain.
//! - `GET /stats`: `{"requests":N,"in_flight":I,"max_in_flight":M}`; `/stats?reset=1`
//!   resets the request count and the maximum.
//!
//! `--latency 20ms` delays every page response, to stand in for a remote API.
//!
//! Usage: `landfall-bench-api [--port 0] [--records 1000000] [--latency 0ms]`. It prints
//! `http://127.0.0.1:PORT` on its first stdout line once it listens.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Largest page served, whatever the client asks for.
const MAX_PAGE: u64 = 10_000;

struct Settings {
    port: u16,
    records: u64,
    latency: Duration,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

fn usage() -> ! {
    eprintln!("usage: landfall-bench-api [--port N] [--records N] [--latency 20ms]");
    std::process::exit(2)
}

fn parse_latency(text: &str) -> Option<Duration> {
    let millis = text.strip_suffix("ms").unwrap_or(text);
    millis.parse::<u64>().ok().map(Duration::from_millis)
}

fn settings() -> Settings {
    let mut settings = Settings {
        port: 0,
        records: 1_000_000,
        latency: Duration::ZERO,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--port" => settings.port = value.parse().unwrap_or_else(|_| usage()),
            "--records" => settings.records = value.parse().unwrap_or_else(|_| usage()),
            "--latency" => settings.latency = parse_latency(&value).unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    settings
}

/// SplitMix64: the fields of a record are drawn from its id.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `(year, month, day)` of days since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn write_time(out: &mut Vec<u8>, unix: i64) {
    let (year, month, day) = civil(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

const STATUSES: [&str; 5] = ["pending", "paid", "shipped", "delivered", "refunded"];
const COUNTRIES: [&str; 8] = ["DE", "FR", "NL", "US", "GB", "ES", "IT", "SE"];
/// 2024-01-01T00:00:00Z.
const EPOCH: i64 = 1_704_067_200;

/// Record `index` (from 0): about 400 bytes of JSON.
fn write_record(out: &mut Vec<u8>, index: u64) {
    let id = index + 1;
    let h = mix(id);
    let customer = 10_000 + (h >> 8) % 90_000;
    let cents = (h >> 24) % 1_000_000;
    let qty = 1 + (h >> 44) % 5;
    let sku_a = (h >> 12) % 100_000;
    let sku_b = (h >> 28) % 100_000;
    let updated = EPOCH + (id as i64) * 3;
    let _ = write!(
        out,
        r#"{{"id":{id},"uuid":"{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}","updated_at":""#,
        h >> 32,
        (h >> 16) & 0xffff,
        (h >> 4) & 0xfff,
        (h >> 20) & 0xfff,
        id
    );
    write_time(out, updated);
    let _ = write!(
        out,
        r#"","status":"{}","customer":{{"id":{customer},"name":"Customer {customer}","email":"customer{customer}@example.com","country":"{}"}},"amount":"{}.{:02}","currency":"EUR","items":[{{"sku":"SKU-{sku_a:05}","qty":{qty},"unit_price":"{}.{:02}"}},{{"sku":"SKU-{sku_b:05}","qty":1,"unit_price":"{}.{:02}"}}],"tags":["bench","priority-{}"],"note":"bench record {id}"}}"#,
        STATUSES[(h % 5) as usize],
        COUNTRIES[((h >> 20) % 8) as usize],
        cents / 100,
        cents % 100,
        cents / 300,
        cents % 100,
        cents / 200,
        (cents / 7) % 100,
        h % 4,
    );
}

/// Records `[start, end)` as the elements of a JSON array (without the brackets).
fn write_records(out: &mut Vec<u8>, start: u64, end: u64) {
    for index in start..end {
        if index > start {
            out.push(b',');
        }
        write_record(out, index);
    }
}

fn query(request: &Request<Incoming>, name: &str) -> Option<u64> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

fn json(body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

fn page(start: u64, size: u64, total: u64) -> (u64, u64) {
    let start = start.min(total);
    (start, (start + size.min(MAX_PAGE)).min(total))
}

fn respond(request: &Request<Incoming>, settings: &Settings, stats: &Stats) -> Response<Full<Bytes>> {
    let total = query(request, "total").unwrap_or(settings.records);
    let path = request.uri().path();
    match path {
        "/cursor" => {
            let limit = query(request, "limit").unwrap_or(100);
            let (start, end) = page(query(request, "cursor").unwrap_or(0), limit, total);
            let mut body = Vec::with_capacity(((end - start) * 420 + 64) as usize);
            body.extend_from_slice(br#"{"data":["#);
            write_records(&mut body, start, end);
            if end < total {
                let _ = write!(body, r#"],"meta":{{"next_cursor":"{end}"}}}}"#);
            } else {
                body.extend_from_slice(br#"],"meta":{"next_cursor":null}}"#);
            }
            json(body)
        }
        "/offset" => {
            let limit = query(request, "limit").unwrap_or(100);
            let (start, end) = page(query(request, "offset").unwrap_or(0), limit, total);
            let mut body = Vec::with_capacity(((end - start) * 420 + 64) as usize);
            body.extend_from_slice(br#"{"data":["#);
            write_records(&mut body, start, end);
            let _ = write!(body, r#"],"total":{total}}}"#);
            json(body)
        }
        "/pages" => {
            let size = query(request, "page_size").unwrap_or(100);
            let number = query(request, "page").unwrap_or(1).max(1);
            let (start, end) = page((number - 1).saturating_mul(size), size, total);
            let mut body = Vec::with_capacity(((end - start) * 420 + 64) as usize);
            body.extend_from_slice(br#"{"data":["#);
            write_records(&mut body, start, end);
            body.extend_from_slice(b"]}");
            json(body)
        }
        "/link" => {
            let size = query(request, "per_page").unwrap_or(100);
            let number = query(request, "page").unwrap_or(1).max(1);
            let (start, end) = page((number - 1).saturating_mul(size), size, total);
            let mut body = Vec::with_capacity(((end - start) * 420 + 64) as usize);
            body.push(b'[');
            write_records(&mut body, start, end);
            body.push(b']');
            let mut response = json(body);
            if end < total {
                let host = request
                    .headers()
                    .get("host")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("127.0.0.1");
                let link = format!(
                    "<http://{host}/link?page={}&per_page={size}&total={total}>; rel=\"next\"",
                    number + 1
                );
                response
                    .headers_mut()
                    .insert("link", link.parse().expect("ASCII link header"));
            }
            response
        }
        "/stats" => {
            let body = format!(
                r#"{{"requests":{},"in_flight":{},"max_in_flight":{}}}"#,
                stats.requests.load(Ordering::SeqCst),
                stats.in_flight.load(Ordering::SeqCst),
                stats.max_in_flight.load(Ordering::SeqCst)
            );
            if query(request, "reset") == Some(1) {
                stats.requests.store(0, Ordering::SeqCst);
                stats.max_in_flight.store(0, Ordering::SeqCst);
            }
            json(body.into_bytes())
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"{\"error\":\"not found\"}")))
            .expect("static response"),
    }
}

async fn serve(
    request: Request<Incoming>,
    settings: Arc<Settings>,
    stats: Arc<Stats>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/stats" {
        return Ok(respond(&request, &settings, &stats));
    }
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(&stats);
    if !settings.latency.is_zero() {
        tokio::time::sleep(settings.latency).await;
    }
    Ok(respond(&request, &settings, &stats))
}

/// Counts a request in flight until it is answered or dropped (a client that hangs up
/// makes hyper drop the handler mid-sleep).
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a Stats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let settings = Arc::new(settings());
    let stats = Arc::new(Stats::default());
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], settings.port)))
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    println!("http://{addr}");
    let _ = std::io::stdout().flush();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let settings = settings.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| serve(request, settings.clone(), stats.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_deterministic_json_of_about_400_bytes() {
        let mut first = Vec::new();
        write_record(&mut first, 122);
        let mut again = Vec::new();
        write_record(&mut again, 122);
        assert_eq!(first, again);
        assert!((360..=440).contains(&first.len()), "{} bytes", first.len());
        let text = String::from_utf8(first).unwrap();
        assert!(text.starts_with(r#"{"id":123,"#), "{text}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }
}
