//! Pure reader of kmod's binary index (`modules.dep.bin`, `modules.alias.bin`,
//! `modules.symbols.bin`, `modules.builtin.bin`, `modules.builtin.alias.bin`): a radix
//! trie of big-endian u32 node references, written post-order by kmod ≤ 33 and pre-order
//! by kmod ≥ 34. Offsets are followed, never assumed, so both layouts read the same.
//!
//! The bytes are untrusted: every read is bounds-checked, child ranges are validated,
//! and walks are limited in depth and in nodes visited, so a corrupt or hostile file
//! (cycles included) gives an [`IndexError`], never a panic or a hang. Lookups follow
//! libkmod's algorithms exactly, including the order in which equal-priority results of
//! a wildcard search come out.

use super::fnmatch::fnmatch;

const MAGIC: u32 = 0xB007_F457;
const MAJOR: u32 = 2;
const FLAG_PREFIX: u32 = 0x8000_0000;
const FLAG_VALUES: u32 = 0x4000_0000;
const FLAG_CHILDS: u32 = 0x2000_0000;
const OFFSET_MASK: u32 = 0x0FFF_FFFF;
/// Deepest trie walk accepted (keys are far shorter).
const MAX_DEPTH: usize = 1024;
/// Most nodes one walk may visit (a full dump of Debian's alias index is ~60,000).
const MAX_VISITS: usize = 4_000_000;

/// What is wrong with an index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// Shorter than the 12-byte header.
    TooShort(usize),
    /// The magic number is not kmod's.
    BadMagic(u32),
    /// A major version other than 2.
    BadVersion(u32),
    /// A node reference points outside the file (or at the header).
    BadOffset { offset: u32 },
    /// A string or table runs past the end of the file.
    Truncated { at: usize },
    /// A child table with `first > last` or a byte ≥ 128.
    BadChildRange { at: usize },
    /// The walk went deeper or longer than any real index (a cycle, most likely).
    TooDeep,
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::TooShort(len) => write!(f, "{len} bytes is too short for an index"),
            IndexError::BadMagic(magic) => write!(f, "bad magic {magic:#010x} (not a kmod index)"),
            IndexError::BadVersion(v) => write!(f, "unsupported index version {v:#010x}"),
            IndexError::BadOffset { offset } => {
                write!(f, "node offset {offset} is outside the file")
            }
            IndexError::Truncated { at } => {
                write!(f, "data at byte {at} runs past the end of the file")
            }
            IndexError::BadChildRange { at } => write!(f, "invalid child table at byte {at}"),
            IndexError::TooDeep => write!(f, "the trie is cyclic or absurdly deep"),
        }
    }
}

impl std::error::Error for IndexError {}

/// One value of a key: a priority (the module's rank) and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<'a> {
    /// Lower comes first.
    pub priority: u32,
    /// The value bytes (module name, dependency line…), without the NUL.
    pub value: &'a [u8],
}

impl Value<'_> {
    /// The value as text (indexes are ASCII; anything else is replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.value).into_owned()
    }
}

struct Node<'a> {
    prefix: &'a [u8],
    first: u8,
    last: u8,
    children: &'a [u8],
    values_at: Option<usize>,
}

/// A parsed index over borrowed bytes.
#[derive(Clone, Copy)]
pub struct Index<'a> {
    data: &'a [u8],
    root: u32,
}

fn be32(data: &[u8], at: usize) -> Result<u32, IndexError> {
    let bytes = data.get(at..at + 4).ok_or(IndexError::Truncated { at })?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn cstr(data: &[u8], at: usize) -> Result<&[u8], IndexError> {
    let rest = data.get(at..).ok_or(IndexError::Truncated { at })?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(IndexError::Truncated { at })?;
    Ok(&rest[..end])
}

/// Inserts like libkmod's `add_value`: before the first value of equal or higher priority.
fn add_value<'a>(out: &mut Vec<Value<'a>>, value: Value<'a>) {
    let position = out
        .iter()
        .position(|v| v.priority >= value.priority)
        .unwrap_or(out.len());
    out.insert(position, value);
}

struct Walk {
    visits: usize,
}

impl Walk {
    fn visit(&mut self, depth: usize) -> Result<(), IndexError> {
        self.visits += 1;
        if self.visits > MAX_VISITS || depth > MAX_DEPTH {
            return Err(IndexError::TooDeep);
        }
        Ok(())
    }
}

impl<'a> Index<'a> {
    /// Checks the header and the root reference.
    pub fn new(data: &'a [u8]) -> Result<Index<'a>, IndexError> {
        if data.len() < 12 {
            return Err(IndexError::TooShort(data.len()));
        }
        let magic = be32(data, 0)?;
        if magic != MAGIC {
            return Err(IndexError::BadMagic(magic));
        }
        let version = be32(data, 4)?;
        if version >> 16 != MAJOR {
            return Err(IndexError::BadVersion(version));
        }
        let root = be32(data, 8)?;
        let index = Index { data, root };
        index.node(root)?;
        Ok(index)
    }

    fn node(&self, reference: u32) -> Result<Node<'a>, IndexError> {
        let offset = reference & OFFSET_MASK;
        let mut at = offset as usize;
        // An empty node (no flags) has no bytes, so an empty index's root sits at the end.
        let empty = reference & !OFFSET_MASK == 0;
        if offset < 12 || at > self.data.len() || (at == self.data.len() && !empty) {
            return Err(IndexError::BadOffset { offset });
        }
        let mut prefix: &[u8] = &[];
        if reference & FLAG_PREFIX != 0 {
            prefix = cstr(self.data, at)?;
            at += prefix.len() + 1;
        }
        let (mut first, mut last, mut children): (u8, u8, &[u8]) = (1, 0, &[]);
        if reference & FLAG_CHILDS != 0 {
            let range = self
                .data
                .get(at..at + 2)
                .ok_or(IndexError::Truncated { at })?;
            (first, last) = (range[0], range[1]);
            if first > last || last >= 128 {
                return Err(IndexError::BadChildRange { at });
            }
            let count = usize::from(last - first) + 1;
            children = self
                .data
                .get(at + 2..at + 2 + 4 * count)
                .ok_or(IndexError::Truncated { at })?;
            at += 2 + 4 * count;
        }
        let values_at = (reference & FLAG_VALUES != 0).then_some(at);
        Ok(Node {
            prefix,
            first,
            last,
            children,
            values_at,
        })
    }

    fn child(&self, node: &Node<'a>, c: u8) -> Result<Option<Node<'a>>, IndexError> {
        if c < node.first || c > node.last {
            return Ok(None);
        }
        let slot = usize::from(c - node.first) * 4;
        let reference = be32(node.children, slot)?;
        if reference == 0 {
            return Ok(None);
        }
        self.node(reference).map(Some)
    }

    fn values(&self, node: &Node<'a>) -> Result<Vec<Value<'a>>, IndexError> {
        let Some(mut at) = node.values_at else {
            return Ok(Vec::new());
        };
        let count = be32(self.data, at)? as usize;
        at += 4;
        // Each value needs at least 5 bytes: a bogus count cannot make us allocate.
        if count > self.data.len() / 5 {
            return Err(IndexError::Truncated { at });
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let priority = be32(self.data, at)?;
            let value = cstr(self.data, at + 4)?;
            at += 4 + value.len() + 1;
            out.push(Value { priority, value });
        }
        Ok(out)
    }

    fn root(&self) -> Result<Node<'a>, IndexError> {
        self.node(self.root)
    }

    /// Every value stored under exactly `key`, in stored (priority) order. libkmod's
    /// exact lookup uses the first one.
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<Value<'a>>, IndexError> {
        let mut node = self.root()?;
        let mut i = 0;
        loop {
            for &p in node.prefix {
                if key.get(i) != Some(&p) {
                    return Ok(Vec::new());
                }
                i += 1;
            }
            let Some(&c) = key.get(i) else {
                return self.values(&node);
            };
            match self.child(&node, c)? {
                Some(child) => node = child,
                None => return Ok(Vec::new()),
            }
            i += 1;
        }
    }

    /// Every value whose stored key (a glob pattern) matches `input`, merged by priority
    /// exactly as libkmod's `index_mm_searchwild` does (duplicates kept).
    pub fn search_wild(&self, input: &[u8]) -> Result<Vec<Value<'a>>, IndexError> {
        let mut out = Vec::new();
        let mut walk = Walk { visits: 0 };
        let mut node = self.root()?;
        let mut i = 0;
        let mut depth = 0;
        loop {
            walk.visit(depth)?;
            depth += 1;
            for (j, &p) in node.prefix.iter().enumerate() {
                if matches!(p, b'*' | b'?' | b'[') {
                    let mut pattern = Vec::new();
                    let rest = input.get(i + j..).unwrap_or_default();
                    self.collect_matching(
                        &node,
                        j,
                        &mut pattern,
                        rest,
                        &mut out,
                        &mut walk,
                        depth,
                    )?;
                    return Ok(out);
                }
                if input.get(i + j) != Some(&p) {
                    return Ok(out);
                }
            }
            i += node.prefix.len();
            let rest = input.get(i..).unwrap_or_default();
            for wild in [b'*', b'?', b'['] {
                if let Some(child) = self.child(&node, wild)? {
                    let mut pattern = vec![wild];
                    self.collect_matching(
                        &child,
                        0,
                        &mut pattern,
                        rest,
                        &mut out,
                        &mut walk,
                        depth,
                    )?;
                }
            }
            let Some(&c) = input.get(i) else {
                for value in self.values(&node)? {
                    add_value(&mut out, value);
                }
                return Ok(out);
            };
            match self.child(&node, c)? {
                Some(child) => node = child,
                None => return Ok(out),
            }
            i += 1;
        }
    }

    /// libkmod's `index_mm_searchwild_all`: children first, in byte order, then the
    /// node's own values when the accumulated pattern matches.
    #[allow(clippy::too_many_arguments)]
    fn collect_matching(
        &self,
        node: &Node<'a>,
        skip: usize,
        pattern: &mut Vec<u8>,
        subject: &[u8],
        out: &mut Vec<Value<'a>>,
        walk: &mut Walk,
        depth: usize,
    ) -> Result<(), IndexError> {
        walk.visit(depth)?;
        let pushed = node.prefix.len().saturating_sub(skip);
        pattern.extend_from_slice(node.prefix.get(skip..).unwrap_or_default());
        if node.first <= node.last {
            for c in node.first..=node.last {
                if let Some(child) = self.child(node, c)? {
                    pattern.push(c);
                    self.collect_matching(&child, 0, pattern, subject, out, walk, depth + 1)?;
                    pattern.pop();
                }
            }
        }
        if node.values_at.is_some() && fnmatch(pattern, subject) {
            for value in self.values(node)? {
                add_value(out, value);
            }
        }
        pattern.truncate(pattern.len() - pushed);
        Ok(())
    }

    /// Calls `f(key, values)` for every key in the index, in byte order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], Vec<Value<'a>>)) -> Result<(), IndexError> {
        let mut key = Vec::new();
        let mut walk = Walk { visits: 0 };
        let root = self.root()?;
        self.dump(&root, &mut key, &mut f, &mut walk, 0)
    }

    fn dump(
        &self,
        node: &Node<'a>,
        key: &mut Vec<u8>,
        f: &mut impl FnMut(&[u8], Vec<Value<'a>>),
        walk: &mut Walk,
        depth: usize,
    ) -> Result<(), IndexError> {
        walk.visit(depth)?;
        key.extend_from_slice(node.prefix);
        if node.values_at.is_some() {
            f(key, self.values(node)?);
        }
        if node.first <= node.last {
            for c in node.first..=node.last {
                if let Some(child) = self.child(node, c)? {
                    key.push(c);
                    self.dump(&child, key, f, walk, depth + 1)?;
                    key.pop();
                }
            }
        }
        key.truncate(key.len() - node.prefix.len());
        Ok(())
    }
}

/// Writes an index holding `entries` (key, priority, value): post-order like kmod ≤ 33's
/// depmod, or pre-order like kmod ≥ 34's. Keys and values must be 7-bit ASCII without NUL,
/// as depmod requires.
pub fn write(entries: &[(Vec<u8>, u32, Vec<u8>)], preorder: bool) -> Result<Vec<u8>, String> {
    #[derive(Default)]
    struct Trie {
        children: std::collections::BTreeMap<u8, Trie>,
        values: Vec<(u32, Vec<u8>)>,
    }
    let mut root = Trie::default();
    for (key, priority, value) in entries {
        if key.iter().chain(value.iter()).any(|&b| b == 0 || b >= 128) {
            return Err(format!(
                "{:?}: keys and values must be ASCII without NUL",
                String::from_utf8_lossy(key)
            ));
        }
        let mut node = &mut root;
        for &b in key {
            node = node.children.entry(b).or_default();
        }
        // Like depmod's index_add_value: after smaller priorities, before equal ones.
        let at = node
            .values
            .iter()
            .position(|(p, _)| p >= priority)
            .unwrap_or(node.values.len());
        node.values.insert(at, (*priority, value.clone()));
    }
    fn emit(node: &Trie, out: &mut Vec<u8>, preorder: bool) -> Result<u32, String> {
        // A chain of single children without values becomes the node's prefix.
        let mut prefix = Vec::new();
        let mut node = node;
        while node.values.is_empty() && node.children.len() == 1 {
            let Some((&c, child)) = node.children.iter().next() else {
                break;
            };
            prefix.push(c);
            node = child;
        }
        let keys: Vec<u8> = node.children.keys().copied().collect();
        let mut refs: Vec<(u8, u32)> = Vec::new();
        if !preorder {
            for (&c, child) in &node.children {
                refs.push((c, emit(child, out, preorder)?));
            }
        }
        let offset = u32::try_from(out.len())
            .ok()
            .filter(|o| *o <= OFFSET_MASK)
            .ok_or("index larger than 256 MiB")?;
        let mut reference = offset;
        if !prefix.is_empty() {
            reference |= FLAG_PREFIX;
            out.extend_from_slice(&prefix);
            out.push(0);
        }
        let mut table_at = 0;
        if let (Some(&first), Some(&last)) = (keys.first(), keys.last()) {
            reference |= FLAG_CHILDS;
            out.push(first);
            out.push(last);
            table_at = out.len();
            for c in first..=last {
                let r = refs.iter().find(|(k, _)| *k == c).map_or(0, |(_, r)| *r);
                out.extend_from_slice(&r.to_be_bytes());
            }
        }
        if !node.values.is_empty() {
            reference |= FLAG_VALUES;
            out.extend_from_slice(&(node.values.len() as u32).to_be_bytes());
            for (p, v) in &node.values {
                out.extend_from_slice(&p.to_be_bytes());
                out.extend_from_slice(v);
                out.push(0);
            }
        }
        if preorder {
            let first = keys.first().copied().unwrap_or(0);
            for (&c, child) in &node.children {
                let r = emit(child, out, preorder)?;
                let slot = table_at + 4 * usize::from(c - first);
                out[slot..slot + 4].copy_from_slice(&r.to_be_bytes());
            }
        }
        Ok(reference)
    }
    let mut out = vec![0u8; 12];
    let root_ref = emit(&root, &mut out, preorder)?;
    out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&0x0002_0001u32.to_be_bytes());
    out[8..12].copy_from_slice(&root_ref.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an index the way kmod ≤ 33's depmod lays it out (post-order).
    pub fn build(entries: &[(&str, u32, &str)]) -> Vec<u8> {
        build_layout(entries, false)
    }

    /// Builds an index post-order (kmod ≤ 33) or pre-order (kmod ≥ 34).
    pub fn build_layout(entries: &[(&str, u32, &str)], preorder: bool) -> Vec<u8> {
        let owned: Vec<(Vec<u8>, u32, Vec<u8>)> = entries
            .iter()
            .map(|(k, p, v)| (k.as_bytes().to_vec(), *p, v.as_bytes().to_vec()))
            .collect();
        write(&owned, preorder).unwrap()
    }

    fn texts(values: Vec<Value<'_>>) -> Vec<String> {
        values.iter().map(Value::text).collect()
    }

    #[test]
    fn exact_lookup() {
        let data = build(&[
            ("ext4", 5, "kernel/fs/ext4/ext4.ko: a b"),
            ("ext2", 3, "x"),
            ("e", 1, "y"),
        ]);
        let index = Index::new(&data).unwrap();
        assert_eq!(
            texts(index.lookup(b"ext4").unwrap()),
            ["kernel/fs/ext4/ext4.ko: a b"]
        );
        assert_eq!(texts(index.lookup(b"e").unwrap()), ["y"]);
        assert!(index.lookup(b"ext").unwrap().is_empty());
        assert!(index.lookup(b"ext44").unwrap().is_empty());
        assert!(index.lookup(b"\xff").unwrap().is_empty());
    }

    #[test]
    fn wildcard_search_merges_by_priority() {
        let data = build(&[
            ("pci:v00008086d*", 7, "e1000e"),
            ("pci:v00008086d000010D3*", 3, "igb"),
            ("pci:v*", 9, "generic"),
            ("pci:v0000808?d*", 7, "other"),
            ("usb:*", 1, "usb"),
        ]);
        let index = Index::new(&data).unwrap();
        let got = texts(index.search_wild(b"pci:v00008086d000010D3sv0").unwrap());
        assert_eq!(got, ["igb", "e1000e", "other", "generic"]);
        assert!(index.search_wild(b"virtio:d1").unwrap().is_empty());
    }

    #[test]
    fn both_writer_layouts_read_the_same() {
        let entries = [
            ("pci:v1*", 1, "a"),
            ("pci:v2", 2, "b"),
            ("pci:v2x", 3, "c"),
            ("usb:*", 4, "d"),
            ("x", 5, "e"),
        ];
        let post = build_layout(&entries, false);
        let pre = build_layout(&entries, true);
        assert_ne!(post, pre);
        assert_eq!(
            u32::from_be_bytes(pre[8..12].try_into().unwrap()) & OFFSET_MASK,
            12,
            "pre-order root is at 12"
        );
        let dump = |data: &[u8]| {
            let mut keys = Vec::new();
            Index::new(data)
                .unwrap()
                .for_each(|k, v| keys.push((k.to_vec(), texts(v))))
                .unwrap();
            keys
        };
        assert_eq!(dump(&post), dump(&pre));
        for input in [&b"pci:v1zz"[..], b"pci:v2", b"usb:x", b"nothing"] {
            let (a, b) = (Index::new(&post).unwrap(), Index::new(&pre).unwrap());
            assert_eq!(
                texts(a.search_wild(input).unwrap()),
                texts(b.search_wild(input).unwrap())
            );
            assert_eq!(
                texts(a.lookup(input).unwrap()),
                texts(b.lookup(input).unwrap())
            );
        }
    }

    #[test]
    fn empty_index() {
        let data = write(&[], false).unwrap();
        let index = Index::new(&data).unwrap();
        assert!(index.lookup(b"x").unwrap().is_empty());
        assert!(index.search_wild(b"x").unwrap().is_empty());
        assert!(write(&[(vec![0xff], 1, vec![])], false).is_err());
    }

    #[test]
    fn dump_lists_every_key() {
        let data = build(&[("a", 1, "x"), ("ab", 2, "y"), ("b*", 3, "z")]);
        let index = Index::new(&data).unwrap();
        let mut keys = Vec::new();
        index
            .for_each(|k, v| keys.push((String::from_utf8_lossy(k).into_owned(), v.len())))
            .unwrap();
        assert_eq!(keys, [("a".into(), 1), ("ab".into(), 1), ("b*".into(), 1)]);
    }

    #[test]
    fn hostile_files_are_errors() {
        assert_eq!(Index::new(b"short").err(), Some(IndexError::TooShort(5)));
        let mut data = build(&[("a", 1, "x")]);
        data[0] = 0;
        assert!(matches!(Index::new(&data), Err(IndexError::BadMagic(_))));
        // A node whose only child is itself: lookups end, walks report a cycle.
        let mut cyclic = vec![0u8; 12];
        cyclic[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        cyclic[4..8].copy_from_slice(&0x0002_0001u32.to_be_bytes());
        let root = 12u32 | FLAG_CHILDS;
        cyclic[8..12].copy_from_slice(&root.to_be_bytes());
        cyclic.extend_from_slice(b"**");
        cyclic.extend_from_slice(&root.to_be_bytes());
        let index = Index::new(&cyclic).unwrap();
        assert_eq!(index.search_wild(b"x").err(), Some(IndexError::TooDeep));
        assert_eq!(index.for_each(|_, _| {}).err(), Some(IndexError::TooDeep));
        assert!(index.lookup(&[b'*'; 10000]).is_ok());
        // Every truncation of a real index is an error or a clean answer, never a panic.
        let full = build(&[("pci:v1*", 1, "a"), ("pci:v2", 2, "b"), ("x", 3, "c")]);
        for len in 0..full.len() {
            if let Ok(index) = Index::new(&full[..len]) {
                let _ = index.search_wild(b"pci:v1x");
                let _ = index.lookup(b"x");
                let _ = index.for_each(|_, _| {});
            }
        }
    }
}
