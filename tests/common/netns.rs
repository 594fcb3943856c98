//! Network namespaces, veth pairs and a real DHCP server (dnsmasq) for the network tests.
//! Everything is deleted or killed on drop; no traffic leaves the namespaces.

use super::vm::Killed;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A network namespace holding only loopback, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn create() -> NetNs {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ia{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip (iproute2)");
        assert!(status.success(), "ip netns add {name} failed (root needed)");
        let _ = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status();
        NetNs { name }
    }

    /// `ip -n <ns> <args>`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let status = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip -n {} {args:?}", self.name);
    }

    /// `ip -n <ns> <args>` output.
    pub fn ip_output(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (10 s at most) until something listens on 127.0.0.1:`port` inside it.
    pub fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let probe = self
                .command("bash")
                .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if probe.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on {port} in {}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a program inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs the agent inside the namespace and collects its output.
    pub fn agent(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_initagent"))
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair: `a_name` in `a`, `b_name` in `b`, both ends down.
pub fn veth(a: &NetNs, a_name: &str, b: &NetNs, b_name: &str) {
    let status = Command::new("ip")
        .args(["link", "add", a_name, "netns", &a.name, "type", "veth"])
        .args(["peer", "name", b_name, "netns", &b.name])
        .status()
        .unwrap();
    assert!(status.success(), "veth {a_name}/{b_name}");
}

/// dnsmasq serving DHCP on one interface of a namespace (DNS off), killed on drop.
pub struct Dnsmasq {
    _process: Killed,
    pub log: PathBuf,
}

impl Dnsmasq {
    /// Gives `interface` in `ns` the address `server/24`, brings it up and serves
    /// `range` (`first,last,lease`) plus `extra` dnsmasq arguments.
    pub fn start(
        ns: &NetNs,
        interface: &str,
        server: &str,
        range: &str,
        extra: &[&str],
        dir: &Path,
    ) -> Dnsmasq {
        ns.ip(&["addr", "add", &format!("{server}/24"), "dev", interface]);
        ns.ip(&["link", "set", interface, "up"]);
        let log = dir.join(format!("dnsmasq-{interface}.log"));
        let child = ns
            .command("dnsmasq")
            .args([
                "-k",
                "--no-resolv",
                "--no-hosts",
                "--port=0",
                "--bind-interfaces",
                "--log-dhcp",
            ])
            .arg(format!("--interface={interface}"))
            .arg(format!("--dhcp-range={range}"))
            .arg(format!(
                "--pid-file={}",
                dir.join(format!("dnsmasq-{interface}.pid")).display()
            ))
            .arg(format!(
                "--dhcp-leasefile={}",
                dir.join(format!("dnsmasq-{interface}.leases")).display()
            ))
            .arg(format!("--log-facility={}", log.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (make setup)");
        let dnsmasq = Dnsmasq {
            _process: Killed(child),
            log,
        };
        // Ready once it has written its start-up lines.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dnsmasq.log_text().contains("DHCP, IP range") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        dnsmasq
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times the log has `word` (DHCPDISCOVER, DHCPNAK, …).
    pub fn count(&self, word: &str) -> usize {
        self.log_text().matches(word).count()
    }
}
