//! Which addresses an outbound fetch may reach, and the resolver that pins a connection to the
//! addresses it checked (so DNS rebinding between check and connect is impossible).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::FetchError;

/// Which addresses a fetcher may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Public addresses only: URLs that came from clients.
    Public,
    /// TEST ONLY: public addresses and loopback.
    PublicAndLoopback,
    /// Any address: a party the operator named and placed on a private network (an
    /// on-premises identity provider). Never for URLs that came from clients.
    Any,
}

pub(super) fn check_address(ip: IpAddr, reach: Reach) -> Result<(), FetchError> {
    match reach {
        Reach::Any => return Ok(()),
        Reach::PublicAndLoopback if ip.is_loopback() => return Ok(()),
        _ => {}
    }
    if is_special_use(ip) {
        return Err(FetchError::ForbiddenAddress(ip));
    }
    Ok(())
}

/// Resolves a name once and returns exactly the addresses it checked, or refuses them all.
pub(super) struct GuardedResolver {
    pub(super) reach: Reach,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let reach = self.reach;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // `?` boxes the FetchError itself, so callers can find it again by downcasting.
            let addrs = resolve_checked(&host, reach).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(super) async fn resolve_checked(host: &str, reach: Reach) -> Result<Vec<SocketAddr>, FetchError> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, 0)).await.map_err(|e| FetchError::Resolve(e.to_string()))?.collect();
    if addrs.is_empty() {
        return Err(FetchError::NoAddress);
    }
    // A name with one forbidden address is hostile: refuse it, don't filter.
    for addr in &addrs {
        check_address(addr.ip(), reach)?;
    }
    Ok(addrs)
}

/// Special-use addresses (RFC 6890 and successors) that are never fetched.
///
/// IPv4: 0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16 (link-local, cloud metadata), 172.16/12,
/// 192.0.0/24, 192.0.2/24, 192.88.99/24 (6to4 relay anycast), 192.168/16, 198.18/15, 198.51.100/24,
/// 203.0.113/24, 224/4 (multicast), 240/4 (reserved, with 255.255.255.255).
///
/// IPv6: everything outside global unicast 2000::/3 (so ::, ::1, the IPv4-compatible ::/96, 100::/64,
/// fc00::/7, fe80::/10, fec0::/10, ff00::/8 and the unallocated rest), except two forms that embed an
/// IPv4 address and are judged by it: IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96. Inside
/// 2000::/3: 2001::/23 (IETF protocol assignments: Teredo, benchmarking, ORCHID…), 2001:db8::/32 and
/// 3fff::/20 (documentation). 6to4 2002::/16 is judged by its embedded IPv4 address. The NAT64
/// local-use prefix 64:ff9b:1::/48 and SRv6 5f00::/16 lie outside 2000::/3 and are refused.
pub fn is_special_use(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_special_v4(ip),
        IpAddr::V6(ip) => is_special_v6(ip),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    const NETS: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", including 0.0.0.0
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, including 169.254.169.254
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // TEST-NET-1
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // TEST-NET-2
        ([203, 0, 113, 0], 24),  // TEST-NET-3
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, including broadcast 255.255.255.255
    ];
    NETS.iter().any(|&(net, prefix)| in_v4(ip, net, prefix))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn embedded_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from(u128::from(ip) as u32)
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    // IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96: the IPv4 address inside decides.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return is_special_v4(embedded_v4(ip));
    }
    // Only global unicast is ever fetched.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return true;
    }
    // 6to4: the IPv4 address is in bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return is_special_v4(Ipv4Addr::from((u128::from(ip) >> 80) as u32));
    }
    const NETS: &[([u16; 8], u32)] = &[
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments (Teredo, benchmarking, ORCHID)
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation (RFC 9637)
    ];
    NETS.iter().any(|&(net, prefix)| in_v6(ip, net, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_use_addresses_are_refused() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "fec0::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
        ] {
            assert!(is_special_use(ip(s)), "{s} must be special-use");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::1",
        ] {
            assert!(!is_special_use(ip(s)), "{s} must not be special-use");
        }
    }

    #[test]
    fn loopback_switch_exempts_only_loopback() {
        assert!(check_address(ip("127.0.0.1"), Reach::PublicAndLoopback).is_ok());
        assert!(check_address(ip("127.8.9.10"), Reach::PublicAndLoopback).is_ok());
        assert!(check_address(ip("::1"), Reach::PublicAndLoopback).is_ok());
        assert_eq!(check_address(ip("127.0.0.1"), Reach::Public), Err(FetchError::ForbiddenAddress(ip("127.0.0.1"))));
        for s in ["10.0.0.1", "169.254.169.254", "0.0.0.0", "::", "::ffff:127.0.0.1", "fe80::1"] {
            assert!(check_address(ip(s), Reach::PublicAndLoopback).is_err(), "{s} must stay forbidden");
        }
    }
}
