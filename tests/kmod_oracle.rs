//! kmod as the oracle: on Debian's whole module tree (fetched by `make setup`), what
//! `initagent modules resolve` says equals what `modprobe --show-depends` and
//! `modprobe -R` print: for every module, for a corpus of real-looking modaliases, and
//! for modprobe.d and kernel-command-line configuration cases. Both sides read the same
//! configuration directory and the same command line (bind-mounted over /proc/cmdline
//! for modprobe in a private mount namespace).
#![cfg(feature = "system-tests")]

mod common;

use common::kernel::debian_tree;
use initagent::config::cmdline::Cmdline;
use initagent::kmod::resolve::BlacklistMode;
use initagent::kmod::Modules;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Oracle {
    root: PathBuf,
    release: String,
    config_dir: PathBuf,
    cmdline_file: PathBuf,
}

/// What modprobe printed for one input: its stdout lines and exit status.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    lines: Vec<String>,
    found: bool,
}

impl Oracle {
    fn new(name: &str, config: &str, cmdline: &str) -> Oracle {
        let (root, release) = debian_tree();
        let dir = common::scratch(name);
        let config_dir = dir.join("modprobe.d");
        std::fs::create_dir_all(&config_dir).unwrap();
        if !config.is_empty() {
            std::fs::write(config_dir.join("test.conf"), config).unwrap();
        }
        let cmdline_file = dir.join("cmdline");
        std::fs::write(&cmdline_file, format!("{cmdline}\n")).unwrap();
        Oracle {
            root,
            release,
            config_dir,
            cmdline_file,
        }
    }

    /// Runs modprobe with `flags` for every input, in two parallel batches, each inside
    /// one private mount namespace whose /proc/cmdline is our file.
    fn modprobe(&self, flags: &str, inputs: &[String]) -> HashMap<String, Answer> {
        let script = format!(
            "mount --bind \"$0\" /proc/cmdline || exit 99\n\
             while IFS= read -r m; do\n\
               echo \"@@@ begin\"\n\
               modprobe -C {conf} -d {root} -S {release} {flags} -- \"$m\" 2>/dev/null\n\
               echo \"@@@ rc=$?\"\n\
             done",
            conf = self.config_dir.display(),
            root = self.root.display(),
            release = self.release,
        );
        let chunks: Vec<&[String]> = inputs.chunks(inputs.len().div_ceil(2).max(1)).collect();
        let outputs: Vec<(Vec<String>, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    let script = script.clone();
                    let cmdline = self.cmdline_file.clone();
                    scope.spawn(move || {
                        let mut child = Command::new("unshare")
                            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
                            .arg(&cmdline)
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .spawn()
                            .expect("unshare and modprobe (make setup installs kmod)");
                        let mut stdin = child.stdin.take().unwrap();
                        let names = chunk.join("\n") + "\n";
                        let writer = std::thread::spawn(move || stdin.write_all(names.as_bytes()));
                        let output = child.wait_with_output().unwrap();
                        writer.join().unwrap().unwrap();
                        assert!(
                            output.status.success(),
                            "modprobe batch failed: {:?}",
                            output.status
                        );
                        (
                            chunk.to_vec(),
                            String::from_utf8_lossy(&output.stdout).into_owned(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut answers = HashMap::new();
        for (chunk, text) in outputs {
            let mut blocks = text.split("@@@ begin\n").skip(1);
            for input in chunk {
                let block = blocks
                    .next()
                    .unwrap_or_else(|| panic!("no modprobe output for {input}"));
                let (body, rc) = block.rsplit_once("@@@ rc=").unwrap();
                let lines = body.lines().map(str::to_string).collect();
                answers.insert(
                    input,
                    Answer {
                        lines,
                        found: rc.trim() == "0",
                    },
                );
            }
        }
        answers
    }

    fn ours(&self) -> Modules {
        let cmdline = Cmdline::parse_bytes(&std::fs::read(&self.cmdline_file).unwrap());
        Modules::open(
            &self.root,
            &self.release,
            std::slice::from_ref(&self.config_dir),
            &cmdline,
        )
        .unwrap()
    }

    /// Compares `--show-depends` and `-R` for every input; returns the divergences.
    fn compare(&self, inputs: &[String], mode: BlacklistMode) -> Vec<String> {
        let flag = if mode == BlacklistMode::Always {
            "-b "
        } else {
            ""
        };
        let shown = self.modprobe(&format!("{flag}--show-depends"), inputs);
        let looked_up = self.modprobe(&format!("{flag}-R"), inputs);
        let modules = self.ours();
        let resolver = modules.resolver();
        let mut divergences = Vec::new();
        for input in inputs {
            let resolution = resolver.resolve(input, mode);
            let ours = Answer {
                lines: resolution.show_depends(),
                found: !resolution.probes.is_empty(),
            };
            let theirs = &shown[input];
            // modprobe exits 0 for a match even when nothing is printed (a blacklisted alias).
            if ours.lines != theirs.lines || ours.found != theirs.found {
                divergences.push(format!(
                    "--show-depends {input}:\n  modprobe: {:?}\n  ours:     {:?}",
                    theirs, ours
                ));
            }
            let names = resolution.names();
            if names != looked_up[input].lines {
                divergences.push(format!(
                    "-R {input}:\n  modprobe: {:?}\n  ours:     {names:?}",
                    looked_up[input].lines
                ));
            }
        }
        divergences
    }
}

fn report(what: &str, inputs: usize, divergences: &[String]) {
    let agreed = inputs * 2 - divergences.len();
    println!(
        "{what}: {agreed}/{} comparisons agree with kmod",
        inputs * 2
    );
    for d in divergences.iter().take(25) {
        println!("{d}");
    }
    assert!(
        divergences.is_empty(),
        "{what}: {} divergences from kmod (listed above)",
        divergences.len()
    );
}

fn all_module_names(root: &Path, release: &str) -> Vec<String> {
    let dep = std::fs::read_to_string(root.join("lib/modules").join(release).join("modules.dep"))
        .unwrap();
    let (lines, errors) = initagent::kmod::text::parse_dep(&dep);
    assert!(errors.is_empty());
    lines.iter().map(|l| l.name()).collect()
}

#[test]
fn every_module_of_debians_tree_resolves_like_modprobe() {
    let oracle = Oracle::new("oracle-all", "", "quiet");
    let names = all_module_names(&oracle.root, &oracle.release);
    assert!(
        names.len() > 3000,
        "only {} modules in the tree",
        names.len()
    );
    report(
        "every module",
        names.len(),
        &oracle.compare(&names, BlacklistMode::AliasOnly),
    );
}

/// Turns a `modules.alias` pattern into a string a device could report.
fn instantiate(pattern: &str, fill: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(fill),
            '?' => out.push('1'),
            '[' => {
                let set: String = chars.by_ref().take_while(|&c| c != ']').collect();
                out.push(
                    set.trim_start_matches(['!', '^'])
                        .chars()
                        .next()
                        .unwrap_or('0'),
                );
            }
            c => out.push(c),
        }
    }
    out
}

#[test]
fn modalias_corpus_resolves_like_modprobe() {
    let oracle = Oracle::new("oracle-aliases", "", "quiet");
    let text = std::fs::read_to_string(
        oracle
            .root
            .join("lib/modules")
            .join(&oracle.release)
            .join("modules.alias"),
    )
    .unwrap();
    let (aliases, _) = initagent::kmod::text::parse_alias(&text);
    let mut corpus: Vec<String> = Vec::new();
    for (i, (pattern, _)) in aliases.iter().enumerate() {
        if i % 40 == 0 {
            corpus.push(instantiate(pattern, "00000000"));
        }
        if i % 97 == 0 {
            corpus.push(instantiate(pattern, ""));
        }
    }
    // Device ids as buses report them, including ones no driver claims.
    for id in [
        "pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00",
        "pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00",
        "pci:v000010ECd00008168sv00001043sd000085F1bc02sc00i00",
        "pci:v000015B3d00001017sv000015B3sd00000006bc02sc00i00",
        "pci:v00001002d00005147sv00000000sd00000000bc03sc00i00",
        "pci:v0000DEADd0000BEEFsv00000000sd00000000bcFFscFFiFF",
        "virtio:d00000001v00001AF4",
        "virtio:d00000002v00001AF4",
        "usb:v0781p5567d0100dc00dsc00dp00ic08isc06ip50in00",
        "cpu:type:x86,ven0000fam0006mod0055:feature:,0000,0001,0002,0003,0004,0005,0006,0007,0008,0009",
        "acpi:PNP0501:",
        "platform:rtc_cmos",
        "fs-ext4",
        "fs-btrfs",
        "crypto-crc32c",
        "net-pf-10",
        "char-major-10-229",
        "symbol:fuse_dev_operations",
        "symbol:no_such_symbol_anywhere",
        "no-such-thing",
        "aes",
        "a[b",
    ] {
        corpus.push(id.to_string());
    }
    if let Ok(sys) = Command::new("sh")
        .args([
            "-c",
            "find /sys/devices -name modalias -type f -exec cat {} + 2>/dev/null",
        ])
        .output()
    {
        corpus.extend(
            String::from_utf8_lossy(&sys.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    corpus.sort();
    corpus.dedup();
    assert!(
        corpus.len() >= 400,
        "corpus has only {} modaliases",
        corpus.len()
    );
    report(
        "modalias corpus",
        corpus.len(),
        &oracle.compare(&corpus, BlacklistMode::AliasOnly),
    );
}

const CONFIG: &str = "\
# aliases, including globs and aliases that point at aliases
alias my-nic e1000e
alias my-* virtio_net
alias my-fs fs-ext4
alias blk-thing virtio_blk
# blacklists: applied to modules reached through an alias only
blacklist e1000
blacklist pcspkr
# soft dependencies, by name and by pattern; only the first match counts
softdep virtio_net pre: failover post: virtio_blk
softdep virtio_net pre: e1000
softdep snd_hda* pre: soundcore post: snd-hda-codec-generic
softdep nosuchmodule pre: alsoabsent
# options: by name, by alias, with tabs and extra spaces
options e1000e InterruptThrottleRate=1,1 debug=2
options  my-nic   copybreak=64
options virtio_net\tnapi_tx=1
options virtio-blk queue_depth=64
# install and remove commands
install dummy /bin/true
install bonding /sbin/modprobe --ignore-install bonding $CMDLINE_OPTS
install virtio_blk /bin/echo virtio_blk from install
remove ifb /bin/false
weakdep ext4 crc16
include /etc/nothing.conf
this line is garbage
";

const CMDLINE: &str = "quiet console=ttyS0 e1000e.SmartPowerDownEnable=1 snd-hda-intel.model=generic \
modprobe.blacklist=evbug,floppy virtio_net.napi_weight=64 8250.nr_uarts=4 a.b.c=1 =x flag.only \
kvm-intel.nested=1 crc16.flagonly mbcache.a.b=1 jbd2.msg=\"a b\" \"crc32c_generic.q=x y\" ext4.x=\"1\"2";

#[test]
fn configuration_cases_resolve_like_modprobe() {
    let oracle = Oracle::new("oracle-config", CONFIG, CMDLINE);
    let inputs: Vec<String> = [
        "my-nic",
        "my-anything",
        "my-fs",
        "blk-thing",
        "e1000",
        "e1000e",
        "pci:v00008086d0000100Esv00008086sd00001000bc02sc00i00",
        "pcspkr",
        "platform:pcspkr",
        "virtio_net",
        "virtio-net",
        "virtio_blk",
        "snd_hda_intel",
        "snd-hda-codec-realtek",
        "dummy",
        "bonding",
        "ifb",
        "ext4",
        "evbug",
        "floppy",
        "kvm_intel",
        "kvm-amd",
        "8250",
        "nosuchmodule",
        "dyndbg",
        "flag",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut divergences = oracle.compare(&inputs, BlacklistMode::AliasOnly);
    divergences.extend(oracle.compare(&inputs, BlacklistMode::Always));
    report(
        "configuration cases (plain and -b)",
        inputs.len() * 2,
        &divergences,
    );
    // The parser's complaints name the file and line.
    let modules = oracle.ours();
    assert!(
        modules
            .config
            .warnings
            .iter()
            .any(|w| w.contains("test.conf line 25")),
        "{:#?}",
        modules.config.warnings
    );
}

#[test]
fn every_target_module_list_names_modules_of_debians_tree() {
    let oracle = Oracle::new("oracle-targets", "", "quiet");
    let modules = oracle.ours();
    let resolver = modules.resolver();
    let targets = common::vm::repo_root().join("targets");
    let lists = std::fs::read_dir(&targets).unwrap().flat_map(|entry| {
        let dir = entry.unwrap().path();
        [dir.join("bootstrap"), dir.join("modules")]
    });
    for list in lists {
        let Ok(names) = initagent::kmod::read_list(&list) else {
            continue;
        };
        assert!(!names.is_empty(), "{} is empty", list.display());
        for name in names {
            let resolution = resolver.resolve(&name, BlacklistMode::AliasOnly);
            assert!(
                !resolution.probes.is_empty(),
                "{}: {name} is not a module of {}",
                list.display(),
                oracle.release
            );
        }
    }
}

/// On Debian's tree, the fleet image's bootstrap set: each NIC driver loads only for a
/// device of its own (all its aliases are PCI, virtio or auxiliary ones); fuse, which
/// drives no device, always loads. The drivers' aliases are those modprobe resolves: a
/// QEMU virtio NIC, before and after virtio_pci binds it, picks virtio_pci and virtio_net.
#[test]
fn the_fleet_bootstrap_set_is_gated_by_devices_but_fuse() {
    use initagent::kmod::gate::{virtio_of_pci, Gate};
    let oracle = Oracle::new("oracle-gate", "", "quiet");
    let modules = oracle.ours();
    let list = common::vm::repo_root().join("targets/generic-x86_64/bootstrap");
    let names = initagent::kmod::read_list(&list).unwrap();
    let gate = Gate::new(&modules.tree, &names);
    for name in &names {
        assert_eq!(gate.gates(name), name != "fuse", "{name}");
    }
    let nic = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_string();
    let present = [virtio_of_pci(&nic).unwrap(), nic];
    assert_eq!(gate.matching(&present), ["virtio_pci", "virtio_net"]);
    let intel = ["pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00".to_string()];
    assert_eq!(gate.matching(&intel), ["e1000e"]);
}
