//! Every API Weir advertises, at every version it advertises, round-trips against a real
//! server: the request is encoded by kafka-protocol's client side, the response must decode
//! in the same version with the right correlation id and no error where none is due.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::{Broker, BrokerConfig, NewTopic};
use weir_log::{BatchBuilder, FsStorage, SystemClock};
use weir_server::{versions::SUPPORTED, Server, ServerConfig};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

fn topic(x: &str) -> TopicName {
    TopicName(s(x))
}

async fn start() -> (std::net::SocketAddr, Arc<Broker>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig { data_dir: dir.path().to_owned(), ..BrokerConfig::default() };
    config.group.initial_rebalance_delay_ms = 0;
    let broker = Arc::new(Broker::open(config, Arc::new(FsStorage), Arc::new(SystemClock)).unwrap());
    broker.create_topic(&NewTopic { name: "t".into(), partitions: Some(1), ..NewTopic::default() }, false).unwrap();
    let server_config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
    let server = Server::bind(server_config, broker.clone()).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    (addr, broker, dir)
}

async fn call(conn: &mut TcpStream, key: ApiKey, version: i16, correlation_id: i32, req: &RequestKind) -> ResponseKind {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("versions-test")));
    header.encode(&mut buf, key.request_header_version(version)).unwrap();
    // Versions the codec lacks but whose bytes equal a later one's (DescribeLogDirs v0).
    let codec = weir_server::versions::codec_version(key, version);
    req.encode(&mut buf, codec).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    conn.write_all(&buf).await.unwrap();
    let size = conn.read_i32().await.unwrap_or_else(|e| panic!("{key:?} v{version}: connection closed: {e}"));
    let mut body = vec![0u8; size as usize];
    conn.read_exact(&mut body).await.unwrap();
    let mut body = Bytes::from(body);
    let rh = ResponseHeader::decode(&mut body, key.response_header_version(version)).unwrap();
    assert_eq!(rh.correlation_id, correlation_id);
    let resp = ResponseKind::decode(key, &mut body, codec).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    assert!(body.is_empty(), "{key:?} v{version}: {} trailing bytes", body.len());
    resp
}

fn batch() -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(1_700_000_000_000, Some(b"k"), Some(b"v"));
    Bytes::from(b.build())
}

fn request(key: ApiKey, v: i16, id: uuid::Uuid) -> RequestKind {
    use RequestKind as R;
    match key {
        ApiKey::Produce => {
            R::Produce(ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(topic("t"))
                    .with_topic_id(id)
                    .with_partition_data(vec![produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch()))]),
            ]))
        }
        ApiKey::Fetch => {
            R::Fetch(FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(
                vec![fetch_request::FetchTopic::default().with_topic(topic("t")).with_topic_id(id).with_partitions(
                    vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)],
                )],
            ))
        }
        ApiKey::ListOffsets => R::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default().with_name(topic("t")).with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
            ]),
        ])),
        ApiKey::Metadata => R::Metadata(if v == 0 {
            MetadataRequest::default().with_topics(Some(vec![]))
        } else {
            MetadataRequest::default().with_topics(None)
        }),
        ApiKey::ApiVersions => R::ApiVersions(if v >= 3 {
            ApiVersionsRequest::default().with_client_software_name(s("test")).with_client_software_version(s("1"))
        } else {
            ApiVersionsRequest::default()
        }),
        ApiKey::CreateTopics => {
            R::CreateTopics(CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic(&format!("ct-{v}")))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]))
        }
        // CreateTopics made ct-2..ct-7; DeleteTopics v1..v6 removes ct-2..ct-7.
        ApiKey::DeleteTopics => R::DeleteTopics(if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(topic(&format!("ct-{}", v + 1))))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic(&format!("ct-{}", v + 1))])
        }),
        ApiKey::InitProducerId => {
            R::InitProducerId(InitProducerIdRequest::default().with_transaction_timeout_ms(60000))
        }
        ApiKey::DescribeConfigs => R::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configuration_keys(None),
        ])),
        ApiKey::DeleteRecords => {
            R::DeleteRecords(DeleteRecordsRequest::default().with_timeout_ms(5000).with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default().with_name(topic("t")).with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(0),
                ]),
            ]))
        }
        ApiKey::CreatePartitions => {
            R::CreatePartitions(CreatePartitionsRequest::default().with_timeout_ms(5000).with_topics(
                vec![create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic("t"))
                    .with_count(2 + i32::from(v))
                    .with_assignments(None)],
            ))
        }
        ApiKey::IncrementalAlterConfigs => {
            R::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("1000000")))]),
            ]))
        }
        ApiKey::DescribeCluster => R::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::AlterConfigs => R::AlterConfigs(AlterConfigsRequest::default().with_resources(
            vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("2000000")))])],
        )),
        ApiKey::DescribeLogDirs => R::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None)),
        ApiKey::DescribeProducers => R::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default().with_name(topic("t")).with_partition_indexes(vec![0]),
        ])),
        ApiKey::DescribeTopicPartitions => R::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![describe_topic_partitions_request::TopicRequest::default().with_name(topic("t"))]),
        ),
        other => panic!("no test request for {other:?}"),
    }
}

/// The error codes in a response, which must all be 0.
fn errors(resp: &ResponseKind) -> Vec<i16> {
    use ResponseKind as S;
    match resp {
        S::Produce(r) => r.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)).collect(),
        S::Fetch(r) => {
            let p = &r.responses[0].partitions[0];
            assert!(p.records.as_ref().is_some_and(|b| !b.is_empty()), "fetch returned the produced batch");
            vec![r.error_code, p.error_code]
        }
        S::ListOffsets(r) => r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect(),
        S::Metadata(r) => {
            assert!(r.topics.iter().any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "t")));
            r.topics.iter().map(|t| t.error_code).collect()
        }
        S::ApiVersions(r) => {
            assert_eq!(r.api_keys.len(), SUPPORTED.len());
            vec![r.error_code]
        }
        S::CreateTopics(r) => r.topics.iter().map(|t| t.error_code).collect(),
        S::DeleteTopics(r) => r.responses.iter().map(|t| t.error_code).collect(),
        S::InitProducerId(r) => {
            assert!(r.producer_id.0 >= 0);
            vec![r.error_code]
        }
        S::DescribeConfigs(r) => {
            assert!(r.results.iter().all(|x| x.configs.iter().any(|c| c.name.as_str() == "retention.ms")));
            r.results.iter().map(|x| x.error_code).collect()
        }
        S::DeleteRecords(r) => r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect(),
        S::CreatePartitions(r) => r.results.iter().map(|x| x.error_code).collect(),
        S::IncrementalAlterConfigs(r) => r.responses.iter().map(|x| x.error_code).collect(),
        S::DescribeCluster(r) => vec![r.error_code],
        S::AlterConfigs(r) => r.responses.iter().map(|x| x.error_code).collect(),
        S::DescribeLogDirs(r) => {
            let t = r.results[0].topics.iter().find(|t| t.name.0.as_str() == "t").expect("topic t listed");
            assert!(!t.partitions.is_empty());
            std::iter::once(r.error_code).chain(r.results.iter().map(|x| x.error_code)).collect()
        }
        S::DescribeProducers(r) => {
            let p = &r.topics[0].partitions[0];
            assert!(p.active_producers.is_empty(), "the test produces without idempotence");
            vec![p.error_code]
        }
        S::DescribeTopicPartitions(r) => {
            let t = &r.topics[0];
            assert!(t.topic_id != uuid::Uuid::nil() && !t.partitions.is_empty());
            r.topics.iter().map(|t| t.error_code).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_api_and_version_round_trips() {
    let (addr, broker, _dir) = start().await;
    let topic_id = uuid::Uuid::from_bytes(broker.topic("t").unwrap().id);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut correlation = 0;
    let mut calls = 0;
    let mut order: Vec<_> = SUPPORTED.to_vec();
    // Topics are created before they are deleted; DeleteRecords runs after Produce/Fetch.
    order.sort_by_key(|&(k, _, _)| match k {
        ApiKey::DeleteTopics | ApiKey::DeleteRecords => 1,
        _ => 0,
    });
    for (key, min, max) in order {
        if GROUP_APIS.contains(&key) {
            continue; // exercised as whole flows below
        }
        // Produce 0-2 are advertised for librdkafka's sake but not served.
        let min = if key == ApiKey::Produce { 3 } else { min };
        for v in min..=max {
            correlation += 1;
            let resp = call(&mut conn, key, v, correlation, &request(key, v, topic_id)).await;
            let codes = errors(&resp);
            assert!(codes.iter().all(|&c| c == 0), "{key:?} v{v}: error codes {codes:?}");
            calls += 1;
        }
    }
    println!("{calls} API/version pairs round-tripped");
    assert!(calls > 60);
}

#[tokio::test]
async fn api_versions_with_unknown_version_answers_v0_with_error_35() {
    let (addr, _broker, _dir) = start().await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf.put_i16(ApiKey::ApiVersions as i16);
    buf.put_i16(99);
    buf.put_i32(7);
    buf.put_i16(-1);
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    conn.write_all(&buf).await.unwrap();
    let size = conn.read_i32().await.unwrap();
    let mut body = vec![0u8; size as usize];
    conn.read_exact(&mut body).await.unwrap();
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let resp = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(resp.error_code, 35);
    assert!(resp.api_keys.iter().any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
    assert!(resp.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16 && k.min_version == 0));
}

const GROUP_APIS: &[ApiKey] = &[
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
];

fn max_version(key: ApiKey) -> i16 {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, _, max)| max).unwrap()
}

fn min_version(key: ApiKey) -> i16 {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, min, _)| min).unwrap()
}

/// One whole consumer-group life at every JoinGroup version (0-9), each other group API at
/// the version paired with it: find, join (two-step from v4), sync, heartbeat, commit,
/// fetch, describe, list, leave, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_flow_at_every_version() {
    use ResponseKind as S;
    let (addr, _broker, _dir) = start().await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut corr = 1000;
    let next = |c: &mut i32| {
        *c += 1;
        *c
    };
    let pick = |key: ApiKey, v: i16| v.clamp(min_version(key), max_version(key));
    for v in 0..=max_version(ApiKey::JoinGroup) {
        let group = GroupId(s(&format!("g{v}")));
        let fv = pick(ApiKey::FindCoordinator, v);
        let find = if fv >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![group.0.clone()])
        } else {
            FindCoordinatorRequest::default().with_key(group.0.clone())
        };
        let S::FindCoordinator(r) =
            call(&mut conn, ApiKey::FindCoordinator, fv, next(&mut corr), &RequestKind::FindCoordinator(find)).await
        else {
            panic!()
        };
        let (code, port) =
            if fv >= 4 { (r.coordinators[0].error_code, r.coordinators[0].port) } else { (r.error_code, r.port) };
        assert_eq!((code, port), (0, i32::from(addr.port())), "FindCoordinator v{fv}");

        let join = |member: &str| {
            RequestKind::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(group.clone())
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(if v >= 1 { 10_000 } else { -1 })
                    .with_member_id(s(member))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(b"meta"))]),
            )
        };
        let S::JoinGroup(mut r) = call(&mut conn, ApiKey::JoinGroup, v, next(&mut corr), &join("")).await else {
            panic!()
        };
        if v >= 4 {
            assert_eq!(r.error_code, 79, "JoinGroup v{v}: MEMBER_ID_REQUIRED first");
            let id = r.member_id.to_string();
            let S::JoinGroup(again) = call(&mut conn, ApiKey::JoinGroup, v, next(&mut corr), &join(&id)).await else {
                panic!()
            };
            r = again;
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{v}");
        assert_eq!(r.leader, r.member_id);
        assert_eq!(r.members.len(), 1);
        let (member, generation) = (r.member_id.clone(), r.generation_id);

        let sv = pick(ApiKey::SyncGroup, v);
        let mut sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(generation)
            .with_member_id(member.clone())
            .with_assignments(vec![sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(member.clone())
                .with_assignment(Bytes::from_static(b"assigned"))]);
        if sv >= 5 {
            sync = sync.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")));
        }
        let S::SyncGroup(r) =
            call(&mut conn, ApiKey::SyncGroup, sv, next(&mut corr), &RequestKind::SyncGroup(sync)).await
        else {
            panic!()
        };
        assert_eq!((r.error_code, &r.assignment[..]), (0, &b"assigned"[..]), "SyncGroup v{sv}");

        let hv = pick(ApiKey::Heartbeat, v);
        let hb = HeartbeatRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(generation)
            .with_member_id(member.clone());
        let S::Heartbeat(r) =
            call(&mut conn, ApiKey::Heartbeat, hv, next(&mut corr), &RequestKind::Heartbeat(hb.clone())).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0, "Heartbeat v{hv}");
        let stale = hb.clone().with_generation_id(generation - 1);
        let S::Heartbeat(r) =
            call(&mut conn, ApiKey::Heartbeat, hv, next(&mut corr), &RequestKind::Heartbeat(stale)).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, 22, "stale generation: ILLEGAL_GENERATION");

        let cv = pick(ApiKey::OffsetCommit, v);
        let commit = OffsetCommitRequest::default()
            .with_group_id(group.clone())
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member.clone())
            .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42),
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(99)
                        .with_committed_offset(1),
                ])]);
        let S::OffsetCommit(r) =
            call(&mut conn, ApiKey::OffsetCommit, cv, next(&mut corr), &RequestKind::OffsetCommit(commit)).await
        else {
            panic!()
        };
        let codes: Vec<i16> = r.topics[0].partitions.iter().map(|p| p.error_code).collect();
        assert_eq!(codes, vec![0, 3], "OffsetCommit v{cv}: unknown partition gets UNKNOWN_TOPIC_OR_PARTITION");

        let ov = pick(ApiKey::OffsetFetch, v);
        let fetch = if ov >= 8 {
            OffsetFetchRequest::default().with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(group.clone())
                .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0])]))])
        } else {
            OffsetFetchRequest::default().with_group_id(group.clone()).with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0]),
            ]))
        };
        let S::OffsetFetch(r) =
            call(&mut conn, ApiKey::OffsetFetch, ov, next(&mut corr), &RequestKind::OffsetFetch(fetch)).await
        else {
            panic!()
        };
        let committed = if ov >= 8 {
            r.groups[0].topics[0].partitions[0].committed_offset
        } else {
            r.topics[0].partitions[0].committed_offset
        };
        assert_eq!(committed, 42, "OffsetFetch v{ov}");

        let dv = pick(ApiKey::DescribeGroups, v);
        let S::DescribeGroups(r) = call(
            &mut conn,
            ApiKey::DescribeGroups,
            dv,
            next(&mut corr),
            &RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group.clone()])),
        )
        .await
        else {
            panic!()
        };
        assert_eq!(
            (r.groups[0].group_state.as_str(), r.groups[0].members.len()),
            ("Stable", 1),
            "DescribeGroups v{dv}"
        );

        let lv = pick(ApiKey::ListGroups, v);
        let S::ListGroups(r) = call(
            &mut conn,
            ApiKey::ListGroups,
            lv,
            next(&mut corr),
            &RequestKind::ListGroups(ListGroupsRequest::default()),
        )
        .await
        else {
            panic!()
        };
        assert!(r.groups.iter().any(|g| g.group_id == group), "ListGroups v{lv}");

        let gv = pick(ApiKey::LeaveGroup, v);
        let leave = if gv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_members(vec![leave_group_request::MemberIdentity::default().with_member_id(member.clone())])
        } else {
            LeaveGroupRequest::default().with_group_id(group.clone()).with_member_id(member.clone())
        };
        let S::LeaveGroup(r) =
            call(&mut conn, ApiKey::LeaveGroup, gv, next(&mut corr), &RequestKind::LeaveGroup(leave)).await
        else {
            panic!()
        };
        let code = if gv >= 3 { r.members[0].error_code } else { r.error_code };
        assert_eq!(code, 0, "LeaveGroup v{gv}");

        // OffsetDelete: the group is empty now, so its offsets may go.
        let od = OffsetDeleteRequest::default().with_group_id(group.clone()).with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default().with_name(topic("t")).with_partitions(vec![
                offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0),
            ]),
        ]);
        let S::OffsetDelete(r) =
            call(&mut conn, ApiKey::OffsetDelete, 0, next(&mut corr), &RequestKind::OffsetDelete(od)).await
        else {
            panic!()
        };
        assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0), "OffsetDelete");

        let xv = pick(ApiKey::DeleteGroups, v);
        let del = DeleteGroupsRequest::default().with_groups_names(vec![group.clone(), GroupId(s("never-existed"))]);
        let S::DeleteGroups(r) =
            call(&mut conn, ApiKey::DeleteGroups, xv, next(&mut corr), &RequestKind::DeleteGroups(del)).await
        else {
            panic!()
        };
        let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, vec![0, 69], "DeleteGroups v{xv}");
    }
    // Every version of the APIs whose range is wider than JoinGroup's pairing covers.
    for key in [ApiKey::DescribeGroups, ApiKey::ListGroups, ApiKey::FindCoordinator, ApiKey::OffsetFetch] {
        for v in min_version(key)..=max_version(key) {
            let req = match key {
                ApiKey::DescribeGroups => {
                    RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![GroupId(s("x"))]))
                }
                ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
                ApiKey::FindCoordinator if v >= 4 => {
                    RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_coordinator_keys(vec![s("x")]))
                }
                ApiKey::FindCoordinator => {
                    RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(s("x")))
                }
                ApiKey::OffsetFetch if v >= 8 => {
                    RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(s("x")))
                            .with_topics(None),
                    ]))
                }
                _ => RequestKind::OffsetFetch(
                    OffsetFetchRequest::default().with_group_id(GroupId(s("x"))).with_topics(if v >= 2 {
                        None
                    } else {
                        Some(vec![])
                    }),
                ),
            };
            let _ = call(&mut conn, key, v, next(&mut corr), &req).await;
        }
    }
}

/// Transactions do not exist yet: FindCoordinator(TRANSACTION) and InitProducerId with a
/// transactional id answer a non-retriable code whose message (where the version has one)
/// names the missing feature, at every version.
#[tokio::test]
async fn transaction_requests_fail_fast_with_a_named_non_retriable_error() {
    use ResponseKind as S;
    let (addr, _broker, _dir) = start().await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut corr = 5000;
    for v in 1..=max_version(ApiKey::FindCoordinator) {
        corr += 1;
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s("tx")])
        } else {
            FindCoordinatorRequest::default().with_key_type(1).with_key(s("tx"))
        };
        let S::FindCoordinator(r) =
            call(&mut conn, ApiKey::FindCoordinator, v, corr, &RequestKind::FindCoordinator(req)).await
        else {
            panic!()
        };
        let (code, message) = if v >= 4 {
            (r.coordinators[0].error_code, r.coordinators[0].error_message.clone())
        } else {
            (r.error_code, r.error_message.clone())
        };
        assert_eq!(code, 53, "FindCoordinator v{v}: TRANSACTIONAL_ID_AUTHORIZATION_FAILED (fatal for every client)");
        assert!(message.unwrap().contains("transactions are not supported"), "FindCoordinator v{v}");
    }
    for v in min_version(ApiKey::InitProducerId)..=max_version(ApiKey::InitProducerId) {
        corr += 1;
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s("tx"))))
            .with_transaction_timeout_ms(60000);
        let S::InitProducerId(r) =
            call(&mut conn, ApiKey::InitProducerId, v, corr, &RequestKind::InitProducerId(req)).await
        else {
            panic!()
        };
        assert_eq!((r.error_code, r.producer_id.0), (53, -1), "InitProducerId v{v}");
    }
}

/// Fetch v13+ and Produce v13 address topics by id: after a delete and re-create under the
/// same name, the old id is UNKNOWN_TOPIC_ID and the new one works, at every version.
#[tokio::test]
async fn a_stale_topic_id_after_delete_and_recreate_is_unknown() {
    use ResponseKind as S;
    let (addr, broker, _dir) = start().await;
    let old = uuid::Uuid::from_bytes(broker.topic("t").unwrap().id);
    broker.delete_topic("t").unwrap();
    broker.create_topic(&NewTopic { name: "t".into(), partitions: Some(1), ..NewTopic::default() }, false).unwrap();
    let new = uuid::Uuid::from_bytes(broker.topic("t").unwrap().id);
    assert_ne!(old, new);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut corr = 9000;
    corr += 1;
    let S::Produce(r) = call(&mut conn, ApiKey::Produce, 13, corr, &request(ApiKey::Produce, 13, old)).await else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 100, "Produce v13 by a stale id");
    corr += 1;
    let S::Produce(r) = call(&mut conn, ApiKey::Produce, 13, corr, &request(ApiKey::Produce, 13, new)).await else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    for v in 13..=max_version(ApiKey::Fetch) {
        for (id, want) in [(old, 100), (new, 0)] {
            corr += 1;
            let S::Fetch(r) = call(&mut conn, ApiKey::Fetch, v, corr, &request(ApiKey::Fetch, v, id)).await else {
                panic!()
            };
            let t = &r.responses[0];
            assert_eq!((t.topic_id, t.partitions[0].error_code), (id, want), "Fetch v{v}");
            if want == 0 {
                assert!(t.partitions[0].records.as_ref().is_some_and(|b| !b.is_empty()));
            }
        }
    }
}

/// DescribeTopicPartitions pages with a cursor; OffsetDelete refuses partitions of a topic
/// the group's members subscribe to; legacy AlterConfigs replaces the whole override set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_topic_partitions_offset_delete_and_alter_configs_semantics() {
    use ResponseKind as S;
    let (addr, broker, _dir) = start().await;
    broker.create_topic(&NewTopic { name: "wide".into(), partitions: Some(3), ..NewTopic::default() }, false).unwrap();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut corr = 7000;
    let mut next = || {
        corr += 1;
        corr
    };

    // Pages of two partitions: wide/0-1, then wide/2.
    let req = DescribeTopicPartitionsRequest::default()
        .with_topics(vec![describe_topic_partitions_request::TopicRequest::default().with_name(topic("wide"))])
        .with_response_partition_limit(2);
    let S::DescribeTopicPartitions(r) =
        call(&mut conn, ApiKey::DescribeTopicPartitions, 0, next(), &RequestKind::DescribeTopicPartitions(req.clone()))
            .await
    else {
        panic!()
    };
    let parts: Vec<i32> = r.topics[0].partitions.iter().map(|p| p.partition_index).collect();
    assert_eq!(parts, vec![0, 1]);
    let cursor = r.next_cursor.expect("a cursor to the rest");
    assert_eq!((cursor.topic_name.0.as_str(), cursor.partition_index), ("wide", 2));
    let req = req.with_cursor(Some(
        describe_topic_partitions_request::Cursor::default()
            .with_topic_name(cursor.topic_name)
            .with_partition_index(cursor.partition_index),
    ));
    let S::DescribeTopicPartitions(r) =
        call(&mut conn, ApiKey::DescribeTopicPartitions, 0, next(), &RequestKind::DescribeTopicPartitions(req)).await
    else {
        panic!()
    };
    let parts: Vec<i32> = r.topics[0].partitions.iter().map(|p| p.partition_index).collect();
    assert_eq!((parts, r.next_cursor.is_none()), (vec![2], true));

    // A member subscribed to "wide" (ConsumerProtocolSubscription v0) holds the group.
    let mut subscription = vec![0, 0, 0, 0, 0, 1, 0, 4];
    subscription.extend_from_slice(b"wide");
    subscription.extend_from_slice(&[0, 0, 0, 0]);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s("od")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(subscription))]);
    let S::JoinGroup(j) = call(&mut conn, ApiKey::JoinGroup, 3, next(), &RequestKind::JoinGroup(join)).await else {
        panic!()
    };
    assert_eq!(j.error_code, 0);
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("od")))
        .with_generation_id(j.generation_id)
        .with_member_id(j.member_id.clone());
    let S::SyncGroup(r) = call(&mut conn, ApiKey::SyncGroup, 3, next(), &RequestKind::SyncGroup(sync)).await else {
        panic!()
    };
    assert_eq!(r.error_code, 0);
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("od")))
        .with_generation_id_or_member_epoch(j.generation_id)
        .with_member_id(j.member_id.clone())
        .with_topics(
            ["wide", "t"]
                .iter()
                .map(|name| {
                    offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic(name)).with_partitions(
                        vec![offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(5)],
                    )
                })
                .collect(),
        );
    let S::OffsetCommit(r) = call(&mut conn, ApiKey::OffsetCommit, 2, next(), &RequestKind::OffsetCommit(commit)).await
    else {
        panic!()
    };
    assert!(r.topics.iter().all(|t| t.partitions[0].error_code == 0));
    let od = OffsetDeleteRequest::default().with_group_id(GroupId(s("od"))).with_topics(
        ["wide", "t"]
            .iter()
            .map(|name| {
                offset_delete_request::OffsetDeleteRequestTopic::default().with_name(topic(name)).with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0),
                ])
            })
            .collect(),
    );
    let S::OffsetDelete(r) = call(&mut conn, ApiKey::OffsetDelete, 0, next(), &RequestKind::OffsetDelete(od)).await
    else {
        panic!()
    };
    let codes: Vec<i16> = r.topics.iter().map(|t| t.partitions[0].error_code).collect();
    assert_eq!(codes, vec![86, 0], "GROUP_SUBSCRIBED_TO_TOPIC for wide, t deleted");
    let left: Vec<_> = broker.groups().fetch("od", None).into_iter().map(|((t, _), _)| t).collect();
    assert_eq!(left, vec!["wide".to_owned()]);
    let unknown = OffsetDeleteRequest::default().with_group_id(GroupId(s("nope")));
    let S::OffsetDelete(r) =
        call(&mut conn, ApiKey::OffsetDelete, 0, next(), &RequestKind::OffsetDelete(unknown)).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 69, "GROUP_ID_NOT_FOUND");

    // Legacy AlterConfigs: what is not named goes back to its default.
    broker
        .alter_topic_config(
            "wide",
            &[("retention.ms".into(), Some("1000".into())), ("segment.ms".into(), Some("5000".into()))],
            false,
        )
        .unwrap();
    let alter =
        AlterConfigsRequest::default().with_resources(vec![alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("wide"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(s("segment.ms"))
                .with_value(Some(s("7000")))])]);
    let S::AlterConfigs(r) = call(&mut conn, ApiKey::AlterConfigs, 1, next(), &RequestKind::AlterConfigs(alter)).await
    else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, 0);
    let overrides = broker.topic("wide").unwrap().overrides().0;
    assert_eq!(overrides.into_iter().collect::<Vec<_>>(), vec![("segment.ms".to_owned(), "7000".to_owned())]);
}

/// KIP-848 at every advertised version: a member joins, gets every partition, a second one
/// joins and the first gives half up before the second gets it; ConsumerGroupDescribe shows
/// both; leaving with epoch -1.
#[tokio::test]
async fn consumer_group_heartbeat_and_describe_at_every_version() {
    use ResponseKind as S;
    let (addr, broker, _dir) = start().await;
    broker.create_topic(&NewTopic { name: "k4".into(), partitions: Some(4), ..NewTopic::default() }, false).unwrap();
    let id = uuid::Uuid::from_bytes(broker.topic("k4").unwrap().id);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut corr = 8000;
    for v in min_version(ApiKey::ConsumerGroupHeartbeat)..=max_version(ApiKey::ConsumerGroupHeartbeat) {
        let group = GroupId(s(&format!("k{v}")));
        let hb = |member: &str, epoch: i32, owned: Option<Vec<i32>>| {
            RequestKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(group.clone())
                    .with_member_id(s(member))
                    .with_member_epoch(epoch)
                    .with_rebalance_timeout_ms(30_000)
                    .with_subscribed_topic_names((epoch == 0).then(|| vec![topic("k4")]))
                    .with_topic_partitions(owned.map(|ps| {
                        vec![consumer_group_heartbeat_request::TopicPartitions::default()
                            .with_topic_id(id)
                            .with_partitions(ps)]
                    })),
            )
        };
        // v0 has the broker pick member ids; v1 clients bring their own.
        let a_id = if v >= 1 { "member-a" } else { "" };
        let a = cg_hb(&mut conn, v, &mut corr, hb(a_id, 0, None)).await;
        let a_id = a.member_id.clone().unwrap().to_string();
        let parts = |r: &ConsumerGroupHeartbeatResponse| -> Option<Vec<i32>> {
            r.assignment.as_ref().map(|x| x.topic_partitions.iter().flat_map(|t| t.partitions.clone()).collect())
        };
        assert_eq!(parts(&a), Some(vec![0, 1, 2, 3]));
        let a = cg_hb(&mut conn, v, &mut corr, hb(&a_id, a.member_epoch, Some(vec![0, 1, 2, 3]))).await;
        let b = cg_hb(&mut conn, v, &mut corr, hb(if v >= 1 { "member-b" } else { "" }, 0, None)).await;
        let b_id = b.member_id.clone().unwrap().to_string();
        assert_eq!(parts(&b), Some(vec![]), "v{v}: all four still owned by a");
        let a2 = cg_hb(&mut conn, v, &mut corr, hb(&a_id, a.member_epoch, None)).await;
        let kept = parts(&a2).unwrap();
        assert_eq!(kept.len(), 2);
        cg_hb(&mut conn, v, &mut corr, hb(&a_id, a2.member_epoch, Some(kept.clone()))).await;
        let b2 = cg_hb(&mut conn, v, &mut corr, hb(&b_id, b.member_epoch, None)).await;
        let got = parts(&b2).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|p| !kept.contains(p)));

        corr += 1;
        let dv = v.min(max_version(ApiKey::ConsumerGroupDescribe));
        let S::ConsumerGroupDescribe(d) = call(
            &mut conn,
            ApiKey::ConsumerGroupDescribe,
            dv,
            corr,
            &RequestKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default().with_group_ids(vec![group.clone()]),
            ),
        )
        .await
        else {
            panic!()
        };
        let g = &d.groups[0];
        assert_eq!((g.error_code, g.members.len(), g.assignor_name.as_str()), (0, 2, "uniform"), "describe v{dv}");
        assert!(g.members.iter().all(|m| m.assignment.topic_partitions[0].topic_name.0.as_str() == "k4"));

        let left = cg_hb(&mut conn, v, &mut corr, hb(&a_id, -1, None)).await;
        assert_eq!(left.member_epoch, -1);
    }
}

async fn cg_hb(conn: &mut TcpStream, v: i16, corr: &mut i32, req: RequestKind) -> ConsumerGroupHeartbeatResponse {
    *corr += 1;
    let ResponseKind::ConsumerGroupHeartbeat(r) = call(conn, ApiKey::ConsumerGroupHeartbeat, v, *corr, &req).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, 0, "v{v}: {:?}", r.error_message);
    r
}

/// DescribeLogDirs reports each partition's real size and, from v4, the data directory's
/// filesystem size and free space (statvfs), at every advertised version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_log_dirs_reports_partition_sizes_and_disk_space() {
    use ResponseKind as S;
    let (addr, broker, _dir) = start().await;
    broker.create_topic(&NewTopic { name: "sized".into(), partitions: Some(2), ..NewTopic::default() }, false).unwrap();
    let p = broker.partition("sized", 1).unwrap();
    for _ in 0..3 {
        p.append(&weir_log::ValidatedBatch::new(&batch(), 1 << 20).unwrap()).unwrap();
    }
    let expected = p.stats().size_bytes as i64;
    assert!(expected > 0);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let (min, max) = (min_version(ApiKey::DescribeLogDirs), max_version(ApiKey::DescribeLogDirs));
    assert!(max >= 4, "v4 (total and usable bytes) is advertised");
    for v in min..=max {
        let only_sized = DescribeLogDirsRequest::default().with_topics(Some(vec![
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(topic("sized"))
                .with_partitions(vec![0, 1]),
        ]));
        for (i, req) in [DescribeLogDirsRequest::default().with_topics(None), only_sized].into_iter().enumerate() {
            let S::DescribeLogDirs(r) = call(
                &mut conn,
                ApiKey::DescribeLogDirs,
                v,
                9000 + v as i32 * 2 + i as i32,
                &RequestKind::DescribeLogDirs(req),
            )
            .await
            else {
                panic!()
            };
            let [dir] = &r.results[..] else { panic!("one log dir: {r:?}") };
            assert_eq!(dir.error_code, 0);
            let sized = dir.topics.iter().find(|t| t.name.0.as_str() == "sized").expect("the topic");
            let sizes: Vec<(i32, i64)> =
                sized.partitions.iter().map(|p| (p.partition_index, p.partition_size)).collect();
            assert_eq!(sizes, vec![(0, 0), (1, expected)], "v{v}");
            if i == 1 {
                assert_eq!(dir.topics.len(), 1, "v{v}: only the topic asked for");
            }
            if v >= 4 {
                assert!(dir.total_bytes > 0 && dir.usable_bytes >= 0, "v{v}: {} {}", dir.total_bytes, dir.usable_bytes);
                assert!(dir.usable_bytes <= dir.total_bytes);
            }
        }
    }
}

/// DescribeConfigs on a topic: DYNAMIC_TOPIC_CONFIG (1) for what the topic sets,
/// STATIC_BROKER_CONFIG (4) for what a serve flag changed in the broker's defaults,
/// DEFAULT_CONFIG (5) otherwise; never read-only, accepted-only configs included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_sources_distinguish_topic_broker_and_default_values() {
    use ResponseKind as S;
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig { data_dir: dir.path().to_owned(), ..BrokerConfig::default() };
    config.log.retention_ms = Some(3_600_000); // as `weir serve --retention-ms 3600000`
    let broker = Arc::new(Broker::open(config, Arc::new(FsStorage), Arc::new(SystemClock)).unwrap());
    let configs = vec![("preallocate".to_owned(), "true".to_owned()), ("segment.jitter.ms".to_owned(), "5".to_owned())];
    broker
        .create_topic(&NewTopic { name: "src".into(), partitions: Some(1), configs, ..NewTopic::default() }, false)
        .unwrap();
    let server_config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
    let server = Server::bind(server_config, broker.clone()).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s("src")),
    ]);
    let S::DescribeConfigs(r) =
        call(&mut conn, ApiKey::DescribeConfigs, 4, 1, &RequestKind::DescribeConfigs(req)).await
    else {
        panic!()
    };
    let entries: std::collections::HashMap<String, (String, i8, bool)> = r.results[0]
        .configs
        .iter()
        .map(|c| (c.name.to_string(), (c.value.as_deref().unwrap_or("").to_owned(), c.config_source, c.read_only)))
        .collect();
    assert_eq!(entries["preallocate"], ("true".to_owned(), 1, false));
    assert_eq!(entries["segment.jitter.ms"], ("5".to_owned(), 1, false));
    assert_eq!(entries["retention.ms"], ("3600000".to_owned(), 4, false));
    assert_eq!(entries["min.cleanable.dirty.ratio"], ("0.5".to_owned(), 5, false));
    assert_eq!(entries["unclean.leader.election.enable"], ("false".to_owned(), 5, false));
}
