//! Event-time watermarks: per source partition, the max event time seen minus the allowed
//! out-of-orderness; the pipeline's watermark is the minimum over active partitions. A
//! partition with no data for `idle_timeout` (processing time) stops holding it back.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct PartitionTime {
    max_event_ms: i64,
    last_seen_processing_ms: i64,
    /// Declared idle by its sender (an upstream task caught up with a silent partition):
    /// it does not hold the watermark back until it sends again.
    #[serde(default)]
    idle: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Watermarks {
    out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    partitions: BTreeMap<i32, PartitionTime>,
    /// Watermarks never go back, even when a partition joins late.
    current_ms: i64,
}

impl Watermarks {
    pub fn new(out_of_orderness_ms: i64, idle_timeout_ms: i64) -> Self {
        Self { out_of_orderness_ms, idle_timeout_ms, partitions: BTreeMap::new(), current_ms: i64::MIN }
    }

    /// A partition that holds the watermark back from the start, before it has sent anything
    /// (an upstream task of a repartitioned stage: without it the first upstream to report
    /// would set the watermark alone).
    pub fn expect_partition(&mut self, partition: i32) {
        self.partitions.entry(partition).or_insert(PartitionTime {
            max_event_ms: i64::MIN,
            last_seen_processing_ms: 0,
            idle: false,
        });
    }

    /// Records an event and returns the (possibly advanced) watermark.
    pub fn observe(&mut self, partition: i32, event_ms: i64, now_ms: i64) -> i64 {
        let p = self.partitions.entry(partition).or_insert(PartitionTime {
            max_event_ms: i64::MIN,
            last_seen_processing_ms: now_ms,
            idle: false,
        });
        p.max_event_ms = p.max_event_ms.max(event_ms);
        p.last_seen_processing_ms = now_ms;
        p.idle = false;
        self.recompute(now_ms)
    }

    /// A partition's sender says it is idle: it stops holding the watermark back until it
    /// is observed again.
    pub fn set_idle(&mut self, partition: i32, now_ms: i64) -> i64 {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.idle = true;
        }
        self.recompute(now_ms)
    }

    /// Re-evaluates idleness without a new event (call periodically).
    pub fn tick(&mut self, now_ms: i64) -> i64 {
        self.recompute(now_ms)
    }

    /// Forces the watermark forward (test driver, end of a bounded input).
    pub fn advance_to(&mut self, watermark_ms: i64) -> i64 {
        self.current_ms = self.current_ms.max(watermark_ms);
        self.current_ms
    }

    pub fn idle_timeout_ms(&self) -> i64 {
        self.idle_timeout_ms
    }

    pub fn current(&self) -> i64 {
        self.current_ms
    }

    fn recompute(&mut self, now_ms: i64) -> i64 {
        let active = self
            .partitions
            .values()
            .filter(|p| !p.idle && now_ms.saturating_sub(p.last_seen_processing_ms) < self.idle_timeout_ms);
        let min =
            active.map(|p| p.max_event_ms).min().or_else(|| self.partitions.values().map(|p| p.max_event_ms).max());
        if let Some(m) = min {
            if m > i64::MIN {
                self.current_ms = self.current_ms.max(m.saturating_sub(self.out_of_orderness_ms));
            }
        }
        self.current_ms
    }
}
