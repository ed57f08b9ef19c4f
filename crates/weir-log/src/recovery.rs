//! Opening a log: find segments, trust what the checkpoint says is durable, re-scan the rest,
//! truncate torn tails and rebuild damaged indexes.

use crate::checkpoint::{self, Checkpoint};
use crate::config::LogConfig;
use crate::error::LogError;
use crate::index::{decode_index, decode_time_index, encode_index, encode_time_index};
use crate::log::DELETED_SUFFIX;
use crate::segment::{
    self, check_placement, file_path, parse_log_name, read_header, Segment, CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
};
use crate::storage::{read_whole, write_atomic, Storage};
use std::path::Path;

pub(crate) struct Recovered {
    pub segments: Vec<Segment>,
    pub log_start: u64,
    /// The valid checkpoint found, if any.
    pub checkpoint: Option<Checkpoint>,
    /// (base, size) of the last segment when its index files on disk describe exactly it.
    pub active_indexes: Option<(u64, u64)>,
}

fn read_checkpoint(dir: &Path, storage: &dyn Storage) -> Option<Checkpoint> {
    let path = dir.join(checkpoint::FILE_NAME);
    if !storage.exists(&path) {
        return None;
    }
    match read_whole(storage, &path).map_err(|_| "unreadable").and_then(|b| Checkpoint::decode(&b)) {
        Ok(cp) => Some(cp),
        Err(reason) => {
            tracing::warn!(file = %path.display(), reason, "ignoring invalid checkpoint; re-scanning the whole log");
            None
        }
    }
}

pub(crate) fn recover(dir: &Path, config: &LogConfig, storage: &dyn Storage) -> Result<Recovered, LogError> {
    let names = storage.list(dir).map_err(|e| LogError::io("list", dir, e))?;
    let leftover = |n: &&String| n.ends_with(".tmp") || n.ends_with(CLEANED_SUFFIX) || n.ends_with(DELETED_SUFFIX);
    for name in names.iter().filter(leftover) {
        // Interrupted atomic writes and compactions (the originals are intact), and deleted
        // segments still waiting for file.delete.delay.ms (a restart ends the wait, as in Kafka).
        let p = dir.join(name);
        storage.remove_file(&p).map_err(|e| LogError::io("remove", &p, e))?;
    }
    let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_log_name(n)).collect();
    bases.sort_unstable();
    let cp = read_checkpoint(dir, storage);
    let recovery_point = cp.map_or(0, |c| c.recovery_point);
    if bases.is_empty() {
        let base = cp.map_or(0, |c| c.log_start_offset);
        let path = file_path(dir, base, LOG_SUFFIX);
        let file = storage.open(&path, true).map_err(|e| LogError::io("create", &path, e))?;
        return Ok(Recovered {
            segments: vec![Segment::new(dir, base, file)],
            log_start: base,
            checkpoint: cp,
            active_indexes: None,
        });
    }
    let interval = config.index_interval_bytes;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let mut truncated_at: Option<usize> = None;
    let mut active_indexes = None;
    for (i, &base) in bases.iter().enumerate() {
        let path = file_path(dir, base, LOG_SUFFIX);
        let file = storage.open(&path, false).map_err(|e| LogError::io("open", &path, e))?;
        let len = file.len().map_err(|e| LogError::io("stat", &path, e))?;
        let mut seg = Segment::new(dir, base, file);
        let next_base = bases.get(i + 1).copied();
        let trusted = next_base.is_some_and(|nb| nb <= recovery_point);
        if trusted {
            load_trusted(&mut seg, len, next_base.unwrap_or(u64::MAX), config, storage)?;
            segments.push(seg);
            continue;
        }
        // The last segment: what lies below the recovery point was durable, so (as for closed
        // segments) its indexes are trusted when they check out; everything after it is
        // fully validated. Without usable indexes, the whole segment is.
        let trusted_end = match next_base {
            None if recovery_point > base && !config.verify_on_open => {
                trusted_prefix(&mut seg, len, recovery_point, interval, storage)
            }
            _ => None,
        };
        let scan = match trusted_end {
            Some(Trusted { end, indexes_unchanged }) => {
                let scan = segment::scan_from(&mut seg, end, len, interval, true)?;
                if indexes_unchanged && scan.stopped.is_none() && seg.size == end {
                    active_indexes = Some((base, seg.size));
                }
                scan
            }
            None => segment::scan(&mut seg, len, interval, true)?,
        };
        if let Some(reason) = scan.stopped {
            tracing::warn!(
                file = %path.display(), position = scan.valid_end, bytes_cut = len - scan.valid_end,
                %reason, "truncating log at the first invalid batch"
            );
            seg.file.set_len(scan.valid_end).map_err(|e| LogError::io("truncate", &path, e))?;
            crate::metrics::RECOVERY_TRUNCATIONS.inc();
            truncated_at = Some(i);
        }
        // What was scanned past the recovery point is about to be served and called durable
        // (the new recovery point is the log end): make it so. A log closed cleanly has
        // nothing past its recovery point and costs no sync here.
        if seg.next_offset > recovery_point || truncated_at == Some(i) {
            seg.file.sync_data().map_err(|e| LogError::io("fdatasync", &path, e))?;
        }
        if next_base.is_some() && truncated_at.is_none() {
            write_indexes(&seg, storage)?;
        }
        segments.push(seg);
        if truncated_at.is_some() {
            break;
        }
    }
    if let Some(i) = truncated_at {
        for &base in &bases[i + 1..] {
            for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let p = file_path(dir, base, suffix);
                if storage.exists(&p) {
                    tracing::warn!(file = %p.display(), "deleting segment after a truncation point");
                    storage.remove_file(&p).map_err(|e| LogError::io("remove", &p, e))?;
                }
            }
        }
    }
    let first = segments[0].base_offset;
    let end = segments.last().map_or(first, |s| s.next_offset);
    let log_start = cp.map_or(first, |c| c.log_start_offset.max(first)).min(end);
    Ok(Recovered { segments, log_start, checkpoint: cp, active_indexes })
}

fn write_indexes(seg: &Segment, storage: &dyn Storage) -> Result<(), LogError> {
    let (ip, tp) = (seg.index_path(), seg.time_index_path());
    write_atomic(storage, &ip, &encode_index(&seg.index)).map_err(|e| LogError::io("write index", &ip, e))?;
    write_atomic(storage, &tp, &encode_time_index(&seg.time_index)).map_err(|e| LogError::io("write index", &tp, e))
}

/// A segment wholly before the recovery point: its data was durable, so damage here is
/// corruption, not a torn write. Load its indexes, checking them; rebuild what is wrong.
fn load_trusted(
    seg: &mut Segment,
    len: u64,
    next_base: u64,
    config: &LogConfig,
    storage: &dyn Storage,
) -> Result<(), LogError> {
    let interval = config.index_interval_bytes;
    if config.verify_on_open {
        let scan = segment::scan(seg, len, interval, true)?;
        if let Some(reason) = scan.stopped {
            return Err(seg.corrupt(scan.valid_end, reason));
        }
        return write_indexes(seg, storage);
    }
    seg.size = len;
    seg.next_offset = next_base;
    let loaded = load_indexes(seg, len, next_base, storage);
    let rebuilt = match loaded {
        Ok(()) => match extend_from_last_entry(seg, len, interval) {
            Ok(extended) => extended,
            Err(reason) => {
                tracing::warn!(file = %seg.index_path().display(), reason, "index inconsistent with segment; rebuilding");
                walk_headers(seg, len, interval)?;
                true
            }
        },
        Err(reason) => {
            tracing::warn!(file = %seg.index_path().display(), reason, "rebuilding index");
            walk_headers(seg, len, interval)?;
            true
        }
    };
    if rebuilt {
        write_indexes(seg, storage)?;
    }
    Ok(())
}

fn load_indexes(seg: &mut Segment, len: u64, next_base: u64, storage: &dyn Storage) -> Result<(), &'static str> {
    let (ip, tp) = (seg.index_path(), seg.time_index_path());
    if !storage.exists(&ip) || !storage.exists(&tp) {
        return Err("index file missing");
    }
    let idx = read_whole(storage, &ip).map_err(|_| "index unreadable")?;
    let tidx = read_whole(storage, &tp).map_err(|_| "time index unreadable")?;
    seg.index = decode_index(&idx, len)?;
    seg.time_index = decode_time_index(&tidx, next_base.saturating_sub(seg.base_offset))?;
    Ok(())
}

/// Checks the last index entry against the batch it points at, then walks the batches after
/// it (covering an index that is short). Returns whether entries were added.
fn extend_from_last_entry(seg: &mut Segment, len: u64, interval: u32) -> Result<bool, &'static str> {
    let start = match seg.index.last() {
        None => 0,
        Some(e) => {
            let h = read_header(&*seg.file, &seg.path, u64::from(e.position), len)
                .map_err(|_| "last entry points at no batch")?;
            if h.base_offset as u64 != seg.base_offset + u64::from(e.relative_offset) {
                return Err("last entry's offset does not match its batch");
            }
            u64::from(e.position)
        }
    };
    let before = seg.index.len();
    let mut expected = match seg.index.last() {
        None => seg.base_offset,
        Some(e) => seg.base_offset + u64::from(e.relative_offset),
    };
    seg.max_timestamp = seg.time_index.last().map_or(i64::MIN, |t| t.timestamp);
    seg.bytes_since_index = 0;
    let mut pos = start;
    while pos < len {
        let h = read_header(&*seg.file, &seg.path, pos, len).map_err(|_| "invalid batch after the last entry")?;
        check_placement(&h, expected).map_err(|_| "batch offsets after the last entry are not contiguous")?;
        expected = h.last_offset() as u64 + 1;
        let l = h.total_len() as u64;
        seg.observe(pos, l, h.base_offset as u64, h.last_offset() as u64, h.max_timestamp, interval);
        pos += l;
    }
    if seg.time_index.last().is_some_and(|t| u64::from(t.relative_offset) >= seg.next_offset - seg.base_offset) {
        return Err("time index points past the last batch");
    }
    Ok(seg.index.len() != before)
}

/// Loads the indexes of the last segment (written when it was closed cleanly) and walks
/// batch headers from the last entry up to the recovery point, checking their placement.
/// Returns the byte position where the batches at or past `recovery_point` begin, with
/// `seg` describing everything before it; None (and `seg` to be rebuilt by a full scan)
/// when the indexes are missing or disagree with the segment.
fn trusted_prefix(
    seg: &mut Segment,
    len: u64,
    recovery_point: u64,
    interval: u32,
    storage: &dyn Storage,
) -> Option<Trusted> {
    if load_indexes(seg, len, recovery_point, storage).is_err() {
        return None;
    }
    let rp_rel = recovery_point - seg.base_offset;
    let loaded = (seg.index.len(), seg.time_index.len());
    seg.index.retain(|e| u64::from(e.relative_offset) < rp_rel);
    let (mut pos, mut expected) = match seg.index.last() {
        None => (0, seg.base_offset),
        Some(e) => (u64::from(e.position), seg.base_offset + u64::from(e.relative_offset)),
    };
    let last_rel = seg.index.last().map_or(0, |e| e.relative_offset);
    if seg.index.is_empty() {
        seg.time_index.clear();
    } else {
        seg.time_index.retain(|t| t.relative_offset <= last_rel);
    }
    seg.max_timestamp = seg.time_index.last().map_or(i64::MIN, |t| t.timestamp);
    seg.bytes_since_index = 0;
    seg.size = pos;
    seg.next_offset = expected;
    while pos < len {
        // Below the recovery point a batch that does not parse or sits in the wrong place
        // means the indexes or the data are not what the checkpoint vouched for: scan whole.
        let h = read_header(&*seg.file, &seg.path, pos, len).ok()?;
        check_placement(&h, expected).ok()?;
        let last = h.last_offset() as u64;
        if last >= recovery_point {
            break;
        }
        let l = h.total_len() as u64;
        seg.observe(pos, l, expected, last, h.max_timestamp, interval);
        expected = last + 1;
        pos += l;
    }
    let indexes_unchanged = (seg.index.len(), seg.time_index.len()) == loaded;
    Some(Trusted { end: pos, indexes_unchanged })
}

/// How far [`trusted_prefix`] got.
struct Trusted {
    /// Byte position of the first batch at or past the recovery point.
    end: u64,
    /// The index files on disk hold exactly the entries rebuilt for the prefix.
    indexes_unchanged: bool,
}

/// Rebuilds both indexes from batch headers (structure checked, CRC not: that is the job of
/// reads and of `verify_on_open`).
fn walk_headers(seg: &mut Segment, len: u64, interval: u32) -> Result<(), LogError> {
    seg.index.clear();
    seg.time_index.clear();
    seg.bytes_since_index = 0;
    seg.max_timestamp = i64::MIN;
    seg.next_offset = seg.base_offset;
    let mut pos = 0;
    let mut expected = seg.base_offset;
    while pos < len {
        let h = read_header(&*seg.file, &seg.path, pos, len)?;
        check_placement(&h, expected).map_err(|reason| seg.corrupt(pos, reason))?;
        expected = h.last_offset() as u64 + 1;
        let l = h.total_len() as u64;
        seg.observe(pos, l, h.base_offset as u64, h.last_offset() as u64, h.max_timestamp, interval);
        pos += l;
    }
    Ok(())
}
