//! The one request `init` makes: the drafted source loaded as a config (references
//! resolved, so an unset variable is a config error before anything is sent), then sent
//! through the run's HTTP client, so the redirect policy, the response size cap, timeouts,
//! TLS settings, auth and retries are those a run will have.

use bytes::Bytes;

use super::render::{self, PageFacts};
use super::{Draft, InitError};
use crate::config::{ConnectorConfig, Resolve};
use crate::http::{HttpClient, RequestContext};
use crate::observe::events::Events;
use crate::pagination::{PageToken, next_link};
use crate::source::rest::request::{Bounds, RequestBuilder};

/// The first page as received.
#[derive(Debug)]
pub struct FirstPage {
    pub body: Bytes,
    /// Whether a `Link` header names a `rel="next"` page.
    pub next_link: bool,
    pub facts: PageFacts,
}

/// Sends the first request of the drafted stream.
pub async fn first_page(
    draft: &Draft,
    params: &[(String, String)],
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<FirstPage, InitError> {
    let yaml = render::probe(draft, params);
    let loaded = ConnectorConfig::from_yaml(&yaml, Resolve::References, lookup_env)?;
    let config = &loaded.config;
    let stream = config.streams.first().expect("the probe config has one stream");
    let events = Events::new(&uuid::Uuid::now_v7().to_string(), &config.source.name);
    let client = HttpClient::new(&config.source, events)
        .map_err(|error| InitError::Usage(format!("cannot set up the HTTP client: {error}")))?;
    let builder = RequestBuilder::new(config, stream)
        .map_err(|error| InitError::Usage(format!("--base-url and --path do not make a URL: {error}")))?;
    let spec = builder.build(&PageToken::Initial, &Bounds::default());
    let request = format!("{} {}", spec.method.as_str(), crate::redact::url(&spec.url));
    let response = client
        .send(
            &spec,
            RequestContext {
                stream: &stream.name,
                page: 1,
            },
        )
        .await?;
    let next_link = response
        .headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| next_link(value).is_some());
    Ok(FirstPage {
        next_link,
        facts: PageFacts {
            request,
            status: response.status,
            bytes: response.body.len(),
            fetched_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
        body: response.body,
    })
}
