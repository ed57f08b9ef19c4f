//! Idempotent producers: producer-id allocation and per-partition sequence tracking.

use crate::error::BrokerError;
use std::collections::{HashMap, VecDeque};
use weir_log::{read_whole, write_atomic, BatchHeader, Storage};

/// Batches remembered per producer for de-duplicating retries (Kafka keeps 5, the maximum
/// in-flight requests an idempotent producer may have).
const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecentBatch {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<RecentBatch>,
    /// maxTimestamp of the producer's last batch (DescribeProducers).
    last_timestamp: i64,
}

/// One idempotent producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
}

impl ProducerEntry {
    fn last_seq(&self) -> Option<i32> {
        self.recent.back().map(|b| b.last_seq)
    }
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// A retry of a batch already in the log at this base offset: answer without appending.
    Duplicate { base_offset: u64 },
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_seq_of(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX like Kafka's.
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

/// Sequence state of every producer writing to one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// Decides whether a batch is next in sequence, a duplicate, or an error.
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, BrokerError> {
        if h.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer: its state may have been lost to retention, so accept any
            // starting sequence (Kafka since KIP-360 does the same for new epochs).
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(BrokerError::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            if h.base_sequence != 0 {
                return Err(BrokerError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let last = last_seq_of(h);
        if let Some(dup) = entry.recent.iter().find(|b| b.first_seq == h.base_sequence && b.last_seq == last) {
            return Ok(SequenceCheck::Duplicate { base_offset: dup.base_offset });
        }
        let expected = entry.last_seq().map_or(0, next_seq);
        if h.base_sequence != expected {
            return Err(BrokerError::OutOfOrderSequence { producer_id: h.producer_id, expected, got: h.base_sequence });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch that is now in the log at `base_offset`.
    pub fn record(&mut self, h: &BatchHeader, base_offset: u64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == RECENT_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(RecentBatch { first_seq: h.base_sequence, last_seq: last_seq_of(h), base_offset });
        entry.last_timestamp = h.max_timestamp;
    }

    /// Every producer with state on this partition, by id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(&id, e)| ActiveProducer {
                producer_id: id,
                epoch: e.epoch,
                last_sequence: e.last_seq().unwrap_or(-1),
                last_timestamp: e.last_timestamp,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Current epoch of a producer on this partition.
    pub fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }
}

/// Hands out producer ids in blocks persisted before use, so ids never repeat after a
/// restart or crash.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: std::path::PathBuf,
    next: i64,
    block_end: i64,
}

const ID_BLOCK: i64 = 1000;

impl ProducerIdAllocator {
    pub fn open(storage: &dyn Storage, path: std::path::PathBuf) -> Result<Self, BrokerError> {
        let next = if storage.exists(&path) {
            let bytes = read_whole(storage, &path).map_err(|e| BrokerError::io(&path, e))?;
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| BrokerError::Metadata { path: path.clone(), reason: "not an integer".into() })?
        } else {
            0
        };
        Ok(Self { path, next, block_end: next })
    }

    pub fn allocate(&mut self, storage: &dyn Storage) -> Result<i64, BrokerError> {
        if self.next >= self.block_end {
            let end = self.next + ID_BLOCK;
            write_atomic(storage, &self.path, end.to_string().as_bytes())
                .map_err(|e| BrokerError::io(&self.path, e))?;
            self.block_end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}
