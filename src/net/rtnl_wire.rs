//! The rtnetlink wire format, for the few requests the agent makes: building a request
//! (netlink header, the family's fixed header, attributes, nested attributes) and reading
//! the kernel's answers (links, addresses, errors, the end of a dump). Pure: no I/O.
//!
//! Written here rather than taken from a crate: a general rtnetlink crate parses every
//! link kind, traffic-control filter and SR-IOV table the kernel can describe, which was
//! 380 KB of the static binary for the nine message types used here.

use super::netlink::{Address, Link};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `NLMSG_ERROR`: an error, or the acknowledgement of a request (error 0).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `RTM_NEWLINK`.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK`.
pub const RTM_GETLINK: u16 = 18;
/// `RTM_SETLINK`.
pub const RTM_SETLINK: u16 = 19;
/// `RTM_NEWADDR`.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_DELADDR`.
pub const RTM_DELADDR: u16 = 21;
/// `RTM_GETADDR`.
pub const RTM_GETADDR: u16 = 22;
/// `RTM_NEWROUTE`.
pub const RTM_NEWROUTE: u16 = 24;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_REPLACE`.
pub const NLM_F_REPLACE: u16 = 0x100;
/// `NLM_F_EXCL`.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`.
pub const NLM_F_CREATE: u16 = 0x400;

/// `IFLA_ADDRESS`.
pub const IFLA_ADDRESS: u16 = 1;
/// `IFLA_IFNAME`.
pub const IFLA_IFNAME: u16 = 3;
/// `IFLA_MTU`.
pub const IFLA_MTU: u16 = 4;
/// `IFLA_MASTER`.
pub const IFLA_MASTER: u16 = 10;
/// `IFLA_LINKINFO` (nested).
pub const IFLA_LINKINFO: u16 = 18;
/// `IFLA_INFO_KIND`, inside `IFLA_LINKINFO`.
pub const IFLA_INFO_KIND: u16 = 1;
/// `IFA_ADDRESS`.
pub const IFA_ADDRESS: u16 = 1;
/// `IFA_LOCAL`.
pub const IFA_LOCAL: u16 = 2;
/// `IFA_BROADCAST`.
pub const IFA_BROADCAST: u16 = 4;
/// `RTA_DST`.
pub const RTA_DST: u16 = 1;
/// `RTA_OIF`.
pub const RTA_OIF: u16 = 4;
/// `RTA_GATEWAY`.
pub const RTA_GATEWAY: u16 = 5;

/// `IFF_UP`.
pub const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_LOWER_UP: u32 = 0x1_0000;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
/// `AF_INET`.
pub const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u8 = 254;
/// `RT_SCOPE_UNIVERSE`.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_SITE: u8 = 200;
/// `RT_SCOPE_LINK`.
pub const RT_SCOPE_LINK: u8 = 253;
/// `RTN_UNICAST`.
pub const RTN_UNICAST: u8 = 1;

/// The netlink header's size; every message and attribute is aligned to 4 bytes.
const HEADER: usize = 16;
/// The attribute type without the nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Who set a route (`RTPROT_*`), as `ip route` shows it after `proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteProtocol {
    /// `RTPROT_BOOT` (3): the kernel command line's `ip=`.
    Boot,
    /// `RTPROT_DHCP` (16).
    Dhcp,
}

impl RouteProtocol {
    /// The kernel's number for it.
    pub fn code(self) -> u8 {
        match self {
            RouteProtocol::Boot => 3,
            RouteProtocol::Dhcp => 16,
        }
    }
}

/// An answer that is not a well-formed netlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One request being built.
pub struct Request {
    bytes: Vec<u8>,
}

impl Request {
    /// A request of `kind` with `flags` (`NLM_F_REQUEST` is added) and sequence number
    /// `sequence`, followed by the family's fixed header `fixed`.
    pub fn new(kind: u16, flags: u16, sequence: u32, fixed: &[u8]) -> Request {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        bytes.extend_from_slice(&sequence.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        let mut request = Request { bytes };
        request.bytes.extend_from_slice(fixed);
        request.pad();
        request
    }

    fn pad(&mut self) {
        self.bytes.resize(align(self.bytes.len()), 0);
    }

    /// Adds an attribute.
    pub fn attribute(&mut self, kind: u16, payload: &[u8]) -> &mut Request {
        let length = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&length.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(payload);
        self.pad();
        self
    }

    /// Adds a string attribute (NUL-terminated, as the kernel expects).
    pub fn string(&mut self, kind: u16, text: &str) -> &mut Request {
        let mut payload = text.as_bytes().to_vec();
        payload.push(0);
        self.attribute(kind, &payload)
    }

    /// Adds a 32-bit attribute.
    pub fn u32(&mut self, kind: u16, value: u32) -> &mut Request {
        self.attribute(kind, &value.to_ne_bytes())
    }

    /// Adds a nested attribute holding what `inner` adds.
    pub fn nested(&mut self, kind: u16, inner: impl FnOnce(&mut Request)) -> &mut Request {
        let start = self.bytes.len();
        self.attribute(kind, &[]);
        inner(self);
        let length = u16::try_from(self.bytes.len() - start).unwrap_or(u16::MAX);
        self.bytes[start..start + 2].copy_from_slice(&length.to_ne_bytes());
        self
    }

    /// The finished message.
    pub fn finish(mut self) -> Vec<u8> {
        let length = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.bytes[..4].copy_from_slice(&length.to_ne_bytes());
        self.bytes
    }
}

/// `struct ifinfomsg`: family, type, index, flags, change mask.
pub fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[4..8].copy_from_slice(&index.to_ne_bytes());
    out[8..12].copy_from_slice(&flags.to_ne_bytes());
    out[12..16].copy_from_slice(&change.to_ne_bytes());
    out
}

/// `struct ifaddrmsg`: family, prefix length, flags, scope, index.
pub fn ifaddrmsg(family: u8, prefix_len: u8, scope: u8, index: u32) -> [u8; 8] {
    let mut out = [family, prefix_len, 0, scope, 0, 0, 0, 0];
    out[4..8].copy_from_slice(&index.to_ne_bytes());
    out
}

/// `struct rtmsg` for an IPv4 unicast route in the main table.
pub fn rtmsg(prefix_len: u8, protocol: RouteProtocol, scope: u8) -> [u8; 12] {
    [
        AF_INET,
        prefix_len,
        0,
        0,
        RT_TABLE_MAIN,
        protocol.code(),
        scope,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ]
}

/// One message of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The end of a dump.
    Done,
    /// An acknowledgement (`None`) or the kernel's errno.
    Status(Option<i32>),
    /// Another message: its type and payload.
    Message(u16, &'a [u8]),
}

/// Splits a received datagram into its messages, each with its sequence number.
pub fn answers(datagram: &[u8]) -> Result<Vec<(u32, Answer<'_>)>, WireError> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= HEADER {
        let length = read_u32(rest, 0)? as usize;
        if length < HEADER || length > rest.len() {
            return Err(WireError("a message length outside the datagram"));
        }
        let kind = read_u16(rest, 4)?;
        let sequence = read_u32(rest, 8)?;
        let payload = &rest[HEADER..length];
        let answer = match kind {
            NLMSG_DONE => Answer::Done,
            NLMSG_ERROR => {
                let code = read_u32(payload, 0)? as i32;
                Answer::Status((code != 0).then(|| code.saturating_neg()))
            }
            _ => Answer::Message(kind, payload),
        };
        out.push((sequence, answer));
        rest = rest.get(align(length)..).unwrap_or_default();
    }
    Ok(out)
}

/// The attributes after a fixed header of `fixed` bytes: type (flags masked) and payload.
fn attributes(payload: &[u8], fixed: usize) -> Result<Vec<(u16, &[u8])>, WireError> {
    let mut rest = payload
        .get(fixed..)
        .ok_or(WireError("a message shorter than its header"))?;
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let length = usize::from(read_u16(rest, 0)?);
        if length < 4 || length > rest.len() {
            return Err(WireError("an attribute length outside its message"));
        }
        out.push((read_u16(rest, 2)? & NLA_TYPE_MASK, &rest[4..length]));
        rest = rest.get(align(length)..).unwrap_or_default();
    }
    Ok(out)
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16, WireError> {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or(WireError("a truncated message"))
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, WireError> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or(WireError("a truncated message"))
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A link from an `RTM_NEWLINK` payload.
pub fn link(payload: &[u8]) -> Result<Link, WireError> {
    let link_type = read_u16(payload, 2)?;
    let flags = read_u32(payload, 8)?;
    let mut link = Link {
        index: read_u32(payload, 4)?,
        name: String::new(),
        mac: None,
        up: flags & IFF_UP != 0,
        carrier: flags & IFF_LOWER_UP != 0,
        kind: None,
        master: None,
        loopback: flags & IFF_LOOPBACK != 0 || link_type == ARPHRD_LOOPBACK,
        ethernet: link_type == ARPHRD_ETHER,
        mtu: None,
    };
    for (kind, value) in attributes(payload, 16)? {
        match kind {
            IFLA_IFNAME => link.name = text(value),
            IFLA_ADDRESS => link.mac = value.try_into().ok(),
            IFLA_MASTER => link.master = Some(read_u32(value, 0)?),
            IFLA_MTU => link.mtu = Some(read_u32(value, 0)?),
            IFLA_LINKINFO => {
                for (inner, value) in attributes(value, 0)? {
                    if inner == IFLA_INFO_KIND {
                        link.kind = Some(text(value));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(link)
}

fn ip(family: u8, bytes: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| Ipv4Addr::from(b).into()),
        AF_INET6 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| Ipv6Addr::from(b).into()),
        _ => None,
    }
}

/// An address from an `RTM_NEWADDR` payload; `None` for a family other than IPv4 and
/// IPv6, or a message without an address.
pub fn address(payload: &[u8]) -> Result<Option<Address>, WireError> {
    let header = payload
        .get(..8)
        .ok_or(WireError("an address message shorter than its header"))?;
    let (family, prefix_len, scope) = (header[0], header[1], header[3]);
    let mut local = None;
    let mut peer = None;
    for (kind, value) in attributes(payload, 8)? {
        match kind {
            IFA_LOCAL => local = ip(family, value),
            IFA_ADDRESS => peer = ip(family, value),
            _ => {}
        }
    }
    Ok(local.or(peer).map(|address| Address {
        index: read_u32(header, 4).unwrap_or(0),
        address,
        prefix_len,
        global: matches!(scope, RT_SCOPE_UNIVERSE | RT_SCOPE_SITE),
    }))
}

#[cfg(test)]
#[path = "rtnl_wire_tests.rs"]
mod tests;
