//! IPv4 + UDP framing for DHCP on a packet socket, where the kernel adds and strips only
//! the Ethernet header. Pure: building a broadcast datagram, and finding a UDP payload for
//! a given port in a received IPv4 packet (header checks, checksums, no fragments).

use std::net::Ipv4Addr;

/// DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// DHCP client port.
pub const CLIENT_PORT: u16 = 68;

const IPV4_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const PROTO_UDP: u8 = 17;

/// An IPv4 packet carrying `payload` in UDP from `source:source_port` to
/// `destination:destination_port` (TTL 64, don't-fragment, both checksums set).
pub fn udp_packet(
    source: Ipv4Addr,
    source_port: u16,
    destination: Ipv4Addr,
    destination_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = UDP_HEADER + payload.len();
    let total = IPV4_HEADER + udp_len;
    let mut packet = Vec::with_capacity(total);
    packet.extend_from_slice(&[0x45, 0]); // version 4, 5-word header; TOS 0
    packet.extend_from_slice(&(total as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0]); // id 0; DF, offset 0
    packet.extend_from_slice(&[64, PROTO_UDP, 0, 0]); // TTL, protocol, checksum (below)
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&destination.octets());
    let header_sum = checksum(&[&packet[..IPV4_HEADER]]);
    packet[10..12].copy_from_slice(&header_sum.to_be_bytes());
    packet.extend_from_slice(&source_port.to_be_bytes());
    packet.extend_from_slice(&destination_port.to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    let udp_sum = match udp_checksum(source, destination, &packet[IPV4_HEADER..]) {
        0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
        sum => sum,
    };
    packet[IPV4_HEADER + 6..IPV4_HEADER + 8].copy_from_slice(&udp_sum.to_be_bytes());
    packet
}

/// A UDP datagram found in a received IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The sender's address.
    pub source: Ipv4Addr,
    /// The sender's port.
    pub source_port: u16,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// The UDP payload of `packet` when it is a well-formed, unfragmented IPv4/UDP packet to
/// `port` with valid checksums; `None` otherwise (the caller just ignores it). The UDP
/// checksum is checked only when `udp_checksum_ready` (the kernel says whether it was left
/// for offload).
pub fn udp_to_port(packet: &[u8], port: u16, udp_checksum_ready: bool) -> Option<Datagram<'_>> {
    let version_ihl = *packet.first()?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < IPV4_HEADER || packet.len() < header_len {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total < header_len + UDP_HEADER || total > packet.len() {
        return None;
    }
    let fragment = u16::from_be_bytes([packet[6], packet[7]]);
    if fragment & 0x3fff != 0 || packet[9] != PROTO_UDP {
        return None; // more-fragments set or an offset: DHCP replies are never fragmented here
    }
    if checksum(&[&packet[..header_len]]) != 0 {
        return None;
    }
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let udp = &packet[header_len..total];
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if udp_len < UDP_HEADER || udp_len > udp.len() {
        return None;
    }
    let udp = &udp[..udp_len];
    if u16::from_be_bytes([udp[2], udp[3]]) != port {
        return None;
    }
    let sent_sum = u16::from_be_bytes([udp[6], udp[7]]);
    if udp_checksum_ready && sent_sum != 0 && udp_checksum(source, destination, udp) != 0 {
        return None;
    }
    Some(Datagram {
        source,
        source_port: u16::from_be_bytes([udp[0], udp[1]]),
        payload: &udp[UDP_HEADER..],
    })
}

/// UDP checksum over the pseudo-header and `udp` (header + payload, checksum field as it
/// is): 0 when a received datagram's checksum is right.
fn udp_checksum(source: Ipv4Addr, destination: Ipv4Addr, udp: &[u8]) -> u16 {
    let length = (udp.len() as u16).to_be_bytes();
    let pseudo = [0, PROTO_UDP, length[0], length[1]];
    checksum(&[&source.octets(), &destination.octets(), &pseudo, udp])
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`, each of even
/// length except possibly the last.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut words = part.chunks_exact(2);
        for word in &mut words {
            sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_packets_parse_back() {
        let payload = b"hello dhcp, odd length";
        let packet = udp_packet(
            Ipv4Addr::new(10, 0, 0, 1),
            SERVER_PORT,
            Ipv4Addr::BROADCAST,
            CLIENT_PORT,
            payload,
        );
        assert_eq!(packet.len(), 20 + 8 + payload.len());
        let datagram = udp_to_port(&packet, CLIENT_PORT, true).unwrap();
        assert_eq!(datagram.payload, payload);
        assert_eq!(datagram.source, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(datagram.source_port, SERVER_PORT);
        assert_eq!(
            udp_to_port(&packet, SERVER_PORT, true),
            None,
            "another port"
        );
    }

    #[test]
    fn damaged_packets_are_refused() {
        let packet = udp_packet(
            Ipv4Addr::UNSPECIFIED,
            CLIENT_PORT,
            Ipv4Addr::BROADCAST,
            CLIENT_PORT,
            &[1, 2, 3, 4],
        );
        for i in 0..packet.len() {
            let mut bad = packet.clone();
            bad[i] ^= 0x10;
            // Every single-bit flip is caught by a check or a checksum, or lands in the
            // payload (caught by the UDP checksum).
            assert_eq!(
                udp_to_port(&bad, CLIENT_PORT, true),
                None,
                "flip at byte {i}"
            );
        }
        for len in 0..packet.len() {
            assert_eq!(
                udp_to_port(&packet[..len], CLIENT_PORT, true),
                None,
                "cut at {len}"
            );
        }
        // Trailing Ethernet padding is fine.
        let mut padded = packet.clone();
        padded.extend_from_slice(&[0; 18]);
        assert!(udp_to_port(&padded, CLIENT_PORT, true).is_some());
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3: the sum of these words is 0xddf2, so the checksum is !0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
    }
}
