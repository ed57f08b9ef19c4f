//! A small blocking Kafka-protocol client for the CLI, built on the same `kafka-protocol`
//! codec as the server. It speaks fixed versions that Weir and Kafka 3.x+ both support, so
//! `weir group ...` also works against other brokers.

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response accepted from a broker.
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
    addr: String,
}

impl Client {
    pub fn connect(addr: &str) -> anyhow::Result<Client> {
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("resolving broker address {addr}"))?
            .next()
            .with_context(|| format!("no address for {addr}"))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
            .with_context(|| format!("cannot reach the broker at {addr}: is `weir serve` running?"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let _ = stream.set_nodelay(true);
        Ok(Client { stream, correlation_id: 0, addr: addr.to_owned() })
    }

    /// Sends one request in `version` and returns the decoded response.
    pub fn call(&mut self, key: ApiKey, version: i16, request: RequestKind) -> anyhow::Result<ResponseKind> {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("weir-cli")))
            .encode(&mut buf, key.request_header_version(version))
            .context("encoding request header")?;
        request.encode(&mut buf, version).context("encoding request")?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let what = || format!("{key:?} request to {}", self.addr);
        self.stream.write_all(&buf).with_context(what)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).with_context(|| format!("{}: connection closed", what()))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > RESPONSE_BYTES_MAX {
            bail!("{}: response size {size} out of range", what());
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).with_context(what)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .context("decoding response header")?;
        if header.correlation_id != self.correlation_id {
            bail!("{}: correlation id {} where {} was expected", what(), header.correlation_id, self.correlation_id);
        }
        ResponseKind::decode(key, &mut body, version).with_context(|| format!("decoding {key:?} v{version} response"))
    }
}

pub fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

/// Kafka's name for an error code, for messages.
pub fn error_name(code: i16) -> String {
    kafka_protocol::ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use std::net::TcpListener;

    /// Another broker's Fetch v12 answer carrying tagged fields v12 does not define (tag 0 of
    /// the response is node_endpoints from v16; Tansu 0.6 sends it) and one no version
    /// defines: the client must skip both, as the protocol requires.
    #[test]
    fn responses_with_tagged_fields_unknown_to_the_version_decode() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut size = [0u8; 4];
            conn.read_exact(&mut size).unwrap();
            let mut req = vec![0u8; i32::from_be_bytes(size) as usize];
            conn.read_exact(&mut req).unwrap();
            let correlation_id = i32::from_be_bytes([req[4], req[5], req[6], req[7]]);
            let mut partition = PartitionData::default().with_partition_index(0).with_high_watermark(7);
            partition.unknown_tagged_fields.insert(9, Bytes::from_static(b"future"));
            let mut resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![partition])]);
            resp.unknown_tagged_fields.insert(42, Bytes::from_static(b"xyz"));
            let mut out = BytesMut::new();
            out.put_i32(0);
            ResponseHeader::default().with_correlation_id(correlation_id).encode(&mut out, 1).unwrap();
            resp.encode(&mut out, 12).unwrap();
            // The codec never writes a tag 0 in v12 (node_endpoints is v16+): splice one in by
            // hand after the response's tagged-field count, as Tansu sends it.
            let at = out.len() - (1 + 1 + 1 + 3); // count, tag 42, size, "xyz"
            assert_eq!(out[at], 1, "one tagged field");
            out[at] = 2;
            let tail = out.split_off(at + 1);
            out.extend_from_slice(&[0, 2, 1, 0]); // tag 0, size 2, an empty compact array + its tags
            out.extend_from_slice(&tail);
            let len = (out.len() - 4) as i32;
            out[..4].copy_from_slice(&len.to_be_bytes());
            conn.write_all(&out).unwrap();
        });
        let mut client = Client::connect(&addr.to_string()).unwrap();
        let r = client.call(ApiKey::Fetch, 12, RequestKind::Fetch(FetchRequest::default())).unwrap();
        let ResponseKind::Fetch(r) = r else { panic!("not a Fetch response") };
        assert_eq!(r.responses[0].partitions[0].high_watermark, 7);
        assert_eq!(r.unknown_tagged_fields.len(), 1, "the undefined tag 0 skipped, tag 42 kept as unknown");
        server.join().unwrap();
    }
}
