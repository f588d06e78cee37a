//! SSRF guard: which addresses a webhook may reach, checked when connecting (DNS can change
//! between subscription and send, so a check at subscription time alone is not enough).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

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
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Allow every address (`webhook.allow_private_targets`).
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
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

    #[tokio::test]
    async fn the_resolver_refuses_localhost() {
        let resolver = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(err.downcast_ref::<RefusedTarget>().is_some());
    }
}
