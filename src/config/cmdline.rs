//! Pure parser for the kernel command line (`/proc/cmdline`): no I/O, no panics.
//!
//! Splitting follows the shell more than the kernel: runs of ASCII whitespace separate
//! parameters, `"…"` and `'…'` group (and may start anywhere in a word, as in the kernel's
//! `key="a b"`), a backslash outside single quotes takes the next byte literally. A word
//! is split on its first `=` into key and value; a word without `=` is a flag. Repeated
//! keys keep every value in order, and lookups return the last one (the zos convention).
//! Everything after a bare `--` is for init, not a parameter. Anomalies (an unterminated
//! quote, an empty key, control bytes) are reported as [`Anomaly`] values, never errors:
//! the boot must go on with whatever could be understood.

/// One `key[=value]` word of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Text before the first `=` (quotes removed).
    pub key: String,
    /// Text after the first `=`; `None` for a bare flag, `Some("")` for `key=`.
    pub value: Option<String>,
}

/// Something odd in the command line that the parser worked around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// A quote opened at this byte offset was never closed; the rest of the line was taken.
    UnterminatedQuote { offset: usize },
    /// A word started with `=`; it was ignored.
    EmptyKey { word: String },
    /// The line held bytes that are not UTF-8; they were replaced with U+FFFD.
    NotUtf8,
    /// A word held control characters; they were dropped.
    ControlCharacters { key: String },
    /// A trailing backslash escaped nothing; it was dropped.
    TrailingBackslash,
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::UnterminatedQuote { offset } => write!(
                f,
                "kernel command line: quote opened at byte {offset} is never closed; took the rest of the line as one value"
            ),
            Anomaly::EmptyKey { word } => {
                write!(f, "kernel command line: ignored {word:?}: nothing before '='")
            }
            Anomaly::NotUtf8 => write!(
                f,
                "kernel command line: bytes that are not UTF-8 were replaced"
            ),
            Anomaly::ControlCharacters { key } => write!(
                f,
                "kernel command line: dropped control characters in {key:?}"
            ),
            Anomaly::TrailingBackslash => {
                write!(f, "kernel command line: dropped a trailing backslash")
            }
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    raw: String,
    params: Vec<Param>,
    init_args: Vec<String>,
    anomalies: Vec<Anomaly>,
}

/// Longest command line accepted; the kernel's own limit on x86 is 2 KiB (COMMAND_LINE_SIZE),
/// other architectures allow up to 4 KiB; anything beyond 64 KiB is not a command line.
pub const MAX_CMDLINE_BYTES: usize = 64 * 1024;

impl Cmdline {
    /// Parses raw `/proc/cmdline` bytes (the kernel's trailing newline is not part of it).
    pub fn parse_bytes(raw: &[u8]) -> Cmdline {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let truncated = raw.get(..MAX_CMDLINE_BYTES).unwrap_or(raw);
        match std::str::from_utf8(truncated) {
            Ok(text) => Cmdline::parse(text),
            Err(_) => {
                let text = String::from_utf8_lossy(truncated);
                let mut parsed = Cmdline::parse(&text);
                parsed.anomalies.insert(0, Anomaly::NotUtf8);
                parsed
            }
        }
    }

    /// Parses command-line text.
    pub fn parse(text: &str) -> Cmdline {
        let mut parsed = Cmdline {
            raw: text.to_string(),
            ..Cmdline::default()
        };
        let mut after_dashes = false;
        for word in split_words(text, &mut parsed.anomalies) {
            if after_dashes {
                parsed.init_args.push(word.text);
                continue;
            }
            if word.text == "--" && !word.quoted {
                after_dashes = true;
                continue;
            }
            let (key, value) = match word.text.split_once('=') {
                Some((key, value)) => (key.to_string(), Some(value.to_string())),
                None => (word.text, None),
            };
            if key.is_empty() && value.is_none() {
                continue; // an empty quoted word: nothing to say
            }
            if key.is_empty() {
                let shown = match &value {
                    Some(value) => format!("={value}"),
                    None => String::new(),
                };
                parsed.anomalies.push(Anomaly::EmptyKey { word: shown });
                continue;
            }
            parsed.params.push(Param { key, value });
        }
        parsed
    }

    /// The text as given (for readers with their own rules, such as kmod's).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Every parameter, in command-line order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Words after a bare `--`: arguments for init.
    pub fn init_args(&self) -> &[String] {
        &self.init_args
    }

    /// What the parser had to work around.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// Whether `key` appears at all (as a flag or with a value).
    pub fn has(&self, key: &str) -> bool {
        self.params.iter().any(|p| p.key == key)
    }

    /// The last occurrence of `key`: `None` if absent, `Some(None)` for a bare flag.
    pub fn last(&self, key: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .rev()
            .find(|p| p.key == key)
            .map(|p| p.value.as_deref())
    }

    /// Every value of `key`, in order (flags show as `None`).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = Option<&'a str>> + 'a {
        self.params
            .iter()
            .filter(move |p| p.key == key)
            .map(|p| p.value.as_deref())
    }

    /// Parameters whose key starts with `prefix` followed by a dot, with the prefix removed:
    /// `with_prefix("initagent")` yields `("log", Some("debug"))` for `initagent.log=debug`.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        self.params.iter().filter_map(move |p| {
            let rest = p.key.strip_prefix(prefix)?.strip_prefix('.')?;
            Some((rest, p.value.as_deref()))
        })
    }

    /// `module.param=value` words as (module, param, value), with the module name normalised
    /// the way the kernel and modprobe do (`-` becomes `_`). Keys without a dot, or with an
    /// empty module or parameter name, are not module parameters.
    pub fn module_params(&self) -> impl Iterator<Item = (String, &str, Option<&str>)> + '_ {
        self.params.iter().filter_map(|p| {
            let (module, param) = p.key.split_once('.')?;
            if module.is_empty() || param.is_empty() {
                return None;
            }
            Some((module.replace('-', "_"), param, p.value.as_deref()))
        })
    }
}

/// Splits text into words with the command line's quoting rules (used for values that are
/// themselves command lines, such as `initagent.handoff`). Returns the words and what was odd.
pub fn split_argv(text: &str) -> (Vec<String>, Vec<Anomaly>) {
    let mut anomalies = Vec::new();
    let words = split_words(text, &mut anomalies)
        .into_iter()
        .map(|word| word.text)
        .collect();
    (words, anomalies)
}

struct Word {
    text: String,
    quoted: bool,
}

/// The word being assembled by [`split_words`].
#[derive(Default)]
struct WordBuilder {
    text: String,
    started: bool,
    quoted: bool,
    dropped_control: bool,
}

impl WordBuilder {
    fn push(&mut self, c: char) {
        self.started = true;
        if c.is_control() {
            self.dropped_control = true;
        } else {
            self.text.push(c);
        }
    }

    fn finish(&mut self, words: &mut Vec<Word>, anomalies: &mut Vec<Anomaly>) {
        if !self.started {
            return;
        }
        let word = std::mem::take(self);
        if word.dropped_control {
            let key = word.text.split('=').next().unwrap_or_default().to_string();
            anomalies.push(Anomaly::ControlCharacters { key });
        }
        words.push(Word {
            text: word.text,
            quoted: word.quoted,
        });
    }
}

fn split_words(text: &str, anomalies: &mut Vec<Anomaly>) -> Vec<Word> {
    let mut words = Vec::new();
    let mut word = WordBuilder::default();
    let mut chars = text.char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            c if c.is_ascii_whitespace() => word.finish(&mut words, anomalies),
            '"' | '\'' => {
                word.started = true;
                word.quoted = true;
                let mut closed = false;
                while let Some((_, inner)) = chars.next() {
                    if inner == c {
                        closed = true;
                        break;
                    }
                    if inner == '\\' && c == '"' {
                        match chars.next() {
                            Some((_, escaped)) => word.push(escaped),
                            None => anomalies.push(Anomaly::TrailingBackslash),
                        }
                        continue;
                    }
                    word.push(inner);
                }
                if !closed {
                    anomalies.push(Anomaly::UnterminatedQuote { offset });
                }
            }
            '\\' => match chars.next() {
                Some((_, escaped)) => word.push(escaped),
                None => anomalies.push(Anomaly::TrailingBackslash),
            },
            c => word.push(c),
        }
    }
    word.finish(&mut words, anomalies);
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(cmdline: &Cmdline) -> Vec<(&str, Option<&str>)> {
        cmdline
            .params()
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_deref()))
            .collect()
    }

    #[test]
    fn flags_values_and_empty_values() {
        let c = Cmdline::parse("quiet root=/dev/sda1 farmer_id= console=ttyS0,115200n8\n");
        assert_eq!(
            keys(&c),
            vec![
                ("quiet", None),
                ("root", Some("/dev/sda1")),
                ("farmer_id", Some("")),
                ("console", Some("ttyS0,115200n8")),
            ]
        );
        assert!(c.anomalies().is_empty());
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        let c = Cmdline::parse("ip=10.0.0.2::10.0.0.1:255.255.255.0:node:eth0:off a=b=c");
        assert_eq!(
            c.last("ip"),
            Some(Some("10.0.0.2::10.0.0.1:255.255.255.0:node:eth0:off"))
        );
        assert_eq!(c.last("a"), Some(Some("b=c")));
    }

    #[test]
    fn repeated_keys_last_wins_all_kept() {
        let c = Cmdline::parse("console=tty1 console=ttyS1 console");
        assert_eq!(c.last("console"), Some(None));
        let all: Vec<_> = c.all("console").collect();
        assert_eq!(all, vec![Some("tty1"), Some("ttyS1"), None]);
    }

    #[test]
    fn kernel_and_shell_quoting() {
        let c = Cmdline::parse(
            r#"initagent.handoff="/sbin/zinit init" "dyndbg=file x +p" a='single q' b=x\ y"#,
        );
        assert_eq!(c.last("initagent.handoff"), Some(Some("/sbin/zinit init")));
        assert_eq!(c.last("dyndbg"), Some(Some("file x +p")));
        assert_eq!(c.last("a"), Some(Some("single q")));
        assert_eq!(c.last("b"), Some(Some("x y")));
    }

    #[test]
    fn escapes_inside_double_quotes() {
        let c = Cmdline::parse(r#"k="say \"hi\"""#);
        assert_eq!(c.last("k"), Some(Some(r#"say "hi""#)));
    }

    #[test]
    fn module_params_are_normalised() {
        let c =
            Cmdline::parse("e1000e.InterruptThrottleRate=1 kvm-intel.nested=1 .x=1 y.=2 nodot=3");
        let got: Vec<_> = c.module_params().collect();
        assert_eq!(
            got,
            vec![
                ("e1000e".to_string(), "InterruptThrottleRate", Some("1")),
                ("kvm_intel".to_string(), "nested", Some("1")),
            ]
        );
    }

    #[test]
    fn prefix_lookup() {
        let c = Cmdline::parse(
            "initagent.log=debug initagentx.log=no initagent.on_failure=halt initagent",
        );
        let got: Vec<_> = c.with_prefix("initagent").collect();
        assert_eq!(
            got,
            vec![("log", Some("debug")), ("on_failure", Some("halt"))]
        );
    }

    #[test]
    fn init_args_after_double_dash() {
        let c = Cmdline::parse("quiet -- single x=y \"--\"");
        assert_eq!(keys(&c), vec![("quiet", None)]);
        assert_eq!(c.init_args(), ["single", "x=y", "--"]);
    }

    #[test]
    fn unterminated_quote_takes_the_rest() {
        let c = Cmdline::parse("a=1 b=\"unfinished c=3");
        assert_eq!(c.last("b"), Some(Some("unfinished c=3")));
        assert_eq!(c.last("c"), None);
        assert_eq!(c.anomalies(), [Anomaly::UnterminatedQuote { offset: 6 }]);
    }

    #[test]
    fn empty_keys_and_lonely_equals_are_reported() {
        let c = Cmdline::parse("= =x ok");
        assert_eq!(keys(&c), vec![("ok", None)]);
        assert_eq!(c.anomalies().len(), 2);
    }

    #[test]
    fn control_characters_and_invalid_utf8() {
        let c = Cmdline::parse_bytes(b"a=b\x01c d=\xff\xfe e");
        assert_eq!(c.last("a"), Some(Some("bc")));
        assert!(c.has("e"));
        assert_eq!(c.anomalies()[0], Anomaly::NotUtf8);
        assert!(c
            .anomalies()
            .contains(&Anomaly::ControlCharacters { key: "a".into() }));
    }

    #[test]
    fn proc_newline_is_not_part_of_an_unterminated_value() {
        let c = Cmdline::parse_bytes(b"a=\"open\n");
        assert_eq!(c.last("a"), Some(Some("open")));
        assert_eq!(c.anomalies(), [Anomaly::UnterminatedQuote { offset: 2 }]);
    }

    #[test]
    fn trailing_backslash() {
        let c = Cmdline::parse("a=b\\");
        assert_eq!(c.last("a"), Some(Some("b")));
        assert_eq!(c.anomalies(), [Anomaly::TrailingBackslash]);
    }

    #[test]
    fn whitespace_only_and_empty() {
        assert_eq!(Cmdline::parse("").params().len(), 0);
        assert_eq!(Cmdline::parse(" \t\n\r ").params().len(), 0);
        let empty_quotes = Cmdline::parse("\"\" ''");
        assert!(empty_quotes.params().is_empty() && empty_quotes.anomalies().is_empty());
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet = b"ab=.\"'\\ -\t\n\x00\xff\xc3";
        for len in 0..200 {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                let c = Cmdline::parse_bytes(&bytes);
                for p in c.params() {
                    assert!(!p.key.is_empty());
                }
            }
        }
        let huge = vec![b'"'; MAX_CMDLINE_BYTES * 2];
        let c = Cmdline::parse_bytes(&huge);
        assert!(c.params().len() <= MAX_CMDLINE_BYTES);
    }
}
