//! modprobe configuration, read the way kmod reads it: `*.conf` files from the
//! modprobe.d directories (the first directory holding a basename wins; all chosen files
//! are then read in basename order, whatever their directory), the module directory's
//! `modules.softdep` sorted among them as a pseudo-file, and the kernel command line last
//! (`modprobe.blacklist=`, `<module>.<param>=`). Parsing is pure; [`load`] does the I/O.

use super::name::underscores;
use crate::config::cmdline::Cmdline;
use std::path::{Path, PathBuf};

/// Where modprobe.d files are looked for, in precedence order (kmod's defaults).
pub const DEFAULT_DIRS: &[&str] = &[
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];

/// A `softdep` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Softdep {
    /// Module-name pattern (fnmatch).
    pub name: String,
    /// Loaded before the module (names or aliases).
    pub pre: Vec<String>,
    /// Loaded after it.
    pub post: Vec<String>,
}

/// Everything modprobe configuration can say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModprobeConfig {
    /// `alias PATTERN MODULE`, in file order.
    pub aliases: Vec<(String, String)>,
    /// `options MODULE REST`, in file order, then the command line's.
    pub options: Vec<(String, String)>,
    /// `install PATTERN COMMAND`.
    pub installs: Vec<(String, String)>,
    /// `remove PATTERN COMMAND`.
    pub removes: Vec<(String, String)>,
    /// `blacklist MODULE` and `modprobe.blacklist=`.
    pub blacklist: Vec<String>,
    /// `softdep` rules; only the first matching one counts.
    pub softdeps: Vec<Softdep>,
    /// Lines that were ignored, naming file and line.
    pub warnings: Vec<String>,
}

/// kmod's reading of the kernel command line: words split on unquoted white space; a
/// word is `module.param[=value]` with one dot before any `=`; a quote may open the word
/// (then the value is re-quoted: `"m.p=a b"` gives `p="a b"`) or sit in the value (kept as
/// written); anything else (a second dot, `=` before a dot, a stray quote) is ignored.
pub fn kernel_cmdline_options(raw: &str) -> Vec<(String, String)> {
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Module,
        Param,
        Value,
        Ignore,
    }
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut state = State::Module;
    let mut quoted = false;
    let mut word_start = 0;
    let mut module_start = 0;
    let mut quote_opened_word = false;
    let (mut dot, mut equals) = (0, None);
    let mut finish = |state: State,
                      end: usize,
                      module_start: usize,
                      dot: usize,
                      equals: Option<usize>,
                      quote_opened_word: bool| {
        if !matches!(state, State::Param | State::Value) {
            return;
        }
        let module = String::from_utf8_lossy(&bytes[module_start..dot]).into_owned();
        let mut option = String::from_utf8_lossy(&bytes[dot + 1..end]).into_owned();
        if quote_opened_word {
            // `"m.p=v"`: the closing quote ends the value; re-quote it as `p="v"`.
            let trimmed = option.strip_suffix('"').unwrap_or(&option).to_string();
            option = match equals {
                Some(e) if e < end => {
                    let (name, value) = trimmed.split_at(e - dot);
                    format!("{name}\"{}\"", value)
                }
                _ => trimmed,
            };
        }
        out.push((module, option));
    };
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'"' => {
                quoted = !quoted;
                if quoted && state == State::Module && i == word_start {
                    quote_opened_word = true;
                    module_start = i + 1;
                } else if state != State::Value {
                    state = State::Ignore;
                }
            }
            b' ' | b'\n' | b'\t' | 0x0b | 0x0c | b'\r' if !quoted => {
                finish(state, i, module_start, dot, equals, quote_opened_word);
                state = State::Module;
                word_start = i + 1;
                module_start = i + 1;
                quote_opened_word = false;
                equals = None;
            }
            b'.' => match state {
                State::Module => {
                    dot = i;
                    state = State::Param;
                }
                State::Param => state = State::Ignore,
                _ => {}
            },
            b'=' => match state {
                State::Param => {
                    equals = Some(i);
                    state = State::Value;
                }
                State::Module => state = State::Ignore,
                _ => {}
            },
            _ => {}
        }
    }
    finish(
        state,
        bytes.len(),
        module_start,
        dot,
        equals,
        quote_opened_word,
    );
    out
}

/// Joins backslash-continued lines: (first line number, logical line).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (n, line) in text.lines().enumerate() {
        if current.is_empty() {
            start = n + 1;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push((start, std::mem::take(&mut current)));
            }
        }
    }
    if !current.is_empty() {
        out.push((start, current));
    }
    out
}

/// The next word (split on spaces and tabs) and the text after the one delimiter that
/// ended it, as `strtok_r` leaves it.
fn next_word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start_matches([' ', '\t']);
    if text.is_empty() {
        return None;
    }
    match text.find([' ', '\t']) {
        Some(end) => Some((&text[..end], &text[end + 1..])),
        None => Some((text, "")),
    }
}

/// Parses the words of a softdep line after the module name.
fn parse_softdep(name: String, rest: &str) -> Softdep {
    let mut softdep = Softdep {
        name,
        pre: Vec::new(),
        post: Vec::new(),
    };
    let mut mode = None;
    for word in rest.split_ascii_whitespace() {
        match word {
            "pre:" => mode = Some(true),
            "post:" => mode = Some(false),
            // Words before any pre:/post: are ignored, as kmod does.
            _ => match mode {
                Some(true) => softdep.pre.push(word.to_string()),
                Some(false) => softdep.post.push(word.to_string()),
                None => {}
            },
        }
    }
    softdep
}

impl ModprobeConfig {
    /// Parses one configuration file; `origin` names it in warnings.
    pub fn parse(&mut self, text: &str, origin: &str) {
        for (line_number, line) in logical_lines(text) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((command, rest)) = next_word(&line) else {
                continue;
            };
            let ok = match command {
                "alias" => match (next_word(rest), rest) {
                    (Some((pattern, after)), _) => match next_word(after) {
                        Some((module, _)) => match (underscores(pattern), underscores(module)) {
                            (Some(p), Some(m)) => {
                                self.aliases.push((p, m));
                                true
                            }
                            _ => false,
                        },
                        None => false,
                    },
                    _ => false,
                },
                "blacklist" => match next_word(rest).and_then(|(m, _)| underscores(m)) {
                    Some(module) => {
                        self.blacklist.push(module);
                        true
                    }
                    None => false,
                },
                "options" | "install" | "remove" | "softdep" => match next_word(rest) {
                    Some((module, tail)) if !tail.is_empty() => match underscores(module) {
                        Some(module) => {
                            let tail = tail.to_string();
                            match command {
                                "options" => self.options.push((module, tail.replace('\t', " "))),
                                "install" => self.installs.push((module, tail)),
                                "remove" => self.removes.push((module, tail)),
                                _ => self.softdeps.push(parse_softdep(module, &tail)),
                            }
                            true
                        }
                        None => false,
                    },
                    _ => false,
                },
                "include" | "config" => {
                    self.warnings.push(format!(
                        "{origin} line {line_number}: '{command}' is deprecated and ignored"
                    ));
                    continue;
                }
                // Dependency hints for image builders; nothing to load.
                "weakdep" => true,
                _ => false,
            };
            if !ok {
                self.warnings.push(format!(
                    "{origin} line {line_number}: ignoring bad line starting with '{command}'"
                ));
            }
        }
    }

    /// Adds what the kernel command line says about modules, read with kmod's rules
    /// (`kmod_config_parse_kcmdline`): `modprobe.blacklist=a,b` and `<module>.<param>…`
    /// options, the option text kept as written after the first dot; and dracut's
    /// `rd.driver.blacklist=a,b` as blacklist entries, first.
    pub fn add_cmdline(&mut self, cmdline: &Cmdline) {
        // dracut's rd.driver.blacklist= (dracut writes it into a modprobe.d file).
        for list in cmdline.all("rd.driver.blacklist").flatten() {
            self.blacklist.extend(
                list.split(',')
                    .filter(|n| !n.is_empty())
                    .filter_map(underscores),
            );
        }
        for (module, option) in kernel_cmdline_options(cmdline.raw()) {
            if module == "modprobe" {
                if let Some(list) = option.strip_prefix("blacklist=") {
                    self.blacklist.extend(list.split(',').map(str::to_string));
                    continue;
                }
            }
            if let Some(module) = underscores(&module) {
                self.options.push((module, option));
            }
        }
    }

    /// Options for a module (and the alias it was found by), joined as kmod joins them.
    pub fn options_for(&self, module: &str, alias: Option<&str>) -> String {
        let mut out = String::new();
        for (name, options) in &self.options {
            if (name == module || Some(name.as_str()) == alias) && !options.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(options);
            }
        }
        out
    }

    /// The first `install` command whose pattern matches `module`.
    pub fn install_for(&self, module: &str) -> Option<&str> {
        first_command(&self.installs, module)
    }

    /// The first `remove` command whose pattern matches `module`.
    pub fn remove_for(&self, module: &str) -> Option<&str> {
        first_command(&self.removes, module)
    }

    /// The first `softdep` rule whose pattern matches `module`.
    pub fn softdep_for(&self, module: &str) -> Option<&Softdep> {
        self.softdeps
            .iter()
            .find(|s| super::fnmatch::fnmatch(s.name.as_bytes(), module.as_bytes()))
    }

    /// Whether `module` is blacklisted (exact name).
    pub fn is_blacklisted(&self, module: &str) -> bool {
        self.blacklist.iter().any(|b| b == module)
    }
}

/// The command of the first `(pattern, command)` whose pattern matches `module`.
fn first_command<'a>(commands: &'a [(String, String)], module: &str) -> Option<&'a str> {
    commands
        .iter()
        .find(|(pattern, _)| super::fnmatch::fnmatch(pattern.as_bytes(), module.as_bytes()))
        .map(|(_, command)| command.as_str())
}

/// The configuration files kmod would read, in reading order: for each basename the file
/// from the first directory that has it, sorted by basename, with the module directory's
/// `modules.softdep` sorted in as a pseudo-file.
pub fn config_files(dirs: &[PathBuf], module_dir: &Path) -> Vec<PathBuf> {
    let mut chosen: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for dir in dirs {
        // A file given in place of a directory (modprobe's `-C FILE`) is read as it is.
        if std::fs::metadata(dir).is_ok_and(|m| m.is_file()) {
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            chosen
                .entry(name.into_owned())
                .or_insert_with(|| dir.clone());
            continue;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| !m.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n.len() > 5 && n.ends_with(".conf"))
            .collect();
        names.sort();
        for name in names {
            chosen
                .entry(name.clone())
                .or_insert_with(|| dir.join(&name));
        }
    }
    let softdep = module_dir.join("modules.softdep");
    if softdep.exists() {
        chosen.entry("modules.softdep".into()).or_insert(softdep);
    }
    chosen.into_values().collect()
}

/// Reads the configuration from `dirs` and the module directory, then the command line.
pub fn load(dirs: &[PathBuf], module_dir: &Path, cmdline: &Cmdline) -> ModprobeConfig {
    let mut config = ModprobeConfig::default();
    for file in config_files(dirs, module_dir) {
        match std::fs::read_to_string(&file) {
            Ok(text) => config.parse(&text, &file.display().to_string()),
            Err(e) => config.warnings.push(format!("{}: {e}", file.display())),
        }
    }
    config.add_cmdline(cmdline);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command() {
        let mut c = ModprobeConfig::default();
        c.parse(
            "# comment\n\
             alias fs-foo foo-bar\n\
             options snd-pcsp index=-2\n\
             options  e1000   debug=1\tx=2\n\
             install usb-storage /bin/true\n\
             remove x /bin/false\n\
             blacklist evbug\n\
             softdep uhci-hcd pre: ehci-hcd post: a b\n\
             softdep cifs gcm\n\
             weakdep a b\n\
             include /etc/x\n\
             frobnicate x\n\
             options lonely\n\
             alias bad[ x\n\
             options long \\\n  continued=1\n",
            "test.conf",
        );
        assert_eq!(c.aliases, [("fs_foo".to_string(), "foo_bar".to_string())]);
        assert_eq!(c.options_for("snd_pcsp", None), "index=-2");
        assert_eq!(c.options_for("e1000", None), "  debug=1 x=2");
        assert_eq!(c.install_for("usb_storage"), Some("/bin/true"));
        assert!(c.is_blacklisted("evbug"));
        let uhci = c.softdep_for("uhci_hcd").unwrap();
        assert_eq!(uhci.pre, ["ehci-hcd"]);
        assert_eq!(uhci.post, ["a", "b"]);
        assert!(c.softdep_for("cifs").unwrap().pre.is_empty());
        assert_eq!(c.options_for("long", None), "  continued=1");
        assert_eq!(c.warnings.len(), 4, "{:#?}", c.warnings);
        assert!(c.warnings.iter().any(|w| w.contains("test.conf line 12")));
    }

    #[test]
    fn first_softdep_wins_and_patterns_match() {
        let mut c = ModprobeConfig::default();
        c.parse(
            "softdep ksmbd pre: crc32\nsoftdep ksmbd pre: gcm\nsoftdep snd* post: x\n",
            "m",
        );
        assert_eq!(c.softdep_for("ksmbd").unwrap().pre, ["crc32"]);
        assert_eq!(c.softdep_for("snd_hda").unwrap().post, ["x"]);
    }

    #[test]
    fn kernel_cmdline() {
        let mut c = ModprobeConfig::default();
        c.parse("options e1000 a=1\n", "x");
        c.add_cmdline(&Cmdline::parse(
            "quiet e1000.b=2 kvm-intel.nested=1 modprobe.blacklist=foo,bar a.b.c=1 dyn.msg=\"x y\" flag.on \
             \"whole.q=a b\" raw.x=\"1\"2 x=.y bad\"q.p=1 =.z",
        ));
        assert_eq!(c.options_for("e1000", None), "a=1 b=2");
        assert_eq!(c.options_for("kvm_intel", None), "nested=1");
        assert_eq!(c.options_for("dyn", None), "msg=\"x y\"");
        assert_eq!(c.options_for("flag", None), "on");
        assert_eq!(c.options_for("whole", None), "q=\"a b\"");
        assert_eq!(c.options_for("raw", None), "x=\"1\"2");
        assert_eq!(c.options_for("a", None), "");
        assert_eq!(c.options_for("x", None), "");
        assert_eq!(c.options_for("bad\"q", None), "");
        assert_eq!(c.blacklist, ["foo", "bar"]);
        // dracut's rd.driver.blacklist=, repeated, names with - read as _.
        let mut c = ModprobeConfig::default();
        c.add_cmdline(&Cmdline::parse(
            "rd.driver.blacklist=nouveau,snd-pcsp rd.driver.blacklist=ifb modprobe.blacklist=x",
        ));
        assert_eq!(c.blacklist, ["nouveau", "snd_pcsp", "ifb", "x"]);
        assert_eq!(c.options_for("rd", None), "");
    }
}
