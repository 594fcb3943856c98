//! `net renew`: keeps the leases `net up` handed over in `/run/initagent/net/*.json`, one
//! thread per lease, for as long as the node runs (a zinit service, not a oneshot). The
//! identity never changes: the same client id (the MAC's, as iPXE sent it), the same
//! address, REQUESTs to the server that granted it. A lease that runs out or is refused is
//! acquired afresh on its link (asking for the old address first), and the address is
//! swapped only if the server hands out another one.

use super::apply::{lease_path, read_lease, LeaseFile};
use super::dhcp::ClientConfig;
use super::frame::{CLIENT_PORT, SERVER_PORT};
use super::netlink::Rtnl;
use super::renew::{RenewPoll, Renewer};
use super::select::parse_mac;
use super::up::{up, UpOptions};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lease files in `run_dir`, by link name.
pub fn lease_files(run_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn now() -> Duration {
    Duration::from_micros(crate::sys::monotonic_us())
}

/// Writes a renewed lease, granted now.
fn write_lease(run_dir: &Path, file: &LeaseFile) -> Result<(), String> {
    let path = lease_path(run_dir, &file.link);
    let text = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(&path, &text).map_err(|e| format!("{}: {e}", path.display()))
}

/// How one renewal attempt ended.
enum Ended {
    Renewed(Box<LeaseFile>),
    Lost(String),
}

/// Renews the lease in `file` now (`once`) or when it is due, until it is renewed or lost.
/// `deadline` bounds the whole attempt (monotonic time).
fn renew(run_dir: &Path, mut file: LeaseFile, once: bool, deadline: Option<Duration>) -> Ended {
    let Some(mac) = parse_mac(&file.mac) else {
        return Ended::Lost(format!("{}: MAC {:?} cannot be read", file.link, file.mac));
    };
    let socket = match crate::sys::packet::udp_socket_on_link(&file.link, CLIENT_PORT) {
        Ok(socket) => socket,
        Err(e) => return Ended::Lost(format!("UDP socket on {}: {e}", file.link)),
    };
    let xid =
        crate::sys::monotonic_us() as u32 ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    let granted = Duration::from_micros(file.obtained_monotonic_us);
    let mut renewer = Renewer::new(ClientConfig::new(mac, xid), file.lease.clone(), granted);
    if once {
        renewer.renew_now();
    }
    let mut buffer = [0u8; 1500];
    loop {
        let now = now();
        if deadline.is_some_and(|d| now >= d) {
            return Ended::Lost(format!(
                "{}: no answer from {} in time",
                file.link, file.lease.server
            ));
        }
        let wake = match renewer.poll(now) {
            RenewPoll::Renewed(lease) => {
                file.lease = *lease;
                file.obtained_unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                file.obtained_monotonic_us = crate::sys::monotonic_us();
                if let Err(e) = write_lease(run_dir, &file) {
                    log::warn!("{e}");
                }
                log::info!(
                    "{}: lease of {} renewed by {}",
                    file.link,
                    file.lease.address,
                    file.lease.server
                );
                return Ended::Renewed(Box::new(file));
            }
            RenewPoll::Expired(why) => return Ended::Lost(why),
            RenewPoll::Send(payload, to, next) => {
                let to = SocketAddrV4::new(to.unwrap_or(Ipv4Addr::BROADCAST), SERVER_PORT);
                if let Err(e) = socket.send_to(&payload, to) {
                    log::warn!("{}: sending to {to}: {e}", file.link);
                }
                next
            }
            RenewPoll::Wait(next) => next,
        };
        let mut wait = wake
            .saturating_sub(now)
            .clamp(Duration::from_millis(10), Duration::from_secs(60));
        if let Some(d) = deadline {
            wait = wait.min(d.saturating_sub(now).max(Duration::from_millis(10)));
        }
        receive(&socket, &mut buffer, wait, |payload| {
            renewer.handle(self::now(), payload)
        });
    }
}

fn receive(socket: &UdpSocket, buffer: &mut [u8], wait: Duration, mut handle: impl FnMut(&[u8])) {
    let _ = socket.set_read_timeout(Some(wait));
    if let Ok((n, from)) = socket.recv_from(buffer) {
        if from.port() == SERVER_PORT {
            handle(buffer.get(..n).unwrap_or_default());
        }
    }
}

/// `net renew --once`: renews every lease now; one line per lease, and whether all were.
pub fn renew_all_now(run_dir: &Path, timeout: Duration) -> (Vec<String>, bool) {
    let files = lease_files(run_dir);
    if files.is_empty() {
        return (
            vec![format!(
                "{}: no lease files (has `net up` run?)",
                run_dir.display()
            )],
            false,
        );
    }
    let results: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|path| {
                scope.spawn(move || {
                    let file = read_lease(path)?;
                    match renew(run_dir, file, true, Some(now() + timeout)) {
                        Ended::Renewed(file) => Ok(format!(
                            "{}: {} renewed by {} for {} s",
                            file.link,
                            file.lease.address,
                            file.lease.server,
                            file.lease
                                .lease_time_s
                                .map_or("ever".into(), |s| s.to_string())
                        )),
                        Ended::Lost(why) => Err(why),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("renewal thread panicked".into()))
            })
            .collect()
    });
    let all = results.iter().all(Result::is_ok);
    (
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| format!("FAILED: {e}")))
            .collect(),
        all,
    )
}

/// `net renew`: keeps every lease for as long as the process runs. Without lease files
/// (stage 1 configured nothing, or a static `ip=`) it looks again every minute instead of
/// exiting, so zinit does not restart it in a loop.
pub fn keep_all(run_dir: &Path, up_options: &UpOptions) -> ! {
    let mut warned = false;
    loop {
        let files = lease_files(run_dir);
        if files.is_empty() {
            if !warned {
                log::warn!(
                    "{}: no lease files; looking again every minute",
                    run_dir.display()
                );
                warned = true;
            }
            std::thread::sleep(Duration::from_secs(60));
            continue;
        }
        std::thread::scope(|scope| {
            for path in &files {
                scope.spawn(move || keep_one(run_dir, path, up_options));
            }
        });
    }
}

fn keep_one(run_dir: &Path, path: &Path, up_options: &UpOptions) {
    loop {
        let file = match read_lease(path) {
            Ok(file) => file,
            Err(e) => {
                log::warn!("{e}; retrying in 60 s");
                std::thread::sleep(Duration::from_secs(60));
                continue;
            }
        };
        let (link, old) = (file.link.clone(), file.lease.clone());
        match renew(run_dir, file, false, None) {
            Ended::Renewed(_) => continue,
            Ended::Lost(why) => log::warn!("{link}: {why}; acquiring a lease again"),
        }
        let mut options = up_options.clone();
        options.links = Some(vec![link.clone()]);
        options.run_dir = run_dir.to_path_buf();
        match up(&options) {
            Ok(report) if report.outcome == "ok" => {
                let new = read_lease(path).map(|f| f.lease.address).ok();
                if new.is_some_and(|address| address != old.address) {
                    remove_address(&link, old.address, old.prefix_len);
                }
            }
            Ok(report) => {
                log::warn!("{link}: {}; retrying in 10 s", report.detail);
                std::thread::sleep(Duration::from_secs(10));
            }
            Err(e) => {
                log::warn!("{link}: {e}; retrying in 10 s");
                std::thread::sleep(Duration::from_secs(10));
            }
        }
    }
}

/// Takes a lease's old address off its link once a new one is in place (best effort).
fn remove_address(link_name: &str, address: Ipv4Addr, prefix_len: u8) {
    let Ok(mut rtnl) = Rtnl::open() else { return };
    if let Ok(Some(link)) = rtnl.link(link_name) {
        if let Err(e) = rtnl.remove_address(&link, address, prefix_len) {
            log::warn!("{e}");
        }
    }
}
