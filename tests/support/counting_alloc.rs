//! A counting global allocator for allocation tests, shared by the crates' test binaries with
//! `#[path = ".../tests/support/counting_alloc.rs"] mod counting_alloc;`. Only the thread
//! that calls `count` is counted, into a counter of its own: test harness threads allocate
//! too, and the harness runs other tests (which may call `count` as well) in parallel threads.
//!
//! The one exception to the workspace ban on `unsafe`: a GlobalAlloc impl must be unsafe. It
//! only forwards to the system allocator and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    /// Allocations of this thread while `count` runs on it; `None` when not counting.
    /// A const-initialised `Cell` of a `Copy` type: no lazy init and no destructor, so the
    /// allocator can touch it at any point of the thread's life without allocating itself.
    static ALLOCATIONS: Cell<Option<u64>> = const { Cell::new(None) };
}

fn note_allocation() {
    // `try_with`: during thread teardown the slot may be gone; such allocations are not counted.
    let _ = ALLOCATIONS.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns it with the number of allocations (and reallocations) it made on
/// this thread. Calls on other threads, at the same time, count separately.
pub fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let outer = ALLOCATIONS.with(|c| c.replace(Some(0)));
    let r = f();
    let n = ALLOCATIONS.with(|c| c.replace(outer)).unwrap_or(0);
    // A nested `count` adds its allocations to the enclosing one.
    if let Some(o) = outer {
        ALLOCATIONS.with(|c| c.set(Some(o + n)));
    }
    (r, n)
}

/// Checks the counter itself: another thread's allocations, made while this thread counts, are
/// not this thread's. Test binaries that include this file call it from a `#[test]`.
#[allow(dead_code)] // not every test binary runs it
pub fn self_test() {
    let ready = std::sync::Barrier::new(2);
    let done = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            ready.wait();
            for i in 0..1000 {
                std::hint::black_box(vec![i; 16]);
            }
            done.wait();
        });
        let (_, n) = count(|| {
            ready.wait();
            done.wait();
        });
        assert_eq!(n, 0, "another thread's allocations were counted");
        let (_, n) = count(|| std::hint::black_box(Box::new(1u64)));
        assert_eq!(n, 1, "this thread's allocation was not counted");
    });
}
