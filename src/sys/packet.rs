//! Sockets for DHCP. Packet sockets (`AF_PACKET`, `SOCK_DGRAM`) before a link has an
//! address: IPv4 packets in and out of one link, the Ethernet header added and stripped
//! by the kernel. A UDP socket tied to one link (`SO_BINDTODEVICE`) to renew a lease once
//! the address is there.
//! Replies arrive whatever the link's addresses, routes or `rp_filter` say. Each received
//! packet says whether its transport checksum is filled in: a packet from this host over a
//! veth or a virtio link may still carry a partial checksum that the hardware (or the
//! peer) would have completed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::libc;

const ETH_P_IP: u16 = 0x0800;

/// A packet socket bound to one link, for IPv4 only.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

fn link_address(ifindex: i32, destination: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_IP.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    addr.sll_addr[..6].copy_from_slice(&destination);
    addr
}

impl PacketSocket {
    /// Opens a socket for the link with index `ifindex`.
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        let ifindex = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "link index out of range"))?;
        let fd = new_socket(libc::AF_PACKET, i32::from(ETH_P_IP.to_be()))?;
        bind(&fd, &link_address(ifindex, [0; 6]))?;
        set_int_option(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends an IPv4 packet to the Ethernet broadcast address.
    pub fn send_broadcast(&self, packet: &[u8]) -> io::Result<()> {
        send_to(&self.fd, packet, &link_address(self.ifindex, [0xff; 6]))
    }

    /// Receives one packet that came in on the link (not one this host sent) into `buf`,
    /// waiting at most `timeout`. `Ok(None)` when the time ran out.
    pub fn receive(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<Received>> {
        if !wait_readable(&self.fd, timeout)? {
            return Ok(None);
        }
        let mut from = link_address(0, [0; 6]);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // u64 words keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: msghdr is plain data; all-zero is a valid empty value.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        message.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `message` refers to a live buffer of the stated size
        // (`from`, `iov` over `buf`, `control`); the kernel writes within them.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut message, libc::MSG_DONTWAIT) };
        let Some(n) = received(n)? else {
            return Ok(None);
        };
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        let mut checksum_ready = true;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
        // `msg_controllen`; the auxdata payload is read unaligned.
        unsafe {
            let mut header = libc::CMSG_FIRSTHDR(&message);
            while !header.is_null() {
                if (*header).cmsg_level == libc::SOL_PACKET
                    && (*header).cmsg_type == libc::PACKET_AUXDATA
                {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                    checksum_ready = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY == 0;
                }
                header = libc::CMSG_NXTHDR(&message, header);
            }
        }
        Ok(Some(Received {
            len: n,
            checksum_ready,
        }))
    }
}

/// The result of a non-blocking receive call: its length, `None` when nothing was there,
/// or the error.
pub(super) fn received(n: isize) -> io::Result<Option<usize>> {
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::WouldBlock {
        Ok(None)
    } else {
        Err(error)
    }
}

/// Waits until `fd` has something to read; false when `timeout` ran out (or a signal
/// came).
pub(super) fn wait_readable(fd: &OwnedFd, timeout: Duration) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, count 1.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        return if error.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(error)
        };
    }
    Ok(ready > 0)
}

/// A datagram socket of `domain` for `protocol`, closed on exec.
pub(super) fn new_socket(domain: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) with integer arguments; the result is checked.
    let raw = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, protocol) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A socket address the kernel reads in bind(2).
pub(super) trait SocketAddress {}
impl SocketAddress for libc::sockaddr_ll {}
impl SocketAddress for libc::sockaddr_in {}
impl SocketAddress for libc::sockaddr_nl {}

pub(super) fn bind<A: SocketAddress>(fd: &OwnedFd, address: &A) -> io::Result<()> {
    // SAFETY: `address` is a live sockaddr_ll, sockaddr_in or sockaddr_nl (the only
    // SocketAddress types)
    // and the length passed is its size; the kernel only reads it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (address as *const A).cast(),
            std::mem::size_of::<A>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `message` to `address` (one of the [`SocketAddress`] types).
pub(super) fn send_to<A: SocketAddress>(
    fd: &OwnedFd,
    message: &[u8],
    address: &A,
) -> io::Result<()> {
    // SAFETY: `message` is readable for its length; `address` is a live socket address of
    // one of the SocketAddress types and the length passed is its size; the kernel only
    // reads both.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            (address as *const A).cast(),
            std::mem::size_of::<A>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn set_int_option(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: an int option; the pointer and size are those of `value`.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket on `0.0.0.0:port` that sends and receives only through `link`, with
/// broadcast allowed (several links may each have one on the same port).
pub fn udp_socket_on_link(link: &str, port: u16) -> io::Result<std::net::UdpSocket> {
    let fd = new_socket(libc::AF_INET, 0)?;
    set_int_option(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set_int_option(&fd, libc::SOL_SOCKET, libc::SO_BROADCAST, 1)?;
    // SAFETY: SO_BINDTODEVICE reads the name's bytes for the length given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            link.as_ptr().cast(),
            link.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    bind(&fd, &address)?;
    Ok(std::net::UdpSocket::from(fd))
}

/// One received packet.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes written into the buffer.
    pub len: usize,
    /// False when the transport checksum was left for offload (not to be checked).
    pub checksum_ready: bool,
}
