//! Health, readiness, metrics and the OpenAPI document.

use crate::server::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use weir_metrics::{labels, Text};

/// The process is up; says which version it runs (`weir status` shows it).
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Process up")))]
pub(crate) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Logs are recovered and every listener is bound.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready yet")))]
pub(crate) async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if s.ready.load(Ordering::SeqCst) && !s.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "not_ready", "message": "starting up or shutting down"})),
        )
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let state = s.clone();
    let text = tokio::task::spawn_blocking(move || render(&state)).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

fn render(s: &AppState) -> String {
    let mut t = Text::new();
    for source in &s.metrics {
        source(&mut t);
    }
    crate::metrics::render(&mut t);
    weir_metrics::process::render(&mut t);
    t.family("weir_build_info", "gauge", "Always 1; the labels say which Weir this is");
    t.sample("weir_build_info", &labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    let topics = s.broker.topics();
    render_traffic(&mut t, &topics);
    let mut parts = Vec::new();
    for topic in &topics {
        for p in topic.partitions() {
            parts.push((topic.name.clone(), p.index, p.stats()));
        }
    }
    for (name, help, get) in [
        (
            "weir_partition_log_start_offset",
            "First offset of a partition",
            (|st: &weir_broker::LogStats| st.log_start_offset as f64) as fn(&weir_broker::LogStats) -> f64,
        ),
        ("weir_partition_log_end_offset", "Next offset of a partition", |st| st.log_end_offset as f64),
        ("weir_partition_size_bytes", "Bytes of a partition on disk", |st| st.size_bytes as f64),
    ] {
        t.family(name, "gauge", help);
        for (topic, p, st) in &parts {
            t.sample(name, &labels(&[("topic", topic), ("partition", &p.to_string())]), get(st));
        }
    }
    t.family("weir_group_lag", "gauge", "Log end offset minus committed offset, per group and partition");
    let groups = s.broker.groups();
    for g in groups.list() {
        for ((topic, partition), c) in groups.fetch(&g.group_id, None) {
            let (Some(c), Ok(part)) = (c, s.broker.partition(&topic, partition)) else { continue };
            let lag = (part.log_end_offset() as i64 - c.offset).max(0);
            t.sample(
                "weir_group_lag",
                &labels(&[("group", &g.group_id), ("topic", &topic), ("partition", &partition.to_string())]),
                lag as f64,
            );
        }
    }
    t.finish()
}

/// Per-topic message and byte counters: the sums of the partitions' own, which exist from
/// each partition's opening, so produce and fetch only add to an atomic.
fn render_traffic(t: &mut Text, topics: &[Arc<weir_broker::Topic>]) {
    type Get = fn(&weir_broker::Traffic) -> u64;
    let families: [(&str, &str, Get); 4] = [
        ("weir_topic_produced_messages_total", "Messages produced to a topic (Kafka and HTTP)", |c| {
            c.produced_messages.get()
        }),
        ("weir_topic_produced_bytes_total", "Bytes of record batches produced to a topic", |c| c.produced_bytes.get()),
        (
            "weir_topic_consumed_messages_total",
            "Messages handed to consumers of a topic (Kafka fetch, HTTP reads, SSE)",
            |c| c.consumed_messages.get(),
        ),
        ("weir_topic_consumed_bytes_total", "Bytes handed to consumers of a topic", |c| c.consumed_bytes.get()),
    ];
    for (name, help, get) in families {
        t.family(name, "counter", help);
        for topic in topics {
            let sum: u64 = topic.partitions().iter().map(|p| get(p.traffic())).sum();
            t.sample(name, &labels(&[("topic", &topic.name)]), sum as f64);
        }
    }
}

pub(crate) async fn openapi(doc: Arc<utoipa::openapi::OpenApi>) -> impl IntoResponse {
    Json((*doc).clone())
}
