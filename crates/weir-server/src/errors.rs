//! Kafka error codes, and the mapping from broker errors to them.

use weir_broker::BrokerError;
use weir_log::{BatchError, LogError};

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const MESSAGE_TOO_LARGE: i16 = 10;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const INVALID_TIMESTAMP: i16 = 32;
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
pub const INVALID_CONFIG: i16 = 40;
pub const INVALID_REQUEST: i16 = 42;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const INVALID_RECORD: i16 = 87;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
/// The answer to anything that needs a transaction coordinator, until transactions exist.
/// It must be non-retriable for every client: librdkafka retries every FindCoordinator and
/// InitProducerId error except the authorization ones (and INVALID_TRANSACTION_TIMEOUT)
/// until `init_transactions` times out, and the Java client treats this one as fatal too.
/// The error message (FindCoordinator v1+, Produce v8+) says that transactions are missing.
pub const TRANSACTIONS_UNSUPPORTED: i16 = TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
pub const TRANSACTIONS_UNSUPPORTED_MESSAGE: &str =
    "transactions are not supported by this broker (Weir has no transaction coordinator): \
     use an idempotent producer without transactional.id";

pub fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::CrcMismatch { .. } => CORRUPT_MESSAGE,
        BatchError::TooLarge { .. } => MESSAGE_TOO_LARGE,
        _ => INVALID_RECORD,
    }
}

pub fn error_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::UnknownTopicOrPartition { .. } => UNKNOWN_TOPIC_OR_PARTITION,
        BrokerError::TopicExists(_) => TOPIC_ALREADY_EXISTS,
        BrokerError::InvalidTopic { .. } => INVALID_TOPIC_EXCEPTION,
        BrokerError::InvalidPartitions(_) => INVALID_PARTITIONS,
        BrokerError::InvalidReplicationFactor(_) => INVALID_REPLICATION_FACTOR,
        BrokerError::InvalidConfig { .. } => INVALID_CONFIG,
        BrokerError::InvalidBatch(b) => batch_error_code(b),
        BrokerError::ProducerFenced { .. } => INVALID_PRODUCER_EPOCH,
        BrokerError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
        BrokerError::Storage(LogError::OffsetOutOfRange { .. }) => OFFSET_OUT_OF_RANGE,
        BrokerError::Storage(LogError::Batch(b)) => batch_error_code(b),
        BrokerError::Storage(LogError::Config { .. }) => INVALID_CONFIG,
        BrokerError::Storage(_) => KAFKA_STORAGE_ERROR,
        BrokerError::InvalidRequest(_) => INVALID_REQUEST,
        BrokerError::InvalidTimestamp { .. } => INVALID_TIMESTAMP,
        BrokerError::NotEnoughReplicas { .. } => NOT_ENOUGH_REPLICAS,
        _ => UNKNOWN_SERVER_ERROR,
    }
}
