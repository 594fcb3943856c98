//! kmod's `modprobe` command line, read as kmod 30 reads it (pure, no I/O): getopt with
//! permutation (options may follow module names, `--` ends them), clustered short flags,
//! `-C`/`-d`/`-S`/`-w` taking a value joined or separate, long options by unambiguous
//! prefix, and `MODPROBE_OPTIONS` from the environment in front of the arguments.

/// What a `modprobe` invocation asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// `-a`: every argument is a module to insert (or remove).
    pub all: bool,
    /// `-r`: remove instead of insert.
    pub remove: bool,
    /// `--remove-holders` (and the deprecated `--remove-dependencies`).
    pub remove_holders: bool,
    /// `-w MSEC`: wait for a module in use to be released.
    pub wait_msec: Option<u64>,
    /// `--first-time`: fail if already inserted (or not there to remove).
    pub first_time: bool,
    /// `-i`: ignore `install`/`remove` commands.
    pub ignore_commands: bool,
    /// `-b`: apply the blacklist to names too.
    pub use_blacklist: bool,
    /// `-f`, `--force-modversion`, `--force-vermagic`: refused by this modprobe.
    pub force: Option<String>,
    /// `-D`: print what would be loaded, loaded or not.
    pub show_depends: bool,
    /// `-R`: print the module names an alias resolves to.
    pub resolve_alias: bool,
    /// `-c`: print the configuration.
    pub show_config: bool,
    /// `--show-modversions`, `--dump-modversions`, `--show-exports`.
    pub dump: Option<String>,
    /// `-n`: do everything but the loads and removals.
    pub dry_run: bool,
    /// `-C`: configuration files or directories instead of the defaults.
    pub config: Vec<String>,
    /// `-d`: root directory of the module tree.
    pub root: Option<String>,
    /// `-S`: kernel release.
    pub release: Option<String>,
    /// `-s`: log to syslog (the kernel log here).
    pub syslog: bool,
    /// `-q`: say nothing of modules not found or already there.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u32,
    /// `-V`.
    pub version: bool,
    /// `-h`.
    pub help: bool,
    /// Module names, and for a single insert its parameters.
    pub args: Vec<String>,
}

/// A command line kmod's modprobe would refuse too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const LONG: &[(&str, char, bool)] = &[
    ("all", 'a', false),
    ("remove", 'r', false),
    ("remove-dependencies", 'H', false),
    ("remove-holders", 'H', false),
    ("wait", 'w', true),
    ("resolve-alias", 'R', false),
    ("first-time", 'F', false),
    ("ignore-install", 'i', false),
    ("ignore-remove", 'i', false),
    ("use-blacklist", 'b', false),
    ("force", 'f', false),
    ("force-modversion", 'M', false),
    ("force-vermagic", 'G', false),
    ("show-depends", 'D', false),
    ("showconfig", 'c', false),
    ("show-config", 'c', false),
    ("show-modversions", 'O', false),
    ("dump-modversions", 'O', false),
    ("show-exports", 'E', false),
    ("dry-run", 'n', false),
    ("show", 'n', false),
    ("config", 'C', true),
    ("dirname", 'd', true),
    ("set-version", 'S', true),
    ("syslog", 's', false),
    ("quiet", 'q', false),
    ("verbose", 'v', false),
    ("version", 'V', false),
    ("help", 'h', false),
];

/// Short options and whether each takes a value (kmod's `arw:RibfDcnC:d:S:sqvVh`).
fn short(flag: char) -> Option<bool> {
    match flag {
        'w' | 'C' | 'd' | 'S' => Some(true),
        'a' | 'r' | 'R' | 'i' | 'b' | 'f' | 'D' | 'c' | 'n' | 's' | 'q' | 'v' | 'V' | 'h' => {
            Some(false)
        }
        _ => None,
    }
}

/// `MODPROBE_OPTIONS` split as kmod splits it: on spaces, a quoted word kept whole.
pub fn env_words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in value.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == ' ' => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                started = true;
            }
            None => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Reads `args` (without the program name), with `env` (`MODPROBE_OPTIONS`) first.
pub fn parse(args: &[String], env: Option<&str>) -> Result<Invocation, UsageError> {
    let mut all: Vec<String> = env.map(env_words).unwrap_or_default();
    all.extend(args.iter().cloned());
    let mut inv = Invocation::default();
    let mut i = 0;
    while i < all.len() {
        let arg = &all[i];
        i += 1;
        if arg == "--" {
            inv.args.extend(all[i..].iter().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, joined) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            let (flag, takes) = long_option(name)?;
            let value = match (takes, joined) {
                (true, Some(value)) => Some(value),
                (true, None) => match all.get(i) {
                    Some(value) => {
                        i += 1;
                        Some(value.clone())
                    }
                    None => {
                        return Err(UsageError(format!(
                            "option '--{name}' requires an argument"
                        )))
                    }
                },
                (false, Some(_)) => {
                    return Err(UsageError(format!(
                        "option '--{name}' doesn't allow an argument"
                    )))
                }
                (false, None) => None,
            };
            apply(&mut inv, flag, value, &format!("--{name}"))?;
            continue;
        }
        match arg.strip_prefix('-') {
            Some(cluster) if !cluster.is_empty() => {
                let chars: Vec<char> = cluster.chars().collect();
                let mut k = 0;
                while k < chars.len() {
                    let flag = chars[k];
                    k += 1;
                    let takes = short(flag)
                        .ok_or_else(|| UsageError(format!("invalid option -- '{flag}'")))?;
                    let value = if !takes {
                        None
                    } else if k < chars.len() {
                        let rest: String = chars[k..].iter().collect();
                        k = chars.len();
                        Some(rest)
                    } else if let Some(value) = all.get(i) {
                        i += 1;
                        Some(value.clone())
                    } else {
                        return Err(UsageError(format!(
                            "option requires an argument -- '{flag}'"
                        )));
                    };
                    apply(&mut inv, flag, value, &format!("-{flag}"))?;
                }
            }
            _ => inv.args.push(arg.clone()),
        }
    }
    Ok(inv)
}

/// The long option `name` (or an unambiguous prefix of one).
fn long_option(name: &str) -> Result<(char, bool), UsageError> {
    if let Some(&(_, flag, takes)) = LONG.iter().find(|(n, _, _)| *n == name) {
        return Ok((flag, takes));
    }
    let matches: Vec<&(&str, char, bool)> = LONG
        .iter()
        .filter(|(n, _, _)| n.starts_with(name))
        .collect();
    match matches.as_slice() {
        [] => Err(UsageError(format!("unrecognized option '--{name}'"))),
        [(_, flag, takes)] => Ok((*flag, *takes)),
        [(_, flag, takes), rest @ ..] if rest.iter().all(|(_, f, _)| f == flag) => {
            Ok((*flag, *takes))
        }
        _ => Err(UsageError(format!("option '--{name}' is ambiguous"))),
    }
}

fn apply(
    inv: &mut Invocation,
    flag: char,
    value: Option<String>,
    spelled: &str,
) -> Result<(), UsageError> {
    let value = || value.clone().unwrap_or_default();
    match flag {
        'a' => inv.all = true,
        'r' => inv.remove = true,
        'H' => inv.remove_holders = true,
        'w' => {
            let text = value();
            let msec = text
                .parse()
                .map_err(|_| UsageError(format!("unexpected wait value '{text}'.")))?;
            inv.wait_msec = Some(msec);
        }
        'R' => inv.resolve_alias = true,
        'F' => inv.first_time = true,
        'i' => inv.ignore_commands = true,
        'b' => inv.use_blacklist = true,
        'f' | 'M' | 'G' => inv.force = Some(spelled.to_string()),
        'D' => inv.show_depends = true,
        'c' => inv.show_config = true,
        'O' | 'E' => inv.dump = Some(spelled.to_string()),
        'n' => inv.dry_run = true,
        'C' => inv.config.push(value()),
        'd' => inv.root = Some(value()),
        'S' => inv.release = Some(value()),
        's' => inv.syslog = true,
        'q' => inv.quiet = true,
        'v' => inv.verbose += 1,
        'V' => inv.version = true,
        'h' => inv.help = true,
        _ => return Err(UsageError(format!("invalid option -- '{flag}'"))),
    }
    Ok(())
}

/// A single insert's parameters, joined as kmod joins them: a value holding a space and
/// not already quoted is put in double quotes.
pub fn options_from_args(params: &[String]) -> String {
    let quoted: Vec<String> = params
        .iter()
        .map(|param| match param.split_once('=') {
            Some((key, value))
                if !value.starts_with('"') && !value.starts_with('\'') && value.contains(' ') =>
            {
                format!("{key}=\"{value}\"")
            }
            _ => param.clone(),
        })
        .collect();
    quoted.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_cluster_permute_and_stop_at_double_dash() {
        let inv = parse(&words("-nv ext4 -q foo=1 -- -r"), None).unwrap();
        assert!(inv.dry_run && inv.quiet && !inv.remove);
        assert_eq!(inv.verbose, 1);
        assert_eq!(inv.args, words("ext4 foo=1 -r"));
        let inv = parse(
            &words("-dROOT -S 6.1 -C a.conf --config=b --set-version 7 x"),
            None,
        )
        .unwrap();
        assert_eq!(inv.root.as_deref(), Some("ROOT"));
        assert_eq!(inv.release.as_deref(), Some("7"));
        assert_eq!(inv.config, words("a.conf b"));
        assert_eq!(inv.args, words("x"));
    }

    #[test]
    fn long_options_by_prefix_and_errors_as_getopt_words_them() {
        let inv = parse(&words("--show-dep --first --ignore-rem x"), None).unwrap();
        assert!(inv.show_depends && inv.first_time && inv.ignore_commands);
        assert_eq!(
            parse(&words("--bogus"), None).unwrap_err().0,
            "unrecognized option '--bogus'"
        );
        assert_eq!(
            parse(&words("-x"), None).unwrap_err().0,
            "invalid option -- 'x'"
        );
        assert_eq!(
            parse(&words("-d"), None).unwrap_err().0,
            "option requires an argument -- 'd'"
        );
        assert!(
            parse(&words("--show"), None).unwrap().dry_run,
            "an exact name wins over the names it prefixes"
        );
        assert!(parse(&words("--s"), None)
            .unwrap_err()
            .0
            .contains("ambiguous"));
        assert_eq!(
            parse(&words("-f x"), None).unwrap().force.as_deref(),
            Some("-f")
        );
        assert_eq!(
            parse(&words("-w soon"), None).unwrap_err().0,
            "unexpected wait value 'soon'."
        );
    }

    #[test]
    fn the_environment_comes_first_and_keeps_quoted_words() {
        let inv = parse(&words("x"), Some("-q  -C 'my dir' ")).unwrap();
        assert!(inv.quiet);
        assert_eq!(inv.config, vec!["my dir".to_string()]);
        assert_eq!(env_words(r#"-v "a b"c"#), vec!["-v", "a bc"]);
        assert_eq!(env_words(""), Vec::<String>::new());
    }

    #[test]
    fn parameters_with_spaces_are_quoted_like_kmod() {
        let params = vec![
            "a=1".into(),
            "b=x y".into(),
            "c='p q'".into(),
            "flag".into(),
        ];
        assert_eq!(options_from_args(&params), "a=1 b=\"x y\" c='p q' flag");
    }
}
