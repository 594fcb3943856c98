//! The uevent socket (`NETLINK_KOBJECT_UEVENT`): group 1 carries device events as the
//! kernel sends them (only messages from the kernel itself, netlink port 0, are returned);
//! group 2 carries the events udevd has finished (to know when it has settled).

use super::packet::{bind, new_socket, received, set_int_option, wait_readable};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::libc;

/// Receive buffer asked for: a burst of events while modules load must not overflow it
/// (udevd and mdev ask for 128 MiB; a few MiB hold thousands of events).
const RECEIVE_BUFFER: libc::c_int = 16 << 20;

/// A bound uevent socket.
pub struct UeventSocket {
    fd: OwnedFd,
    group: u32,
}

/// The kernel's uevent multicast group.
pub const KERNEL_GROUP: u32 = 1;
/// udevd's group: events it has processed, re-sent with a `libudev` header.
pub const UDEV_GROUP: u32 = 2;

impl UeventSocket {
    /// Opens and binds the socket; events from now on are queued.
    pub fn open() -> io::Result<UeventSocket> {
        Self::open_group(KERNEL_GROUP)
    }

    /// The socket for `group`: [`KERNEL_GROUP`] (events as the kernel sends them) or
    /// [`UDEV_GROUP`] (events udevd has finished processing).
    pub fn open_group(group: u32) -> io::Result<UeventSocket> {
        let fd = new_socket(libc::AF_NETLINK, libc::NETLINK_KOBJECT_UEVENT)?;
        // SO_RCVBUFFORCE needs CAP_NET_ADMIN; the plain option is capped but still helps.
        if set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER).is_err() {
            let _ = set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER);
        }
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value before the fields.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = group;
        bind(&fd, &address)?;
        Ok(UeventSocket { fd, group })
    }

    /// One message from the kernel into `buf`, waiting at most `timeout`; `Ok(None)` when
    /// the time ran out or the message was not the kernel's. `ENOBUFS` means events were
    /// lost (the caller rescans).
    pub fn receive(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        if !wait_readable(&self.fd, timeout)? {
            return Ok(None);
        }
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `buf` is writable for its length; `from` is a sockaddr_nl and `from_len`
        // its size, which the kernel updates.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut from_len,
            )
        };
        let Some(n) = received(n)? else {
            return Ok(None);
        };
        if self.group == KERNEL_GROUP && from.nl_pid != 0 {
            return Ok(None); // not from the kernel
        }
        Ok(Some(n))
    }
}
