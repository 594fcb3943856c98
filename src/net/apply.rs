//! Putting a chosen configuration on a link: MTU, address, routes, `/etc/resolv.conf`
//! (atomically, only when it changes), the lease file for the service that renews it, and
//! IPv6 router advertisements. Also: is an earlier run's lease still in place?

use super::ipconfig::StaticConfig;
use super::lease::{Lease, Route};
use super::netlink::{mac_text, Link, Rtnl};
use super::rtnl_wire::RouteProtocol;
use super::up::UpOptions;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where lease files are written.
pub const RUN_DIR: &str = crate::rundir::LEASES;

/// A lease as handed over to the renewing service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseFile {
    /// The link it is on.
    pub link: String,
    /// The link's MAC.
    pub mac: String,
    /// When it was granted, seconds since the Unix epoch (wall clock).
    pub obtained_unix: u64,
    /// When it was granted, monotonic microseconds since boot.
    pub obtained_monotonic_us: u64,
    /// The lease.
    pub lease: Lease,
}

/// What was put on the link.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// `address/prefix`.
    pub address: String,
    /// Routes installed, as `destination/prefix via gateway`.
    pub routes: Vec<String>,
    /// MTU set, if any.
    pub mtu: Option<u32>,
    /// Name servers written to the resolver file.
    pub dns: Vec<String>,
    /// The resolver file changed.
    pub resolv_conf_written: bool,
    /// The lease file, when DHCP was used.
    pub lease_file: Option<PathBuf>,
    /// Global IPv6 addresses on the link when the step ended (SLAAC).
    pub ipv6: Vec<String>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The path of a link's lease file.
pub fn lease_path(run_dir: &Path, link: &str) -> PathBuf {
    run_dir.join(format!("{link}.json"))
}

/// Reads a lease file.
pub fn read_lease(path: &Path) -> Result<LeaseFile, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: not a lease file: {e}", path.display()))
}

/// The lease of an earlier run when it is still in force: its file names this link and
/// MAC, it has not expired, and its address is still on the link.
pub fn still_bound(rtnl: &mut Rtnl, run_dir: &Path, link: &Link) -> Option<Lease> {
    let file = read_lease(&lease_path(run_dir, &link.name)).ok()?;
    if Some(&file.mac) != link.mac.as_ref().map(mac_text).as_ref() {
        return None;
    }
    if let Some(seconds) = file.lease.lease_time_s {
        if file.obtained_unix.saturating_add(u64::from(seconds)) <= now_unix() {
            return None;
        }
    }
    let present = rtnl.addresses().ok()?.iter().any(|a| {
        a.index == link.index
            && a.address == IpAddr::V4(file.lease.address)
            && a.prefix_len == file.lease.prefix_len
    });
    present.then_some(file.lease)
}

/// The address an earlier run's lease gave this link (same MAC), expired or not: the
/// client asks for it again first.
pub fn previous_address(run_dir: &Path, link: &Link) -> Option<Ipv4Addr> {
    let file = read_lease(&lease_path(run_dir, &link.name)).ok()?;
    (Some(&file.mac) == link.mac.as_ref().map(mac_text).as_ref()).then_some(file.lease.address)
}

/// The bridge of the zos layout.
pub const ZOS_BRIDGE: &str = "zos";

/// zos's layout for `nic`: bridge `zos` with the NIC's MAC (the DHCP identity stays the
/// one iPXE used), the NIC enslaved with IPv6 off, both up. Returns the bridge, where the
/// address goes. Already in place is success.
pub fn zos_bridge(rtnl: &mut Rtnl, nic: &Link) -> Result<Link, String> {
    let mac = nic
        .mac
        .ok_or_else(|| format!("{}: no hardware address for the bridge", nic.name))?;
    rtnl.add_bridge(ZOS_BRIDGE, mac)
        .map_err(|e| e.to_string())?;
    let bridge = rtnl
        .link(ZOS_BRIDGE)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("bridge {ZOS_BRIDGE} vanished after it was made"))?;
    let _ = std::fs::write(
        Path::new("/proc/sys/net/ipv6/conf")
            .join(&nic.name)
            .join("disable_ipv6"),
        "1",
    );
    enable_slaac(ZOS_BRIDGE);
    if nic.master != Some(bridge.index) {
        rtnl.set_master(nic, &bridge).map_err(|e| e.to_string())?;
    }
    rtnl.set_up(nic).map_err(|e| e.to_string())?;
    rtnl.set_up(&bridge).map_err(|e| e.to_string())?;
    Ok(bridge)
}

/// Turns on router advertisements and SLAAC for a link (best effort: a kernel without
/// IPv6 just has no such files).
pub fn enable_slaac(link: &str) {
    let dir = Path::new("/proc/sys/net/ipv6/conf").join(link);
    for (name, value) in [("disable_ipv6", "0"), ("accept_ra", "1"), ("autoconf", "1")] {
        let _ = std::fs::write(dir.join(name), value);
    }
}

/// Global IPv6 addresses on the link, waiting for one until `deadline`.
fn ipv6_addresses(rtnl: &mut Rtnl, link: &Link, deadline: Instant) -> Vec<String> {
    loop {
        let found: Vec<String> = rtnl
            .addresses()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.index == link.index && a.global && a.address.is_ipv6())
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect();
        if !found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Installs `routes` on `link` with `address/prefix_len`; a gateway outside the subnet
/// first gets an on-link host route (RFC 3442 allows such gateways).
fn install_routes(
    rtnl: &mut Rtnl,
    link: &Link,
    address: Ipv4Addr,
    prefix_len: u8,
    routes: &[Route],
    protocol: RouteProtocol,
) -> Result<Vec<String>, String> {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    let on_subnet = |ip: Ipv4Addr| u32::from(ip) & mask == u32::from(address) & mask;
    let mut done = Vec::new();
    for route in routes {
        if !route.gateway.is_unspecified() && !on_subnet(route.gateway) {
            rtnl.replace_route(link, route.gateway, 32, Ipv4Addr::UNSPECIFIED, protocol)
                .map_err(|e| e.to_string())?;
        }
        rtnl.replace_route(
            link,
            route.destination,
            route.prefix_len,
            route.gateway,
            protocol,
        )
        .map_err(|e| e.to_string())?;
        done.push(format!(
            "{}/{} via {}",
            route.destination, route.prefix_len, route.gateway
        ));
    }
    Ok(done)
}

/// Writes the resolver file when its content changes; true when it was written.
fn write_resolv_conf(
    path: &Path,
    origin: &str,
    domain: Option<&str>,
    dns: &[Ipv4Addr],
) -> Result<bool, String> {
    if dns.is_empty() {
        return Ok(false);
    }
    let mut text = format!("# written by initagent net up ({origin})\n");
    if let Some(domain) = domain {
        text.push_str(&format!("search {domain}\n"));
    }
    for server in dns {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    crate::fsutil::write_atomic(path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(true)
}

/// Applies a DHCP lease to `link`; writes its lease file unless it was `reused` as it is.
pub fn apply_lease(
    rtnl: &mut Rtnl,
    options: &UpOptions,
    link: &Link,
    lease: &Lease,
    reused: bool,
    ipv6_deadline: Instant,
) -> Result<Applied, String> {
    let mut applied = Applied {
        address: format!("{}/{}", lease.address, lease.prefix_len),
        ..Applied::default()
    };
    if let Some(mtu) = lease.mtu.map(u32::from) {
        if link.mtu != Some(mtu) {
            rtnl.set_mtu(link, mtu).map_err(|e| e.to_string())?;
        }
        applied.mtu = Some(mtu);
    }
    rtnl.add_address(link, lease.address, lease.prefix_len)
        .map_err(|e| e.to_string())?;
    applied.routes = install_routes(
        rtnl,
        link,
        lease.address,
        lease.prefix_len,
        &lease.routes,
        RouteProtocol::Dhcp,
    )?;
    applied.dns = lease.dns.iter().map(ToString::to_string).collect();
    let origin = format!("DHCP on {} from {}", link.name, lease.server);
    applied.resolv_conf_written = write_resolv_conf(
        &options.resolv_conf,
        &origin,
        lease.domain.as_deref(),
        &lease.dns,
    )?;
    let path = lease_path(&options.run_dir, &link.name);
    if !reused {
        let file = LeaseFile {
            link: link.name.clone(),
            mac: link.mac.as_ref().map(mac_text).unwrap_or_default(),
            obtained_unix: now_unix(),
            obtained_monotonic_us: crate::sys::monotonic_us(),
            lease: lease.clone(),
        };
        std::fs::create_dir_all(&options.run_dir)
            .map_err(|e| format!("{}: {e}", options.run_dir.display()))?;
        let text = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        crate::fsutil::write_atomic(&path, &text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    applied.lease_file = Some(path);
    applied.ipv6 = ipv6_addresses(rtnl, link, ipv6_deadline);
    Ok(applied)
}

/// Applies a static `ip=` configuration to `link`.
pub fn apply_static(
    rtnl: &mut Rtnl,
    options: &UpOptions,
    link: &Link,
    config: &StaticConfig,
    ipv6_deadline: Instant,
) -> Result<Applied, String> {
    rtnl.add_address(link, config.address, config.prefix_len)
        .map_err(|e| e.to_string())?;
    let routes: Vec<Route> = config.gateway.map(Route::default_via).into_iter().collect();
    let installed = install_routes(
        rtnl,
        link,
        config.address,
        config.prefix_len,
        &routes,
        RouteProtocol::Boot,
    )?;
    let written = write_resolv_conf(
        &options.resolv_conf,
        "ip= on the kernel command line",
        None,
        &config.dns,
    )?;
    Ok(Applied {
        address: format!("{}/{}", config.address, config.prefix_len),
        routes: installed,
        mtu: None,
        dns: config.dns.iter().map(ToString::to_string).collect(),
        resolv_conf_written: written,
        lease_file: None,
        ipv6: ipv6_addresses(rtnl, link, ipv6_deadline),
    })
}
