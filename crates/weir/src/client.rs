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
