//! Any bytes as a DHCP reply, as an IPv4 packet off a packet socket, and as the kernel's
//! `ip=`: no panic; a payload found in a packet lies inside it; a lease read from any
//! message is sane; the client keeps a valid state whatever it is fed.
#![no_main]

use initagent::net::dhcp_wire::Message;
use initagent::net::dhcp::{Client, ClientConfig, Poll};
use initagent::net::frame::{udp_to_port, CLIENT_PORT};
use initagent::net::{ipconfig, lease::Lease};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    for checksum_ready in [true, false] {
        if let Some(datagram) = udp_to_port(data, CLIENT_PORT, checksum_ready) {
            assert!(datagram.payload.len() + 28 <= data.len());
        }
    }
    if let Ok(message) = Message::from_bytes(data) {
        let lease = Lease::from_ack(&message, message.siaddr(), vec![1, 2, 3]);
        assert!(lease.prefix_len <= 32);
        assert!(lease.routes.iter().all(|r| r.prefix_len <= 32));
    }
    // The client in each state it can be in when a packet arrives.
    let mac = [2, 0, 0, 0, 0, 1];
    for previous in [None, Some(std::net::Ipv4Addr::new(10, 0, 0, 9))] {
        let mut config = ClientConfig::new(mac, 0x0102_0304);
        config.previous = previous;
        let mut client = Client::new(config, Duration::ZERO);
        let _ = client.poll(Duration::ZERO);
        client.handle(Duration::from_millis(5), data);
        client.handle(Duration::from_millis(6), data);
        match client.poll(Duration::from_millis(7)) {
            Poll::Send(packet, next) => {
                assert!(!packet.is_empty());
                assert!(next >= Duration::from_millis(7));
            }
            Poll::Wait(next) => assert!(next > Duration::from_millis(7)),
            Poll::Bound(lease) => assert!(lease.prefix_len <= 32),
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ipconfig::IpParam::Static(config)) = ipconfig::parse(text) {
            assert!(config.prefix_len <= 32);
        }
    }
});
