//! Do the text maps and the binary indexes say the same? Both sides are reduced to an
//! order-independent digest of their (key, value) pairs in one pass without sorting or
//! copying; only when the digests differ are the pairs collected to name the differences.

use crate::kmod::index::Index;
use crate::kmod::tree::IndexFile;
use crate::kmod::{name, text};
use std::collections::{BTreeSet, HashSet};

/// An order-independent digest of a multiset of (key, value) pairs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Multiset {
    count: u64,
    sum: u64,
    xor: u64,
}

impl Multiset {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        let h = mix(hash_bytes(
            hash_bytes(0x243f_6a88_85a3_08d3, key) ^ key.len() as u64,
            value,
        ));
        self.count += 1;
        self.sum = self.sum.wrapping_add(h);
        self.xor ^= h.rotate_left((h & 63) as u32);
    }
}

/// A fast non-cryptographic hash (FxHash's step, 8 bytes at a time); the maps are not
/// adversarial, and a collision could only hide a difference, never invent one.
fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    (h.rotate_left(5) ^ 0xff).wrapping_mul(K)
}

/// Final avalanche (splitmix64), so sums of hashes do not cancel out.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Which text file pairs with which index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// `modules.dep` ↔ `modules.dep.bin`.
    Dep,
    /// `modules.alias` ↔ `modules.alias.bin`.
    Alias,
    /// `modules.symbols` ↔ `modules.symbols.bin`.
    Symbols,
    /// `modules.builtin` ↔ `modules.builtin.bin`.
    Builtin,
    /// `modules.builtin.modinfo` aliases ↔ `modules.builtin.alias.bin`.
    BuiltinAlias,
}

impl Pairing {
    /// All of them.
    pub const ALL: [Pairing; 5] = [
        Pairing::Dep,
        Pairing::Alias,
        Pairing::Symbols,
        Pairing::Builtin,
        Pairing::BuiltinAlias,
    ];

    /// The text file.
    pub fn text_file(self) -> &'static str {
        match self {
            Pairing::Dep => "modules.dep",
            Pairing::Alias => "modules.alias",
            Pairing::Symbols => "modules.symbols",
            Pairing::Builtin => "modules.builtin",
            Pairing::BuiltinAlias => "modules.builtin.modinfo",
        }
    }

    /// The index.
    pub fn index(self) -> IndexFile {
        match self {
            Pairing::Dep => IndexFile::Dep,
            Pairing::Alias => IndexFile::Alias,
            Pairing::Symbols => IndexFile::Symbols,
            Pairing::Builtin => IndexFile::Builtin,
            Pairing::BuiltinAlias => IndexFile::BuiltinAlias,
        }
    }
}

/// Calls `f(key, value)` for every pair the text file holds, as depmod would index it.
pub fn each_text_pair(pairing: Pairing, data: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
    let text = match std::str::from_utf8(data) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(data),
    };
    let mut key = Vec::new();
    match pairing {
        Pairing::Dep => {
            for line in text.lines() {
                if let Some((path, _)) = line.split_once(':') {
                    let module = name::modname_from_path(path.trim());
                    f(module.as_bytes(), line.trim_end().as_bytes());
                }
            }
        }
        Pairing::Alias | Pairing::Symbols => {
            for line in text.lines() {
                let mut words = line.split_ascii_whitespace();
                if let (Some("alias"), Some(pattern), Some(module), None) =
                    (words.next(), words.next(), words.next(), words.next())
                {
                    if name::alias_bytes_into(pattern.as_bytes(), &mut key) {
                        f(&key, module.as_bytes());
                    }
                }
            }
        }
        Pairing::Builtin => {
            // The index holds each name once.
            let mut seen = HashSet::new();
            for path in text::parse_paths(&text) {
                let module = name::modname_from_path(&path);
                if seen.insert(module.clone()) {
                    f(module.as_bytes(), b"");
                }
            }
        }
        Pairing::BuiltinAlias => {
            for record in text::parse_builtin_modinfo(data)
                .0
                .into_iter()
                .filter(|r| r.key == "alias")
            {
                if name::alias_bytes_into(record.value.as_bytes(), &mut key) {
                    f(&key, record.module.as_bytes());
                }
            }
        }
    }
}

/// Calls `f(key, value)` for every pair of an index (duplicate builtin names once).
pub fn each_index_pair(index: &Index<'_>, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), String> {
    index
        .for_each(|key, values| {
            for v in values {
                f(key, v.value);
            }
        })
        .map_err(|e| e.to_string())
}

/// Digest of the text side.
pub fn text_digest(pairing: Pairing, data: &[u8]) -> Multiset {
    let mut digest = Multiset::default();
    each_text_pair(pairing, data, |k, v| digest.add(k, v));
    digest
}

/// Digest of an index.
pub fn index_digest(index: &Index<'_>) -> Result<Multiset, String> {
    let mut digest = Multiset::default();
    each_index_pair(index, |k, v| digest.add(k, v))?;
    Ok(digest)
}

/// Names a few pairs that only one side has (the slow path, after digests differed).
pub fn describe_difference(pairing: Pairing, text_data: &[u8], index: &Index<'_>) -> String {
    let mut text_pairs = BTreeSet::new();
    each_text_pair(pairing, text_data, |k, v| {
        text_pairs.insert((k.to_vec(), v.to_vec()));
    });
    let mut index_pairs = BTreeSet::new();
    let _ = each_index_pair(index, |k, v| {
        index_pairs.insert((k.to_vec(), v.to_vec()));
    });
    let show = |p: &(Vec<u8>, Vec<u8>)| {
        format!(
            "{} {}",
            String::from_utf8_lossy(&p.0),
            String::from_utf8_lossy(&p.1)
        )
    };
    let only_text: Vec<String> = text_pairs
        .difference(&index_pairs)
        .take(3)
        .map(show)
        .collect();
    let only_index: Vec<String> = index_pairs
        .difference(&text_pairs)
        .take(3)
        .map(show)
        .collect();
    format!(
        "{} vs {}: text has {} entries, index has {} (only in text: {only_text:?}; only in the index: {only_index:?})",
        pairing.text_file(),
        pairing.index().file_name(),
        text_pairs.len(),
        index_pairs.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmod::index::tests::build;

    #[test]
    fn equal_maps_have_equal_digests_and_differences_are_named() {
        let text = b"# Aliases\nalias fs-ext4 ext4\nalias pci:v*d[a-f]* e1000\n";
        let good = build(&[("fs_ext4", 1, "ext4"), ("pci:v*d[a-f]*", 2, "e1000")]);
        let index = Index::new(&good).unwrap();
        assert_eq!(
            text_digest(Pairing::Alias, text),
            index_digest(&index).unwrap()
        );
        let bad = build(&[("fs_ext4", 1, "ext4")]);
        let index = Index::new(&bad).unwrap();
        assert_ne!(
            text_digest(Pairing::Alias, text),
            index_digest(&index).unwrap()
        );
        let why = describe_difference(Pairing::Alias, text, &index);
        assert!(
            why.contains("only in text: [\"pci:v*d[a-f]* e1000\"]"),
            "{why}"
        );
    }

    #[test]
    fn order_does_not_matter_but_multiplicity_does() {
        let mut a = Multiset::default();
        a.add(b"x", b"1");
        a.add(b"y", b"2");
        let mut b = Multiset::default();
        b.add(b"y", b"2");
        b.add(b"x", b"1");
        assert_eq!(a, b);
        b.add(b"x", b"1");
        assert_ne!(a, b);
    }
}
