//! One module per group of Kafka APIs. Handlers that touch the disk run on the blocking
//! pool; only Fetch's long poll waits on the async side.

mod admin;
mod fetch;
mod group;
mod metadata;
mod offsets;
mod produce;

use crate::dispatch::{api_keys, CloseReason, RequestContext};
use crate::server::Shared;
use kafka_protocol::messages::api_versions_response::ApiVersionsResponse;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

async fn blocking<F>(shared: &Arc<Shared>, f: F) -> Result<Option<ResponseKind>, CloseReason>
where
    F: FnOnce(&Shared) -> Option<ResponseKind> + Send + 'static,
{
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&shared)).await.map_err(|e| CloseReason::Handler(e.to_string()))
}

pub(crate) async fn handle(
    shared: &Arc<Shared>,
    ctx: &RequestContext,
    request: RequestKind,
    version: i16,
) -> Result<Option<ResponseKind>, CloseReason> {
    use RequestKind as R;
    use ResponseKind as S;
    match request {
        R::ApiVersions(_) => Ok(Some(S::ApiVersions(ApiVersionsResponse::default().with_api_keys(api_keys())))),
        R::Fetch(r) => fetch::handle(shared, r, version).await.map(|r| Some(S::Fetch(r))),
        R::Produce(r) => blocking(shared, move |s| produce::handle(s, r, version).map(S::Produce)).await,
        R::Metadata(r) => blocking(shared, move |s| Some(S::Metadata(metadata::handle(s, r, version)))).await,
        R::ListOffsets(r) => {
            blocking(shared, move |s| Some(S::ListOffsets(offsets::list_offsets(s, r, version)))).await
        }
        R::DeleteRecords(r) => blocking(shared, move |s| Some(S::DeleteRecords(offsets::delete_records(s, r)))).await,
        R::InitProducerId(r) => {
            blocking(shared, move |s| Some(S::InitProducerId(produce::init_producer_id(s, r)))).await
        }
        R::CreateTopics(r) => {
            blocking(shared, move |s| Some(S::CreateTopics(admin::create_topics(s, r, version)))).await
        }
        R::DeleteTopics(r) => {
            blocking(shared, move |s| Some(S::DeleteTopics(admin::delete_topics(s, r, version)))).await
        }
        R::CreatePartitions(r) => {
            blocking(shared, move |s| Some(S::CreatePartitions(admin::create_partitions(s, r)))).await
        }
        R::DescribeConfigs(r) => {
            blocking(shared, move |s| Some(S::DescribeConfigs(admin::describe_configs(s, r, version)))).await
        }
        R::IncrementalAlterConfigs(r) => {
            blocking(shared, move |s| Some(S::IncrementalAlterConfigs(admin::incremental_alter_configs(s, r)))).await
        }
        R::AlterConfigs(r) => blocking(shared, move |s| Some(S::AlterConfigs(admin::alter_configs(s, r)))).await,
        R::DescribeLogDirs(r) => {
            blocking(shared, move |s| Some(S::DescribeLogDirs(admin::describe_log_dirs(s, r, version)))).await
        }
        R::DescribeProducers(r) => {
            blocking(shared, move |s| Some(S::DescribeProducers(admin::describe_producers(s, r)))).await
        }
        R::DescribeTopicPartitions(r) => {
            Ok(Some(S::DescribeTopicPartitions(metadata::describe_topic_partitions(shared, r))))
        }
        R::ConsumerGroupHeartbeat(r) => {
            let ctx = ctx.clone();
            blocking(shared, move |s| Some(S::ConsumerGroupHeartbeat(group::consumer_group_heartbeat(s, &ctx, r))))
                .await
        }
        R::ConsumerGroupDescribe(r) => Ok(Some(S::ConsumerGroupDescribe(group::consumer_group_describe(shared, r)))),
        R::OffsetDelete(r) => blocking(shared, move |s| Some(S::OffsetDelete(group::offset_delete(s, r)))).await,
        R::DescribeCluster(r) => Ok(Some(S::DescribeCluster(admin::describe_cluster(shared, r)))),
        R::FindCoordinator(r) => Ok(Some(S::FindCoordinator(group::find_coordinator(shared, r, version)))),
        R::JoinGroup(r) => group::join_group(shared, ctx, r, version).await.map(|r| Some(S::JoinGroup(r))),
        R::SyncGroup(r) => group::sync_group(shared, r, version).await.map(|r| Some(S::SyncGroup(r))),
        R::Heartbeat(r) => Ok(Some(S::Heartbeat(group::heartbeat(shared, r)))),
        R::LeaveGroup(r) => Ok(Some(S::LeaveGroup(group::leave_group(shared, r, version)))),
        R::OffsetCommit(r) => {
            blocking(shared, move |s| Some(S::OffsetCommit(group::offset_commit(s, r, version)))).await
        }
        R::OffsetFetch(r) => Ok(Some(S::OffsetFetch(group::offset_fetch(shared, r, version)))),
        R::DescribeGroups(r) => Ok(Some(S::DescribeGroups(group::describe_groups(shared, r, version)))),
        R::ListGroups(r) => Ok(Some(S::ListGroups(group::list_groups(shared, r, version)))),
        R::DeleteGroups(r) => blocking(shared, move |s| Some(S::DeleteGroups(group::delete_groups(s, r)))).await,
        other => Err(CloseReason::Handler(format!("no handler for {other:?}"))),
    }
}
