//! rtnetlink requests the agent makes (`rtnl_wire` for the wire format, `sys::rtnl` for
//! the socket): list links and addresses, bring a link up, set its MTU, add addresses and
//! routes. Every change is idempotent (an address or route that is
//! already there is success), so running `net up` twice changes nothing.

use super::rtnl_wire::{self as wire, Answer, Request, RouteProtocol};
use crate::sys::rtnl::RouteSocket;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// A failed rtnetlink request: what was asked and why it failed.
#[derive(Debug)]
pub struct NetlinkError {
    /// What was asked ("add 10.0.0.5/24 to eth0").
    pub request: String,
    /// The kernel's errno, when it answered with one.
    pub errno: Option<i32>,
    /// Description.
    pub detail: String,
}

impl std::fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "netlink: {}: {}", self.request, self.detail)
    }
}

impl std::error::Error for NetlinkError {}

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, for Ethernet-like links.
    pub mac: Option<[u8; 6]>,
    /// Administratively up.
    pub up: bool,
    /// Carrier present (IFF_LOWER_UP).
    pub carrier: bool,
    /// The driver kind of a virtual link (`veth`, `bridge`, …); `None` for a device.
    pub kind: Option<String>,
    /// The index of the bridge or bond this link is enslaved to.
    pub master: Option<u32>,
    /// Loopback.
    pub loopback: bool,
    /// Ethernet (ARPHRD_ETHER).
    pub ethernet: bool,
    /// MTU.
    pub mtu: Option<u32>,
}

/// An address on a link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Address {
    /// Link index.
    pub index: u32,
    /// The address.
    pub address: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Routable: universe or site scope (not link-local or host; QEMU's SLAAC prefix is
    /// the old site-local `fec0::/64`).
    pub global: bool,
}

/// An rtnetlink socket.
pub struct Rtnl {
    socket: RouteSocket,
    sequence: u32,
}

/// The text form of a MAC address.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// How long a route request waits for the kernel's answer.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Rtnl {
    /// Opens a socket in the current network namespace.
    pub fn open() -> Result<Rtnl, NetlinkError> {
        let socket = RouteSocket::open().map_err(|e| NetlinkError {
            request: "open a route socket".into(),
            errno: e.raw_os_error(),
            detail: e.to_string(),
        })?;
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    /// Sends one request and collects the payloads of type `keep` until the ACK or the
    /// end of the dump. The kernel answers at once; an answer that takes longer than
    /// [`ANSWER_WITHIN`] is cut off rather than waited for.
    fn request(
        &mut self,
        what: &str,
        request: Request,
        keep: u16,
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        let fail = |errno: Option<i32>, detail: String| NetlinkError {
            request: what.to_string(),
            errno,
            detail,
        };
        let sequence = self.sequence;
        self.socket
            .send(&request.finish())
            .map_err(|e| fail(e.raw_os_error(), e.to_string()))?;
        let deadline = Instant::now() + ANSWER_WITHIN;
        let mut kept = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let within = ANSWER_WITHIN.as_secs();
                return Err(fail(
                    None,
                    format!("no answer from the kernel within {within} s"),
                ));
            }
            let Some(size) = self
                .socket
                .receive(&mut buffer, left)
                .map_err(|e| fail(e.raw_os_error(), e.to_string()))?
            else {
                continue;
            };
            let answers = wire::answers(&buffer[..size])
                .map_err(|e| fail(None, format!("unreadable answer: {e}")))?;
            for (of, answer) in answers {
                if of != sequence {
                    continue;
                }
                match answer {
                    Answer::Done | Answer::Status(None) => return Ok(kept),
                    Answer::Status(Some(errno)) => {
                        let detail = std::io::Error::from_raw_os_error(errno).to_string();
                        return Err(fail(Some(errno), detail));
                    }
                    Answer::Message(kind, payload) if kind == keep => kept.push(payload.to_vec()),
                    Answer::Message(..) => {}
                }
            }
        }
    }

    /// Sends a change and waits for its acknowledgement.
    fn change(&mut self, what: &str, request: Request) -> Result<(), NetlinkError> {
        self.request(what, request, 0).map(drop)
    }

    /// Every link.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let what = "list links";
        let sequence = self.next_sequence();
        let request = Request::new(
            wire::RTM_GETLINK,
            wire::NLM_F_DUMP,
            sequence,
            &wire::ifinfomsg(0, 0, 0),
        );
        self.request(what, request, wire::RTM_NEWLINK)?
            .iter()
            .map(|payload| wire::link(payload).map_err(|e| unreadable(what, e)))
            .collect()
    }

    /// One link by name.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// A `RTM_SETLINK` request for `index` with `flags` in `change`.
    fn set_link(&mut self, index: u32, flags: u32, change: u32) -> Request {
        let sequence = self.next_sequence();
        let fixed = wire::ifinfomsg(index, flags, change);
        Request::new(wire::RTM_SETLINK, wire::NLM_F_ACK, sequence, &fixed)
    }

    /// Brings a link up.
    pub fn set_up(&mut self, link: &Link) -> Result<(), NetlinkError> {
        let request = self.set_link(link.index, wire::IFF_UP, wire::IFF_UP);
        self.change(&format!("bring {} up", link.name), request)
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, link: &Link, mtu: u32) -> Result<(), NetlinkError> {
        let mut request = self.set_link(link.index, 0, 0);
        request.u32(wire::IFLA_MTU, mtu);
        self.change(&format!("set the MTU of {} to {mtu}", link.name), request)
    }

    /// Creates a bridge named `name` with the hardware address `mac` (the NIC's, so the
    /// DHCP identity stays the one iPXE used) and MTU 1500; already there is success.
    pub fn add_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let sequence = self.next_sequence();
        let flags = wire::NLM_F_ACK | wire::NLM_F_CREATE | wire::NLM_F_EXCL;
        let mut request = Request::new(
            wire::RTM_NEWLINK,
            flags,
            sequence,
            &wire::ifinfomsg(0, 0, 0),
        );
        request
            .string(wire::IFLA_IFNAME, name)
            .attribute(wire::IFLA_ADDRESS, &mac)
            .u32(wire::IFLA_MTU, 1500)
            .nested(wire::IFLA_LINKINFO, |info| {
                info.string(wire::IFLA_INFO_KIND, "bridge");
            });
        match self.change(&format!("create bridge {name}"), request) {
            Err(e) if e.errno == Some(nix::libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Enslaves `link` to the bridge (or bond) `master`.
    pub fn set_master(&mut self, link: &Link, master: &Link) -> Result<(), NetlinkError> {
        let mut request = self.set_link(link.index, 0, 0);
        request.u32(wire::IFLA_MASTER, master.index);
        let what = format!("enslave {} to {}", link.name, master.name);
        self.change(&what, request)
    }

    /// Every address (both families).
    pub fn addresses(&mut self) -> Result<Vec<Address>, NetlinkError> {
        let what = "list addresses";
        let sequence = self.next_sequence();
        let request = Request::new(
            wire::RTM_GETADDR,
            wire::NLM_F_DUMP,
            sequence,
            &wire::ifaddrmsg(0, 0, 0, 0),
        );
        let mut out = Vec::new();
        for payload in self.request(what, request, wire::RTM_NEWADDR)? {
            out.extend(wire::address(&payload).map_err(|e| unreadable(what, e))?);
        }
        Ok(out)
    }

    /// An address request of `kind` naming `address/prefix_len` on `link`.
    fn address_request(
        &mut self,
        kind: u16,
        flags: u16,
        link: &Link,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Request {
        let sequence = self.next_sequence();
        let fixed = wire::ifaddrmsg(
            wire::AF_INET,
            prefix_len,
            wire::RT_SCOPE_UNIVERSE,
            link.index,
        );
        let mut request = Request::new(kind, flags, sequence, &fixed);
        request.attribute(wire::IFA_LOCAL, &address.octets());
        request
    }

    /// Adds an IPv4 address with its broadcast address; already there is success.
    pub fn add_address(
        &mut self,
        link: &Link,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let flags = wire::NLM_F_ACK | wire::NLM_F_CREATE;
        let mut request = self.address_request(wire::RTM_NEWADDR, flags, link, address, prefix_len);
        request.attribute(wire::IFA_ADDRESS, &address.octets());
        if prefix_len < 31 {
            let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
            request.attribute(wire::IFA_BROADCAST, &broadcast.octets());
        }
        let what = format!("add {address}/{prefix_len} to {}", link.name);
        match self.change(&what, request) {
            Err(e) if e.errno == Some(nix::libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Removes an IPv4 address from a link; not there is success.
    pub fn remove_address(
        &mut self,
        link: &Link,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let request = self.address_request(
            wire::RTM_DELADDR,
            wire::NLM_F_ACK,
            link,
            address,
            prefix_len,
        );
        let what = format!("remove {address}/{prefix_len} from {}", link.name);
        match self.change(&what, request) {
            Err(e) if e.errno == Some(nix::libc::EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    /// Adds (or replaces) an IPv4 route in the main table through `gateway` (on-link when
    /// `gateway` is 0.0.0.0) out of `link`, marked as set by DHCP or by boot.
    pub fn replace_route(
        &mut self,
        link: &Link,
        destination: Ipv4Addr,
        prefix_len: u8,
        gateway: Ipv4Addr,
        protocol: RouteProtocol,
    ) -> Result<(), NetlinkError> {
        let scope = if gateway.is_unspecified() {
            wire::RT_SCOPE_LINK
        } else {
            wire::RT_SCOPE_UNIVERSE
        };
        let sequence = self.next_sequence();
        let flags = wire::NLM_F_ACK | wire::NLM_F_CREATE | wire::NLM_F_REPLACE;
        let fixed = wire::rtmsg(prefix_len, protocol, scope);
        let mut request = Request::new(wire::RTM_NEWROUTE, flags, sequence, &fixed);
        if prefix_len > 0 {
            request.attribute(wire::RTA_DST, &destination.octets());
        }
        if !gateway.is_unspecified() {
            request.attribute(wire::RTA_GATEWAY, &gateway.octets());
        }
        request.u32(wire::RTA_OIF, link.index);
        let via = if gateway.is_unspecified() {
            String::new()
        } else {
            format!(" via {gateway}")
        };
        let what = format!("route {destination}/{prefix_len}{via} dev {}", link.name);
        self.change(&what, request)
    }
}

fn unreadable(what: &str, error: wire::WireError) -> NetlinkError {
    NetlinkError {
        request: what.to_string(),
        errno: None,
        detail: format!("unreadable answer: {error}"),
    }
}
