//! SSRF guard: which addresses a webhook may reach, checked when connecting (DNS can change
//! between subscription and send, so a check at subscription time alone is not enough).
//!
//! Through a proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, minus `NO_PROXY`), the proxy
//! connects to the target and our resolver only ever sees the proxy. [`Proxies`] is the
//! one decision of which requests go through which proxy (the client is given exactly it),
//! and a proxied target is resolved and screened by [`screen_proxied`] before it is
//! handed over. The proxies' own hosts are the operator's choice and always resolve.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// A target refused because every address it resolves to is internal.
#[derive(Debug, thiserror::Error)]
#[error("refusing to deliver to `{host}`: {addr} is a private, loopback or link-local address (set webhook.allow_private_targets = true to allow)")]
pub struct RefusedTarget {
    /// The host as written in the URL.
    pub host: String,
    /// The first refused address.
    pub addr: IpAddr,
}

/// Whether `ip` is a public address a webhook may reach by default.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, often internal
        || (a == 192 && b == 0 && ip.octets()[2] == 0)) // IETF protocol assignments
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach IPv4 hosts.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let seg = ip.segments();
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        let [.., hi, lo] = seg;
        let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
        return is_public_v4(v4);
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80) // link-local fe80::/10
}

/// Checks an address the URL names directly (no DNS involved).
pub fn check_literal(host: &str, ip: IpAddr, allow_private: bool) -> Result<(), RefusedTarget> {
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(RefusedTarget {
            host: host.to_owned(),
            addr: ip,
        })
    }
}

/// A DNS resolver for reqwest that drops internal addresses, so a hostname that resolves
/// (now or later) to a private address is refused at connect time.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver {
    /// Allow every address (`webhook.allow_private_targets`).
    pub allow_private: bool,
    /// Hosts resolved unscreened: the configured proxies (often on a private network).
    pub trusted: Arc<[String]>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private
            || self
                .trusted
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_str()));
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow_private {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let first_refused = found.iter().map(SocketAddr::ip).find(|ip| !is_public(*ip));
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            match (public.is_empty(), first_refused) {
                (true, Some(addr)) => Err(Box::new(RefusedTarget { host, addr }) as _),
                _ => Ok(Box::new(public.into_iter()) as Addrs),
            }
        })
    }
}

/// The outgoing proxies the environment configures, read as curl and reqwest read them:
/// `HTTP_PROXY` for `http://` targets, `HTTPS_PROXY` for `https://`, `ALL_PROXY` for
/// either when its own is unset (lowercase names too), and `NO_PROXY` exceptions.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    http: Option<Url>,
    https: Option<Url>,
    no_proxy: Vec<NoProxyEntry>,
}

/// One `NO_PROXY` entry.
#[derive(Debug, Clone)]
enum NoProxyEntry {
    /// `*`: no proxy for anything.
    All,
    /// An address or network: matches IP-literal hosts inside it.
    Net(IpNet),
    /// A domain: itself and its subdomains (a leading `.` means the same).
    Domain(String),
}

impl Proxies {
    /// Reads the proxy variables through `var` (the process environment in production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Proxies {
        let get = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| var(n))
                .map(|v| v.trim().to_owned())
                .find(|v| !v.is_empty())
        };
        let parse = |value: Option<String>| {
            let value = value?;
            // `proxy:3128` means `http://proxy:3128`, as curl reads it.
            let with_scheme = if value.contains("://") {
                value
            } else {
                format!("http://{value}")
            };
            match Url::parse(&with_scheme) {
                Ok(url) => Some(url),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring an unparsable proxy variable");
                    None
                }
            }
        };
        let all = get(&["ALL_PROXY", "all_proxy"]);
        let http = parse(get(&["HTTP_PROXY", "http_proxy"]).or_else(|| all.clone()));
        let https = parse(get(&["HTTPS_PROXY", "https_proxy"]).or(all));
        let no_proxy = get(&["NO_PROXY", "no_proxy"])
            .map(|list| parse_no_proxy(&list))
            .unwrap_or_default();
        Proxies {
            http,
            https,
            no_proxy,
        }
    }

    /// The proxy a request to `target` goes through, or `None` for a direct connection.
    pub fn for_url(&self, target: &Url) -> Option<&Url> {
        let proxy = match target.scheme() {
            "http" => self.http.as_ref(),
            "https" => self.https.as_ref(),
            _ => None,
        }?;
        let host = target.host()?;
        let excepted = self.no_proxy.iter().any(|entry| match (entry, &host) {
            (NoProxyEntry::All, _) => true,
            (NoProxyEntry::Net(net), url::Host::Ipv4(ip)) => net.contains(&IpAddr::V4(*ip)),
            (NoProxyEntry::Net(net), url::Host::Ipv6(ip)) => net.contains(&IpAddr::V6(*ip)),
            (NoProxyEntry::Domain(domain), url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == *domain || name.ends_with(&format!(".{domain}"))
            }
            _ => false,
        });
        (!excepted).then_some(proxy)
    }

    /// The proxies' host names, which the resolver must not refuse.
    pub fn hosts(&self) -> Vec<String> {
        [&self.http, &self.https]
            .into_iter()
            .flatten()
            .filter_map(|u| u.host_str().map(str::to_owned))
            .collect()
    }
}

fn parse_no_proxy(list: &str) -> Vec<NoProxyEntry> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            if entry == "*" {
                return NoProxyEntry::All;
            }
            if let Ok(net) = entry.parse::<IpNet>() {
                return NoProxyEntry::Net(net);
            }
            let bare = entry.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>() {
                return NoProxyEntry::Net(IpNet::from(ip));
            }
            // `host:port` entries match the host on any port.
            let host = match entry.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => host,
                _ => entry,
            };
            NoProxyEntry::Domain(
                host.trim_start_matches("*.")
                    .trim_start_matches('.')
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            )
        })
        .collect()
}

/// Why a proxied target was not handed to its proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxiedTargetError {
    /// It resolves to an internal address (permanent).
    #[error(transparent)]
    Refused(#[from] RefusedTarget),
    /// It cannot be resolved here, so it cannot be screened (retried: DNS may come back).
    #[error("cannot resolve `{host}` to check it before sending through the proxy: {source}")]
    Unresolved {
        /// The host.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
}

/// Resolves a proxied target's host and refuses it if *any* of its addresses is internal:
/// the proxy resolves the name again and may pick any of them. (An IP-literal host was
/// screened when its URL was first parsed.)
pub async fn screen_proxied(target: &Url) -> Result<(), ProxiedTargetError> {
    let Some(url::Host::Domain(host)) = target.host() else {
        return Ok(());
    };
    let port = target.port_or_known_default().unwrap_or(80);
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ProxiedTargetError::Unresolved {
            host: host.to_owned(),
            source,
        })?;
    for addr in found {
        check_literal(host, addr.ip(), false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn internal_ranges_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!public(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "172.32.0.1",
        ] {
            assert!(public(ip), "{ip} should pass");
        }
    }

    #[test]
    fn allow_private_lets_everything_through() {
        let ip = "127.0.0.1".parse().unwrap();
        assert!(check_literal("127.0.0.1", ip, true).is_ok());
        let err = check_literal("127.0.0.1", ip, false).unwrap_err();
        assert!(err.to_string().contains("allow_private_targets"));
    }

    fn proxies(vars: &[(&str, &str)]) -> Proxies {
        Proxies::from_env(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn via<'p>(p: &'p Proxies, target: &str) -> Option<&'p str> {
        p.for_url(&Url::parse(target).unwrap()).map(Url::as_str)
    }

    #[test]
    fn proxies_follow_the_usual_variables_and_no_proxy() {
        let p = proxies(&[
            ("HTTP_PROXY", "http://proxy.corp:3128"),
            ("all_proxy", "socks5://all:1080"),
            (
                "NO_PROXY",
                "internal.corp, .svc,10.0.0.0/8,[::1],example.org:8443",
            ),
        ]);
        assert_eq!(via(&p, "http://a.test/x"), Some("http://proxy.corp:3128/"));
        assert_eq!(via(&p, "https://a.test/x"), Some("socks5://all:1080"));
        assert_eq!(via(&p, "http://internal.corp/"), None);
        assert_eq!(via(&p, "http://db.internal.corp/"), None);
        assert_eq!(via(&p, "http://x.svc/"), None);
        assert_eq!(via(&p, "http://10.1.2.3/"), None);
        assert_eq!(via(&p, "http://[::1]/"), None);
        assert_eq!(via(&p, "http://example.org/"), None);
        assert!(via(&p, "http://notinternal.corp/").is_some());
        assert!(via(&p, "http://169.254.169.254/").is_some());
        assert!(proxies(&[("NO_PROXY", "*"), ("HTTP_PROXY", "p:1")])
            .for_url(&Url::parse("http://a.test").unwrap())
            .is_none());
        assert_eq!(p.hosts(), vec!["proxy.corp".to_string(), "all".to_string()]);
        assert!(proxies(&[])
            .for_url(&Url::parse("http://a.test").unwrap())
            .is_none());
    }

    #[tokio::test]
    async fn a_proxied_target_is_screened_before_the_proxy_sees_it() {
        let refused = screen_proxied(&Url::parse("http://localhost:8080/hook").unwrap()).await;
        assert!(
            matches!(refused, Err(ProxiedTargetError::Refused(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_localhost() {
        let resolver = GuardedResolver::default();
        let name: Name = "localhost".parse().unwrap();
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(err.downcast_ref::<RefusedTarget>().is_some());
    }
}
