//! Unit tests of the DHCPv4 state machine: the "server" here is messages built by
//! hand, the clock is a number. The real server (dnsmasq) is in `tests/net_dhcp.rs`.

use super::*;
use crate::net::lease::Route;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 50);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A client whose clock started at `start` seconds.
fn client_at(start: f64) -> Client {
    Client::new(ClientConfig::new(MAC, 0x1234_5678), secs(start))
}

fn reply(kind: MessageType, xid: u32, yiaddr: Ipv4Addr, extra: Vec<DhcpOption>) -> Vec<u8> {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new_with_id(xid, zero, yiaddr, SERVER, zero, &MAC);
    message.set_opcode(Opcode::BootReply);
    let options = message.opts_mut();
    options.insert(DhcpOption::MessageType(kind));
    options.insert(DhcpOption::ServerIdentifier(SERVER));
    for option in extra {
        options.insert(option);
    }
    message.to_vec().unwrap()
}

fn sent(poll: Poll) -> (Message, Duration) {
    match poll {
        Poll::Send(bytes, next) => (Message::from_bytes(&bytes).unwrap(), next),
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn option(message: &Message, code: OptionCode) -> Option<DhcpOption> {
    message.opts().get(code).cloned()
}

#[test]
fn discover_offer_request_ack() {
    let mut c = client_at(100.0);
    let (discover, _) = sent(c.poll(secs(100.0)));
    assert_eq!(discover.opts().msg_type(), Some(MessageType::Discover));
    assert!(
        discover.flags().broadcast(),
        "no address yet: replies must be broadcast"
    );
    assert_eq!(discover.chaddr(), &MAC);
    assert_eq!(
        option(&discover, OptionCode::ClientIdentifier),
        Some(DhcpOption::ClientIdentifier(vec![
            1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56
        ]))
    );
    match option(&discover, OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(codes)) => {
            assert!(codes.contains(&OptionCode::ClasslessStaticRoute));
            assert!(codes.contains(&OptionCode::InterfaceMtu));
        }
        other => panic!("{other:?}"),
    }

    c.handle(
        secs(100.2),
        &reply(MessageType::Offer, discover.xid(), OFFERED, vec![]),
    );
    assert_eq!(c.state_name(), "requesting");
    let (request, _) = sent(c.poll(secs(100.2)));
    assert_eq!(request.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(request.xid(), discover.xid());
    assert_eq!(
        option(&request, OptionCode::RequestedIpAddress),
        Some(DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(
        option(&request, OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier(SERVER))
    );

    let ack = reply(
        MessageType::Ack,
        request.xid(),
        OFFERED,
        vec![
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![SERVER, Ipv4Addr::new(10, 5, 0, 2)]),
            DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 5, 0, 53)]),
            DhcpOption::DomainName("grid.test".into()),
            DhcpOption::Hostname("node-7".into()),
            DhcpOption::InterfaceMtu(9000),
            DhcpOption::AddressLeaseTime(600),
        ],
    );
    c.handle(secs(100.3), &ack);
    let lease = match c.poll(secs(100.3)) {
        Poll::Bound(lease) => lease,
        other => panic!("{other:?}"),
    };
    assert_eq!(lease.address, OFFERED);
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.server, SERVER);
    assert_eq!(lease.client_id, "01525400123456");
    assert_eq!(lease.gateway, Some(SERVER));
    assert_eq!(
        lease.routes,
        vec![Route {
            destination: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: SERVER
        }]
    );
    assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 5, 0, 53)]);
    assert_eq!(lease.domain.as_deref(), Some("grid.test"));
    assert_eq!(lease.hostname.as_deref(), Some("node-7"));
    assert_eq!(lease.mtu, Some(9000));
    assert_eq!(
        (lease.lease_time_s, lease.renew_s, lease.rebind_s),
        (Some(600), Some(300), Some(525))
    );
    let tally = c.tally();
    assert_eq!(
        (tally.discovers, tally.offers, tally.requests, tally.naks),
        (1, 1, 1, 0)
    );
}

#[test]
fn retransmissions_back_off_with_jitter_up_to_the_cap() {
    let mut c = client_at(100.0);
    let (_, mut next) = sent(c.poll(secs(100.0)));
    assert_eq!(
        c.poll(secs(100.5)),
        Poll::Wait(next),
        "nothing before the retransmission is due"
    );
    let mut previous = secs(100.0);
    let mut gaps = Vec::new();
    for _ in 0..8 {
        gaps.push(next - previous);
        previous = next;
        next = sent(c.poll(next)).1;
    }
    let expected = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0];
    for (gap, base) in gaps.iter().zip(expected) {
        let gap = gap.as_secs_f64();
        assert!(
            gap >= base && gap < base * 1.25,
            "gap {gap} for base {base}: {gaps:?}"
        );
    }
    assert_eq!(c.tally().discovers, 9);
}

#[test]
fn different_nodes_do_not_retransmit_in_step() {
    let mut a = Client::new(ClientConfig::new(MAC, 1), secs(0.0));
    let mut b = Client::new(ClientConfig::new(MAC, 0xdead_beef), secs(0.0));
    let (_, next_a) = sent(a.poll(secs(0.0)));
    let (_, next_b) = sent(b.poll(secs(0.0)));
    let (_, next_a) = sent(a.poll(next_a));
    let (_, next_b) = sent(b.poll(next_b));
    assert_ne!(next_a, next_b);
}

#[test]
fn nak_starts_over_with_a_new_transaction() {
    let mut c = client_at(100.0);
    let (discover, _) = sent(c.poll(secs(100.0)));
    c.handle(
        secs(100.1),
        &reply(MessageType::Offer, discover.xid(), OFFERED, vec![]),
    );
    let (request, _) = sent(c.poll(secs(100.1)));
    c.handle(
        secs(100.2),
        &reply(
            MessageType::Nak,
            request.xid(),
            Ipv4Addr::UNSPECIFIED,
            vec![],
        ),
    );
    assert_eq!(c.state_name(), "selecting");
    let (again, _) = sent(c.poll(secs(100.2)));
    assert_eq!(again.opts().msg_type(), Some(MessageType::Discover));
    assert_ne!(again.xid(), discover.xid());
    assert_eq!(c.tally().naks, 1);
    // The old transaction's replies are now someone else's.
    c.handle(
        secs(100.3),
        &reply(MessageType::Offer, discover.xid(), OFFERED, vec![]),
    );
    assert_eq!(c.state_name(), "selecting");
    c.handle(
        secs(100.3),
        &reply(MessageType::Offer, again.xid(), OFFERED, vec![]),
    );
    assert_eq!(c.state_name(), "requesting");
}

#[test]
fn unanswered_requests_start_over() {
    let mut c = client_at(0.0);
    let (discover, _) = sent(c.poll(secs(0.0)));
    c.handle(
        secs(0.1),
        &reply(MessageType::Offer, discover.xid(), OFFERED, vec![]),
    );
    let mut now = secs(0.1);
    for _ in 0..REQUESTS_PER_OFFER {
        let (request, next) = sent(c.poll(now));
        assert_eq!(request.opts().msg_type(), Some(MessageType::Request));
        now = next;
    }
    let (discover, _) = sent(c.poll(now));
    assert_eq!(discover.opts().msg_type(), Some(MessageType::Discover));
}

#[test]
fn foreign_and_broken_packets_are_ignored_and_counted() {
    let mut c = client_at(0.0);
    let (discover, _) = sent(c.poll(secs(0.0)));
    let xid = discover.xid();
    c.handle(secs(0.1), b"garbage");
    c.handle(
        secs(0.1),
        &reply(MessageType::Offer, xid ^ 1, OFFERED, vec![]),
    );
    let mut other_mac =
        Message::from_bytes(&reply(MessageType::Offer, xid, OFFERED, vec![])).unwrap();
    other_mac.set_chaddr(&[1, 2, 3, 4, 5, 6]);
    c.handle(secs(0.1), &other_mac.to_vec().unwrap());
    c.handle(secs(0.1), &discover.to_vec().unwrap());
    c.handle(secs(0.1), &reply(MessageType::Ack, xid, OFFERED, vec![]));
    c.handle(
        secs(0.1),
        &reply(MessageType::Offer, xid, Ipv4Addr::UNSPECIFIED, vec![]),
    );
    assert_eq!(c.state_name(), "selecting");
    assert_eq!(c.tally().ignored, 6);
    assert!(c
        .tally()
        .last_ignored
        .as_deref()
        .unwrap()
        .contains("unusable address"));

    // An ACK naming another server, or another address, is not ours to take.
    c.handle(secs(0.2), &reply(MessageType::Offer, xid, OFFERED, vec![]));
    let mut foreign = Message::from_bytes(&reply(MessageType::Ack, xid, OFFERED, vec![])).unwrap();
    foreign
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 9, 9, 9)));
    c.handle(secs(0.3), &foreign.to_vec().unwrap());
    c.handle(
        secs(0.3),
        &reply(MessageType::Ack, xid, Ipv4Addr::new(10, 5, 0, 51), vec![]),
    );
    assert_eq!(c.state_name(), "requesting");
}

#[test]
fn a_reply_that_makes_the_decoder_panic_is_ignored() {
    // Found by the `dhcp` fuzz target when the wire format was dhcproto's: a
    // bulk-leasequery option of the wrong length tripped an assertion inside it. Now it
    // is one more message that is not DHCP as the client reads it.
    let mut c = client_at(0.0);
    sent(c.poll(secs(0.0)));
    c.handle(secs(0.1), include_bytes!("testdata/decoder-panic.bin"));
    assert_eq!(c.tally().ignored, 1);
    let why = c.tally().last_ignored.clone().unwrap_or_default();
    assert!(why.starts_with("not DHCP: "), "{why}");
    assert_eq!(c.state_name(), "selecting");
}

#[test]
fn classless_routes_replace_the_router_option() {
    let mut c = client_at(0.0);
    let (discover, _) = sent(c.poll(secs(0.0)));
    c.handle(
        secs(0.1),
        &reply(MessageType::Offer, discover.xid(), OFFERED, vec![]),
    );
    sent(c.poll(secs(0.1)));
    let routes = vec![
        ("0.0.0.0/0".parse().unwrap(), Ipv4Addr::new(10, 5, 0, 254)),
        ("172.20.0.0/16".parse().unwrap(), Ipv4Addr::new(10, 5, 0, 9)),
    ];
    c.handle(
        secs(0.2),
        &reply(
            MessageType::Ack,
            discover.xid(),
            OFFERED,
            vec![
                DhcpOption::Router(vec![SERVER]),
                DhcpOption::ClasslessStaticRoute(routes),
            ],
        ),
    );
    let Poll::Bound(lease) = c.poll(secs(0.2)) else {
        panic!("not bound")
    };
    assert_eq!(lease.gateway, Some(Ipv4Addr::new(10, 5, 0, 254)));
    assert_eq!(lease.routes.len(), 2);
    assert_eq!(lease.routes[1].destination, Ipv4Addr::new(172, 20, 0, 0));
    assert_eq!(lease.routes[1].prefix_len, 16);
    // No mask from the server: the class default. No lease time: infinite.
    assert_eq!(lease.prefix_len, 8);
    assert_eq!((lease.lease_time_s, lease.renew_s), (None, None));
}

#[test]
fn init_reboot_asks_for_the_old_address_and_falls_back_on_nak_or_silence() {
    let previous = Ipv4Addr::new(10, 5, 0, 77);
    let mut config = ClientConfig::new(MAC, 7);
    config.previous = Some(previous);
    let mut c = Client::new(config.clone(), secs(0.0));
    let (request, _) = sent(c.poll(secs(0.0)));
    assert_eq!(request.opts().msg_type(), Some(MessageType::Request));
    assert_eq!(
        option(&request, OptionCode::RequestedIpAddress),
        Some(DhcpOption::RequestedIpAddress(previous))
    );
    assert_eq!(option(&request, OptionCode::ServerIdentifier), None);
    // The server agrees: bound at once, no DISCOVER.
    c.handle(
        secs(0.1),
        &reply(MessageType::Ack, request.xid(), previous, vec![]),
    );
    let Poll::Bound(lease) = c.poll(secs(0.1)) else {
        panic!("not bound")
    };
    assert_eq!((lease.address, lease.server), (previous, SERVER));

    // The network changed: NAK, then the whole DISCOVER exchange.
    let mut c = Client::new(config.clone(), secs(0.0));
    let (request, _) = sent(c.poll(secs(0.0)));
    c.handle(
        secs(0.1),
        &reply(
            MessageType::Nak,
            request.xid(),
            Ipv4Addr::UNSPECIFIED,
            vec![],
        ),
    );
    let (discover, _) = sent(c.poll(secs(0.1)));
    assert_eq!(discover.opts().msg_type(), Some(MessageType::Discover));
    assert_eq!(c.tally().naks, 1);

    // Nobody answers: after two tries, DISCOVER.
    let mut c = Client::new(config, secs(0.0));
    let (_, next) = sent(c.poll(secs(0.0)));
    let (_, next) = sent(c.poll(next));
    let (discover, _) = sent(c.poll(next));
    assert_eq!(discover.opts().msg_type(), Some(MessageType::Discover));
}
