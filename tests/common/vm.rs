//! QEMU harness: boots one of Debian's real kernels (TCG, PVH vmlinux; the current one
//! unless a test asks for the fixture's, `super::kernel`) with an initramfs built by
//! `initramfs/mkinitramfs.py` around the static agent, inside a network namespace made for
//! the run. Console on the first serial port (a socket, so a test can type into it),
//! results as lines on the second. Tests assert on those lines, never on QEMU's exit code
//! or on time; a hard timeout kills a hung guest. Everything started is killed and the
//! namespace deleted on every exit path (Drop).

use super::kernel::Kernel;
use super::netns::NetNs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The port of [`Vm::serve_dir`]'s server, in the run's own namespace.
pub const SERVED_PORT: u16 = 8080;

/// Kernel command line every test boot starts with: serial console, reboot (and so
/// QEMU exit, with -no-reboot) on panic, and the trims that save about a second
/// under TCG.
const BASE_APPEND: &str =
    "console=ttyS0 panic=-1 quiet mitigations=off tsc=reliable no_timer_check \
audit=0 apparmor=0 i8042.noaux i8042.nopnp cryptomgr.notests";

/// The guest's CPU: everything QEMU's TCG can emulate but AVX. QEMU 7.2 (Debian 12) runs
/// AVX2 code far slower than the SSE code the same libraries pick without it: the agent's
/// codec bench under `qemu-x86_64` does BLAKE2b at 4.9 MB/s with AVX2 and 62 MB/s
/// without (962 MB/s natively), a cost no real CPU has. `INITAGENT_VM_CPU=max` boots with
/// it (docs/testing.md).
pub fn vm_cpu() -> String {
    std::env::var("INITAGENT_VM_CPU").unwrap_or_else(|_| "max,-avx,-avx2".to_string())
}

/// [`Vm::serve_dir_slowly`]'s store: `python3 -m http.server` (HTTP/1.1, threads, on the
/// namespace's loopback) whose answers wait `argv[3]` seconds each. Arguments: port,
/// directory, delay. With `TCP_NODELAY`, as real stores answer (nginx's `tcp_nodelay` is
/// on by default): without it, the last segment of each answer on a kept connection
/// waited for the client's delayed ACK, about 35 ms per request (200 blocks: 6.99 s
/// against 0.34 s).
const SLOW_SERVER: &str = "
import functools, http.server, sys, time
port, directory, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    disable_nagle_algorithm = True
    def send_head(self):
        time.sleep(delay)
        return super().send_head()
handler = functools.partial(Handler, directory=directory)
http.server.ThreadingHTTPServer(('127.0.0.1', port), handler).serve_forever()
";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh sparse disk image of `bytes` at `target/vm-disks/NAME` (all zeros: blank), for
/// a VM's `-drive`.
pub fn blank_disk(name: &str, bytes: u64) -> PathBuf {
    let disk = repo_root().join("target/vm-disks").join(name);
    std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&disk);
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(bytes)
        .unwrap();
    disk
}

/// The static release binary the VM runs (built by `make test` before the tests).
pub fn agent_binary() -> PathBuf {
    std::env::var_os("INITAGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/x86_64-unknown-linux-musl/release/initagent"))
}

/// The real zinit (v0.2.14, static) that `make setup` builds from the shared sources.
pub fn zinit_binary() -> PathBuf {
    let path = std::env::var_os("INITAGENT_ZCACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/initagent/zinit"))
        .join("zinit");
    require(&path, "zinit");
    path
}

fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} {} is missing: run `make test` (it installs QEMU, fetches the kernel and builds the agent)",
        path.display()
    );
}

/// A file to put in the image.
pub struct Extra {
    pub dest: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// One boot.
pub struct Vm {
    name: String,
    target: String,
    extras: Vec<Extra>,
    append: String,
    typed: Vec<(String, String)>,
    stop_on: Option<String>,
    /// How many times `stop_on` must appear.
    stop_count: usize,
    /// How long the VM runs on after `stop_on` appeared.
    stop_delay: Duration,
    /// The guest may reboot (QEMU without -no-reboot): RAM, and so ramoops, survive it.
    reboot: bool,
    timeout: Duration,
    xz: Vec<String>,
    symlinks: Vec<(String, String)>,
    chardevs: Vec<(String, u32, u32)>,
    cpus: u32,
    after_maps: Vec<Extra>,
    served: Option<PathBuf>,
    served_after: Duration,
    /// How long the server waits before answering each request.
    served_slowly: Duration,
    qemu_args: Vec<String>,
    flists: Vec<PathBuf>,
    firmware_root: Option<PathBuf>,
    trees: Vec<(PathBuf, String)>,
    memory_mb: u32,
    kernel: Kernel,
    netns: Option<String>,
    ca_file: Option<PathBuf>,
    zinit: bool,
    removed: Vec<String>,
    nic: bool,
}

/// What a boot produced.
pub struct Boot {
    pub console: String,
    pub results: Vec<String>,
    pub timed_out: bool,
    pub out_dir: PathBuf,
}

impl Vm {
    pub fn new(name: &str) -> Vm {
        let kernel = Kernel::current();
        Vm {
            name: name.to_string(),
            target: kernel.target.into(),
            extras: Vec::new(),
            append: String::new(),
            typed: Vec::new(),
            stop_on: None,
            stop_count: 1,
            stop_delay: Duration::from_millis(300),
            reboot: false,
            timeout: Duration::from_secs(120),
            xz: Vec::new(),
            symlinks: Vec::new(),
            chardevs: Vec::new(),
            cpus: 1,
            after_maps: Vec::new(),
            served: None,
            served_after: Duration::ZERO,
            served_slowly: Duration::ZERO,
            qemu_args: Vec::new(),
            flists: Vec::new(),
            firmware_root: None,
            trees: Vec::new(),
            memory_mb: 512,
            kernel,
            netns: None,
            ca_file: None,
            zinit: false,
            removed: Vec::new(),
            nic: false,
        }
    }

    /// A NIC on QEMU's user network (its DHCP server answers), so zinit's `internet` and
    /// what waits for it can finish.
    pub fn with_nic(mut self) -> Vm {
        self.nic = true;
        self
    }

    /// Leaves a file of the target out of the image (`/etc/initagent/modules`: a node
    /// without a module list).
    pub fn without(mut self, dest: &str) -> Vm {
        self.removed.push(dest.into());
        self
    }

    /// Runs QEMU in the test's network namespace `ns` (where the test runs its servers:
    /// the guest reaches its loopback as 10.0.2.2 through a NIC on QEMU's user network)
    /// instead of one of its own.
    pub fn in_netns(mut self, ns: &super::netns::NetNs) -> Vm {
        self.netns = Some(ns.name.clone());
        self
    }

    /// Hands off to the real zinit (v0.2.14, `make setup`'s build, as `/sbin/zinit`) with
    /// the image's service files, plus the test's eyes as one more oneshot: `report`, a
    /// guest script of the repository, which zinit starts once the agent's own services
    /// are done (the late ones after the flists, the status, the lease renewal running).
    /// If one of them never gets there, the report never runs and the test sees the hang.
    pub fn zinit_with_report(self, report: &str) -> Vm {
        self.zinit_with_report_after(
            report,
            &["initagent-late-coldplug", "initagent-status", "net-renew"],
        )
    }

    /// [`Vm::zinit_with_report`], the report starting once the services `after` are done.
    pub fn zinit_with_report_after(mut self, report: &str, after: &[&str]) -> Vm {
        self.zinit = true;
        let mut service =
            "# The test's eyes under the real zinit.\nexec: /sbin/test-report\noneshot: true\nlog: stdout\nafter:\n"
                .to_string();
        for name in after {
            service.push_str(&format!("  - {name}\n"));
        }
        self.repo_file("/sbin/test-report", report, 0o755).file(
            "/etc/zinit/test-report.yaml",
            service,
            0o644,
        )
    }

    /// Builds the image with `--ca-file PEM` (the CA stage 1 trusts for its stores).
    pub fn ca_file(mut self, pem: &Path) -> Vm {
        self.ca_file = Some(pem.to_path_buf());
        self
    }

    /// Boots `kernel` with an image made from its own module tree, for its own target
    /// (`Kernel::target`; a later [`Vm::target`] overrides it); the default is Debian's
    /// current kernel.
    pub fn kernel(mut self, kernel: Kernel) -> Vm {
        self.target = kernel.target.into();
        self.kernel = kernel;
        self
    }

    /// Puts Debian's udevd in the image (`udevadm` with its libraries, as
    /// `/lib/systemd/systemd-udevd` too) with the rule that makes it load drivers
    /// (`80-drivers.rules`: `kmod load $env{MODALIAS}`), from the `udev` package `make
    /// setup` extracts.
    pub fn with_debian_udevd(mut self) -> Vm {
        let udev = Path::new("/var/cache/initagent/udev/root");
        for (dest, data) in super::with_libraries(&udev.join("bin/udevadm"), "/bin/udevadm") {
            self = self.file(&dest, data, 0o755);
        }
        let rule = std::fs::read(udev.join("lib/udev/rules.d/80-drivers.rules"))
            .expect("udev rules (make setup)");
        self.symlink("/lib/systemd/systemd-udevd", "/bin/udevadm")
            .file("/lib/udev/rules.d/80-drivers.rules", rule, 0o644)
    }

    /// Puts the whole directory `source` in the image at `dest`.
    pub fn tree(mut self, source: &Path, dest: &str) -> Vm {
        self.trees.push((source.to_path_buf(), dest.into()));
        self
    }

    /// Guest memory (default 512 MiB).
    pub fn memory_mb(mut self, megabytes: u32) -> Vm {
        self.memory_mb = megabytes;
        self
    }

    /// Builds the image for another target of `targets/` (default: the kernel's, `vm-test`
    /// for the current one).
    pub fn target(mut self, target: &str) -> Vm {
        self.target = target.into();
        self
    }

    /// Puts an flist manifest in the image for stage 1 (`/etc/initagent/flists/`).
    pub fn flist(mut self, manifest: &Path) -> Vm {
        self.flists.push(manifest.to_path_buf());
        self
    }

    /// Where the bootstrap modules' firmware is taken from.
    pub fn firmware_root(mut self, dir: &Path) -> Vm {
        self.firmware_root = Some(dir.to_path_buf());
        self
    }

    /// Adds a file to the image.
    pub fn file(mut self, dest: &str, content: impl Into<Vec<u8>>, mode: u32) -> Vm {
        self.extras.push(Extra {
            dest: dest.into(),
            content: content.into(),
            mode,
        });
        self
    }

    /// Adds a file after the module maps and their stamp were made (a tree that changed
    /// behind its maps).
    pub fn file_after_maps(mut self, dest: &str, content: impl Into<Vec<u8>>) -> Vm {
        self.after_maps.push(Extra {
            dest: dest.into(),
            content: content.into(),
            mode: 0o644,
        });
        self
    }

    /// Gives the guest `cpus` virtual CPUs (multi-threaded TCG; default 1).
    pub fn cpus(mut self, cpus: u32) -> Vm {
        self.cpus = cpus;
        self
    }

    /// Extra QEMU arguments (devices for coldplug tests).
    pub fn qemu(mut self, args: &[&str]) -> Vm {
        self.qemu_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Gives the guest a NIC (the kernel's [`Kernel::nic`] model) on QEMU's user network
    /// (inside the run's namespace) and serves `dir` over HTTP on the namespace's
    /// loopback, port [`SERVED_PORT`], with Debian's nginx: the guest reaches it as
    /// `http://10.0.2.2:8080/`.
    pub fn serve_dir(mut self, dir: &Path) -> Vm {
        self.served = Some(dir.to_path_buf());
        self
    }

    /// [`Vm::serve_dir`], the server starting only `delay` after the VM: a store that is
    /// down at boot and comes back.
    pub fn serve_dir_after(mut self, dir: &Path, delay: Duration) -> Vm {
        self.served_after = delay;
        self.serve_dir(dir)
    }

    /// [`Vm::serve_dir`], each answer `delay` late: a slow store, so the guest's fetches
    /// last long enough for a test to act in the middle of them.
    pub fn serve_dir_slowly(mut self, dir: &Path, delay: Duration) -> Vm {
        self.served_slowly = delay;
        self.serve_dir(dir)
    }

    /// Gives up on a hung guest after `limit` (default 120 s).
    pub fn timeout(mut self, limit: Duration) -> Vm {
        self.timeout = limit;
        self
    }

    /// Adds a symbolic link.
    pub fn symlink(mut self, dest: &str, target: &str) -> Vm {
        self.symlinks.push((dest.into(), target.into()));
        self
    }

    /// Puts a character device node at `dest`, replacing what the image has there once
    /// the module maps are made (a hostile tree).
    pub fn chardev(mut self, dest: &str, major: u32, minor: u32) -> Vm {
        self.chardevs.push((dest.into(), major, minor));
        self
    }

    /// Adds a file from the repository.
    pub fn repo_file(self, dest: &str, source: &str, mode: u32) -> Vm {
        let content = std::fs::read(repo_root().join(source)).expect(source);
        self.file(dest, content, mode)
    }

    /// Stages module `name` xz-compressed in the image.
    pub fn xz(mut self, name: &str) -> Vm {
        self.xz.push(name.into());
        self
    }

    /// Appends to the kernel command line.
    pub fn append(mut self, text: &str) -> Vm {
        self.append.push(' ');
        self.append.push_str(text);
        self
    }

    /// Types `input` on the console once `pattern` has appeared there.
    pub fn type_after(mut self, pattern: &str, input: &str) -> Vm {
        self.typed.push((pattern.into(), input.into()));
        self
    }

    /// Stops the VM once `pattern` appears on the console (for a halted guest).
    pub fn stop_on(mut self, pattern: &str) -> Vm {
        self.stop_on = Some(pattern.into());
        self
    }

    /// Stops the VM once `pattern` appeared `count` times (over reboots).
    pub fn stop_on_count(mut self, pattern: &str, count: usize) -> Vm {
        self.stop_count = count;
        self.stop_on(pattern)
    }

    /// Kills QEMU (a power cut) `delay` after `pattern` appeared.
    pub fn cut_after(mut self, pattern: &str, delay: Duration) -> Vm {
        self.stop_delay = delay;
        self.stop_on(pattern)
    }

    /// Lets the guest reboot instead of ending QEMU: a warm reset, RAM kept (ramoops).
    pub fn allow_reboot(mut self) -> Vm {
        self.reboot = true;
        self
    }

    fn build_initramfs(&self, out: &Path) -> PathBuf {
        let mut command = Command::new("python3");
        command
            .arg(repo_root().join("initramfs/mkinitramfs.py"))
            .arg("--target")
            .arg(&self.target)
            .arg("--agent")
            .arg(agent_binary());
        command
            .arg("--kernel-root")
            .arg(&self.kernel.root)
            .arg("--kernel-release")
            .arg(&self.kernel.release);
        for name in &self.xz {
            command.arg("--xz").arg(name);
        }
        for manifest in &self.flists {
            command.arg("--flist").arg(manifest);
        }
        if let Some(dir) = &self.firmware_root {
            command.arg("--firmware-root").arg(dir);
        }
        if let Some(pem) = &self.ca_file {
            command.arg("--ca-file").arg(pem);
        }
        if self.zinit {
            command.arg("--zinit").arg(zinit_binary());
        }
        for (source, dest) in &self.trees {
            command
                .arg("--tree")
                .arg(format!("{}:{dest}", source.display()));
        }
        for (i, extra) in self.after_maps.iter().enumerate() {
            let source = out.join(format!("after-maps-{i}"));
            std::fs::write(&source, &extra.content).unwrap();
            command
                .arg("--after-maps")
                .arg(format!("{}:{}", source.display(), extra.dest));
        }
        for (dest, target) in &self.symlinks {
            command.arg("--symlink").arg(format!("{dest}:{target}"));
        }
        for (dest, major, minor) in &self.chardevs {
            command
                .arg("--chardev")
                .arg(format!("{dest}:{major}:{minor}"));
        }
        for dest in &self.removed {
            command.arg("--remove").arg(dest);
        }
        for (i, extra) in self.extras.iter().enumerate() {
            let source = out.join(format!("extra-{i}"));
            std::fs::write(&source, &extra.content).unwrap();
            command.arg("--add").arg(format!(
                "{}:{}:{:o}",
                source.display(),
                extra.dest,
                extra.mode
            ));
        }
        let initrd = out.join("initrd.cpio");
        let status = command
            .arg("-o")
            .arg(&initrd)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "mkinitramfs failed for {}", self.name);
        initrd
    }

    /// Boots and returns the console text and the result lines.
    pub fn boot(self) -> Boot {
        require(&self.kernel.image, "kernel");
        require(&agent_binary(), "agent");
        let out = repo_root().join("target/vm").join(&self.name);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let initrd = self.build_initramfs(&out);
        let own_netns = match self.netns {
            None => Some(NetNs::create()),
            Some(_) => None,
        };
        let netns = self
            .netns
            .clone()
            .or_else(|| own_netns.as_ref().map(|ns| ns.name.clone()))
            .unwrap_or_default();
        let server = self.served.as_ref().map(|dir| {
            // Debian's nginx, as operators serve an HTTP store (sendfile, one process: on
            // this machine's two cores the store's CPU is taken from the VM's); Python's
            // server only where each answer must come late.
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", &netns, "sh", "-c"])
                .arg(format!(
                    "sleep {}; exec \"$0\" \"$@\"",
                    self.served_after.as_secs_f32()
                ));
            if self.served_slowly.is_zero() {
                let tmp = out.join("nginx-tmp");
                std::fs::create_dir_all(&tmp).unwrap();
                let server = format!(
                    "listen 127.0.0.1:{SERVED_PORT};\n    root {};\n    sendfile on;",
                    dir.display()
                );
                let config = out.join("nginx.conf");
                std::fs::write(&config, super::servers::nginx_conf(&out, &tmp, &server)).unwrap();
                command.arg("nginx").arg("-c").arg(config);
            } else {
                command
                    .args(["python3", "-c", SLOW_SERVER])
                    .arg(SERVED_PORT.to_string())
                    .arg(dir)
                    .arg(self.served_slowly.as_secs_f64().to_string());
            }
            let child = command
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(out.join("http.log")).unwrap())
                .spawn()
                .expect("the store's server (make setup installs nginx)");
            Killed(child)
        });
        // A NIC on QEMU's user network when the guest has something to reach there.
        let nic = if self.nic || self.served.is_some() || self.netns.is_some() {
            vec![
                "-netdev".to_string(),
                "user,id=n0".to_string(),
                "-device".to_string(),
                format!("{},netdev=n0", self.kernel.nic),
            ]
        } else {
            Vec::new()
        };
        let socket = out.join("console.sock");
        let results_path = out.join("results.log");
        let qemu = Command::new("ip")
            .args(["netns", "exec", &netns, "qemu-system-x86_64"])
            .args(["-accel", "tcg,thread=multi", "-cpu", &vm_cpu(), "-m"])
            .arg(format!("{}M", self.memory_mb))
            .arg("-smp")
            .arg(self.cpus.to_string())
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(if self.reboot {
                None
            } else {
                Some("-no-reboot")
            })
            .args(&nic)
            .args(&self.qemu_args)
            .arg("-chardev")
            .arg(format!(
                "socket,id=con,path={},server=on,wait=on",
                socket.display()
            ))
            .args(["-serial", "chardev:con"])
            .arg("-serial")
            .arg(format!("file:{}", results_path.display()))
            .arg("-kernel")
            .arg(&self.kernel.image)
            .arg("-initrd")
            .arg(&initrd)
            .arg("-append")
            .arg(format!("{BASE_APPEND}{}", self.append))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out.join("qemu.log")).unwrap())
            .stderr(Stdio::from(
                std::fs::File::create(out.join("qemu.err")).unwrap(),
            ))
            .spawn()
            .expect("qemu-system-x86_64 (run `make test` to install it)");
        let mut guard = Running {
            qemu,
            _server: server,
            _netns: own_netns,
        };
        let started = Instant::now();
        let stream = loop {
            if let Ok(stream) = UnixStream::connect(&socket) {
                break stream;
            }
            if let Ok(Some(status)) = guard.qemu.try_wait() {
                let err = std::fs::read_to_string(out.join("qemu.err")).unwrap_or_default();
                panic!("qemu exited before the console connected ({status}): {err}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "qemu console socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let console = Arc::new(Mutex::new(Vec::new()));
        let mut reader = stream.try_clone().unwrap();
        let sink = Arc::clone(&console);
        let log_path = out.join("console.log");
        let reader_thread = std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).unwrap();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let _ = log.write_all(&buffer[..n]);
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        let mut writer = stream;
        let mut pending = self.typed.clone();
        let mut timed_out = false;
        loop {
            if let Ok(Some(_)) = guard.qemu.try_wait() {
                break;
            }
            let text = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
            if let Some((pattern, _)) = pending.first() {
                if text.contains(pattern.as_str()) {
                    let (_, input) = pending.remove(0);
                    // Type slowly: the guest's UART has a 16-byte FIFO.
                    for chunk in input.as_bytes().chunks(8) {
                        let _ = writer.write_all(chunk);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            if let Some(pattern) = &self.stop_on {
                if text.matches(pattern.as_str()).count() >= self.stop_count {
                    std::thread::sleep(self.stop_delay);
                    break;
                }
            }
            if started.elapsed() > self.timeout {
                timed_out = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        guard.stop();
        let _ = writer.shutdown(std::net::Shutdown::Both);
        let _ = reader_thread.join();
        let console = String::from_utf8_lossy(&console.lock().unwrap()).replace('\r', "");
        let results = std::fs::read_to_string(&results_path)
            .unwrap_or_default()
            .replace('\r', "")
            .lines()
            .map(str::to_string)
            .collect();
        Boot {
            console,
            results,
            timed_out,
            out_dir: out,
        }
    }
}

impl Boot {
    /// The JSON document the guest printed between `report-begin` and `report-end`.
    pub fn report(&self) -> serde_json::Value {
        self.json("report")
    }

    /// The JSON document the guest printed between `NAME-begin` and `NAME-end`.
    pub fn json(&self, name: &str) -> serde_json::Value {
        let begin = self
            .results
            .iter()
            .position(|l| *l == format!("{name}-begin"));
        let end = self
            .results
            .iter()
            .position(|l| *l == format!("{name}-end"));
        match (begin, end) {
            (Some(b), Some(e)) if b < e => {
                let text = self.results[b + 1..e].join("\n");
                serde_json::from_str(&text)
                    .unwrap_or_else(|err| panic!("{name} is not JSON ({err}): {text}"))
            }
            _ => panic!("no {name} on the results port; {}", self.explain()),
        }
    }

    /// The first result line starting with `prefix`, without the prefix.
    pub fn result(&self, prefix: &str) -> Option<&str> {
        self.results.iter().find_map(|l| l.strip_prefix(prefix))
    }

    /// Every result line starting with `prefix`, without the prefix.
    pub fn lines(&self, prefix: &str) -> Vec<&str> {
        self.results
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .collect()
    }

    /// The services' states in the guest's `zinit list` (node-check.sh's `zinit-list:`
    /// lines).
    pub fn zinit_states(&self) -> std::collections::BTreeMap<&str, &str> {
        self.lines("zinit-list: ")
            .iter()
            .filter_map(|l| l.split_once(": "))
            .collect()
    }

    /// The real zinit is PID 1, and every service of `zinit/` reached the state its
    /// dependents wait for: the oneshots `Success`, the lease renewal and the flists'
    /// guard `Running`.
    pub fn assert_zinit_ran_every_service(&self) {
        assert!(
            self.results.iter().any(|l| l.contains(" pid1=zinit ")),
            "{}",
            self.explain()
        );
        let states = self.zinit_states();
        for entry in std::fs::read_dir(repo_root().join("zinit")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let expected = if ["net-renew", "initagent-flists-guard"].contains(&name.as_str()) {
                "Running"
            } else {
                "Success"
            };
            assert_eq!(
                states.get(name.as_str()).copied(),
                Some(expected),
                "{name} under zinit: {states:?}"
            );
        }
        // The renewal keeps only leases: stage 1's own result is not in its directory.
        assert!(
            !self.console.contains("not a lease file"),
            "{}",
            self.explain()
        );
    }

    /// Whether a result line starts with `prefix`.
    pub fn has_result(&self, prefix: &str) -> bool {
        self.results.iter().any(|l| l.starts_with(prefix))
    }

    /// The kernel never panicked and the guest did not hang.
    pub fn assert_clean(&self) {
        assert!(!self.timed_out, "the guest hung; {}", self.explain());
        for bad in ["Kernel panic", "Attempted to kill init", "panicked at"] {
            assert!(
                !self.console.contains(bad),
                "console shows {bad:?}; {}",
                self.explain()
            );
        }
    }

    /// Where to look, for assertion messages.
    pub fn explain(&self) -> String {
        let tail: String = self
            .console
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "output in {}; results: {:?}\n--- console tail ---\n{tail}",
            self.out_dir.display(),
            self.results
        )
    }
}

struct Running {
    qemu: Child,
    // Dropped before the namespace.
    _server: Option<Killed>,
    _netns: Option<NetNs>,
}

/// A helper process, killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn stop(&mut self) {
        if let Ok(None) = self.qemu.try_wait() {
            // `ip netns exec` execs qemu, so this pid is qemu itself.
            let _ = self.qemu.kill();
        }
        let _ = self.qemu.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
