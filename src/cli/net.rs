//! `initagent net up|status`: bring the network up as stage 1 does, and show what is
//! configured (links, addresses, leases).

use super::Options;
use crate::net::apply::{lease_path, read_lease, RUN_DIR};
use crate::net::netlink::{mac_text, Rtnl};
use crate::net::select::Preferred;
use crate::net::up::{up, UpOptions, UpReport};
use std::path::PathBuf;
use std::time::Duration;

/// `net` flags.
#[derive(Debug, Default)]
pub(crate) struct NetOptions {
    pub links: Option<String>,
    pub iface: Option<String>,
    pub carrier_timeout: Option<u32>,
    pub dhcp_timeout: Option<u32>,
    pub settle: Option<u32>,
    pub ipv6_timeout: Option<u32>,
    pub run_dir: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub once: bool,
    pub check: Vec<String>,
}

pub(crate) fn run(options: &Options) -> i32 {
    match options.positional.first().map(String::as_str) {
        Some("up") => net_up(options),
        Some("status") => net_status(options),
        Some("renew") => net_renew(options),
        _ => {
            errln!("initagent net: expected up, status or renew");
            2
        }
    }
}

fn net_renew(options: &Options) -> i32 {
    let run_dir = options
        .net
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(RUN_DIR));
    if options.net.once {
        let timeout = Duration::from_secs(options.net.dhcp_timeout.unwrap_or(10).into());
        let (lines, all) = crate::net::keep::renew_all_now(&run_dir, timeout);
        for line in lines {
            outln!("{line}");
        }
        return if all { 0 } else { 1 };
    }
    crate::logging::init(log::LevelFilter::Info);
    let config = super::effective_config(options);
    let mut up_options = UpOptions::from_config(&config.net);
    up_options.run_dir = run_dir.clone();
    crate::net::keep::keep_all(&run_dir, &up_options)
}

fn net_up(options: &Options) -> i32 {
    let config = super::effective_config(options);
    for warning in &config.warnings {
        errln!("initagent: warning: {warning}");
    }
    let mut up_options = UpOptions::from_config(&config.net);
    let flags = &options.net;
    if let Some(links) = &flags.links {
        up_options.links = Some(
            links
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        );
    }
    if let Some(iface) = &flags.iface {
        up_options.preferred = Some(Preferred::parse(iface));
    }
    let seconds = |value: Option<u32>, default: Duration| {
        value.map_or(default, |s| Duration::from_secs(s.into()))
    };
    up_options.carrier_timeout = seconds(flags.carrier_timeout, up_options.carrier_timeout);
    up_options.dhcp_timeout = seconds(flags.dhcp_timeout, up_options.dhcp_timeout);
    up_options.settle = seconds(flags.settle, up_options.settle);
    up_options.ipv6_timeout = seconds(flags.ipv6_timeout, up_options.ipv6_timeout);
    if let Some(dir) = &flags.run_dir {
        up_options.run_dir = dir.clone();
    }
    if let Some(path) = &flags.resolv_conf {
        up_options.resolv_conf = path.clone();
    }
    if !flags.check.is_empty() {
        up_options.check = flags.check.clone();
    }
    super::with_retry("net up", options.retry, || match up(&up_options) {
        Ok(report) => {
            if options.json {
                super::print_json(&report);
            } else {
                print_up(&report);
            }
            i32::from(report.outcome != "ok")
        }
        Err(e) => {
            errln!("initagent: net up: {e}");
            1
        }
    })
}

fn print_up(report: &UpReport) {
    outln!(
        "{}: {} ({} ms)",
        report.outcome,
        report.detail,
        report.duration_ms
    );
    for link in &report.links {
        let lease = link.lease.as_ref().map_or("no lease".to_string(), |l| {
            format!("{}/{} from {}", l.address, l.prefix_len, l.server)
        });
        let when = link
            .lease_ms
            .map_or(String::new(), |ms| format!(" after {ms} ms"));
        let reused = if link.reused {
            " (kept from an earlier run)"
        } else {
            ""
        };
        outln!(
            "  {:<12} {:<17} {lease}{when}{reused}; DHCP: {} discover, {} offer, {} request, {} nak{}",
            link.name,
            link.mac.as_deref().unwrap_or("-"),
            link.dhcp.discovers,
            link.dhcp.offers,
            link.dhcp.requests,
            link.dhcp.naks,
            link.problem.as_ref().map_or(String::new(), |p| format!("; {p}"))
        );
    }
    for (name, why) in &report.skipped {
        outln!("  {name:<12} skipped: {why}");
    }
    for reach in &report.reachability {
        match (&reach.connect_ms, &reach.error) {
            (Some(ms), _) => outln!(
                "  store {} ({}): reachable in {ms} ms",
                reach.store,
                reach.endpoint
            ),
            (None, error) => outln!(
                "  store {} ({}): UNREACHABLE: {}",
                reach.store,
                reach.endpoint,
                error.as_deref().unwrap_or("?")
            ),
        }
    }
    if let Some(applied) = &report.applied {
        outln!(
            "  applied: {} routes [{}] dns [{}]",
            applied.address,
            applied.routes.join(", "),
            applied.dns.join(", ")
        );
        if !applied.ipv6.is_empty() {
            outln!("  ipv6: {}", applied.ipv6.join(", "));
        }
    }
}

fn net_status(options: &Options) -> i32 {
    let run_dir = options
        .net
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(RUN_DIR));
    let mut rtnl = match Rtnl::open() {
        Ok(rtnl) => rtnl,
        Err(e) => {
            errln!("initagent: net status: {e}");
            return 1;
        }
    };
    let (links, addresses) = match (rtnl.links(), rtnl.addresses()) {
        (Ok(links), Ok(addresses)) => (links, addresses),
        (Err(e), _) | (_, Err(e)) => {
            errln!("initagent: net status: {e}");
            return 1;
        }
    };
    let mut rows = Vec::new();
    for link in &links {
        let lease = read_lease(&lease_path(&run_dir, &link.name)).ok();
        let here: Vec<String> = addresses
            .iter()
            .filter(|a| a.index == link.index)
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect();
        rows.push(serde_json::json!({
            "name": link.name,
            "mac": link.mac.as_ref().map(mac_text),
            "up": link.up,
            "carrier": link.carrier,
            "kind": link.kind,
            "addresses": here,
            "lease": lease,
        }));
        if !options.json {
            let lease_text = lease.map_or(String::new(), |f| {
                format!(
                    "; lease {} from {} (client id {}, {} s)",
                    f.lease.address,
                    f.lease.server,
                    f.lease.client_id,
                    f.lease
                        .lease_time_s
                        .map_or("infinite".into(), |s| s.to_string())
                )
            });
            outln!(
                "{:<12} {} {} {}{lease_text}",
                link.name,
                if link.up { "up" } else { "down" },
                if link.carrier {
                    "carrier"
                } else {
                    "no-carrier"
                },
                here.join(" ")
            );
        }
    }
    if options.json {
        super::print_json(&rows);
    }
    0
}
