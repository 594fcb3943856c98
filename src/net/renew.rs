//! Keeping a lease (RFC 2131 §4.4.5) as a pure state machine: at T1 a REQUEST unicast to
//! the server that granted it, from T2 a REQUEST broadcast to any server, at the end of
//! the lease (or on a NAK) the lease is gone and the caller starts over. The identity is
//! the one the lease was granted to (client id from the MAC, the same address as
//! `ciaddr`). Time is what the caller passes in, counted from when the lease was granted.

use super::dhcp::{decode_reply, encode, request_message, server_id, ClientConfig, Tally};
use super::dhcp_wire::MessageType;
use super::lease::Lease;
use std::net::Ipv4Addr;
use std::time::Duration;

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum RenewPoll {
    /// Nothing to do until this time.
    Wait(Duration),
    /// Send this payload from port 68 to port 67 of `to` (broadcast when `None`), then
    /// poll again at the time given.
    Send(Vec<u8>, Option<Ipv4Addr>, Duration),
    /// A server extended the lease (reported once per ACK): write it down.
    Renewed(Box<Lease>),
    /// The lease ran out or a server refused it: start over with DISCOVER.
    Expired(String),
}

/// Retransmissions are never closer than this (RFC 2131 §4.4.5).
const MIN_RETRANSMIT: Duration = Duration::from_secs(60);

/// The renewal of one lease.
#[derive(Debug, Clone)]
pub struct Renewer {
    config: ClientConfig,
    lease: Lease,
    granted: Duration,
    xid: u32,
    next_send: Option<Duration>,
    forced: bool,
    renewed: bool,
    lost: Option<String>,
    tally: Tally,
}

impl Renewer {
    /// Keeps `lease`, granted at time `granted`.
    pub fn new(config: ClientConfig, lease: Lease, granted: Duration) -> Renewer {
        Renewer {
            xid: config.xid,
            config,
            lease,
            granted,
            next_send: None,
            forced: false,
            renewed: false,
            lost: None,
            tally: Tally::default(),
        }
    }

    /// The lease kept now.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// What was sent and received.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Renews at the next poll instead of waiting for T1 (operators, tests).
    pub fn renew_now(&mut self) {
        self.forced = true;
        self.next_send = None;
    }

    fn at(&self, seconds: Option<u32>) -> Option<Duration> {
        seconds.map(|s| self.granted + Duration::from_secs(s.into()))
    }

    /// What to do at `now`.
    pub fn poll(&mut self, now: Duration) -> RenewPoll {
        if self.renewed {
            self.renewed = false;
            return RenewPoll::Renewed(Box::new(self.lease.clone()));
        }
        if let Some(why) = &self.lost {
            return RenewPoll::Expired(why.clone());
        }
        let end = self.at(self.lease.lease_time_s);
        if end.is_some_and(|end| now >= end) {
            self.lost = Some(format!("lease of {} ran out", self.lease.address));
            return RenewPoll::Expired(self.lost.clone().unwrap_or_default());
        }
        let Some(t1) = self.at(self.lease.renew_s) else {
            return RenewPoll::Wait(now + Duration::from_secs(86_400)); // infinite lease
        };
        if now < t1 && !self.forced {
            return RenewPoll::Wait(t1);
        }
        if let Some(next) = self.next_send {
            if now < next {
                return RenewPoll::Wait(next);
            }
        }
        let rebinding = self.at(self.lease.rebind_s).is_some_and(|t2| now >= t2);
        let phase_end = if rebinding {
            end
        } else {
            self.at(self.lease.rebind_s).or(end)
        };
        let left = phase_end.map_or(MIN_RETRANSMIT, |e| e.saturating_sub(now));
        let next = now
            + (left / 2)
                .max(MIN_RETRANSMIT)
                .min(left.max(Duration::from_secs(1)));
        self.next_send = Some(next);
        self.tally.requests += 1;
        let mut message = request_message(&self.config, self.xid, 0, MessageType::Request, false);
        message.set_ciaddr(self.lease.address);
        let to = (!rebinding).then_some(self.lease.server);
        RenewPoll::Send(encode(&message), to, next)
    }

    /// Feeds one received UDP payload (to port 68).
    pub fn handle(&mut self, now: Duration, payload: &[u8]) {
        if let Err(why) = self.accept(now, payload) {
            self.tally.ignored += 1;
            self.tally.last_ignored = Some(why);
        }
    }

    fn accept(&mut self, now: Duration, payload: &[u8]) -> Result<(), String> {
        if self.next_send.is_none() {
            return Err("no REQUEST outstanding".into());
        }
        let (message, kind) = decode_reply(payload, &self.config, self.xid)?;
        match kind {
            MessageType::Ack => {
                if message.yiaddr() != self.lease.address {
                    return Err(format!(
                        "ACK for {}, not our {}",
                        message.yiaddr(),
                        self.lease.address
                    ));
                }
                let server = server_id(&message).unwrap_or(self.lease.server);
                self.lease = Lease::from_ack(&message, server, self.config.client_id());
                self.granted = now;
                self.next_send = None;
                self.forced = false;
                self.renewed = true;
                self.xid = self.xid.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                Ok(())
            }
            MessageType::Nak => {
                self.tally.naks += 1;
                self.lost = Some(format!(
                    "{} refused the lease of {}",
                    server_id(&message).unwrap_or(self.lease.server),
                    self.lease.address
                ));
                Ok(())
            }
            other => Err(format!("{other:?} while renewing")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dhcp_wire::{DhcpOption, Message, Opcode};

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);
    const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 50);

    fn lease() -> Lease {
        Lease {
            address: ADDRESS,
            prefix_len: 24,
            server: SERVER,
            client_id: "01020000000007".into(),
            gateway: Some(SERVER),
            routes: Vec::new(),
            dns: Vec::new(),
            domain: None,
            hostname: None,
            mtu: None,
            lease_time_s: Some(1000),
            renew_s: Some(500),
            rebind_s: Some(875),
        }
    }

    fn s(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    fn reply(kind: MessageType, xid: u32, yiaddr: Ipv4Addr, lease_time: u32) -> Vec<u8> {
        let zero = Ipv4Addr::UNSPECIFIED;
        let mut message = Message::new_with_id(xid, ADDRESS, yiaddr, zero, zero, &MAC);
        message.set_opcode(Opcode::BootReply);
        message.opts_mut().insert(DhcpOption::MessageType(kind));
        message
            .opts_mut()
            .insert(DhcpOption::ServerIdentifier(SERVER));
        message
            .opts_mut()
            .insert(DhcpOption::AddressLeaseTime(lease_time));
        message.to_vec().unwrap()
    }

    fn request(poll: RenewPoll) -> (Message, Option<Ipv4Addr>, Duration) {
        match poll {
            RenewPoll::Send(bytes, to, next) => (Message::from_bytes(&bytes).unwrap(), to, next),
            other => panic!("expected a REQUEST, got {other:?}"),
        }
    }

    #[test]
    fn unicast_at_t1_broadcast_at_t2_gone_at_the_end() {
        let mut r = Renewer::new(ClientConfig::new(MAC, 9), lease(), s(100));
        assert_eq!(
            r.poll(s(200)),
            RenewPoll::Wait(s(600)),
            "T1 is 500 s after the grant"
        );
        let (message, to, next) = request(r.poll(s(600)));
        assert_eq!(message.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            message.ciaddr(),
            ADDRESS,
            "renewing names its address in ciaddr"
        );
        assert!(!message.flags().broadcast());
        assert!(message
            .opts()
            .get(crate::net::dhcp_wire::OptionCode::ServerIdentifier)
            .is_none());
        assert_eq!(
            to,
            Some(SERVER),
            "renewing is unicast to the granting server"
        );
        assert_eq!(
            next,
            Duration::from_millis(787_500),
            "half the time left until T2 (975)"
        );
        assert_eq!(r.poll(s(700)), RenewPoll::Wait(next));
        let (_, to, _) = request(r.poll(s(975)));
        assert_eq!(to, None, "rebinding is broadcast");
        assert!(matches!(r.poll(s(1100)), RenewPoll::Expired(why) if why.contains("ran out")));
    }

    #[test]
    fn an_ack_extends_the_lease_once_and_restarts_the_timers() {
        let mut r = Renewer::new(ClientConfig::new(MAC, 9), lease(), s(0));
        r.renew_now();
        let (message, _, _) = request(r.poll(s(10)));
        r.handle(
            s(11),
            &reply(MessageType::Ack, message.xid(), ADDRESS, 2000),
        );
        match r.poll(s(11)) {
            RenewPoll::Renewed(lease) => {
                assert_eq!(lease.lease_time_s, Some(2000));
                assert_eq!(lease.client_id, "01020000000007", "same identity");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.poll(s(12)),
            RenewPoll::Wait(s(1011)),
            "new T1 from the ACK"
        );
    }

    #[test]
    fn a_nak_or_another_address_loses_or_ignores() {
        let mut r = Renewer::new(ClientConfig::new(MAC, 9), lease(), s(0));
        r.handle(s(1), &reply(MessageType::Ack, 9, ADDRESS, 2000));
        assert_eq!(r.tally().ignored, 1, "nothing asked yet");
        r.renew_now();
        let (message, _, _) = request(r.poll(s(10)));
        r.handle(
            s(11),
            &reply(
                MessageType::Ack,
                message.xid(),
                Ipv4Addr::new(10, 5, 0, 51),
                2000,
            ),
        );
        assert_eq!(r.tally().ignored, 2);
        r.handle(
            s(12),
            &reply(MessageType::Nak, message.xid(), Ipv4Addr::UNSPECIFIED, 0),
        );
        assert!(matches!(r.poll(s(12)), RenewPoll::Expired(why) if why.contains("refused")));
    }
}
