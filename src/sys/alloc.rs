//! The agent's global allocator: the system one (musl's in the shipped build), keeping a
//! few freed block-sized buffers for the next allocation of the same size class.
//!
//! musl hands every buffer over about 128 KiB back to the kernel when it is freed and maps
//! fresh pages for the next one, so each 512 KiB flist block buffer cost 128 page faults
//! and the zeroing of its pages: a quarter of a verified block decode. Buffers between
//! [`SMALLEST`] and [`LARGEST`] are rounded up to a multiple of [`STEP`] and at most
//! [`SLOTS`] of them are kept (a bound of `SLOTS × LARGEST` bytes); everything else goes
//! straight to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// The smallest allocation that is kept for reuse.
pub const SMALLEST: usize = 256 * 1024;
/// The largest allocation that is kept for reuse.
pub const LARGEST: usize = 1024 * 1024;
/// Size classes are multiples of this.
pub const STEP: usize = 64 * 1024;
/// Freed buffers kept at most.
pub const SLOTS: usize = 16;

#[derive(Clone, Copy)]
struct Kept {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: a kept buffer is owned by the allocator alone until it is handed out again;
// the pointer is only an address, moved between threads under the mutex.
unsafe impl Send for Kept {}

/// The system allocator plus a small set of reusable block-sized buffers.
pub struct BlockReuse {
    /// The kept buffers, and the slot to reuse next when all are taken.
    kept: Mutex<([Option<Kept>; SLOTS], usize)>,
}

impl BlockReuse {
    /// An allocator keeping nothing yet.
    pub const fn new() -> BlockReuse {
        BlockReuse {
            kept: Mutex::new(([None; SLOTS], 0)),
        }
    }

    /// The layout a request is served with: size rounded up to its class when it is one
    /// that is kept, `None` when it goes straight to the system allocator.
    fn class(layout: Layout) -> Option<Layout> {
        if !(SMALLEST..=LARGEST).contains(&layout.size()) {
            return None;
        }
        let rounded = layout.size().div_ceil(STEP) * STEP;
        Layout::from_size_align(rounded, layout.align()).ok()
    }

    fn take(&self, class: Layout) -> Option<*mut u8> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.0
            .iter_mut()
            .find(|slot| slot.is_some_and(|k| k.layout == class))
            .and_then(Option::take)
            .map(|k| k.ptr)
    }

    /// Keeps a freed buffer. When every slot is taken, the buffer kept longest makes way
    /// (the sizes in use now are the ones worth keeping) and is returned for freeing.
    fn keep(&self, ptr: *mut u8, class: Layout) -> Option<Kept> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let (slots, next) = &mut *kept;
        let new = Kept { ptr, layout: class };
        match slots.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some(new);
                None
            }
            None => {
                let evicted = slots[*next % SLOTS].replace(new);
                *next = (*next + 1) % SLOTS;
                evicted
            }
        }
    }
}

impl Default for BlockReuse {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every pointer handed out comes from `System` with the layout it is later freed
// with (the rounded class layout for kept sizes, the caller's otherwise), and a kept
// buffer is handed to one caller at a time because `take` removes it under the mutex.
unsafe impl GlobalAlloc for BlockReuse {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::class(layout) {
            Some(class) => match self.take(class) {
                Some(ptr) => ptr,
                // SAFETY: `class` has a non-zero size (at least SMALLEST).
                None => unsafe { System.alloc(class) },
            },
            // SAFETY: the caller's layout, passed through unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match Self::class(layout) {
            Some(class) => {
                if let Some(evicted) = self.keep(ptr, class) {
                    // SAFETY: every kept buffer was allocated by `System` with the class
                    // layout it is kept under (see `alloc`), and is no longer handed out.
                    unsafe { System.dealloc(evicted.ptr, evicted.layout) }
                }
            }
            // SAFETY: allocated by `System` with this very layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_class = Self::class(layout);
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(new_layout) => new_layout,
            Err(_) => return std::ptr::null_mut(),
        };
        let new_class = Self::class(new_layout);
        if old_class.is_none() && new_class.is_none() {
            // SAFETY: both sizes are the system allocator's own business; `ptr` came
            // from `System` with `layout`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if old_class.is_some() && old_class == new_class {
            return ptr; // the rounded buffer already holds `new_size` bytes
        }
        // SAFETY: `new_layout` has a non-zero size (it is at least the old size or a
        // shrink of a kept class, never zero for a Vec that reallocates).
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both buffers are valid for the smaller of the two sizes and are
            // distinct allocations.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sized_buffers_are_reused_and_others_are_not_kept() {
        let reuse = BlockReuse::new();
        let block = Layout::from_size_align(512 * 1024, 1).unwrap();
        // SAFETY: matched alloc/dealloc pairs with the same layout.
        unsafe {
            let first = reuse.alloc(block);
            assert!(!first.is_null());
            first.write_bytes(7, block.size());
            reuse.dealloc(first, block);
            // A request of the same class gets the very same buffer back.
            let smaller = Layout::from_size_align(500 * 1024, 1).unwrap();
            let again = reuse.alloc(smaller);
            assert_eq!(again, first);
            // Growing within the class keeps the buffer; growing past it moves and copies.
            assert_eq!(reuse.realloc(again, smaller, 512 * 1024), again);
            let moved = reuse.realloc(again, block, 2 * 1024 * 1024);
            assert_eq!(*moved.add(block.size() - 1), 7);
            reuse.dealloc(moved, Layout::from_size_align(2 * 1024 * 1024, 1).unwrap());
            // Small allocations pass straight through.
            let small = Layout::from_size_align(64, 8).unwrap();
            let p = reuse.alloc(small);
            reuse.dealloc(p, small);
            let kept = reuse.kept.lock().unwrap().0.iter().flatten().count();
            assert_eq!(
                kept, 1,
                "the moved-from 512 KiB buffer is kept, nothing else"
            );
        }
    }

    #[test]
    fn at_most_slots_buffers_are_kept_the_latest_ones() {
        let reuse = BlockReuse::new();
        let block = Layout::from_size_align(SMALLEST, 1).unwrap();
        // SAFETY: matched alloc/dealloc pairs with the same layout.
        unsafe {
            let buffers: Vec<*mut u8> = (0..SLOTS + 4).map(|_| reuse.alloc(block)).collect();
            for ptr in buffers {
                reuse.dealloc(ptr, block);
            }
        }
        assert_eq!(reuse.kept.lock().unwrap().0.iter().flatten().count(), SLOTS);
        // A buffer of another class, freed now, is kept in place of an older one.
        let other = Layout::from_size_align(LARGEST, 1).unwrap();
        // SAFETY: a matched alloc/dealloc pair.
        let ptr = unsafe {
            let ptr = reuse.alloc(other);
            reuse.dealloc(ptr, other);
            ptr
        };
        // SAFETY: the same layout as the buffer freed above.
        unsafe { assert_eq!(reuse.alloc(other), ptr) };
    }
}
