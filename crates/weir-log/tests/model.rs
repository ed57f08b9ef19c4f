//! Retention and compaction checked against a plain in-memory model with proptest.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use common::*;
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;
use weir_log::fault::MemStorage;
use weir_log::{BatchBuilder, CleanupPolicy, Log, LogConfig, ManualClock, ValidatedBatch};

#[derive(Debug, Clone)]
enum Op {
    /// One batch: (key, value or tombstone) records, all stamped with the clock's time.
    Append(Vec<(u8, Option<u8>)>),
    Roll,
    Advance(u16),
    Retention,
    /// Delete records before this fraction (in 1/8ths) of the way from start to end.
    DeleteRecords(u8),
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec((0u8..6, prop::option::weighted(0.8, 0u8..255)), 1..4).prop_map(Op::Append),
        1 => Just(Op::Roll),
        2 => any::<u16>().prop_map(Op::Advance),
        1 => Just(Op::Retention),
        1 => (0u8..9).prop_map(Op::DeleteRecords),
        2 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct M {
    offset: u64,
    ts: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

fn value_bytes(v: u8) -> Vec<u8> {
    let mut b = vec![v; 1 + (v as usize % 90)];
    b[0] = v;
    b
}

fn config(policy: CleanupPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        segment_ms: None,
        retention_ms: Some(20_000),
        retention_bytes: Some(2500),
        cleanup_policy: policy,
        delete_retention_ms: 30_000,
        // The model compacts at every pass (the dirty ratio has its own test).
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    }
}

fn visible(model: &[M], log_start: u64) -> Vec<Rec> {
    model
        .iter()
        .filter(|m| m.offset >= log_start)
        .map(|m| Rec { offset: m.offset, timestamp: m.ts, key: Some(m.key.clone()), value: m.value.clone() })
        .collect()
}

fn run(ops: Vec<Op>, policy: CleanupPolicy) -> Result<(), TestCaseError> {
    let storage = Arc::new(MemStorage::new());
    let clock = Arc::new(ManualClock::new(1_000_000));
    let dir = Path::new("/mem/model");
    let cfg = config(policy);
    let mut log = Log::open(dir, cfg, storage.clone(), clock.clone()).unwrap();
    let mut model: Vec<M> = Vec::new();
    let mut next = 0u64;
    for op in ops {
        match op {
            Op::Append(records) => {
                let now = clock_now(&clock);
                let mut b = BatchBuilder::new();
                for (k, v) in &records {
                    let value = v.map(value_bytes);
                    b.push(now, Some(&[*k]), value.as_deref());
                    model.push(M { offset: next, ts: now, key: vec![*k], value });
                    next += 1;
                }
                let bytes = b.build();
                log.append(&[ValidatedBatch::new(&bytes, 1 << 20).unwrap()]).unwrap();
            }
            Op::Roll => log.roll_now().unwrap(),
            Op::Advance(ms) => clock.advance(i64::from(ms)),
            Op::Retention => {
                let before = log.segments();
                let end = log.log_end_offset();
                let stats = log.enforce_retention().unwrap();
                let after = log.segments();
                prop_assert_eq!(log.log_end_offset(), end, "retention never touches the active segment");
                prop_assert_eq!(before.len() - after.len(), stats.segments_deleted);
                prop_assert_eq!(&before[stats.segments_deleted..], &after[..], "only a prefix of segments goes");
                let now = clock_now(&clock);
                if policy.deletes() && after.len() > 1 {
                    // The first remaining closed segment had to stay under every rule.
                    let first = after[0];
                    let total: u64 = after.iter().map(|s| s.size_bytes).sum();
                    prop_assert!(total - first.size_bytes < 2500, "retention.bytes: could have deleted more");
                    prop_assert!(first.size_bytes > 0, "empty closed segments go");
                    prop_assert!(first.max_timestamp >= now - 20_000, "retention.ms: an expired segment was kept");
                }
                // Every deleted segment was deletable by some rule when it went.
                let mut remaining: u64 = before.iter().map(|s| s.size_bytes).sum();
                for s in &before[..stats.segments_deleted] {
                    let by_time = s.size_bytes == 0 || s.max_timestamp < now - 20_000;
                    let by_size = remaining - s.size_bytes >= 2500;
                    prop_assert!(policy.deletes() && (by_time || by_size) || s.next_offset <= log.log_start_offset());
                    remaining -= s.size_bytes;
                }
            }
            Op::DeleteRecords(eighths) => {
                let (start, end) = (log.log_start_offset(), log.log_end_offset());
                let target = start + (end - start) * u64::from(eighths) / 8;
                prop_assert_eq!(log.delete_records_before(target).unwrap(), target.max(start));
            }
            Op::Compact => {
                let active_base = log.segments().last().unwrap().base_offset;
                let horizon = clock_now(&clock) - 30_000;
                log.compact().unwrap();
                if policy.compacts() {
                    let latest = |k: &[u8]| {
                        model.iter().filter(|m| m.offset < active_base && m.key == k).map(|m| m.offset).max()
                    };
                    let keep: Vec<bool> = model
                        .iter()
                        .map(|m| {
                            m.offset >= active_base
                                || (latest(&m.key) == Some(m.offset) && !(m.value.is_none() && m.ts < horizon))
                        })
                        .collect();
                    let mut it = keep.into_iter();
                    model.retain(|_| it.next().unwrap_or(true));
                }
            }
            Op::Reopen => {
                log.close().unwrap();
                drop(log);
                log = Log::open(dir, cfg, storage.clone(), clock.clone()).unwrap();
            }
        }
        let start = log.log_start_offset();
        model.retain(|m| m.offset >= start);
        prop_assert_eq!(log.log_end_offset(), next);
        prop_assert_eq!(read_all(&log), visible(&model, start));
    }
    Ok(())
}

fn clock_now(c: &ManualClock) -> i64 {
    use weir_log::Clock;
    c.now_ms()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn retention_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops, CleanupPolicy::Delete)?;
    }

    #[test]
    fn compaction_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops, CleanupPolicy::Compact)?;
    }

    #[test]
    fn compact_delete_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops, CleanupPolicy::CompactDelete)?;
    }
}
