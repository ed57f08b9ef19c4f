//! Builds uncompressed RecordBatch v2 bytes: for tests, benchmarks and the HTTP produce path.

use crate::batch::{write_batch, BatchHeader};
use crate::record::encode_record;

/// Accumulates records, then writes one batch. Reusable: `build_into` then `clear`.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    records: Vec<u8>,
    count: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Default for BatchBuilder {
    /// Not idempotent: producer id, epoch and sequence are -1 (0 would name producer 0).
    fn default() -> Self {
        Self {
            records: Vec::new(),
            count: 0,
            base_timestamp: None,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the batch as coming from an idempotent producer.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn push(&mut self, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> &mut Self {
        self.push_with_headers(timestamp, key, value, &[])
    }

    pub fn push_with_headers(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> &mut Self {
        let base = *self.base_timestamp.get_or_insert(timestamp);
        if self.count == 0 || timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        encode_record(&mut self.records, self.count, timestamp - base, key, value, headers);
        self.count += 1;
        self
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn build_into(&self, out: &mut Vec<u8>) {
        let fields = BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp.unwrap_or(0),
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count: self.count,
        };
        write_batch(out, &fields, &self.records);
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(61 + self.records.len());
        self.build_into(&mut out);
        out
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.count = 0;
        self.base_timestamp = None;
    }
}
