//! The API versions Weir advertises. Only what is implemented, per API.

use kafka_protocol::messages::ApiKey;

/// (api key, min, max). Produce advertises min 0 although 0-2 are rejected when they arrive:
/// librdkafka before 2.11.1 disables compression unless v0 is listed (KAFKA-18659).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 13),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 0, 4),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The version the codec encodes and decodes `version` of `key` with. kafka-protocol 0.18
/// follows Kafka 4's schemas, which dropped some old versions (KIP-896) that kafka-python 2.x
/// still sends; where such a version is byte for byte a later one, that one is used:
/// DescribeLogDirs v0 = v1 (v1 changed only the throttling behaviour, KIP-219).
pub fn codec_version(key: ApiKey, version: i16) -> i16 {
    match (key, version) {
        (ApiKey::DescribeLogDirs, 0) => 1,
        _ => version,
    }
}

/// Versions this server can decode and answer (Produce 0-2 are advertised, not handled).
pub fn handled(key: ApiKey, version: i16) -> bool {
    if key == ApiKey::Produce && version < 3 {
        return false;
    }
    SUPPORTED.iter().any(|&(k, min, max)| k == key && (min..=max).contains(&version))
}
