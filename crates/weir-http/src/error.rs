//! JSON errors with the right HTTP status: `{"error": code, "message": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use weir_broker::BatchError;
use weir_broker::BrokerError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unknown_topic(topic: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown_topic", format!("topic {topic:?} does not exist"))
    }
    /// A produce to a missing topic while auto.create.topics.enable is off.
    pub fn not_auto_created(topic: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_topic",
            format!(
                "topic {topic:?} does not exist and the broker does not create topics on first use \
                 (auto.create.topics.enable=false): create it with `weir topic create {topic}` or POST /topics"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let message = e.to_string();
        let (status, code) = match &e {
            BrokerError::UnknownTopicOrPartition { .. } => (StatusCode::NOT_FOUND, "unknown_topic_or_partition"),
            BrokerError::TopicExists(_) => (StatusCode::CONFLICT, "topic_exists"),
            BrokerError::InvalidTopic { .. } => (StatusCode::BAD_REQUEST, "invalid_topic"),
            BrokerError::InvalidPartitions(_) => (StatusCode::BAD_REQUEST, "invalid_partitions"),
            BrokerError::InvalidReplicationFactor(_) => (StatusCode::BAD_REQUEST, "invalid_replication_factor"),
            BrokerError::InvalidConfig { .. } => (StatusCode::BAD_REQUEST, "invalid_config"),
            BrokerError::InvalidBatch(BatchError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large")
            }
            BrokerError::InvalidBatch(_) => (StatusCode::BAD_REQUEST, "invalid_record"),
            BrokerError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            BrokerError::OffsetOutOfRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "offset_out_of_range"),
            BrokerError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "HTTP request failed");
        }
        Self { status, code, message }
    }
}
