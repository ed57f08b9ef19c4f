//! Counts heap allocations on the append and read paths with a counting global allocator.
//! Target: zero per operation, amortized over 10,000 operations (buffer growth is allowed).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::BytesMut;
use std::sync::Arc;
use weir_log::{BatchBuilder, FsStorage, Log, LogConfig, SystemClock, ValidatedBatch};

#[path = "../../../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{count, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

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
