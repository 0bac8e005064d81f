//! The client's address: the TCP peer, or, when the peer is a proxy the operator trusts
//! (`--trusted-proxies`), the address that proxy says it forwarded for.
//!
//! `X-Forwarded-For` is read from the right: each proxy appends the address it received the
//! request from, so the rightmost entries were written by the operator's own proxies and the
//! first untrusted one (from the right) is the client. Entries left of it were written by the
//! client itself and are never believed. A header that cannot be read gives the peer's
//! address, the only one known to be true.

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// An entry of `--trusted-proxies` that is neither an address nor a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or network (e.g. 10.0.0.0/8, 127.0.0.1)")]
pub struct BadProxy(pub String);

/// The networks whose requests may say whom they forward for. Empty: believe no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From `10.0.0.0/8`, `127.0.0.1` (a single address), `::1`, ...
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<TrustedProxies, BadProxy> {
        items
            .iter()
            .map(|s| s.as_ref().trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxy(s.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An IPv4 address a dual-stack socket reports as `::ffff:a.b.c.d`, as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address for a request from `peer` with these headers.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.trusts(peer) {
        return peer;
    }
    // Every X-Forwarded-For header, in order, as one list.
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        hops.extend(text.split(',').map(str::trim));
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = canonical(ip);
        if !trusted.trusts(client) {
            return client;
        }
    }
    // Every hop trusted: the leftmost is as far as is known.
    client
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]:443`, `1.2.3.4:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_untrusted_address_from_the_right_is_the_client() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1"]).unwrap();
        let lb = ip("10.1.2.3");
        // The client claims to be 1.1.1.1; its real address was appended by our proxy.
        let h = headers(&["1.1.1.1, 203.0.113.7", "10.9.9.9"]);
        assert_eq!(client_ip(lb, &h, &trusted), ip("203.0.113.7"));
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        // No trusted proxies: the peer, always.
        assert_eq!(client_ip(lb, &h, &TrustedProxies::default()), lb);
        // Garbage stops the walk at the last address known.
        assert_eq!(
            client_ip(lb, &headers(&["nonsense, 10.2.2.2"]), &trusted),
            ip("10.2.2.2")
        );
        // Ports and brackets, and IPv4 in IPv6.
        assert_eq!(
            client_ip(
                ip("::ffff:127.0.0.1"),
                &headers(&["[2001:db8::5]:443"]),
                &trusted
            ),
            ip("2001:db8::5")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
    }
}
