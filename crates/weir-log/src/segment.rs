//! One segment: a `.log` file of whole batches plus its in-memory indexes.

use crate::batch::{check_stored_header, validate_stored, BatchHeader, HEADER_LEN};
use crate::error::{BatchError, LogError};
use crate::index::{IndexEntry, TimeEntry};
use crate::storage::StorageFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
pub const CLEANED_SUFFIX: &str = ".cleaned";

/// `{base:020}{suffix}` inside `dir`, as Kafka names segment files.
pub fn file_path(dir: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// Parses a segment base offset out of `00000000000000000042.log`.
pub fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(LOG_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    /// Path of the `.log` file, shared so errors can name it without allocating on the hot path.
    pub path: Arc<Path>,
    pub file: Arc<dyn StorageFile>,
    /// Bytes of whole, published batches.
    pub size: u64,
    /// One past the last offset stored in this segment.
    pub next_offset: u64,
    pub index: Vec<IndexEntry>,
    pub time_index: Vec<TimeEntry>,
    /// Largest batch maxTimestamp in the segment (i64::MIN when empty).
    pub max_timestamp: i64,
    /// Log bytes appended since the last offset-index entry.
    pub bytes_since_index: u64,
    /// Clock time of the first append, for roll by age.
    pub first_append_ms: Option<i64>,
}

impl Segment {
    pub fn new(dir: &Path, base_offset: u64, file: Arc<dyn StorageFile>) -> Self {
        Self {
            base_offset,
            path: Arc::from(file_path(dir, base_offset, LOG_SUFFIX)),
            file,
            size: 0,
            next_offset: base_offset,
            index: Vec::new(),
            time_index: Vec::new(),
            max_timestamp: i64::MIN,
            bytes_since_index: 0,
            first_append_ms: None,
        }
    }

    pub fn index_path(&self) -> PathBuf {
        self.path.with_extension(&INDEX_SUFFIX[1..])
    }

    pub fn time_index_path(&self) -> PathBuf {
        self.path.with_extension(&TIME_INDEX_SUFFIX[1..])
    }

    /// Records a batch of `len` bytes written at `position`, adding index entries every
    /// `index_interval` bytes. The first batch needs no entry: lookups fall back to 0.
    pub fn observe(&mut self, position: u64, len: u64, base: u64, last: u64, max_ts: i64, index_interval: u32) {
        let relative = (base - self.base_offset) as u32;
        if self.bytes_since_index >= u64::from(index_interval) {
            self.index.push(IndexEntry { relative_offset: relative, position: position as u32 });
            self.bytes_since_index = 0;
            self.push_time_entry(relative);
        }
        self.bytes_since_index += len;
        if max_ts > self.max_timestamp {
            self.max_timestamp = max_ts;
        }
        self.size = position + len;
        self.next_offset = last + 1;
    }

    /// Adds a time-index entry for the current max timestamp if it grew.
    pub fn push_time_entry(&mut self, relative: u32) {
        if self.max_timestamp == i64::MIN {
            return;
        }
        if self.time_index.last().is_none_or(|t| self.max_timestamp > t.timestamp) {
            self.time_index.push(TimeEntry { timestamp: self.max_timestamp, relative_offset: relative });
        }
    }

    /// Byte position of an indexed batch at or before `offset`, and that batch's base offset.
    pub fn lookup(&self, offset: u64) -> (u64, u64) {
        let rel = offset.saturating_sub(self.base_offset);
        let i = self.index.partition_point(|e| u64::from(e.relative_offset) <= rel);
        if i == 0 {
            (0, self.base_offset)
        } else {
            let e = self.index[i - 1];
            (u64::from(e.position), self.base_offset + u64::from(e.relative_offset))
        }
    }

    /// Where to start a scan for the first batch with maxTimestamp >= `ts`.
    pub fn lookup_time(&self, ts: i64) -> (u64, u64) {
        let i = self.time_index.partition_point(|e| e.timestamp < ts);
        if i == 0 {
            (0, self.base_offset)
        } else {
            self.lookup(self.base_offset + u64::from(self.time_index[i - 1].relative_offset))
        }
    }

    pub fn corrupt(&self, position: u64, reason: BatchError) -> LogError {
        LogError::Corrupt { path: self.path.to_path_buf(), position, reason }
    }
}

/// Reads and structurally checks the batch header at `position` of a file whose valid data
/// ends at `end`.
pub(crate) fn read_header(
    file: &dyn StorageFile,
    path: &Path,
    position: u64,
    end: u64,
) -> Result<BatchHeader, LogError> {
    let available = end.saturating_sub(position);
    if available < HEADER_LEN as u64 {
        return Err(LogError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason: BatchError::TooShort { need: HEADER_LEN, have: available as usize },
        });
    }
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf, position).map_err(|e| LogError::io("read", path, e))?;
    let header = BatchHeader::parse(&buf)?;
    let avail = usize::try_from(available).unwrap_or(usize::MAX);
    check_stored_header(&header, avail).map_err(|reason| LogError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason,
    })?;
    Ok(header)
}

/// Reads the header at `position` and checks that its batch starts at `expected`.
pub(crate) fn read_placed_header(
    file: &dyn StorageFile,
    path: &Path,
    position: u64,
    end: u64,
    expected: u64,
) -> Result<BatchHeader, LogError> {
    let h = read_header(file, path, position, end)?;
    check_placement(&h, expected).map_err(|reason| LogError::Corrupt { path: path.to_path_buf(), position, reason })?;
    Ok(h)
}

/// Batches in a segment are contiguous: each starts one past the previous one's last offset
/// (compaction keeps emptied batches for this), and carries leader epoch 0. baseOffset and
/// the epoch lie outside the CRC, so this is what catches their corruption.
pub(crate) fn check_placement(header: &BatchHeader, expected_base: u64) -> Result<(), BatchError> {
    if header.base_offset < 0 || header.base_offset as u64 != expected_base || header.partition_leader_epoch != 0 {
        return Err(BatchError::Misplaced { expected: expected_base, found: header.base_offset });
    }
    Ok(())
}

/// Outcome of scanning a segment from its start.
pub(crate) struct Scan {
    /// Where the valid data ends.
    pub valid_end: u64,
    /// Why scanning stopped before the end of the file, if it did.
    pub stopped: Option<BatchError>,
}

/// Scans every batch of `seg` from position 0, fully validating (CRC) each when `verify`,
/// rebuilding the segment's indexes and counters as it goes. Stops at the first invalid or
/// torn batch. `file_len` is the file's length on disk.
pub(crate) fn scan(seg: &mut Segment, file_len: u64, index_interval: u32, verify: bool) -> Result<Scan, LogError> {
    seg.index.clear();
    seg.time_index.clear();
    seg.size = 0;
    seg.bytes_since_index = 0;
    seg.next_offset = seg.base_offset;
    seg.max_timestamp = i64::MIN;
    scan_from(seg, 0, file_len, index_interval, verify)
}

/// Continues a scan at byte `start` of `seg`, whose indexes and counters already describe
/// the batches before it (the next batch must start at `seg.next_offset`).
pub(crate) fn scan_from(
    seg: &mut Segment,
    start: u64,
    file_len: u64,
    index_interval: u32,
    verify: bool,
) -> Result<Scan, LogError> {
    let mut buf = Vec::new();
    let mut pos = start;
    let mut expected = seg.next_offset;
    while pos < file_len {
        let header = match read_header(&*seg.file, &seg.path, pos, file_len) {
            Ok(h) => h,
            Err(LogError::Corrupt { reason, .. }) => return Ok(Scan { valid_end: pos, stopped: Some(reason) }),
            Err(LogError::Batch(reason)) => return Ok(Scan { valid_end: pos, stopped: Some(reason) }),
            Err(e) => return Err(e),
        };
        let len = header.total_len() as u64;
        if verify {
            buf.resize(len as usize, 0);
            seg.file.read_exact_at(&mut buf, pos).map_err(|e| LogError::io("read", &*seg.path, e))?;
            if let Err(reason) = validate_stored(&buf) {
                return Ok(Scan { valid_end: pos, stopped: Some(reason) });
            }
        }
        if let Err(reason) = check_placement(&header, expected) {
            return Ok(Scan { valid_end: pos, stopped: Some(reason) });
        }
        let last = header.last_offset() as u64;
        seg.observe(pos, len, expected, last, header.max_timestamp, index_interval);
        expected = last + 1;
        pos += len;
    }
    Ok(Scan { valid_end: pos, stopped: None })
}
