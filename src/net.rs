//! Network addresses: CIDR ranges (`trusted_proxies`) and the client's address as a trusted
//! proxy's forwarding headers give it. The client's IP address for limits, audit and logs is the
//! socket peer, unless the peer is a configured trusted proxy, in which case the nearest
//! untrusted hop of `Forwarded` or `X-Forwarded-For`. Headers from untrusted peers are ignored
//! (anyone can send them).

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

/// The hops a request passed through, nearest last: `Forwarded` (RFC 7239 `for=`) when present,
/// else `X-Forwarded-For`.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<IpAddr> = headers
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
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| parse_node(v.trim()))
        .collect()
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

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
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
        let h = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.5, 10.0.0.3")]);
        assert_eq!(client_ip(peer, &h, &trusted), "203.0.113.5".parse::<IpAddr>().unwrap(), "nearest untrusted hop");
        assert_eq!(client_ip(outsider, &h, &trusted), outsider, "an untrusted peer's header is ignored");
        let f = headers(&[("forwarded", "for=198.51.100.1;proto=https, for=\"[2001:db8::7]:443\"")]);
        assert_eq!(client_ip(peer, &f, &trusted), "2001:db8::7".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
    }
}
