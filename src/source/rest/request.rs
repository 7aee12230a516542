//! Building a stream's requests: URL, query, headers and body, with the page token and
//! the incremental bounds placed where the config says.

use url::Url;

use crate::config::{ConnectorConfig, StreamConfig};
use crate::http::config::Method;
use crate::http::{PostPolicy, RequestSpec};
use crate::pagination::PageToken;
use crate::pagination::config::{InjectInto, PaginationConfig};

/// The incremental window of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// `(param, value)` of the lower bound.
    pub lower: Option<(String, String)>,
    /// `(param, value)` of the upper bound.
    pub upper: Option<(String, String)>,
}

/// Builds the requests of one stream.
#[derive(Clone, Debug)]
pub struct RequestBuilder {
    url: Url,
    method: Method,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<serde_json::Value>,
    pagination: PaginationConfig,
    post: PostPolicy,
    credentials: bool,
}

fn param_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

impl RequestBuilder {
    pub fn new(config: &ConnectorConfig, stream: &StreamConfig) -> Result<Self, url::ParseError> {
        let base = config.source.base_url.trim_end_matches('/');
        let url = Url::parse(&format!("{base}{}", stream.path))?;
        // A stream's param replaces (or, when null, removes) the source's of the same name.
        // One pass each: a config with hundreds of thousands of params builds in linear time.
        let params: Vec<(String, String)> = config
            .source
            .params
            .iter()
            .filter(|(name, _)| !stream.params.contains_key(*name))
            .chain(stream.params.iter())
            .filter_map(|(name, value)| Some((name.clone(), param_text(value)?)))
            .collect();
        let mut headers: Vec<(String, String)> = config.source.headers.clone().into_iter().collect();
        for (name, value) in &stream.headers {
            headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
            headers.push((name.clone(), value.clone()));
        }
        Ok(Self {
            url,
            method: stream.method,
            params,
            headers,
            body: stream.body.clone(),
            pagination: stream.pagination.clone(),
            post: PostPolicy {
                idempotency_key: stream.idempotency_key,
                retry: stream.retry_post,
            },
            credentials: true,
        })
    }

    /// The builder of `stream` sending to `url` as it is (a URL a response named): no
    /// params are added, and on another origin than `source.base_url` neither the
    /// stream's headers nor the source's credentials go along (a pre-signed URL carries
    /// its own, and must not get the source's).
    pub fn for_url(config: &ConnectorConfig, stream: &StreamConfig, url: Url) -> Result<Self, url::ParseError> {
        let mut builder = Self::new(config, stream)?;
        let same_origin = builder.url.origin() == url.origin();
        builder.url = url;
        builder.params.clear();
        if !same_origin {
            builder.headers.clear();
            builder.credentials = false;
        }
        Ok(builder)
    }

    /// The URL of the stream's first request, without page token.
    pub fn base_url(&self) -> &Url {
        &self.url
    }

    /// The request for the page selected by `token`.
    pub fn build(&self, token: &PageToken, bounds: &Bounds) -> RequestSpec {
        let mut query: Vec<(String, String)> = Vec::new();
        let mut headers = self.headers.clone();
        let mut body = self.body.clone();
        if self.method == Method::Post && body.is_none() {
            body = Some(serde_json::Value::Object(Default::default()));
        }
        let follow_url = match token {
            PageToken::Url(url) => Some(url.clone()),
            _ => None,
        };
        if follow_url.is_none() {
            query.extend(self.params.iter().cloned());
        }
        // The incremental bounds go in the body of a POST, in the query otherwise. A followed
        // next-URL already carries them.
        if follow_url.is_none() {
            for (name, value) in bounds.lower.iter().chain(bounds.upper.iter()) {
                place(
                    self.bounds_target(),
                    name,
                    serde_json::Value::String(value.clone()),
                    &mut query,
                    &mut headers,
                    &mut body,
                );
            }
        }
        for (target, name, value) in self.pagination.token_fields(token) {
            place(target, &name, value, &mut query, &mut headers, &mut body);
        }
        let mut url = follow_url.unwrap_or_else(|| self.url.clone());
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &query {
                pairs.append_pair(name, value);
            }
        }
        RequestSpec {
            method: self.method,
            url,
            headers,
            body: body.map(|body| serde_json::to_vec(&body).expect("JSON serializes")),
            post: self.post,
            credentials: self.credentials,
        }
    }

    fn bounds_target(&self) -> InjectInto {
        if self.method == Method::Post {
            InjectInto::Body
        } else {
            InjectInto::Query
        }
    }
}

fn place(
    target: InjectInto,
    name: &str,
    value: serde_json::Value,
    query: &mut Vec<(String, String)>,
    headers: &mut Vec<(String, String)>,
    body: &mut Option<serde_json::Value>,
) {
    let text = || param_text(&value).unwrap_or_default();
    match target {
        InjectInto::Query => {
            query.retain(|(existing, _)| existing != name);
            query.push((name.to_owned(), text()));
        }
        InjectInto::Header => {
            headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
            headers.push((name.to_owned(), text()));
        }
        InjectInto::Body => {
            let body = body.get_or_insert_with(|| serde_json::Value::Object(Default::default()));
            if name.starts_with('/') {
                set_pointer(body, name, value);
            } else if let serde_json::Value::Object(map) = body {
                map.insert(name.to_owned(), value);
            }
        }
    }
}

/// Sets the member at JSON pointer `pointer` of a POST body (a search API's filter value,
/// such as HubSpot's `/filterGroups/0/filters/0/value`), creating missing object members
/// along the way. An array index must exist already; a pointer that cannot be followed
/// leaves the body as it is (the config validator reports it before any run).
pub(crate) fn set_pointer(body: &mut serde_json::Value, pointer: &str, value: serde_json::Value) -> bool {
    let mut tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some(last) = tokens.pop() else {
        return false;
    };
    let mut at = body;
    for token in &tokens {
        at = match at {
            serde_json::Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| serde_json::Value::Object(Default::default())),
            serde_json::Value::Array(items) => match token.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => item,
                None => return false,
            },
            _ => return false,
        };
    }
    match at {
        serde_json::Value::Object(map) => {
            map.insert(last, value);
            true
        }
        serde_json::Value::Array(items) => match last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
            Some(item) => {
                *item = value;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// The method and path (with query, secrets masked) that `_source_endpoint` records.
pub fn endpoint(method: Method, url: &Url) -> String {
    let shown = Url::parse(&crate::redact::url(url)).unwrap_or_else(|_| url.clone());
    match shown.query() {
        Some(query) => format!("{} {}?{}", method.as_str(), shown.path(), query),
        None => format!("{} {}", method.as_str(), shown.path()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConnectorConfig, Resolve};

    fn builder(stream: &str) -> RequestBuilder {
        let text = format!(
            "version: 1\nsource: {{name: s, base_url: 'https://api.test/v2/', params: {{api_version: 3, drop: null}}}}\nstreams:\n  - {stream}\n"
        );
        let config = ConnectorConfig::from_yaml(&text, Resolve::References, &|_| None)
            .unwrap()
            .config;
        RequestBuilder::new(&config, &config.streams[0]).unwrap()
    }

    #[test]
    fn cursor_in_query_with_bounds() {
        let builder = builder(
            "{name: o, path: /orders, params: {limit: 5}, pagination: {type: cursor, cursor_path: /n, cursor_param: after}}",
        );
        let bounds = Bounds {
            lower: Some(("since".into(), "2024-01-01T00:00:00Z".into())),
            upper: None,
        };
        let spec = builder.build(&PageToken::Cursor("abc".into()), &bounds);
        assert_eq!(
            spec.url.as_str(),
            "https://api.test/v2/orders?api_version=3&limit=5&since=2024-01-01T00%3A00%3A00Z&after=abc"
        );
        assert!(spec.body.is_none());
    }

    #[test]
    fn offset_in_body_for_post() {
        let builder = builder(
            "{name: o, path: /search, method: POST, body: {filter: x}, pagination: {type: offset, limit: 50, inject_into: body}}",
        );
        let spec = builder.build(&PageToken::Offset(100), &Bounds::default());
        let body: serde_json::Value = serde_json::from_slice(&spec.body.unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"filter": "x", "offset": 100, "limit": 50}));
        assert_eq!(spec.url.as_str(), "https://api.test/v2/search?api_version=3");
    }

    #[test]
    fn bounds_at_a_json_pointer_of_a_post_body() {
        // HubSpot's CRM search: the lower bound is a filter's value, the cursor a top-level
        // `after`.
        let builder = builder(
            "{name: o, path: /search, method: POST, body: {filterGroups: [{filters: [{propertyName: lastmodifieddate, operator: GTE, value: '0'}]}], limit: 100}, pagination: {type: cursor, cursor_path: /paging/next/after, cursor_param: after, inject_into: body}}",
        );
        let bounds = Bounds {
            lower: Some(("/filterGroups/0/filters/0/value".into(), "2024-01-01T00:00:00Z".into())),
            upper: None,
        };
        let spec = builder.build(&PageToken::Cursor("200".into()), &bounds);
        let body: serde_json::Value = serde_json::from_slice(&spec.body.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                                                             "value": "2024-01-01T00:00:00Z"}]}],
                               "limit": 100, "after": "200"})
        );
    }

    #[test]
    fn a_pointer_creates_members_but_never_array_items() {
        let mut body = serde_json::json!({"a": [{}]});
        assert!(set_pointer(&mut body, "/a/0/b/c", 1.into()));
        assert!(set_pointer(&mut body, "/x~1y", 2.into()));
        assert!(!set_pointer(&mut body, "/a/5/b", 3.into()));
        assert!(!set_pointer(&mut body, "/a/0/b/c/d", 4.into()));
        assert_eq!(body, serde_json::json!({"a": [{"b": {"c": 1}}], "x/y": 2}));
    }

    #[test]
    fn page_number_in_header_and_next_url_as_is() {
        let builder =
            builder("{name: o, path: /p, pagination: {type: page_number, page_param: X-Page, inject_into: header}}");
        let spec = builder.build(&PageToken::Page(2), &Bounds::default());
        assert!(spec.headers.contains(&("X-Page".into(), "2".into())));
        let next = Url::parse("https://api.test/v2/p?cursor=z").unwrap();
        let spec = builder.build(&PageToken::Url(next.clone()), &Bounds::default());
        assert_eq!(spec.url, next);
    }

    #[test]
    fn many_params_build_in_linear_time() {
        // 400k params took over two minutes (a retain per param); the bound is generous. The
        // params are set on the parsed config: a YAML file this large is refused (1 MiB cap).
        let text = "version: 1\nsource: {name: s, base_url: 'https://api.test/v2/'}\nstreams:\n  - {name: o, path: /o, params: {api_version: 4}}\n";
        let mut config = ConnectorConfig::from_yaml(text, Resolve::References, &|_| None)
            .unwrap()
            .config;
        config.streams[0]
            .params
            .extend((0..200_000).map(|index| (format!("p{index}"), serde_json::json!(index))));
        let started = std::time::Instant::now();
        let builder = RequestBuilder::new(&config, &config.streams[0]).unwrap();
        let spec = builder.build(&PageToken::Initial, &Bounds::default());
        assert_eq!(spec.url.query_pairs().count(), 200_001);
        assert!(
            spec.url
                .query_pairs()
                .any(|(name, value)| name == "api_version" && value == "4")
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_url_on_another_origin_gets_no_params_headers_or_credentials() {
        let text = "version: 1\nsource: {name: s, base_url: 'https://api.test/v2/', params: {api_version: 3}, headers: {X-Org: o}}\nstreams:\n  - {name: o, path: /o}\n";
        let config = ConnectorConfig::from_yaml(text, Resolve::References, &|_| None)
            .unwrap()
            .config;
        let stream = &config.streams[0];
        let signed = Url::parse("https://bucket.s3.test/r.csv?X-Amz-Signature=abc").unwrap();
        let spec = RequestBuilder::for_url(&config, stream, signed.clone())
            .unwrap()
            .build(&PageToken::Initial, &Bounds::default());
        assert_eq!(spec.url, signed);
        assert!(spec.headers.is_empty());
        assert!(!spec.credentials);
        let own = Url::parse("https://api.test/v2/files/1").unwrap();
        let spec = RequestBuilder::for_url(&config, stream, own.clone())
            .unwrap()
            .build(&PageToken::Initial, &Bounds::default());
        assert_eq!(spec.url, own);
        assert_eq!(spec.headers, [("X-Org".to_owned(), "o".to_owned())]);
        assert!(spec.credentials);
    }

    #[test]
    fn endpoint_masks_secrets() {
        let url = Url::parse("https://api.test/x?api_key=k&limit=1").unwrap();
        assert_eq!(endpoint(Method::Get, &url), "GET /x?api_key=***&limit=1");
    }
}
