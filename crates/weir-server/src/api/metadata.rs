//! Metadata: this single node is the leader of every partition, with leader epoch 0.

use super::str_bytes;
use crate::errors;
use crate::server::Shared;
use kafka_protocol::messages::describe_topic_partitions_request::DescribeTopicPartitionsRequest;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponse, DescribeTopicPartitionsResponsePartition,
    DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use weir_broker::{BrokerError, Topic};

/// "Authorized operations not requested" in Kafka's encoding.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// Weir has no ACLs: when asked, every topic operation is allowed (bits are Kafka's
/// AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8,
/// DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11).
const TOPIC_OPERATIONS_ALL: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// Cluster operations: CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10,
/// ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
const CLUSTER_OPERATIONS_ALL: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub(crate) fn topic_response(
    shared: &Shared,
    topic: &Topic,
    version: i16,
    with_operations: bool,
) -> MetadataResponseTopic {
    let node = BrokerId(shared.broker.node_id());
    let partitions = (0..topic.partition_count())
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(if version >= 10 { uuid::Uuid::from_bytes(topic.id) } else { uuid::Uuid::nil() })
        .with_partitions(partitions)
        .with_is_internal(version >= 1 && weir_broker::Broker::is_internal(&topic.name))
        .with_topic_authorized_operations(if with_operations {
            TOPIC_OPERATIONS_ALL
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        })
}

fn error_topic(name: Option<TopicName>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(code)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

pub(crate) fn handle(shared: &Shared, req: MetadataRequest, version: i16) -> MetadataResponse {
    let broker = &shared.broker;
    // v0 asks for all topics with an empty list; v1+ with a null one.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let auto_create = version < 4 || req.allow_auto_topic_creation;
    let topic_ops = version >= 8 && req.include_topic_authorized_operations;
    let cluster_ops = (8..=10).contains(&version) && req.include_cluster_authorized_operations;
    let topics = if all {
        broker.topics().iter().map(|t| topic_response(shared, t, version, topic_ops)).collect()
    } else {
        let mut out = Vec::new();
        for t in req.topics.unwrap_or_default() {
            let Some(name) = t.name.clone() else {
                let found = broker.topic_by_id(t.topic_id.as_bytes());
                out.push(match found {
                    Some(topic) => topic_response(shared, &topic, version, topic_ops),
                    None => error_topic(None, t.topic_id, errors::UNKNOWN_TOPIC_OR_PARTITION),
                });
                continue;
            };
            let looked_up = if auto_create { broker.topic_or_auto_create(&name.0) } else { Ok(broker.topic(&name.0)) };
            out.push(match looked_up {
                Ok(Some(topic)) => topic_response(shared, &topic, version, topic_ops),
                Ok(None) => error_topic(Some(name), uuid::Uuid::nil(), errors::UNKNOWN_TOPIC_OR_PARTITION),
                Err(e @ BrokerError::InvalidTopic { .. }) => {
                    tracing::debug!(error = %e, "metadata for an invalid topic name");
                    error_topic(Some(name), uuid::Uuid::nil(), errors::INVALID_TOPIC_EXCEPTION)
                }
                Err(e) => {
                    tracing::warn!(topic = %name.0, error = %e, "auto-creating a topic failed");
                    error_topic(Some(name), uuid::Uuid::nil(), errors::error_code(&e))
                }
            });
        }
        out
    };
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id()))
            .with_host(str_bytes(&shared.advertised_host))
            .with_port(shared.advertised_port)])
        .with_cluster_id((version >= 2).then(|| str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(if version >= 1 { broker.node_id() } else { -1 }))
        .with_topics(topics)
        .with_cluster_authorized_operations(if cluster_ops {
            CLUSTER_OPERATIONS_ALL
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        })
}

/// Partitions returned at most per DescribeTopicPartitions response (Kafka's
/// max.request.partition.size.limit default).
const DESCRIBE_PARTITIONS_MAX: i32 = 2000;

/// DescribeTopicPartitions (KIP-966): Metadata's topic part, paginated by a cursor.
pub(crate) fn describe_topic_partitions(
    shared: &Shared,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let broker = &shared.broker;
    let node = BrokerId(broker.node_id());
    let mut limit = if req.response_partition_limit > 0 {
        req.response_partition_limit.min(DESCRIBE_PARTITIONS_MAX)
    } else {
        DESCRIBE_PARTITIONS_MAX
    };
    // Asked-for topics in name order (as Kafka answers), or every topic.
    let mut names: Vec<String> = if req.topics.is_empty() {
        broker.topics().iter().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (start_topic, start_partition) =
        req.cursor.as_ref().map_or((String::new(), 0), |c| (c.topic_name.0.to_string(), c.partition_index.max(0)));
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.into_iter().filter(|n| *n >= start_topic) {
        let Some(topic) = broker.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(TopicName(str_bytes(&name))))
                    .with_error_code(errors::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
            );
            continue;
        };
        let first = if name == start_topic { start_partition } else { 0 };
        let count = topic.partition_count();
        if limit == 0 {
            next_cursor =
                Some(Cursor::default().with_topic_name(TopicName(str_bytes(&name))).with_partition_index(first));
            break;
        }
        let end = count.min(first.saturating_add(limit));
        let partitions: Vec<_> = (first..end)
            .map(|i| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(i)
                    .with_leader_id(node)
                    .with_leader_epoch(0)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![]))
            })
            .collect();
        limit -= end - first;
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(&topic.name))))
                .with_topic_id(uuid::Uuid::from_bytes(topic.id))
                .with_is_internal(weir_broker::Broker::is_internal(&topic.name))
                .with_partitions(partitions)
                .with_topic_authorized_operations(TOPIC_OPERATIONS_ALL),
        );
        if end < count {
            next_cursor =
                Some(Cursor::default().with_topic_name(TopicName(str_bytes(&name))).with_partition_index(end));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}
