//! Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups.

use super::str_bytes;
use crate::dispatch::{CloseReason, RequestContext};
use crate::errors;
use crate::server::Shared;
use bytes::Bytes;
use kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::consumer_group_describe_response::{self as cgd, ConsumerGroupDescribeResponse};
use kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as cgh, ConsumerGroupHeartbeatResponse};
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{DeletableGroupResult, DeleteGroupsResponse};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::{BrokerId, GroupId, TopicName};
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use weir_broker::group::{Committed, GroupError, JoinRequest};

pub(crate) fn group_error_code(e: GroupError) -> i16 {
    match e {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId.code(),
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration.code(),
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress.code(),
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired.code(),
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol.code(),
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout.code(),
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound.code(),
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup.code(),
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId.code(),
        GroupError::UnknownTopicOrPartition => errors::UNKNOWN_TOPIC_OR_PARTITION,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId.code(),
        GroupError::GroupSubscribedToTopic => errors::GROUP_SUBSCRIBED_TO_TOPIC,
        GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch.code(),
        GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor.code(),
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch.code(),
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached.code(),
        GroupError::InvalidRequest(_) => errors::INVALID_REQUEST,
        GroupError::InvalidRegularExpression => ResponseError::InvalidRegularExpression.code(),
        // Retriable for clients: they look the coordinator up again and retry.
        _ => errors::COORDINATOR_NOT_AVAILABLE,
    }
}

fn code(r: Result<(), GroupError>) -> i16 {
    r.err().map_or(errors::NONE, group_error_code)
}

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// FindCoordinator: this node coordinates every group. Transaction coordinators do not
/// exist (yet): key type TRANSACTION gets a non-retriable error whose message says so,
/// so `init_transactions` fails at once instead of retrying until its timeout.
pub(crate) fn find_coordinator(shared: &Shared, req: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let node = BrokerId(shared.broker.node_id());
    let host = str_bytes(&shared.advertised_host);
    let (error, message) = match req.key_type {
        KEY_TYPE_GROUP => (errors::NONE, None),
        KEY_TYPE_TRANSACTION => (errors::TRANSACTIONS_UNSUPPORTED, Some(errors::TRANSACTIONS_UNSUPPORTED_MESSAGE)),
        _ => (errors::INVALID_REQUEST, Some("unknown coordinator key type: only GROUP (0) is supported")),
    };
    if error != errors::NONE {
        tracing::debug!(key_type = req.key_type, code = error, "FindCoordinator for an unsupported key type");
    }
    let supported = error == errors::NONE;
    let message = message.map(str_bytes);
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(if supported { node } else { BrokerId(-1) })
                    .with_host(if supported { host.clone() } else { str_bytes("") })
                    .with_port(if supported { shared.advertised_port } else { -1 })
                    .with_error_code(error)
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let r = FindCoordinatorResponse::default().with_error_code(error);
    let r = if version >= 1 { r.with_error_message(message) } else { r };
    if supported {
        r.with_node_id(node).with_host(host).with_port(shared.advertised_port)
    } else {
        r.with_node_id(BrokerId(-1)).with_host(str_bytes("")).with_port(-1)
    }
}

pub(crate) async fn join_group(
    shared: &Arc<Shared>,
    ctx: &RequestContext,
    req: JoinGroupRequest,
    version: i16,
) -> Result<JoinGroupResponse, CloseReason> {
    let join = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member: version >= 4,
    };
    // The answer may wait for other members: up to the rebalance timeout.
    let wait = Duration::from_millis(join.rebalance_timeout_ms.max(join.session_timeout_ms).max(0) as u64)
        + Duration::from_secs(5);
    let (tx, rx) = tokio::sync::oneshot::channel();
    shared.broker.groups().join(join, Box::new(move |r| drop(tx.send(r))));
    let r = tokio::time::timeout(wait, rx)
        .await
        .map_err(|_| CloseReason::Handler("JoinGroup was not answered within the rebalance timeout".into()))?
        .map_err(|_| CloseReason::Handler("JoinGroup waiter dropped".into()))?;
    let ok = r.error.is_none();
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error.map_or(errors::NONE, group_error_code))
        .with_generation_id(if ok { r.generation_id } else { -1 })
        .with_leader(str_bytes(&r.leader))
        .with_member_id(str_bytes(&r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&id))
                        .with_group_instance_id(if version >= 5 { instance.map(|i| str_bytes(&i)) } else { None })
                        .with_metadata(metadata)
                })
                .collect(),
        );
    if version >= 7 {
        resp = resp
            .with_protocol_type(ok.then(|| str_bytes(&r.protocol_type)))
            .with_protocol_name(ok.then(|| str_bytes(&r.protocol_name)));
    } else {
        resp = resp.with_protocol_name(Some(str_bytes(&r.protocol_name)));
    }
    Ok(resp)
}

pub(crate) async fn sync_group(
    shared: &Arc<Shared>,
    req: SyncGroupRequest,
    version: i16,
) -> Result<SyncGroupResponse, CloseReason> {
    let assignments: Vec<(String, Bytes)> =
        req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = shared.clone();
    let (group, member) = (req.group_id.0.to_string(), req.member_id.to_string());
    let generation = req.generation_id;
    let who = weir_broker::group::SyncIdentity {
        instance_id: req.group_instance_id.map(|i| i.to_string()),
        protocol_type: req.protocol_type.map(|t| t.to_string()),
        protocol_name: req.protocol_name.map(|n| n.to_string()),
    };
    // The leader's sync persists the new generation: disk I/O, so off the async workers.
    tokio::task::spawn_blocking(move || {
        s.broker.groups().sync_as(&group, generation, &member, &who, assignments, Box::new(move |r| drop(tx.send(r))))
    })
    .await
    .map_err(|e| CloseReason::Handler(e.to_string()))?;
    // Followers wait for the leader's assignment, at most a session timeout plus margin.
    let r = tokio::time::timeout(Duration::from_secs(330), rx)
        .await
        .map_err(|_| CloseReason::Handler("SyncGroup was not answered in time".into()))?
        .map_err(|_| CloseReason::Handler("SyncGroup waiter dropped".into()))?;
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(errors::NONE, group_error_code))
        .with_assignment(r.assignment);
    if version >= 5 && r.error.is_none() {
        resp = resp
            .with_protocol_type(Some(str_bytes(&r.protocol_type)))
            .with_protocol_name(Some(str_bytes(&r.protocol_name)));
    }
    Ok(resp)
}

pub(crate) fn heartbeat(shared: &Shared, req: HeartbeatRequest) -> HeartbeatResponse {
    let instance = req.group_instance_id.as_ref().map(|i| i.as_str());
    let r = shared.broker.groups().heartbeat(&req.group_id.0, req.generation_id, &req.member_id, instance);
    HeartbeatResponse::default().with_error_code(code(r))
}

pub(crate) fn leave_group(shared: &Shared, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let results = shared.broker.groups().leave(&req.group_id.0, &members);
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(results.into_iter().next().map_or(errors::NONE, code));
    }
    let responses = members
        .into_iter()
        .zip(results)
        .map(|((id, instance), r)| {
            MemberResponse::default()
                .with_member_id(str_bytes(&id))
                .with_group_instance_id(instance.map(|i| str_bytes(&i)))
                .with_error_code(code(r))
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}

pub(crate) fn offset_commit(shared: &Shared, req: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let offsets: Vec<_> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let epoch = if version >= 6 { p.committed_leader_epoch } else { -1 };
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.committed_offset,
                    epoch,
                    p.committed_metadata.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect();
    let broker = &shared.broker;
    let known = |topic: &str, partition: i32| broker.topic(topic).is_some_and(|t| t.partition(partition).is_some());
    let result =
        broker.groups().commit(&req.group_id.0, req.generation_id_or_member_epoch, &req.member_id, offsets, &known);
    let codes: Vec<i16> = match result {
        Ok((per_partition, end)) => {
            let durable = broker.groups().wait_durable(end);
            per_partition
                .into_iter()
                .map(|e| match (e, &durable) {
                    (Some(e), _) => group_error_code(e),
                    (None, Err(_)) => errors::COORDINATOR_NOT_AVAILABLE,
                    (None, Ok(())) => errors::NONE,
                })
                .collect()
        }
        Err(e) => {
            let n = req.topics.iter().map(|t| t.partitions.len()).sum();
            vec![group_error_code(e); n]
        }
    };
    let mut codes = codes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

fn committed_fields(c: &Option<Committed>) -> (i64, i32, String) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.clone().unwrap_or_default()),
        None => (-1, -1, String::new()),
    }
}

/// Offsets of one group grouped by topic, in the order asked (or all).
fn fetch_group(
    shared: &Shared,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<(i32, Option<Committed>)>)> {
    let flat: Option<Vec<(String, i32)>> =
        wanted.as_ref().map(|w| w.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p))).collect());
    let found = shared.broker.groups().fetch(group, flat.as_deref());
    let mut by_topic: Vec<(String, Vec<(i32, Option<Committed>)>)> = Vec::new();
    for ((topic, partition), c) in found {
        match by_topic.last_mut() {
            Some((t, ps)) if *t == topic => ps.push((partition, c)),
            _ => by_topic.push((topic, vec![(partition, c)])),
        }
    }
    by_topic
}

pub(crate) fn offset_fetch(shared: &Shared, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let wanted =
                    g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
                let topics = fetch_group(shared, &g.group_id.0, wanted)
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchResponseTopics::default().with_name(TopicName(str_bytes(&topic))).with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, c)| {
                                    let (offset, epoch, metadata) = committed_fields(&c);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(&metadata)))
                                })
                                .collect(),
                        )
                    })
                    .collect();
                OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let topics = fetch_group(shared, &req.group_id.0, wanted)
        .into_iter()
        .map(|(topic, parts)| {
            OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(&topic))).with_partitions(
                parts
                    .into_iter()
                    .map(|(p, c)| {
                        let (offset, epoch, metadata) = committed_fields(&c);
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(if version >= 5 { epoch } else { -1 })
                            .with_metadata(Some(str_bytes(&metadata)))
                    })
                    .collect(),
            )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub(crate) fn describe_groups(shared: &Shared, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| match shared.broker.groups().describe(&id.0) {
            None => DescribedGroup::default().with_group_id(id).with_group_state(str_bytes("Dead")),
            Some(info) => DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(str_bytes(info.state))
                .with_protocol_type(str_bytes(&info.protocol_type))
                .with_protocol_data(str_bytes(&info.protocol))
                .with_members(
                    info.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(&m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    m.group_instance_id.map(|i| str_bytes(&i))
                                } else {
                                    None
                                })
                                .with_client_id(str_bytes(&m.client_id))
                                .with_client_host(str_bytes(&m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(crate) fn list_groups(shared: &Shared, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let filter: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let groups = shared
        .broker
        .groups()
        .list()
        .into_iter()
        .filter(|g| filter.is_empty() || filter.contains(&g.state.to_lowercase()))
        .map(|g| {
            let l = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if version >= 4 {
                l.with_group_state(str_bytes(g.state))
            } else {
                l
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(crate) fn delete_groups(shared: &Shared, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|g| {
            let r = shared.broker.groups().delete(&g.0);
            DeletableGroupResult::default().with_group_id(g).with_error_code(code(r))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

/// OffsetDelete (KIP-496): removes a group's committed offsets for partitions its members
/// do not subscribe to.
pub(crate) fn offset_delete(shared: &Shared, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let wanted: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index)))
        .collect();
    let groups = shared.broker.groups();
    let codes: Vec<i16> = match groups.delete_offsets(&req.group_id.0, &wanted) {
        Ok((per_partition, end)) => {
            let durable = groups.wait_durable(end);
            per_partition
                .into_iter()
                .map(|e| match (e, &durable) {
                    (Some(e), _) => group_error_code(e),
                    (None, Err(_)) => errors::COORDINATOR_NOT_AVAILABLE,
                    (None, Ok(())) => errors::NONE,
                })
                .collect()
        }
        Err(e) => return OffsetDeleteResponse::default().with_error_code(group_error_code(e)),
    };
    let mut codes = codes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(errors::NONE))
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

/// KIP-848 ConsumerGroupHeartbeat: the broker assigns (uniform or range) and members
/// reconcile incrementally; see weir_broker::group::consumer.
pub(crate) fn consumer_group_heartbeat(
    shared: &Shared,
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    use weir_broker::group::consumer::HeartbeatRequest;
    let fail = |e: GroupError| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(group_error_code(e))
            .with_error_message(Some(str_bytes(&e.to_string())))
    };
    let regex = req.subscribed_topic_regex.as_ref().map(|r| r.to_string());
    let broker = &shared.broker;
    let owned = req.topic_partitions.map(|tps| {
        tps.into_iter()
            .flat_map(|t| {
                let id = *t.topic_id.as_bytes();
                t.partitions.into_iter().map(move |p| (id, p))
            })
            .collect()
    });
    let hb = HeartbeatRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topics: req.subscribed_topic_names.map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        subscribed_regex: regex.clone(),
        server_assignor: req.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    match broker.consumer_heartbeat(hb) {
        Ok(r) => {
            let assignment = r.assignment.map(|parts| {
                let mut by_topic: Vec<cgh::TopicPartitions> = Vec::new();
                for (id, p) in parts {
                    let id = uuid::Uuid::from_bytes(id);
                    match by_topic.last_mut() {
                        Some(t) if t.topic_id == id => t.partitions.push(p),
                        _ => by_topic.push(cgh::TopicPartitions::default().with_topic_id(id).with_partitions(vec![p])),
                    }
                }
                cgh::Assignment::default().with_topic_partitions(by_topic)
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(&r.member_id)))
                .with_member_epoch(r.member_epoch)
                .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
                .with_assignment(assignment)
        }
        Err(GroupError::InvalidRegularExpression) => {
            let r = regex.unwrap_or_default();
            let why = weir_broker::group::consumer::compile_subscription(&r).err().unwrap_or_default();
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(group_error_code(GroupError::InvalidRegularExpression))
                .with_error_message(Some(str_bytes(&format!("invalid subscription regex {r:?}: {why}"))))
        }
        Err(e) => fail(e),
    }
}

/// KIP-848 ConsumerGroupDescribe.
pub(crate) fn consumer_group_describe(
    shared: &Shared,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let broker = &shared.broker;
    let name_of = |id: [u8; 16]| broker.topic_by_id(&id).map(|t| t.name.clone()).unwrap_or_default();
    let assignment = |parts: &[([u8; 16], i32)]| {
        let mut by_topic: Vec<cgd::TopicPartitions> = Vec::new();
        for &(id, p) in parts {
            let uuid = uuid::Uuid::from_bytes(id);
            match by_topic.last_mut() {
                Some(t) if t.topic_id == uuid => t.partitions.push(p),
                _ => by_topic.push(
                    cgd::TopicPartitions::default()
                        .with_topic_id(uuid)
                        .with_topic_name(TopicName(str_bytes(&name_of(id))))
                        .with_partitions(vec![p]),
                ),
            }
        }
        cgd::Assignment::default().with_topic_partitions(by_topic)
    };
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| match broker.groups().consumer_describe(&id.0) {
            None => cgd::DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(str_bytes("Dead"))
                .with_error_code(group_error_code(GroupError::GroupIdNotFound))
                .with_authorized_operations(i32::MIN),
            Some(g) => cgd::DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(str_bytes(g.state))
                .with_group_epoch(g.epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(str_bytes(g.assignor))
                .with_authorized_operations(i32::MIN)
                .with_members(
                    g.members
                        .iter()
                        .map(|m| {
                            cgd::Member::default()
                                .with_member_id(str_bytes(&m.member_id))
                                .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                .with_member_epoch(m.member_epoch)
                                .with_client_id(str_bytes(&m.client_id))
                                .with_client_host(str_bytes(&m.client_host))
                                .with_subscribed_topic_names(
                                    m.subscribed_topics.iter().map(|t| TopicName(str_bytes(t))).collect(),
                                )
                                .with_subscribed_topic_regex(Some(str_bytes(&m.subscribed_regex)))
                                .with_assignment(assignment(&m.assignment))
                                .with_target_assignment(assignment(&m.target))
                        })
                        .collect(),
                ),
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
