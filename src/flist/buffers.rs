//! Block-sized buffers kept for the next block, and what a buffer really costs. musl maps
//! every allocation over 128 KiB afresh and unmaps it when freed, so each 512 KiB block
//! fetched, decoded and evicted cost 128 page faults with their zeroing, and an unmap that
//! interrupts every thread of the process. The blob a store returns, the plaintext it
//! decodes to and the block the memory cache lets go come back here and serve the next
//! block instead. Every kept buffer has the same room ([`BUFFER_SIZE`]: a full block's
//! stored blob fits), so any of them serves a blob or a plaintext, and a kept buffer keeps
//! its length: what it held is already written, so filling it again needs no zeroing.

use super::codec::BLOCK_SIZE;
use std::sync::Mutex;

/// The room of every kept buffer: a full block, its snappy framing and its GCM tag, with
/// room to spare. Pages a buffer never touched cost no memory.
pub const BUFFER_SIZE: usize = BLOCK_SIZE + 64 * 1024;

/// Requests this large or larger (and at most [`BUFFER_SIZE`]) are served by kept
/// buffers; a smaller block in a kept buffer would hold memory it does not use.
const SERVED_FROM: usize = BUFFER_SIZE / 4 * 3;

/// Buffers kept at most (each about a block: 4 MiB in all).
const KEPT: usize = 8;

/// Buffers this large or larger get a mapping of their own, however much smaller than
/// musl's threshold: freed, their memory goes back at once. (Inside musl's heap a freed
/// block's slot keeps its pages while others share its group; over a memory cache of
/// mid-sized blocks that grew the daemon by 8 % of the cache.) Only the pages written
/// cost memory.
const OWN_MAPPING_FROM: usize = 16 * 1024;

static KEPT_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn kept(capacity: usize) -> Option<Vec<u8>> {
    if !(SERVED_FROM..=BUFFER_SIZE).contains(&capacity) {
        return None;
    }
    KEPT_BUFFERS.lock().unwrap_or_else(|p| p.into_inner()).pop()
}

fn fresh(capacity: usize) -> Vec<u8> {
    if (SERVED_FROM..=BUFFER_SIZE).contains(&capacity) {
        Vec::with_capacity(BUFFER_SIZE)
    } else if capacity >= OWN_MAPPING_FROM {
        Vec::with_capacity(capacity.max(MMAP_THRESHOLD as usize + 32))
    } else {
        Vec::with_capacity(capacity)
    }
}

/// A buffer of `len` bytes whose content is unspecified (what a kept buffer held, zeros
/// past that): for a writer that overwrites all of it.
pub fn take_filled(len: usize) -> Vec<u8> {
    let mut buffer = kept(len).unwrap_or_else(|| fresh(len));
    buffer.resize(len, 0);
    buffer
}

/// Gives a buffer back for a later block; one of another room is simply freed, and so is
/// any beyond [`KEPT`].
pub fn give(buffer: Vec<u8>) {
    if buffer.capacity() != BUFFER_SIZE {
        return;
    }
    let mut kept = KEPT_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
    if kept.len() < KEPT {
        kept.push(buffer);
    }
}

/// Everything `reader` has, up to `limit` bytes (one more tells the caller it was more),
/// into a buffer sized once for the `expected` length (a Content-Length, a file size):
/// read straight into a kept buffer's written bytes, without zeroing them first.
pub fn read_all(
    reader: &mut impl std::io::Read,
    expected: usize,
    limit: usize,
) -> std::io::Result<Vec<u8>> {
    let mut data = take_filled(expected.min(limit));
    let mut filled = 0;
    while filled < data.len() {
        match reader.read(&mut data[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                give(data);
                return Err(e);
            }
        }
    }
    data.truncate(filled);
    // Longer than announced (or nothing announced): the rest, as far as the limit.
    if filled == expected.min(limit) {
        let rest = (limit - filled) as u64;
        if let Err(e) =
            std::io::Read::read_to_end(&mut std::io::Read::take(reader, rest), &mut data)
        {
            give(data);
            return Err(e);
        }
    }
    Ok(data)
}

/// Page size assumed for costs.
const PAGE: u64 = 4096;
/// musl's threshold above which an allocation is a mapping of its own.
const MMAP_THRESHOLD: u64 = 128 * 1024 - 32;

/// The memory a buffer holding `len` bytes in `capacity` costs under musl's allocator:
/// a mapping of its own holds the pages written (a kept buffer may hold what a full
/// block's blob wrote; any other was written up to its length and a page more at most)
/// and its header page; a smaller allocation takes a whole slot of its size class, the
/// classes being up to a quarter apart.
pub fn cost(len: usize, capacity: usize) -> u64 {
    let (len, capacity) = (len as u64, capacity as u64);
    if capacity >= MMAP_THRESHOLD {
        let written = if capacity == BUFFER_SIZE as u64 {
            len.max(BLOCK_SIZE as u64 + 64)
        } else {
            len + PAGE
        };
        return written.div_ceil(PAGE) * PAGE + PAGE;
    }
    // mallocng's size classes from 4 KiB up, in 16-byte units (a slot also holds a
    // 4-byte header); below them, a slot costs at most a quarter more than asked.
    const CLASSES: [u64; 20] = [
        292, 340, 409, 511, 584, 682, 818, 1023, 1169, 1364, 1637, 2047, 2340, 2730, 3276, 4095,
        4680, 5460, 6552, 8191,
    ];
    let units = (capacity + 4).div_ceil(16);
    if units < CLASSES[0] {
        return capacity + capacity / 4 + 16;
    }
    CLASSES
        .iter()
        .find(|class| **class >= units)
        .map_or(capacity + capacity / 4, |class| class * 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_block_sized_buffers_and_no_more_than_its_bound() {
        for _ in 0..2 * KEPT {
            give(Vec::with_capacity(BUFFER_SIZE));
        }
        give(vec![0; 16]); // another room: freed
        give(Vec::with_capacity(4 * BLOCK_SIZE));
        let kept = KEPT_BUFFERS.lock().unwrap();
        assert!(kept.len() <= KEPT);
        assert!(kept.iter().all(|b| b.capacity() == BUFFER_SIZE));
    }

    #[test]
    fn a_taken_buffer_has_the_length_asked_for() {
        give(vec![7; BUFFER_SIZE]);
        for wanted in [BLOCK_SIZE, BLOCK_SIZE + 100, 10, 20_000, BUFFER_SIZE + 1] {
            let filled = take_filled(wanted);
            assert!(filled.len() == wanted && filled.capacity() >= wanted);
            give(filled);
        }
    }

    #[test]
    fn reads_all_whatever_was_announced_up_to_the_limit() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        for announced in [0, 10, 200_000, 300_000] {
            let read = read_all(&mut &data[..], announced, 1 << 20).unwrap();
            assert_eq!(read, data, "announced {announced}");
        }
        // One byte past the limit tells the caller the blob was longer.
        assert_eq!(read_all(&mut &data[..], 200_000, 1000).unwrap().len(), 1000);
        assert_eq!(read_all(&mut &data[..], 0, 1000).unwrap().len(), 1000);
    }

    #[test]
    fn a_buffer_costs_at_least_what_it_holds_and_whole_pages_when_mapped() {
        for (len, capacity) in [(1, 1), (4000, 4000), (9_000, 9_000), (130_000, 140_000)] {
            let cost = cost(len, capacity);
            assert!(cost >= len as u64, "{len}: {cost}");
            assert!(cost <= len as u64 * 5 / 4 + 3 * PAGE, "{len}: {cost}");
        }
        // mallocng puts 9,000 bytes in its 9,344-byte class.
        assert_eq!(cost(9_000, 9_000), 9_344);
        // A mapping of its own: the pages written and the header.
        let own = take_filled(97_000);
        assert_eq!(cost(own.len(), own.capacity()), 24 * PAGE + 2 * PAGE);
        // A kept buffer holding a block costs the pages a blob wrote, not its room.
        assert_eq!(cost(BLOCK_SIZE, BUFFER_SIZE), BLOCK_SIZE as u64 + 2 * PAGE);
    }
}
