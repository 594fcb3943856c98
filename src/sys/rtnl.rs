//! The route socket (`NETLINK_ROUTE`): requests to the kernel and its answers, one
//! datagram at a time. The messages themselves are built and read in `net::rtnl_wire`.

use super::packet::{bind, new_socket, received, send_to, wait_readable};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::libc;

/// A bound route socket in the current network namespace.
pub struct RouteSocket {
    fd: OwnedFd,
}

impl RouteSocket {
    /// Opens the socket; the kernel picks its port id.
    pub fn open() -> io::Result<RouteSocket> {
        let fd = new_socket(libc::AF_NETLINK, libc::NETLINK_ROUTE)?;
        bind(&fd, &kernel())?;
        Ok(RouteSocket { fd })
    }

    /// Sends one request to the kernel.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        send_to(&self.fd, message, &kernel())
    }

    /// One datagram into `buf`, waiting at most `timeout`; `Ok(None)` when the time ran
    /// out.
    pub fn receive(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        if !wait_readable(&self.fd, timeout)? {
            return Ok(None);
        }
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        received(n)
    }
}

/// The kernel's address (port 0, no groups); also the "pick a port for me" bind address.
fn kernel() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value before the family.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address
}
