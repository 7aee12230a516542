//! TLS against a loopback server with a private CA made in the test (rcgen): the extra CA
//! file, mutual TLS with a client certificate, and the minimum version. Also `run` through
//! HTTP and CONNECT proxies named by the standard environment variables.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::servers::{CountingServer, ProxyStandIn};
use common::{Workspace, landfall, stderr};
use landfall::config::{ConnectorConfig, Resolve};
use landfall::error::ErrorCode;
use landfall::http::config::Method;
use landfall::http::{HttpClient, PostPolicy, RequestContext, RequestSpec};
use landfall::observe::events::Events;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA with a server certificate and a client certificate, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Landfall test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "api.proxied.test".to_owned(),
        ])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(vec!["landfall-client".to_owned()]).unwrap();
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.pem"), client_cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), client_key.serialize_pem()).unwrap();
        Self {
            dir,
            ca: ca_cert.der().clone(),
            server_chain: vec![server_cert.der().clone()],
            server_key: server_key.serialize_der(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A TLS acceptor for the server certificate; `require_client` demands a client
    /// certificate signed by the CA; `versions` limits the protocol versions.
    fn acceptor(
        &self,
        require_client: bool,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = if require_client {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = builder.with_single_cert(self.server_chain.clone(), key).unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

fn client(base: &str, tls: &str) -> (HttpClient, RequestSpec) {
    let text = format!(
        "version: 1\nsource:\n  name: shop\n  base_url: {base}\n  retry: {{max_attempts: 1}}\n  tls: {tls}\nstreams: [{{name: items, path: /items}}]\n"
    );
    let config = ConnectorConfig::from_yaml(&text, Resolve::References, &|_| None)
        .unwrap()
        .config;
    let client = HttpClient::new(&config.source, Events::new("tls-test", "shop")).unwrap();
    let spec = RequestSpec {
        method: Method::Get,
        url: url::Url::parse(&format!("{base}/items")).unwrap(),
        headers: vec![],
        body: None,
        post: PostPolicy::default(),
        credentials: true,
    };
    (client, spec)
}

const CONTEXT: RequestContext<'static> = RequestContext {
    stream: "items",
    page: 1,
};

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn private_ca_and_client_certificate() {
    let pki = Pki::new();
    let server = CountingServer::start(Some(pki.acceptor(true, rustls::ALL_VERSIONS)), Duration::ZERO).await;
    let base = format!("https://localhost:{}", server.addr.port());
    let ca = path_text(&pki.file("ca.pem"));
    let mtls = format!(
        "{{ca_file: '{ca}', client_cert_file: '{}', client_key_file: '{}'}}",
        path_text(&pki.file("client.pem")),
        path_text(&pki.file("client.key"))
    );

    let (with_identity, spec) = client(&base, &mtls);
    let response = with_identity.send(&spec, CONTEXT).await.unwrap();
    assert_eq!(&response.body[..], br#"{"data":[{"id":1}]}"#);

    // The CA alone is not enough: the server wants a client certificate.
    let (without_identity, spec) = client(&base, &format!("{{ca_file: '{ca}'}}"));
    let error = without_identity.send(&spec, CONTEXT).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::NetworkError, "{error}");

    // Without the private CA the server is not trusted: a config error (every retry and
    // rerun would meet it again), naming the key that fixes it.
    let (untrusting, spec) = client(&base, "{}");
    let error = untrusting.send(&spec, CONTEXT).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::ConfigError, "{error}");
    assert!(!error.retryable, "{error}");
    let text = error.to_string();
    assert!(
        text.contains("certificate did not verify") && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert!(text.contains("source.tls.ca_file"), "{text}");
    assert_eq!(server.counts.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_run_once_with_exit_1() {
    let pki = Pki::new();
    let server = CountingServer::start(Some(pki.acceptor(false, rustls::ALL_VERSIONS)), Duration::ZERO).await;
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "version: 1\nsource:\n  name: shop\n  base_url: https://localhost:{}\n  retry: {{max_attempts: 4, initial_delay: 10ms}}\nstreams: [{{name: items, path: /items}}]\nlanding: {{url: '{{landing}}'}}\n",
        server.addr.port()
    ));
    let output = landfall(&["run", "--config", config.to_str().unwrap()], &[]).await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("CONFIG_ERROR") && text.contains("source.tls.ca_file"),
        "{text}"
    );
    assert!(!text.contains("request_retried"), "not retried: {text}");

    // The same for an OAuth 2.0 token endpoint the run does not trust.
    let config = ws.config(&format!(
        "version: 1\nsource:\n  name: shop\n  base_url: https://localhost:{port}\n  auth: {{type: oauth2, flow: client_credentials, token_url: 'https://localhost:{port}/token', client_id: c, client_secret: '${{env:TLS_CLIENT_SECRET}}'}}\n  retry: {{max_attempts: 4, initial_delay: 10ms}}\nstreams: [{{name: items, path: /items}}]\nlanding: {{url: '{{landing}}'}}\n",
        port = server.addr.port()
    ));
    let output = landfall(
        &["run", "--config", config.to_str().unwrap()],
        &[("TLS_CLIENT_SECRET", "s3cret-value")],
    )
    .await;
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("token request failed") && text.contains("source.tls.ca_file"),
        "{text}"
    );
    assert!(!text.contains("s3cret-value"), "{text}");
}

#[tokio::test]
async fn minimum_tls_version_is_enforced() {
    let pki = Pki::new();
    let server = CountingServer::start(Some(pki.acceptor(false, &[&rustls::version::TLS12])), Duration::ZERO).await;
    let base = format!("https://localhost:{}", server.addr.port());
    let ca = path_text(&pki.file("ca.pem"));
    let (tls12, spec) = client(&base, &format!("{{ca_file: '{ca}', min_version: '1.2'}}"));
    tls12.send(&spec, CONTEXT).await.unwrap();
    let (tls13, spec) = client(&base, &format!("{{ca_file: '{ca}', min_version: '1.3'}}"));
    let error = tls13.send(&spec, CONTEXT).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::NetworkError, "{error}");
}

fn proxy_env(proxy: &ProxyStandIn) -> Vec<(&'static str, String)> {
    vec![
        ("HTTP_PROXY", proxy.url()),
        ("HTTPS_PROXY", proxy.url()),
        ("NO_PROXY", String::new()),
        ("no_proxy", String::new()),
    ]
}

#[tokio::test]
async fn run_goes_through_proxies_from_the_environment() {
    // Plain HTTP: an absolute-form request to a host that only the proxy can reach.
    let upstream = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/items"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!([{"id": 1}, {"id": 2}])))
        .mount(&upstream)
        .await;
    let proxy = ProxyStandIn::start(*upstream.address()).await;
    let ws = Workspace::new();
    let config = ws.config(
        "version: 1\nsource: {name: shop, base_url: 'http://upstream.proxied.test', allow_insecure_http: true}\nstreams: [{name: items, path: /items, primary_key: [id]}]\nlanding: {url: '{landing}'}\n",
    );
    let env = proxy_env(&proxy);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = landfall(&["run", "--config", config.to_str().unwrap()], &env).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(ws.lines("shop", "items").len(), 2);
    assert_eq!(proxy.seen(), vec!["GET http://upstream.proxied.test/items HTTP/1.1"]);

    // HTTPS: a CONNECT tunnel to the TLS server, verified against the private CA.
    let pki = Pki::new();
    let server = CountingServer::start(Some(pki.acceptor(false, rustls::ALL_VERSIONS)), Duration::ZERO).await;
    let proxy = ProxyStandIn::start(server.addr).await;
    let ws = Workspace::new();
    let config = ws.config(&format!(
        "version: 1\nsource: {{name: shop, base_url: 'https://api.proxied.test', tls: {{ca_file: '{}'}}}}\nstreams: [{{name: items, path: /items, records_path: /data}}]\nlanding: {{url: '{{landing}}'}}\n",
        path_text(&pki.file("ca.pem"))
    ));
    let env = proxy_env(&proxy);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = landfall(&["run", "--config", config.to_str().unwrap()], &env).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(ws.lines("shop", "items").len(), 1);
    assert_eq!(proxy.seen(), vec!["CONNECT api.proxied.test:443 HTTP/1.1"]);
}
