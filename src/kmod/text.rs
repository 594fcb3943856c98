//! Pure readers of depmod's and the kernel build's text files: `modules.dep`,
//! `modules.alias`, `modules.symbols`, `modules.builtin`, `modules.order` and the
//! NUL-separated `modules.builtin.modinfo`. Malformed lines are reported by number and
//! skipped, never fatal. (`modules.softdep` is a modprobe.d-style file: see `config`.)

use super::name;

/// A line that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number (record number for `modules.builtin.modinfo`).
    pub line: usize,
    /// The line, shortened.
    pub text: String,
}

fn bad(line: usize, text: &str) -> BadLine {
    BadLine {
        line,
        text: text.chars().take(120).collect(),
    }
}

/// One `modules.dep` line: a module path and its transitive dependencies, users first
/// (so the load order is the reverse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepLine {
    /// Path relative to the module directory (or absolute).
    pub path: String,
    /// Dependency paths, as written.
    pub deps: Vec<String>,
}

impl DepLine {
    /// Parses one line (`path: dep dep …`), as stored in `modules.dep` and as the value of
    /// `modules.dep.bin`.
    pub fn parse(line: &str) -> Option<DepLine> {
        let (path, deps) = line.split_once(':')?;
        let path = path.trim();
        if path.is_empty() {
            return None;
        }
        Some(DepLine {
            path: path.to_string(),
            deps: deps.split_whitespace().map(str::to_string).collect(),
        })
    }

    /// The normalised module name.
    pub fn name(&self) -> String {
        name::modname_from_path(&self.path)
    }
}

/// Parses `modules.dep`.
pub fn parse_dep(text: &str) -> (Vec<DepLine>, Vec<BadLine>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        match DepLine::parse(line) {
            Some(dep) => lines.push(dep),
            None => errors.push(bad(n + 1, line)),
        }
    }
    (lines, errors)
}

/// Parses `modules.alias` or `modules.symbols`: `alias PATTERN MODULE` lines.
pub fn parse_alias(text: &str) -> (Vec<(String, String)>, Vec<BadLine>) {
    let mut aliases = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("alias"), Some(pattern), Some(module), None) => {
                aliases.push((pattern.to_string(), module.to_string()))
            }
            _ => errors.push(bad(n + 1, line)),
        }
    }
    (aliases, errors)
}

/// Parses a list of module paths, one per line (`modules.builtin`, `modules.order`).
pub fn parse_paths(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// One `modules.builtin.modinfo` record: `module.key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModinfoRecord {
    /// Module name (as written; built-in names already use `_`).
    pub module: String,
    /// Key (`alias`, `license`, `parm`, …).
    pub key: String,
    /// Value.
    pub value: String,
}

/// Parses `modules.builtin.modinfo` (NUL-separated `module.key=value` records).
pub fn parse_builtin_modinfo(data: &[u8]) -> (Vec<ModinfoRecord>, Vec<BadLine>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (n, raw) in data.split(|&b| b == 0).enumerate() {
        if raw.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(raw);
        let parsed = text.split_once('=').and_then(|(left, value)| {
            let (module, key) = left.split_once('.')?;
            (!module.is_empty() && !key.is_empty()).then(|| ModinfoRecord {
                module: module.to_string(),
                key: key.to_string(),
                value: value.to_string(),
            })
        });
        match parsed {
            Some(record) => records.push(record),
            None => errors.push(bad(n + 1, &text)),
        }
    }
    (records, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_lines() {
        let (lines, errors) = parse_dep(
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko\nkernel/a.ko:\nno colon here\n",
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].name(), "ext4");
        assert_eq!(
            lines[0].deps,
            ["kernel/lib/crc16.ko", "kernel/fs/mbcache.ko"]
        );
        assert!(lines[1].deps.is_empty());
        assert_eq!(
            errors,
            [BadLine {
                line: 3,
                text: "no colon here".into()
            }]
        );
    }

    #[test]
    fn alias_lines() {
        let (aliases, errors) = parse_alias("# Aliases\nalias pci:v*d* e1000\nalias broken\n");
        assert_eq!(aliases, [("pci:v*d*".to_string(), "e1000".to_string())]);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn builtin_modinfo_records() {
        let (records, errors) =
            parse_builtin_modinfo(b"ext4.alias=fs-ext4\0aes.license=GPL\0junk\0\0");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].value, "fs-ext4");
        assert_eq!(errors.len(), 1);
    }
}
