//! `net up`: bring every candidate link up at once, wait for carrier on all of them
//! together, run DHCPv4 on each as soon as it has carrier, choose one lease (the operator's
//! link, else the zos rule) and apply it. Every wait has a deadline; no lease is an outcome
//! (`degraded`, with what each link tried), never a hang.

use super::apply::{self, Applied};
use super::ipconfig::{IpParam, StaticConfig};
use super::lease::{self, Lease};
use super::netlink::{Link, Rtnl};
pub use super::probe::LinkOutcome;
use super::probe::{empty_outcome, run_links, wait_carrier};
use super::reach::{self, Reach};
use super::select::{candidates, Preferred};
use crate::config::NetLayout;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// What `net up` should do.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Candidate links by name (virtual ones allowed); `None`: every physical link.
    pub links: Option<Vec<String>>,
    /// The link to use when it gets a lease (`initagent.net.iface=` or `BOOTIF=`).
    pub preferred: Option<Preferred>,
    /// The kernel's `ip=`.
    pub ip: Option<IpParam>,
    /// Host name to send with DHCP.
    pub hostname: Option<String>,
    /// How long a link may take to show carrier.
    pub carrier_timeout: Duration,
    /// How long DHCP may take on a link, from its carrier.
    pub dhcp_timeout: Duration,
    /// After the first lease with a gateway, how long the other links still get.
    pub settle: Duration,
    /// How long, from the start, a global IPv6 address (SLAAC) is waited for; it is only
    /// reported, never required.
    pub ipv6_timeout: Duration,
    /// Where lease files go (`<dir>/<link>.json`).
    pub run_dir: PathBuf,
    /// The resolver file to write.
    pub resolv_conf: PathBuf,
    /// Stores (URLs, or flists whose routes name them) to check once configured.
    pub check: Vec<String>,
    /// How long the reachability check may take.
    pub check_timeout: Duration,
    /// Where the address goes.
    pub layout: NetLayout,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            links: None,
            preferred: None,
            ip: None,
            hostname: None,
            carrier_timeout: Duration::from_secs(10),
            dhcp_timeout: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            ipv6_timeout: Duration::ZERO,
            run_dir: PathBuf::from(apply::RUN_DIR),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            check: Vec::new(),
            check_timeout: Duration::from_secs(5),
            layout: NetLayout::Plain,
        }
    }
}

impl UpOptions {
    /// The options the configuration (profile, command line, `ip=`, `BOOTIF=`) gives.
    pub fn from_config(net: &crate::config::NetConfig) -> UpOptions {
        let seconds = |s: u32| Duration::from_secs(s.into());
        UpOptions {
            links: net.links.clone(),
            preferred: net
                .iface
                .as_deref()
                .map(Preferred::parse)
                .or_else(|| net.bootif.clone()),
            ip: net.ip.clone(),
            carrier_timeout: seconds(net.carrier_timeout_s),
            dhcp_timeout: seconds(net.dhcp_timeout_s),
            settle: seconds(net.settle_s),
            ipv6_timeout: seconds(net.ipv6_timeout_s),
            check: net.check.clone(),
            check_timeout: seconds(net.check_timeout_s),
            layout: net.layout,
            ..UpOptions::default()
        }
    }

    /// The longest the step can take: every wait at its deadline, plus a margin.
    pub fn worst_case(&self) -> Duration {
        self.carrier_timeout
            + self.dhcp_timeout
            + self.settle
            + self.ipv6_timeout
            + Duration::from_secs(10)
    }
}

impl UpReport {
    /// One line per link: what it got or why not (for the boot report).
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .links
            .iter()
            .map(|l| match (&l.lease, &l.problem) {
                (Some(lease), _) => format!(
                    "{}: {}/{} from {}",
                    l.name, lease.address, lease.prefix_len, lease.server
                ),
                (None, Some(problem)) => {
                    format!("{}: {problem} ({} discover)", l.name, l.dhcp.discovers)
                }
                (None, None) => format!("{}: nothing", l.name),
            })
            .collect();
        parts.extend(
            self.skipped
                .iter()
                .map(|(name, why)| format!("{name}: skipped, {why}")),
        );
        format!("{}; {}", self.detail, parts.join("; "))
    }
}

/// The result of `net up`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpReport {
    /// `ok`, or `degraded` (no usable configuration; the boot goes on).
    pub outcome: String,
    /// One line for a person.
    pub detail: String,
    /// The link configured.
    pub chosen: Option<String>,
    /// What was applied to it.
    pub applied: Option<Applied>,
    /// Every candidate.
    pub links: Vec<LinkOutcome>,
    /// Links left out, with the reason.
    pub skipped: Vec<(String, String)>,
    /// The stores checked once the link was configured.
    pub reachability: Vec<Reach>,
    /// Milliseconds the whole step took.
    pub duration_ms: u64,
}

/// Brings the network up, then checks that the stores can be reached. Errors only when
/// netlink itself is unusable.
pub fn up(options: &UpOptions) -> Result<UpReport, String> {
    let started = Instant::now();
    let mut report = configure(options)?;
    if report.outcome == "ok" && !options.check.is_empty() {
        let (urls, problems) = reach::store_urls(&options.check);
        report.reachability = reach::check(&urls, options.check_timeout);
        let unreachable = report
            .reachability
            .iter()
            .filter(|r| r.error.is_some())
            .count();
        if unreachable > 0 || !problems.is_empty() {
            report.outcome = "degraded".into();
            report.detail.push_str(&format!(
                "; {unreachable} of {} stores unreachable{}",
                urls.len(),
                problems
                    .iter()
                    .map(|p| format!("; {p}"))
                    .collect::<String>()
            ));
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
    }
    Ok(report)
}

fn configure(options: &UpOptions) -> Result<UpReport, String> {
    let started = Instant::now();
    let mut rtnl = Rtnl::open().map_err(|e| e.to_string())?;
    if let Ok(Some(lo)) = rtnl.link("lo") {
        let _ = rtnl.set_up(&lo);
    }
    let all = rtnl.links().map_err(|e| e.to_string())?;
    if let Some(done) = zos_bridge_in_place(options, &mut rtnl, &all, started) {
        return Ok(done);
    }
    let (links, skipped) = candidates(&all, options.links.as_deref());
    let finish = |outcome: &str, detail: String, chosen: Option<String>, applied, links| UpReport {
        outcome: outcome.into(),
        detail,
        chosen,
        applied,
        links,
        skipped: skipped.clone(),
        reachability: Vec::new(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if options.ip == Some(IpParam::Off) {
        let detail = "ip=off: nothing configured".into();
        return Ok(finish("ok", detail, None, None, Vec::new()));
    }
    if links.is_empty() {
        let detail = "no candidate link".into();
        return Ok(finish("degraded", detail, None, None, Vec::new()));
    }
    if let Some(IpParam::Static(config)) = &options.ip {
        return Ok(up_static(options, &mut rtnl, &links, config, finish));
    }
    let (links, preferred) = match &options.ip {
        Some(IpParam::Dhcp {
            device: Some(device),
            ..
        }) => {
            let named: Vec<Link> = links
                .iter()
                .filter(|l| &l.name == device)
                .cloned()
                .collect();
            if named.is_empty() {
                let detail = format!("ip= names {device}, which is not a candidate link");
                return Ok(finish("degraded", detail, None, None, Vec::new()));
            }
            (named, Some(Preferred::Name(device.clone())))
        }
        _ => (links, options.preferred.clone()),
    };
    let hostname = match &options.ip {
        Some(IpParam::Dhcp {
            hostname: Some(name),
            ..
        }) => Some(name.clone()),
        _ => options.hostname.clone(),
    };
    let outcomes = run_links(options, &links, hostname, started);
    let (index, chosen) = match choose_link(&links, &outcomes, preferred.as_ref()) {
        Ok(choice) => choice,
        Err(detail) => return Ok(finish("degraded", detail, None, None, outcomes)),
    };
    let link = &links[index];
    let leases = outcomes.iter().filter(|o| o.lease.is_some()).count();
    let ipv6_deadline = started + options.ipv6_timeout;
    let target = match layout_target(options, &mut rtnl, link) {
        Ok(target) => target,
        Err(e) => {
            return Ok(finish(
                "degraded",
                e,
                Some(link.name.clone()),
                None,
                outcomes,
            ))
        }
    };
    match apply::apply_lease(
        &mut rtnl,
        options,
        &target,
        &chosen,
        outcomes[index].reused,
        ipv6_deadline,
    ) {
        Ok(applied) => {
            let detail = format!(
                "{}{} {}/{} via {} (of {} link(s), {} lease(s))",
                link.name,
                if target.name == link.name {
                    String::new()
                } else {
                    format!(" (on bridge {})", target.name)
                },
                chosen.address,
                chosen.prefix_len,
                chosen
                    .gateway
                    .map_or("no gateway".into(), |g| g.to_string()),
                links.len(),
                leases
            );
            Ok(finish(
                "ok",
                detail,
                Some(link.name.clone()),
                Some(applied),
                outcomes,
            ))
        }
        Err(e) => Ok(finish(
            "degraded",
            e,
            Some(link.name.clone()),
            None,
            outcomes,
        )),
    }
}

/// Where the configuration of `link` goes: the link, or the zos bridge over it.
fn layout_target(options: &UpOptions, rtnl: &mut Rtnl, link: &Link) -> Result<Link, String> {
    match options.layout {
        NetLayout::Plain => Ok(link.clone()),
        NetLayout::Zos => apply::zos_bridge(rtnl, link),
    }
}

/// With the zos layout, a bridge that still holds its lease is the whole answer: its NIC is
/// enslaved (no longer a candidate) and the lease is in force. Everything is re-applied
/// (idempotent), nothing is asked of the server.
fn zos_bridge_in_place(
    options: &UpOptions,
    rtnl: &mut Rtnl,
    all: &[Link],
    started: Instant,
) -> Option<UpReport> {
    if options.layout != NetLayout::Zos || options.ip.is_some() {
        return None;
    }
    let bridge = all.iter().find(|l| l.name == apply::ZOS_BRIDGE)?;
    let lease = apply::still_bound(rtnl, &options.run_dir, bridge)?;
    let applied = apply::apply_lease(
        rtnl,
        options,
        bridge,
        &lease,
        true,
        started + options.ipv6_timeout,
    )
    .ok()?;
    let mut outcome = empty_outcome(bridge);
    outcome.lease = Some(lease.clone());
    outcome.reused = true;
    Some(UpReport {
        outcome: "ok".into(),
        detail: format!(
            "{} {}/{} kept from an earlier run",
            bridge.name, lease.address, lease.prefix_len
        ),
        chosen: Some(bridge.name.clone()),
        applied: Some(applied),
        links: vec![outcome],
        skipped: Vec::new(),
        reachability: Vec::new(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The link to configure and its lease: the operator's link when it got one, else the
/// zos rule; or why none can be.
fn choose_link(
    links: &[Link],
    outcomes: &[LinkOutcome],
    preferred: Option<&Preferred>,
) -> Result<(usize, Lease), String> {
    let leases: Vec<(usize, &Lease)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.lease.as_ref().map(|l| (i, l)))
        .collect();
    let by_preference =
        preferred.and_then(|p| leases.iter().find(|(i, _)| p.matches(&links[*i])).copied());
    let only_leases: Vec<&Lease> = leases.iter().map(|(_, l)| *l).collect();
    let by_rule = lease::choose(&only_leases).and_then(|k| leases.get(k).copied());
    match by_preference.or(by_rule) {
        Some((index, lease)) => Ok((index, lease.clone())),
        None if leases.is_empty() => Err(format!("no DHCP lease on {}", names(links))),
        None => Err("no lease with a default gateway".to_string()),
    }
}

fn names(links: &[Link]) -> String {
    links
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn up_static(
    options: &UpOptions,
    rtnl: &mut Rtnl,
    links: &[Link],
    config: &StaticConfig,
    finish: impl Fn(&str, String, Option<String>, Option<Applied>, Vec<LinkOutcome>) -> UpReport,
) -> UpReport {
    let link = match &config.device {
        Some(device) => links.iter().find(|l| &l.name == device),
        None => links.first(),
    };
    let Some(link) = link else {
        let detail = format!(
            "ip= names {}, which is not a candidate link",
            config.device.as_deref().unwrap_or("?")
        );
        return finish("degraded", detail, None, None, Vec::new());
    };
    let started = Instant::now();
    if let Err(e) = rtnl.set_up(link) {
        return finish(
            "degraded",
            e.to_string(),
            Some(link.name.clone()),
            None,
            Vec::new(),
        );
    }
    apply::enable_slaac(&link.name);
    let carrier = wait_carrier(
        rtnl,
        link,
        started + options.carrier_timeout,
        &AtomicBool::new(false),
    );
    let target = match layout_target(options, rtnl, link) {
        Ok(target) => target,
        Err(e) => return finish("degraded", e, Some(link.name.clone()), None, Vec::new()),
    };
    match apply::apply_static(
        rtnl,
        options,
        &target,
        config,
        started + options.ipv6_timeout,
    ) {
        Ok(applied) => {
            let detail = format!(
                "{} {}/{} (static, from ip=){}",
                link.name,
                config.address,
                config.prefix_len,
                if carrier { "" } else { "; no carrier yet" }
            );
            finish(
                "ok",
                detail,
                Some(link.name.clone()),
                Some(applied),
                Vec::new(),
            )
        }
        Err(e) => finish("degraded", e, Some(link.name.clone()), None, Vec::new()),
    }
}
