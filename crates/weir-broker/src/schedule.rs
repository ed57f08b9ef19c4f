//! Which partitions have timed work (an interval flush, a roll by age) and when it is due,
//! so the once-a-second tick touches only the partitions that are due, never all of them.
//! A partition is entered when an append gives it such work and it is not entered yet; the
//! tick takes the due entries, does the work and enters the partition again if more is
//! pending. An entry may be stale (the work was done otherwise): taking it then costs one
//! check.

use crate::partition::Partition;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use weir_log::unpoisoned::UnpoisonedMutex;

#[derive(Debug, Default)]
pub(crate) struct Schedule {
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
    /// Tie-breaker, so entries need no order on partitions.
    seq: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    due_ms: i64,
    seq: u64,
    partition: Weak<Partition>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.seq) == (other.due_ms, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due_ms, self.seq).cmp(&(other.due_ms, other.seq))
    }
}

impl Schedule {
    pub fn add(&self, due_ms: i64, partition: Weak<Partition>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.heap.lock_unpoisoned().push(Reverse(Entry { due_ms, seq, partition }));
    }

    /// Removes and returns the partitions due at `now_ms` (deleted ones are dropped).
    pub fn take_due(&self, now_ms: i64) -> Vec<Arc<Partition>> {
        let mut heap = self.heap.lock_unpoisoned();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse(e)| e.due_ms <= now_ms) {
            if let Some(Reverse(e)) = heap.pop() {
                due.extend(e.partition.upgrade());
            }
        }
        due
    }

    /// Entries waiting (for tests and metrics).
    pub fn len(&self) -> usize {
        self.heap.lock_unpoisoned().len()
    }
}
