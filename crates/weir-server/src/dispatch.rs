//! Request decoding, routing and response encoding.

use crate::api;
use crate::errors;
use crate::metrics;
use crate::server::Shared;
use crate::versions;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use std::sync::Arc;

/// Who sent a request: JoinGroup records it for DescribeGroups.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    pub client_id: String,
    pub peer: std::net::SocketAddr,
}

/// Why a connection is closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CloseReason {
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of {key:?}")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error("malformed {key:?} v{version} request: {detail}")]
    Malformed { key: ApiKey, version: i16, detail: String },
    #[error("could not encode {key:?} v{version} response: {detail}")]
    Encode { key: ApiKey, version: i16, detail: String },
    #[error("request handler failed: {0}")]
    Handler(String),
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Handles one frame (without its size prefix). Returns the framed response, or None when
/// no response is due (Produce with acks=0).
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    peer: std::net::SocketAddr,
    mut frame: Bytes,
) -> Result<Option<BytesMut>, CloseReason> {
    let api_key = i16_at(&frame, 0);
    let version = i16_at(&frame, 2);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if api_key == ApiKey::ApiVersions as i16 && !versions::handled(ApiKey::ApiVersions, version) {
        return Ok(Some(api_versions_fallback(correlation_id)?));
    }
    let key = ApiKey::try_from(api_key).map_err(|_| CloseReason::UnknownApiKey(api_key))?;
    if !versions::handled(key, version) {
        return Err(CloseReason::UnsupportedVersion { key, version });
    }
    let malformed = |detail: String| CloseReason::Malformed { key, version, detail };
    let header =
        RequestHeader::decode(&mut frame, key.request_header_version(version)).map_err(|e| malformed(e.to_string()))?;
    let request = RequestKind::decode(key, &mut frame, versions::codec_version(key, version))
        .map_err(|e| malformed(e.to_string()))?;
    let started = std::time::Instant::now();
    let ctx = RequestContext { client_id: header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(), peer };
    let stats = metrics::api(api_key);
    let response = api::handle(shared, &ctx, request, version).await;
    if let Some(s) = stats {
        s.requests.inc();
        s.latency.observe(started.elapsed());
        match &response {
            Ok(Some(r)) => for_each_error(r, &mut |code| {
                s.error(code);
                tracing::debug!(api = ?key, version, correlation_id = header.correlation_id, code, error = %ErrorName(code), "response carries an error");
            }),
            Ok(None) => {}
            Err(_) => s.connection_closed(),
        }
    }
    let response = response?;
    tracing::trace!(?key, version, elapsed_us = started.elapsed().as_micros() as u64, "handled");
    let Some(response) = response else {
        return Ok(None);
    };
    encode(key, version, header.correlation_id, &response).map(Some)
}

/// Formats an error code's Kafka name only when the log line is written.
struct ErrorName(i16);

impl std::fmt::Display for ErrorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&metrics::error_name(self.0))
    }
}

/// Calls `f` with every non-zero error code of a response: the top-level one and each
/// per-topic, per-partition, per-group or per-member one.
fn for_each_error(r: &ResponseKind, f: &mut dyn FnMut(i16)) {
    let mut e = |code: i16| {
        if code != crate::errors::NONE {
            f(code)
        }
    };
    match r {
        ResponseKind::Produce(r) => {
            r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| e(p.error_code))
        }
        ResponseKind::Fetch(r) => {
            e(r.error_code);
            r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
        ResponseKind::Metadata(r) => r.topics.iter().for_each(|t| {
            e(t.error_code);
            t.partitions.iter().for_each(|p| e(p.error_code));
        }),
        ResponseKind::ApiVersions(r) => e(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| e(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| e(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| e(t.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|t| e(t.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|t| e(t.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|t| e(t.error_code)),
        ResponseKind::DeleteRecords(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
        ResponseKind::DescribeCluster(r) => e(r.error_code),
        ResponseKind::InitProducerId(r) => e(r.error_code),
        ResponseKind::FindCoordinator(r) => {
            e(r.error_code);
            r.coordinators.iter().for_each(|c| e(c.error_code));
        }
        ResponseKind::JoinGroup(r) => e(r.error_code),
        ResponseKind::SyncGroup(r) => e(r.error_code),
        ResponseKind::Heartbeat(r) => e(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            e(r.error_code);
            r.members.iter().for_each(|m| e(m.error_code));
        }
        ResponseKind::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            e(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
            r.groups.iter().for_each(|g| {
                e(g.error_code);
                g.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
            });
        }
        ResponseKind::OffsetDelete(r) => {
            e(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code));
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| e(g.error_code)),
        ResponseKind::ListGroups(r) => e(r.error_code),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| e(g.error_code)),
        ResponseKind::DescribeLogDirs(r) => {
            e(r.error_code);
            r.results.iter().for_each(|d| e(d.error_code));
        }
        ResponseKind::DescribeProducers(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| e(p.error_code)),
        ResponseKind::DescribeTopicPartitions(r) => r.topics.iter().for_each(|t| {
            e(t.error_code);
            t.partitions.iter().for_each(|p| e(p.error_code));
        }),
        ResponseKind::ConsumerGroupHeartbeat(r) => e(r.error_code),
        ResponseKind::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| e(g.error_code)),
        _ => {}
    }
}

fn encode(key: ApiKey, version: i16, correlation_id: i32, response: &ResponseKind) -> Result<BytesMut, CloseReason> {
    let err = |detail: String| CloseReason::Encode { key, version, detail };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut out, key.response_header_version(version)).map_err(|e| err(e.to_string()))?;
    response.encode(&mut out, versions::codec_version(key, version)).map_err(|e| err(e.to_string()))?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// ApiVersions in a version we do not support: answer in v0 with UNSUPPORTED_VERSION and
/// our real ranges, so the client retries with a version we know (KIP-511).
fn api_versions_fallback(correlation_id: i32) -> Result<BytesMut, CloseReason> {
    let response = ResponseKind::ApiVersions(
        ApiVersionsResponse::default().with_error_code(errors::UNSUPPORTED_VERSION).with_api_keys(api_keys()),
    );
    encode(ApiKey::ApiVersions, 0, correlation_id, &response)
}

pub(crate) fn api_keys() -> Vec<ApiVersion> {
    versions::SUPPORTED
        .iter()
        .map(|&(k, min, max)| ApiVersion::default().with_api_key(k as i16).with_min_version(min).with_max_version(max))
        .collect()
}
