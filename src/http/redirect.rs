//! Which redirects a request follows (`source.redirects`). Redirects are followed by the
//! client itself, hop by hop, so that every hop is checked here before it is sent and a
//! hop to another origin carries no credential.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::http::config::RedirectPolicy;

/// The most redirects one attempt follows.
pub const MAX_REDIRECTS: usize = 10;

/// Host names of cloud metadata services, refused whatever the policy.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
];

/// Addresses of cloud metadata services outside the link-local ranges (Alibaba Cloud,
/// AWS over IPv6).
const METADATA_IPV4: &[Ipv4Addr] = &[Ipv4Addr::new(100, 100, 100, 200)];
const METADATA_IPV6: &[Ipv6Addr] = &[Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

/// Where a redirect may go, or why it may not.
#[derive(Debug, PartialEq, Eq)]
pub enum Hop {
    /// To the origin the request started at: credentials are kept.
    SameOrigin,
    /// To another origin (`any_https` only): no credential is sent there.
    CrossOrigin,
}

/// Decides whether a redirect from `from` (the hop just answered) to `to` may be followed,
/// for a request that started at `origin`.
pub fn check(policy: RedirectPolicy, origin: &url::Origin, from: &Url, to: &Url) -> Result<Hop, String> {
    if policy == RedirectPolicy::None {
        return Err("source.redirects is none".to_owned());
    }
    if to.scheme() != from.scheme() {
        return Err(format!(
            "it changes the scheme from {} to {}",
            from.scheme(),
            to.scheme()
        ));
    }
    if !to.username().is_empty() || to.password().is_some() {
        return Err("the target carries user info".to_owned());
    }
    if let Some(reason) = forbidden_host(to) {
        return Err(reason);
    }
    if &to.origin() == origin {
        return Ok(Hop::SameOrigin);
    }
    match policy {
        RedirectPolicy::AnyHttps if to.scheme() == "https" => Ok(Hop::CrossOrigin),
        RedirectPolicy::AnyHttps => Err("source.redirects any_https follows https targets only".to_owned()),
        _ => Err("it leaves the origin and source.redirects is same_origin".to_owned()),
    }
}

/// Why `url`'s host may never be a redirect target: a link-local or metadata address.
fn forbidden_host(url: &Url) -> Option<String> {
    match url.host()? {
        Host::Domain(domain) => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            METADATA_HOSTS
                .contains(&domain.as_str())
                .then(|| "the target is a cloud metadata host".to_owned())
        }
        Host::Ipv4(ip) => forbidden_address(IpAddr::V4(ip)).map(|what| format!("the target is a {what} address")),
        Host::Ipv6(ip) => forbidden_address(IpAddr::V6(ip)).map(|what| format!("the target is a {what} address")),
    }
}

/// Whether `ip` is a link-local or cloud metadata address (its IPv4-mapped IPv6 forms
/// included): `Some("link-local")` or `Some("cloud metadata")`. Loopback and private
/// ranges are not.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) if ip.is_link_local() => Some("link-local"),
        IpAddr::V4(ip) if METADATA_IPV4.contains(&ip) => Some("cloud metadata"),
        IpAddr::V4(_) => None,
        IpAddr::V6(ip) => {
            if let Some(mapped) = ip.to_ipv4_mapped() {
                return forbidden_address(IpAddr::V4(mapped));
            }
            if (ip.segments()[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if METADATA_IPV6.contains(&ip) {
                Some("cloud metadata")
            } else {
                None
            }
        }
    }
}

/// Removes credentials from a URL that goes to another origin: user info, and every query
/// parameter whose name is a credential name (`api_key`, `token`, the source's own api
/// key parameter, ...) or whose value holds a registered secret.
pub fn strip_credentials(url: &mut Url, extra_name: Option<&str>) {
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_none() {
        return;
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, value)| {
            !crate::redact::is_sensitive_query_name(name)
                && extra_name.is_none_or(|extra| !name.eq_ignore_ascii_case(extra))
                && crate::redact::scrub(value) == *value
        })
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn same_origin_by_default_and_never_to_another_scheme() {
        let start = url("https://api.test/v1/orders");
        let origin = start.origin();
        let same = RedirectPolicy::SameOrigin;
        assert_eq!(
            check(same, &origin, &start, &url("https://api.test/v2/orders")),
            Ok(Hop::SameOrigin)
        );
        assert!(check(same, &origin, &start, &url("https://evil.test/")).is_err());
        assert!(check(same, &origin, &start, &url("https://api.test:8443/")).is_err());
        assert!(check(same, &origin, &start, &url("http://api.test/v1/orders")).is_err());
        let any = RedirectPolicy::AnyHttps;
        assert_eq!(
            check(any, &origin, &start, &url("https://cdn.test/x")),
            Ok(Hop::CrossOrigin)
        );
        assert!(check(any, &origin, &start, &url("http://cdn.test/x")).is_err());
        assert!(check(RedirectPolicy::None, &origin, &start, &url("https://api.test/x")).is_err());
    }

    #[test]
    fn link_local_and_metadata_targets_are_refused_whatever_the_policy() {
        let start = url("https://api.test/");
        let origin = start.origin();
        for target in [
            "https://169.254.169.254/latest/meta-data/",
            "https://169.254.0.1/",
            "https://[fe80::1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://metadata.google.internal/computeMetadata/v1/",
            "https://METADATA.google.internal./",
            "https://100.100.100.200/",
            "https://[fd00:ec2::254]/",
        ] {
            let refused = check(RedirectPolicy::AnyHttps, &origin, &start, &url(target));
            assert!(refused.is_err(), "{target} was allowed");
        }
    }

    #[test]
    fn credentials_are_stripped_from_a_cross_origin_url() {
        crate::redact::register("registered-redirect-secret");
        let mut target =
            url("https://u:p@cdn.test/x?api_key=k1&page=2&custom=registered-redirect-secret&mykey=v&Token=t");
        strip_credentials(&mut target, Some("MyKey"));
        assert_eq!(target.as_str(), "https://cdn.test/x?page=2");
    }
}
