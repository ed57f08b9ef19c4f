//! Produce and read records; live subscription with Server-Sent Events.

use super::topics::parse_body;
use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use base64::Engine;
use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use weir_broker::partitioner::partition_for_key;
use weir_broker::Topic;
use weir_log::{BatchBuilder, BatchHeader};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Records one read returns at most.
const READ_RECORDS_MAX: usize = 10_000;

/// One record to produce. `value` is stored as its JSON text; `value_base64` as raw bytes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProduceRecord {
    key: Option<String>,
    #[schema(value_type = Object)]
    value: Option<Value>,
    value_base64: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Explicit partition; otherwise murmur2(key) like Kafka producers, or round robin.
    partition: Option<i32>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ProduceQuery {
    /// Key of a raw (non-JSON) body.
    key: Option<String>,
    /// Partition of a raw body.
    partition: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Produced {
    partition: i32,
    offset: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProduceResponse {
    offsets: Vec<Produced>,
}

struct Outgoing {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// A partition the topic does not have, with the ones it has.
fn unknown_partition(topic: &Topic, partition: i32) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_partition",
        format!(
            "topic {} has no partition {partition}: its partitions are 0 to {}",
            topic.name,
            topic.partition_count() - 1
        ),
    )
}

fn choose_partition(s: &AppState, topic: &Topic, explicit: Option<i32>, key: Option<&[u8]>) -> Result<i32, ApiError> {
    let n = topic.partition_count();
    match (explicit, key) {
        (Some(p), _) if (0..n).contains(&p) => Ok(p),
        (Some(p), _) => Err(unknown_partition(topic, p)),
        (None, Some(k)) => Ok(partition_for_key(k, n)),
        (None, None) => Ok((s.next_partition.fetch_add(1, Ordering::Relaxed) % n.max(1) as u64) as i32),
    }
}

/// Produces one JSON record, a JSON array of records, or a raw body (Content-Type:
/// application/octet-stream, with `key` and `partition` in the query).
#[utoipa::path(post, path = "/topics/{topic}/records", params(("topic" = String, Path), ProduceQuery),
    request_body(content = Vec<ProduceRecord>, description = "A record, an array of records, or raw bytes"),
    responses((status = 200, body = ProduceResponse), (status = 400, description = "Invalid JSON"),
        (status = 404, description = "Unknown topic"), (status = 413, description = "Too large")))]
pub(crate) async fn produce(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<ProduceQuery>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<ProduceResponse>, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_body" },
            e.body_text(),
        )
    })?;
    // Kafka's rule for every front end: a produce creates a missing topic when
    // auto.create.topics.enable is on (the default), with the broker's default partitions.
    let broker = s.broker.clone();
    let lookup = name.clone();
    let topic = tokio::task::spawn_blocking(move || broker.topic_or_auto_create(&lookup))
        .await
        .map_err(internal)??
        .ok_or_else(|| ApiError::not_auto_created(&name))?;
    // Raw bytes only when asked for; anything else (curl's default form type included) is JSON.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| !ct.starts_with("application/octet-stream"));
    let mut out = Vec::new();
    if json {
        let v: Value = parse_body(&body)?;
        let list: Vec<ProduceRecord> = match v {
            Value::Array(_) => serde_json::from_value(v),
            _ => serde_json::from_value(v).map(|r| vec![r]),
        }
        .map_err(|e| ApiError::bad_request(format!("invalid record: {e}")))?;
        if list.is_empty() {
            return Err(ApiError::bad_request("no records"));
        }
        for r in list {
            let value = match (r.value, r.value_base64) {
                (Some(_), Some(_)) => return Err(ApiError::bad_request("give value or value_base64, not both")),
                (Some(Value::Null), None) | (None, None) => None,
                (Some(v), None) => Some(serde_json::to_vec(&v).map_err(internal)?),
                (None, Some(b)) => {
                    Some(B64.decode(b).map_err(|e| ApiError::bad_request(format!("value_base64: {e}")))?)
                }
            };
            let key = r.key.map(String::into_bytes);
            let partition = choose_partition(&s, &topic, r.partition, key.as_deref())?;
            out.push(Outgoing {
                partition,
                key,
                value,
                headers: r.headers.into_iter().map(|(k, v)| (k, v.into_bytes())).collect(),
            });
        }
    } else {
        let key = q.key.map(String::into_bytes);
        let partition = choose_partition(&s, &topic, q.partition, key.as_deref())?;
        out.push(Outgoing { partition, key, value: Some(body.to_vec()), headers: Vec::new() });
    }
    let st = s.clone();
    let offsets = tokio::task::spawn_blocking(move || append(&topic, out)).await.map_err(internal)??;
    st.notify_appended();
    Ok(Json(ProduceResponse { offsets }))
}

/// Appends one batch per partition; answers offsets in the order the records came.
fn append(topic: &Topic, records: Vec<Outgoing>) -> Result<Vec<Produced>, ApiError> {
    let now = weir_log::SystemClock::unix_ms();
    let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        by_partition.entry(r.partition).or_default().push(i);
    }
    let mut offsets = vec![0u64; records.len()];
    for (p, idx) in by_partition {
        let partition = topic.partition(p).ok_or_else(|| ApiError::unknown_topic(&topic.name))?;
        let mut b = BatchBuilder::new();
        for &i in &idx {
            let r = &records[i];
            let hdrs: Vec<(&[u8], Option<&[u8]>)> =
                r.headers.iter().map(|(k, v)| (k.as_bytes(), Some(v.as_slice()))).collect();
            b.push_with_headers(now, r.key.as_deref(), r.value.as_deref(), &hdrs);
        }
        let appended = partition.produce(&b.build())?;
        partition.wait_durable(appended.end_offset)?;
        for (n, &i) in idx.iter().enumerate() {
            offsets[i] = appended.base_offset + n as u64;
        }
    }
    Ok(records.iter().zip(offsets).map(|(r, offset)| Produced { partition: r.partition, offset }).collect())
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ReadQuery {
    /// Partition to read; required when the topic has more than one.
    partition: Option<i32>,
    /// Start at this offset.
    offset: Option<u64>,
    /// Start at the first record with this timestamp (ms) or later.
    timestamp: Option<i64>,
    /// earliest, latest, or a relative time such as 30s, 5m, 2h, 1d.
    from: Option<String>,
    /// Records at most [default: 100].
    max: Option<usize>,
    /// Long poll: wait up to this many milliseconds for records when there are none.
    wait: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecordJson {
    partition: i32,
    offset: u64,
    timestamp: i64,
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    #[schema(value_type = Object)]
    value: Value,
    /// "json" when the value was JSON, "base64" otherwise; absent for a null value.
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReadResponse {
    records: Vec<RecordJson>,
    /// Offset to read from next.
    next_offset: u64,
    high_watermark: u64,
    log_start_offset: u64,
}

/// `from=5m`: a duration in the one syntax of every front end, with its unit (a bare number
/// here would read as an offset).
fn parse_relative(s: &str) -> Option<Duration> {
    if s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    weir_stream::duration::parse(s, weir_stream::duration::BareNumber::Milliseconds).ok()
}

fn text_or_base64(b: &[u8]) -> (String, Option<&'static str>) {
    match std::str::from_utf8(b) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (B64.encode(b), Some("base64")),
    }
}

fn record_json(partition: i32, base: i64, h: &BatchHeader, r: &weir_log::record::Record<'_>) -> RecordJson {
    let (key, key_encoding) = match r.key.map(text_or_base64) {
        Some((k, e)) => (Some(k), e),
        None => (None, None),
    };
    let (value, value_encoding) = match r.value {
        None => (Value::Null, None),
        Some(v) => match serde_json::from_slice::<Value>(v) {
            Ok(j) => (j, Some("json")),
            Err(_) => (Value::String(B64.encode(v)), Some("base64")),
        },
    };
    RecordJson {
        partition,
        offset: (base + i64::from(r.offset_delta)) as u64,
        timestamp: h.record_timestamp(r.timestamp_delta),
        key,
        key_encoding,
        value,
        value_encoding,
        headers: r
            .headers()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.map(|v| text_or_base64(v).0).unwrap_or_default()))
            .collect(),
    }
}

/// Reads up to `max` records at or after `offset`; returns them and the next offset.
fn read_records(
    topic: &Topic,
    partition: i32,
    mut offset: u64,
    max: usize,
) -> Result<(Vec<RecordJson>, u64, u64, u64), ApiError> {
    let part = topic.partition(partition).ok_or_else(|| unknown_partition(topic, partition))?;
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut bytes = 0u64;
    loop {
        buf.clear();
        let info = part.read(offset, 1 << 20, &mut buf)?;
        if info.bytes == 0 {
            part.count_consumed(out.len() as u64, bytes);
            return Ok((out, offset, info.high_watermark, info.log_start_offset));
        }
        let mut pos = 0;
        while pos < buf.len() {
            let h = BatchHeader::parse(&buf[pos..]).map_err(internal)?;
            let batch = &buf[pos..pos + h.total_len()];
            let mut done = false;
            weir_log::codec::for_each_record(batch, &h, |r| {
                let o = (h.base_offset + i64::from(r.offset_delta)) as u64;
                if o >= offset && !done {
                    out.push(record_json(partition, h.base_offset, &h, r));
                    bytes += r.encoded.len() as u64;
                    if out.len() >= max {
                        offset = o + 1;
                        done = true;
                    }
                }
            })
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "undecodable_batch",
                    format!("offset {}: {e}", h.base_offset),
                )
            })?;
            if done {
                part.count_consumed(out.len() as u64, bytes);
                return Ok((out, offset, info.high_watermark, info.log_start_offset));
            }
            offset = offset.max(h.last_offset() as u64 + 1);
            pos += h.total_len();
        }
    }
}

fn start_offset(
    topic: &Topic,
    partition: i32,
    offset: Option<u64>,
    timestamp: Option<i64>,
    from: Option<&str>,
) -> Result<u64, ApiError> {
    let part = topic.partition(partition).ok_or_else(|| unknown_partition(topic, partition))?;
    let by_time = |t: i64| -> Result<u64, ApiError> {
        Ok(part.offset_for_timestamp(t)?.map_or(part.log_end_offset(), |(o, _)| o))
    };
    match (offset, timestamp, from) {
        (Some(o), None, None) => Ok(o),
        (None, Some(t), None) => by_time(t),
        (None, None, Some("earliest")) | (None, None, None) => Ok(part.log_start_offset()),
        (None, None, Some("latest" | "now")) => Ok(part.log_end_offset()),
        (None, None, Some(rel)) => {
            let d = parse_relative(rel).ok_or_else(|| {
                ApiError::bad_request(format!("from={rel:?}: use earliest, latest or a duration like 5m"))
            })?;
            let now = weir_log::SystemClock::unix_ms();
            by_time(now - d.as_millis() as i64)
        }
        _ => Err(ApiError::bad_request("give at most one of offset, timestamp and from")),
    }
}

/// Reads records of one partition from an offset, a timestamp or a relative time, with an
/// optional long poll.
#[utoipa::path(get, path = "/topics/{topic}/records", params(("topic" = String, Path), ReadQuery),
    responses((status = 200, body = ReadResponse), (status = 404, description = "Unknown topic or partition"),
        (status = 416, description = "Offset out of range")))]
pub(crate) async fn read(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Json<ReadResponse>, ApiError> {
    let topic = s.broker.topic(&name).ok_or_else(|| ApiError::unknown_topic(&name))?;
    let partition = read_partition(&topic, q.partition)?;
    let max = q.max.unwrap_or(100).clamp(1, READ_RECORDS_MAX);
    let wait = Duration::from_millis(q.wait.unwrap_or(0)).min(s.config.read_wait_max);
    let deadline = tokio::time::Instant::now() + wait;
    let mut appended = s.appended.subscribe();
    let offset = start_offset(&topic, partition, q.offset, q.timestamp, q.from.as_deref())?;
    loop {
        appended.borrow_and_update();
        let t = topic.clone();
        let (records, next, hwm, start) =
            tokio::task::spawn_blocking(move || read_records(&t, partition, offset, max)).await.map_err(internal)??;
        if !records.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(ReadResponse { records, next_offset: next, high_watermark: hwm, log_start_offset: start }));
        }
        if tokio::time::timeout_at(deadline, appended.changed()).await.is_err() {
            return Ok(Json(ReadResponse { records, next_offset: next, high_watermark: hwm, log_start_offset: start }));
        }
    }
}

/// The partition a read or a subscription names. Offsets are per partition, so, as with
/// Kafka consumers and the Kafka REST proxies (Confluent's and Redpanda's name the partition
/// in the path), a topic with several partitions needs one named: a silent partition 0 would
/// look like the whole topic. A single-partition topic is unambiguous.
fn read_partition(topic: &Topic, partition: Option<i32>) -> Result<i32, ApiError> {
    match (partition, topic.partition_count()) {
        (Some(p), _) => Ok(p),
        (None, 1) => Ok(0),
        (None, n) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "partition_required",
            format!(
                "topic {} has {n} partitions: say which with partition=0 to partition={} (offsets are per partition)",
                topic.name,
                n - 1
            ),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct SubscribeQuery {
    /// Partition to follow; required when the topic has more than one.
    partition: Option<i32>,
    /// now (default), earliest, or an offset.
    from: Option<String>,
}

/// Live records as Server-Sent Events (`record` events with a RecordJson, and a final
/// `dropped` event for a subscriber too slow to keep up).
#[utoipa::path(get, path = "/topics/{topic}/subscribe", params(("topic" = String, Path), SubscribeQuery),
    responses((status = 200, description = "text/event-stream of records", content_type = "text/event-stream"),
        (status = 404, description = "Unknown topic or partition")))]
pub(crate) async fn subscribe(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<SubscribeQuery>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let topic = s.broker.topic(&name).ok_or_else(|| ApiError::unknown_topic(&name))?;
    let partition = read_partition(&topic, q.partition)?;
    let offset = match q.from.as_deref() {
        None | Some("now" | "latest") => start_offset(&topic, partition, None, None, Some("latest"))?,
        Some("earliest") => start_offset(&topic, partition, None, None, Some("earliest"))?,
        Some(o) => o.parse::<u64>().map_err(|_| ApiError::bad_request("from must be now, earliest or an offset"))?,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(s.config.sse_buffer.max(1));
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(feed(s.clone(), topic, partition, offset, tx, dropped.clone()));
    let stream = futures_util::stream::unfold((rx, dropped, false), |(mut rx, dropped, ended)| async move {
        if ended {
            return None;
        }
        match rx.recv().await {
            Some(ev) => Some((Ok(ev), (rx, dropped, false))),
            None if dropped.load(Ordering::SeqCst) => {
                let ev = Event::default()
                    .event("dropped")
                    .data(r#"{"reason":"subscriber too slow: events were not taken in time"}"#);
                Some((Ok(ev), (rx, dropped, true)))
            }
            None => None,
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Reads records as they arrive and hands them to the subscriber's bounded channel. A
/// subscriber whose channel stays full for the stall timeout is dropped, never buffered.
async fn feed(
    s: Arc<AppState>,
    topic: Arc<Topic>,
    partition: i32,
    mut offset: u64,
    tx: tokio::sync::mpsc::Sender<Event>,
    dropped: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut appended = s.appended.subscribe();
    loop {
        appended.borrow_and_update();
        let t = topic.clone();
        let batch = tokio::task::spawn_blocking(move || read_records(&t, partition, offset, 500)).await;
        let Ok(Ok((records, next, _, _))) = batch else {
            let _ = tx.send(Event::default().event("error").data(r#"{"reason":"read failed"}"#)).await;
            return;
        };
        for r in &records {
            let Ok(data) = serde_json::to_string(r) else { continue };
            match tx
                .send_timeout(
                    Event::default().event("record").id(r.offset.to_string()).data(data),
                    s.config.sse_stall_timeout,
                )
                .await
            {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::SendTimeoutError::Timeout(_)) => {
                    tracing::info!(topic = %topic.name, partition, offset = r.offset, "dropping a slow SSE subscriber");
                    dropped.store(true, Ordering::SeqCst);
                    return;
                }
                Err(tokio::sync::mpsc::error::SendTimeoutError::Closed(_)) => return,
            }
        }
        offset = next;
        if records.is_empty() {
            tokio::select! {
                r = appended.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    }
}
