//! Client networks: an account's allowed networks and the cluster-wide
//! deny list, as CIDR lists (`10.0.0.0/8`, `2001:db8::/32`, or a single
//! address), and the check of a client address against them.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::FerryError;

/// The setting (`Command::SetSetting`) holding the deny list, CIDRs
/// separated by commas.
pub const DENY_NETWORKS_SETTING: &str = "deny_networks";

/// Parses networks separated by commas or whitespace; a bare address is a
/// network of one. The answer is canonical (`10.1.2.3/8` is `10.0.0.0/8`).
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, FerryError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse::<IpNet>()
                .or_else(|_| w.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    FerryError::invalid(format!("{w:?} is not a network (CIDR) or address"))
                })
        })
        .collect()
}

/// The networks as stored: canonical, separated by commas.
pub fn format_networks(networks: &[IpNet]) -> String {
    networks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The IP address of a client address as sessions carry it (`IP:PORT`, or
/// a bare IP); an IPv4 address mapped into IPv6 is the IPv4 address.
pub fn client_ip(client_addr: &str) -> Option<IpAddr> {
    let ip = client_addr
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| client_addr.parse::<IpAddr>())
        .ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// Whether `ip` is inside one of `networks`.
pub fn contains(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_canonical_and_refuse_garbage() {
        let n = parse_networks("10.1.2.3/8, 192.0.2.7 2001:db8::1/32").unwrap();
        assert_eq!(format_networks(&n), "10.0.0.0/8,192.0.2.7/32,2001:db8::/32");
        assert!(parse_networks("").unwrap().is_empty());
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("example.com").is_err());
    }

    #[test]
    fn client_addresses_match_with_mapped_ipv4() {
        let n = parse_networks("192.0.2.0/24,2001:db8::/32").unwrap();
        for (addr, inside) in [
            ("192.0.2.9:5555", true),
            ("[::ffff:192.0.2.9]:22", true),
            ("198.51.100.1:22", false),
            ("[2001:db8::5]:40000", true),
            ("127.0.0.1", false),
        ] {
            let ip = client_ip(addr).unwrap();
            assert_eq!(contains(&n, ip), inside, "{addr}");
        }
        assert!(client_ip("edge-1").is_none());
    }
}
