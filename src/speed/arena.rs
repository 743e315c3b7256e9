//! The global allocator: a fixed region that allocations are bumped out of.
//!
//! cronlock lives for a few milliseconds and allocates a few tens of KiB
//! (settings, the command line, Redis buffers; more with TLS). musl's malloc
//! hands memory back to the kernel as soon as a group of blocks is free, so
//! one run made a dozen mmap/munmap calls, each a system call with page
//! faults after it and a larger address space for the two forks to copy:
//! 0.12 ms per run, measured with scripts/bench.sh. Here a block comes from
//! the region, nothing is given back to the kernel, and a freed block is
//! reused only when it was the last one handed out (a growing buffer, a
//! temporary string), which covers most of what a run frees.
//!
//! A run that outgrows the region (a lease renewed for days allocates a
//! little per renewal) gets its further blocks from the system allocator,
//! so the waste is bounded by the region's size; its untouched pages cost
//! no memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bump allocation out of `N` bytes, then the system allocator.
#[repr(C, align(4096))]
pub struct Arena<const N: usize> {
    region: UnsafeCell<[u8; N]>,
    /// Offset of the first free byte in the region.
    next: AtomicUsize,
}

// SAFETY: the region is only handed out in disjoint blocks, each claimed by
// one successful compare-exchange on `next`.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Arena<N> {
    pub const fn new() -> Self {
        Arena {
            region: UnsafeCell::new([0; N]),
            next: AtomicUsize::new(0),
        }
    }

    /// Bytes of the region handed out so far (alignment padding included).
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    fn base(&self) -> usize {
        self.region.get() as usize
    }

    /// The block's offset in the region, if it lies there.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        (ptr as usize).checked_sub(self.base()).filter(|&offset| offset < N)
    }

    /// Claims a block for `layout` at the end of the region.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + next).checked_add(layout.align() - 1)? & !(layout.align() - 1);
            let end = (start - base).checked_add(layout.size())?;
            if end > N {
                return None;
            }
            match self
                .next
                .compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                // From the region's own pointer, so the block keeps its provenance.
                Ok(_) => return Some(self.region.get().cast::<u8>().wrapping_add(start - base)),
                Err(now) => next = now,
            }
        }
    }
}

unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout, passed on unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.offset(ptr) {
            Some(offset) => {
                // The last block handed out is taken back; a failed exchange
                // means it was not the last one, and it stays where it is.
                let end = offset + layout.size();
                let _ = self
                    .next
                    .compare_exchange(end, offset, Ordering::Relaxed, Ordering::Relaxed);
            }
            // SAFETY: a block the system allocator gave with this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset(ptr) else {
            // SAFETY: a block of the system allocator, with the caller's
            // guarantees passed on.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        // The last block grows or shrinks where it is, when it fits.
        let end = offset + layout.size();
        if let Some(new_end) = offset.checked_add(new_size).filter(|&e| e <= N) {
            if self
                .next
                .compare_exchange(end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return ptr;
            }
        }
        if new_size <= layout.size() {
            // Another block that shrinks stays where it is, its tail unused.
            return ptr;
        }
        // A new block (in the region or not), the bytes copied, the old
        // block freed.
        // SAFETY: the caller guarantees that `new_size`, with the old
        // alignment, makes a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and at least `layout.size()` long;
            // they do not overlap, since the old one is still allocated.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    fn in_region<const N: usize>(arena: &Arena<N>, ptr: *mut u8) -> bool {
        arena.offset(ptr).is_some()
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_in_the_region() {
        let arena = Box::new(Arena::<1024>::new());
        let mut blocks = Vec::new();
        for (size, align) in [(3, 1), (8, 8), (5, 2), (16, 16), (1, 1), (32, 64)] {
            let ptr = unsafe { arena.alloc(layout(size, align)) };
            assert!(in_region(&arena, ptr));
            assert!((ptr as usize).is_multiple_of(align), "alignment {align}");
            unsafe { std::ptr::write_bytes(ptr, 0xAB, size) };
            blocks.push((ptr as usize, size));
        }
        blocks.sort();
        for pair in blocks.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:?} overlap");
        }
    }

    #[test]
    fn only_the_last_block_is_taken_back() {
        let arena = Box::new(Arena::<1024>::new());
        let a = unsafe { arena.alloc(layout(100, 8)) };
        let b = unsafe { arena.alloc(layout(100, 8)) };
        let after_b = arena.used();
        unsafe { arena.dealloc(a, layout(100, 8)) };
        assert_eq!(arena.used(), after_b, "a block in the middle stays");
        unsafe { arena.dealloc(b, layout(100, 8)) };
        assert_eq!(arena.used(), after_b - 100);
        let c = unsafe { arena.alloc(layout(100, 8)) };
        assert_eq!(c, b, "the freed end is handed out again");
    }

    #[test]
    fn the_last_block_grows_in_place_and_others_move_with_their_bytes() {
        let arena = Box::new(Arena::<1024>::new());
        let a = unsafe { arena.alloc(layout(16, 8)) };
        unsafe { std::ptr::copy_nonoverlapping(b"0123456789abcdef".as_ptr(), a, 16) };
        let grown = unsafe { arena.realloc(a, layout(16, 8), 64) };
        assert_eq!(grown, a);
        assert_eq!(arena.used(), 64);
        let _b = unsafe { arena.alloc(layout(8, 8)) };
        let moved = unsafe { arena.realloc(a, layout(64, 8), 128) };
        assert_ne!(moved, a);
        let bytes = unsafe { std::slice::from_raw_parts(moved, 16) };
        assert_eq!(bytes, b"0123456789abcdef");
    }

    #[test]
    fn past_the_region_blocks_come_from_the_system_allocator() {
        let arena = Box::new(Arena::<256>::new());
        let a = unsafe { arena.alloc(layout(200, 8)) };
        assert!(in_region(&arena, a));
        let big = unsafe { arena.alloc(layout(100, 8)) };
        assert!(!big.is_null() && !in_region(&arena, big));
        unsafe { std::ptr::write_bytes(big, 1, 100) };
        // Growing the last region block past the end moves it out too.
        let moved = unsafe { arena.realloc(a, layout(200, 8), 400) };
        assert!(!moved.is_null() && !in_region(&arena, moved));
        assert_eq!(arena.used(), 0, "the region block was the last one and is back");
        unsafe {
            arena.dealloc(big, layout(100, 8));
            arena.dealloc(moved, layout(400, 8));
        }
    }

    #[test]
    fn system_blocks_are_resized_by_the_system_allocator() {
        let arena = Box::new(Arena::<64>::new());
        let a = unsafe { arena.alloc(layout(100, 8)) };
        assert!(!in_region(&arena, a));
        unsafe { std::ptr::write_bytes(a, 7, 100) };
        let grown = unsafe { arena.realloc(a, layout(100, 8), 5000) };
        let shrunk = unsafe { arena.realloc(grown, layout(5000, 8), 10) };
        let bytes = unsafe { std::slice::from_raw_parts(shrunk, 10) };
        assert_eq!(bytes, [7; 10]);
        assert_eq!(arena.used(), 0);
        unsafe { arena.dealloc(shrunk, layout(10, 8)) };
    }

    #[test]
    fn alignment_larger_than_the_region_falls_through() {
        let arena = Box::new(Arena::<64>::new());
        let ptr = unsafe { arena.alloc(layout(64, 8192)) };
        assert!(!ptr.is_null() && (ptr as usize).is_multiple_of(8192));
        unsafe { arena.dealloc(ptr, layout(64, 8192)) };
    }
}
