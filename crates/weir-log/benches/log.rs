//! Storage-engine benchmarks: append (policy never / always), read from page cache, offset
//! lookup; plus a probe of this disk's sequential write bandwidth with fdatasync, so durable
//! throughput can be reported as a ratio of it. See docs/PERFORMANCE.md.
//!
//! Set WEIR_BENCH_DIR to benchmark on a specific filesystem (default: the system temp dir).
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_log::{BatchBuilder, Durability, FsStorage, Log, LogConfig, SystemClock, ValidatedBatch};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("WEIR_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("bench dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn batch(records: usize, size: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    let value = vec![b'v'; size];
    for i in 0..records {
        b.push(1_700_000_000_000 + i as i64, Some(format!("key-{i}").as_bytes()), Some(&value));
    }
    b.build()
}

fn open(dir: &std::path::Path, durability: Durability) -> Log {
    let config = LogConfig { durability, segment_ms: None, ..LogConfig::default() };
    Log::open(dir, config, Arc::new(FsStorage), Arc::new(SystemClock)).expect("open")
}

/// Sequential 1 MiB writes with one fdatasync at the end, and the latency of an fdatasync
/// after a 4 KiB write: the disk's raw limits, measured the same way every run.
fn disk_probe() {
    let dir = bench_dir();
    let path = dir.path().join("probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let chunk = vec![0xa5u8; 1 << 20];
    let total = 256;
    let t = Instant::now();
    for _ in 0..total {
        f.write_all(&chunk).expect("write");
    }
    f.sync_data().expect("fdatasync");
    let secs = t.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for _ in 0..50 {
        f.write_all(&chunk[..4096]).expect("write");
        let t = Instant::now();
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "disk probe: sequential write + fdatasync {:.0} MB/s ({} MiB in {:.2}s); fdatasync after 4 KiB: p50 {:?} p99 {:?}",
        total as f64 * 1.048576 / secs,
        total,
        secs,
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
}

/// memcpy bandwidth: 256 MiB copied between two buffers (beyond any cache), best of 10.
fn memcpy_probe() {
    let src = vec![0x5au8; 256 << 20];
    let mut dst = vec![0u8; 256 << 20];
    let mut best = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("memcpy probe: {:.1} GB/s (256 MiB, best of 10)", 256.0 * 1.048576 / 1000.0 / best);
}

/// Appends `iters` batches into a fresh log with `writers` threads, each waiting for
/// durability when `durability` is Always; returns the time spent appending. The log is
/// deleted afterwards so dirty pages never pile up across samples (bursts fit in memory).
fn timed_appends(bytes: &[u8], iters: u64, durability: Durability, writers: u64) -> Duration {
    let dir = bench_dir();
    let log = open(dir.path(), durability);
    let per_writer = iters.div_ceil(writers);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            let log = &log;
            s.spawn(move || {
                let v = [ValidatedBatch::new(bytes, 1 << 22).expect("valid")];
                for _ in 0..per_writer {
                    let info = log.append(&v).expect("append");
                    if durability == Durability::Always {
                        log.sync_to(info.log_end_offset).expect("sync");
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    drop(log);
    drop(dir);
    elapsed.mul_f64(iters as f64 / (per_writer * writers) as f64)
}

fn appends(c: &mut Criterion) {
    memcpy_probe();
    disk_probe();
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for (records, size) in [(1000usize, 100usize), (100, 1024)] {
        let bytes = batch(records, size);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        for (name, durability, writers) in [
            ("never", Durability::Never, 1),
            ("always", Durability::Always, 1),
            ("always-4-writers", Durability::Always, 4),
            ("always-16-writers", Durability::Always, 16),
        ] {
            g.bench_function(format!("{records}x{size}B/{name}"), |b| {
                b.iter_custom(|iters| timed_appends(&bytes, iters, durability, writers))
            });
        }
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    let dir = bench_dir();
    let log = open(dir.path(), Durability::Never);
    let bytes = batch(100, 1024);
    let v = [ValidatedBatch::new(&bytes, 1 << 22).expect("valid")];
    for _ in 0..2000 {
        log.append(&v).expect("append");
    }
    let end = log.log_end_offset();
    let mut g = c.benchmark_group("read");
    g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let mut buf = BytesMut::with_capacity(2 << 20);
    let mut offset = 0u64;
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("sequential-1MiB-page-cache", |b| {
        b.iter(|| {
            buf.clear();
            let info = log.read(offset, 1 << 20, &mut buf).expect("read");
            offset = (offset + 1000) % (end - 1000);
            info.bytes
        })
    });
    g.throughput(Throughput::Elements(1));
    // Small batches: the cost is the index search, a header walk and one small pread.
    let small_dir = bench_dir();
    let small = open(small_dir.path(), Durability::Never);
    let one = batch(1, 100);
    let v1 = [ValidatedBatch::new(&one, 1 << 22).expect("valid")];
    for _ in 0..200_000 {
        small.append(&v1).expect("append");
    }
    let end = small.log_end_offset();
    let log = small;
    let mut i = 0u64;
    g.bench_function("offset-lookup-200k-batches", |b| {
        b.iter(|| {
            buf.clear();
            i = (i + 7919) % end;
            log.read(i, 1, &mut buf).expect("read").bytes
        })
    });
    g.finish();
}

criterion_group!(benches, appends, reads);
criterion_main!(benches);
