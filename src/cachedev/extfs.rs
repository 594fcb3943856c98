//! An ext3 filesystem for a blank cache device, laid out in memory: what `mke2fs -t ext3
//! -b 4096 -I 128 -m 0 -L LABEL` would write, minus what a cache does not need (no resize
//! reserve, no directory index). Journalled, so a node that loses power in the middle of
//! its cache writes mounts a consistent filesystem; the kernel's ext4 driver mounts it,
//! and `e2fsck -fn` is the oracle in the tests. Pure: the caller writes the [`Layout`].

use std::collections::BTreeMap;

/// The block size.
pub const BLOCK: u64 = 4096;
const BLOCKS_PER_GROUP: u64 = 8 * BLOCK;
/// One inode per this many bytes: the cache's entries are blocks of files (tens to
/// hundreds of KiB) in a two-level directory tree.
const BYTES_PER_INODE: u64 = 64 * 1024;
const INODE_SIZE: u64 = 128;
const INODES_PER_BLOCK: u64 = BLOCK / INODE_SIZE;
const JOURNAL_BLOCKS: u64 = 1024;
/// The largest filesystem made: a cache needs no more, and the inode tables written when
/// formatting stay small (32 MiB). A larger device keeps the rest untouched.
pub const MAX_BYTES: u64 = 16 << 30;
/// The smallest device worth a cache.
pub const MIN_BYTES: u64 = 64 << 20;
/// The first mebibyte holds group 0's metadata and the journal's superblock; it is written
/// last, in one go, so a format cut short leaves the device blank (and formatted again).
pub const HEAD: u64 = 1 << 20;

const ROOT_INO: u32 = 2;
const JOURNAL_INO: u32 = 8;
const LOST_FOUND_INO: u32 = 11;

/// What formatting writes: the filesystem's size, byte ranges that must read as zeros
/// (inode tables), and the metadata blocks by block number.
#[derive(Debug)]
pub struct Layout {
    /// Blocks in the filesystem.
    pub blocks: u64,
    /// Byte ranges to zero: `(offset, length)`.
    pub zero: Vec<(u64, u64)>,
    /// Metadata blocks by block number, each [`BLOCK`] bytes.
    pub metadata: BTreeMap<u64, Vec<u8>>,
}

/// A device too small for a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooSmall {
    /// The device's size in bytes.
    pub bytes: u64,
}

impl std::fmt::Display for TooSmall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} MiB is too small for a block cache (at least {} MiB)",
            self.bytes >> 20,
            MIN_BYTES >> 20
        )
    }
}

impl std::error::Error for TooSmall {}

/// Whether group `g` carries a copy of the superblock and descriptors (`sparse_super`:
/// groups 0 and 1 and the powers of 3, 5 and 7).
fn has_super(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut n = base;
        while n < g {
            n *= base;
        }
        n == g
    })
}

struct Geometry {
    blocks: u64,
    groups: u64,
    inodes_per_group: u64,
    table_blocks: u64,
    descriptor_blocks: u64,
}

impl Geometry {
    fn new(device_bytes: u64) -> Result<Geometry, TooSmall> {
        let bytes = device_bytes.min(MAX_BYTES);
        if bytes < MIN_BYTES {
            return Err(TooSmall {
                bytes: device_bytes,
            });
        }
        let mut blocks = bytes / BLOCK;
        // Inodes per group: a multiple of what fills the table's blocks.
        let inodes_per_group = (BLOCKS_PER_GROUP * BLOCK / BYTES_PER_INODE)
            .div_ceil(INODES_PER_BLOCK)
            * INODES_PER_BLOCK;
        let table_blocks = inodes_per_group / INODES_PER_BLOCK;
        let mut groups = blocks.div_ceil(BLOCKS_PER_GROUP);
        let descriptor_blocks = (groups * 32).div_ceil(BLOCK);
        // A last group too small for its own metadata and some data is left out.
        let last = blocks - (groups - 1) * BLOCKS_PER_GROUP;
        let overhead = if has_super(groups - 1) {
            1 + descriptor_blocks
        } else {
            0
        } + 2
            + table_blocks;
        if groups > 1 && last < overhead + 64 {
            groups -= 1;
            blocks = groups * BLOCKS_PER_GROUP;
        }
        Ok(Geometry {
            blocks,
            groups,
            inodes_per_group,
            table_blocks,
            descriptor_blocks,
        })
    }

    fn group_blocks(&self, g: u64) -> u64 {
        (self.blocks - g * BLOCKS_PER_GROUP).min(BLOCKS_PER_GROUP)
    }

    /// The first block of group `g` after its superblock copy and descriptors.
    fn bitmap(&self, g: u64) -> u64 {
        g * BLOCKS_PER_GROUP
            + if has_super(g) {
                1 + self.descriptor_blocks
            } else {
                0
            }
    }

    /// The first block after group `g`'s metadata.
    fn data(&self, g: u64) -> u64 {
        self.bitmap(g) + 2 + self.table_blocks
    }
}

fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_bits(bitmap: &mut [u8], range: std::ops::Range<u64>) {
    for bit in range {
        bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
    }
}

/// An inode: mode, size, link count and its blocks (the first twelve direct, the
/// thirteenth the single indirect block).
fn inode(mode: u16, size: u64, links: u16, blocks: &[u32], sectors: u32, now: u32) -> [u8; 128] {
    let mut raw = [0u8; 128];
    put16(&mut raw, 0, mode);
    put32(&mut raw, 4, size as u32);
    for at in [8, 12, 16] {
        put32(&mut raw, at, now);
    }
    put16(&mut raw, 26, links);
    put32(&mut raw, 28, sectors);
    for (i, block) in blocks.iter().take(13).enumerate() {
        put32(&mut raw, 40 + 4 * i, *block);
    }
    raw
}

/// A directory block: `.`, `..` and `entries`, the last one spanning the rest.
fn directory(own: u32, parent: u32, entries: &[(u32, &str)]) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK as usize];
    let mut all = vec![(own, "."), (parent, "..")];
    all.extend_from_slice(entries);
    let mut at = 0usize;
    for (i, (ino, name)) in all.iter().enumerate() {
        let length = (8 + name.len()).div_ceil(4) * 4;
        let record = if i + 1 == all.len() {
            BLOCK as usize - at
        } else {
            length
        };
        put32(&mut block, at, *ino);
        put16(&mut block, at + 4, record as u16);
        block[at + 6] = name.len() as u8;
        block[at + 7] = 2; // a directory
        block[at + 8..at + 8 + name.len()].copy_from_slice(name.as_bytes());
        at += record;
    }
    block
}

/// The layout of an ext3 filesystem on a device of `device_bytes`, labelled `label` (up
/// to 16 bytes are kept), with the filesystem id `uuid`, made at `now` (Unix seconds).
pub fn layout(
    device_bytes: u64,
    label: &str,
    uuid: [u8; 16],
    now: u32,
) -> Result<Layout, TooSmall> {
    let geo = Geometry::new(device_bytes)?;
    let mut metadata = BTreeMap::new();
    let mut zero = Vec::new();
    // Group 0's data: the root directory, lost+found, the journal's indirect block and
    // the journal.
    let first = geo.data(0);
    let (root_block, lost_found_block, indirect) = (first, first + 1, first + 2);
    let journal = indirect + 1;
    let used_in_group0 = journal + JOURNAL_BLOCKS;
    let mut descriptors = vec![0u8; (geo.descriptor_blocks * BLOCK) as usize];
    let mut free_blocks_total = 0u64;
    for g in 0..geo.groups {
        let start = g * BLOCKS_PER_GROUP;
        let size = geo.group_blocks(g);
        let bitmap = geo.bitmap(g);
        let mut blocks = vec![0u8; BLOCK as usize];
        let used_end = if g == 0 { used_in_group0 } else { geo.data(g) };
        set_bits(&mut blocks, 0..used_end - start);
        set_bits(&mut blocks, size..BLOCK * 8);
        let mut inodes = vec![0u8; BLOCK as usize];
        if g == 0 {
            set_bits(&mut inodes, 0..u64::from(LOST_FOUND_INO));
        }
        set_bits(&mut inodes, geo.inodes_per_group..BLOCK * 8);
        metadata.insert(bitmap, blocks);
        metadata.insert(bitmap + 1, inodes);
        zero.push(((bitmap + 2) * BLOCK, geo.table_blocks * BLOCK));
        let free = size - (used_end - start);
        free_blocks_total += free;
        let used_inodes = if g == 0 { u64::from(LOST_FOUND_INO) } else { 0 };
        let d = (g * 32) as usize;
        put32(&mut descriptors, d, bitmap as u32);
        put32(&mut descriptors, d + 4, (bitmap + 1) as u32);
        put32(&mut descriptors, d + 8, (bitmap + 2) as u32);
        put16(&mut descriptors, d + 12, free as u16);
        put16(
            &mut descriptors,
            d + 14,
            (geo.inodes_per_group - used_inodes) as u16,
        );
        put16(&mut descriptors, d + 16, if g == 0 { 2 } else { 0 });
    }
    // The inodes of group 0's table that are in use.
    let table = geo.bitmap(0) + 2;
    let mut inodes = vec![0u8; BLOCK as usize];
    let slot = |ino: u32| ((ino - 1) as usize) * INODE_SIZE as usize;
    let dir_sectors = (BLOCK / 512) as u32;
    let root = inode(0o40755, BLOCK, 3, &[root_block as u32], dir_sectors, now);
    inodes[slot(ROOT_INO)..slot(ROOT_INO) + 128].copy_from_slice(&root);
    let mut journal_map: Vec<u32> = (0..12).map(|i| (journal + i) as u32).collect();
    journal_map.push(indirect as u32);
    let journal_sectors = ((JOURNAL_BLOCKS + 1) * BLOCK / 512) as u32;
    let journal_inode = inode(
        0o100600,
        JOURNAL_BLOCKS * BLOCK,
        1,
        &journal_map,
        journal_sectors,
        now,
    );
    inodes[slot(JOURNAL_INO)..slot(JOURNAL_INO) + 128].copy_from_slice(&journal_inode);
    let lost = inode(
        0o40700,
        BLOCK,
        2,
        &[lost_found_block as u32],
        dir_sectors,
        now,
    );
    inodes[slot(LOST_FOUND_INO)..slot(LOST_FOUND_INO) + 128].copy_from_slice(&lost);
    metadata.insert(table, inodes);
    metadata.insert(
        root_block,
        directory(ROOT_INO, ROOT_INO, &[(LOST_FOUND_INO, "lost+found")]),
    );
    metadata.insert(lost_found_block, directory(LOST_FOUND_INO, ROOT_INO, &[]));
    let mut map = vec![0u8; BLOCK as usize];
    for k in 0..JOURNAL_BLOCKS - 12 {
        put32(&mut map, (4 * k) as usize, (journal + 12 + k) as u32);
    }
    metadata.insert(indirect, map);
    metadata.insert(journal, journal_superblock(uuid));
    // The superblock and descriptors, in group 0 and in each copy.
    let inodes_total = geo.inodes_per_group * geo.groups;
    for g in (0..geo.groups).filter(|&g| has_super(g)) {
        let start = g * BLOCKS_PER_GROUP;
        let mut block = vec![0u8; BLOCK as usize];
        // Group 0's superblock sits 1024 bytes into block 0 (the boot sector stays zero).
        let at = if g == 0 { 1024 } else { 0 };
        let sb = superblock(&geo, g, label, uuid, now, free_blocks_total, inodes_total);
        block[at..at + 1024].copy_from_slice(&sb);
        metadata.insert(start, block);
        for i in 0..geo.descriptor_blocks {
            let range = (i * BLOCK) as usize..((i + 1) * BLOCK) as usize;
            metadata.insert(start + 1 + i, descriptors[range].to_vec());
        }
    }
    Ok(Layout {
        blocks: geo.blocks,
        zero,
        metadata,
    })
}

fn superblock(
    geo: &Geometry,
    group: u64,
    label: &str,
    uuid: [u8; 16],
    now: u32,
    free_blocks: u64,
    inodes: u64,
) -> [u8; 1024] {
    let mut sb = [0u8; 1024];
    put32(&mut sb, 0, inodes as u32);
    put32(&mut sb, 4, geo.blocks as u32);
    put32(&mut sb, 12, free_blocks as u32);
    put32(&mut sb, 16, (inodes - u64::from(LOST_FOUND_INO)) as u32);
    put32(&mut sb, 24, 2); // 1024 << 2 = 4096
    put32(&mut sb, 28, 2);
    put32(&mut sb, 32, BLOCKS_PER_GROUP as u32);
    put32(&mut sb, 36, BLOCKS_PER_GROUP as u32);
    put32(&mut sb, 40, geo.inodes_per_group as u32);
    put32(&mut sb, 48, now);
    put16(&mut sb, 54, u16::MAX); // no mount-count checks
    put16(&mut sb, 56, 0xEF53);
    put16(&mut sb, 58, 1); // clean
    put16(&mut sb, 60, 1); // on errors: continue
    put32(&mut sb, 64, now);
    put32(&mut sb, 76, 1); // dynamic revision
    put32(&mut sb, 84, LOST_FOUND_INO);
    put16(&mut sb, 88, INODE_SIZE as u16);
    put16(&mut sb, 90, group as u16);
    put32(&mut sb, 92, 0x4); // has_journal
    put32(&mut sb, 96, 0x2); // filetype
    put32(&mut sb, 100, 0x1); // sparse_super
    sb[104..120].copy_from_slice(&uuid);
    let name = label.as_bytes();
    let keep = name.len().min(16);
    sb[120..120 + keep].copy_from_slice(&name[..keep]);
    put32(&mut sb, 224, JOURNAL_INO);
    sb[252] = 1; // half_md4, should a tool turn on dir_index
    put32(&mut sb, 264, now);
    sb
}

/// The journal's superblock (jbd2, version 2, big-endian): empty, nothing to replay.
fn journal_superblock(uuid: [u8; 16]) -> Vec<u8> {
    let mut block = vec![0u8; BLOCK as usize];
    let mut be = |at: usize, v: u32| block[at..at + 4].copy_from_slice(&v.to_be_bytes());
    be(0, 0xC03B_3998);
    be(4, 4);
    be(12, BLOCK as u32);
    be(16, JOURNAL_BLOCKS as u32);
    be(20, 1); // first log block
    be(24, 1); // first expected commit
    be(64, 1); // one user: this filesystem
    block[48..64].copy_from_slice(&uuid);
    block
}

#[cfg(test)]
#[path = "extfs_tests.rs"]
mod tests;
