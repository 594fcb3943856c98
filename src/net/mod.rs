//! Network bring-up: the kernel's `ip=` (`ipconfig`), a pure DHCPv4 client (`dhcp`) over
//! IPv4/UDP framing for packet sockets (`frame`), leases and the zos choice rule (`lease`),
//! candidate links (`select`), rtnetlink (`netlink`), putting a configuration on a link
//! (`apply`) and the `net up` driver (`up`).

pub mod apply;
pub mod dhcp;
pub mod dhcp_wire;
pub mod frame;
pub mod ipconfig;
pub mod keep;
pub mod lease;
pub mod netlink;
pub mod probe;
pub mod reach;
pub mod renew;
pub mod rtnl_wire;
pub mod select;
pub mod up;
