//! Getting a lease on each candidate link at once: bring it up, wait for carrier, run the
//! DHCP client over a packet socket until a lease, the link's deadline, or the signal to
//! stop (another link won and the settle time ran out). Every wait is bounded.

use super::apply;
use super::dhcp::{Client, ClientConfig, Poll, Tally};
use super::frame::{udp_packet, udp_to_port, CLIENT_PORT, SERVER_PORT};
use super::lease::Lease;
use super::netlink::{mac_text, Link, Rtnl};
use super::up::UpOptions;
use crate::sys::packet::PacketSocket;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// What happened on one link.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkOutcome {
    /// Link name.
    pub name: String,
    /// Its MAC.
    pub mac: Option<String>,
    /// Milliseconds from the start until carrier, if it came.
    pub carrier_ms: Option<u64>,
    /// Milliseconds from the start until the lease, if one came.
    pub lease_ms: Option<u64>,
    /// The DHCP exchange.
    pub dhcp: Tally,
    /// The lease it got.
    pub lease: Option<Lease>,
    /// Kept from an earlier run (the address is still on the link, the lease still valid).
    pub reused: bool,
    /// What went wrong, in words.
    pub problem: Option<String>,
}

/// Polls the link until it shows carrier, the deadline passes or `stop` is set.
pub fn wait_carrier(rtnl: &mut Rtnl, link: &Link, deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if matches!(rtnl.link(&link.name), Ok(Some(l)) if l.carrier) {
            return true;
        }
        if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs every link at once; returns their outcomes in the order of `links`.
pub fn run_links(
    options: &UpOptions,
    links: &[Link],
    hostname: Option<String>,
    started: Instant,
) -> Vec<LinkOutcome> {
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, receiver) = mpsc::channel::<(usize, LinkOutcome)>();
    std::thread::scope(|scope| {
        for (i, link) in links.iter().enumerate() {
            let sender = sender.clone();
            let stop = Arc::clone(&stop);
            let hostname = hostname.clone();
            scope.spawn(move || {
                let outcome = run_link(options, link, hostname, started, &stop);
                let _ = sender.send((i, outcome));
            });
        }
        drop(sender);
        let mut outcomes: Vec<Option<LinkOutcome>> = vec![None; links.len()];
        let mut settle_until: Option<Instant> = None;
        loop {
            // Until the first usable lease every link runs to its own deadline; then the
            // others get `settle`; once stopped, they all end within 100 ms.
            let wait = match settle_until {
                Some(until) if !stop.load(Ordering::Relaxed) => {
                    until.saturating_duration_since(Instant::now())
                }
                _ => Duration::from_secs(3600),
            };
            match receiver.recv_timeout(wait) {
                Ok((i, outcome)) => {
                    let usable = outcome.lease.as_ref().is_some_and(|l| l.gateway.is_some());
                    let preferred = options
                        .preferred
                        .as_ref()
                        .is_some_and(|p| p.matches(&links[i]));
                    outcomes[i] = Some(outcome);
                    if usable && preferred {
                        stop.store(true, Ordering::Relaxed); // nothing can beat the operator's choice
                    } else if usable && settle_until.is_none() {
                        settle_until = Some(Instant::now() + options.settle);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => stop.store(true, Ordering::Relaxed),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        outcomes
            .into_iter()
            .zip(links)
            .map(|(o, link)| o.unwrap_or_else(|| empty_outcome(link)))
            .collect()
    })
}

pub fn empty_outcome(link: &Link) -> LinkOutcome {
    LinkOutcome {
        name: link.name.clone(),
        mac: link.mac.as_ref().map(mac_text),
        carrier_ms: None,
        lease_ms: None,
        dhcp: Tally::default(),
        lease: None,
        reused: false,
        problem: None,
    }
}

fn run_link(
    options: &UpOptions,
    link: &Link,
    hostname: Option<String>,
    started: Instant,
    stop: &AtomicBool,
) -> LinkOutcome {
    let mut outcome = empty_outcome(link);
    let elapsed_ms = || started.elapsed().as_millis() as u64;
    let mut rtnl = match Rtnl::open() {
        Ok(rtnl) => rtnl,
        Err(e) => {
            outcome.problem = Some(e.to_string());
            return outcome;
        }
    };
    if let Some(lease) = apply::still_bound(&mut rtnl, &options.run_dir, link) {
        outcome.lease = Some(lease);
        outcome.reused = true;
        outcome.carrier_ms = Some(elapsed_ms());
        outcome.lease_ms = Some(elapsed_ms());
        return outcome;
    }
    if let Err(e) = rtnl.set_up(link) {
        outcome.problem = Some(e.to_string());
        return outcome;
    }
    apply::enable_slaac(&link.name);
    if !wait_carrier(&mut rtnl, link, started + options.carrier_timeout, stop) {
        outcome.problem = Some(format!(
            "no carrier within {} s",
            options.carrier_timeout.as_secs()
        ));
        return outcome;
    }
    outcome.carrier_ms = Some(elapsed_ms());
    let Some(mac) = link.mac else {
        outcome.problem = Some("no hardware address".into());
        return outcome;
    };
    let socket = match PacketSocket::open(link.index) {
        Ok(socket) => socket,
        Err(e) => {
            outcome.problem = Some(format!("packet socket on {}: {e}", link.name));
            return outcome;
        }
    };
    let mut config = ClientConfig::new(mac, random_xid(&mac));
    config.hostname = hostname;
    config.previous = apply::previous_address(&options.run_dir, link);
    let deadline = Instant::now() + options.dhcp_timeout;
    let clock = Instant::now();
    let mut client = Client::new(config, Duration::ZERO);
    let mut buffer = [0u8; 2048];
    loop {
        if stop.load(Ordering::Relaxed) {
            outcome.problem = Some(format!(
                "stopped after {} s without a lease ({}): another link's lease was chosen",
                clock.elapsed().as_secs(),
                client.state_name()
            ));
            break;
        }
        if Instant::now() >= deadline {
            outcome.problem = Some(format!(
                "no lease within {} s ({})",
                options.dhcp_timeout.as_secs(),
                client.state_name()
            ));
            break;
        }
        let wake = match client.poll(clock.elapsed()) {
            Poll::Bound(lease) => {
                outcome.lease = Some(*lease);
                outcome.lease_ms = Some(elapsed_ms());
                break;
            }
            Poll::Send(payload, next) => {
                let packet = udp_packet(
                    Ipv4Addr::UNSPECIFIED,
                    CLIENT_PORT,
                    Ipv4Addr::BROADCAST,
                    SERVER_PORT,
                    &payload,
                );
                if let Err(e) = socket.send_broadcast(&packet) {
                    outcome.problem = Some(format!("sending on {}: {e}", link.name));
                }
                next
            }
            Poll::Wait(next) => next,
        };
        // Wake at least every 100 ms to notice `stop`.
        let timeout = wake
            .saturating_sub(clock.elapsed())
            .min(Duration::from_millis(100))
            .max(Duration::from_millis(1));
        match socket.receive(&mut buffer, timeout) {
            Ok(Some(received)) => {
                let packet = buffer.get(..received.len).unwrap_or_default();
                if let Some(datagram) = udp_to_port(packet, CLIENT_PORT, received.checksum_ready) {
                    client.handle(clock.elapsed(), datagram.payload);
                }
            }
            Ok(None) => {}
            Err(e) => {
                outcome.problem = Some(format!("receiving on {}: {e}", link.name));
                std::thread::sleep(timeout);
            }
        }
    }
    outcome.dhcp = client.tally().clone();
    if outcome.lease.is_some() {
        outcome.problem = None;
    }
    outcome
}

/// A transaction id no other node is likely to pick: the process's random hash keys
/// (from the kernel's entropy) over the MAC and the time.
fn random_xid(mac: &[u8; 6]) -> u32 {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    state.hash_one((mac, crate::sys::monotonic_us())) as u32
}
