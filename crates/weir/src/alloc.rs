//! The process's allocator: mimalloc for small blocks, the system allocator for large ones.
//!
//! Pipelines allocate and free small JSON values per event, and glibc's malloc/free were a
//! third of a pass-through pipeline's time; mimalloc makes them about twice as cheap
//! (docs/PERFORMANCE.md). Large blocks (request frames up to --max-frame-bytes, fetch
//! buffers) stay with glibc, whose mmap threshold is fixed at 1 MiB in `main` so that a freed
//! frame goes back to the OS at once and the in-flight byte bound bounds memory
//! (tests/e2e/test_hostile.py measures the flood case).
//!
//! Which allocator owns a block follows from its size alone, and Rust hands `dealloc` the
//! layout the block was allocated with, so a block is always freed by the allocator that
//! allocated it; a `realloc` across the threshold moves the block.
//!
//! One of the workspace's few `unsafe` exceptions: a `GlobalAlloc` impl must be unsafe. It
//! only forwards.
#![allow(unsafe_code)]

use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes go to the system allocator.
const LARGE: usize = 1 << 20;

pub struct Split;

unsafe impl GlobalAlloc for Split {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            if layout.size() >= LARGE {
                System.alloc(layout)
            } else {
                MiMalloc.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe {
            if layout.size() >= LARGE {
                System.alloc_zeroed(layout)
            } else {
                MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `layout` is the one the block was allocated with, so its size picks the
        // allocator that allocated it.
        unsafe {
            if layout.size() >= LARGE {
                System.dealloc(ptr, layout)
            } else {
                MiMalloc.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was_large, is_large) = (layout.size() >= LARGE, new_size >= LARGE);
        // SAFETY: forwarded with the caller's guarantees; across the threshold the block is
        // copied into a new one of the other allocator and the old one freed by its own.
        unsafe {
            match (was_large, is_large) {
                (true, true) => System.realloc(ptr, layout, new_size),
                (false, false) => MiMalloc.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}
