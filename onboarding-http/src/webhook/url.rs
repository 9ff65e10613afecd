//! Which webhook URLs a tenant may register and be sent to: `https` unless
//! the operator allows `http`, and no loopback, private, link-local or
//! otherwise non-public address unless the operator allows them. Checked at
//! registration, and again at every delivery after DNS resolution: the
//! client's resolver ([`PolicyResolver`]) checks every address a name
//! resolves to and hands only checked addresses to the connection, so a
//! name cannot be re-pointed at an internal address between check and use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use onboarding_core::FieldError;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// What the operator allows of webhook URLs (default: neither).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UrlPolicy {
    /// Accept `http://` URLs (`WEBHOOK_ALLOW_HTTP`).
    pub allow_http: bool,
    /// Accept loopback, private, link-local and other non-public addresses
    /// (`WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
}

impl UrlPolicy {
    /// `https` and public addresses only.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Anything goes (tests, a trusted network).
    pub fn permissive() -> Self {
        Self {
            allow_http: true,
            allow_private: true,
        }
    }

    /// Sets whether `http://` is accepted.
    pub fn with_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Sets whether non-public addresses are accepted.
    pub fn with_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Checks a URL without resolving it: absolute, `https` (or allowed
    /// `http`), a host, no credentials, and, when the host is an IP
    /// address, a public one (unless allowed). The error names `pointer`.
    pub fn check(&self, url: &str, pointer: &str) -> Result<Url, FieldError> {
        let bad = |code: &str, detail: &str| FieldError::new(pointer, code, detail);
        let parsed = Url::parse(url.trim()).map_err(|_| {
            bad(
                "url_invalid",
                "the URL must be absolute, e.g. https://example.com/hooks",
            )
        })?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(bad("url_not_https", "the URL must use https")),
            _ => return Err(bad("url_invalid", "the URL must be an https:// URL")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("url_invalid", "the URL must not carry credentials"));
        }
        let ip = match parsed.host() {
            None => return Err(bad("url_invalid", "the URL must name a host")),
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => {
                if !self.allow_private && is_local_name(name) {
                    return Err(bad("url_private", "the URL must not point at a local host"));
                }
                None
            }
        };
        if let Some(ip) = ip {
            if !self.allows(ip) {
                return Err(bad(
                    "url_private",
                    "the URL must not point at a loopback, private or link-local address",
                ));
            }
        }
        Ok(parsed)
    }

    /// Whether an address may be connected to.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }

    /// Resolves a URL's host and checks every address (what a delivery
    /// does); the error names `pointer`.
    pub async fn check_resolved(&self, url: &Url, pointer: &str) -> Result<(), FieldError> {
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs = resolve(self, host, port).await.map_err(|e| {
            let code = if e.is::<PrivateAddress>() {
                "url_private"
            } else {
                "url_unresolvable"
            };
            FieldError::new(pointer, code, e.to_string())
        })?;
        if addrs.is_empty() {
            return Err(FieldError::new(
                pointer,
                "url_unresolvable",
                "the host has no address",
            ));
        }
        Ok(())
    }
}

fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.ends_with(".local")
        || name.ends_with(".internal")
}

/// Whether an address is reachable on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)) // NAT64 to anything
}

/// An address the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("the host resolves to a non-public address, which webhooks may not use")]
pub(crate) struct PrivateAddress;

async fn resolve(
    policy: &UrlPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    if addrs.iter().any(|a| !policy.allows(a.ip())) {
        return Err(Box::new(PrivateAddress));
    }
    Ok(addrs)
}

/// The webhook client's resolver: resolves with the system resolver and
/// refuses a name when any of its addresses is not allowed, so the
/// connection only ever goes to checked addresses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicyResolver(pub(crate) UrlPolicy);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let addrs = resolve(&policy, name.as_str(), 0).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_against_the_policy() {
        let strict = UrlPolicy::strict();
        assert!(strict.check("https://example.com/hooks", "/url").is_ok());
        for (url, code) in [
            ("example.com/hooks", "url_invalid"),
            ("/hooks", "url_invalid"),
            ("ftp://example.com/", "url_invalid"),
            ("http://example.com/", "url_not_https"),
            ("https://user:pw@example.com/", "url_invalid"),
            ("https://127.0.0.1/", "url_private"),
            ("https://10.1.2.3/", "url_private"),
            ("https://169.254.169.254/latest", "url_private"),
            ("https://[::1]/", "url_private"),
            ("https://[fe80::1]/", "url_private"),
            ("https://[::ffff:192.168.0.1]/", "url_private"),
            ("https://localhost/", "url_private"),
            ("https://100.64.0.1/", "url_private"),
        ] {
            let e = strict.check(url, "/url").unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.pointer.as_str()),
                (code, "/url"),
                "{url}"
            );
        }
        let open = UrlPolicy::permissive();
        assert!(open.check("http://127.0.0.1:8080/hook", "/url").is_ok());
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let strict = UrlPolicy::strict();
        let url = Url::parse("https://localhost:8443/").unwrap();
        let e = resolve(&strict, "localhost", 443).await.unwrap_err();
        assert!(e.is::<PrivateAddress>(), "{e}");
        // The name check alone, past the static one (which refuses `localhost`).
        let e = strict.check_resolved(&url, "/url").await.unwrap_err();
        assert_eq!(e.code, "url_private");
        assert!(resolve(&UrlPolicy::permissive(), "localhost", 443)
            .await
            .is_ok());
        // What the webhook client connects through: the same check.
        let name: Name = "localhost".parse().unwrap();
        assert!(PolicyResolver(strict).resolve(name).await.is_err());
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<SocketAddr> = PolicyResolver(UrlPolicy::permissive())
            .resolve(name)
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
