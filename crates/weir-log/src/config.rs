//! Per-log settings (a topic's configs, as far as storage is concerned).

/// When appended data is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Group commit: callers await `sync_to`; one fdatasync covers every batch before it.
    Always,
    /// fdatasync at most this often (checked on append and by `flush_if_due`).
    IntervalMs(u64),
    /// Page cache only; data is synced when a segment rolls and on close.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogConfig {
    /// Roll the active segment when it would grow past this (Kafka `segment.bytes`).
    pub segment_bytes: u64,
    /// Roll the active segment when its first batch is older than this (`segment.ms`).
    pub segment_ms: Option<i64>,
    /// Subtracted from `segment_ms` per segment, deterministically from the log's directory
    /// and the segment's base offset, in `0..min(segment_jitter_ms, segment_ms)`
    /// (`segment.jitter.ms`): logs created together do not all roll at once.
    pub segment_jitter_ms: i64,
    /// Bytes of log between two offset-index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Bound of a segment's index files (`segment.index.bytes`): the active segment rolls
    /// once its offset index holds `segment_index_bytes / 8` entries or its time index
    /// `segment_index_bytes / 12`.
    pub segment_index_bytes: u32,
    /// Largest batch accepted (`max.message.bytes`).
    pub max_batch_bytes: usize,
    pub durability: Durability,
    /// Also fdatasync (in the appending call) once this many offsets are not yet durable
    /// (`flush.messages`; None: only `durability` decides).
    pub flush_messages: Option<u64>,
    /// Delete closed segments whose newest timestamp is older than this (`retention.ms`).
    pub retention_ms: Option<i64>,
    /// Keep the log at most this large, in whole closed segments (`retention.bytes`).
    pub retention_bytes: Option<u64>,
    pub cleanup_policy: CleanupPolicy,
    /// How long compaction keeps tombstones (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// Compaction leaves alone every segment from the first one holding a batch newer than
    /// this (by batch maxTimestamp), so a record stays uncompacted at least this long
    /// (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// A compaction pass runs only when the dirty part of the cleanable segments (those not
    /// compacted since the log was opened) is at least this fraction of their bytes
    /// (`min.cleanable.dirty.ratio`); 0 compacts at every pass.
    pub min_cleanable_dirty_ratio: f64,
    /// A dirty closed segment whose first batch is older than this is compacted whatever
    /// the ratio, and (compacted logs) the active segment rolls at this age at the latest
    /// (`max.compaction.lag.ms`; i64::MAX: no bound).
    pub max_compaction_lag_ms: i64,
    /// Segments that retention or DeleteRecords remove are renamed `*.deleted` and removed
    /// this long after, at the next maintenance pass (`file.delete.delay.ms`); 0 removes
    /// them at once.
    pub file_delete_delay_ms: i64,
    /// Check the CRC of every batch before the recovery point when opening.
    pub verify_on_open: bool,
}

/// Largest segment: index positions are u32 and Kafka caps segment.bytes at i32::MAX.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            segment_jitter_ms: 0,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            max_batch_bytes: 1_048_588,
            durability: Durability::Never,
            flush_messages: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            min_cleanable_dirty_ratio: 0.5,
            max_compaction_lag_ms: i64::MAX,
            file_delete_delay_ms: 60_000,
            verify_on_open: false,
        }
    }
}

impl LogConfig {
    /// The age at which the active segment rolls: `segment_ms`, bounded by
    /// `max_compaction_lag_ms` when the log compacts (so no record waits longer than the lag
    /// in the active segment, which compaction never touches), as Kafka's `maxSegmentMs`.
    pub fn roll_age_ms(&self) -> Option<i64> {
        if self.cleanup_policy.compacts() && self.max_compaction_lag_ms != i64::MAX {
            let lag = self.max_compaction_lag_ms;
            return Some(self.segment_ms.map_or(lag, |ms| ms.min(lag)));
        }
        self.segment_ms
    }

    /// Most entries of a segment's offset index and of its time index (8 and 12 bytes each).
    pub fn index_entries_max(&self) -> (usize, usize) {
        let bytes = self.segment_index_bytes as usize;
        (bytes / crate::index::INDEX_ENTRY_LEN, bytes / crate::index::TIME_ENTRY_LEN)
    }

    pub fn validate(&self) -> Result<(), crate::LogError> {
        let bad = |reason| Err(crate::LogError::Config { reason });
        if self.segment_bytes < 1024 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return bad("segment_bytes must be between 1 KiB and 2 GiB");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive");
        }
        if self.segment_index_bytes < 4 {
            return bad("segment_index_bytes must be at least 4");
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return bad("min_cleanable_dirty_ratio must be between 0 and 1");
        }
        if self.max_compaction_lag_ms < 1 || self.segment_jitter_ms < 0 || self.file_delete_delay_ms < 0 {
            return bad(
                "max_compaction_lag_ms must be positive, segment_jitter_ms and file_delete_delay_ms not negative",
            );
        }
        if self.max_batch_bytes < crate::batch::HEADER_LEN || self.max_batch_bytes as u64 > SEGMENT_BYTES_MAX {
            return bad("max_batch_bytes out of range");
        }
        Ok(())
    }
}
