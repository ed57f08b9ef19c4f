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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment when it would grow past this (Kafka `segment.bytes`).
    pub segment_bytes: u64,
    /// Roll the active segment when its first batch is older than this (`segment.ms`).
    pub segment_ms: Option<i64>,
    /// Bytes of log between two offset-index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Largest batch accepted (`max.message.bytes`).
    pub max_batch_bytes: usize,
    pub durability: Durability,
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
            index_interval_bytes: 4096,
            max_batch_bytes: 1_048_588,
            durability: Durability::Never,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            verify_on_open: false,
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), crate::LogError> {
        let bad = |reason| Err(crate::LogError::Config { reason });
        if self.segment_bytes < 1024 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return bad("segment_bytes must be between 1 KiB and 2 GiB");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive");
        }
        if self.max_batch_bytes < crate::batch::HEADER_LEN || self.max_batch_bytes as u64 > SEGMENT_BYTES_MAX {
            return bad("max_batch_bytes out of range");
        }
        Ok(())
    }
}
