//! Counts heap allocations on the append and read paths with a counting global allocator.
#![allow(clippy::unwrap_used)]
// tests fail loudly by design

// The one exception to the workspace ban on `unsafe`: a GlobalAlloc impl must be unsafe.
// It only forwards to the system allocator and counts.
#![allow(unsafe_code)]
//! Target: zero per operation, amortized over 10,000 operations (buffer growth is allowed).

use bytes::BytesMut;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir_log::{BatchBuilder, FsStorage, Log, LogConfig, SystemClock, ValidatedBatch};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    // Only the measuring thread counts: the test harness's own threads allocate too.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

const OPS: u64 = 10_000;

#[test]
fn append_and_read_allocate_nothing_per_operation() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms: None, ..LogConfig::default() };
    let log = Log::open(dir.path(), config, Arc::new(FsStorage), Arc::new(SystemClock)).unwrap();
    let mut b = BatchBuilder::new();
    for i in 0..10u32 {
        b.push(1_700_000_000_000, Some(&i.to_be_bytes()), Some(&[7u8; 100]));
    }
    let batch = b.build();
    let validated = [ValidatedBatch::new(&batch, 1 << 20).unwrap()];
    // Warm up: buffers reach their steady size.
    for _ in 0..10 {
        log.append(&validated).unwrap();
    }
    let (_, appends) = count(|| {
        for _ in 0..OPS {
            log.append(&validated).unwrap();
        }
    });
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let end = log.log_end_offset();
    let (_, reads) = count(|| {
        for i in 0..OPS {
            buf.clear();
            let info = log.read((i * 37) % end, 16 * 1024, &mut buf).unwrap();
            assert!(info.bytes > 0);
        }
    });
    let (_, validations) = count(|| {
        for _ in 0..OPS {
            std::hint::black_box(ValidatedBatch::new(&batch, 1 << 20).unwrap());
        }
    });
    println!(
        "allocations per op over {OPS}: append {:.4} ({appends} total), read {:.4} ({reads} total), validate {:.4}",
        appends as f64 / OPS as f64,
        reads as f64 / OPS as f64,
        validations as f64 / OPS as f64
    );
    // Growth of the in-memory index (a doubling Vec) is the only allowed allocation.
    assert!(appends < 40, "append allocated {appends} times in {OPS} operations");
    assert_eq!(reads, 0, "read allocated {reads} times in {OPS} operations");
    assert_eq!(validations, 0);
}
