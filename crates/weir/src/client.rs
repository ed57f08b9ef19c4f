//! A small blocking Kafka-protocol client for the CLI, built on the same `kafka-protocol`
//! codec as the server. It asks the broker which versions it offers (ApiVersions, once per
//! connection) and speaks the newest one both sides know, so the CLI also works against other
//! Kafka-protocol brokers; an API the broker does not offer is an error that names it.

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response accepted from a broker.
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// UNSUPPORTED_VERSION: a broker's answer to an ApiVersions version it does not know, sent
/// as a v0 response listing what it does support.
const UNSUPPORTED_VERSION: i16 = 35;

/// The oldest version of each API whose requests carry what the CLI sends: record batches
/// (magic 2) need Produce v3 and Fetch v4. Any other difference between versions is caught by
/// the codec, which refuses to encode a field the chosen version does not have.
fn oldest_usable(key: ApiKey) -> i16 {
    match key {
        ApiKey::Produce => 3,
        ApiKey::Fetch => 4,
        _ => 0,
    }
}

/// One connection to one broker.
struct Conn {
    stream: TcpStream,
    correlation_id: i32,
    addr: String,
    /// The broker's (oldest, newest) version per API key, asked on first use.
    versions: Option<BTreeMap<i16, (i16, i16)>>,
}

impl Conn {
    fn connect(addr: &str) -> anyhow::Result<Conn> {
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
        Ok(Conn { stream, correlation_id: 0, addr: addr.to_owned(), versions: None })
    }

    /// The broker's (oldest, newest) version of every API it offers: ApiVersions v3, or v0
    /// when the broker refuses v3 (UNSUPPORTED_VERSION; every broker answers v0).
    fn versions(&mut self) -> anyhow::Result<&BTreeMap<i16, (i16, i16)>> {
        if self.versions.is_none() {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(s("weir-cli"))
                .with_client_software_version(s(env!("CARGO_PKG_VERSION")));
            let body = self.exchange(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(req.clone()))?;
            // The error code leads the answer in every version; what follows an
            // UNSUPPORTED_VERSION differs between brokers, so v0 is asked instead of read.
            let refused = body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == UNSUPPORTED_VERSION;
            let (mut body, version) = if refused {
                (self.exchange(ApiKey::ApiVersions, 0, RequestKind::ApiVersions(ApiVersionsRequest::default()))?, 0)
            } else {
                (body, 3)
            };
            let r = kafka_protocol::messages::ApiVersionsResponse::decode(&mut body, version)
                .with_context(|| format!("decoding ApiVersions v{version} response from {}", self.addr))?;
            if r.error_code != 0 {
                bail!("ApiVersions request to {}: {}", self.addr, error_name(r.error_code));
            }
            self.versions = Some(r.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect());
        }
        Ok(self.versions.as_ref().expect("set above"))
    }

    fn supports(&mut self, key: ApiKey) -> anyhow::Result<bool> {
        let oldest = oldest_usable(key);
        Ok(self.versions()?.get(&(key as i16)).is_some_and(|&(_, hi)| hi >= oldest))
    }

    /// Sends one request in the newest version both the broker and the CLI (up to `newest`)
    /// know, and returns the decoded response.
    fn call(&mut self, key: ApiKey, newest: i16, request: RequestKind) -> anyhow::Result<ResponseKind> {
        let addr = self.addr.clone();
        let Some(&(lo, hi)) = self.versions()?.get(&(key as i16)) else {
            bail!("the broker at {addr} does not support {key:?} (API key {})", key as i16)
        };
        let version = newest.min(hi);
        let oldest = oldest_usable(key).max(lo);
        if version < oldest {
            bail!("the broker at {addr} offers {key:?} v{lo}-v{hi}; weir needs v{}-v{newest}", oldest_usable(key));
        }
        self.call_at(key, version, request)
    }

    /// Sends one request in exactly `version` and returns the decoded response.
    fn call_at(&mut self, key: ApiKey, version: i16, request: RequestKind) -> anyhow::Result<ResponseKind> {
        let mut body = self.exchange(key, version, request)?;
        ResponseKind::decode(key, &mut body, version).with_context(|| format!("decoding {key:?} v{version} response"))
    }

    /// Sends one request and returns the response body after its header.
    fn exchange(&mut self, key: ApiKey, version: i16, request: RequestKind) -> anyhow::Result<Bytes> {
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
        request.encode(&mut buf, version).with_context(|| format!("encoding {key:?} v{version} request"))?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let what = || format!("{key:?} request to {}", self.addr);
        self.stream.write_all(&buf).with_context(what)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).with_context(|| format!("{}: connection closed by the broker", what()))?;
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
        Ok(body)
    }
}

/// The CLI's view of a cluster: a connection to the bootstrap broker for metadata and admin
/// requests (any broker takes those; Kafka forwards them to its controller), and one per
/// broker that leads a partition or coordinates a group, opened when first needed. Partition
/// requests go to the partition's leader and group requests to the group's coordinator, as a
/// Kafka client does, so the CLI works against multi-broker clusters too.
pub struct Client {
    boot: Conn,
    /// Broker addresses by node id, from the last Metadata answer.
    nodes: BTreeMap<i32, String>,
    conns: BTreeMap<i32, Conn>,
    leaders: BTreeMap<(String, i32), i32>,
    coordinators: BTreeMap<String, i32>,
}

impl Client {
    /// Connects to the first broker of a bootstrap list (`host:port[,host:port...]`, as Kafka
    /// clients take it) that answers.
    pub fn connect(bootstrap: &str) -> anyhow::Result<Client> {
        let mut failed = None;
        let mut boot = None;
        for addr in bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match Conn::connect(addr) {
                Ok(c) => {
                    boot = Some(c);
                    break;
                }
                Err(e) => failed = Some(e),
            }
        }
        let boot = match (boot, failed) {
            (Some(c), _) => c,
            (None, Some(e)) => return Err(e),
            (None, None) => bail!("no broker address given (--bootstrap host:port[,host:port...])"),
        };
        Ok(Client {
            boot,
            nodes: BTreeMap::new(),
            conns: BTreeMap::new(),
            leaders: BTreeMap::new(),
            coordinators: BTreeMap::new(),
        })
    }

    /// The bootstrap broker's (oldest, newest) version of every API it offers.
    pub fn versions(&mut self) -> anyhow::Result<&BTreeMap<i16, (i16, i16)>> {
        self.boot.versions()
    }

    /// Whether the bootstrap broker offers `key` at a version the CLI can use.
    pub fn supports(&mut self, key: ApiKey) -> anyhow::Result<bool> {
        self.boot.supports(key)
    }

    /// Sends a request to the bootstrap broker (metadata and admin requests) in the newest
    /// version both sides know, up to `newest`. Metadata answers teach the client the
    /// brokers and partition leaders.
    pub fn call(&mut self, key: ApiKey, newest: i16, request: RequestKind) -> anyhow::Result<ResponseKind> {
        let r = self.boot.call(key, newest, request)?;
        if let ResponseKind::Metadata(m) = &r {
            for b in &m.brokers {
                self.nodes.insert(b.node_id.0, format!("{}:{}", b.host, b.port));
            }
            for t in &m.topics {
                let Some(name) = &t.name else { continue };
                for p in &t.partitions {
                    self.leaders.insert((name.0.to_string(), p.partition_index), p.leader_id.0);
                }
            }
        }
        Ok(r)
    }

    /// Sends a request to broker `node`.
    pub fn call_node(
        &mut self,
        node: i32,
        key: ApiKey,
        newest: i16,
        request: RequestKind,
    ) -> anyhow::Result<ResponseKind> {
        let addr = self.nodes.get(&node).with_context(|| format!("broker {node} is not in the cluster's metadata"))?;
        if *addr == self.boot.addr {
            return self.boot.call(key, newest, request);
        }
        let conn = match self.conns.entry(node) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Conn::connect(addr).with_context(|| format!("connecting to broker {node}"))?)
            }
        };
        conn.call(key, newest, request)
    }

    /// The broker leading a partition (asked with Metadata when not known yet).
    pub fn leader(&mut self, topic: &str, partition: i32) -> anyhow::Result<i32> {
        let key = (topic.to_owned(), partition);
        // Asked again while unknown or leaderless (a leader election may have finished since).
        if self.leaders.get(&key).is_none_or(|&node| node < 0) {
            let req = kafka_protocol::messages::MetadataRequest::default()
                .with_topics(Some(vec![kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(kafka_protocol::messages::TopicName(s(topic))))]))
                .with_allow_auto_topic_creation(false);
            self.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))?;
        }
        match self.leaders.get(&key) {
            Some(&node) if node >= 0 => Ok(node),
            Some(_) => bail!("{topic}/{partition} has no leader right now; try again"),
            None => bail!("{topic}/{partition} is not in the cluster's metadata"),
        }
    }

    /// Partitions of a topic grouped by the broker that leads them.
    pub fn by_leader(
        &mut self,
        topic: &str,
        partitions: impl IntoIterator<Item = i32>,
    ) -> anyhow::Result<BTreeMap<i32, Vec<i32>>> {
        let mut out: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in partitions {
            let node = self.leader(topic, p)?;
            out.entry(node).or_default().push(p);
        }
        Ok(out)
    }

    /// Forgets the leaders known for a topic: the next request asks Metadata again.
    pub fn forget_leaders(&mut self, topic: &str) {
        self.leaders.retain(|(t, _), _| t != topic);
    }

    /// Sends a group request to the group's coordinator (FindCoordinator, asked once). When
    /// the answer says the coordinator moved or is loading (NOT_COORDINATOR,
    /// COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS), it is looked up again and the
    /// request sent again, a few times with a growing pause.
    pub fn call_group(
        &mut self,
        group: &str,
        key: ApiKey,
        newest: i16,
        request: RequestKind,
    ) -> anyhow::Result<ResponseKind> {
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            let r = self.call_coordinator(group, key, newest, request.clone())?;
            match coordinator_error(&r) {
                Some(code) if attempt < ATTEMPTS => {
                    tracing::debug!(group, error = %error_name(code), attempt, "coordinator moved; asking again");
                    self.coordinators.remove(group);
                    std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
                }
                _ => return Ok(r),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn call_coordinator(
        &mut self,
        group: &str,
        key: ApiKey,
        newest: i16,
        request: RequestKind,
    ) -> anyhow::Result<ResponseKind> {
        let node = match self.coordinators.get(group) {
            Some(&node) => node,
            None => {
                use kafka_protocol::messages::FindCoordinatorRequest;
                let req = FindCoordinatorRequest::default().with_key(s(group)).with_key_type(0);
                let ResponseKind::FindCoordinator(r) =
                    self.boot.call(ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(req))?
                else {
                    bail!("unexpected response")
                };
                if r.error_code != 0 {
                    bail!(
                        "finding the coordinator of group {group}: {} {}",
                        error_name(r.error_code),
                        r.error_message.as_deref().unwrap_or("")
                    );
                }
                self.nodes.entry(r.node_id.0).or_insert_with(|| format!("{}:{}", r.host, r.port));
                self.coordinators.insert(group.to_owned(), r.node_id.0);
                r.node_id.0
            }
        };
        self.call_node(node, key, newest, request)
    }

    /// Every broker of the cluster (from Metadata) by node id.
    pub fn nodes(&mut self) -> anyhow::Result<Vec<i32>> {
        if self.nodes.is_empty() {
            let req = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(Vec::new()));
            self.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))?;
        }
        Ok(self.nodes.keys().copied().collect())
    }
}

/// Error codes that mean "ask for the coordinator again".
fn is_coordinator_error(code: i16) -> bool {
    use kafka_protocol::ResponseError as E;
    [E::NotCoordinator, E::CoordinatorNotAvailable, E::CoordinatorLoadInProgress].iter().any(|e| e.code() == code)
}

/// Error codes that mean "ask for the partition's leader again".
pub fn is_leader_error(code: i16) -> bool {
    use kafka_protocol::ResponseError as E;
    [E::NotLeaderOrFollower, E::LeaderNotAvailable, E::FencedLeaderEpoch, E::UnknownLeaderEpoch]
        .iter()
        .any(|e| e.code() == code)
}

/// The first coordinator error in a group response, where the response carries one.
fn coordinator_error(r: &ResponseKind) -> Option<i16> {
    let codes: Vec<i16> = match r {
        ResponseKind::OffsetFetch(r) => std::iter::once(r.error_code)
            .chain(r.groups.iter().map(|g| g.error_code))
            .chain(r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
            .collect(),
        ResponseKind::OffsetCommit(r) => {
            r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().map(|g| g.error_code).collect(),
        ResponseKind::DeleteGroups(r) => r.results.iter().map(|g| g.error_code).collect(),
        _ => Vec::new(),
    };
    codes.into_iter().find(|c| is_coordinator_error(*c))
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

    /// A broker that refuses ApiVersions v3 (as librdkafka's mock does), offers DescribeGroups
    /// only up to v2, and whose coordinator answers NOT_COORDINATOR once: the client asks v0,
    /// speaks v2, looks the coordinator up again and gets the group.
    #[test]
    fn versions_are_negotiated_and_a_moved_coordinator_is_asked_again() {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        use kafka_protocol::messages::describe_groups_response::DescribedGroup;
        use kafka_protocol::messages::{
            ApiVersionsResponse, BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorResponse,
            GroupId, RequestHeader,
        };
        use kafka_protocol::ResponseError;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut describes = 0;
            loop {
                let mut size = [0u8; 4];
                if conn.read_exact(&mut size).is_err() {
                    return seen;
                }
                let mut req = vec![0u8; i32::from_be_bytes(size) as usize];
                conn.read_exact(&mut req).unwrap();
                let key = i16::from_be_bytes([req[0], req[1]]);
                let version = i16::from_be_bytes([req[2], req[3]]);
                let api = ApiKey::try_from(key).unwrap();
                let mut body = Bytes::from(req);
                let header = RequestHeader::decode(&mut body, api.request_header_version(version)).unwrap();
                seen.push((api, version));
                let mut out = BytesMut::new();
                out.put_i32(0);
                ResponseHeader::default()
                    .with_correlation_id(header.correlation_id)
                    .encode(&mut out, api.response_header_version(version))
                    .unwrap();
                match api {
                    ApiKey::ApiVersions if version > 2 => {
                        ApiVersionsResponse::default().with_error_code(35).encode(&mut out, 0).unwrap()
                    }
                    ApiKey::ApiVersions => ApiVersionsResponse::default()
                        .with_api_keys(
                            [(ApiKey::ApiVersions, 2), (ApiKey::FindCoordinator, 3), (ApiKey::DescribeGroups, 2)]
                                .into_iter()
                                .map(|(k, v)| ApiVersion::default().with_api_key(k as i16).with_max_version(v))
                                .collect(),
                        )
                        .encode(&mut out, version)
                        .unwrap(),
                    ApiKey::FindCoordinator => FindCoordinatorResponse::default()
                        .with_node_id(BrokerId(7))
                        .with_host(s(&addr.ip().to_string()))
                        .with_port(i32::from(addr.port()))
                        .encode(&mut out, version)
                        .unwrap(),
                    ApiKey::DescribeGroups => {
                        describes += 1;
                        let code = if describes == 1 { ResponseError::NotCoordinator.code() } else { 0 };
                        DescribeGroupsResponse::default()
                            .with_groups(vec![DescribedGroup::default()
                                .with_group_id(GroupId(s("g")))
                                .with_error_code(code)
                                .with_group_state(s("Stable"))])
                            .encode(&mut out, version)
                            .unwrap()
                    }
                    other => panic!("unexpected {other:?}"),
                }
                let len = (out.len() - 4) as i32;
                out[..4].copy_from_slice(&len.to_be_bytes());
                conn.write_all(&out).unwrap();
            }
        });
        let mut client = Client::connect(&format!("127.0.0.1:1,{addr}")).unwrap();
        assert!(client.supports(ApiKey::DescribeGroups).unwrap());
        assert!(!client.supports(ApiKey::CreateTopics).unwrap());
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
        let r = client.call_group("g", ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(req)).unwrap();
        let ResponseKind::DescribeGroups(r) = r else { panic!("not DescribeGroups") };
        assert_eq!((r.groups[0].error_code, r.groups[0].group_state.as_str()), (0, "Stable"));
        let e = client.call(ApiKey::CreateTopics, 5, RequestKind::CreateTopics(Default::default())).unwrap_err();
        assert!(e.to_string().contains("does not support CreateTopics (API key 19)"), "{e}");
        drop(client);
        let seen = server.join().unwrap();
        assert_eq!(
            seen,
            [
                (ApiKey::ApiVersions, 3),
                (ApiKey::ApiVersions, 0),
                (ApiKey::FindCoordinator, 3),
                (ApiKey::DescribeGroups, 2),
                (ApiKey::FindCoordinator, 3),
                (ApiKey::DescribeGroups, 2),
            ]
        );
    }

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
        let mut client = Conn::connect(&addr.to_string()).unwrap();
        let r = client.call_at(ApiKey::Fetch, 12, RequestKind::Fetch(FetchRequest::default())).unwrap();
        let ResponseKind::Fetch(r) = r else { panic!("not a Fetch response") };
        assert_eq!(r.responses[0].partitions[0].high_watermark, 7);
        assert_eq!(r.unknown_tagged_fields.len(), 1, "the undefined tag 0 skipped, tag 42 kept as unknown");
        server.join().unwrap();
    }
}
