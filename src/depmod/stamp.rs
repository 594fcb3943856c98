//! The content stamp (`modules.initagent-stamp`): written into a module tree at image
//! build time, after a full check of its maps, it records each module's and each map's
//! path, size, mtime and the BLAKE2b-256 of every 512 KiB chunk of its content — the
//! same digests an rfs flist keeps as block keys — plus the vermagic. `depmod check` proves
//! a tree is the one the maps were made from, and that the maps are the ones validated,
//! by comparing with the stamp: against a mounted flist's block keys (no content
//! fetched), or on a plain directory by size and mtime.

use super::view::{FoundModule, TreeView};
use std::time::{SystemTime, UNIX_EPOCH};

/// The stamp's file name in the module directory.
pub const STAMP_FILE: &str = "modules.initagent-stamp";
/// The chunk size of the digests (rfs's block size).
pub const CHUNK: usize = 512 * 1024;
/// Maps whose digests the stamp records.
pub const MAP_FILES: &[&str] = &[
    "modules.dep",
    "modules.dep.bin",
    "modules.alias",
    "modules.alias.bin",
    "modules.symbols",
    "modules.symbols.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
    "modules.softdep",
    "modules.devname",
];
const HEADER: &str = "# initagent module stamp v1";

/// BLAKE2b with a 32-byte digest (what rfs uses for block ids and keys).
pub fn blake2b256(data: &[u8]) -> [u8; 32] {
    let hash = blake2b_simd::Params::new().hash_length(32).hash(data);
    let mut digest = [0u8; 32];
    digest.copy_from_slice(hash.as_bytes());
    digest
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` is the lower- or upper-case hex of `digest`.
fn hex_is(text: &[u8], digest: &[u8; 32]) -> bool {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    text.len() == 64
        && text.chunks_exact(2).zip(digest).all(|(pair, byte)| {
            matches!((nibble(pair[0]), nibble(pair[1])), (Some(h), Some(l)) if h << 4 | l == *byte)
        })
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A modification time as (seconds, nanoseconds) since the epoch.
pub fn mtime_parts(time: SystemTime) -> (i64, u32) {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => (-(e.duration().as_secs() as i64), 0),
    }
}

/// One file in the stamp (a module or a map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampedFile {
    /// Path relative to the module directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// BLAKE2b-256 of each 512 KiB chunk (empty for an empty file).
    pub chunks: Vec<[u8; 32]>,
}

/// A file of a parsed stamp: attributes now, chunk digests decoded only when asked for
/// (a plain-directory check never needs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFile<'a> {
    /// Path relative to the module directory.
    pub path: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    chunks_hex: &'a str,
}

impl<'a> ParsedFile<'a> {
    /// Whether `size` and `mtime` match, at the precision both sides have.
    pub fn matches(&self, size: u64, mtime: (i64, u32)) -> bool {
        self.size == size && same_mtime(self.mtime, mtime)
    }

    /// Whether the chunk digests are `digests`, compared as they are read (nothing
    /// decoded into memory first: a maps check compares thousands of files).
    pub fn chunks_are(&self, digests: &[[u8; 32]]) -> bool {
        if self.chunks_hex == "-" {
            return digests.is_empty();
        }
        let mut expected = digests.iter();
        let all_equal = self.chunks_hex.split(',').all(|text| {
            expected
                .next()
                .is_some_and(|digest| hex_is(text.as_bytes(), digest))
        });
        all_equal && expected.next().is_none()
    }

    /// The chunk digests.
    pub fn chunks(&self) -> Option<Vec<[u8; 32]>> {
        if self.chunks_hex == "-" {
            return Some(Vec::new());
        }
        self.chunks_hex.split(',').map(unhex).collect()
    }

    fn parse(rest: &'a str) -> Option<ParsedFile<'a>> {
        let mut fields = rest.splitn(4, ' ');
        let (path, size, mtime, chunks) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let (secs, nanos) = mtime.split_once('.')?;
        // Digests are checked for shape here and decoded only when needed.
        let valid = chunks == "-" || chunks.split(',').all(|c| c.len() == 64);
        if !valid || chunks.contains(' ') {
            return None;
        }
        Some(ParsedFile {
            path,
            size: size.parse().ok()?,
            mtime: (secs.parse().ok()?, nanos.parse().ok()?),
            chunks_hex: chunks,
        })
    }
}

impl StampedFile {
    fn render(&self, kind: &str) -> String {
        let chunks: Vec<String> = self.chunks.iter().map(|c| hex(c)).collect();
        format!(
            "{kind} {} {} {}.{:09} {}\n",
            self.path,
            self.size,
            self.mtime.0,
            self.mtime.1,
            if chunks.is_empty() {
                "-".to_string()
            } else {
                chunks.join(",")
            }
        )
    }
}

/// A stamp being made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    /// Kernel release of the tree.
    pub release: String,
    /// Full vermagic of the modules.
    pub vermagic: Option<String>,
    /// The dependency maps, as validated when the stamp was made.
    pub maps: Vec<StampedFile>,
    /// Modules, sorted by path.
    pub modules: Vec<StampedFile>,
}

/// A stamp read back (borrowing the text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedStamp<'a> {
    /// Kernel release of the tree.
    pub release: &'a str,
    /// Full vermagic of the modules.
    pub vermagic: Option<&'a str>,
    /// The dependency maps.
    pub maps: Vec<ParsedFile<'a>>,
    /// The modules.
    pub modules: Vec<ParsedFile<'a>>,
}

impl Stamp {
    /// Renders the stamp as its text form.
    pub fn render(&self) -> String {
        let mut out = format!("{HEADER}\nrelease {}\n", self.release);
        if let Some(vermagic) = &self.vermagic {
            out.push_str(&format!("vermagic {vermagic}\n"));
        }
        for file in &self.maps {
            out.push_str(&file.render("map"));
        }
        for file in &self.modules {
            out.push_str(&file.render("module"));
        }
        out
    }
}

impl<'a> ParsedStamp<'a> {
    /// Parses a stamp; the error names the line.
    pub fn parse(text: &'a str) -> Result<ParsedStamp<'a>, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err("not an initagent module stamp (bad first line)".into()),
        }
        let mut stamp = ParsedStamp::default();
        for (n, line) in lines {
            let bad = || {
                format!(
                    "line {}: cannot parse {:?}",
                    n + 1,
                    line.chars().take(80).collect::<String>()
                )
            };
            let (kind, rest) = line.split_once(' ').ok_or_else(bad)?;
            match kind {
                "release" => stamp.release = rest,
                "vermagic" => stamp.vermagic = Some(rest),
                "map" => stamp.maps.push(ParsedFile::parse(rest).ok_or_else(bad)?),
                "module" => stamp.modules.push(ParsedFile::parse(rest).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        if stamp.release.is_empty() {
            return Err("no release line".into());
        }
        Ok(stamp)
    }
}

/// Chunk digests of `data`.
pub fn chunk_digests(data: &[u8]) -> Vec<[u8; 32]> {
    data.chunks(CHUNK).map(blake2b256).collect()
}

fn stamp_file(view: &TreeView, relative: &str) -> Result<StampedFile, String> {
    let meta = view
        .metadata(relative)
        .map_err(|e| format!("{relative}: {e}"))?;
    let data = view
        .read(relative)
        .map_err(|e| format!("{relative}: {e}"))?;
    Ok(StampedFile {
        path: relative.to_string(),
        size: data.len() as u64,
        mtime: mtime_parts(meta.modified().unwrap_or(UNIX_EPOCH)),
        chunks: chunk_digests(&data),
    })
}

/// Makes a stamp of the tree: reads every module and map once. The caller has validated
/// the maps (a stamp vouches for them).
pub fn create(view: &TreeView, release: &str) -> Result<Stamp, String> {
    let mut found = view
        .modules()
        .map_err(|e| format!("{}: {e}", view.dir.display()))?;
    found.sort_by(|a, b| a.relative.cmp(&b.relative));
    let mut modules = Vec::with_capacity(found.len());
    let mut vermagics: std::collections::BTreeMap<String, usize> = Default::default();
    for FoundModule { relative, .. } in found {
        let file = stamp_file(view, &relative)?;
        let data = view
            .read(&relative)
            .map_err(|e| format!("{relative}: {e}"))?;
        // A file that is no module is stamped like the others (a change to it is seen)
        // but says nothing about the tree's vermagic: loading it is the loader's failure.
        let info = crate::kmod::compress::decompress(&data)
            .ok()
            .and_then(|plain| crate::kmod::elf::Modinfo::from_elf(&plain).ok());
        if let Some(v) = info.as_ref().and_then(|info| info.get("vermagic")) {
            *vermagics.entry(v.to_string()).or_default() += 1;
        }
        modules.push(file);
    }
    // The tree's vermagic is what most of its modules say (one odd module is the
    // loader's business, not the tree's).
    let vermagic = vermagics
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map(|(v, _)| v);
    let maps = MAP_FILES
        .iter()
        .filter(|name| view.dir.join(name).is_file())
        .map(|name| stamp_file(view, name))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Stamp {
        release: release.to_string(),
        vermagic,
        maps,
        modules,
    })
}

/// Writes the stamp into the tree atomically.
pub fn write(view: &TreeView, stamp: &Stamp) -> std::io::Result<()> {
    crate::fsutil::write_atomic(&view.dir.join(STAMP_FILE), stamp.render().as_bytes())
}

/// Same time at the precision both sides have: seconds always, nanoseconds when both
/// have them (an initramfs or an flist keeps whole seconds).
pub fn same_mtime(a: (i64, u32), b: (i64, u32)) -> bool {
    a.0 == b.0 && (a.1 == 0 || b.1 == 0 || a.1 == b.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_round_trip() {
        let stamp = Stamp {
            release: "6.1.0-56-amd64".into(),
            vermagic: Some("6.1.0-56-amd64 SMP preempt mod_unload modversions ".into()),
            maps: vec![StampedFile {
                path: "modules.dep".into(),
                size: 1,
                mtime: (7, 0),
                chunks: chunk_digests(b"x"),
            }],
            modules: vec![
                StampedFile {
                    path: "kernel/a.ko".into(),
                    size: 3,
                    mtime: (1700000000, 5),
                    chunks: chunk_digests(b"abc"),
                },
                StampedFile {
                    path: "kernel/empty.ko".into(),
                    size: 0,
                    mtime: (0, 0),
                    chunks: Vec::new(),
                },
            ],
        };
        let text = stamp.render();
        let parsed = ParsedStamp::parse(&text).unwrap();
        assert_eq!(parsed.release, stamp.release);
        assert_eq!(parsed.vermagic, stamp.vermagic.as_deref());
        for (p, s) in parsed
            .modules
            .iter()
            .chain(&parsed.maps)
            .zip(stamp.modules.iter().chain(&stamp.maps))
        {
            assert_eq!(
                (p.path, p.size, p.mtime),
                (s.path.as_str(), s.size, s.mtime)
            );
            assert_eq!(p.chunks().unwrap(), s.chunks);
            assert!(p.chunks_are(&s.chunks));
        }
    }

    #[test]
    fn chunks_compare_digest_by_digest() {
        let two = chunk_digests(&vec![1u8; CHUNK + 1]);
        let line = |chunks: &[[u8; 32]]| {
            let file = StampedFile {
                path: "kernel/a.ko".into(),
                size: 1,
                mtime: (1, 0),
                chunks: chunks.to_vec(),
            };
            file.render("module")
        };
        let text = format!("{HEADER}\nrelease r\n{}", line(&two));
        let parsed = ParsedStamp::parse(&text).unwrap();
        let file = &parsed.modules[0];
        assert!(file.chunks_are(&two));
        // One digest fewer, one more, one byte off, none at all: all differ.
        assert!(!file.chunks_are(&two[..1]));
        assert!(!file.chunks_are(&[two[0], two[1], two[0]]));
        let mut off = two.clone();
        off[1][31] ^= 1;
        assert!(!file.chunks_are(&off));
        assert!(!file.chunks_are(&[]));
        // Upper-case hex reads the same; an empty file's "-" is no digest.
        let upper =
            line(&two)
                .to_uppercase()
                .replacen("MODULE KERNEL/A.KO", "module kernel/a.ko", 1);
        let text = format!("{HEADER}\nrelease r\n{upper}");
        let parsed = ParsedStamp::parse(&text).unwrap();
        assert!(parsed.modules[0].chunks_are(&two));
        let text = format!("{HEADER}\nrelease r\n{}", line(&[]));
        let parsed = ParsedStamp::parse(&text).unwrap();
        assert!(parsed.modules[0].chunks_are(&[]));
        assert!(!parsed.modules[0].chunks_are(&two[..1]));
    }

    #[test]
    fn rfs_block_key_vector() {
        // flist-format.md §4.4: the key rfs gives the 12-byte block "hello flist\n".
        assert_eq!(
            hex(&blake2b256(b"hello flist\n")),
            "bd903b87f488ceed3f515e42c150fd5857b8bdc6fc6a09d9b999cdf66bccddcf"
        );
        assert_eq!(chunk_digests(&vec![0u8; CHUNK + 1]).len(), 2);
    }

    #[test]
    fn bad_stamps_name_the_line() {
        assert!(ParsedStamp::parse("garbage").is_err());
        let err = ParsedStamp::parse(&format!("{HEADER}\nrelease x\nmodule a b c\n")).unwrap_err();
        assert!(err.starts_with("line 3"), "{err}");
    }

    #[test]
    fn mtime_precision() {
        assert!(same_mtime((5, 0), (5, 7)));
        assert!(same_mtime((5, 7), (5, 7)));
        assert!(!same_mtime((5, 6), (5, 7)));
        assert!(!same_mtime((4, 0), (5, 0)));
    }
}
