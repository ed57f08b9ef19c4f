//! Entry points for fuzzing (cargo-fuzz targets in fuzz/ and the stable regression test over
//! the golden corpus call these): request decoding exactly as the server does it.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

/// Decodes one request frame (without its size prefix) as the server would: header, then
/// body for an advertised API and version. Returns the decoded request, if it decoded.
pub fn decode_request(frame: &[u8]) -> Option<(RequestHeader, RequestKind)> {
    if frame.len() < 8 {
        return None;
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(api_key).ok()?;
    if !crate::versions::handled(key, version) {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(frame);
    let header = RequestHeader::decode(&mut buf, key.request_header_version(version)).ok()?;
    let request = RequestKind::decode(key, &mut buf, version).ok()?;
    Some((header, request))
}

/// Every record batch a decoded Produce request carries, as the server validates them.
pub fn produce_batches(request: &RequestKind) -> Vec<Bytes> {
    match request {
        RequestKind::Produce(p) => {
            p.topic_data.iter().flat_map(|t| t.partition_data.iter().filter_map(|d| d.records.clone())).collect()
        }
        _ => Vec::new(),
    }
}

/// The whole request path short of I/O: decode, then validate any record batch.
pub fn request_path(frame: &[u8]) {
    if let Some((_, request)) = decode_request(frame) {
        for batch in produce_batches(&request) {
            let _ = weir_log::ValidatedBatch::new(&batch, 1 << 20);
        }
    }
}
