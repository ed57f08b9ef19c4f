//! Broker errors. Each maps to one Kafka error code in weir-server.

use weir_log::{BatchError, LogError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("unknown topic or partition: {topic}/{partition}")]
    UnknownTopicOrPartition { topic: String, partition: i32 },
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: &'static str },
    #[error("invalid partition count {0}")]
    InvalidPartitions(i32),
    #[error("replication factor {0} is impossible on a single node")]
    InvalidReplicationFactor(i16),
    /// A topic config refused: the reason says what is valid (Kafka's range, for numbers).
    #[error("invalid value {value:?} for topic config {key}: {reason}")]
    InvalidConfig { key: String, value: String, reason: String },
    /// The producer's batch breaks a rule (its size against max.message.bytes among them);
    /// whichever layer noticed, this is the one shape front ends see.
    #[error("{0}")]
    InvalidBatch(#[from] BatchError),
    #[error(
        "offset {offset} is out of range: this partition has offsets {log_start} up to its end {log_end} \
         (reading at the end waits for new records)"
    )]
    OffsetOutOfRange { offset: u64, log_start: u64, log_end: u64 },
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    ProducerFenced { producer_id: i64, epoch: i16, current: i16 },
    #[error("producer {producer_id}: sequence {got} where {expected} was expected")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
    #[error("{0}")]
    Storage(LogError),
    #[error("I/O error on {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("invalid metadata file {path}: {reason}")]
    Metadata { path: std::path::PathBuf, reason: String },
    #[error(
        "record timestamp {timestamp} is outside the topic's message.timestamp.before/after.max.ms bounds (now {now})"
    )]
    InvalidTimestamp { timestamp: i64, now: i64 },
    #[error("min.insync.replicas is {required} but a single node has 1 in-sync replica: acks=all cannot be met")]
    NotEnoughReplicas { required: i32 },
    #[error("{0}")]
    InvalidRequest(&'static str),
}

impl From<LogError> for BrokerError {
    /// A rejected batch and an offset out of range are the caller's doing, not storage
    /// failures: they get their own variants, so each has one shape above the log.
    fn from(e: LogError) -> Self {
        match e {
            LogError::Batch(b) => BrokerError::InvalidBatch(b),
            LogError::OffsetOutOfRange { offset, log_start, log_end } => {
                BrokerError::OffsetOutOfRange { offset, log_start, log_end }
            }
            e => BrokerError::Storage(e),
        }
    }
}

impl BrokerError {
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        BrokerError::Io { path: path.into(), source }
    }
}
