//! Unit tests of the rtnetlink wire format: requests byte for byte as the kernel's uapi
//! headers lay them out, and answers built the same way read back.

use super::*;

fn ne16(v: u16) -> [u8; 2] {
    v.to_ne_bytes()
}

fn ne32(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

/// A message as the kernel would send it: header, payload, padding.
fn message(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&ne32(16 + payload.len() as u32));
    out.extend_from_slice(&ne16(kind));
    out.extend_from_slice(&ne16(0x2)); // NLM_F_MULTI
    out.extend_from_slice(&ne32(sequence));
    out.extend_from_slice(&ne32(4242));
    out.extend_from_slice(payload);
    out.resize((out.len() + 3) & !3, 0);
    out
}

fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&ne16(4 + value.len() as u16));
    out.extend_from_slice(&ne16(kind));
    out.extend_from_slice(value);
    out.resize((out.len() + 3) & !3, 0);
    out
}

#[test]
fn a_bridge_request_is_laid_out_as_the_uapi_headers_say() {
    let mut request = Request::new(
        RTM_NEWLINK,
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        7,
        &ifinfomsg(0, 0, 0),
    );
    request
        .string(IFLA_IFNAME, "zos")
        .attribute(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1])
        .u32(IFLA_MTU, 1500)
        .nested(IFLA_LINKINFO, |info| {
            info.string(IFLA_INFO_KIND, "bridge");
        });
    let bytes = request.finish();
    let mut expected = Vec::new();
    expected.extend_from_slice(&ne32(bytes.len() as u32));
    expected.extend_from_slice(&ne16(RTM_NEWLINK));
    expected.extend_from_slice(&ne16(0x1 | 0x4 | 0x400 | 0x200));
    expected.extend_from_slice(&ne32(7));
    expected.extend_from_slice(&ne32(0));
    expected.extend_from_slice(&[0; 16]);
    expected.extend(attribute(3, b"zos\0"));
    expected.extend(attribute(1, &[2, 0, 0, 0, 0, 1]));
    expected.extend(attribute(4, &ne32(1500)));
    expected.extend(attribute(18, &attribute(1, b"bridge\0")));
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), 16 + 16 + 8 + 12 + 8 + 16);
}

#[test]
fn a_route_request_names_family_table_protocol_scope_and_type() {
    let fixed = rtmsg(24, RouteProtocol::Dhcp, RT_SCOPE_LINK);
    assert_eq!(fixed, [2, 24, 0, 0, 254, 16, 253, 1, 0, 0, 0, 0]);
    assert_eq!(rtmsg(0, RouteProtocol::Boot, RT_SCOPE_UNIVERSE)[5], 3);
    let address = ifaddrmsg(AF_INET, 24, RT_SCOPE_UNIVERSE, 3);
    assert_eq!(&address[..4], &[2, 24, 0, 0]);
    assert_eq!(&address[4..], &ne32(3));
}

fn link_payload(index: u32, link_type: u16, flags: u32, attributes: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = vec![0, 0];
    payload.extend_from_slice(&ne16(link_type));
    payload.extend_from_slice(&ne32(index));
    payload.extend_from_slice(&ne32(flags));
    payload.extend_from_slice(&ne32(0));
    for a in attributes {
        payload.extend_from_slice(a);
    }
    payload
}

#[test]
fn a_dump_reads_back_links_and_ends_at_done() {
    let veth = link_payload(
        4,
        1,
        0x1 | 0x1_0000,
        &[
            attribute(3, b"eth0\0"),
            attribute(1, &[0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            attribute(4, &ne32(9000)),
            attribute(10, &ne32(7)),
            // The kernel marks nested attributes with NLA_F_NESTED (0x8000).
            attribute(18 | 0x8000, &attribute(1, b"veth\0")),
        ],
    );
    let lo = link_payload(1, 772, 0x8, &[attribute(3, b"lo\0")]);
    let mut datagram = message(RTM_NEWLINK, 9, &veth);
    datagram.extend(message(RTM_NEWLINK, 9, &lo));
    datagram.extend(message(NLMSG_DONE, 9, &ne32(0)));
    let answers = answers(&datagram).unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[2], (9, Answer::Done));
    let Answer::Message(RTM_NEWLINK, payload) = answers[0].1 else {
        panic!("{:?}", answers[0]);
    };
    let eth0 = link(payload).unwrap();
    assert_eq!(eth0.name, "eth0");
    assert_eq!(eth0.index, 4);
    assert_eq!(eth0.mac, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    assert!(eth0.up && eth0.carrier && eth0.ethernet && !eth0.loopback);
    assert_eq!(eth0.mtu, Some(9000));
    assert_eq!(eth0.master, Some(7));
    assert_eq!(eth0.kind.as_deref(), Some("veth"));
    let Answer::Message(_, payload) = answers[1].1 else {
        panic!("{:?}", answers[1]);
    };
    let lo = link(payload).unwrap();
    assert!(lo.loopback && !lo.up && !lo.ethernet);
    assert_eq!((lo.kind, lo.mac), (None, None));
}

#[test]
fn errors_and_acknowledgements() {
    let mut eexist = (-17i32).to_ne_bytes().to_vec();
    eexist.extend_from_slice(&[0; 16]); // the request's header, echoed
    let mut datagram = message(NLMSG_ERROR, 3, &eexist);
    datagram.extend(message(NLMSG_ERROR, 4, &[0; 20]));
    assert_eq!(
        answers(&datagram).unwrap(),
        vec![(3, Answer::Status(Some(17))), (4, Answer::Status(None))]
    );
    assert!(answers(&message(NLMSG_ERROR, 3, &[1, 2])).is_err());
}

#[test]
fn addresses_of_both_families_and_their_scope() {
    let mut v4 = ifaddrmsg(AF_INET, 24, 0, 2).to_vec();
    v4.extend(attribute(IFA_ADDRESS, &[10, 0, 0, 9]));
    v4.extend(attribute(IFA_LOCAL, &[10, 0, 0, 5]));
    v4.extend(attribute(IFA_BROADCAST, &[10, 0, 0, 255]));
    let a = address(&v4).unwrap().unwrap();
    assert_eq!(a.address, "10.0.0.5".parse::<IpAddr>().unwrap());
    assert_eq!((a.index, a.prefix_len, a.global), (2, 24, true));
    let mut v6 = ifaddrmsg(10, 64, 253, 2).to_vec();
    let fe80: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
    v6.extend(attribute(IFA_ADDRESS, &fe80.octets()));
    let a = address(&v6).unwrap().unwrap();
    assert_eq!(a.address, IpAddr::V6(fe80));
    assert!(!a.global);
    let mut site = ifaddrmsg(10, 64, 200, 2).to_vec();
    site.extend(attribute(
        IFA_ADDRESS,
        &[0xfe, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ));
    assert!(address(&site).unwrap().unwrap().global);
    // Another family, or no address at all: nothing.
    assert_eq!(address(&ifaddrmsg(17, 0, 0, 2)).unwrap(), None);
}

#[test]
fn damaged_answers_are_errors_not_panics() {
    let good = message(
        RTM_NEWLINK,
        1,
        &link_payload(2, 1, 0, &[attribute(3, b"eth0\0")]),
    );
    // Every truncation and every single-byte change of a good answer.
    for end in 0..good.len() {
        let _ = answers(&good[..end]);
    }
    for at in 0..good.len() {
        for value in [0u8, 1, 3, 0x7f, 0xff] {
            let mut bad = good.clone();
            bad[at] = value;
            if let Ok(list) = answers(&bad) {
                for (_, answer) in list {
                    if let Answer::Message(_, payload) = answer {
                        let _ = link(payload);
                        let _ = address(payload);
                    }
                }
            }
        }
    }
    // A message longer than the datagram, an attribute longer than its message.
    let mut long = good.clone();
    long[..4].copy_from_slice(&ne32(1000));
    assert!(answers(&long).is_err());
    let mut payload = link_payload(2, 1, 0, &[]);
    payload.extend_from_slice(&ne16(200));
    payload.extend_from_slice(&ne16(3));
    assert!(link(&payload).is_err());
    assert!(link(&[0; 8]).is_err());
}
