//! Fetch: stored batches returned unchanged, long poll on new appends.

use crate::dispatch::CloseReason;
use crate::errors;
use crate::server::Shared;
use bytes::BytesMut;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout_at, Instant};
use weir_broker::{BrokerError, Partition};

const READ_COMMITTED: i8 = 1;

/// What one pass over the requested partitions produced.
struct Pass {
    response: FetchResponse,
    bytes: usize,
    /// An error is news the client needs at once: do not wait for min_bytes.
    error: bool,
    /// (partition, messages, bytes) handed out, counted only for the pass that is answered.
    consumed: Vec<(Arc<Partition>, u64, u64)>,
}

impl Pass {
    fn answer(self) -> FetchResponse {
        for (partition, messages, bytes) in &self.consumed {
            partition.count_consumed(*messages, *bytes);
        }
        self.response
    }
}

/// Messages in whole stored batches (headers only; a compacted batch counts what it holds).
fn messages_in(mut batches: &[u8]) -> u64 {
    let mut n = 0;
    while let Ok(h) = weir_log::BatchHeader::parse(batches) {
        n += h.records_count.max(0) as u64;
        let Some(rest) = batches.get(h.total_len()..) else { break };
        batches = rest;
    }
    n
}

pub(crate) async fn handle(
    shared: &Arc<Shared>,
    req: FetchRequest,
    version: i16,
) -> Result<FetchResponse, CloseReason> {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(shared.config.fetch_wait_max);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut appended = shared.appended.subscribe();
    let req = Arc::new(req);
    loop {
        appended.borrow_and_update();
        let (s, r) = (shared.clone(), req.clone());
        let pass = tokio::task::spawn_blocking(move || read_pass(&s, &r, version))
            .await
            .map_err(|e| CloseReason::Handler(e.to_string()))?;
        if pass.bytes >= min_bytes.max(1) || pass.error || Instant::now() >= deadline {
            return Ok(pass.answer());
        }
        // Wait for any append (or the deadline), then read again.
        if timeout_at(deadline, appended.changed()).await.is_err() {
            return Ok(pass.answer());
        }
    }
}

fn read_pass(shared: &Shared, req: &FetchRequest, version: i16) -> Pass {
    // log_start_offset exists from v5 on; older versions must leave it at its default.
    let start_of = |s: u64| if version >= 5 { s as i64 } else { -1 };
    let mut remaining = if req.max_bytes > 0 { req.max_bytes as usize } else { usize::MAX };
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    let mut error = false;
    let mut consumed = Vec::new();
    let aborted = (req.isolation_level == READ_COMMITTED).then(Vec::new);
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        // v13+ (KIP-516) names topics by id only: an id from before a delete and re-create
        // under the same name finds nothing and gets UNKNOWN_TOPIC_ID.
        let (topic, missing) = if version >= 13 {
            (shared.broker.topic_by_id(t.topic_id.as_bytes()), errors::UNKNOWN_TOPIC_ID)
        } else {
            (shared.broker.topic(&t.topic.0), errors::UNKNOWN_TOPIC_OR_PARTITION)
        };
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(aborted.clone());
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.partition)) else {
                error = true;
                let code = if topic.is_some() { errors::UNKNOWN_TOPIC_OR_PARTITION } else { missing };
                partitions.push(pd.with_error_code(code));
                continue;
            };
            // The first data in a response may exceed the limits (one whole batch at least);
            // after that, the response stays within max_bytes.
            let max = if total == 0 {
                p.partition_max_bytes.max(1) as usize
            } else {
                (p.partition_max_bytes.max(0) as usize).min(remaining)
            };
            let offset = if p.fetch_offset < 0 { u64::MAX } else { p.fetch_offset as u64 };
            let result = if max == 0 { Ok(None) } else { partition.read(offset, max, &mut buf).map(Some) };
            match result {
                Ok(info) => {
                    let (hwm, start) = match info {
                        Some(i) => (i.high_watermark, i.log_start_offset),
                        None => (partition.log_end_offset(), partition.log_start_offset()),
                    };
                    let n = info.map_or(0, |i| i.bytes);
                    if total > 0 && n > remaining {
                        buf.truncate(buf.len() - n);
                    } else {
                        total += n;
                        remaining = remaining.saturating_sub(n);
                        if n > 0 {
                            consumed.push((partition.clone(), messages_in(&buf), n as u64));
                        }
                    }
                    pd = pd
                        .with_high_watermark(hwm as i64)
                        .with_last_stable_offset(hwm as i64)
                        .with_log_start_offset(start_of(start))
                        .with_records(Some(buf.split().freeze()));
                }
                Err(BrokerError::OffsetOutOfRange { log_start, log_end, .. }) => {
                    error = true;
                    pd = pd
                        .with_error_code(errors::OFFSET_OUT_OF_RANGE)
                        .with_high_watermark(log_end as i64)
                        .with_last_stable_offset(log_end as i64)
                        .with_log_start_offset(start_of(log_start));
                }
                Err(e) => {
                    error = true;
                    tracing::error!(topic = ?topic.as_ref().map(|t| &t.name), partition = p.partition, offset = p.fetch_offset, error = %e, "fetch failed");
                    pd = pd.with_error_code(errors::KAFKA_STORAGE_ERROR);
                }
            }
            partitions.push(pd);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    Pass {
        response: FetchResponse::default().with_session_id(0).with_responses(responses),
        bytes: total,
        error,
        consumed,
    }
}
