//! weir-broker: topics, partitions, produce semantics and idempotent-producer state over
//! weir-log, plus topic configs in Kafka's names.
//!
//! Architecture invariant: no sockets, no async runtime, no Kafka wire types. Errors are
//! domain errors; weir-server maps them to Kafka error codes.

mod broker;
mod config;
mod error;
pub mod group;
mod partition;
pub mod partitioner;
mod producer;
mod schedule;
mod topic;

pub use broker::{Broker, ConfigChange, NewTopic};
pub use config::{
    apply_config, apply_default, config_kind, describe_config, parse_durability, BrokerConfig, ConfigKind,
    ProducePolicy, TimestampType, TopicConfig, TopicOverrides, TOPIC_CONFIG_KEYS,
};
pub use error::BrokerError;
pub use partition::{Appended, Partition, Traffic};
pub use producer::{ActiveProducer, ProducerStates, SequenceCheck};
pub use topic::{hex, validate_topic_name, Topic};
/// What `Partition::stats` and `Partition::read` answer.
pub use weir_log::{BatchError, LogStats, ReadInfo};
