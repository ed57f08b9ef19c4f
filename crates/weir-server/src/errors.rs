//! Kafka error codes (named after `ResponseError`, never written as numbers), and the
//! mapping from broker errors to them.

use kafka_protocol::ResponseError;

use weir_broker::BrokerError;
use weir_log::{BatchError, LogError};

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = ResponseError::UnknownServerError.code();
pub const OFFSET_OUT_OF_RANGE: i16 = ResponseError::OffsetOutOfRange.code();
pub const CORRUPT_MESSAGE: i16 = ResponseError::CorruptMessage.code();
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
pub const MESSAGE_TOO_LARGE: i16 = ResponseError::MessageTooLarge.code();
pub const NOT_ENOUGH_REPLICAS: i16 = ResponseError::NotEnoughReplicas.code();
pub const INVALID_TIMESTAMP: i16 = ResponseError::InvalidTimestamp.code();
pub const INVALID_TOPIC_EXCEPTION: i16 = ResponseError::InvalidTopicException.code();
pub const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();
pub const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();
pub const TOPIC_ALREADY_EXISTS: i16 = ResponseError::TopicAlreadyExists.code();
pub const INVALID_PARTITIONS: i16 = ResponseError::InvalidPartitions.code();
pub const INVALID_REPLICATION_FACTOR: i16 = ResponseError::InvalidReplicationFactor.code();
pub const INVALID_REPLICA_ASSIGNMENT: i16 = ResponseError::InvalidReplicaAssignment.code();
pub const INVALID_CONFIG: i16 = ResponseError::InvalidConfig.code();
pub const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = ResponseError::OutOfOrderSequenceNumber.code();
pub const INVALID_PRODUCER_EPOCH: i16 = ResponseError::InvalidProducerEpoch.code();
pub const KAFKA_STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();
pub const INVALID_RECORD: i16 = ResponseError::InvalidRecord.code();
pub const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
pub const NON_EMPTY_GROUP: i16 = ResponseError::NonEmptyGroup.code();
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = ResponseError::GroupSubscribedToTopic.code();
pub const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();
pub const INVALID_REQUIRED_ACKS: i16 = ResponseError::InvalidRequiredAcks.code();
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();
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
        BrokerError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        BrokerError::Storage(LogError::Config { .. }) => INVALID_CONFIG,
        BrokerError::Storage(_) => KAFKA_STORAGE_ERROR,
        BrokerError::InvalidRequest(_) => INVALID_REQUEST,
        BrokerError::InvalidTimestamp { .. } => INVALID_TIMESTAMP,
        BrokerError::NotEnoughReplicas { .. } => NOT_ENOUGH_REPLICAS,
        _ => UNKNOWN_SERVER_ERROR,
    }
}
