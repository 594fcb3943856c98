//! Unit tests of the DHCPv4 wire format: every option the client uses round-trips, the
//! RFC 3442 example encodes as the RFC writes it, long options split and join, and no
//! truncation or changed byte of a real reply makes the decoder panic.

use super::*;

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn ack() -> Message {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new_with_id(
        0xdead_beef,
        zero,
        ip(10, 0, 2, 15),
        ip(10, 0, 2, 2),
        zero,
        &MAC,
    );
    message.set_opcode(Opcode::BootReply);
    let options = message.opts_mut();
    for option in [
        DhcpOption::MessageType(MessageType::Ack),
        DhcpOption::ServerIdentifier(ip(10, 0, 2, 2)),
        DhcpOption::SubnetMask(ip(255, 255, 255, 0)),
        DhcpOption::Router(vec![ip(10, 0, 2, 2), ip(10, 0, 2, 3)]),
        DhcpOption::DomainNameServer(vec![ip(10, 0, 2, 3)]),
        DhcpOption::DomainName("grid.test".into()),
        DhcpOption::Hostname("node-7".into()),
        DhcpOption::InterfaceMtu(9000),
        DhcpOption::AddressLeaseTime(86400),
        DhcpOption::Renewal(43200),
        DhcpOption::Rebinding(75600),
        DhcpOption::ClasslessStaticRoute(vec![
            ("0.0.0.0/0".parse().unwrap(), ip(10, 0, 2, 254)),
            ("172.20.0.0/16".parse().unwrap(), ip(10, 0, 2, 9)),
        ]),
        DhcpOption::Other(43, vec![1, 2, 3]),
    ] {
        options.insert(option);
    }
    message
}

#[test]
fn every_option_round_trips_and_the_header_is_bootp() {
    let message = ack();
    let bytes = message.to_vec().unwrap();
    assert_eq!(
        bytes[..4],
        [2, 1, 6, 0],
        "reply, Ethernet, 6-byte address, no hops"
    );
    assert_eq!(bytes[4..8], 0xdead_beefu32.to_be_bytes());
    assert_eq!(bytes[16..20], [10, 0, 2, 15]);
    assert_eq!(bytes[28..34], MAC);
    assert_eq!(bytes[236..240], [99, 130, 83, 99]);
    assert_eq!(
        bytes[240..243],
        [53, 1, 5],
        "the message type first, as inserted"
    );
    let back = Message::from_bytes(&bytes).unwrap();
    assert_eq!(back, message);
    assert_eq!(back.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(
        back.opts().get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(9000))
    );
}

#[test]
fn requests_are_padded_to_300_bytes_and_flags_say_broadcast() {
    let zero = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new_with_id(7, zero, zero, zero, zero, &MAC);
    message.set_flags(Flags::default().set_broadcast());
    message.set_secs(3);
    message
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    message
        .opts_mut()
        .insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::ClasslessStaticRoute,
            OptionCode::Other(252),
        ]));
    let bytes = message.to_vec().unwrap();
    assert_eq!(bytes.len(), 300);
    assert_eq!(bytes[0], 1);
    assert_eq!(bytes[8..12], [0, 3, 0x80, 0]);
    assert_eq!(
        bytes[240..252],
        [53, 1, 1, 55, 3, 1, 121, 252, 255, 0, 0, 0]
    );
    let back = Message::from_bytes(&bytes).unwrap();
    assert!(back.flags().broadcast());
    assert_eq!(back, message);
    // Inserting a code again replaces it in place.
    message
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    assert_eq!(message.to_vec().unwrap()[240..243], [53, 1, 3]);
}

#[test]
fn classless_routes_as_rfc_3442_writes_them() {
    // The RFC's example: 10.17/16 via 10.27.129.1 is "16 10 17 10 27 129 1"; a default
    // route is "0" and the router.
    let routes = vec![
        (
            "10.17.0.0/16".parse::<Ipv4Net>().unwrap(),
            ip(10, 27, 129, 1),
        ),
        ("0.0.0.0/0".parse().unwrap(), ip(10, 0, 0, 1)),
        ("10.229.0.128/25".parse().unwrap(), ip(10, 229, 0, 1)),
    ];
    let payload = DhcpOption::ClasslessStaticRoute(routes.clone()).payload();
    assert_eq!(
        payload,
        [16, 10, 17, 10, 27, 129, 1, 0, 10, 0, 0, 1, 25, 10, 229, 0, 128, 10, 229, 0, 1]
    );
    assert_eq!(classless(&payload).unwrap(), routes);
    assert!(classless(&[33, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(classless(&[24, 10, 0, 0, 10, 0]).is_err(), "cut short");
    // Host bits are cleared.
    let net: Ipv4Net = "10.1.2.3/8".parse().unwrap();
    assert_eq!((net.network(), net.prefix_len()), (ip(10, 0, 0, 0), 8));
    assert!("10.0.0.0/33".parse::<Ipv4Net>().is_err());
}

#[test]
fn long_options_are_split_and_joined() {
    let mut message = ack();
    let long = "x".repeat(300);
    message
        .opts_mut()
        .insert(DhcpOption::DomainName(long.clone()));
    let bytes = message.to_vec().unwrap();
    let back = Message::from_bytes(&bytes).unwrap();
    assert_eq!(
        back.opts().get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName(long))
    );
}

#[test]
fn broken_messages_are_errors_not_panics() {
    let good = ack().to_vec().unwrap();
    assert!(Message::from_bytes(&good[..239]).is_err());
    let mut bootp = good.clone();
    bootp[236] = 0;
    assert!(Message::from_bytes(&bootp)
        .unwrap_err()
        .0
        .contains("cookie"));
    let mut op = good.clone();
    op[0] = 3;
    assert!(Message::from_bytes(&op).is_err());
    // A subnet mask of 3 bytes, a message type of 9, an option past the end.
    for (option, says) in [
        (&[1u8, 3, 255, 255, 0][..], "option 1"),
        (&[53, 1, 9][..], "message type 9"),
        (&[3, 8, 10, 0][..], "runs past"),
    ] {
        let mut bad = good[..240].to_vec();
        bad.extend_from_slice(option);
        let error = Message::from_bytes(&bad).unwrap_err().0;
        assert!(error.contains(says), "{error}");
    }
    // Every truncation and many single-byte changes of a real reply.
    for end in 0..good.len() {
        let _ = Message::from_bytes(&good[..end]);
    }
    for at in 0..good.len() {
        for value in [0u8, 1, 0x20, 0x7f, 0xff] {
            let mut bad = good.clone();
            bad[at] = value;
            if let Ok(message) = Message::from_bytes(&bad) {
                let _ = message.to_vec();
            }
        }
    }
}
