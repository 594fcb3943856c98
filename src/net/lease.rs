//! A DHCPv4 lease as the agent keeps it (read from an ACK, written to
//! `/run/initagent/net/<link>.json` for the service that renews it), and the zos rule for
//! choosing one link among several that got a lease. Pure.

use super::dhcp_wire::{DhcpOption, Message, OptionCode};
use super::ipconfig::{class_prefix, prefix_of};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// A route from option 121 (or the default route from option 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination network.
    pub destination: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Next hop; `0.0.0.0` for an on-link route.
    pub gateway: Ipv4Addr,
}

impl Route {
    /// The default route through `gateway`.
    pub fn default_via(gateway: Ipv4Addr) -> Route {
        Route {
            destination: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway,
        }
    }
}

/// What an ACK granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Our address.
    pub address: Ipv4Addr,
    /// Its prefix length (option 1, or the class default when the server sent none).
    pub prefix_len: u8,
    /// The server that granted it (option 54).
    pub server: Ipv4Addr,
    /// The client identifier the lease is bound to (option 61 as sent), in hex.
    pub client_id: String,
    /// The default gateway: from option 121's default route when present (RFC 3442 says
    /// option 3 is then ignored), else the first router of option 3.
    pub gateway: Option<Ipv4Addr>,
    /// Routes to install (option 121, or the default route through `gateway`).
    pub routes: Vec<Route>,
    /// Name servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Search domain (option 15).
    pub domain: Option<String>,
    /// Host name the server gave (option 12).
    pub hostname: Option<String>,
    /// Link MTU (option 26), when sane (68 ..= 65535).
    pub mtu: Option<u16>,
    /// Lease time in seconds (option 51); `None` for an infinite lease.
    pub lease_time_s: Option<u32>,
    /// Renewal time T1 in seconds (option 58, default half the lease).
    pub renew_s: Option<u32>,
    /// Rebinding time T2 in seconds (option 59, default 7/8 of the lease).
    pub rebind_s: Option<u32>,
}

impl Lease {
    /// The lease an ACK grants; `server` is the one the REQUEST named.
    pub fn from_ack(ack: &Message, server: Ipv4Addr, client_id: Vec<u8>) -> Lease {
        let options = ack.opts();
        let address = ack.yiaddr();
        let prefix_len = match options.get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(mask)) => {
                prefix_of(*mask).unwrap_or_else(|| class_prefix(address))
            }
            _ => class_prefix(address),
        };
        let classless: Vec<Route> = match options.get(OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(routes)) => routes
                .iter()
                .map(|(net, gateway)| Route {
                    destination: net.network(),
                    prefix_len: net.prefix_len(),
                    gateway: *gateway,
                })
                .collect(),
            _ => Vec::new(),
        };
        let router = match options.get(OptionCode::Router) {
            Some(DhcpOption::Router(routers)) => routers.first().copied(),
            _ => None,
        };
        let (gateway, routes) = if classless.is_empty() {
            let routes = router.map(Route::default_via).into_iter().collect();
            (router, routes)
        } else {
            let default = classless
                .iter()
                .find(|r| r.prefix_len == 0 && !r.gateway.is_unspecified())
                .map(|r| r.gateway);
            (default, classless)
        };
        let text = |code: OptionCode| match options.get(code) {
            Some(DhcpOption::DomainName(name) | DhcpOption::Hostname(name)) => {
                Some(name.trim_end_matches('\0').to_string()).filter(|n| !n.is_empty())
            }
            _ => None,
        };
        let seconds = |code: OptionCode| match options.get(code) {
            Some(
                DhcpOption::AddressLeaseTime(s) | DhcpOption::Renewal(s) | DhcpOption::Rebinding(s),
            ) => Some(*s),
            _ => None,
        };
        let lease_time_s = seconds(OptionCode::AddressLeaseTime).filter(|&s| s != u32::MAX);
        let server = match options.get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(id)) => *id,
            _ => server,
        };
        Lease {
            address,
            prefix_len,
            server,
            client_id: client_id.iter().map(|b| format!("{b:02x}")).collect(),
            gateway,
            routes,
            dns: match options.get(OptionCode::DomainNameServer) {
                Some(DhcpOption::DomainNameServer(servers)) => servers.clone(),
                _ => Vec::new(),
            },
            domain: text(OptionCode::DomainName),
            hostname: text(OptionCode::Hostname),
            mtu: match options.get(OptionCode::InterfaceMtu) {
                Some(DhcpOption::InterfaceMtu(mtu)) if *mtu >= 68 => Some(*mtu),
                _ => None,
            },
            lease_time_s,
            renew_s: seconds(OptionCode::Renewal).or(lease_time_s.map(|t| t / 2)),
            rebind_s: seconds(OptionCode::Rebinding)
                .or(lease_time_s.map(|t| (u64::from(t) * 7 / 8) as u32)),
        }
    }
}

/// True for gateways zos prefers: RFC 1918 private and link-local addresses.
pub fn is_private_gateway(gateway: Ipv4Addr) -> bool {
    gateway.is_private() || gateway.is_link_local()
}

/// The zos choice among leases (one per link, in any order): only leases with a gateway;
/// a private or link-local gateway before any other; then the lowest address. Returns the
/// index of the chosen lease.
pub fn choose(leases: &[&Lease]) -> Option<usize> {
    leases
        .iter()
        .enumerate()
        .filter_map(|(i, lease)| lease.gateway.map(|gateway| (i, gateway, lease.address)))
        .min_by_key(|&(_, gateway, address)| (!is_private_gateway(gateway), u32::from(address)))
        .map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(address: &str, gateway: Option<&str>) -> Lease {
        Lease {
            address: address.parse().unwrap(),
            prefix_len: 24,
            server: Ipv4Addr::new(10, 0, 0, 1),
            client_id: "01".into(),
            gateway: gateway.map(|g| g.parse().unwrap()),
            routes: Vec::new(),
            dns: Vec::new(),
            domain: None,
            hostname: None,
            mtu: None,
            lease_time_s: Some(3600),
            renew_s: Some(1800),
            rebind_s: Some(3150),
        }
    }

    #[test]
    fn private_gateway_wins_then_lowest_address() {
        let public = lease("10.0.0.5", Some("185.69.166.1"));
        let private = lease("10.0.0.9", Some("192.168.1.1"));
        let link_local = lease("10.0.0.7", Some("169.254.0.1"));
        let none = lease("10.0.0.1", None);
        assert_eq!(choose(&[&public, &private]), Some(1));
        assert_eq!(choose(&[&private, &public]), Some(0));
        assert_eq!(choose(&[&public, &private, &link_local]), Some(2));
        assert_eq!(choose(&[&none, &public]), Some(1), "no gateway, no choice");
        assert_eq!(choose(&[&none]), None);
        assert_eq!(choose(&[]), None);
        let public_low = lease("10.0.0.2", Some("185.69.166.1"));
        assert_eq!(choose(&[&public, &public_low]), Some(1));
    }

    #[test]
    fn lease_round_trips_through_json() {
        let lease = lease("10.0.0.5", Some("10.0.0.1"));
        let text = serde_json::to_string(&lease).unwrap();
        assert_eq!(serde_json::from_str::<Lease>(&text).unwrap(), lease);
    }
}
