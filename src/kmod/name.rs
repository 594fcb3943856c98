//! Module-name and alias normalisation, exactly as kmod does it (`shared/util.c`).

/// Longest module name the kernel accepts (`MODULE_NAME_LEN` on 64-bit, NUL included).
pub const MODULE_NAME_LEN: usize = 56;

/// `modname_normalize`: `-` becomes `_`, and the name stops at the first `.`
/// (`ext4.ko` → `ext4`, `intel-uncore.ko.zst` → `intel_uncore`).
pub fn modname(name: &str) -> String {
    name.split('.').next().unwrap_or_default().replace('-', "_")
}

/// The module name of a module file path: its basename, normalised.
pub fn modname_from_path(path: &str) -> String {
    modname(path.rsplit('/').next().unwrap_or(path))
}

/// `alias_normalize`: `-` becomes `_` except inside `[...]`. `None` for an unbalanced
/// bracket (kmod's `-EINVAL`).
pub fn alias(alias: &str) -> Option<String> {
    let mut out = String::with_capacity(alias.len());
    alias_into(alias, &mut out).then_some(out)
}

/// [`alias`] over bytes into a reusable buffer (cleared first); false for an unbalanced
/// bracket. For hot loops over whole alias files.
pub fn alias_bytes_into(alias: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut in_brackets = false;
    for &b in alias {
        match b {
            b'[' if !in_brackets => in_brackets = true,
            b']' if in_brackets => in_brackets = false,
            b']' => return false,
            b'-' if !in_brackets => {
                out.push(b'_');
                continue;
            }
            _ => {}
        }
        out.push(b);
    }
    !in_brackets
}

/// [`alias`] into a reusable buffer (cleared first); false for an unbalanced bracket.
pub fn alias_into(alias: &str, out: &mut String) -> bool {
    out.clear();
    let mut chars = alias.chars();
    while let Some(c) = chars.next() {
        match c {
            '[' => {
                out.push('[');
                loop {
                    match chars.next() {
                        Some(']') => {
                            out.push(']');
                            break;
                        }
                        Some(inner) => out.push(inner),
                        None => return false,
                    }
                }
            }
            ']' => return false,
            '-' => out.push('_'),
            other => out.push(other),
        }
    }
    true
}

/// `underscores()` of the config parser: like [`alias`], used for names in modprobe.d.
pub fn underscores(text: &str) -> Option<String> {
    alias(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(modname("intel-uncore.ko.zst"), "intel_uncore");
        assert_eq!(modname("ext4"), "ext4");
        assert_eq!(modname_from_path("kernel/fs/ext4/ext4.ko"), "ext4");
        assert_eq!(
            modname_from_path("kernel/arch/x86/crypto/crc32c-intel.ko"),
            "crc32c_intel"
        );
        assert_eq!(modname(""), "");
    }

    #[test]
    fn aliases() {
        assert_eq!(alias("fs-ext4").as_deref(), Some("fs_ext4"));
        assert_eq!(alias("pci:v*d[a-f]*-x").as_deref(), Some("pci:v*d[a-f]*_x"));
        assert_eq!(alias("a[b"), None);
        assert_eq!(alias("a]b"), None);
        let mut out = Vec::new();
        for input in ["fs-ext4", "pci:v*d[a-f]*-x", "a[b", "a]b", "[-]-", ""] {
            let ok = alias_bytes_into(input.as_bytes(), &mut out);
            assert_eq!(
                alias(input).map(String::into_bytes),
                ok.then(|| out.clone()),
                "{input}"
            );
        }
    }
}
