//! Block-sized buffers kept for the next block. musl maps every allocation over 128 KiB
//! afresh and unmaps it when freed, so each 512 KiB block fetched, decoded and evicted
//! cost 128 page faults with their zeroing, and an unmap that interrupts every thread of
//! the process. The blob a store returns, the plaintext it decodes to and the block the
//! memory cache lets go come back here and serve the next block instead.

use super::codec::BLOCK_SIZE;
use std::sync::Mutex;

/// Buffers kept at most (each about a block: 3 MiB in all).
const KEPT: usize = 6;

static KEPT_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for `capacity` bytes: a kept one when one fits (at most an
/// eighth larger: what a buffer holds is what it costs).
pub fn take(capacity: usize) -> Vec<u8> {
    if capacity > BLOCK_SIZE / 4 {
        let mut kept = KEPT_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
        let fits = |b: &Vec<u8>| (capacity..=capacity + capacity / 8).contains(&b.capacity());
        if let Some(at) = kept.iter().position(fits) {
            let mut buffer = kept.swap_remove(at);
            buffer.clear();
            return buffer;
        }
    }
    Vec::with_capacity(capacity)
}

/// Gives a buffer back for a later block; one too small or too large to serve a block is
/// simply freed, and so is any beyond [`KEPT`].
pub fn give(buffer: Vec<u8>) {
    if !(BLOCK_SIZE..=2 * BLOCK_SIZE).contains(&buffer.capacity()) {
        return;
    }
    let mut kept = KEPT_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
    if kept.len() < KEPT {
        kept.push(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_block_sized_buffers_and_no_more_than_its_bound() {
        for _ in 0..2 * KEPT {
            give(Vec::with_capacity(BLOCK_SIZE));
        }
        give(vec![0; 16]); // too small to serve a block: freed
        give(Vec::with_capacity(4 * BLOCK_SIZE)); // too large to keep
        let kept = KEPT_BUFFERS.lock().unwrap();
        assert!(kept.len() <= KEPT);
        assert!(kept
            .iter()
            .all(|b| (BLOCK_SIZE..=2 * BLOCK_SIZE).contains(&b.capacity())));
    }

    #[test]
    fn a_taken_buffer_is_empty_with_the_room_asked_for() {
        give(Vec::with_capacity(BLOCK_SIZE));
        for wanted in [BLOCK_SIZE, BLOCK_SIZE + 100, 10] {
            let buffer = take(wanted);
            assert!(buffer.is_empty() && buffer.capacity() >= wanted);
            give(buffer);
        }
    }
}
