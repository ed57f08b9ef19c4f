//! Topic administration.

use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;
use weir_broker::{describe_config, hex, Broker, NewTopic, TOPIC_CONFIG_KEYS};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTopic {
    name: String,
    /// Defaults to the broker's default partition count.
    partitions: Option<i32>,
    /// Topic configs in Kafka's names, e.g. {"retention.ms": "3600000"}.
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopicSummary {
    name: String,
    partitions: i32,
    internal: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PartitionInfo {
    partition: i32,
    log_start_offset: u64,
    log_end_offset: u64,
    size_bytes: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TopicDetail {
    name: String,
    id: String,
    internal: bool,
    partitions: Vec<PartitionInfo>,
    configs: BTreeMap<String, String>,
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// Lists topics.
#[utoipa::path(get, path = "/topics", responses((status = 200, body = Vec<TopicSummary>)))]
pub(crate) async fn list_topics(State(s): State<Arc<AppState>>) -> Json<Vec<TopicSummary>> {
    Json(
        s.broker
            .topics()
            .iter()
            .map(|t| TopicSummary {
                name: t.name.clone(),
                partitions: t.partition_count(),
                internal: Broker::is_internal(&t.name),
            })
            .collect(),
    )
}

/// Creates a topic.
#[utoipa::path(post, path = "/topics", request_body = CreateTopic,
    responses((status = 201, body = TopicDetail), (status = 400, description = "Invalid name, partitions or configs"), (status = 409, description = "Exists")))]
pub(crate) async fn create_topic(
    State(s): State<Arc<AppState>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<TopicDetail>), ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let req: CreateTopic = parse_body(&body)?;
    let new = NewTopic {
        name: req.name,
        partitions: req.partitions,
        replication_factor: None,
        configs: req.configs.into_iter().collect(),
    };
    let st = s.clone();
    let topic = tokio::task::spawn_blocking(move || st.broker.create_topic(&new, false))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok((StatusCode::CREATED, Json(detail(&s.broker, &topic)?)))
}

fn detail(broker: &Broker, topic: &weir_broker::Topic) -> Result<TopicDetail, ApiError> {
    let config = broker.resolve_config(&topic.overrides())?;
    Ok(TopicDetail {
        name: topic.name.clone(),
        id: hex(&topic.id),
        internal: Broker::is_internal(&topic.name),
        partitions: topic
            .partitions()
            .iter()
            .map(|p| {
                let st = p.stats();
                PartitionInfo {
                    partition: p.index,
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.log_end_offset,
                    size_bytes: st.size_bytes,
                }
            })
            .collect(),
        configs: TOPIC_CONFIG_KEYS
            .iter()
            .filter_map(|k| describe_config(&config, k).map(|v| (k.to_string(), v)))
            .collect(),
    })
}

/// Partitions (offsets, sizes) and configs of a topic.
#[utoipa::path(get, path = "/topics/{topic}", params(("topic" = String, Path)),
    responses((status = 200, body = TopicDetail), (status = 404, description = "Unknown topic")))]
pub(crate) async fn describe_topic(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<TopicDetail>, ApiError> {
    let topic = s.broker.topic(&name).ok_or_else(|| ApiError::unknown_topic(&name))?;
    Ok(Json(detail(&s.broker, &topic)?))
}

/// Deletes a topic and its data.
#[utoipa::path(delete, path = "/topics/{topic}", params(("topic" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Unknown topic")))]
pub(crate) async fn delete_topic(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.broker.topic(&name).is_none() {
        return Err(ApiError::unknown_topic(&name));
    }
    tokio::task::spawn_blocking(move || s.broker.delete_topic(&name))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets (a string) or resets (null) topic configs: {"retention.ms": "60000", "segment.bytes": null}.
#[utoipa::path(patch, path = "/topics/{topic}/configs", params(("topic" = String, Path)),
    request_body(content = BTreeMap<String, Option<String>>),
    responses((status = 200, body = TopicDetail), (status = 400, description = "Invalid config"), (status = 404, description = "Unknown topic")))]
pub(crate) async fn alter_configs(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<TopicDetail>, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let changes: BTreeMap<String, Option<String>> = parse_body(&body)?;
    let topic = s.broker.topic(&name).ok_or_else(|| ApiError::unknown_topic(&name))?;
    let st = s.clone();
    tokio::task::spawn_blocking(move || {
        st.broker.alter_topic_config(&name, &changes.into_iter().collect::<Vec<_>>(), false)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    Ok(Json(detail(&s.broker, &topic)?))
}
