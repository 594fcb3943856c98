//! `initagent net up` against a real DHCP server: dnsmasq in its own network namespace,
//! joined by veth pairs to the namespace the agent runs in. Root only.

mod common;

use common::netns::{veth, Dnsmasq, NetNs};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The agent's namespace, the server side, and a scratch directory.
struct Lab {
    client: NetNs,
    server: NetNs,
    dir: PathBuf,
}

impl Lab {
    /// `links` veth pairs: `vN` on the client side, `sN` on the server side.
    fn new(name: &str, links: usize) -> Lab {
        let lab = Lab {
            client: NetNs::create(),
            server: NetNs::create(),
            dir: common::scratch(name),
        };
        for i in 0..links {
            veth(&lab.client, &format!("v{i}"), &lab.server, &format!("s{i}"));
        }
        lab
    }

    /// A DHCP server on `sN` for 10.7N.0.0/24 with `extra` dnsmasq options.
    fn serve(&self, link: usize, extra: &[&str]) -> Dnsmasq {
        let net = format!("10.7{link}.0");
        Dnsmasq::start(
            &self.server,
            &format!("s{link}"),
            &format!("{net}.1"),
            &format!("{net}.50,{net}.60,1h"),
            extra,
            &self.dir,
        )
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// `net up --json` in the client namespace: exit code and report.
    fn net_up(&self, args: &[&str]) -> (i32, Value) {
        let run_dir = self.run_dir();
        let resolv = self.resolv_conf();
        let mut all = vec![
            "net",
            "up",
            "--json",
            "--profile",
            "/dev/null",
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--resolv-conf",
            resolv.to_str().unwrap(),
            "--ipv6-timeout",
            "0",
        ];
        if !args.contains(&"--cmdline") {
            all.extend(["--cmdline", ""]);
        }
        all.extend(args);
        let out = self.client.agent(&all);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }

    fn addresses(&self, link: &str) -> String {
        self.client.ip_output(&["-4", "addr", "show", "dev", link])
    }

    fn routes(&self) -> String {
        self.client.ip_output(&["-4", "route", "show"])
    }
}

fn link<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn one_nic_gets_a_lease_and_everything_is_applied() {
    let lab = Lab::new("net-one", 1);
    let server = lab.serve(
        0,
        &[
            "--dhcp-option=6,10.70.0.53",
            "--dhcp-option=15,grid.test",
            "--dhcp-option=26,1400",
        ],
    );
    let (code, report) = lab.net_up(&["--links", "v0"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["chosen"], "v0");
    let lease = &link(&report, "v0")["lease"];
    let address = lease["address"].as_str().unwrap().to_string();
    assert!(address.starts_with("10.70.0."), "{lease}");

    assert!(lab.addresses("v0").contains(&format!("inet {address}/24")));
    assert!(
        lab.routes()
            .contains("default via 10.70.0.1 dev v0 proto dhcp"),
        "{}",
        lab.routes()
    );
    assert!(lab
        .client
        .ip_output(&["link", "show", "v0"])
        .contains("mtu 1400"));
    let resolv = read(&lab.resolv_conf());
    assert!(
        resolv.contains("nameserver 10.70.0.53\n") && resolv.contains("search grid.test\n"),
        "{resolv}"
    );

    // The lease file holds what the renewing service needs, and the identity is the MAC's.
    let file: Value = serde_json::from_str(&read(&lab.run_dir().join("v0.json"))).unwrap();
    let mac = file["mac"].as_str().unwrap().replace(':', "");
    assert_eq!(file["lease"]["client_id"], format!("01{mac}"));
    assert_eq!(file["lease"]["server"], "10.70.0.1");
    assert_eq!(file["lease"]["lease_time_s"], 3600);
    let leases = read(&lab.dir.join("dnsmasq-s0.leases"));
    assert!(
        leases.contains(&address)
            && leases.contains(&format!("01:{}", file["mac"].as_str().unwrap())),
        "{leases}"
    );
    assert_eq!(server.count("DHCPACK"), 1);
}

#[test]
fn running_net_up_twice_changes_nothing() {
    let lab = Lab::new("net-twice", 1);
    let server = lab.serve(0, &["--dhcp-option=6,10.70.0.53"]);
    assert_eq!(lab.net_up(&["--links", "v0"]).0, 0);
    let lease_file = read(&lab.run_dir().join("v0.json"));
    let (addresses, routes, resolv) = (lab.addresses("v0"), lab.routes(), read(&lab.resolv_conf()));
    let discovers = server.count("DHCPDISCOVER");

    let (code, report) = lab.net_up(&["--links", "v0"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(link(&report, "v0")["reused"], true);
    assert_eq!(report["applied"]["resolv_conf_written"], false);
    assert_eq!(read(&lab.run_dir().join("v0.json")), lease_file);
    assert_eq!(
        (lab.addresses("v0"), lab.routes(), read(&lab.resolv_conf())),
        (addresses, routes, resolv)
    );
    assert_eq!(server.count("DHCPDISCOVER"), discovers, "no new exchange");
}

#[test]
fn a_link_without_server_does_not_hold_up_the_one_with_a_lease() {
    let lab = Lab::new("net-two", 2);
    let _server = lab.serve(0, &[]);
    lab.server.ip(&["link", "set", "s1", "up"]); // carrier, but nobody answers
    let (code, report) = lab.net_up(&["--links", "v0,v1", "--dhcp-timeout", "60", "--settle", "1"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["chosen"], "v0");
    let silent = link(&report, "v1");
    assert!(silent["lease"].is_null());
    assert!(silent["dhcp"]["discovers"].as_u64().unwrap() >= 1);
    // It was stopped once the other link's lease was in and the settle time passed, not
    // left to run out its 60 s.
    let problem = silent["problem"].as_str().unwrap();
    assert!(
        problem.contains("another link's lease was chosen"),
        "{problem}"
    );
    assert!(lab.addresses("v1").is_empty() || !lab.addresses("v1").contains("inet "));
}

#[test]
fn private_gateway_wins_over_a_public_one_and_a_lower_address() {
    let lab = Lab::new("net-choice", 2);
    // v0: the lower address (10.70.0.x) but a public gateway; v1: a private gateway.
    let _public = lab.serve(0, &["--dhcp-option=3,185.69.166.1"]);
    let _private = lab.serve(1, &[]);
    let (code, report) = lab.net_up(&["--links", "v0,v1", "--settle", "3"]);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        !link(&report, "v0")["lease"].is_null(),
        "both links got a lease: {report:#}"
    );
    assert_eq!(report["chosen"], "v1");
    assert!(
        lab.routes().contains("default via 10.71.0.1 dev v1"),
        "{}",
        lab.routes()
    );
    // Only the chosen link is configured.
    assert!(!lab.addresses("v0").contains("inet "));

    // The operator's choice beats the rule.
    let lab = Lab::new("net-choice-iface", 2);
    let _public = lab.serve(0, &["--dhcp-option=3,185.69.166.1"]);
    let _private = lab.serve(1, &[]);
    let (code, report) = lab.net_up(&["--links", "v0,v1", "--iface", "v0", "--settle", "3"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["chosen"], "v0");
    // A public gateway outside the subnet gets an on-link host route first.
    assert!(
        lab.routes().contains("185.69.166.1 dev v0"),
        "{}",
        lab.routes()
    );
}

#[test]
fn a_nak_from_a_changed_network_is_followed_by_a_fresh_lease() {
    let lab = Lab::new("net-nak", 1);
    {
        let _first = lab.serve(0, &[]);
        assert_eq!(lab.net_up(&["--links", "v0"]).0, 0);
    }
    // The network is renumbered; the old address is gone from the link. The client asks
    // for its old address first (INIT-REBOOT); an authoritative server says NAK.
    lab.client.ip(&["addr", "flush", "dev", "v0"]);
    lab.server.ip(&["addr", "flush", "dev", "s0"]);
    let second = lab.dir.join("renumbered");
    std::fs::create_dir_all(&second).unwrap();
    let renumbered = Dnsmasq::start(
        &lab.server,
        "s0",
        "10.88.0.1",
        "10.88.0.50,10.88.0.60,1h",
        &["--dhcp-authoritative"],
        &second,
    );
    let (code, report) = lab.net_up(&["--links", "v0"]);
    assert_eq!(code, 0, "{report:#}");
    let v0 = link(&report, "v0");
    assert_eq!(v0["dhcp"]["naks"], 1, "{report:#}");
    assert!(v0["lease"]["address"]
        .as_str()
        .unwrap()
        .starts_with("10.88.0."));
    assert_eq!(renumbered.count("DHCPNAK"), 1);
    assert!(lab.routes().contains("default via 10.88.0.1"));
}

#[test]
fn no_server_is_bounded_and_degraded_with_the_reason() {
    let lab = Lab::new("net-none", 1);
    lab.server.ip(&["link", "set", "s0", "up"]);
    let (code, report) = lab.net_up(&["--links", "v0", "--dhcp-timeout", "2"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["outcome"], "degraded");
    assert!(report["detail"]
        .as_str()
        .unwrap()
        .contains("no DHCP lease on v0"));
    let v0 = link(&report, "v0");
    assert!(
        v0["problem"]
            .as_str()
            .unwrap()
            .contains("no lease within 2 s"),
        "{v0}"
    );
    assert!(
        v0["dhcp"]["discovers"].as_u64().unwrap() >= 2,
        "retransmitted: {v0}"
    );
    assert!(
        !lab.run_dir().join("v0.json").exists(),
        "no lease file without a lease"
    );
}

#[test]
fn no_carrier_is_bounded_and_degraded() {
    let lab = Lab::new("net-carrier", 1); // the server end stays down: no carrier
    let (code, report) = lab.net_up(&["--links", "v0", "--carrier-timeout", "1"]);
    assert_eq!(code, 1, "{report:#}");
    let v0 = link(&report, "v0");
    assert!(v0["carrier_ms"].is_null());
    assert!(
        v0["problem"]
            .as_str()
            .unwrap()
            .contains("no carrier within 1 s"),
        "{v0}"
    );
    assert_eq!(v0["dhcp"]["discovers"], 0);
}

#[test]
fn static_ip_from_the_command_line() {
    let lab = Lab::new("net-static", 1);
    lab.server.ip(&["link", "set", "s0", "up"]);
    let cmdline = "quiet ip=10.9.0.5::10.9.0.1:255.255.255.0:node1:v0:off:10.9.0.53";
    let (code, report) = lab.net_up(&["--links", "v0", "--cmdline", cmdline]);
    assert_eq!(code, 0, "{report:#}");
    assert!(report["detail"].as_str().unwrap().contains("static"));
    assert!(lab.addresses("v0").contains("inet 10.9.0.5/24"));
    assert!(
        lab.routes().contains("default via 10.9.0.1 dev v0"),
        "{}",
        lab.routes()
    );
    assert!(read(&lab.resolv_conf()).contains("nameserver 10.9.0.53"));

    // Garbage in ip= is a warning and DHCP is used instead.
    let out = lab.client.agent(&[
        "net",
        "up",
        "--links",
        "v0",
        "--profile",
        "/dev/null",
        "--cmdline",
        "ip=10.9.0.300:::",
        "--dhcp-timeout",
        "1",
        "--ipv6-timeout",
        "0",
        "--run-dir",
        lab.run_dir().to_str().unwrap(),
        "--resolv-conf",
        lab.resolv_conf().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ip=10.9.0.300:::") && stderr.contains("using DHCP"),
        "{stderr}"
    );
}

#[test]
fn classless_static_routes_are_installed() {
    let lab = Lab::new("net-121", 1);
    let _server = lab.serve(
        0,
        &["--dhcp-option=121,172.20.0.0/16,10.70.0.9,0.0.0.0/0,10.70.0.254"],
    );
    let (code, report) = lab.net_up(&["--links", "v0"]);
    assert_eq!(code, 0, "{report:#}");
    let routes = lab.routes();
    assert!(
        routes.contains("172.20.0.0/16 via 10.70.0.9 dev v0"),
        "{routes}"
    );
    assert!(
        routes.contains("default via 10.70.0.254 dev v0"),
        "option 121 replaces option 3: {routes}"
    );
    assert!(!routes.contains("via 10.70.0.1 "), "{routes}");
}

#[test]
fn status_shows_links_addresses_and_leases() {
    let lab = Lab::new("net-status", 1);
    let _server = lab.serve(0, &[]);
    assert_eq!(lab.net_up(&["--links", "v0"]).0, 0);
    let out = lab.client.agent(&[
        "net",
        "status",
        "--run-dir",
        lab.run_dir().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let line = text
        .lines()
        .find(|l| l.starts_with("v0"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("up carrier 10.70.0.")
            && line.contains("lease 10.70.0.")
            && line.contains("from 10.70.0.1"),
        "{line}"
    );
}

#[test]
fn renewal_keeps_the_identity_and_the_address() {
    let lab = Lab::new("net-renew", 1);
    let server = lab.serve(0, &[]);
    assert_eq!(lab.net_up(&["--links", "v0"]).0, 0);
    let lease_file = lab.run_dir().join("v0.json");
    let before: Value = serde_json::from_str(&read(&lease_file)).unwrap();
    let run_dir = lab.run_dir();
    let renew = |extra: &[&str]| {
        let mut args = vec![
            "net",
            "renew",
            "--once",
            "--run-dir",
            run_dir.to_str().unwrap(),
        ];
        args.extend(extra);
        lab.client.agent(&args)
    };

    let discovers = server.count("DHCPDISCOVER");
    let requests = server.count("DHCPREQUEST(s0)");
    let out = renew(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let address = before["lease"]["address"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("v0: {address} renewed by 10.70.0.1")),
        "{stdout}"
    );
    let after: Value = serde_json::from_str(&read(&lease_file)).unwrap();
    assert_eq!(after["lease"]["address"], before["lease"]["address"]);
    assert_eq!(after["lease"]["client_id"], before["lease"]["client_id"]);
    assert!(after["obtained_monotonic_us"].as_u64() > before["obtained_monotonic_us"].as_u64());
    // The renewal is one REQUEST for the same address, answered; no new DISCOVER.
    assert_eq!(server.count("DHCPDISCOVER"), discovers);
    assert_eq!(
        server.count("DHCPREQUEST(s0)"),
        requests + 1,
        "{}",
        server.log_text()
    );
    assert_eq!(server.count(&format!("DHCPACK(s0) {address}")), 2);

    // With the server gone, the renewal says so within its deadline and leaves the file.
    drop(server);
    let out = renew(&["--dhcp-timeout", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED: v0: no answer from 10.70.0.1"),
        "{stdout}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&read(&lease_file)).unwrap(),
        after
    );
}

#[test]
fn stores_are_checked_for_reachability_once_configured() {
    let lab = Lab::new("net-reach", 1);
    let _server = lab.serve(0, &[]);
    let listener = lab
        .server
        .command("python3")
        .args([
            "-m",
            "http.server",
            "8080",
            "--bind",
            "10.70.0.1",
            "--directory",
        ])
        .arg(&lab.dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _listener = common::vm::Killed(listener);
    // An flist whose route names the store on the server side.
    let flist = lab.dir.join("routed.fl");
    let fixture = std::fs::read_dir(common::fixtures().join("odd-tree"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "fl"))
        .unwrap();
    std::fs::copy(&fixture, &flist).unwrap();
    let out = common::agent(&[
        "flist",
        "route",
        "set",
        "-m",
        flist.to_str().unwrap(),
        "http://user:pw@10.70.0.1:8080/store",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listening = || {
        let out = lab.server.command("ss").arg("-ltn").output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("10.70.0.1:8080")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !listening() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let (code, report) = lab.net_up(&[
        "--links",
        "v0",
        "--check",
        flist.to_str().unwrap(),
        "--check",
        "http://10.70.0.1:9/",
    ]);
    assert_eq!(code, 1, "one store is down: {report:#}");
    assert_eq!(report["outcome"], "degraded");
    assert!(
        report["detail"]
            .as_str()
            .unwrap()
            .contains("1 of 2 stores unreachable"),
        "{report:#}"
    );
    let reach = report["reachability"].as_array().unwrap();
    let up = reach
        .iter()
        .find(|r| r["endpoint"] == "10.70.0.1:8080")
        .unwrap();
    assert!(up["connect_ms"].is_u64(), "{up}");
    assert!(
        !up["store"].as_str().unwrap().contains("pw"),
        "credentials never shown: {up}"
    );
    let down = reach
        .iter()
        .find(|r| r["endpoint"] == "10.70.0.1:9")
        .unwrap();
    assert!(
        down["error"].as_str().unwrap().contains("refused"),
        "{down}"
    );
    // The network itself is configured either way.
    assert!(lab.routes().contains("default via 10.70.0.1"));
}

#[test]
fn zos_layout_puts_the_address_on_a_bridge_with_the_nics_mac() {
    let lab = Lab::new("net-zos", 1);
    let server = lab.serve(0, &[]);
    let zos = ["--links", "v0", "--cmdline", "initagent.net.layout=zos"];
    let (code, report) = lab.net_up(&zos);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        report["detail"]
            .as_str()
            .unwrap()
            .contains("v0 (on bridge zos)"),
        "{report:#}"
    );
    let mac_of = |link: &str| {
        let text = lab.client.ip_output(&["link", "show", link]);
        text.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    let nic_mac = mac_of("v0");
    assert_eq!(mac_of("zos"), nic_mac, "the bridge carries the NIC's MAC");
    assert!(lab
        .client
        .ip_output(&["-d", "link", "show", "zos"])
        .contains("bridge"));
    assert!(lab
        .client
        .ip_output(&["link", "show", "v0"])
        .contains("master zos"));
    assert!(
        lab.addresses("zos").contains("inet 10.70.0."),
        "{}",
        lab.addresses("zos")
    );
    assert!(
        !lab.addresses("v0").contains("inet "),
        "{}",
        lab.addresses("v0")
    );
    assert!(
        lab.routes().contains("default via 10.70.0.1 dev zos"),
        "{}",
        lab.routes()
    );
    let file: Value = serde_json::from_str(&read(&lab.run_dir().join("zos.json"))).unwrap();
    assert_eq!(file["mac"], nic_mac.as_str());
    assert_eq!(
        file["lease"]["client_id"],
        format!("01{}", nic_mac.replace(':', ""))
    );

    // Again: the enslaved NIC is no candidate any more, the bridge's lease is kept.
    let discovers = server.count("DHCPDISCOVER");
    let (code, report) = lab.net_up(&zos);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["links"][0]["reused"], true, "{report:#}");
    assert_eq!(server.count("DHCPDISCOVER"), discovers);

    // The renewal runs on the bridge with the same identity.
    let out = lab.client.agent(&[
        "net",
        "renew",
        "--once",
        "--run-dir",
        lab.run_dir().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("zos: 10.70.0."),
        "{stdout}"
    );
}

#[test]
fn slaac_address_is_reported_when_a_router_advertises() {
    let lab = Lab::new("net-slaac", 1);
    let _server = lab.serve(0, &[]);
    // radvd, a real router advertisement daemon, on the server side of the link.
    lab.server
        .ip(&["-6", "addr", "add", "2001:db8:70::1/64", "dev", "s0"]);
    let forwarding = lab
        .server
        .command("sysctl")
        .args(["-qw", "net.ipv6.conf.all.forwarding=1"])
        .status()
        .unwrap();
    assert!(forwarding.success());
    let config = lab.dir.join("radvd.conf");
    std::fs::write(
        &config,
        "interface s0 {\n AdvSendAdvert on;\n MinRtrAdvInterval 3;\n MaxRtrAdvInterval 4;\n \
         prefix 2001:db8:70::/64 { AdvOnLink on; AdvAutonomous on; };\n};\n",
    )
    .unwrap();
    let radvd = lab
        .server
        .command("radvd")
        .args(["--nodaemon", "--config"])
        .arg(&config)
        .arg("--pidfile")
        .arg(lab.dir.join("radvd.pid"))
        .args(["--logmethod", "stderr"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(lab.dir.join("radvd.log")).unwrap())
        .spawn()
        .expect("radvd (make setup)");
    let _radvd = common::vm::Killed(radvd);

    let (code, report) = lab.net_up(&["--links", "v0", "--ipv6-timeout", "20"]);
    assert_eq!(code, 0, "{report:#}");
    let ipv6 = report["applied"]["ipv6"].as_array().unwrap();
    assert!(
        ipv6.iter()
            .any(|a| a.as_str().unwrap().starts_with("2001:db8:70:")),
        "{report:#}\n{}",
        read(&lab.dir.join("radvd.log"))
    );

    // Without a router the step does not wait past its IPv6 deadline and reports nothing.
    let lab = Lab::new("net-slaac-none", 1);
    let _server = lab.serve(0, &[]);
    let (code, report) = lab.net_up(&["--links", "v0", "--ipv6-timeout", "1"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["applied"]["ipv6"], serde_json::json!([]));
}

#[test]
fn virtual_links_are_no_candidates_unless_named() {
    let lab = Lab::new("net-virtual", 1);
    let _server = lab.serve(0, &[]);
    let (code, report) = lab.net_up(&[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["detail"], "no candidate link");
    let skipped = report["skipped"].as_array().unwrap();
    assert!(
        skipped.contains(&serde_json::json!(["v0", "virtual (veth)"])),
        "{report:#}"
    );
    assert!(
        skipped.contains(&serde_json::json!(["lo", "loopback"])),
        "{report:#}"
    );
    assert!(!lab.addresses("v0").contains("inet "));

    // ip=off: nothing to configure is success, with or without candidates.
    let (code, report) = lab.net_up(&["--cmdline", "ip=off"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["detail"], "ip=off: nothing configured");
}
