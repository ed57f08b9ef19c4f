//! Consumer groups with lag.

use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupSummary {
    group: String,
    state: String,
    protocol_type: String,
    members: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemberJson {
    member_id: String,
    client_id: String,
    host: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupPartition {
    topic: String,
    partition: i32,
    committed_offset: i64,
    log_end_offset: u64,
    lag: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupDetail {
    group: String,
    state: String,
    generation: i32,
    members: Vec<MemberJson>,
    partitions: Vec<GroupPartition>,
}

/// Lists consumer groups.
#[utoipa::path(get, path = "/groups", responses((status = 200, body = Vec<GroupSummary>)))]
pub(crate) async fn list_groups(State(s): State<Arc<AppState>>) -> Json<Vec<GroupSummary>> {
    Json(
        s.broker
            .groups()
            .list()
            .into_iter()
            .map(|g| GroupSummary {
                group: g.group_id,
                state: g.state.to_owned(),
                protocol_type: g.protocol_type,
                members: g.members.len(),
            })
            .collect(),
    )
}

/// Members, committed offsets and lag of a group.
#[utoipa::path(get, path = "/groups/{group}", params(("group" = String, Path)),
    responses((status = 200, body = GroupDetail), (status = 404, description = "Unknown group")))]
pub(crate) async fn describe_group(
    State(s): State<Arc<AppState>>,
    Path(group): Path<String>,
) -> Result<Json<GroupDetail>, ApiError> {
    let coordinator = s.broker.groups();
    let info = coordinator.describe(&group).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "unknown_group", format!("group {group:?} does not exist"))
    })?;
    let partitions = coordinator
        .fetch(&group, None)
        .into_iter()
        .filter_map(|((topic, partition), c)| {
            let c = c?;
            let end = s.broker.partition(&topic, partition).map(|p| p.log_end_offset()).unwrap_or(0);
            Some(GroupPartition {
                lag: (end as i64 - c.offset).max(0) as u64,
                topic,
                partition,
                committed_offset: c.offset,
                log_end_offset: end,
            })
        })
        .collect();
    Ok(Json(GroupDetail {
        group,
        state: info.state.to_owned(),
        generation: info.generation,
        members: info
            .members
            .into_iter()
            .map(|m| MemberJson { member_id: m.member_id, client_id: m.client_id, host: m.client_host })
            .collect(),
        partitions,
    }))
}
