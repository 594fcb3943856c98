//! A DHCPv4 client as a pure state machine (RFC 2131: INIT → SELECTING → REQUESTING →
//! BOUND, and INIT-REBOOT → REBOOTING when an earlier lease's address is known): the caller passes in the time and every received UDP payload, and sends what
//! [`Client::poll`] hands back. No sockets, no clocks, no sleeps, so every path is a unit
//! test. The wire format is `dhcp_wire`.
//!
//! Retransmissions start at [`ClientConfig::first_retransmit`] and double up to
//! [`ClientConfig::max_retransmit`], each with a little jitter drawn from the transaction
//! id so that a rack of nodes booting at once does not retransmit in step. A NAK, or a
//! REQUEST the server never answers, starts over with a new transaction id. The client
//! never gives up by itself: the caller owns the deadline.

use super::dhcp_wire::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use super::lease::Lease;

use std::net::Ipv4Addr;
use std::time::Duration;

/// The client's identity and timing.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The link's hardware address.
    pub mac: [u8; 6],
    /// Host name to send (option 12), if any.
    pub hostname: Option<String>,
    /// The first transaction id (the caller draws it at random).
    pub xid: u32,
    /// Wait before the first retransmission.
    pub first_retransmit: Duration,
    /// Longest wait between retransmissions.
    pub max_retransmit: Duration,
    /// An address this link held before (an earlier run's lease): asked for again first
    /// (INIT-REBOOT), and a NAK or silence falls back to DISCOVER.
    pub previous: Option<Ipv4Addr>,
}

impl ClientConfig {
    /// Timing for a boot: a quick first retry (a switch port may just have come up),
    /// doubling to at most 8 s.
    pub fn new(mac: [u8; 6], xid: u32) -> ClientConfig {
        ClientConfig {
            mac,
            hostname: None,
            xid,
            first_retransmit: Duration::from_secs(1),
            max_retransmit: Duration::from_secs(8),
            previous: None,
        }
    }

    /// Option 61 as iPXE sends it: hardware type 1 (Ethernet) and the MAC, so the server
    /// sees the identity the node booted with.
    pub fn client_id(&self) -> Vec<u8> {
        let mut id = vec![1];
        id.extend_from_slice(&self.mac);
        id
    }
}

/// What the client has done, for the boot report.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// DISCOVERs sent.
    pub discovers: u32,
    /// OFFERs accepted.
    pub offers: u32,
    /// REQUESTs sent.
    pub requests: u32,
    /// NAKs received.
    pub naks: u32,
    /// Received packets that were not for this client or not usable.
    pub ignored: u32,
    /// Why the last packet was ignored.
    pub last_ignored: Option<String>,
}

#[derive(Debug, Clone)]
struct Offer {
    address: Ipv4Addr,
    server: Ipv4Addr,
}

#[derive(Debug, Clone)]
enum State {
    Rebooting { address: Ipv4Addr, sent: u32 },
    Selecting,
    Requesting { offer: Offer, sent: u32 },
    Bound(Box<Lease>),
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// Broadcast this UDP payload from port 68 to port 67, then poll again at the time given.
    Send(Vec<u8>, Duration),
    /// Nothing to send; wait for packets until this time, then poll again.
    Wait(Duration),
    /// A lease was acknowledged.
    Bound(Box<Lease>),
}

/// REQUESTs sent for one offer before starting over.
const REQUESTS_PER_OFFER: u32 = 4;
/// INIT-REBOOT REQUESTs sent before falling back to DISCOVER.
const REBOOT_REQUESTS: u32 = 2;

/// One DHCPv4 exchange on one link.
#[derive(Debug, Clone)]
pub struct Client {
    config: ClientConfig,
    state: State,
    xid: u32,
    started: Duration,
    next_send: Duration,
    interval: Duration,
    tally: Tally,
}

impl Client {
    /// A client starting at `now` (any monotonic time base the caller keeps using).
    pub fn new(config: ClientConfig, now: Duration) -> Client {
        let state = match config.previous {
            Some(address) => State::Rebooting { address, sent: 0 },
            None => State::Selecting,
        };
        Client {
            xid: config.xid,
            interval: config.first_retransmit,
            config,
            state,
            started: now,
            next_send: now,
            tally: Tally::default(),
        }
    }

    /// What the client has done so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The current transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// The state's name, for reports.
    pub fn state_name(&self) -> &'static str {
        state_name(&self.state)
    }

    /// What to do at `now`.
    pub fn poll(&mut self, now: Duration) -> Poll {
        if let State::Bound(lease) = &self.state {
            return Poll::Bound(lease.clone());
        }
        if now < self.next_send {
            return Poll::Wait(self.next_send);
        }
        match self.state {
            State::Requesting { sent, .. } if sent >= REQUESTS_PER_OFFER => self.restart(now),
            State::Rebooting { sent, .. } if sent >= REBOOT_REQUESTS => self.restart(now),
            _ => {}
        }
        let packet = match &mut self.state {
            State::Rebooting { address, sent } => {
                *sent += 1;
                self.tally.requests += 1;
                let address = *address;
                self.reboot_request(now, address)
            }
            State::Selecting => {
                self.tally.discovers += 1;
                self.discover(now)
            }
            State::Requesting { offer, sent } => {
                *sent += 1;
                self.tally.requests += 1;
                let offer = offer.clone();
                self.request(now, &offer)
            }
            State::Bound(_) => Vec::new(),
        };
        self.next_send = now + self.interval + self.jitter();
        self.interval = (self.interval * 2).min(self.config.max_retransmit);
        Poll::Send(packet, self.next_send)
    }

    /// Feeds one received UDP payload (destined to port 68) at `now`.
    pub fn handle(&mut self, now: Duration, payload: &[u8]) {
        if let Err(why) = self.accept(now, payload) {
            self.tally.ignored += 1;
            self.tally.last_ignored = Some(why);
        }
    }

    fn accept(&mut self, now: Duration, payload: &[u8]) -> Result<(), String> {
        let (message, kind) = decode_reply(payload, &self.config, self.xid)?;
        let server = server_id(&message);
        match (&self.state, kind) {
            (State::Selecting, MessageType::Offer) => {
                let address = message.yiaddr();
                if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
                    return Err(format!("offer of unusable address {address}"));
                }
                let server = server.ok_or("offer without a server identifier")?;
                self.tally.offers += 1;
                self.state = State::Requesting {
                    offer: Offer { address, server },
                    sent: 0,
                };
                self.interval = self.config.first_retransmit;
                self.next_send = now;
                Ok(())
            }
            (State::Requesting { offer, .. }, MessageType::Ack) => {
                if server.is_some_and(|s| s != offer.server) {
                    return Err(format!(
                        "ACK from {}, not the chosen server",
                        server.unwrap_or(offer.server)
                    ));
                }
                if message.yiaddr() != offer.address {
                    return Err(format!(
                        "ACK for {}, not the requested {}",
                        message.yiaddr(),
                        offer.address
                    ));
                }
                let lease = Lease::from_ack(&message, offer.server, self.config.client_id());
                self.state = State::Bound(Box::new(lease));
                Ok(())
            }
            (State::Rebooting { address, .. }, MessageType::Ack) => {
                if message.yiaddr() != *address {
                    return Err(format!(
                        "ACK for {}, not the requested {address}",
                        message.yiaddr()
                    ));
                }
                let server = server.unwrap_or(message.siaddr());
                let lease = Lease::from_ack(&message, server, self.config.client_id());
                self.state = State::Bound(Box::new(lease));
                Ok(())
            }
            (State::Rebooting { .. }, MessageType::Nak) => {
                self.tally.naks += 1;
                self.restart(now);
                Ok(())
            }
            (State::Requesting { offer, .. }, MessageType::Nak) => {
                if server.is_some_and(|s| s != offer.server) {
                    return Err("NAK from another server".into());
                }
                self.tally.naks += 1;
                self.restart(now);
                Ok(())
            }
            (state, kind) => Err(format!("{kind:?} while {}", state_name(state))),
        }
    }

    /// Back to SELECTING with a new transaction id, sending at once.
    fn restart(&mut self, now: Duration) {
        self.xid = self.xid.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.state = State::Selecting;
        self.interval = self.config.first_retransmit;
        self.next_send = now;
    }

    /// Up to a quarter of the interval, from the transaction id and the interval.
    fn jitter(&self) -> Duration {
        let quarter = self.interval.as_millis() as u64 / 4;
        let mixed = u64::from(self.xid ^ (self.interval.as_millis() as u32).rotate_left(13));
        Duration::from_millis(mixed.wrapping_mul(0x9e37_79b9) % quarter.max(1))
    }

    fn base_message(&self, now: Duration, kind: MessageType) -> Message {
        let secs = now.saturating_sub(self.started).as_secs();
        request_message(&self.config, self.xid, secs, kind, true)
    }

    fn discover(&self, now: Duration) -> Vec<u8> {
        encode(&self.base_message(now, MessageType::Discover))
    }

    /// INIT-REBOOT: ask for the old address, naming no server.
    fn reboot_request(&self, now: Duration, address: Ipv4Addr) -> Vec<u8> {
        let mut message = self.base_message(now, MessageType::Request);
        message
            .opts_mut()
            .insert(DhcpOption::RequestedIpAddress(address));
        encode(&message)
    }

    fn request(&self, now: Duration, offer: &Offer) -> Vec<u8> {
        let mut message = self.base_message(now, MessageType::Request);
        let options = message.opts_mut();
        options.insert(DhcpOption::RequestedIpAddress(offer.address));
        options.insert(DhcpOption::ServerIdentifier(offer.server));
        encode(&message)
    }
}

/// A client message with what every one carries: type, client id (the MAC's), the
/// options asked for, host name; `broadcast` asks for broadcast replies (no address yet).
pub(crate) fn request_message(
    config: &ClientConfig,
    xid: u32,
    secs: u64,
    kind: MessageType,
    broadcast: bool,
) -> Message {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new_with_id(
        xid,
        unspecified,
        unspecified,
        unspecified,
        unspecified,
        &config.mac,
    );
    message.set_secs(secs.min(u64::from(u16::MAX)) as u16);
    if broadcast {
        message.set_flags(Flags::default().set_broadcast());
    }
    let options = message.opts_mut();
    options.insert(DhcpOption::MessageType(kind));
    options.insert(DhcpOption::ClientIdentifier(config.client_id()));
    options.insert(DhcpOption::MaxMessageSize(1500));
    options.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::ClasslessStaticRoute,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::Hostname,
        OptionCode::InterfaceMtu,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ]));
    if let Some(name) = &config.hostname {
        options.insert(DhcpOption::Hostname(name.clone()));
    }
    message
}

/// Decodes a reply for `config`'s link and transaction `xid`: the message and its type,
/// or why it is not one.
pub(crate) fn decode_reply(
    payload: &[u8],
    config: &ClientConfig,
    xid: u32,
) -> Result<(Message, MessageType), String> {
    let message = Message::from_bytes(payload).map_err(|e| format!("not DHCP: {e}"))?;
    if message.opcode() != Opcode::BootReply {
        return Err("a request, not a reply".into());
    }
    if message.xid() != xid {
        return Err(format!("transaction {:#010x} is not ours", message.xid()));
    }
    if message.chaddr().get(..6) != Some(&config.mac[..]) {
        return Err("for another hardware address".into());
    }
    let kind = message.opts().msg_type().ok_or("no DHCP message type")?;
    Ok((message, kind))
}

/// The server identifier (option 54) of a message.
pub(crate) fn server_id(message: &Message) -> Option<Ipv4Addr> {
    match message.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(server)) => Some(*server),
        _ => None,
    }
}

fn state_name(state: &State) -> &'static str {
    match state {
        State::Rebooting { .. } => "rebooting",
        State::Selecting => "selecting",
        State::Requesting { .. } => "requesting",
        State::Bound(_) => "bound",
    }
}

/// Encodes a message this client built (only valid options, so encoding cannot fail).
pub(crate) fn encode(message: &Message) -> Vec<u8> {
    message.to_vec().unwrap_or_default()
}

#[cfg(test)]
#[path = "dhcp_tests.rs"]
mod tests;
