//! Error types of the log. Each carries the structured facts a log line or a Kafka error
//! code needs.

use std::path::PathBuf;

/// Why a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    #[error("batch too short: need {need} bytes, have {have}")]
    TooShort { need: usize, have: usize },
    #[error("invalid batch length {length}")]
    BadLength { length: i32 },
    #[error("unsupported magic byte {magic} (only 2 is accepted)")]
    BadMagic { magic: i8 },
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("records count {records_count} inconsistent with last offset delta {last_offset_delta}")]
    BadCount { records_count: i32, last_offset_delta: i32 },
    #[error("batch of {size} bytes is larger than the {max} bytes max.message.bytes allows")]
    TooLarge { size: usize, max: usize },
    #[error("{have} bytes given for a batch of {batch} bytes")]
    TrailingBytes { batch: usize, have: usize },
    #[error("batch has base offset {found} where offset {expected} belongs, or a nonzero leader epoch")]
    Misplaced { expected: u64, found: i64 },
    #[error("malformed record at byte {position} of the records section")]
    BadRecord { position: usize },
}

/// Errors of log operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("invalid batch: {0}")]
    Batch(#[from] BatchError),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: BatchError },
    #[error("corrupt index or checkpoint file {path}: {reason}")]
    CorruptMeta { path: PathBuf, reason: &'static str },
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange { offset: u64, log_start: u64, log_end: u64 },
    #[error("the log failed earlier ({reason}) and must be reopened")]
    Failed { reason: &'static str },
    #[error("invalid log configuration: {reason}")]
    Config { reason: &'static str },
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io { op, path: path.into(), source }
    }

    /// True when the error came from a full disk (ENOSPC / EDQUOT).
    pub fn is_storage_full(&self) -> bool {
        matches!(self, LogError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::StorageFull
                || source.kind() == std::io::ErrorKind::QuotaExceeded)
    }
}
