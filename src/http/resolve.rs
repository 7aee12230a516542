//! The DNS resolver of the source client. A host name is resolved with the system
//! resolver (through tokio), and every link-local or cloud metadata address
//! ([`redirect::forbidden_address`]) is dropped from the answer before a connection is
//! made, so a name that resolves (or is rebound) to 169.254.169.254 is never connected to,
//! whatever the redirect or the `next_url` that led there. A name left with no address
//! fails with [`AddressRefused`] (`ADDRESS_REFUSED`, not retryable).
//!
//! Literal IP hosts never reach a resolver: they are checked by [`redirect::check`].
//! Loopback and private addresses are allowed (tests and in-cluster APIs use them).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::redirect;

/// What a lookup returns: the addresses of a name, or why it has none.
pub type Lookup = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// A function that looks a host name up.
pub type LookupFn = dyn Fn(String) -> Lookup + Send + Sync;

/// A host name that resolved only to link-local or cloud metadata addresses.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves only to link-local or cloud metadata addresses ({addresses}); refusing to connect (docs/security.md)"
)]
pub struct AddressRefused {
    pub host: String,
    pub addresses: String,
}

/// A resolver that never returns a link-local or cloud metadata address.
#[derive(Clone)]
pub struct GuardedResolver {
    lookup: Arc<LookupFn>,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuardedResolver")
    }
}

impl Default for GuardedResolver {
    fn default() -> Self {
        Self::new(Arc::new(|host: String| -> Lookup {
            Box::pin(async move {
                let addresses = tokio::net::lookup_host((host.as_str(), 0)).await?;
                Ok(addresses.map(|address| address.ip()).collect())
            })
        }))
    }
}

impl GuardedResolver {
    /// A resolver that asks `lookup` (the system resolver in [`Default`]).
    pub fn new(lookup: Arc<LookupFn>) -> Self {
        Self { lookup }
    }

    /// The addresses of `host` Landfall may connect to, in the order of the answer.
    pub async fn resolve_host(&self, host: &str) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let answer = (self.lookup)(host.to_owned()).await?;
        let (refused, allowed): (Vec<IpAddr>, Vec<IpAddr>) = answer
            .into_iter()
            .partition(|address| redirect::forbidden_address(*address).is_some());
        if allowed.is_empty() && !refused.is_empty() {
            return Err(Box::new(AddressRefused {
                host: host.to_owned(),
                addresses: refused.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            }));
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let allowed = resolver.resolve_host(&host).await?;
            let addresses: Addrs = Box::new(allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addresses)
        })
    }
}

/// The [`AddressRefused`] somewhere in `error`'s chain of causes.
pub fn address_refused<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AddressRefused> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(refused) = current.downcast_ref::<AddressRefused>() {
            return Some(refused);
        }
        cause = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// A resolver whose answers are fixed: `metadata.test` is the metadata address,
    /// `mixed.test` a public and a link-local one, `local.test` loopback.
    fn fixed() -> GuardedResolver {
        GuardedResolver::new(Arc::new(|host: String| -> Lookup {
            Box::pin(async move {
                let answer: &[&str] = match host.as_str() {
                    "metadata.test" => &["169.254.169.254"],
                    "mapped.test" => &["::ffff:169.254.169.254", "fe80::1"],
                    "alibaba.test" => &["100.100.100.200", "fd00:ec2::254"],
                    "mixed.test" => &["169.254.169.254", "203.0.113.7"],
                    "local.test" => &["127.0.0.1", "::1"],
                    "private.test" => &["10.0.0.5", "192.168.1.1", "fd12::1"],
                    _ => return Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
                };
                Ok(answer.iter().map(|text| text.parse().unwrap()).collect())
            })
        }))
    }

    async fn resolve(resolver: &GuardedResolver, host: &str) -> Result<Vec<SocketAddr>, String> {
        resolver
            .resolve(Name::from_str(host).unwrap())
            .await
            .map(|addresses| addresses.collect())
            .map_err(|error| error.to_string())
    }

    #[tokio::test]
    async fn names_resolving_to_metadata_addresses_are_refused() {
        let resolver = fixed();
        for host in ["metadata.test", "mapped.test", "alibaba.test"] {
            let refused = resolve(&resolver, host).await.unwrap_err();
            assert!(refused.contains("link-local or cloud metadata"), "{host}: {refused}");
            assert!(refused.contains(host), "{refused}");
        }
        let error = resolver
            .resolve(Name::from_str("metadata.test").unwrap())
            .await
            .err()
            .unwrap();
        let refused = address_refused(error.as_ref()).expect("an AddressRefused");
        assert_eq!(refused.addresses, "169.254.169.254");
    }

    #[tokio::test]
    async fn loopback_and_private_names_are_allowed_and_metadata_answers_dropped() {
        let resolver = fixed();
        let local = resolve(&resolver, "local.test").await.unwrap();
        assert_eq!(local.len(), 2);
        assert!(local.iter().all(|address| address.ip().is_loopback()));
        assert_eq!(resolve(&resolver, "private.test").await.unwrap().len(), 3);
        let mixed = resolve(&resolver, "mixed.test").await.unwrap();
        assert_eq!(mixed, vec!["203.0.113.7:0".parse::<SocketAddr>().unwrap()]);
        let missing = resolve(&resolver, "missing.test").await.unwrap_err();
        assert!(missing.contains("no such host"), "{missing}");
    }

    #[tokio::test]
    async fn the_system_resolver_answers_localhost() {
        let local = resolve(&GuardedResolver::default(), "localhost").await.unwrap();
        assert!(!local.is_empty());
        assert!(local.iter().all(|address| address.ip().is_loopback()), "{local:?}");
    }
}
