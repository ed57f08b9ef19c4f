//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! IncrementalAlterConfigs, DescribeCluster.

use super::str_bytes;
use crate::errors;
use crate::server::Shared;
use kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse as LegacyAlterResponse, AlterConfigsResponse,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{CreatePartitionsResponse, CreatePartitionsTopicResult};
use kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{DeletableTopicResult, DeleteTopicsResponse};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{DescribeClusterBroker, DescribeClusterResponse};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::describe_log_dirs_request::DescribeLogDirsRequest;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_request::DescribeProducersRequest;
use kafka_protocol::messages::describe_producers_response::{
    DescribeProducersResponse, PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};
use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
use weir_broker::{
    config_kind, describe_config, BrokerError, ConfigKind, NewTopic, Topic, TopicConfig, TOPIC_CONFIG_KEYS,
};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

fn message(e: &BrokerError) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(str_bytes(&e.to_string()))
}

/// (name, value, source) of every config of a topic: DYNAMIC_TOPIC_CONFIG when the topic
/// sets it, STATIC_BROKER_CONFIG when a serve flag changed the broker's default (e.g.
/// `--retention-ms`), DEFAULT_CONFIG otherwise, as Kafka reports them.
fn topic_configs(shared: &Shared, topic: &Topic) -> Result<Vec<(&'static str, String, i8)>, BrokerError> {
    let overrides = topic.overrides();
    let config = shared.broker.resolve_config(&overrides)?;
    let broker_defaults = TopicConfig::defaults(&shared.broker.config().log);
    let builtin = TopicConfig::defaults(&weir_log::LogConfig::default());
    Ok(TOPIC_CONFIG_KEYS
        .iter()
        .filter_map(|&k| {
            let source = if overrides.0.contains_key(k) {
                SOURCE_DYNAMIC_TOPIC
            } else if describe_config(&broker_defaults, k) != describe_config(&builtin, k) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            describe_config(&config, k).map(|v| (k, v, source))
        })
        .collect())
}

pub(crate) fn create_topics(shared: &Shared, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatableTopicResult::default().with_name(t.name.clone());
            if !t.assignments.is_empty() {
                return result.with_error_code(errors::INVALID_REPLICA_ASSIGNMENT).with_error_message(Some(str_bytes(
                    "manual replica assignment is not supported on a single node",
                )));
            }
            let new = NewTopic {
                name: t.name.0.to_string(),
                partitions: (t.num_partitions != -1).then_some(t.num_partitions),
                replication_factor: (t.replication_factor != -1).then_some(t.replication_factor),
                configs: t
                    .configs
                    .iter()
                    .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                    .collect(),
            };
            match shared.broker.create_topic(&new, req.validate_only) {
                Ok(topic) => {
                    let mut r = result;
                    if version >= 7 {
                        r = r.with_topic_id(uuid::Uuid::from_bytes(topic.id));
                    }
                    if version >= 5 {
                        r = r
                            .with_num_partitions(new.partitions.unwrap_or(shared.broker.config().default_partitions))
                            .with_replication_factor(1);
                        let configs = topic_configs(shared, &topic).unwrap_or_default();
                        r = r.with_configs(Some(
                            configs
                                .into_iter()
                                .map(|(k, v, source)| {
                                    CreatableTopicConfigs::default()
                                        .with_name(str_bytes(k))
                                        .with_value(Some(str_bytes(&v)))
                                        .with_config_source(source)
                                })
                                .collect(),
                        ));
                    }
                    r
                }
                Err(e) => {
                    tracing::debug!(topic = %t.name.0, error = %e, "create topic refused");
                    result.with_error_code(errors::error_code(&e)).with_error_message(message(&e))
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

pub(crate) fn delete_topics(shared: &Shared, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    // v0-5 name topics in topic_names; v6 in topics (by name or id).
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> =
        req.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())).collect();
    targets.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let topic = match &name {
                Some(n) => shared.broker.topic(&n.0),
                None => shared.broker.topic_by_id(id.as_bytes()),
            };
            let r = DeletableTopicResult::default().with_name(name.clone()).with_topic_id(id);
            let Some(topic) = topic else {
                return r.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION);
            };
            let mut r = r.with_name(Some(TopicName(str_bytes(&topic.name))));
            if version >= 6 {
                r = r.with_topic_id(uuid::Uuid::from_bytes(topic.id));
            }
            match shared.broker.delete_topic(&topic.name) {
                Ok(()) => r,
                Err(e) => r.with_error_code(errors::error_code(&e)).with_error_message(if version >= 5 {
                    message(&e)
                } else {
                    None
                }),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(crate) fn create_partitions(shared: &Shared, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            if t.assignments.is_some() {
                return r.with_error_code(errors::INVALID_REPLICA_ASSIGNMENT).with_error_message(Some(str_bytes(
                    "manual replica assignment is not supported on a single node",
                )));
            }
            match shared.broker.create_partitions(&t.name.0, t.count, req.validate_only) {
                Ok(()) => r,
                Err(e) => r.with_error_code(errors::error_code(&e)).with_error_message(message(&e)),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

fn config_type(key: &str) -> i8 {
    match config_kind(key) {
        Some(ConfigKind::Boolean) => TYPE_BOOLEAN,
        Some(ConfigKind::String) => TYPE_STRING,
        Some(ConfigKind::Int) => TYPE_INT,
        Some(ConfigKind::Double) => TYPE_DOUBLE,
        Some(ConfigKind::List) => TYPE_LIST,
        // Broker-level keys shown by DescribeConfigs(BROKER).
        Some(ConfigKind::Long) | None => match key {
            "auto.create.topics.enable" => TYPE_BOOLEAN,
            "num.partitions" => TYPE_INT,
            "log.cleanup.policy" => TYPE_LIST,
            _ => TYPE_LONG,
        },
    }
}

fn broker_configs(shared: &Shared) -> Vec<(&'static str, String, i8)> {
    let c = shared.broker.config();
    let mut out = vec![
        ("auto.create.topics.enable", c.auto_create_topics.to_string(), SOURCE_STATIC_BROKER),
        ("num.partitions", c.default_partitions.to_string(), SOURCE_STATIC_BROKER),
    ];
    for (broker_key, topic_key) in [
        ("log.retention.ms", "retention.ms"),
        ("log.retention.bytes", "retention.bytes"),
        ("log.segment.bytes", "segment.bytes"),
        ("log.cleanup.policy", "cleanup.policy"),
        ("message.max.bytes", "max.message.bytes"),
    ] {
        if let Some(v) = describe_config(&TopicConfig::defaults(&c.log), topic_key) {
            out.push((broker_key, v, SOURCE_STATIC_BROKER));
        }
    }
    out
}

pub(crate) fn describe_configs(shared: &Shared, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let r = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let (configs, read_only) = match res.resource_type {
                RESOURCE_TOPIC => match shared.broker.topic(&res.resource_name) {
                    Some(topic) => match topic_configs(shared, &topic) {
                        Ok(c) => (c, false),
                        Err(e) => return r.with_error_code(errors::error_code(&e)).with_error_message(message(&e)),
                    },
                    None => return r.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION),
                },
                RESOURCE_BROKER => (broker_configs(shared), true),
                _ => {
                    return r
                        .with_error_code(errors::INVALID_REQUEST)
                        .with_error_message(Some(str_bytes("unsupported resource type")))
                }
            };
            // Null or empty: every config (Kafka treats both the same).
            let wanted = res.configuration_keys.as_ref().filter(|k| !k.is_empty());
            let configs = configs
                .into_iter()
                .filter(|(k, _, _)| wanted.is_none_or(|w| w.iter().any(|x| x.as_str() == *k)))
                .map(|(k, v, source)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(k))
                        .with_value(Some(str_bytes(&v)))
                        .with_read_only(read_only)
                        .with_config_source(source)
                        .with_config_type(if version >= 3 { config_type(k) } else { 0 })
                })
                .collect();
            r.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

pub(crate) fn incremental_alter_configs(
    shared: &Shared,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let r = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if res.resource_type != RESOURCE_TOPIC {
                return r
                    .with_error_code(errors::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes("only topic configs can be altered")));
            }
            let mut changes = Vec::with_capacity(res.configs.len());
            for c in &res.configs {
                match c.config_operation {
                    OP_SET => changes
                        .push((c.name.to_string(), Some(c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()))),
                    OP_DELETE => changes.push((c.name.to_string(), None)),
                    _ => {
                        return r
                            .with_error_code(errors::INVALID_CONFIG)
                            .with_error_message(Some(str_bytes("APPEND and SUBTRACT are not supported")))
                    }
                }
            }
            match shared.broker.alter_topic_config(&res.resource_name, &changes, req.validate_only) {
                Ok(()) => r,
                Err(e) => r.with_error_code(errors::error_code(&e)).with_error_message(message(&e)),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub(crate) fn describe_cluster(shared: &Shared, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let node = shared.broker.node_id();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(shared.broker.cluster_id()))
        .with_controller_id(BrokerId(node))
        .with_endpoint_type(1)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(node))
            .with_host(str_bytes(&shared.advertised_host))
            .with_port(shared.advertised_port)])
        .with_cluster_authorized_operations(i32::MIN)
}

/// AlterConfigs (the legacy, non-incremental form older admin tools use): the given configs
/// replace the topic's whole override set; configs not named go back to their defaults.
pub(crate) fn alter_configs(shared: &Shared, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let r = LegacyAlterResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if res.resource_type != RESOURCE_TOPIC {
                return r
                    .with_error_code(errors::INVALID_REQUEST)
                    .with_error_message(Some(str_bytes("only topic configs can be altered")));
            }
            let Some(topic) = shared.broker.topic(&res.resource_name) else {
                return r.with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION);
            };
            let given: Vec<(String, Option<String>)> = res
                .configs
                .iter()
                .map(|c| (c.name.to_string(), Some(c.value.as_ref().map(|v| v.to_string()).unwrap_or_default())))
                .collect();
            let mut changes: Vec<(String, Option<String>)> = topic
                .overrides()
                .0
                .into_keys()
                .filter(|k| !given.iter().any(|(g, _)| g == k))
                .map(|k| (k, None))
                .collect();
            changes.extend(given);
            match shared.broker.alter_topic_config(&res.resource_name, &changes, req.validate_only) {
                Ok(()) => r,
                Err(e) => r.with_error_code(errors::error_code(&e)).with_error_message(message(&e)),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// DescribeLogDirs: one log directory (the data directory) with every partition's size,
/// and (v4+) the total and usable bytes of its filesystem (-1 where the storage cannot
/// tell, as Kafka before v4).
pub(crate) fn describe_log_dirs(shared: &Shared, req: DescribeLogDirsRequest, version: i16) -> DescribeLogDirsResponse {
    let broker = &shared.broker;
    let wanted: Option<Vec<(String, Vec<i32>)>> =
        req.topics.map(|ts| ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let topics: Vec<DescribeLogDirsTopic> = broker
        .topics()
        .iter()
        .filter_map(|t| {
            let only = match &wanted {
                None => None,
                Some(w) => Some(w.iter().find(|(n, _)| *n == t.name)?.1.clone()),
            };
            let partitions: Vec<_> = t
                .partitions()
                .iter()
                .filter(|p| only.as_ref().is_none_or(|o| o.contains(&p.index)))
                .map(|p| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index)
                        .with_partition_size(p.stats().size_bytes as i64)
                        .with_offset_lag(0)
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                DescribeLogDirsTopic::default().with_name(TopicName(str_bytes(&t.name))).with_partitions(partitions)
            })
        })
        .collect();
    let dir = broker.config().data_dir.join("topics");
    let space = broker.disk_space();
    let total = space.map_or(-1, |s| i64::try_from(s.total_bytes).unwrap_or(i64::MAX));
    let usable = space.map_or(-1, |s| i64::try_from(s.usable_bytes).unwrap_or(i64::MAX));
    let result = DescribeLogDirsResult::default().with_log_dir(str_bytes(&dir.to_string_lossy())).with_topics(topics);
    // Only fields of the negotiated version are set (v4 added the two sizes).
    let result = if version >= 4 { result.with_total_bytes(total).with_usable_bytes(usable) } else { result };
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// DescribeProducers (KIP-664): the idempotent producers with state on each partition.
pub(crate) fn describe_producers(shared: &Shared, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&i| {
                    let r = PartitionResponse::default().with_partition_index(i);
                    match shared.broker.partition(&t.name.0, i) {
                        Ok(p) => r.with_active_producers(
                            p.active_producers()
                                .into_iter()
                                .map(|a| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_producer_epoch(i32::from(a.epoch))
                                        .with_last_sequence(a.last_sequence)
                                        .with_last_timestamp(a.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(-1)
                                })
                                .collect(),
                        ),
                        Err(e) => r.with_error_code(errors::error_code(&e)).with_error_message(message(&e)),
                    }
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
