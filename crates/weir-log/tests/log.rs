//! Behaviour of the log against the real filesystem and the fault-injecting storage.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;
use bytes::BytesMut;
use common::*;
use std::sync::Arc;
use weir_log::fault::MemStorage;
use weir_log::{BatchError, Durability, FsStorage, LogConfig, LogError, SystemClock, ValidatedBatch};

fn fs() -> Arc<FsStorage> {
    Arc::new(FsStorage)
}

#[test]
fn append_assigns_offsets_and_reads_back_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
    let mut expected = Vec::new();
    for i in 0..200u64 {
        let b = simple_batch(3, 20, 1000 + i as i64, i);
        let info = append(&log, &b);
        assert_eq!(info.base_offset, i * 3);
        assert_eq!(info.last_offset, i * 3 + 2);
        expected.push(i * 3);
    }
    assert!(log.segment_base_offsets().len() > 3, "small segments roll");
    let recs = read_all(&log);
    assert_eq!(recs.len(), 600);
    assert!(recs.iter().enumerate().all(|(i, r)| r.offset == i as u64));
    // A read from the middle of a batch starts with that batch.
    let mut buf = BytesMut::new();
    log.read(301, 1, &mut buf).unwrap();
    let h = weir_log::BatchHeader::parse(&buf).unwrap();
    assert_eq!(h.base_offset, 300);
    assert_eq!(buf.len(), h.total_len(), "at least one whole batch even past max_bytes");
    // Out of range.
    assert!(matches!(log.read(601, 100, &mut buf), Err(LogError::OffsetOutOfRange { .. })));
    buf.clear();
    assert_eq!(log.read(600, 100, &mut buf).unwrap().bytes, 0);
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
    assert_eq!(read_all(&log), recs, "reopen keeps everything");
    assert_eq!(append(&log, &simple_batch(1, 5, 0, 9)).base_offset, 600);
}

#[test]
fn invalid_batches_are_rejected_with_typed_errors() {
    let good = simple_batch(2, 10, 5, 0);
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    assert!(matches!(ValidatedBatch::new(&bad_crc, 1 << 20), Err(BatchError::CrcMismatch { .. })));
    let mut bad_magic = good.clone();
    bad_magic[16] = 1;
    assert!(matches!(ValidatedBatch::new(&bad_magic, 1 << 20), Err(BatchError::BadMagic { magic: 1 })));
    assert!(matches!(ValidatedBatch::new(&good[..40], 1 << 20), Err(BatchError::TooShort { .. })));
    assert!(matches!(ValidatedBatch::new(&good[..good.len() - 1], 1 << 20), Err(BatchError::TooShort { .. })));
    assert!(matches!(ValidatedBatch::new(&good, 50), Err(BatchError::TooLarge { .. })));
    let mut bad_count = good.clone();
    bad_count[60] = 7; // recordsCount = 7 but lastOffsetDelta = 1 (CRC then also differs)
    let crc = weir_log::batch::compute_crc(&bad_count);
    bad_count[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(ValidatedBatch::new(&bad_count, 1 << 20), Err(BatchError::BadCount { .. })));
    let mut two = good.clone();
    two.extend_from_slice(&good);
    assert!(matches!(ValidatedBatch::new(&two, 1 << 20), Err(BatchError::TrailingBytes { .. })));
}

#[test]
fn torn_tail_at_every_byte_of_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms: None, ..LogConfig::default() };
    let log = open(dir.path(), config, fs(), Arc::new(SystemClock));
    for i in 0..5 {
        append(&log, &simple_batch(4, 30, 100, i));
    }
    let before = log.log_end_offset();
    let last = simple_batch(3, 40, 200, 99);
    append(&log, &last);
    log.close().unwrap();
    drop(log);
    let seg = dir.path().join(format!("{:020}.log", 0));
    let full = std::fs::read(&seg).unwrap();
    let start = full.len() - last.len();
    let cp = std::fs::read(dir.path().join("checkpoint")).unwrap();
    for cut in start..full.len() {
        std::fs::write(&seg, &full[..cut]).unwrap();
        // The checkpoint claims more than survived: a torn write after a lost sync.
        std::fs::write(dir.path().join("checkpoint"), &cp).unwrap();
        let log = open(dir.path(), config, fs(), Arc::new(SystemClock));
        assert_eq!(log.log_end_offset(), before, "cut at byte {cut}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, start);
        assert_eq!(read_all(&log).len() as u64, before);
        let info = append(&log, &simple_batch(2, 10, 300, 7));
        assert_eq!(info.base_offset, before);
        drop(log);
    }
}

#[test]
fn bit_flips_in_closed_segments_are_detected_and_never_served() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..150 {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
        for i in 0..60 {
            append(&log, &simple_batch(2, 50, 1000 + i, i as u64));
        }
        let good = read_all(&log);
        log.close().unwrap();
        let bases = log.segment_base_offsets();
        drop(log);
        let victim = bases[rng.gen_range(0..bases.len() - 1)];
        let path = dir.path().join(format!("{victim:020}.log"));
        let mut bytes = std::fs::read(&path).unwrap();
        let pos = rng.gen_range(0..bytes.len());
        bytes[pos] ^= 1 << rng.gen_range(0..8);
        std::fs::write(&path, &bytes).unwrap();

        // On read: either an error naming this file, or data equal to the original.
        let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
        let mut offset = 0;
        let mut buf = BytesMut::new();
        let mut saw_error = false;
        while offset < log.log_end_offset() {
            buf.clear();
            match log.read(offset, 1 << 20, &mut buf) {
                Ok(info) if info.bytes > 0 => {
                    let mut p = 0;
                    while p < buf.len() {
                        let h = weir_log::batch::validate_stored(&buf[p..]).expect("served batches are valid");
                        offset = h.last_offset() as u64 + 1;
                        p += h.total_len();
                    }
                }
                Ok(_) => break,
                Err(LogError::Corrupt { path: p, position, .. }) => {
                    assert_eq!(p, path, "round {round}");
                    assert!(position as usize <= pos, "error position {position} is at or before the flip {pos}");
                    saw_error = true;
                    break;
                }
                Err(LogError::OffsetOutOfRange { .. }) => break,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(saw_error, "round {round}: flip at byte {pos} of {} not detected on read", path.display());
        drop(log);

        // On recovery with verification: an error naming the file and position.
        let config = LogConfig { verify_on_open: true, ..small_segments() };
        match weir_log::Log::open(dir.path(), config, fs(), Arc::new(SystemClock)) {
            Err(LogError::Corrupt { path: p, position, .. }) => {
                assert_eq!(p, path);
                assert!(position as usize <= pos);
            }
            other => panic!("round {round}: expected corruption error, got {other:?}"),
        }
        drop(good);
    }
}

#[test]
fn damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
    for i in 0..120 {
        append(&log, &simple_batch(2, 40, 1000 + i * 10, i as u64));
    }
    let expected = read_all(&log);
    log.close().unwrap();
    let bases = log.segment_base_offsets();
    drop(log);
    let seg0 = bases[0];
    let idx = |b: u64, ext: &str| dir.path().join(format!("{b:020}.{ext}"));
    let original = std::fs::read(idx(seg0, "index")).unwrap();
    assert!(original.len() >= 16, "test needs several index entries");
    let damage: Vec<(&str, Box<dyn Fn()>)> = vec![
        ("deleted", Box::new(|| std::fs::remove_file(idx(seg0, "index")).unwrap())),
        ("short", Box::new(|| std::fs::write(idx(seg0, "index"), &original[..8]).unwrap())),
        ("torn entry", Box::new(|| std::fs::write(idx(seg0, "index"), &original[..original.len() - 3]).unwrap())),
        (
            "past the end",
            Box::new(|| {
                let mut b = original.clone();
                b.extend_from_slice(&u32::MAX.to_be_bytes());
                b.extend_from_slice(&0x7fff_0000u32.to_be_bytes());
                std::fs::write(idx(seg0, "index"), b).unwrap()
            }),
        ),
        (
            "wrong positions",
            Box::new(|| {
                let mut b = original.clone();
                let n = b.len();
                b[n - 1] = b[n - 1].wrapping_add(1);
                std::fs::write(idx(seg0, "index"), b).unwrap()
            }),
        ),
        ("time index deleted", Box::new(|| std::fs::remove_file(idx(seg0, "timeindex")).unwrap())),
        ("time index garbage", Box::new(|| std::fs::write(idx(seg0, "timeindex"), [0xffu8; 25]).unwrap())),
    ];
    for (name, f) in damage {
        f();
        let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
        assert_eq!(read_all(&log), expected, "{name}");
        for r in expected.iter().step_by(7) {
            let mut buf = BytesMut::new();
            log.read(r.offset, 1, &mut buf).unwrap();
            let h = weir_log::BatchHeader::parse(&buf).unwrap();
            assert!(h.base_offset as u64 <= r.offset && r.offset <= h.last_offset() as u64, "{name}");
            let (off, _) = log.offset_for_timestamp(r.timestamp).unwrap().unwrap();
            assert_eq!(off, expected.iter().find(|e| e.timestamp >= r.timestamp).unwrap().offset, "{name}");
        }
        assert_eq!(std::fs::read(idx(seg0, "index")).unwrap(), original, "{name}: rebuilt index equals the original");
        drop(log);
    }
}

#[test]
fn offset_for_timestamp_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
    // Timestamps not monotonic across batches.
    let mut all = Vec::new();
    for i in 0..150i64 {
        let ts = 10_000 + i * 7 - (i % 5) * 3;
        let b = batch_of(&[(ts, Some(b"a"), Some(b"1")), (ts + 2, Some(b"b"), Some(b"2"))]);
        append(&log, &b);
        all.push(ts);
        all.push(ts + 2);
    }
    for t in (9_990..11_200).step_by(13) {
        let want = all.iter().position(|&x| x >= t).map(|i| (i as u64, all[i]));
        assert_eq!(log.offset_for_timestamp(t).unwrap(), want, "t={t}");
    }
}

#[test]
fn disk_full_fails_cleanly_and_recovers_when_space_returns() {
    let storage = Arc::new(MemStorage::new());
    let dir = std::path::Path::new("/mem/full");
    let config = LogConfig { durability: Durability::Always, ..small_segments() };
    let log = open(dir, config, storage.clone(), manual_clock());
    for i in 0..10 {
        let info = append(&log, &simple_batch(2, 30, 1, i));
        log.sync_to(info.log_end_offset).unwrap();
    }
    let before = read_all(&log);
    let end = log.log_end_offset();
    for space in [0u64, 1, 60, 150] {
        storage.set_space_left(space);
        let b = simple_batch(3, 100, 2, 77);
        let err = log.append(&[ValidatedBatch::new(&b, 1 << 20).unwrap()]).unwrap_err();
        assert!(err.is_storage_full(), "space {space}: {err}");
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_all(&log), before, "no partial batch is visible");
        storage.unlimit_space();
    }
    let info = append(&log, &simple_batch(1, 10, 3, 5));
    assert_eq!(info.base_offset, end, "appends succeed after space returns");
    log.sync_to(info.log_end_offset).unwrap();
    // A crash now loses nothing acknowledged and shows no garbage.
    let image = Arc::new(storage.crash_image(|n| n));
    let reopened = open(dir, config, image, manual_clock());
    assert_eq!(reopened.log_end_offset(), end + 1);
}

#[test]
fn group_commit_covers_concurrent_appenders() {
    let storage = Arc::new(MemStorage::new());
    let config = LogConfig { durability: Durability::Always, ..LogConfig::default() };
    let log = Arc::new(open(std::path::Path::new("/mem/gc"), config, storage.clone(), manual_clock()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let info = append(&log, &simple_batch(1, 10, 1, t * 1000 + i));
                    log.sync_to(info.log_end_offset).unwrap();
                    assert!(log.durable_offset() >= info.log_end_offset);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.log_end_offset(), 800);
    let syncs = storage.sync_count();
    assert!(syncs <= 800 + 10, "{syncs} syncs for 800 appends");
}

#[test]
fn crash_consistency_at_random_points_with_policy_always() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let config = LogConfig {
        durability: Durability::Always,
        segment_bytes: 2048,
        index_interval_bytes: 128,
        segment_ms: None,
        ..LogConfig::default()
    };
    let dir = std::path::Path::new("/mem/crash");
    let mut crash_points = 0;
    let mut run = 0;
    while crash_points < 1000 {
        run += 1;
        let storage = Arc::new(MemStorage::new());
        let log = open(dir, config, storage.clone(), manual_clock());
        let ops = rng.gen_range(1..80);
        // Acknowledged (durable) records: offset -> value tag.
        let mut acked: Vec<(u64, u64)> = Vec::new();
        let mut images = Vec::new();
        for op in 0..ops {
            let tag = run * 1000 + op;
            let b = simple_batch(rng.gen_range(1..4), rng.gen_range(1..120), op as i64, tag);
            let info = append(&log, &b);
            if rng.gen_bool(0.7) {
                log.sync_to(info.log_end_offset).unwrap();
                for o in info.base_offset..=info.last_offset {
                    acked.push((o, tag));
                }
            }
            if rng.gen_bool(0.15) {
                let acked_now = acked.len();
                let image = storage.crash_image(|n| if n == 0 { 0 } else { rng.gen_range(0..=n) });
                images.push((image, acked_now));
            }
        }
        for (image, acked_now) in images {
            crash_points += 1;
            let reopened = open(dir, config, Arc::new(image), manual_clock());
            let recs = read_all(&reopened);
            for &(o, tag) in &acked[..acked_now] {
                let r = recs.get(o as usize).unwrap_or_else(|| panic!("run {run}: acked offset {o} lost"));
                assert_eq!(r.offset, o);
                assert!(r.value.as_ref().unwrap().starts_with(format!("{tag}-").as_bytes()));
            }
            for (i, r) in recs.iter().enumerate() {
                assert_eq!(r.offset, i as u64, "offsets dense after recovery");
            }
            let next = append(&reopened, &simple_batch(1, 5, 0, 0));
            assert_eq!(next.base_offset, recs.len() as u64);
        }
    }
}

#[test]
fn delete_records_moves_log_start_and_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
    for i in 0..100 {
        append(&log, &simple_batch(2, 40, 1, i));
    }
    let segs = log.segment_base_offsets().len();
    assert_eq!(log.delete_records_before(101).unwrap(), 101);
    assert!(log.segment_base_offsets().len() < segs);
    let recs = read_all(&log);
    assert_eq!(recs.first().unwrap().offset, 101);
    assert!(matches!(log.read(50, 10, &mut BytesMut::new()), Err(LogError::OffsetOutOfRange { .. })));
    assert!(log.delete_records_before(10_000).is_err());
    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), small_segments(), fs(), Arc::new(SystemClock));
    assert_eq!(log.log_start_offset(), 101, "log start survives restart");
}

#[test]
fn failed_sync_stops_appends_until_reopen() {
    let storage = Arc::new(MemStorage::new());
    let config = LogConfig { durability: Durability::Always, ..LogConfig::default() };
    let dir = std::path::Path::new("/mem/fsyncgate");
    let log = open(dir, config, storage.clone(), manual_clock());
    let info = append(&log, &simple_batch(1, 10, 1, 1));
    storage.set_fail_syncs(true);
    assert!(log.sync_to(info.log_end_offset).is_err());
    storage.set_fail_syncs(false);
    let b = simple_batch(1, 10, 1, 2);
    assert!(matches!(log.append(&[ValidatedBatch::new(&b, 1 << 20).unwrap()]), Err(LogError::Failed { .. })));
}

#[test]
fn segments_roll_by_age() {
    let storage = Arc::new(MemStorage::new());
    let clock = manual_clock();
    let config = LogConfig { segment_ms: Some(1000), ..LogConfig::default() };
    let log = open(std::path::Path::new("/mem/age"), config, storage, clock.clone());
    append(&log, &simple_batch(1, 10, 1, 1));
    clock.advance(999);
    append(&log, &simple_batch(1, 10, 1, 2));
    assert_eq!(log.segment_base_offsets(), vec![0]);
    clock.advance(1);
    append(&log, &simple_batch(1, 10, 1, 3));
    assert_eq!(log.segment_base_offsets(), vec![0, 2], "rolled on append once the segment was 1 s old");
    clock.advance(1000);
    log.flush_if_due().unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 3], "and by the periodic check without appends");
    log.flush_if_due().unwrap();
    assert_eq!(log.segment_base_offsets().len(), 3, "an empty active segment does not roll");
}

#[test]
fn compaction_streams_large_segments_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 64 << 20,
        segment_ms: None,
        retention_ms: None,
        cleanup_policy: weir_log::CleanupPolicy::Compact,
        ..LogConfig::default()
    };
    let log = open(dir.path(), config, fs(), Arc::new(SystemClock));
    // ~12 MiB of unique keys, plus a rewrite of every 10th key: the cleaned copy is ~12 MiB,
    // written in several chunks.
    let value = vec![b'v'; 1000];
    for round in 0..2 {
        for chunk in 0..120 {
            let mut b = weir_log::BatchBuilder::new();
            for i in 0..100 {
                let k = chunk * 100 + i;
                if round == 1 && k % 10 != 0 {
                    continue;
                }
                b.push(1, Some(format!("key-{k}").as_bytes()), Some(&value));
            }
            if !b.is_empty() {
                append(&log, &b.build());
            }
        }
    }
    log.roll_now().unwrap();
    let before = log.stats().size_bytes;
    let stats = log.compact().unwrap();
    assert_eq!(stats.segments_rewritten, 1);
    assert_eq!(stats.records_removed, 1200);
    assert!(stats.bytes_after > 2 * (4 << 20), "output spans several chunks: {}", stats.bytes_after);
    let recs = read_all(&log);
    assert_eq!(recs.len(), 12_000);
    let mut keys: Vec<_> = recs.iter().map(|r| r.key.clone().unwrap()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 12_000, "one record per key");
    assert!(log.stats().size_bytes < before);
    drop(log);
    let log = open(dir.path(), config, fs(), Arc::new(SystemClock));
    assert_eq!(read_all(&log), recs, "the compacted segment reopens cleanly");
}

/// After a clean close the active segment is trusted up to the recovery point (its indexes
/// were written at close), as closed segments are: a bit flip there is refused on read, not
/// a reason to cut durable data at open. What lies past the recovery point is still fully
/// validated, and indexes that disagree with the segment make recovery scan it whole.
#[test]
fn a_clean_close_lets_the_next_open_trust_the_active_segment_to_its_recovery_point() {
    let config = LogConfig { index_interval_bytes: 256, segment_ms: None, retention_ms: None, ..LogConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join(format!("{:020}.log", 0));
    let log = open(dir.path(), config, fs(), Arc::new(SystemClock));
    let mut ends = vec![0u64];
    for i in 0..40 {
        append(&log, &simple_batch(3, 40, 1000 + i, i as u64));
        ends.push(std::fs::metadata(&seg).unwrap().len());
    }
    let good = read_all(&log);
    log.close().unwrap();
    drop(log);

    // A flip inside batch 10's records: the open keeps all 120 offsets, the read of that
    // batch fails, later batches are served.
    let mut bytes = std::fs::read(&seg).unwrap();
    let flip = ends[10] as usize + 70;
    bytes[flip] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let log = open(dir.path(), config, fs(), Arc::new(SystemClock));
    assert_eq!(log.log_end_offset(), 120);
    let mut buf = BytesMut::new();
    assert!(matches!(log.read(30, 1 << 20, &mut buf), Err(LogError::Corrupt { position, .. }) if position == ends[10]));
    buf.clear();
    assert!(log.read(33, 1 << 20, &mut buf).unwrap().bytes > 0);
    bytes[flip] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();

    // Unsynced appends past the recovery point, then a crash that tears the last one: the
    // torn tail is cut, everything before it is kept, and reads match.
    append(&log, &simple_batch(3, 40, 2000, 100));
    append(&log, &simple_batch(3, 40, 2001, 101));
    drop(log); // no close: the checkpoint still says 120
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 5).unwrap();
    let log = open(dir.path(), config, fs(), Arc::new(SystemClock));
    assert_eq!(log.log_end_offset(), 123);
    assert_eq!(read_all(&log)[..120], good[..]);
    log.close().unwrap();
    drop(log);

    // Index files that disagree with the segment (entries shifted by one batch): recovery
    // notices and scans the segment whole, losing nothing.
    let index = dir.path().join(format!("{:020}.index", 0));
    let original = std::fs::read(&index).unwrap();
    assert!(original.len() >= 16, "the test needs index entries");
    for (byte, delta) in [(7, 1u8), (7, 61), (3, 1), (15, 200)] {
        let mut idx = original.clone();
        idx[byte] = idx[byte].wrapping_add(delta);
        std::fs::write(&index, &idx).unwrap();
        let log = open(dir.path(), config, fs(), Arc::new(SystemClock));
        assert_eq!(log.log_end_offset(), 123, "index byte {byte} + {delta}");
        assert_eq!(read_all(&log)[..120], good[..]);
        drop(log);
    }
}
