//! Retention: delete whole closed segments by age or total size.

use crate::error::LogError;
use crate::log::Log;
use crate::segment::Segment;
use crate::unpoisoned::{UnpoisonedMutex, UnpoisonedRwLock};

/// What one retention pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionStats {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: u64,
}

impl Log {
    /// Deletes closed segments that are past `retention.ms` (their newest timestamp is older),
    /// beyond `retention.bytes` (oldest first, while the rest still meets the limit), or
    /// wholly below the log start offset. The active segment is never deleted. Files of
    /// earlier deletions whose `file.delete.delay.ms` has passed are removed first.
    pub fn enforce_retention(&self) -> Result<RetentionStats, LogError> {
        let config = self.config();
        let _m = self.maintenance.lock_unpoisoned();
        self.purge_deleted_files()?;
        let now = self.now_ms();
        let removed: Vec<Segment> = {
            let mut view = self.view.write_unpoisoned();
            let closed = view.segments.len() - 1;
            let mut remaining: u64 = view.segments.iter().map(|s| s.size).sum();
            let mut count = 0;
            while count < closed {
                let s = &view.segments[count];
                let deletes = config.cleanup_policy.deletes();
                let expired = deletes
                    && config.retention_ms.is_some_and(|ms| s.size == 0 || s.max_timestamp < now.saturating_sub(ms));
                let oversize = deletes && config.retention_bytes.is_some_and(|max| remaining - s.size >= max);
                let below_start = s.next_offset <= view.log_start;
                if !(expired || oversize || below_start) {
                    break;
                }
                remaining -= s.size;
                count += 1;
            }
            let removed: Vec<Segment> = view.segments.drain(..count).collect();
            if let Some(first) = view.segments.first() {
                view.log_start = view.log_start.max(first.base_offset);
            }
            removed
        };
        let stats = RetentionStats {
            segments_deleted: removed.len(),
            bytes_deleted: removed.iter().map(|s| s.size).sum(),
            log_start_offset: self.log_start_offset(),
        };
        if !removed.is_empty() {
            self.write_checkpoint()?;
            for seg in &removed {
                self.remove_segment_files(seg)?;
            }
        }
        Ok(stats)
    }
}
