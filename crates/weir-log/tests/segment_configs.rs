//! The storage side of Kafka's topic configs, each shown changing behaviour:
//! min.cleanable.dirty.ratio, max.compaction.lag.ms, segment.index.bytes, segment.jitter.ms,
//! file.delete.delay.ms, index.interval.bytes.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{append, manual_clock, open, read_all, simple_batch};
use std::path::Path;
use std::sync::Arc;
use weir_log::fault::MemStorage;
use weir_log::{BatchBuilder, CleanupPolicy, Clock, LogConfig, Storage};

fn compacted() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        segment_ms: None,
        retention_ms: None,
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

/// One batch of `n` records with keys `k0..k{n}` and `size`-byte values.
fn keyed(n: usize, size: usize, ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    let value = vec![b'v'; size];
    for i in 0..n {
        b.push(ts, Some(format!("k{i}").as_bytes()), Some(&value));
    }
    b.build()
}

#[test]
fn compaction_waits_until_the_dirty_part_reaches_min_cleanable_dirty_ratio() {
    let clock = manual_clock();
    let config = LogConfig { min_cleanable_dirty_ratio: 0.5, ..compacted() };
    let log = open(Path::new("/mem/ratio"), config, Arc::new(MemStorage::new()), clock.clone());
    // Segment 1: 100 distinct keys, then an update of all of them: half of it is superseded.
    append(&log, &keyed(100, 100, clock.now_ms()));
    append(&log, &keyed(100, 100, clock.now_ms()));
    log.roll_now().unwrap();
    let first = log.compact().unwrap();
    assert!(first.ran && first.records_removed == 100, "never compacted: all dirty, ratio 1: {first:?}");
    let clean_bytes = log.stats().size_bytes;
    // A small dirty segment (10 updates): dirty/total far below 0.5, so nothing happens.
    append(&log, &keyed(10, 100, clock.now_ms()));
    log.roll_now().unwrap();
    let skipped = log.compact().unwrap();
    assert!(!skipped.ran && skipped.records_removed == 0, "below the ratio: {skipped:?}");
    // More dirty data than clean: the pass runs and removes the superseded records.
    while log.stats().size_bytes - clean_bytes <= clean_bytes {
        append(&log, &keyed(100, 100, clock.now_ms()));
        log.roll_now().unwrap();
    }
    let ran = log.compact().unwrap();
    assert!(ran.ran && ran.records_removed > 0, "at or above the ratio: {ran:?}");
    // The same log with ratio 0 compacts at every pass (Weir's behaviour before the ratio).
    log.set_config(LogConfig { min_cleanable_dirty_ratio: 0.0, ..config }).unwrap();
    append(&log, &keyed(1, 100, clock.now_ms()));
    log.roll_now().unwrap();
    assert!(log.compact().unwrap().ran);
    assert_eq!(read_all(&log).len(), 100, "one record per key is left");
}

#[test]
fn a_dirty_segment_older_than_max_compaction_lag_is_compacted_whatever_the_ratio() {
    let clock = manual_clock();
    let config = LogConfig { min_cleanable_dirty_ratio: 0.99, max_compaction_lag_ms: 60_000, ..compacted() };
    let log = open(Path::new("/mem/maxlag"), config, Arc::new(MemStorage::new()), clock.clone());
    append(&log, &keyed(100, 100, clock.now_ms()));
    log.roll_now().unwrap();
    assert!(log.compact().unwrap().ran, "first pass: everything dirty");
    append(&log, &keyed(5, 100, clock.now_ms()));
    log.roll_now().unwrap();
    assert!(!log.compact().unwrap().ran, "5 dirty records of 105: below the ratio");
    clock.advance(60_001);
    let stats = log.compact().unwrap();
    assert!(stats.ran && stats.records_removed == 5, "the dirty segment is overdue: {stats:?}");
}

#[test]
fn max_compaction_lag_bounds_the_age_of_the_active_segment_of_a_compacted_log() {
    let clock = manual_clock();
    let storage = Arc::new(MemStorage::new());
    let config = LogConfig { segment_ms: Some(3_600_000), max_compaction_lag_ms: 10_000, ..compacted() };
    let log = open(Path::new("/mem/lagroll"), config, storage.clone(), clock.clone());
    append(&log, &keyed(1, 10, clock.now_ms()));
    assert_eq!(log.next_due_ms(), Some(clock.now_ms() + 10_000), "rolls at the lag, not at segment.ms");
    clock.advance(10_000);
    log.flush_if_due().unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1]);
    // A log that only deletes keeps segment.ms.
    let deleting = LogConfig { cleanup_policy: CleanupPolicy::Delete, ..config };
    let log = open(Path::new("/mem/lagroll-delete"), deleting, storage, clock.clone());
    append(&log, &keyed(1, 10, clock.now_ms()));
    assert_eq!(log.next_due_ms(), Some(clock.now_ms() + 3_600_000));
}

#[test]
fn the_active_segment_rolls_when_its_index_reaches_segment_index_bytes() {
    let clock = manual_clock();
    // One index entry per batch (interval 1 byte); room for 3 offset-index entries (24 bytes;
    // the time index, 12 bytes each, holds 2 when timestamps grow, so keep them equal).
    let config = LogConfig { segment_index_bytes: 24, index_interval_bytes: 1, ..compacted() };
    let storage = Arc::new(MemStorage::new());
    let log = open(Path::new("/mem/index"), config, storage.clone(), clock.clone());
    for i in 0..10 {
        append(&log, &simple_batch(1, 10, 1, i));
    }
    // The first batch of a segment needs no entry: 4 batches fill 3 entries, then it rolls.
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 8]);
    // Kafka's default (10 MiB) never rolls such a small log.
    let log =
        open(Path::new("/mem/index-default"), LogConfig { index_interval_bytes: 1, ..compacted() }, storage, clock);
    for i in 0..10 {
        append(&log, &simple_batch(1, 10, 1, i));
    }
    assert_eq!(log.segment_base_offsets(), vec![0]);
}

#[test]
fn segment_jitter_moves_the_roll_earlier_by_a_stable_amount_per_partition() {
    let clock = manual_clock();
    let storage = Arc::new(MemStorage::new());
    let config = LogConfig { segment_ms: Some(100_000), segment_jitter_ms: 50_000, ..compacted() };
    let start = clock.now_ms();
    let due = |name: &str| {
        let log = open(&Path::new("/mem/jitter").join(name), config, storage.clone(), clock.clone());
        append(&log, &simple_batch(1, 10, 1, 1));
        let due = log.next_due_ms().unwrap();
        log.close().unwrap();
        due
    };
    let dues: Vec<i64> = (0..8).map(|p| due(&p.to_string())).collect();
    for d in &dues {
        assert!((start + 50_001..=start + 100_000).contains(d), "jitter is below segment.jitter.ms: {d}");
    }
    let mut distinct = dues.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > 4, "partitions spread their rolls: {dues:?}");
    // Deterministic: the same partition reopened has the same due time.
    let reopened = open(&Path::new("/mem/jitter").join("0"), config, storage.clone(), clock.clone());
    append(&reopened, &simple_batch(1, 10, 1, 2));
    assert_eq!(reopened.next_due_ms(), Some(dues[0]));
    // Without jitter the roll is exactly segment.ms after the first append.
    let plain = LogConfig { segment_jitter_ms: 0, ..config };
    let log = open(Path::new("/mem/jitter-none"), plain, storage, clock.clone());
    append(&log, &simple_batch(1, 10, 1, 1));
    assert_eq!(log.next_due_ms(), Some(start + 100_000));
    // The roll really happens at the jittered time.
    let log = open(&Path::new("/mem/jitter").join("roll"), config, Arc::new(MemStorage::new()), clock.clone());
    append(&log, &simple_batch(1, 10, 1, 1));
    let due = log.next_due_ms().unwrap();
    clock.advance(due - clock.now_ms() - 1);
    log.flush_if_due().unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0]);
    clock.advance(1);
    log.flush_if_due().unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 1]);
}

#[test]
fn deleted_segments_are_renamed_and_removed_after_file_delete_delay() {
    let clock = manual_clock();
    let storage = Arc::new(MemStorage::new());
    let dir = Path::new("/mem/delay");
    let config = LogConfig { file_delete_delay_ms: 60_000, retention_ms: Some(1000), ..compacted() };
    let config = LogConfig { cleanup_policy: CleanupPolicy::Delete, ..config };
    let log = open(dir, config, storage.clone(), clock.clone());
    append(&log, &simple_batch(5, 50, clock.now_ms(), 1));
    log.roll_now().unwrap();
    append(&log, &simple_batch(5, 50, clock.now_ms(), 2));
    clock.advance(2000);
    assert_eq!(log.enforce_retention().unwrap().segments_deleted, 1);
    let names = storage.list(dir).unwrap();
    assert!(names.contains(&"00000000000000000000.log.deleted".to_owned()), "{names:?}");
    assert!(!names.contains(&"00000000000000000000.log".to_owned()), "{names:?}");
    assert_eq!(log.pending_deleted_files(), 3, "log, index and time index");
    clock.advance(59_000);
    log.enforce_retention().unwrap();
    assert!(storage.list(dir).unwrap().iter().any(|n| n.ends_with(".deleted")), "not yet");
    clock.advance(1_000);
    log.enforce_retention().unwrap();
    let names = storage.list(dir).unwrap();
    assert!(!names.iter().any(|n| n.ends_with(".deleted")), "removed after the delay: {names:?}");
    assert_eq!(log.pending_deleted_files(), 0);
    // A restart removes what is still waiting; delay 0 removes at once.
    log.delete_records_before(log.log_end_offset()).unwrap();
    append(&log, &simple_batch(1, 50, clock.now_ms(), 3));
    log.roll_now().unwrap();
    log.delete_records_before(log.log_end_offset()).unwrap();
    assert!(storage.list(dir).unwrap().iter().any(|n| n.ends_with(".deleted")));
    log.close().unwrap();
    drop(log);
    let now_config = LogConfig { file_delete_delay_ms: 0, ..config };
    let log = open(dir, now_config, storage.clone(), clock.clone());
    assert!(!storage.list(dir).unwrap().iter().any(|n| n.ends_with(".deleted")), "open removes them");
    append(&log, &simple_batch(1, 50, clock.now_ms(), 4));
    log.roll_now().unwrap();
    log.delete_records_before(log.log_end_offset()).unwrap();
    let names = storage.list(dir).unwrap();
    assert!(!names.iter().any(|n| n.ends_with(".deleted")) && names.len() <= 4, "{names:?}");
}

#[test]
fn index_interval_bytes_sets_the_density_of_the_offset_index() {
    let dir = tempfile::tempdir().unwrap();
    let entries = |interval: u32| {
        let sub = dir.path().join(interval.to_string());
        let config = LogConfig { index_interval_bytes: interval, ..compacted() };
        let log = open(&sub, config, Arc::new(weir_log::FsStorage), manual_clock());
        for i in 0..64 {
            append(&log, &simple_batch(1, 100, 1, i));
        }
        log.roll_now().unwrap();
        std::fs::metadata(sub.join(format!("{:020}.index", 0))).unwrap().len() / 8
    };
    let dense = entries(1);
    let sparse = entries(4096);
    assert_eq!(dense, 63, "an entry for every batch but the first");
    assert!(sparse < 5, "about one per 4 KiB: {sparse}");
}

#[test]
fn flush_messages_syncs_once_that_many_offsets_are_unsynced() {
    let clock = manual_clock();
    let config = LogConfig { flush_messages: Some(10), durability: weir_log::Durability::Never, ..compacted() };
    let log = open(Path::new("/mem/flush"), config, Arc::new(MemStorage::new()), clock);
    append(&log, &simple_batch(5, 10, 1, 1));
    assert_eq!(log.durable_offset(), 0, "5 unsynced offsets: below flush.messages");
    append(&log, &simple_batch(4, 10, 1, 2));
    assert_eq!(log.durable_offset(), 0);
    append(&log, &simple_batch(1, 10, 1, 3));
    assert_eq!(log.durable_offset(), 10, "the 10th offset syncs in its append");
    append(&log, &simple_batch(3, 10, 1, 4));
    assert_eq!(log.durable_offset(), 10);
}
