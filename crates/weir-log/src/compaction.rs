//! Compaction (`cleanup.policy=compact`): in closed segments keep only the latest record per
//! key, at its original offset; drop tombstones older than `delete.retention.ms`.
//!
//! Runs under the maintenance lock only: appends touch the active segment, which compaction
//! never does, and readers keep reading the old file through their handle until the cleaned
//! copy is swapped in by an atomic rename.

use crate::batch::{validate_stored, write_batch, BatchHeader};
use crate::error::LogError;
use crate::index::{encode_index, encode_time_index};
use crate::log::Log;
use crate::record::Records;
use crate::segment::{self, read_header, Segment};
use crate::storage::{write_atomic, StorageFile};
use crate::unpoisoned::{UnpoisonedMutex, UnpoisonedRwLock};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Compressed batches are kept whole: their keys are not inspected.
    pub compressed_batches_skipped: u64,
    /// The pass ran: the dirty ratio reached `min.cleanable.dirty.ratio`, or a dirty segment
    /// was older than `max.compaction.lag.ms`.
    pub ran: bool,
}

/// Kafka's LogCleanerManager rule: clean when the dirty bytes are at least `ratio_min` of
/// the cleanable bytes, or when a dirty segment is overdue (`max.compaction.lag.ms`).
/// A ratio of 0 cleans at every pass (tombstones then expire on time).
fn should_clean(ratio_min: f64, clean_bytes: u64, dirty_bytes: u64, overdue: bool) -> bool {
    if overdue || ratio_min <= 0.0 {
        return true;
    }
    let total = clean_bytes + dirty_bytes;
    dirty_bytes > 0 && dirty_bytes as f64 >= ratio_min * total as f64
}

struct Closed {
    base: u64,
    next_offset: u64,
    /// Not compacted since the log was opened.
    dirty: bool,
    file: Arc<dyn StorageFile>,
    path: Arc<Path>,
    size: u64,
}

/// Bytes of cleaned output buffered before they are written: compaction's memory does not
/// grow with the segment size.
const CLEANED_CHUNK_BYTES: usize = 4 << 20;

/// Appends to the cleaned copy of a segment in chunks; remembers the first write error.
struct ChunkWriter {
    file: Arc<dyn StorageFile>,
    buf: Vec<u8>,
    written: u64,
    error: Option<std::io::Error>,
}

impl ChunkWriter {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CLEANED_CHUNK_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() && !self.buf.is_empty() {
            match self.file.write_all_at(&self.buf, self.written) {
                Ok(()) => self.written += self.buf.len() as u64,
                Err(e) => self.error = Some(e),
            }
        }
        self.buf.clear();
    }
}

/// Calls `f(position, batch bytes, header)` for every batch of a closed segment.
fn for_each_batch(c: &Closed, mut f: impl FnMut(u64, &[u8], &BatchHeader)) -> Result<(), LogError> {
    let mut buf = Vec::new();
    let mut pos = 0;
    while pos < c.size {
        let h = read_header(&*c.file, &c.path, pos, c.size)?;
        buf.resize(h.total_len(), 0);
        c.file.read_exact_at(&mut buf, pos).map_err(|e| LogError::io("read", &*c.path, e))?;
        validate_stored(&buf).map_err(|reason| LogError::Corrupt {
            path: c.path.to_path_buf(),
            position: pos,
            reason,
        })?;
        f(pos, &buf, &h);
        pos += h.total_len() as u64;
    }
    Ok(())
}

impl Log {
    /// One compaction pass over all cleanable closed segments (those before the first one
    /// younger than `min.compaction.lag.ms`); a no-op unless the cleanup policy includes
    /// `compact` and [`should_clean`] says the log is dirty enough.
    pub fn compact(&self) -> Result<CompactionStats, LogError> {
        let _m = self.maintenance.lock_unpoisoned();
        let config = self.config();
        if !config.cleanup_policy.compacts() {
            return Ok(CompactionStats::default());
        }
        let now = self.now_ms();
        let tombstone_horizon = now.saturating_sub(config.delete_retention_ms);
        let first_dirty = self.first_dirty_offset.load(std::sync::atomic::Ordering::Acquire);
        let closed: Vec<Closed> = {
            let view = self.view.read_unpoisoned();
            let n = view.segments.len();
            // Kafka's first uncleanable offset: the active segment, or the first segment
            // with a batch younger than min.compaction.lag.ms, whichever comes first.
            let lag_horizon = now.saturating_sub(config.min_compaction_lag_ms);
            view.segments[..n - 1]
                .iter()
                .take_while(|s| config.min_compaction_lag_ms <= 0 || s.max_timestamp <= lag_horizon)
                .map(|s| Closed {
                    base: s.base_offset,
                    next_offset: s.next_offset,
                    dirty: s.next_offset > first_dirty,
                    file: s.file.clone(),
                    path: s.path.clone(),
                    size: s.size,
                })
                .collect()
        };
        let mut stats = CompactionStats::default();
        if closed.is_empty() {
            return Ok(stats);
        }
        let (dirty, clean): (Vec<&Closed>, Vec<&Closed>) = closed.iter().partition(|c| c.dirty);
        let dirty_bytes: u64 = dirty.iter().map(|c| c.size).sum();
        let clean_bytes: u64 = clean.iter().map(|c| c.size).sum();
        let overdue = config.max_compaction_lag_ms != i64::MAX && {
            // Kafka's earliest dirty segment timestamp: the first batch's maxTimestamp.
            let clean_until = now.saturating_sub(config.max_compaction_lag_ms);
            let mut overdue = false;
            for c in dirty.iter().filter(|c| c.size > 0) {
                if read_header(&*c.file, &c.path, 0, c.size)?.max_timestamp < clean_until {
                    overdue = true;
                    break;
                }
            }
            overdue
        };
        if !should_clean(config.min_cleanable_dirty_ratio, clean_bytes, dirty_bytes, overdue) {
            return Ok(stats);
        }
        stats.ran = true;
        // Pass 1: the latest offset of every key in the closed segments.
        let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
        for c in &closed {
            for_each_batch(c, |_, bytes, h| {
                if h.compression() != 0 || h.is_control() {
                    return;
                }
                for r in Records::new(bytes, h).flatten() {
                    if let Some(k) = r.key {
                        let off = h.base_offset as u64 + r.offset_delta as u64;
                        match latest.get_mut(k) {
                            Some(v) => *v = (*v).max(off),
                            None => {
                                latest.insert(k.to_vec(), off);
                            }
                        }
                    }
                }
            })?;
        }
        // Pass 2: rewrite each segment that loses records.
        for c in &closed {
            let tmp = self.cleaned_path(c.base);
            let storage = self.storage();
            let file = storage.open(&tmp, true).map_err(|e| LogError::io("create", &tmp, e))?;
            file.set_len(0).map_err(|e| LogError::io("truncate", &tmp, e))?;
            let mut out = ChunkWriter { file: file.clone(), buf: Vec::new(), written: 0, error: None };
            let mut records = Vec::new();
            let mut rebuilt = Vec::new();
            let mut changed = false;
            for_each_batch(c, |_, bytes, h| {
                if h.compression() != 0 || h.is_control() {
                    stats.compressed_batches_skipped += u64::from(h.compression() != 0);
                    out.push(bytes);
                    return;
                }
                records.clear();
                let mut kept = 0i32;
                for r in Records::new(bytes, h).flatten() {
                    let off = h.base_offset as u64 + r.offset_delta as u64;
                    let superseded = r.key.is_some_and(|k| latest.get(k).is_some_and(|&l| l > off));
                    let expired_tombstone = r.value.is_none() && h.max_timestamp < tombstone_horizon;
                    if superseded || (r.key.is_some() && expired_tombstone) {
                        stats.records_removed += 1;
                        stats.tombstones_removed += u64::from(r.value.is_none() && !superseded);
                        continue;
                    }
                    records.extend_from_slice(r.encoded);
                    kept += 1;
                }
                if kept == h.records_count {
                    out.push(bytes);
                    return;
                }
                changed = true;
                // An emptied batch stays, with no records, so offsets stay contiguous.
                let fields = BatchHeader { records_count: kept, ..*h };
                rebuilt.clear();
                write_batch(&mut rebuilt, &fields, &records);
                out.push(&rebuilt);
            })?;
            out.flush();
            if let Some(e) = out.error.take() {
                let _ = storage.remove_file(&tmp);
                return Err(LogError::io("write", &tmp, e));
            }
            stats.bytes_before += c.size;
            stats.bytes_after += out.written;
            if changed {
                self.swap_in_cleaned(c, file, out.written)?;
                stats.segments_rewritten += 1;
            } else {
                storage.remove_file(&tmp).map_err(|e| LogError::io("remove", &tmp, e))?;
            }
        }
        if let Some(last) = closed.last() {
            self.first_dirty_offset.fetch_max(last.next_offset, std::sync::atomic::Ordering::AcqRel);
        }
        if stats.segments_rewritten > 0 {
            crate::metrics::COMPACTION_RUNS.inc();
            crate::metrics::COMPACTION_RECORDS_REMOVED.add(stats.records_removed);
            tracing::info!(dir = %self.dir().display(), ?stats, "compacted");
        }
        Ok(stats)
    }

    /// Syncs the cleaned copy and replaces the segment by rename. The old index
    /// files are removed first so a crash in between leaves indexes to rebuild, never stale.
    fn swap_in_cleaned(&self, c: &Closed, file: Arc<dyn StorageFile>, len: u64) -> Result<(), LogError> {
        let storage = self.storage();
        let tmp = self.cleaned_path(c.base);
        file.sync_data().map_err(|e| LogError::io("fdatasync", &tmp, e))?;
        let mut seg = Segment::new(self.dir(), c.base, file.clone());
        let scan = segment::scan(&mut seg, len, self.config().index_interval_bytes, false)?;
        if let Some(reason) = scan.stopped {
            return Err(LogError::Corrupt { path: tmp, position: scan.valid_end, reason });
        }
        for p in [seg.index_path(), seg.time_index_path()] {
            if storage.exists(&p) {
                storage.remove_file(&p).map_err(|e| LogError::io("remove", &p, e))?;
            }
        }
        storage.rename(&tmp, &seg.path).map_err(|e| LogError::io("rename", &tmp, e))?;
        let (ip, tp) = (seg.index_path(), seg.time_index_path());
        write_atomic(storage, &ip, &encode_index(&seg.index)).map_err(|e| LogError::io("write index", &ip, e))?;
        write_atomic(storage, &tp, &encode_time_index(&seg.time_index))
            .map_err(|e| LogError::io("write index", &tp, e))?;
        let mut view = self.view.write_unpoisoned();
        if let Some(old) = view.segments.iter_mut().find(|s| s.base_offset == c.base) {
            old.file = file;
            old.size = seg.size;
            old.index = seg.index;
            old.time_index = seg.time_index;
            old.max_timestamp = seg.max_timestamp;
            // `next_offset` stays: the segment still covers the same offset range.
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::should_clean;

    #[test]
    fn the_dirty_ratio_decides_unless_a_segment_is_overdue() {
        assert!(should_clean(0.5, 100, 100, false), "exactly the ratio cleans");
        assert!(!should_clean(0.5, 101, 99, false));
        assert!(should_clean(0.5, 1000, 1, true), "overdue cleans whatever the ratio");
        assert!(!should_clean(0.5, 100, 0, false), "nothing dirty");
        assert!(should_clean(0.0, 100, 0, false), "ratio 0 cleans at every pass");
        assert!(should_clean(1.0, 0, 10, false), "all dirty meets even ratio 1");
    }
}
