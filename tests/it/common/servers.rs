//! Loopback servers the HTTP tests need beyond wiremock: one that counts connections and
//! requests in flight (optionally over TLS with a private CA), and a proxy stand-in that
//! handles `CONNECT` and absolute-form HTTP requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a [`CountingServer`] saw.
#[derive(Default, Debug)]
pub struct Counts {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// TLS handshakes that failed.
    pub handshake_failures: AtomicUsize,
}

/// An HTTP/1.1 server on 127.0.0.1 answering every request with `{"data":[{"id":1}]}`
/// after `delay`.
pub struct CountingServer {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingServer {
    pub async fn start(tls: Option<tokio_rustls::TlsAcceptor>, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let counts = shared.clone();
                let failures = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        let counts = counts.clone();
                        async move {
                            let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            counts.max_in_flight.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(delay).await;
                            counts.in_flight.fetch_sub(1, Ordering::SeqCst);
                            counts.requests.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(br#"{"data":[{"id":1}]}"#)))
                                    .unwrap(),
                            )
                        }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                            Err(_) => {
                                failures.handshake_failures.fetch_add(1, Ordering::SeqCst);
                            }
                        },
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { addr, counts, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A proxy stand-in on 127.0.0.1: `CONNECT` is tunnelled to `upstream` whatever host it
/// names; an absolute-form request is piped to `upstream` as is. Every request line is
/// recorded.
pub struct ProxyStandIn {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ProxyStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProxyStandIn {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let line = text.lines().next().unwrap_or_default().to_owned();
                    log.lock().unwrap().push(line.clone());
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    if line.starts_with("CONNECT ") {
                        if client
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    } else if server.write_all(&head).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A request an API logged: when it started and when its answer finished.
pub trait Timed {
    fn started(&self) -> std::time::Instant;
    fn finished(&self) -> std::time::Instant;
}

/// The most requests in flight at once.
pub fn most_in_flight(seen: &[impl Timed]) -> usize {
    seen.iter()
        .map(|request| {
            seen.iter()
                .filter(|other| other.started() <= request.started() && request.started() < other.finished())
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The most requests that started within any `window`.
pub fn most_started_within(seen: &[impl Timed], window: Duration) -> usize {
    seen.iter()
        .map(|first| {
            seen.iter()
                .filter(|other| other.started() >= first.started() && other.started() < first.started() + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}
