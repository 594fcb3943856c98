//! rtnetlink requests the agent makes (netlink-packet-route for the wire format,
//! netlink-sys for the socket): list links and addresses, bring a link up, set its MTU,
//! add addresses and routes. Every change is idempotent (an address or route that is
//! already there is success), so running `net up` twice changes nothing.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr};

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
    socket: Socket,
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
        let fail = |e: std::io::Error| NetlinkError {
            request: "open a route socket".into(),
            errno: e.raw_os_error(),
            detail: e.to_string(),
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        // The kernel answers at once; a receive that waits longer than this is cut off
        // rather than trusted.
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(ANSWER_WITHIN),
        )
        .map_err(|e| fail(e.into()))?;
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    /// Sends one request and collects the answers until the ACK or the end of the dump.
    fn request(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let fail = |errno: Option<i32>, detail: String| NetlinkError {
            request: what.to_string(),
            errno,
            detail,
        };
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket
            .send(&out, 0)
            .map_err(|e| fail(e.raw_os_error(), e.to_string()))?;
        let mut answers = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let size = self.socket.recv(&mut &mut buffer[..], 0).map_err(|e| {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    let within = ANSWER_WITHIN.as_secs();
                    fail(None, format!("no answer from the kernel within {within} s"))
                } else {
                    fail(e.raw_os_error(), e.to_string())
                }
            })?;
            let mut offset = 0;
            while offset < size {
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer[offset..size])
                        .map_err(|e| fail(None, format!("unreadable answer: {e}")))?;
                let length = reply.header.length as usize;
                if reply.header.sequence_number != self.sequence {
                    offset += length.max(1);
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(answers),
                            Some(code) => {
                                let errno = -code.get();
                                Err(fail(
                                    Some(errno),
                                    std::io::Error::from_raw_os_error(errno).to_string(),
                                ))
                            }
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
            if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                return Ok(answers);
            }
        }
    }

    /// A dump request: every answer `pick` keeps.
    fn dump<T>(
        &mut self,
        what: &str,
        message: RouteNetlinkMessage,
        pick: impl Fn(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>, NetlinkError> {
        Ok(self
            .request(what, message, NLM_F_DUMP)?
            .into_iter()
            .filter_map(pick)
            .collect())
    }

    /// Every link.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        self.dump("list links", request, |answer| match answer {
            RouteNetlinkMessage::NewLink(link) => Some(link_of(&link)),
            _ => None,
        })
    }

    /// One link by name.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    fn set_link(
        &mut self,
        what: &str,
        index: u32,
        edit: impl FnOnce(&mut LinkMessage),
    ) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        edit(&mut message);
        self.request(what, RouteNetlinkMessage::SetLink(message), NLM_F_ACK)
            .map(drop)
    }

    /// Brings a link up.
    pub fn set_up(&mut self, link: &Link) -> Result<(), NetlinkError> {
        self.set_link(&format!("bring {} up", link.name), link.index, |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, link: &Link, mtu: u32) -> Result<(), NetlinkError> {
        self.set_link(
            &format!("set the MTU of {} to {mtu}", link.name),
            link.index,
            |m| {
                m.attributes.push(LinkAttribute::Mtu(mtu));
            },
        )
    }

    /// Creates a bridge named `name` with the hardware address `mac` (the NIC's, so the
    /// DHCP identity stays the one iPXE used) and MTU 1500; already there is success.
    pub fn add_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        message
            .attributes
            .push(LinkAttribute::Address(mac.to_vec()));
        message.attributes.push(LinkAttribute::Mtu(1500));
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let what = format!("create bridge {name}");
        match self.request(
            &what,
            RouteNetlinkMessage::NewLink(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.errno == Some(nix::libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Enslaves `link` to the bridge (or bond) `master`.
    pub fn set_master(&mut self, link: &Link, master: &Link) -> Result<(), NetlinkError> {
        self.set_link(
            &format!("enslave {} to {}", link.name, master.name),
            link.index,
            |m| {
                m.attributes.push(LinkAttribute::Controller(master.index));
            },
        )
    }

    /// Every address (both families).
    pub fn addresses(&mut self) -> Result<Vec<Address>, NetlinkError> {
        let request = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        self.dump("list addresses", request, |answer| match answer {
            RouteNetlinkMessage::NewAddress(message) => address_of(&message),
            _ => None,
        })
    }

    /// Adds an IPv4 address with its broadcast address; already there is success.
    pub fn add_address(
        &mut self,
        link: &Link,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let mut message = ipv4_address_message(link, address, prefix_len);
        message.header.scope = AddressScope::Universe;
        message
            .attributes
            .push(AddressAttribute::Address(IpAddr::V4(address)));
        if prefix_len < 31 {
            let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
            message
                .attributes
                .push(AddressAttribute::Broadcast(broadcast));
        }
        let what = format!("add {address}/{prefix_len} to {}", link.name);
        match self.request(
            &what,
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_ACK | NLM_F_CREATE,
        ) {
            Err(e) if e.errno == Some(nix::libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Removes an IPv4 address from a link; not there is success.
    pub fn remove_address(
        &mut self,
        link: &Link,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let message = ipv4_address_message(link, address, prefix_len);
        let what = format!("remove {address}/{prefix_len} from {}", link.name);
        match self.request(&what, RouteNetlinkMessage::DelAddress(message), NLM_F_ACK) {
            Err(e) if e.errno == Some(nix::libc::EADDRNOTAVAIL) => Ok(()),
            other => other.map(drop),
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
        let mut message = RouteMessage::default();
        message.header = RouteHeader {
            address_family: AddressFamily::Inet,
            destination_prefix_length: prefix_len,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol,
            scope: if gateway.is_unspecified() {
                RouteScope::Link
            } else {
                RouteScope::Universe
            },
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        if prefix_len > 0 {
            message
                .attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
        }
        if !gateway.is_unspecified() {
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        }
        message.attributes.push(RouteAttribute::Oif(link.index));
        let via = if gateway.is_unspecified() {
            String::new()
        } else {
            format!(" via {gateway}")
        };
        let what = format!("route {destination}/{prefix_len}{via} dev {}", link.name);
        self.request(
            &what,
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mac: None,
        up: message.header.flags.contains(LinkFlags::Up),
        carrier: message.header.flags.contains(LinkFlags::LowerUp),
        kind: None,
        master: None,
        loopback: message.header.flags.contains(LinkFlags::Loopback)
            || message.header.link_layer_type == LinkLayerType::Loopback,
        ethernet: message.header.link_layer_type == LinkLayerType::Ether,
        mtu: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(bytes) => link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok(),
            LinkAttribute::Controller(master) => link.master = Some(*master),
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind_name(kind));
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// An address message naming `address/prefix_len` on `link`.
fn ipv4_address_message(link: &Link, address: Ipv4Addr, prefix_len: u8) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix_len;
    message.header.index = link.index;
    message
        .attributes
        .push(AddressAttribute::Local(IpAddr::V4(address)));
    message
}

fn address_of(message: &AddressMessage) -> Option<Address> {
    let find = |local: bool| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    Some(Address {
        index: message.header.index,
        address: find(true).or_else(|| find(false))?,
        prefix_len: message.header.prefix_len,
        global: matches!(
            message.header.scope,
            AddressScope::Universe | AddressScope::Site
        ),
    })
}

fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::Other(name) => name.clone(),
        known => format!("{known:?}").to_lowercase(),
    }
}
