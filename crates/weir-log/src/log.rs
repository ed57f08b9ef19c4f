//! One partition's log: append, read, durability, recovery, retention.

use crate::batch::{self, validate_stored, BatchHeader, ValidatedBatch};
use crate::checkpoint::{self, Checkpoint};
use crate::clock::Clock;
use crate::config::{Durability, LogConfig};
use crate::error::{BatchError, LogError};
use crate::index::{encode_index, encode_time_index};
use crate::segment::{check_placement, file_path, read_placed_header, Segment, CLEANED_SUFFIX, LOG_SUFFIX};
use crate::storage::{write_atomic, write_unsynced, Storage, StorageFile};
use crate::unpoisoned::{UnpoisonedMutex, UnpoisonedRwLock};
use bytes::BytesMut;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Offsets assigned to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    /// Log end offset after the append.
    pub log_end_offset: u64,
}

/// What a read returned besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadInfo {
    pub log_start_offset: u64,
    /// On a single node the high watermark is the log end offset.
    pub high_watermark: u64,
    /// Bytes of whole batches appended to the output buffer.
    pub bytes: usize,
}

/// Offsets and sizes of a log, for metadata and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub durable_offset: u64,
    pub size_bytes: u64,
    pub segments: usize,
    pub max_timestamp: i64,
}

/// One segment as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: u64,
    /// One past the last offset the segment covers.
    pub next_offset: u64,
    pub size_bytes: u64,
    /// Newest batch timestamp (i64::MIN when empty).
    pub max_timestamp: i64,
}

/// Readers' view of the segments: guarded by a RwLock held only for index look-ups.
#[derive(Debug)]
pub(crate) struct View {
    pub segments: Vec<Segment>,
    pub log_start: u64,
    pub log_end: u64,
}

thread_local! {
    /// Reused buffer of appends: batches are copied here with their offsets assigned, then
    /// written once. One per thread rather than one per log, so memory grows with the
    /// threads that append (bounded), not with the number of partitions.
    static APPEND_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// State owned by the single appender at a time.
#[derive(Debug)]
struct Writer {
    active_file: Arc<dyn StorageFile>,
    active_path: Arc<Path>,
    active_base: u64,
    active_size: u64,
    next_offset: u64,
}

/// A partition log. All methods take `&self`; appends are serialized internally and reads
/// run concurrently with them, blocking only for index look-ups.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    config: RwLock<LogConfig>,
    writer: Mutex<Writer>,
    pub(crate) view: RwLock<View>,
    /// Serializes fdatasync calls; waiting on it is what makes group commit.
    sync_lock: Mutex<()>,
    /// Every offset below this is durable.
    durable_end: AtomicU64,
    last_sync_ms: AtomicI64,
    /// Set when a write could not be rolled back or an fdatasync failed: the page cache no
    /// longer says what is on disk, so the log refuses appends until reopened.
    failed: AtomicBool,
    /// Serializes retention and compaction.
    pub(crate) maintenance: Mutex<()>,
    /// The checkpoint on disk (None: no valid file). Held while writing it, so writers of
    /// the one `.tmp` file never interleave, and an unchanged checkpoint is not rewritten:
    /// an idle partition costs no sync in the maintenance pass or at shutdown.
    checkpoint: Mutex<Option<Checkpoint>>,
    /// (base, size) of the active segment as its index files on disk describe it: a clean
    /// close writes them (so the next open trusts the segment up to the recovery point
    /// instead of re-reading it whole) only when they would differ.
    active_indexes: Mutex<Option<(u64, u64)>>,
    /// Segments ending at or below this offset were compacted since the log was opened
    /// (Kafka's cleaner checkpoint, kept in memory: after a restart the whole log counts as
    /// dirty, which costs at most one compaction pass more).
    pub(crate) first_dirty_offset: AtomicU64,
    /// Renamed `*.deleted` files and when `file.delete.delay.ms` lets them go.
    pending_deletes: Mutex<Vec<(i64, PathBuf)>>,
}

impl Log {
    /// Opens (recovering) or creates the log in `dir`.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
    ) -> Result<Log, LogError> {
        config.validate()?;
        let dir = dir.into();
        storage.create_dir_all(&dir).map_err(|e| LogError::io("create dir", &dir, e))?;
        let recovered = crate::recovery::recover(&dir, &config, &*storage)?;
        let last = recovered.segments.last().ok_or(LogError::Config { reason: "no segment" })?;
        let writer = Writer {
            active_file: last.file.clone(),
            active_path: last.path.clone(),
            active_base: last.base_offset,
            active_size: last.size,
            next_offset: last.next_offset,
        };
        let log_end = last.next_offset;
        let log = Log {
            dir,
            storage,
            clock,
            config: RwLock::new(config),
            writer: Mutex::new(writer),
            view: RwLock::new(View { segments: recovered.segments, log_start: recovered.log_start, log_end }),
            sync_lock: Mutex::new(()),
            durable_end: AtomicU64::new(log_end),
            last_sync_ms: AtomicI64::new(0),
            failed: AtomicBool::new(false),
            maintenance: Mutex::new(()),
            // No file says the same as an all-zero one: recover from offset 0.
            checkpoint: Mutex::new(Some(recovered.checkpoint.unwrap_or_default())),
            active_indexes: Mutex::new(recovered.active_indexes),
            first_dirty_offset: AtomicU64::new(0),
            pending_deletes: Mutex::new(Vec::new()),
        };
        log.last_sync_ms.store(log.clock.now_ms(), Ordering::Relaxed);
        log.write_checkpoint()?;
        Ok(log)
    }

    /// Lays out a new, empty log in `dir` (its directory and first segment) without any
    /// sync. The caller makes it durable by syncing `dir` and its parent, once for a whole
    /// batch of logs ([`crate::sync_dirs`]); [`Log::open`] then opens it without a sync.
    pub fn prepare(dir: &Path, storage: &dyn Storage) -> Result<(), LogError> {
        storage.create_dir_all(dir).map_err(|e| LogError::io("create dir", dir, e))?;
        let path = file_path(dir, 0, LOG_SUFFIX);
        storage.create_unsynced(&path).map_err(|e| LogError::io("create", &path, e))?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        *self.config.read_unpoisoned()
    }

    /// Changes settings at run time (topic config changes). Takes effect on the next append.
    pub fn set_config(&self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        *self.config.write_unpoisoned() = config;
        Ok(())
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn check_failed(&self) -> Result<(), LogError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(LogError::Failed { reason: "an earlier write or sync failed" });
        }
        Ok(())
    }

    fn fail(&self, reason: &'static str) {
        tracing::error!(dir = %self.dir.display(), reason, "log failed; refusing appends until reopened");
        self.failed.store(true, Ordering::Release);
    }

    /// Appends validated batches in one write, assigning consecutive offsets. Returns once
    /// the bytes are in the page cache; call [`Log::sync_to`] to wait for durability.
    pub fn append(&self, batches: &[ValidatedBatch<'_>]) -> Result<AppendInfo, LogError> {
        self.check_failed()?;
        let config = self.config();
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        for b in batches {
            if b.len() > config.max_batch_bytes {
                return Err(BatchError::TooLarge { size: b.len(), max: config.max_batch_bytes }.into());
            }
        }
        let mut w = self.writer.lock_unpoisoned();
        let now = self.clock.now_ms();
        if total == 0 {
            let end = w.next_offset;
            return Ok(AppendInfo { base_offset: end, last_offset: end.wrapping_sub(1), log_end_offset: end });
        }
        if self.should_roll(&w, &config, total, now) {
            self.roll(&mut w)?;
        }
        let first = w.next_offset;
        let position = w.active_size;
        let next = APPEND_BUF.with_borrow_mut(|buf| {
            buf.clear();
            let mut next = first;
            for b in batches {
                let start = buf.len();
                buf.extend_from_slice(b.bytes());
                let stored = &mut buf[start..];
                batch::set_base_offset(stored, next as i64);
                batch::set_partition_leader_epoch(stored, 0);
                next += b.header().offset_count();
            }
            if let Err(e) = w.active_file.write_all_at(buf, position) {
                // Nothing past `position` is published; cut the partial bytes off the file too.
                if w.active_file.set_len(position).is_err() {
                    self.fail("could not truncate a partial write");
                }
                return Err(LogError::io("write", &*w.active_path, e));
            }
            Ok(next)
        })?;
        {
            let mut view = self.view.write_unpoisoned();
            let seg = view.segments.last_mut().ok_or(LogError::Config { reason: "no segment" })?;
            seg.first_append_ms.get_or_insert(now);
            let mut pos = position;
            let mut base = first;
            for b in batches {
                let h = b.header();
                let last = base + h.offset_count() - 1;
                seg.observe(pos, b.len() as u64, base, last, h.max_timestamp, config.index_interval_bytes);
                pos += b.len() as u64;
                base = last + 1;
            }
            view.log_end = next;
        }
        w.active_size = position + total;
        w.next_offset = next;
        drop(w);
        let interval_due = match config.durability {
            Durability::IntervalMs(ms) => now - self.last_sync_ms.load(Ordering::Relaxed) >= ms as i64,
            _ => false,
        };
        let messages_due = config.flush_messages.is_some_and(|n| next - self.durable_offset() >= n);
        if interval_due || messages_due {
            self.sync_to(next)?;
        }
        Ok(AppendInfo { base_offset: first, last_offset: next - 1, log_end_offset: next })
    }

    fn should_roll(&self, w: &Writer, config: &LogConfig, incoming: u64, now: i64) -> bool {
        if w.active_size == 0 {
            return false;
        }
        if w.active_size + incoming > config.segment_bytes {
            return true;
        }
        let view = self.view.read_unpoisoned();
        let Some(seg) = view.segments.last() else {
            return false;
        };
        // segment.index.bytes: Kafka rolls when either index of the segment is full.
        let (offsets_max, times_max) = config.index_entries_max();
        if seg.index.len() >= offsets_max || seg.time_index.len() >= times_max {
            return true;
        }
        self.roll_due_ms(config, seg).is_some_and(|due| now >= due)
    }

    /// When the active segment `seg` is due to roll by age: its first append plus
    /// [`LogConfig::roll_age_ms`] minus the segment's jitter. None: never by age.
    fn roll_due_ms(&self, config: &LogConfig, seg: &Segment) -> Option<i64> {
        let first = seg.first_append_ms?;
        let age = config.roll_age_ms()?;
        Some(first.saturating_add(age - roll_jitter_ms(&self.dir, seg.base_offset, config.segment_jitter_ms, age)))
    }

    /// Closes the active segment (synced, indexes written) and starts a new one.
    fn roll(&self, w: &mut Writer) -> Result<(), LogError> {
        w.active_file.sync_data().map_err(|e| {
            self.fail("fdatasync failed while rolling");
            LogError::io("fdatasync", &*w.active_path, e)
        })?;
        self.persist_active_indexes(true)?;
        let base = w.next_offset;
        let path = file_path(&self.dir, base, LOG_SUFFIX);
        let file = self.storage.open(&path, true).map_err(|e| LogError::io("create", &path, e))?;
        let seg = Segment::new(&self.dir, base, file.clone());
        w.active_path = seg.path.clone();
        w.active_file = file;
        w.active_base = base;
        w.active_size = 0;
        self.view.write_unpoisoned().segments.push(seg);
        self.durable_end.fetch_max(base, Ordering::AcqRel);
        self.write_checkpoint()?;
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        Ok(())
    }

    /// Forces a roll if the active segment holds data (tests, and `segment.ms` checks).
    pub fn roll_now(&self) -> Result<(), LogError> {
        let mut w = self.writer.lock_unpoisoned();
        if w.active_size > 0 {
            self.roll(&mut w)?;
        }
        Ok(())
    }

    /// Writes the offset and time index of the last segment: atomically and durably when
    /// it rolls (a closed segment's indexes are loaded without a re-scan), in place without
    /// a sync at a clean close — they are derived data, checked when loaded, and recovery
    /// re-scans the segment when they are missing, short or wrong; a sync per file would
    /// make stopping a broker with many partitions slow.
    fn persist_active_indexes(&self, durable: bool) -> Result<(), LogError> {
        let (idx_path, tidx_path, idx, tidx) = {
            let view = self.view.read_unpoisoned();
            let Some(seg) = view.segments.last() else {
                return Ok(());
            };
            (seg.index_path(), seg.time_index_path(), encode_index(&seg.index), encode_time_index(&seg.time_index))
        };
        let write = if durable { write_atomic } else { write_unsynced };
        write(&*self.storage, &idx_path, &idx).map_err(|e| LogError::io("write index", &idx_path, e))?;
        write(&*self.storage, &tidx_path, &tidx).map_err(|e| LogError::io("write index", &tidx_path, e))?;
        Ok(())
    }

    /// Blocks until every offset below `offset` is durable. Concurrent callers share one
    /// fdatasync (group commit).
    pub fn sync_to(&self, offset: u64) -> Result<(), LogError> {
        if self.durable_end.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _guard = self.sync_lock.lock_unpoisoned();
        if self.durable_end.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        self.check_failed()?;
        // Everything published before this point is in the active file or in older
        // segments, which were synced when they rolled.
        let (file, path, end) = {
            let view = self.view.read_unpoisoned();
            let seg = view.segments.last().ok_or(LogError::Config { reason: "no segment" })?;
            (seg.file.clone(), seg.path.clone(), view.log_end)
        };
        let started = std::time::Instant::now();
        file.sync_data().map_err(|e| {
            self.fail("fdatasync failed");
            LogError::io("fdatasync", &*path, e)
        })?;
        crate::metrics::FSYNC_SECONDS.observe(started.elapsed());
        self.durable_end.fetch_max(end, Ordering::AcqRel);
        self.last_sync_ms.store(self.clock.now_ms(), Ordering::Relaxed);
        Ok(())
    }

    /// When [`Log::flush_if_due`] will next have work (clock milliseconds): an interval
    /// flush of unsynced data, or the roll of an active segment by age. None: nothing timed.
    pub fn next_due_ms(&self) -> Option<i64> {
        let config = self.config();
        let flush = match config.durability {
            Durability::IntervalMs(ms) if self.durable_offset() < self.log_end_offset() => {
                Some(self.last_sync_ms.load(Ordering::Relaxed).saturating_add(ms as i64))
            }
            _ => None,
        };
        let roll = self.view.read_unpoisoned().segments.last().and_then(|s| self.roll_due_ms(&config, s));
        match (flush, roll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Syncs if the interval policy says it is time; for a periodic ticker.
    pub fn flush_if_due(&self) -> Result<(), LogError> {
        let config = self.config();
        if let Durability::IntervalMs(ms) = config.durability {
            if self.clock.now_ms() - self.last_sync_ms.load(Ordering::Relaxed) >= ms as i64 {
                self.sync_to(self.log_end_offset())?;
            }
        }
        let now = self.clock.now_ms();
        let due = self.view.read_unpoisoned().segments.last().and_then(|s| self.roll_due_ms(&config, s));
        if due.is_some_and(|due| now >= due) {
            self.roll_now()?;
        }
        Ok(())
    }

    /// Every offset below the returned one is durable.
    pub fn durable_offset(&self) -> u64 {
        self.durable_end.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> u64 {
        self.view.read_unpoisoned().log_end
    }

    pub fn log_start_offset(&self) -> u64 {
        self.view.read_unpoisoned().log_start
    }

    pub fn stats(&self) -> LogStats {
        let view = self.view.read_unpoisoned();
        LogStats {
            log_start_offset: view.log_start,
            log_end_offset: view.log_end,
            durable_offset: self.durable_offset(),
            size_bytes: view.segments.iter().map(|s| s.size).sum(),
            segments: view.segments.len(),
            max_timestamp: view.segments.iter().map(|s| s.max_timestamp).max().unwrap_or(i64::MIN),
        }
    }

    /// Base offsets of the segments, oldest first.
    /// Offsets, size and newest timestamp of every segment, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.view
            .read_unpoisoned()
            .segments
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size_bytes: s.size,
                max_timestamp: s.max_timestamp,
            })
            .collect()
    }

    pub fn segment_base_offsets(&self) -> Vec<u64> {
        self.view.read_unpoisoned().segments.iter().map(|s| s.base_offset).collect()
    }

    /// Writes the recovery point (durable offset) and log start offset, unless the file
    /// already says exactly that.
    pub fn write_checkpoint(&self) -> Result<(), LogError> {
        let mut stored = self.checkpoint.lock_unpoisoned();
        let cp = Checkpoint { recovery_point: self.durable_offset(), log_start_offset: self.log_start_offset() };
        if *stored == Some(cp) {
            return Ok(());
        }
        let path = self.dir.join(checkpoint::FILE_NAME);
        // Unknown after a failed attempt: the next call writes again.
        *stored = None;
        write_atomic(&*self.storage, &path, &cp.encode()).map_err(|e| LogError::io("write checkpoint", &path, e))?;
        *stored = Some(cp);
        Ok(())
    }

    /// True when a checkpoint written now would differ from the one on disk (appends made
    /// durable, or the log start moved): the maintenance pass skips the rest.
    pub fn checkpoint_due(&self) -> bool {
        let cp = Checkpoint { recovery_point: self.durable_offset(), log_start_offset: self.log_start_offset() };
        *self.checkpoint.lock_unpoisoned() != Some(cp)
    }

    /// Syncs everything, writes the active segment's indexes and the checkpoint; an idle
    /// log whose files already say all this does nothing.
    pub fn close(&self) -> Result<(), LogError> {
        let w = self.writer.lock_unpoisoned();
        self.sync_to(self.view.read_unpoisoned().log_end)?;
        let active = (w.active_base, w.active_size);
        let mut written = self.active_indexes.lock_unpoisoned();
        if active.1 > 0 && *written != Some(active) {
            *written = None;
            self.persist_active_indexes(false)?;
            *written = Some(active);
        }
        drop(written);
        self.write_checkpoint()
    }

    /// Appends to `out` whole stored batches starting with the one that contains `offset`:
    /// at least one batch, and further ones while they fit in `max_bytes`. Every batch is
    /// CRC-checked; corruption is an error naming the file and position, never data.
    pub fn read(&self, offset: u64, max_bytes: usize, out: &mut BytesMut) -> Result<ReadInfo, LogError> {
        let (file, path, mut pos, mut expected, seg_end, info) = {
            let view = self.view.read_unpoisoned();
            let info = ReadInfo { log_start_offset: view.log_start, high_watermark: view.log_end, bytes: 0 };
            if offset < view.log_start || offset > view.log_end {
                return Err(LogError::OffsetOutOfRange { offset, log_start: view.log_start, log_end: view.log_end });
            }
            if offset == view.log_end {
                return Ok(info);
            }
            let i = view.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1);
            let seg = &view.segments[i];
            let (pos, base) = seg.lookup(offset);
            (seg.file.clone(), seg.path.clone(), pos, base, seg.size, info)
        };
        // Walk batch headers to the one containing `offset`; compaction can leave gaps, in
        // which case the next segment holds it.
        let header = loop {
            if pos >= seg_end {
                return self.read_next_segment(offset, max_bytes, out);
            }
            let h = read_placed_header(&*file, &path, pos, seg_end, expected)?;
            if h.last_offset() as u64 >= offset {
                break h;
            }
            expected = h.last_offset() as u64 + 1;
            pos += h.total_len() as u64;
        };
        let first_len = header.total_len();
        let want = first_len.max(max_bytes.min((seg_end - pos) as usize));
        let start = out.len();
        out.resize(start + want, 0);
        if let Err(e) = file.read_exact_at(&mut out[start..], pos) {
            out.truncate(start);
            return Err(LogError::io("read", &*path, e));
        }
        // Keep whole batches only, each checked.
        let mut kept = 0usize;
        while kept < want {
            let rest = &out[start + kept..start + want];
            if rest.len() < batch::HEADER_LEN {
                break;
            }
            let h = match BatchHeader::parse(rest) {
                Ok(h) if h.total_len() <= rest.len() => h,
                _ => break,
            };
            if let Err(reason) = validate_stored(&rest[..h.total_len()]).and_then(|_| check_placement(&h, expected)) {
                crate::metrics::CORRUPT_READS.inc();
                if kept == 0 {
                    out.truncate(start);
                    return Err(LogError::Corrupt { path: path.to_path_buf(), position: pos, reason });
                }
                break;
            }
            expected = h.last_offset() as u64 + 1;
            kept += h.total_len();
        }
        out.truncate(start + kept);
        Ok(ReadInfo { bytes: kept, ..info })
    }

    fn read_next_segment(&self, offset: u64, max_bytes: usize, out: &mut BytesMut) -> Result<ReadInfo, LogError> {
        let next_base = {
            let view = self.view.read_unpoisoned();
            view.segments.iter().map(|s| s.base_offset).find(|&b| b > offset)
        };
        match next_base {
            Some(b) => self.read(b, max_bytes, out),
            None => Ok(ReadInfo {
                log_start_offset: self.log_start_offset(),
                high_watermark: self.log_end_offset(),
                bytes: 0,
            }),
        }
    }

    /// The first offset whose record timestamp is >= `timestamp`, with that timestamp; None
    /// when every record is older. Within a compressed batch, answers the batch's first offset.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>, LogError> {
        let found = {
            let view = self.view.read_unpoisoned();
            view.segments
                .iter()
                .find(|s| s.max_timestamp >= timestamp)
                .map(|s| (s.file.clone(), s.path.clone(), s.lookup_time(timestamp), s.size))
        };
        let Some((file, path, (mut pos, mut expected), end)) = found else {
            return Ok(None);
        };
        let log_start = self.log_start_offset();
        let mut buf = Vec::new();
        while pos < end {
            let h = read_placed_header(&*file, &path, pos, end, expected)?;
            expected = h.last_offset() as u64 + 1;
            if h.max_timestamp >= timestamp && h.last_offset() as u64 >= log_start {
                buf.resize(h.total_len(), 0);
                file.read_exact_at(&mut buf, pos).map_err(|e| LogError::io("read", &*path, e))?;
                validate_stored(&buf).map_err(|reason| LogError::Corrupt {
                    path: path.to_path_buf(),
                    position: pos,
                    reason,
                })?;
                return Ok(Some(first_record_at_or_after(&buf, &h, timestamp, log_start)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Moves the log start offset up to `offset` (Kafka DeleteRecords) and deletes segments
    /// wholly below it. Returns the new log start offset.
    pub fn delete_records_before(&self, offset: u64) -> Result<u64, LogError> {
        let _m = self.maintenance.lock_unpoisoned();
        {
            let mut view = self.view.write_unpoisoned();
            if offset > view.log_end {
                return Err(LogError::OffsetOutOfRange { offset, log_start: view.log_start, log_end: view.log_end });
            }
            view.log_start = view.log_start.max(offset);
        }
        self.write_checkpoint()?;
        self.delete_segments_below_start()?;
        Ok(self.log_start_offset())
    }

    /// Deletes closed segments whose every offset is below the log start offset.
    pub(crate) fn delete_segments_below_start(&self) -> Result<usize, LogError> {
        let removed: Vec<Segment> = {
            let mut view = self.view.write_unpoisoned();
            let n = view.segments.len();
            let start = view.log_start;
            let count = view.segments[..n - 1].iter().take_while(|s| s.next_offset <= start).count();
            view.segments.drain(..count).collect()
        };
        for seg in &removed {
            self.remove_segment_files(seg)?;
        }
        Ok(removed.len())
    }

    /// Removes a segment's files, or with `file.delete.delay.ms` renames them `*.deleted`
    /// and removes them once the delay has passed ([`Log::purge_deleted_files`]; a restart
    /// removes what is left), as Kafka does. Readers keep their open handles either way.
    pub(crate) fn remove_segment_files(&self, seg: &Segment) -> Result<(), LogError> {
        let delay_ms = self.config().file_delete_delay_ms;
        let due = self.clock.now_ms().saturating_add(delay_ms);
        for p in [seg.path.to_path_buf(), seg.index_path(), seg.time_index_path()] {
            let result = if delay_ms <= 0 {
                self.storage.remove_file(&p)
            } else {
                let to = deleted_path(&p);
                self.storage.rename(&p, &to).map(|()| self.pending_deletes.lock_unpoisoned().push((due, to)))
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("remove", &p, e)),
            }
        }
        crate::metrics::SEGMENTS_DELETED.inc();
        tracing::info!(file = %seg.path.display(), base = seg.base_offset, delay_ms, "deleted segment");
        Ok(())
    }

    /// Removes the `*.deleted` files whose `file.delete.delay.ms` has passed; returns how
    /// many. Called by retention (so at every maintenance pass).
    pub fn purge_deleted_files(&self) -> Result<usize, LogError> {
        let now = self.clock.now_ms();
        let due: Vec<PathBuf> = {
            let mut pending = self.pending_deletes.lock_unpoisoned();
            let (due, keep): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(at, _)| *at <= now);
            *pending = keep;
            due.into_iter().map(|(_, p)| p).collect()
        };
        for (i, p) in due.iter().enumerate() {
            match self.storage.remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Try again at the next pass.
                    self.pending_deletes.lock_unpoisoned().extend(due[i..].iter().map(|p| (now, p.clone())));
                    return Err(LogError::io("remove", p, e));
                }
            }
        }
        Ok(due.len())
    }

    /// Files renamed `*.deleted` and not removed yet (tests, metrics).
    pub fn pending_deleted_files(&self) -> usize {
        self.pending_deletes.lock_unpoisoned().len()
    }

    /// Deletes the log's directory and files. The log must not be used afterwards.
    pub fn delete(self) -> Result<(), LogError> {
        self.storage.remove_dir_all(&self.dir).map_err(|e| LogError::io("remove dir", &self.dir, e))
    }

    /// Path of a segment's cleaned copy during compaction.
    pub(crate) fn cleaned_path(&self, base: u64) -> PathBuf {
        file_path(&self.dir, base, &format!("{LOG_SUFFIX}{CLEANED_SUFFIX}"))
    }
}

/// Suffix of segment files waiting for `file.delete.delay.ms` (Kafka's).
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

fn deleted_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(DELETED_SUFFIX);
    PathBuf::from(s)
}

/// `segment.jitter.ms`: a per-segment amount in `0..min(jitter_ms, age_ms)`, from an FNV-1a
/// hash of the log directory and the segment base offset, so it is the same after a restart
/// and differs between partitions (Kafka draws it at random when the segment is created).
pub(crate) fn roll_jitter_ms(dir: &Path, base_offset: u64, jitter_ms: i64, age_ms: i64) -> i64 {
    let bound = jitter_ms.min(age_ms);
    if bound <= 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.as_os_str().as_encoded_bytes().iter().chain(&base_offset.to_be_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % bound as u64) as i64
}

/// Finds the first record with timestamp >= `ts` (and offset >= `min_offset`) in an
/// uncompressed batch; compressed batches answer their base offset.
fn first_record_at_or_after(batch: &[u8], h: &BatchHeader, ts: i64, min_offset: u64) -> (u64, i64) {
    let base = h.base_offset as u64;
    if h.compression() != 0 {
        return (base.max(min_offset), h.max_timestamp);
    }
    for r in crate::record::Records::new(batch, h).flatten() {
        let offset = base + r.offset_delta as u64;
        let t = h.record_timestamp(r.timestamp_delta);
        if t >= ts && offset >= min_offset {
            return (offset, t);
        }
    }
    (base.max(min_offset), h.max_timestamp)
}

impl Log {
    /// Calls `f` with the header of every stored batch at or after `from_offset`, in offset
    /// order (headers only: no CRC check, no record decoding). Used to rebuild derived state
    /// such as idempotent-producer sequences when a log opens.
    pub fn for_each_batch_header(&self, from_offset: u64, mut f: impl FnMut(&BatchHeader)) -> Result<(), LogError> {
        // (file, path, start position, base offset there, end)
        type Walk = (Arc<dyn StorageFile>, Arc<Path>, u64, u64, u64);
        let segments: Vec<Walk> = {
            let view = self.view.read_unpoisoned();
            view.segments
                .iter()
                .filter(|s| s.next_offset > from_offset)
                .map(|s| {
                    let (pos, base) = s.lookup(from_offset);
                    (s.file.clone(), s.path.clone(), pos, base, s.size)
                })
                .collect()
        };
        for (file, path, mut pos, mut expected, end) in segments {
            while pos < end {
                let h = read_placed_header(&*file, &path, pos, end, expected)?;
                if h.last_offset() as u64 >= from_offset {
                    f(&h);
                }
                expected = h.last_offset() as u64 + 1;
                pos += h.total_len() as u64;
            }
        }
        Ok(())
    }
}
