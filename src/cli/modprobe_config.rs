//! `modprobe -c`: the configuration as kmod 30 prints it — blacklists, install and remove
//! commands, aliases, options, soft dependencies, each in reading order — then the alias
//! and symbol indexes of the tree, key by key.

use crate::kmod::config::{ModprobeConfig, Softdep};
use crate::kmod::tree::{IndexFile, ModuleTree};

/// The configuration part of `modprobe -c`, one line each (without the index dump).
pub fn config_lines(config: &ModprobeConfig) -> Vec<String> {
    let mut lines = Vec::new();
    lines.extend(
        config
            .blacklist
            .iter()
            .map(|name| format!("blacklist {name}")),
    );
    let pairs = [
        ("install", &config.installs),
        ("remove", &config.removes),
        ("alias", &config.aliases),
        ("options", &config.options),
    ];
    for (kind, entries) in pairs {
        lines.extend(
            entries
                .iter()
                .map(|(key, value)| format!("{kind} {key} {value}")),
        );
    }
    lines.extend(config.softdeps.iter().map(softdep_line));
    lines
}

/// A `softdep` rule as kmod prints it: `pre: …` then `post: …`, written against each
/// other (kmod puts no space between the two lists).
fn softdep_line(rule: &Softdep) -> String {
    let mut value = String::new();
    if !rule.pre.is_empty() {
        value.push_str("pre: ");
        value.push_str(&rule.pre.join(" "));
    }
    if !rule.post.is_empty() {
        value.push_str("post: ");
        value.push_str(&rule.post.join(" "));
    }
    format!("softdep {} {value}", rule.name)
}

/// Prints `modprobe -c` (the indexes of `tree` when there is one); the exit code.
pub(crate) fn show(config: &ModprobeConfig, tree: Option<&ModuleTree>) -> i32 {
    let mut text = String::new();
    for line in config_lines(config) {
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str("\n# End of configuration files. Dumping indexes now:\n\n");
    for which in [IndexFile::Alias, IndexFile::Symbols] {
        let Some(tree) = tree else { break };
        tree.for_each_entry(which, |key, values| {
            let key = String::from_utf8_lossy(key);
            for value in values {
                text.push_str("alias ");
                text.push_str(&key);
                text.push(' ');
                text.push_str(&value);
                text.push('\n');
            }
        });
    }
    out!("{text}");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_in_kmods_order_and_words() {
        let mut config = ModprobeConfig::default();
        config.parse(
            "options snd-pcsp index=-2\nalias foo bar\nblacklist evil\n\
             softdep a pre: x y post: z\nsoftdep b c\ninstall q /bin/true\nremove q /bin/false\n",
            "test.conf",
        );
        assert_eq!(
            config_lines(&config),
            vec![
                "blacklist evil",
                "install q /bin/true",
                "remove q /bin/false",
                "alias foo bar",
                "options snd_pcsp index=-2",
                "softdep a pre: x ypost: z",
                "softdep b ",
            ]
        );
    }
}
