//! Unit tests of the ext3 layout; `tests/cache_disk.rs` has `e2fsck` and the kernel read
//! what it writes.

use super::*;

fn u16_at(block: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([block[at], block[at + 1]])
}

fn u32_at(block: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
}

#[test]
fn superblock_copies_follow_sparse_super() {
    let with: Vec<u64> = (0..100).filter(|&g| has_super(g)).collect();
    assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
}

#[test]
fn sizes_are_bounded_and_a_small_last_group_is_left_out() {
    assert_eq!(
        layout(MIN_BYTES - 1, LABEL_FOR_TEST, [0; 16], 0).unwrap_err(),
        TooSmall {
            bytes: MIN_BYTES - 1
        }
    );
    let small = layout(MIN_BYTES, LABEL_FOR_TEST, [0; 16], 0).unwrap();
    assert_eq!(small.blocks, MIN_BYTES / BLOCK);
    // 1 TiB: only the first 16 GiB become the cache.
    let big = Geometry::new(1 << 40).unwrap();
    assert_eq!(big.blocks * BLOCK, MAX_BYTES);
    // 128 MiB + 100 blocks: the last group cannot hold its metadata and some data.
    let odd = Geometry::new((128 << 20) + 100 * BLOCK).unwrap();
    assert_eq!((odd.groups, odd.blocks), (1, BLOCKS_PER_GROUP));
    // The inode tables written when formatting 16 GiB.
    let tables: u64 = layout(MAX_BYTES, LABEL_FOR_TEST, [0; 16], 0)
        .unwrap()
        .zero
        .iter()
        .map(|(_, len)| len)
        .sum();
    assert_eq!(tables, 32 << 20);
}

const LABEL_FOR_TEST: &str = "initagent-cache-and-more";

#[test]
fn counts_agree_between_superblock_descriptors_and_bitmaps() {
    let bytes = 300u64 << 20; // three groups, the last one partial
    let layout = layout(bytes, LABEL_FOR_TEST, [7; 16], 1_700_000_000).unwrap();
    let geo = Geometry::new(bytes).unwrap();
    assert_eq!(geo.groups, 3);
    let block0 = &layout.metadata[&0];
    let sb = &block0[1024..2048];
    assert_eq!(u16_at(sb, 56), 0xEF53);
    assert_eq!(u32_at(sb, 4) as u64, layout.blocks);
    assert_eq!(
        &sb[120..136],
        b"initagent-cache-",
        "the label is cut at 16 bytes"
    );
    assert_eq!(&sb[104..120], &[7; 16]);
    let descriptors = &layout.metadata[&1];
    let mut free_blocks = 0u64;
    let mut free_inodes = 0u64;
    for g in 0..geo.groups {
        let d = &descriptors[(g * 32) as usize..];
        let bitmap = u32_at(d, 0) as u64;
        assert_eq!(bitmap, geo.bitmap(g));
        let bits = &layout.metadata[&bitmap];
        let used = (0..geo.group_blocks(g))
            .filter(|&b| bits[(b / 8) as usize] & (1 << (b % 8)) != 0)
            .count() as u64;
        assert_eq!(
            u16_at(d, 12) as u64,
            geo.group_blocks(g) - used,
            "group {g}"
        );
        // Past the end of the group every bit is set.
        assert!(
            (geo.group_blocks(g)..BLOCK * 8).all(|b| bits[(b / 8) as usize] & (1 << (b % 8)) != 0)
        );
        free_blocks += u64::from(u16_at(d, 12));
        free_inodes += u64::from(u16_at(d, 14));
        // The copies of the superblock carry their group's number.
        if g > 0 && has_super(g) {
            let copy = &layout.metadata[&(g * BLOCKS_PER_GROUP)];
            assert_eq!(u16_at(copy, 90) as u64, g);
            assert_eq!(
                copy[..1024],
                sb[..90]
                    .iter()
                    .chain(&copy[90..92])
                    .chain(&sb[92..])
                    .copied()
                    .collect::<Vec<_>>()[..]
            );
        }
    }
    assert_eq!(u32_at(sb, 12) as u64, free_blocks);
    assert_eq!(u32_at(sb, 16) as u64, free_inodes);
    // The root directory: ".", ".." and lost+found, the last spanning the block.
    let table = &layout.metadata[&(geo.bitmap(0) + 2)];
    let root = &table[128..256];
    assert_eq!(u16_at(root, 0), 0o40755);
    let root_block = &layout.metadata[&(u32_at(root, 40) as u64)];
    assert_eq!(u32_at(root_block, 24), 11);
    assert_eq!(u16_at(root_block, 28) as usize, BLOCK as usize - 24);
    assert_eq!(&root_block[32..42], b"lost+found");
    // The journal: 1024 blocks, its superblock first, big-endian.
    let journal = &table[7 * 128..8 * 128];
    assert_eq!(u32_at(journal, 4) as u64, JOURNAL_BLOCKS * BLOCK);
    let jsb = &layout.metadata[&(u32_at(journal, 40) as u64)];
    assert_eq!(&jsb[..4], &0xC03B_3998u32.to_be_bytes());
}
