//! Network addresses: CIDR ranges (`trusted_proxies`) and the client's address as a trusted
//! proxy's forwarding header gives it. The client's IP address for limits, audit and logs is the
//! socket peer, unless the peer is a configured trusted proxy, in which case the nearest
//! untrusted hop of the one header the operator's proxy sets (`client_ip_header`,
//! `X-Forwarded-For` by default), read from the right. Headers from untrusted peers are ignored
//! (anyone can send them), and so is every other forwarding header: most proxies pass a client's
//! own `Forwarded` through untouched, so reading it would let any client pick its address.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// `10.0.0.0/8`, `192.168.1.7`, `2001:db8::/32`.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
        None => max,
    };
    Ok(IpNet { addr, prefix })
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What per-address limits count (rate limits, sign-in throttling, the registration cap): an IPv4
/// address, or the IPv6 network of `ipv6_prefix_length` bits (64 by default) that an address is
/// in. One subscriber is usually given a whole /64 (RFC 6177), so counting single IPv6 addresses
/// would give one client 2^64 budgets. IPv4-mapped IPv6 addresses count as their IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressKey {
    network: IpAddr,
    prefix: u8,
}

impl AddressKey {
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> AddressKey {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey { network: IpAddr::V4(v4), prefix: 32 },
                None => {
                    let prefix = ipv6_prefix.min(128);
                    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
                    AddressKey { network: IpAddr::V6((u128::from(v6) & mask).into()), prefix }
                }
            },
            v4 => AddressKey { network: v4, prefix: 32 },
        }
    }
}

/// `192.0.2.7`, `2001:db8:1:2::/64` (a single IPv6 address is written without a prefix).
impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.network {
            IpAddr::V6(_) if self.prefix < 128 => write!(f, "{}/{}", self.network, self.prefix),
            network => write!(f, "{network}"),
        }
    }
}

/// The header a trusted proxy sets with the client's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// RFC 7239 `Forwarded`, its `for=` parameters.
    Forwarded,
    /// A comma-separated list of addresses (`X-Forwarded-For`), or one (`X-Real-IP`,
    /// `CF-Connecting-IP`).
    List(http::HeaderName),
}

impl ForwardedHeader {
    /// A header name, as configured (`client_ip_header`).
    pub fn parse(name: &str) -> Result<ForwardedHeader, String> {
        if name.trim().eq_ignore_ascii_case("forwarded") {
            return Ok(ForwardedHeader::Forwarded);
        }
        http::HeaderName::from_bytes(name.trim().as_bytes())
            .map(ForwardedHeader::List)
            .map_err(|_| format!("expected a header name like \"X-Forwarded-For\", found {name:?}"))
    }
}

impl Default for ForwardedHeader {
    fn default() -> Self {
        ForwardedHeader::List(http::HeaderName::from_static("x-forwarded-for"))
    }
}

/// The hops a request passed through according to `header`, nearest last.
fn forwarded_chain(headers: &HeaderMap, header: &ForwardedHeader) -> Vec<IpAddr> {
    match header {
        ForwardedHeader::Forwarded => headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_node(v.trim().trim_matches('"')))?
                })
            })
            .collect(),
        ForwardedHeader::List(name) => headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|v| parse_node(v.trim()))
            .collect(),
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[').and_then(|r| r.split(']').next()).and_then(|ip| ip.parse().ok())
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet], header: &ForwardedHeader) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers, header);
    chain.iter().rev().copied().find(|ip| !is_trusted(*ip)).or_else(|| chain.first().copied()).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn nets() {
        assert!(parse_net("10.0.0.0/8").unwrap().contains("10.1.2.3".parse().unwrap()));
        assert!(!parse_net("10.0.0.0/8").unwrap().contains("11.0.0.1".parse().unwrap()));
        assert!(parse_net("192.168.1.7").unwrap().contains("::ffff:192.168.1.7".parse().unwrap()));
        assert!(parse_net("2001:db8::/32").unwrap().contains("2001:db8::5".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("nope").is_err());
    }

    #[test]
    fn only_trusted_peers_may_forward() {
        let trusted = [parse_net("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        let xff = ForwardedHeader::default();
        let h = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.5, 10.0.0.3")]);
        assert_eq!(
            client_ip(peer, &h, &trusted, &xff),
            "203.0.113.5".parse::<IpAddr>().unwrap(),
            "nearest untrusted hop"
        );
        assert_eq!(client_ip(outsider, &h, &trusted, &xff), outsider, "an untrusted peer's header is ignored");
        let f = headers(&[("forwarded", "for=198.51.100.1;proto=https, for=\"[2001:db8::7]:443\"")]);
        let forwarded = ForwardedHeader::parse("Forwarded").unwrap();
        assert_eq!(client_ip(peer, &f, &trusted, &forwarded), "2001:db8::7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted, &xff), peer);
    }

    #[test]
    fn ipv6_counts_by_network() {
        let key = |s: &str, p| AddressKey::new(s.parse().unwrap(), p);
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), key("2001:db8:1:2:bbbb::2", 64), "one /64");
        assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64), "the next /64");
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64).to_string(), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1", 128), key("2001:db8:1:2::2", 128), "per address when configured");
        assert_eq!(key("2001:db8:1:2::1", 128).to_string(), "2001:db8:1:2::1");
        assert_eq!(key("2001:db8:1:ff::1", 56), key("2001:db8:1:2::1", 56));
        assert_ne!(key("192.0.2.1", 64), key("192.0.2.2", 64), "IPv4 is per address");
        assert_eq!(key("::ffff:192.0.2.1", 64), key("192.0.2.1", 64), "mapped IPv4 is IPv4");
        assert_eq!(key("::ffff:192.0.2.1", 64).to_string(), "192.0.2.1");
    }

    /// Most proxies pass a client's own `Forwarded` through and append to `X-Forwarded-For`:
    /// only the configured header counts, so the client cannot choose its address.
    #[test]
    fn a_client_sent_header_other_than_the_configured_one_is_ignored() {
        let trusted = [parse_net("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let h = headers(&[("forwarded", "for=192.0.2.66"), ("x-forwarded-for", "192.0.2.66, 203.0.113.5")]);
        assert_eq!(
            client_ip(peer, &h, &trusted, &ForwardedHeader::default()),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        let real_ip = ForwardedHeader::parse("X-Real-IP").unwrap();
        let h = headers(&[("x-forwarded-for", "192.0.2.66"), ("x-real-ip", "203.0.113.5")]);
        assert_eq!(client_ip(peer, &h, &trusted, &real_ip), "203.0.113.5".parse::<IpAddr>().unwrap());
        assert!(ForwardedHeader::parse("not a header").is_err());
    }
}
