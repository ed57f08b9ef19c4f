//! Kafka RecordBatch v2 (magic 2) headers: parsing and validation.
//!
//! The log stores batches byte-for-byte as clients send them. Only the header is interpreted
//! here; records are left to [`crate::record`]. Layout (big-endian), see docs/log-format.md:
//!
//! ```text
//! 0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32 | 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32
//! 57 recordsCount i32 | 61 records...
//! ```

use crate::error::BatchError;

pub const BASE_OFFSET: usize = 0;
pub const BATCH_LENGTH: usize = BASE_OFFSET + 8;
pub const PARTITION_LEADER_EPOCH: usize = BATCH_LENGTH + 4;
pub const MAGIC: usize = PARTITION_LEADER_EPOCH + 4;
pub const CRC: usize = MAGIC + 1;
pub const ATTRIBUTES: usize = CRC + 4;
pub const LAST_OFFSET_DELTA: usize = ATTRIBUTES + 2;
pub const BASE_TIMESTAMP: usize = LAST_OFFSET_DELTA + 4;
pub const MAX_TIMESTAMP: usize = BASE_TIMESTAMP + 8;
pub const PRODUCER_ID: usize = MAX_TIMESTAMP + 8;
pub const PRODUCER_EPOCH: usize = PRODUCER_ID + 8;
pub const BASE_SEQUENCE: usize = PRODUCER_EPOCH + 2;
pub const RECORDS_COUNT: usize = BASE_SEQUENCE + 4;
/// Size of the fixed batch header; records start here.
pub const HEADER_LEN: usize = RECORDS_COUNT + 4;
/// Bytes not counted by batchLength (baseOffset and batchLength itself).
pub const LOG_OVERHEAD: usize = BATCH_LENGTH + 4;

/// Attribute bits (Kafka's `RecordBatch` attributes).
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The fixed-size header of one batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the batchLength field; the batch occupies `batch_length + 12` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Decodes the header fields without checking them. `bytes` must hold `HEADER_LEN` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::TooShort { need: HEADER_LEN, have: bytes.len() });
        }
        Ok(Self {
            base_offset: i64_at(bytes, BASE_OFFSET),
            batch_length: i32_at(bytes, BATCH_LENGTH),
            partition_leader_epoch: i32_at(bytes, PARTITION_LEADER_EPOCH),
            magic: bytes[MAGIC] as i8,
            crc: u32_at(bytes, CRC),
            attributes: i16_at(bytes, ATTRIBUTES),
            last_offset_delta: i32_at(bytes, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(bytes, BASE_TIMESTAMP),
            max_timestamp: i64_at(bytes, MAX_TIMESTAMP),
            producer_id: i64_at(bytes, PRODUCER_ID),
            producer_epoch: i16_at(bytes, PRODUCER_EPOCH),
            base_sequence: i32_at(bytes, BASE_SEQUENCE),
            records_count: i32_at(bytes, RECORDS_COUNT),
        })
    }

    /// Total size of the batch on disk and on the wire.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Number of offsets this batch occupies (compaction may leave fewer records than that).
    pub fn offset_count(&self) -> u64 {
        self.last_offset_delta as u64 + 1
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// The batch says LogAppendTime: the broker's append time (maxTimestamp) is every
    /// record's timestamp.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// The timestamp of the record with this `timestamp_delta`: Kafka's one rule, for every
    /// reader (the HTTP API, the CLI, time lookups). CreateTime: base timestamp + delta;
    /// LogAppendTime: maxTimestamp, whatever the deltas say (they are left as produced).
    pub fn record_timestamp(&self, timestamp_delta: i64) -> i64 {
        if self.is_log_append_time() {
            self.max_timestamp
        } else {
            self.base_timestamp.wrapping_add(timestamp_delta)
        }
    }

    /// Checks structure without the CRC: magic, length bounds, counts.
    /// `strict` is for batches arriving from producers (records_count == lastOffsetDelta + 1);
    /// stored batches may hold fewer records after compaction.
    fn check_structure(&self, available: usize, strict: bool) -> Result<(), BatchError> {
        if self.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength { length: self.batch_length });
        }
        if self.magic != 2 {
            return Err(BatchError::BadMagic { magic: self.magic });
        }
        if self.total_len() > available {
            return Err(BatchError::TooShort { need: self.total_len(), have: available });
        }
        let count_ok = if strict {
            self.records_count > 0 && self.last_offset_delta == self.records_count - 1
        } else {
            self.last_offset_delta >= 0
                && self.records_count >= 0
                && self.records_count as i64 <= self.last_offset_delta as i64 + 1
        };
        if !count_ok {
            return Err(BatchError::BadCount {
                records_count: self.records_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        Ok(())
    }
}

/// CRC-32C over attributes..end, as stored in the batch's crc field.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// A batch that passed validation; only these can be appended.
#[derive(Debug, Clone, Copy)]
pub struct ValidatedBatch<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

impl<'a> ValidatedBatch<'a> {
    /// Validates one producer batch occupying exactly `bytes`: length, magic, CRC-32C,
    /// recordsCount against lastOffsetDelta, and size against `max_batch_bytes`.
    pub fn new(bytes: &'a [u8], max_batch_bytes: usize) -> Result<Self, BatchError> {
        let header = BatchHeader::parse(bytes)?;
        header.check_structure(bytes.len(), true)?;
        if header.total_len() != bytes.len() {
            return Err(BatchError::TrailingBytes { batch: header.total_len(), have: bytes.len() });
        }
        if bytes.len() > max_batch_bytes {
            return Err(BatchError::TooLarge { size: bytes.len(), max: max_batch_bytes });
        }
        check_crc(bytes, &header)?;
        Ok(Self { bytes, header })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

fn check_crc(bytes: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let computed = compute_crc(&bytes[..header.total_len()]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    Ok(())
}

/// Validates a batch read back from storage (lenient on record counts, which compaction
/// lowers). `bytes` may extend past the batch; returns the header.
pub fn validate_stored(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    header.check_structure(bytes.len(), false)?;
    check_crc(bytes, &header)?;
    Ok(header)
}

/// Checks only the header's structure of a stored batch (no CRC); used to walk segments.
pub fn check_stored_header(header: &BatchHeader, available: usize) -> Result<(), BatchError> {
    header.check_structure(available, false)
}

/// Overwrites baseOffset in place; the CRC does not cover it, so the batch stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites partitionLeaderEpoch in place (outside the CRC as well).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Writes a complete batch (header + already-encoded `records`) into `out`, with CRC. The
/// header's length, magic, epoch and CRC fields are computed, not taken from `fields`.
pub fn write_batch(out: &mut Vec<u8>, fields: &BatchHeader, records: &[u8]) {
    let start = out.len();
    let batch_length = (HEADER_LEN - LOG_OVERHEAD + records.len()) as i32;
    out.extend_from_slice(&fields.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&fields.attributes.to_be_bytes());
    out.extend_from_slice(&fields.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&fields.base_timestamp.to_be_bytes());
    out.extend_from_slice(&fields.max_timestamp.to_be_bytes());
    out.extend_from_slice(&fields.producer_id.to_be_bytes());
    out.extend_from_slice(&fields.producer_epoch.to_be_bytes());
    out.extend_from_slice(&fields.base_sequence.to_be_bytes());
    out.extend_from_slice(&fields.records_count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = compute_crc(&out[start..]);
    out[start + CRC..start + CRC + 4].copy_from_slice(&crc.to_be_bytes());
}
