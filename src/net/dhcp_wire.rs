//! The DHCPv4 wire format (RFC 2131 and 2132, classless routes of RFC 3442, long options
//! of RFC 3396) for the options the client sends and reads. Pure: no I/O, no panics on
//! any input (fuzzed).
//!
//! Written here rather than taken from a crate: the general one brought a DNS library and
//! Unicode tables the agent never uses, and its decoder asserted on option lengths.

use std::net::Ipv4Addr;

/// BOOTP's fixed header: op to file.
const HEADER: usize = 236;
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The smallest BOOTP message relays and old servers accept.
const MIN_MESSAGE: usize = 300;
const PAD: u8 = 0;
const END: u8 = 255;

/// A message that is not DHCP, or an option that is not what its code says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

fn fail<T>(why: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(why.into()))
}

/// BOOTP's op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 1: from a client.
    BootRequest,
    /// 2: from a server.
    BootReply,
}

/// The DHCP message type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 1
    Discover,
    /// 2
    Offer,
    /// 3
    Request,
    /// 4
    Decline,
    /// 5
    Ack,
    /// 6
    Nak,
    /// 7
    Release,
    /// 8
    Inform,
}

const MESSAGE_TYPES: [MessageType; 8] = [
    MessageType::Discover,
    MessageType::Offer,
    MessageType::Request,
    MessageType::Decline,
    MessageType::Ack,
    MessageType::Nak,
    MessageType::Release,
    MessageType::Inform,
];

impl MessageType {
    fn code(self) -> u8 {
        MESSAGE_TYPES.iter().position(|&t| t == self).unwrap_or(0) as u8 + 1
    }
}

/// The codes of the options the client knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptionCode {
    /// 1
    SubnetMask,
    /// 3
    Router,
    /// 6
    DomainNameServer,
    /// 12
    Hostname,
    /// 15
    DomainName,
    /// 26
    InterfaceMtu,
    /// 50
    RequestedIpAddress,
    /// 51
    AddressLeaseTime,
    /// 53
    MessageType,
    /// 54
    ServerIdentifier,
    /// 55
    ParameterRequestList,
    /// 57
    MaxMessageSize,
    /// 58
    Renewal,
    /// 59
    Rebinding,
    /// 61
    ClientIdentifier,
    /// 121
    ClasslessStaticRoute,
    /// Any other.
    Other(u8),
}

const NAMED: [(OptionCode, u8); 16] = [
    (OptionCode::SubnetMask, 1),
    (OptionCode::Router, 3),
    (OptionCode::DomainNameServer, 6),
    (OptionCode::Hostname, 12),
    (OptionCode::DomainName, 15),
    (OptionCode::InterfaceMtu, 26),
    (OptionCode::RequestedIpAddress, 50),
    (OptionCode::AddressLeaseTime, 51),
    (OptionCode::MessageType, 53),
    (OptionCode::ServerIdentifier, 54),
    (OptionCode::ParameterRequestList, 55),
    (OptionCode::MaxMessageSize, 57),
    (OptionCode::Renewal, 58),
    (OptionCode::Rebinding, 59),
    (OptionCode::ClientIdentifier, 61),
    (OptionCode::ClasslessStaticRoute, 121),
];

impl From<u8> for OptionCode {
    fn from(code: u8) -> OptionCode {
        NAMED
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(OptionCode::Other(code), |(named, _)| *named)
    }
}

impl From<OptionCode> for u8 {
    fn from(code: OptionCode) -> u8 {
        match code {
            OptionCode::Other(code) => code,
            named => NAMED
                .iter()
                .find(|(n, _)| *n == named)
                .map_or(0, |(_, c)| *c),
        }
    }
}

/// An IPv4 network: address and prefix length (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    /// The network of `address/prefix_len` (host bits cleared); `None` past /32.
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Net> {
        if prefix_len > 32 {
            return None;
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        Some(Ipv4Net {
            network: Ipv4Addr::from(u32::from(address) & mask),
            prefix_len,
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl std::str::FromStr for Ipv4Net {
    type Err = WireError;

    fn from_str(text: &str) -> Result<Ipv4Net, WireError> {
        let bad = || WireError(format!("{text:?} is not an IPv4 network"));
        let (address, length) = text.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let length: u8 = length.parse().map_err(|_| bad())?;
        Ipv4Net::new(address, length).ok_or_else(bad)
    }
}

/// One option, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpOption {
    /// 1
    SubnetMask(Ipv4Addr),
    /// 3
    Router(Vec<Ipv4Addr>),
    /// 6
    DomainNameServer(Vec<Ipv4Addr>),
    /// 12
    Hostname(String),
    /// 15
    DomainName(String),
    /// 26
    InterfaceMtu(u16),
    /// 50
    RequestedIpAddress(Ipv4Addr),
    /// 51
    AddressLeaseTime(u32),
    /// 53
    MessageType(MessageType),
    /// 54
    ServerIdentifier(Ipv4Addr),
    /// 55
    ParameterRequestList(Vec<OptionCode>),
    /// 57
    MaxMessageSize(u16),
    /// 58
    Renewal(u32),
    /// 59
    Rebinding(u32),
    /// 61
    ClientIdentifier(Vec<u8>),
    /// 121: destination networks and their routers.
    ClasslessStaticRoute(Vec<(Ipv4Net, Ipv4Addr)>),
    /// Any other option, as sent.
    Other(u8, Vec<u8>),
}

fn address(bytes: &[u8]) -> Result<Ipv4Addr, WireError> {
    <[u8; 4]>::try_from(bytes)
        .map(Ipv4Addr::from)
        .or_else(|_| fail(format!("{} bytes where an address goes", bytes.len())))
}

fn addresses(bytes: &[u8]) -> Result<Vec<Ipv4Addr>, WireError> {
    if bytes.is_empty() || bytes.len() % 4 != 0 {
        return fail(format!("{} bytes where addresses go", bytes.len()));
    }
    bytes.chunks(4).map(address).collect()
}

fn number<const N: usize>(bytes: &[u8]) -> Result<[u8; N], WireError> {
    <[u8; N]>::try_from(bytes).or_else(|_| fail(format!("{} bytes where {N} go", bytes.len())))
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// RFC 3442: each route is the prefix width, the significant octets of the destination,
/// then the router.
fn classless(mut bytes: &[u8]) -> Result<Vec<(Ipv4Net, Ipv4Addr)>, WireError> {
    let mut routes = Vec::new();
    while let Some((&width, rest)) = bytes.split_first() {
        if width > 32 {
            return fail(format!("a classless route of width {width}"));
        }
        let octets = usize::from(width).div_ceil(8);
        if rest.len() < octets + 4 {
            return fail("a classless route cut short");
        }
        let mut destination = [0u8; 4];
        destination[..octets].copy_from_slice(&rest[..octets]);
        let net = Ipv4Net::new(Ipv4Addr::from(destination), width)
            .ok_or_else(|| WireError(format!("a classless route of width {width}")))?;
        routes.push((net, address(&rest[octets..octets + 4])?));
        bytes = &rest[octets + 4..];
    }
    Ok(routes)
}

impl DhcpOption {
    /// Its code.
    pub fn code(&self) -> OptionCode {
        match self {
            DhcpOption::SubnetMask(_) => OptionCode::SubnetMask,
            DhcpOption::Router(_) => OptionCode::Router,
            DhcpOption::DomainNameServer(_) => OptionCode::DomainNameServer,
            DhcpOption::Hostname(_) => OptionCode::Hostname,
            DhcpOption::DomainName(_) => OptionCode::DomainName,
            DhcpOption::InterfaceMtu(_) => OptionCode::InterfaceMtu,
            DhcpOption::RequestedIpAddress(_) => OptionCode::RequestedIpAddress,
            DhcpOption::AddressLeaseTime(_) => OptionCode::AddressLeaseTime,
            DhcpOption::MessageType(_) => OptionCode::MessageType,
            DhcpOption::ServerIdentifier(_) => OptionCode::ServerIdentifier,
            DhcpOption::ParameterRequestList(_) => OptionCode::ParameterRequestList,
            DhcpOption::MaxMessageSize(_) => OptionCode::MaxMessageSize,
            DhcpOption::Renewal(_) => OptionCode::Renewal,
            DhcpOption::Rebinding(_) => OptionCode::Rebinding,
            DhcpOption::ClientIdentifier(_) => OptionCode::ClientIdentifier,
            DhcpOption::ClasslessStaticRoute(_) => OptionCode::ClasslessStaticRoute,
            DhcpOption::Other(code, _) => OptionCode::from(*code),
        }
    }

    fn decode(code: u8, bytes: &[u8]) -> Result<DhcpOption, WireError> {
        let option = match OptionCode::from(code) {
            OptionCode::SubnetMask => DhcpOption::SubnetMask(address(bytes)?),
            OptionCode::Router => DhcpOption::Router(addresses(bytes)?),
            OptionCode::DomainNameServer => DhcpOption::DomainNameServer(addresses(bytes)?),
            OptionCode::Hostname => DhcpOption::Hostname(text(bytes)),
            OptionCode::DomainName => DhcpOption::DomainName(text(bytes)),
            OptionCode::InterfaceMtu => {
                DhcpOption::InterfaceMtu(u16::from_be_bytes(number(bytes)?))
            }
            OptionCode::RequestedIpAddress => DhcpOption::RequestedIpAddress(address(bytes)?),
            OptionCode::AddressLeaseTime => {
                DhcpOption::AddressLeaseTime(u32::from_be_bytes(number(bytes)?))
            }
            OptionCode::MessageType => {
                let [kind] = number::<1>(bytes)?;
                match MESSAGE_TYPES.get(usize::from(kind).wrapping_sub(1)) {
                    Some(kind) => DhcpOption::MessageType(*kind),
                    None => return fail(format!("message type {kind}")),
                }
            }
            OptionCode::ServerIdentifier => DhcpOption::ServerIdentifier(address(bytes)?),
            OptionCode::ParameterRequestList => DhcpOption::ParameterRequestList(
                bytes.iter().map(|&c| OptionCode::from(c)).collect(),
            ),
            OptionCode::MaxMessageSize => {
                DhcpOption::MaxMessageSize(u16::from_be_bytes(number(bytes)?))
            }
            OptionCode::Renewal => DhcpOption::Renewal(u32::from_be_bytes(number(bytes)?)),
            OptionCode::Rebinding => DhcpOption::Rebinding(u32::from_be_bytes(number(bytes)?)),
            OptionCode::ClientIdentifier => DhcpOption::ClientIdentifier(bytes.to_vec()),
            OptionCode::ClasslessStaticRoute => DhcpOption::ClasslessStaticRoute(classless(bytes)?),
            OptionCode::Other(code) => DhcpOption::Other(code, bytes.to_vec()),
        };
        Ok(option)
    }

    fn payload(&self) -> Vec<u8> {
        let list = |ips: &[Ipv4Addr]| ips.iter().flat_map(|ip| ip.octets()).collect();
        match self {
            DhcpOption::SubnetMask(ip)
            | DhcpOption::RequestedIpAddress(ip)
            | DhcpOption::ServerIdentifier(ip) => ip.octets().to_vec(),
            DhcpOption::Router(ips) | DhcpOption::DomainNameServer(ips) => list(ips),
            DhcpOption::Hostname(name) | DhcpOption::DomainName(name) => name.as_bytes().to_vec(),
            DhcpOption::InterfaceMtu(n) | DhcpOption::MaxMessageSize(n) => n.to_be_bytes().to_vec(),
            DhcpOption::AddressLeaseTime(n) | DhcpOption::Renewal(n) | DhcpOption::Rebinding(n) => {
                n.to_be_bytes().to_vec()
            }
            DhcpOption::MessageType(kind) => vec![kind.code()],
            DhcpOption::ParameterRequestList(codes) => codes.iter().map(|&c| u8::from(c)).collect(),
            DhcpOption::ClientIdentifier(bytes) | DhcpOption::Other(_, bytes) => bytes.clone(),
            DhcpOption::ClasslessStaticRoute(routes) => {
                let mut out = Vec::new();
                for (net, router) in routes {
                    let octets = usize::from(net.prefix_len).div_ceil(8);
                    out.push(net.prefix_len);
                    out.extend_from_slice(&net.network.octets()[..octets]);
                    out.extend_from_slice(&router.octets());
                }
                out
            }
        }
    }
}

/// A message's options, in the order they were put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpOptions(Vec<DhcpOption>);

impl DhcpOptions {
    /// Adds `option`, replacing one of the same code.
    pub fn insert(&mut self, option: DhcpOption) {
        match self.0.iter_mut().find(|o| o.code() == option.code()) {
            Some(slot) => *slot = option,
            None => self.0.push(option),
        }
    }

    /// The option of `code`.
    pub fn get(&self, code: OptionCode) -> Option<&DhcpOption> {
        self.0.iter().find(|o| o.code() == code)
    }

    /// The message type.
    pub fn msg_type(&self) -> Option<MessageType> {
        match self.get(OptionCode::MessageType) {
            Some(DhcpOption::MessageType(kind)) => Some(*kind),
            _ => None,
        }
    }
}

/// BOOTP's flags: only the broadcast bit means anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    /// With the broadcast bit set.
    pub fn set_broadcast(self) -> Flags {
        Flags(self.0 | 0x8000)
    }

    /// Whether replies must be broadcast.
    pub fn broadcast(&self) -> bool {
        self.0 & 0x8000 != 0
    }
}

/// A DHCPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    opcode: Opcode,
    hops: u8,
    xid: u32,
    secs: u16,
    flags: Flags,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    siaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: Vec<u8>,
    options: DhcpOptions,
}

impl Message {
    /// A request from `chaddr` (an Ethernet address) in transaction `xid`.
    pub fn new_with_id(
        xid: u32,
        ciaddr: Ipv4Addr,
        yiaddr: Ipv4Addr,
        siaddr: Ipv4Addr,
        giaddr: Ipv4Addr,
        chaddr: &[u8],
    ) -> Message {
        Message {
            opcode: Opcode::BootRequest,
            hops: 0,
            xid,
            secs: 0,
            flags: Flags::default(),
            ciaddr,
            yiaddr,
            siaddr,
            giaddr,
            chaddr: chaddr[..chaddr.len().min(16)].to_vec(),
            options: DhcpOptions::default(),
        }
    }

    /// Request or reply.
    pub fn opcode(&self) -> Opcode {
        self.opcode
    }
    /// Sets request or reply.
    pub fn set_opcode(&mut self, opcode: Opcode) {
        self.opcode = opcode;
    }
    /// The transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }
    /// Sets the seconds since the client began.
    pub fn set_secs(&mut self, secs: u16) {
        self.secs = secs;
    }
    /// The flags.
    pub fn flags(&self) -> Flags {
        self.flags
    }
    /// Sets the flags.
    pub fn set_flags(&mut self, flags: Flags) {
        self.flags = flags;
    }
    /// The client's current address (set when renewing).
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.ciaddr
    }
    /// Sets the client's current address (renewing).
    pub fn set_ciaddr(&mut self, address: Ipv4Addr) {
        self.ciaddr = address;
    }
    /// "Your" address: the one offered or granted.
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.yiaddr
    }
    /// The next server's address.
    pub fn siaddr(&self) -> Ipv4Addr {
        self.siaddr
    }
    /// The client's hardware address.
    pub fn chaddr(&self) -> &[u8] {
        &self.chaddr
    }
    /// Sets the client's hardware address (at most 16 bytes are kept).
    pub fn set_chaddr(&mut self, chaddr: &[u8]) {
        self.chaddr = chaddr[..chaddr.len().min(16)].to_vec();
    }
    /// The options.
    pub fn opts(&self) -> &DhcpOptions {
        &self.options
    }
    /// The options, to change.
    pub fn opts_mut(&mut self) -> &mut DhcpOptions {
        &mut self.options
    }

    /// Decodes a UDP payload. An option sent in several parts is joined (RFC 3396);
    /// options in `sname` and `file` (overload) are not read.
    pub fn from_bytes(bytes: &[u8]) -> Result<Message, WireError> {
        if bytes.len() < HEADER + COOKIE.len() {
            return fail(format!(
                "{} bytes, shorter than a DHCP message",
                bytes.len()
            ));
        }
        if bytes[HEADER..HEADER + 4] != COOKIE {
            return fail("no DHCP magic cookie (BOOTP)");
        }
        let opcode = match bytes[0] {
            1 => Opcode::BootRequest,
            2 => Opcode::BootReply,
            other => return fail(format!("op {other}")),
        };
        let ip = |at: usize| Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
        let hlen = usize::from(bytes[2]).min(16);
        // The options, each code's parts joined in the order they came.
        let mut parts: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut rest = &bytes[HEADER + 4..];
        while let Some((&code, after)) = rest.split_first() {
            match code {
                PAD => rest = after,
                END => break,
                _ => {
                    let Some((&length, after)) = after.split_first() else {
                        return fail(format!("option {code} without its length"));
                    };
                    let Some(value) = after.get(..usize::from(length)) else {
                        return fail(format!("option {code} runs past the message"));
                    };
                    match parts.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, joined)) => joined.extend_from_slice(value),
                        None => parts.push((code, value.to_vec())),
                    }
                    rest = &after[usize::from(length)..];
                }
            }
        }
        let mut options = DhcpOptions::default();
        for (code, value) in parts {
            let option = DhcpOption::decode(code, &value)
                .map_err(|e| WireError(format!("option {code}: {e}")))?;
            options.0.push(option);
        }
        Ok(Message {
            opcode,
            hops: bytes[3],
            xid: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            secs: u16::from_be_bytes([bytes[8], bytes[9]]),
            flags: Flags(u16::from_be_bytes([bytes[10], bytes[11]])),
            ciaddr: ip(12),
            yiaddr: ip(16),
            siaddr: ip(20),
            giaddr: ip(24),
            chaddr: bytes[28..28 + hlen].to_vec(),
            options,
        })
    }

    /// Encodes the message (padded to BOOTP's 300 bytes; a long option split, RFC 3396).
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut out = vec![0u8; HEADER];
        out[0] = match self.opcode {
            Opcode::BootRequest => 1,
            Opcode::BootReply => 2,
        };
        out[1] = 1; // Ethernet
        out[2] = self.chaddr.len() as u8;
        out[3] = self.hops;
        out[4..8].copy_from_slice(&self.xid.to_be_bytes());
        out[8..10].copy_from_slice(&self.secs.to_be_bytes());
        out[10..12].copy_from_slice(&self.flags.0.to_be_bytes());
        for (at, ip) in [
            (12, self.ciaddr),
            (16, self.yiaddr),
            (20, self.siaddr),
            (24, self.giaddr),
        ] {
            out[at..at + 4].copy_from_slice(&ip.octets());
        }
        out[28..28 + self.chaddr.len()].copy_from_slice(&self.chaddr);
        out.extend_from_slice(&COOKIE);
        for option in &self.options.0 {
            let code = u8::from(option.code());
            if code == PAD || code == END {
                return fail(format!("option code {code} is reserved"));
            }
            let payload = option.payload();
            if payload.is_empty() {
                out.extend_from_slice(&[code, 0]);
            }
            for part in payload.chunks(255) {
                out.push(code);
                out.push(part.len() as u8);
                out.extend_from_slice(part);
            }
        }
        out.push(END);
        if out.len() < MIN_MESSAGE {
            out.resize(MIN_MESSAGE, PAD);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "dhcp_wire_tests.rs"]
mod tests;
