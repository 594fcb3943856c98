//! The command line's grammar: every command with its own options, arguments, help and
//! exit codes, and the parser that holds a command line to it. Pure: no I/O, so it is
//! unit-tested and fuzzed (`cli_args`). An option that is not its command's is refused
//! (exit 2), `initagent CMD --help` shows that command's usage only.

/// One option: `--long`, maybe `-s`, maybe a value (named by `value` in the help).
#[derive(Debug, PartialEq, Eq)]
pub struct Opt {
    pub long: &'static str,
    pub short: Option<char>,
    pub value: Option<&'static str>,
    pub help: &'static str,
}

/// One command (`status`, `modules load`): what it takes and what it says.
#[derive(Debug)]
pub struct Command {
    /// One word, or a group and its subcommand (`flist mount`).
    pub name: &'static str,
    /// The arguments after the options, as the usage line shows them.
    pub args: &'static str,
    /// How many arguments it takes, at least and at most.
    pub arity: (usize, usize),
    pub about: &'static str,
    pub options: &'static [&'static Opt],
    /// What its exit codes mean.
    pub exit: &'static str,
}

impl Command {
    /// Takes `--json`.
    pub fn reports_json(&self) -> bool {
        self.options.contains(&&JSON)
    }

    fn option(&self, long: &str) -> Option<&'static Opt> {
        self.options.iter().copied().find(|o| o.long == long)
    }

    fn short(&self, short: char) -> Option<&'static Opt> {
        self.options
            .iter()
            .copied()
            .find(|o| o.short == Some(short))
    }
}

const MANY: usize = usize::MAX;
/// The exit codes of every command that does not say otherwise.
pub const EXIT: &str = "0 done, 1 failed, 2 wrong command line";

macro_rules! opts {
    ($($name:ident = $long:literal, $short:expr, $value:expr, $help:literal;)*) => {
        $(pub const $name: Opt = Opt { long: $long, short: $short, value: $value, help: $help };)*
        /// Every option of every command, for "not an option of this command".
        const ALL: &[&Opt] = &[$(&$name),*];
    };
}

opts! {
    JSON = "json", None, None, "print JSON instead of text";
    REPORT = "report", None, Some("FILE"), "the boot report (default /run/initagent/report.json)";
    PROFILE = "profile", None, Some("FILE"), "the target profile (default /etc/initagent/config.toml)";
    CMDLINE_FILE = "cmdline-file", None, Some("FILE"), "the kernel command line (default /proc/cmdline)";
    CMDLINE = "cmdline", None, Some("TEXT"), "use TEXT as the kernel command line";
    ROOT = "root", None, Some("DIR"), "the module tree under DIR/lib/modules (like modprobe -d)";
    KERNEL = "kernel", None, Some("KVER"), "the kernel release (like modprobe -S; default: uname -r)";
    MODPROBE_D = "modprobe-d", None, Some("DIR"), "a modprobe.d directory instead of the defaults (repeatable)";
    LIST = "list", None, Some("FILE"), "the module list (default: the profile's)";
    SHOW_DEPENDS = "show-depends", Some('D'), None, "print as modprobe -D does";
    LOOKUP = "lookup", Some('R'), None, "print the module names only, like modprobe -R";
    USE_BLACKLIST = "use-blacklist", Some('b'), None, "apply blacklists to names too, like modprobe -b";
    SEQUENTIAL = "sequential", None, None, "load one module at a time";
    FIELD = "field", Some('F'), Some("FIELD"), "print this field's values only, like modinfo -F";
    LSMOD = "lsmod", None, None, "print the loaded modules as lsmod does";
    OUTPUT = "output", None, Some("DIR"), "where regenerated maps go (default /run/initagent/depmod)";
    NO_MOUNT = "no-mount", None, None, "regenerate, but do not bind-mount over the tree";
    IN_PROCESS = "in-process", None, None, "regenerate without the depmod binary";
    DEEP = "deep", None, None, "parse every map even when the stamp proves them";
    META = "meta", Some('m'), Some("FL"), "the flist (its .fl file)";
    CACHE = "cache", None, Some("DIR"), "the block cache directory";
    CACHE_BYTES = "cache-bytes", None, Some("N"), "the cache's bound in bytes (default 1 GiB)";
    MEMORY_BYTES = "memory-bytes", None, Some("N"), "the memory cache's bound in bytes (default 16 MiB; the blocks on their way in count too)";
    STORE = "store", None, Some("URL"), "a store, tried before the flist's own routes (repeatable)";
    PACK_STORE = "store", Some('s'), Some("[xx-yy=]URL"), "a store the blocks go to, for the key range xx-yy (repeatable; at least one)";
    STORE_REWRITE = "store-rewrite", None, Some("FROM=TO"), "read the route FROM at TO (repeatable)";
    STORES_STDIN = "stores-stdin", None, None, "more stores and rewrites as JSON on stdin, kept out of argv";
    FOREGROUND = "foreground", None, None, "serve in this process instead of a daemon";
    LAZY = "lazy", None, None, "detach now, unmount when no longer in use";
    NO_STRIP_PASSWORD = "no-strip-password", None, None, "keep the stores' credentials in the flist's routes";
    STORE_TIMEOUT = "store-timeout", None, Some("SECS"), "the deadline of one store request (default 15)";
    CA_FILE = "ca-file", None, Some("PEM"), "trust these CAs (not the web roots) for HTTPS/S3 stores";
    FS_SUBTYPE = "fs-subtype", None, Some("NAME"), "shows as fuse.NAME (default initagent)";
    NO_ALLOW_OTHER = "no-allow-other", None, None, "only this user may read the mount";
    STATS = "stats", None, Some("FILE"), "keep the daemon's counters (bytes fetched, cache hits) there";
    SUBSYSTEM = "subsystem", None, Some("NAME"), "only this subsystem's devices (repeatable)";
    DEVICE = "device", None, Some("/sys/devices/PATH"), "only this device (repeatable)";
    LINKS = "links", None, Some("A,B"), "these links only, virtual ones allowed";
    IFACE = "iface", None, Some("NAME|MAC"), "prefer this link";
    CARRIER_TIMEOUT = "carrier-timeout", None, Some("S"), "wait this long for a carrier";
    DHCP_TIMEOUT = "dhcp-timeout", None, Some("S"), "wait this long for a DHCPv4 lease";
    SETTLE = "settle", None, Some("S"), "after the first lease, wait this long for the others";
    IPV6_TIMEOUT = "ipv6-timeout", None, Some("S"), "wait this long for a SLAAC address";
    RUN_DIR = "run-dir", None, Some("DIR"), "the lease files (default /run/initagent/net)";
    RESOLV_CONF = "resolv-conf", None, Some("FILE"), "where DNS servers go (default /etc/resolv.conf)";
    NET_CHECK = "check", None, Some("URL|FL"), "reach this store (or an flist's stores) over TCP (repeatable)";
    ONCE = "once", None, None, "renew every lease now and exit";
    STATUS_CHECK = "check", None, None, "one line and 0 ok, 1 warning, 2 critical, 3 unknown";
    SVG = "svg", None, Some("FILE"), "draw it as SVG into FILE";
    KEYS = "keys", None, None, "list the initagent.* keys";
    DRY_RUN = "dry-run", None, None, "say what would be run, run nothing";
    DEADLINE = "deadline", None, Some("S"), "coldplug's deadline (default 30)";
    DEGRADED_OK = "degraded-ok", None, None, "exit 0 when the boot can go on though the step could not do its work, saying why (zinit oneshots)";
    RETRY = "retry", None, None, "until it is done, backoff 5 s doubling to 60 s (zinit oneshots)";
    WATCH = "watch", None, Some("S"), "flists only: then look at the mounts every S seconds and mount again what is stale, stopped or gone (never exits)";
    AS = "as", None, Some("NAME"), "record it in the report as NAME (default <step>-by-hand)";
    FLEET_STORE = "store", None, Some("URL|DIR"), "where the nodes' reports are (reports/<node-id>/<boot-id>.json): a directory, dir://, s3:// or s3s:// without a credential";
    STORE_FILE = "store-file", None, Some("FILE"), "read the store's URL from FILE (one with a credential: argv is visible to every user)";
    RETRY_FOR = "retry-for", None, Some("S"), "try again with backoff for up to S seconds (default 0: once)";
    ALWAYS = "always", None, None, "send even when stage 1 sent it already and the boot was clean";
    REPORT_AS = "as", None, Some("NAME"), "who sends it, in the record (default by-hand)";
    FLEET_SVG = "svg", None, Some("FILE"), "draw the steps' p50/p95 and the results as SVG into FILE";
}

/// What a step run by hand reads: the profile, the command line, the tree, the report.
const STEP: &[&Opt] = &[
    &JSON,
    &DEGRADED_OK,
    &REPORT,
    &PROFILE,
    &CMDLINE_FILE,
    &CMDLINE,
    &ROOT,
    &KERNEL,
];
const TREE: &[&Opt] = &[&ROOT, &KERNEL, &MODPROBE_D, &CMDLINE_FILE];
const STORES: &[&Opt] = &[&META, &STORE, &STORE_REWRITE, &STORE_TIMEOUT, &CA_FILE];

/// Concatenates option lists at compile time.
macro_rules! with {
    ($base:expr, [$($extra:expr),* $(,)?]) => {{
        const BASE: &[&Opt] = $base;
        const EXTRA: &[&Opt] = &[$(&$extra),*];
        const N: usize = BASE.len() + EXTRA.len();
        const JOINED: [&Opt; N] = {
            let mut all = [&JSON; N];
            let mut i = 0;
            while i < BASE.len() {
                all[i] = BASE[i];
                i += 1;
            }
            let mut j = 0;
            while j < EXTRA.len() {
                all[i + j] = EXTRA[j];
                j += 1;
            }
            all
        };
        &JOINED
    }};
}

pub const COMMANDS: &[Command] = &[
    Command { name: "stage1", args: "", arity: (0, 0), exit: EXIT,
        about: "Run stage 1 (what PID 1 does): mount, configure, hand off.",
        options: &[&REPORT, &PROFILE, &CMDLINE_FILE] },
    Command { name: "handoff", args: "", arity: (0, 0), exit: "1 when the exec failed (on success it does not return), 2 wrong command line",
        options: &[&DRY_RUN, &REPORT, &PROFILE, &CMDLINE_FILE],
        about: "Record the handoff in the report and exec the next init." },
    Command { name: "status", args: "", arity: (0, 0),
        exit: "0 shown, 1 no readable report, 2 wrong command line; with --check: 0 ok, 1 warning (degraded), 2 critical (failed), 3 unknown",
        options: &[&JSON, &STATUS_CHECK, &SVG, &REPORT],
        about: "Show the boot report: steps slowest first, the critical path, the leases, flists and modules the node has now." },
    Command { name: "config", args: "", arity: (0, 0), exit: EXIT,
        options: &[&JSON, &KEYS, &PROFILE, &CMDLINE_FILE, &CMDLINE],
        about: "Show the effective configuration, which key set each value, and its warnings." },
    Command { name: "modules resolve", args: "NAME|ALIAS...", arity: (1, MANY), exit: "0 all found, 1 some not found, 2 wrong command line",
        options: with!(TREE, [JSON, SHOW_DEPENDS, LOOKUP, USE_BLACKLIST]),
        about: "What modprobe would load, in order, and why." },
    Command { name: "modules load", args: "[NAME|ALIAS...]", arity: (0, MANY), exit: EXIT,
        options: with!(TREE, [JSON, LIST, SEQUENTIAL, USE_BLACKLIST, DEGRADED_OK, PROFILE, CMDLINE]),
        about: "Load with finit_module (default: the target's list)." },
    Command { name: "modules status", args: "", arity: (0, 0), exit: EXIT,
        options: with!(TREE, [JSON, LSMOD]),
        about: "The loaded, built-in and failed modules of this boot." },
    Command { name: "modules info", args: "NAME|FILE", arity: (1, 1), exit: EXIT,
        options: with!(TREE, [JSON, FIELD]),
        about: "A module's .modinfo." },
    Command { name: "modprobe", args: "[OPTIONS] NAME...", arity: (0, MANY), exit: "kmod's: 0 done, 1 failed or wrong command line",
        options: &[],
        about: "kmod's modprobe (-a -r -n -v -q -b -i -D -R -c -C -d -S --first-time); its own options: `initagent modprobe -h`. Also as argv[0] modprobe." },
    Command { name: "flist mount", args: "DIR", arity: (1, 1), exit: EXIT,
        options: with!(STORES, [CACHE, CACHE_BYTES, MEMORY_BYTES, STORES_STDIN, FOREGROUND, FS_SUBTYPE, NO_ALLOW_OTHER, STATS]),
        about: "Mount an rfs flist over FUSE (a daemon; returns when it serves)." },
    Command { name: "flist umount", args: "DIR", arity: (1, 1), exit: EXIT,
        options: &[&LAZY, &FS_SUBTYPE],
        about: "Unmount an flist (one whose daemon does not answer too)." },
    Command { name: "flist pack", args: "DIR", arity: (1, 1), exit: EXIT,
        options: &[&JSON, &META, &PACK_STORE, &NO_STRIP_PASSWORD, &STORE_TIMEOUT, &CA_FILE],
        about: "Pack a tree into the flist -m OUT.fl and its blocks into the stores, like rfs pack." },
    Command { name: "flist prefetch", args: "PATH...", arity: (1, MANY), exit: "0 all fetched, 1 some not, 2 wrong command line",
        options: with!(STORES, [JSON, CACHE]),
        about: "Fetch these files' blocks into a mount's --cache." },
    Command { name: "flist route", args: "[list|set [[xx-yy=]URL...]]", arity: (0, MANY), exit: EXIT,
        options: &[&JSON, &META, &STORE],
        about: "Show or replace the routes baked into an flist." },
    Command { name: "flist inspect", args: "", arity: (0, 0), exit: EXIT,
        options: with!(STORES, [JSON]),
        about: "An flist's routes, entries and blocks." },
    Command { name: "flist verify", args: "", arity: (0, 0), exit: "0 every block is there and intact, 1 not, 2 wrong command line",
        options: with!(STORES, [JSON]),
        about: "Fetch and check every block of an flist." },
    Command { name: "flist ls", args: "[PATH]", arity: (0, 1), exit: EXIT,
        options: &[&JSON, &META],
        about: "List a directory of an flist without mounting it." },
    Command { name: "flist cat", args: "PATH", arity: (1, 1), exit: EXIT,
        options: with!(STORES, [CACHE]),
        about: "Print a file of an flist without mounting it." },
    Command { name: "net up", args: "", arity: (0, 0), exit: EXIT,
        options: &[&JSON, &LINKS, &IFACE, &CARRIER_TIMEOUT, &DHCP_TIMEOUT, &SETTLE, &IPV6_TIMEOUT, &RUN_DIR, &RESOLV_CONF, &NET_CHECK, &RETRY, &PROFILE, &CMDLINE_FILE, &CMDLINE],
        about: "Bring the network up: every candidate link at once, DHCPv4 (or the kernel's ip=), the zos choice, address/routes/DNS, lease file." },
    Command { name: "net status", args: "", arity: (0, 0), exit: EXIT,
        options: &[&JSON, &RUN_DIR],
        about: "Links, addresses and the leases handed over." },
    Command { name: "net renew", args: "", arity: (0, 0), exit: EXIT,
        options: &[&ONCE, &DHCP_TIMEOUT, &RUN_DIR, &PROFILE, &CMDLINE_FILE, &CMDLINE],
        about: "Keep the leases of `net up` (a zinit service): REQUEST at T1 to the granting server, at T2 to any, a fresh lease if one is lost." },
    Command { name: "step", args: "NAME", arity: (1, 1),
        exit: "0 exactly when what waits on it may go on (net and flists once done, the others always), 1 not, 2 wrong command line",
        options: with!(STEP, [AS, RETRY, WATCH, DEADLINE, SUBSYSTEM, DEVICE, SEQUENTIAL]),
        about: "Run one boot step (bootstrap, net, flists, depmod, prefetch, modules, coldplug) as stage 1 does, recorded in the boot report. What the zinit services run." },
    Command { name: "flists", args: "", arity: (0, 0), exit: EXIT,
        options: with!(STEP, [RETRY]),
        about: "Mount the firmware and modules flists on /lib/firmware and /lib/modules/<release>, as stage 1 does." },
    Command { name: "prefetch", args: "", arity: (0, 0), exit: EXIT,
        options: STEP,
        about: "Fetch into the flists' caches what this node will load: the module lists, its devices' drivers, their dependencies and firmware." },
    Command { name: "coldplug", args: "", arity: (0, 0), exit: EXIT,
        options: with!(STEP, [DEADLINE, SUBSYSTEM, DEVICE, SEQUENTIAL]),
        about: "Load the drivers of the devices present (no udevd needed), then new devices' events until settled (every event the kernel sent read); with a udevd running: trigger and settle." },
    Command { name: "depmod check", args: "", arity: (0, 0), exit: "0 the maps are right, 1 wrong or not checkable (the text says which), 2 wrong command line",
        options: &[&JSON, &DEEP, &ROOT, &KERNEL],
        about: "Are the dependency maps right for the tree? Without reading the modules when the stamp proves them." },
    Command { name: "depmod stamp", args: "", arity: (0, 0), exit: EXIT,
        options: &[&ROOT, &KERNEL],
        about: "Record each module's size, mtime and content digests (image build)." },
    Command { name: "depmod ensure", args: "", arity: (0, 0), exit: EXIT,
        options: &[&JSON, &OUTPUT, &NO_MOUNT, &IN_PROCESS, &DEGRADED_OK, &ROOT, &KERNEL],
        about: "Check; only on a mismatch regenerate into --output and bind-mount over the tree." },
    Command { name: "report send", args: "", arity: (0, 0),
        exit: "0 sent, or nothing to send (no report_url, or a clean boot stage 1 sent already), 1 not sent, 2 wrong command line",
        options: &[&JSON, &RETRY_FOR, &ALWAYS, &REPORT_AS, &REPORT, &PROFILE, &CMDLINE_FILE, &CMDLINE],
        about: "Send the boot report to initagent.report_url as reports/<node-id>/<boot-id>.json (what the initagent-report service runs)." },
    Command { name: "fleet report", args: "", arity: (0, 0), exit: EXIT,
        options: &[&JSON, &FLEET_SVG, &FLEET_STORE, &STORE_FILE, &STORE_TIMEOUT, &CA_FILE],
        about: "Read the nodes' reports from a store: each step's p50/p95, the nodes whose last boot was degraded or failed and why, missing drivers and firmware by PCI vendor:device." },
    Command { name: "version", args: "", arity: (0, 0), exit: EXIT, options: &[],
        about: "Print the version." },
    Command { name: "help", args: "[COMMAND]", arity: (0, 2), exit: EXIT, options: &[],
        about: "Show the commands, or one command's usage." },
];

/// Options of one command that say opposite things about what to print.
const CONFLICTS: &[(&str, &str, &str)] = &[
    ("status", "check", "json"),
    ("status", "check", "svg"),
    ("status", "svg", "json"),
    ("modules status", "lsmod", "json"),
    ("modules info", "field", "json"),
    ("modules resolve", "show-depends", "lookup"),
    ("modules resolve", "show-depends", "json"),
    ("modules resolve", "lookup", "json"),
];

/// A command line held to the grammar.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run `command` with these options (in order) and arguments.
    Run {
        command: &'static str,
        given: Vec<(&'static Opt, Option<String>)>,
        positional: Vec<String>,
    },
    /// Show the help of this command or group (`flist`), or the overview (empty).
    Help(String),
    Version,
}

/// A wrong command line: what is wrong, and the command whose usage to point at.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    pub command: Option<&'static str>,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.command {
            Some(command) => write!(
                f,
                "{command}: {} (initagent {command} --help)",
                self.message
            ),
            None => write!(f, "{} (initagent --help)", self.message),
        }
    }
}

impl UsageError {
    /// The usage line to show under the error: the command's, or the general one.
    pub fn usage_line(&self) -> String {
        let help = help_text(self.command.unwrap_or(""));
        help.lines().next().unwrap_or_default().to_string()
    }
}

/// The command of that name.
pub fn command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The subcommands of a group (`flist` → mount, umount, …), empty for a plain command.
pub fn subcommands(group: &str) -> Vec<&'static str> {
    COMMANDS
        .iter()
        .filter_map(|c| c.name.strip_prefix(group)?.strip_prefix(' '))
        .collect()
}

fn usage(message: impl Into<String>, command: Option<&'static str>) -> UsageError {
    UsageError {
        message: message.into(),
        command,
    }
}

/// Names the command the words start with: (command, words used), or why not.
fn find_command(words: &[String]) -> Result<&'static Command, UsageError> {
    let Some(first) = words.first() else {
        return Err(usage("name a command", None));
    };
    if let Some(command) = command(first) {
        return Ok(command);
    }
    let subs = subcommands(first);
    if subs.is_empty() {
        return Err(usage(format!("unknown command {first:?}"), None));
    }
    let sub = match words.get(1).map(String::as_str) {
        Some("unmount") if first == "flist" => "umount",
        Some(sub) => sub,
        None => return Err(usage(format!("{first}: say {}", subs.join(", ")), None)),
    };
    command(&format!("{first} {sub}")).ok_or_else(|| {
        usage(
            format!(
                "{first}: unknown subcommand {sub:?} (one of {})",
                subs.join(", ")
            ),
            None,
        )
    })
}

/// Holds `args` (without the program name) to the grammar. `modprobe` is not parsed
/// here: its command line is kmod's, read by its own parser.
pub fn parse(args: &[String]) -> Result<Parsed, UsageError> {
    let mut parser = lexopt::Parser::from_args(args.iter());
    let mut words: Vec<String> = Vec::new();
    let mut found: Option<&'static Command> = None;
    let mut given = Vec::new();
    let mut help = false;
    let error = |e: lexopt::Error, command: Option<&'static str>| usage(e.to_string(), command);
    loop {
        let name = found.map(|c| c.name);
        let arg = match parser.next() {
            Ok(Some(arg)) => arg,
            Ok(None) => break,
            Err(e) => return Err(error(e, name)),
        };
        let opt = match arg {
            lexopt::Arg::Value(value) => {
                let value = value
                    .into_string()
                    .map_err(|v| usage(format!("{v:?} is not UTF-8"), name))?;
                words.push(value);
                if found.is_none() && words.first().is_some_and(|w| w != "help") {
                    // The command is named by its first one or two words.
                    let group = !subcommands(&words[0]).is_empty();
                    if !group || words.len() == 2 {
                        let command = find_command(&words)?;
                        words.clear();
                        found = Some(command);
                    }
                }
                continue;
            }
            lexopt::Arg::Long("help") | lexopt::Arg::Short('h') => {
                help = true;
                continue;
            }
            lexopt::Arg::Long("version") if found.is_none() && words.is_empty() => {
                return Ok(Parsed::Version)
            }
            lexopt::Arg::Long(long) => match found {
                Some(command) => command.option(long).ok_or_else(|| {
                    not_ours(
                        command,
                        &format!("--{long}"),
                        ALL.iter().any(|o| o.long == long),
                    )
                })?,
                None => return Err(before_command(&format!("--{long}"), &words)),
            },
            lexopt::Arg::Short(short) => match found {
                Some(command) => command.short(short).ok_or_else(|| {
                    not_ours(
                        command,
                        &format!("-{short}"),
                        ALL.iter().any(|o| o.short == Some(short)),
                    )
                })?,
                None => return Err(before_command(&format!("-{short}"), &words)),
            },
        };
        let value = match opt.value {
            Some(_) => Some(
                parser
                    .value()
                    .map_err(|e| error(e, name))?
                    .into_string()
                    .map_err(|v| usage(format!("--{}: {v:?} is not UTF-8", opt.long), name))?,
            ),
            None => None,
        };
        given.push((opt, value));
    }
    if words.first().is_some_and(|w| w == "help") && found.is_none() {
        if help && words.len() == 1 {
            return Ok(Parsed::Help("help".into()));
        }
        return help_of(&words[1..]);
    }
    let command = match found {
        Some(command) => command,
        None if help => return help_of(&words),
        None => {
            return Err(find_command(&words)
                .err()
                .unwrap_or_else(|| usage("name a command", None)))
        }
    };
    if help {
        return Ok(Parsed::Help(command.name.into()));
    }
    for (name, a, b) in CONFLICTS.iter().filter(|(name, ..)| *name == command.name) {
        let given_long = |long: &str| given.iter().any(|(o, _): &(&Opt, _)| o.long == long);
        if given_long(a) && given_long(b) {
            return Err(usage(
                format!("--{a} and --{b} do not go together"),
                Some(name),
            ));
        }
    }
    let (least, most) = command.arity;
    if words.len() < least || words.len() > most {
        let wanted = if command.args.is_empty() {
            "takes no arguments".to_string()
        } else {
            format!("takes {}", command.args)
        };
        return Err(usage(
            format!("{wanted}, not {:?}", words.join(" ")),
            Some(command.name),
        ));
    }
    Ok(Parsed::Run {
        command: command.name,
        given,
        positional: words,
    })
}

fn help_of(words: &[String]) -> Result<Parsed, UsageError> {
    match words {
        [] => Ok(Parsed::Help(String::new())),
        [group] if !subcommands(group).is_empty() => Ok(Parsed::Help(group.clone())),
        _ => find_command(words).map(|c| Parsed::Help(c.name.into())),
    }
}

/// The help `Parsed::Help` names: the overview, a group's commands or one command's usage.
pub fn help_text(key: &str) -> String {
    match command(key) {
        Some(command) => help(command),
        None => overview(key),
    }
}

fn not_ours(command: &Command, shown: &str, known: bool) -> UsageError {
    let message = if known {
        format!("{shown} is not an option of this command")
    } else {
        format!("unknown option {shown}")
    };
    usage(message, Some(command.name))
}

fn before_command(shown: &str, words: &[String]) -> UsageError {
    if let Some(help) = command("help").filter(|_| words.first().is_some_and(|w| w == "help")) {
        return not_ours(help, shown, false);
    }
    let message = if words.is_empty() {
        format!("{shown}: name the command first (initagent COMMAND [options])")
    } else {
        format!(
            "{shown}: name the subcommand first ({})",
            subcommands(&words[0]).join(", ")
        )
    };
    usage(message, None)
}

/// `initagent --help`: the commands (of `group`, or all), one line each, and the exit codes.
fn overview(group: &str) -> String {
    let mut text = String::from("usage: initagent COMMAND [options] [arguments]\n\ncommands:\n");
    let prefix = format!("{group} ");
    for command in COMMANDS
        .iter()
        .filter(|c| group.is_empty() || c.name.starts_with(&prefix))
    {
        let about = command
            .about
            .split(". ")
            .next()
            .unwrap_or("")
            .trim_end_matches('.');
        let head = format!("{} {}", command.name, command.args);
        text.push_str(&format!("  {:<34} {about}\n", head.trim_end()));
    }
    text.push_str(&format!(
        "\n`initagent COMMAND --help` shows its options and exit codes.\n\
         exit codes, unless a command's help says otherwise: {EXIT}.\n\
         As PID 1 the arguments are ignored and stage 1 runs.\n"
    ));
    text
}

/// `initagent COMMAND --help`.
pub fn help(command: &Command) -> String {
    let mut text = format!("usage: initagent {}", command.name);
    if !command.options.is_empty() {
        text.push_str(" [options]");
    }
    if !command.args.is_empty() {
        text.push_str(&format!(" {}", command.args));
    }
    text.push_str(&format!("\n\n{}\n", command.about));
    if !command.options.is_empty() {
        text.push_str("\noptions:\n");
        for opt in command.options {
            let mut head = match opt.short {
                Some(short) => format!("-{short}, --{}", opt.long),
                None => format!("--{}", opt.long),
            };
            if let Some(value) = opt.value {
                head.push(' ');
                head.push_str(value);
            }
            text.push_str(&format!("  {head:<26} {}\n", opt.help));
        }
    }
    text.push_str(&format!("\nexit: {}\n", command.exit));
    text
}

/// The commands as a Markdown table (docs/cli.md holds it; a test keeps it current).
pub fn table() -> String {
    let mut text =
        String::from("| command | arguments | `--json` | exit codes |\n|---|---|---|---|\n");
    for command in COMMANDS {
        text.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            command.name,
            if command.args.is_empty() {
                "—".to_string()
            } else {
                format!("`{}`", command.args.replace('|', "\\|"))
            },
            if command.reports_json() {
                "yes"
            } else {
                "refused"
            },
            command.exit
        ));
    }
    text
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
