//! One module per group of Kafka APIs. Handlers that touch the disk run on the blocking
//! pool; only Fetch's long poll waits on the async side.

mod admin;
mod fetch;
mod metadata;
mod offsets;
mod produce;

use crate::dispatch::{api_keys, CloseReason};
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
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(|e| CloseReason::Handler(e.to_string()))
}

pub(crate) async fn handle(
    shared: &Arc<Shared>,
    request: RequestKind,
    version: i16,
) -> Result<Option<ResponseKind>, CloseReason> {
    use RequestKind as R;
    use ResponseKind as S;
    match request {
        R::ApiVersions(_) => Ok(Some(S::ApiVersions(
            ApiVersionsResponse::default().with_api_keys(api_keys()),
        ))),
        R::Fetch(r) => fetch::handle(shared, r, version).await.map(|r| Some(S::Fetch(r))),
        R::Produce(r) => blocking(shared, move |s| produce::handle(s, r, version).map(S::Produce)).await,
        R::Metadata(r) => blocking(shared, move |s| Some(S::Metadata(metadata::handle(s, r, version)))).await,
        R::ListOffsets(r) => {
            blocking(shared, move |s| {
                Some(S::ListOffsets(offsets::list_offsets(s, r, version)))
            })
            .await
        }
        R::DeleteRecords(r) => blocking(shared, move |s| Some(S::DeleteRecords(offsets::delete_records(s, r)))).await,
        R::InitProducerId(r) => {
            blocking(shared, move |s| {
                Some(S::InitProducerId(produce::init_producer_id(s, r)))
            })
            .await
        }
        R::CreateTopics(r) => {
            blocking(shared, move |s| {
                Some(S::CreateTopics(admin::create_topics(s, r, version)))
            })
            .await
        }
        R::DeleteTopics(r) => {
            blocking(shared, move |s| {
                Some(S::DeleteTopics(admin::delete_topics(s, r, version)))
            })
            .await
        }
        R::CreatePartitions(r) => {
            blocking(shared, move |s| {
                Some(S::CreatePartitions(admin::create_partitions(s, r)))
            })
            .await
        }
        R::DescribeConfigs(r) => {
            blocking(shared, move |s| {
                Some(S::DescribeConfigs(admin::describe_configs(s, r, version)))
            })
            .await
        }
        R::IncrementalAlterConfigs(r) => {
            blocking(shared, move |s| {
                Some(S::IncrementalAlterConfigs(admin::incremental_alter_configs(s, r)))
            })
            .await
        }
        R::DescribeCluster(r) => Ok(Some(S::DescribeCluster(admin::describe_cluster(shared, r)))),
        other => Err(CloseReason::Handler(format!("no handler for {other:?}"))),
    }
}
