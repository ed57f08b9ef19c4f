//! Group coordinator for Kafka's classic group protocol: membership, rebalances, and
//! committed offsets kept in the compacted `__consumer_offsets` topic.
//!
//! A pure state machine over a [`Clock`]: calls change state, and `tick` applies timeouts
//! (session expiry, rebalance deadlines, the initial rebalance delay). JoinGroup and
//! SyncGroup answers that must wait for other members are delivered later through the
//! callbacks given with the request, so this module knows nothing of async runtimes.

pub mod consumer;
pub mod store;
pub use store::Committed;

use crate::error::BrokerError;
use crate::partition::Partition;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use store::StoreRecord;
use weir_log::unpoisoned::UnpoisonedMutex;
use weir_log::{BatchBuilder, BatchHeader, Clock, ValidatedBatch};

/// Errors of group operations, each one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("rebalance in progress")]
    RebalanceInProgress,
    #[error("member id required")]
    MemberIdRequired,
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    #[error("group id not found")]
    GroupIdNotFound,
    #[error("group is not empty")]
    NonEmptyGroup,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// KIP-848: a heartbeat with an epoch the member does not have.
    #[error("fenced member epoch")]
    FencedMemberEpoch,
    /// KIP-848: an offset commit with an epoch newer than the member's.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    #[error("unsupported assignor")]
    UnsupportedAssignor,
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// KIP-848: a subscription regex that does not compile (RE2 syntax).
    #[error("invalid regular expression")]
    InvalidRegularExpression,
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// OffsetDelete of a topic the (non-empty) group's members subscribe to.
    #[error("group subscribed to topic")]
    GroupSubscribedToTopic,
    /// A static member's instance id is now held by a newer member id (KIP-345).
    #[error("fenced instance id")]
    FencedInstanceId,
    #[error("storage error")]
    Storage,
}

/// Settings of the coordinator.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// A new group waits this long for more members before its first assignment
    /// (Kafka's group.initial.rebalance.delay.ms).
    pub initial_rebalance_delay_ms: i64,
    pub session_timeout_min_ms: i32,
    pub session_timeout_max_ms: i32,
    /// Members at most per group (each holds buffers and timers).
    pub members_max: usize,
    /// KIP-848 groups: a member is removed when no heartbeat arrives for this long
    /// (Kafka's group.consumer.session.timeout.ms).
    pub consumer_session_timeout_ms: i32,
    /// KIP-848 groups: how often members heartbeat (group.consumer.heartbeat.interval.ms).
    pub consumer_heartbeat_interval_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            session_timeout_min_ms: 1000,
            session_timeout_max_ms: 1_800_000,
            members_max: 1000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}

/// A JoinGroup request in domain terms.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id first gets one with MEMBER_ID_REQUIRED.
    pub require_known_member: bool,
}

#[derive(Debug, Clone, Default)]
pub struct JoinResponse {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members: (member id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

#[derive(Debug, Clone, Default)]
pub struct SyncResponse {
    pub error: Option<GroupError>,
    pub protocol_type: String,
    pub protocol_name: String,
    pub assignment: Bytes,
}

/// What a SyncGroup names besides its member: the static instance id (v3+) and the protocol
/// type and name (v5+); None where the request's version has no such field.
#[derive(Debug, Clone, Default)]
pub struct SyncIdentity {
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
}

pub type JoinCallback = Box<dyn FnOnce(JoinResponse) + Send>;
pub type SyncCallback = Box<dyn FnOnce(SyncResponse) + Send>;

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    pub members: Vec<MemberInfo>,
}

/// An offset to commit: (topic, partition, offset, leader epoch, metadata).
pub type OffsetCommit = (String, i32, i64, i32, Option<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// Session deadline: removed when no heartbeat (or join/sync) arrives before this,
    /// unless the member is waiting in JoinGroup or SyncGroup (Kafka's
    /// `hasSatisfiedHeartbeat`: a waiting member is alive by definition).
    deadline_ms: i64,
    /// Got its JoinGroup answer for the current generation but has not sent SyncGroup
    /// yet; removed if still so at the group's sync deadline.
    pending_sync: bool,
    /// Order of joining: the earliest member becomes leader.
    joined_seq: u64,
    join_waiter: Option<JoinCallback>,
    sync_waiter: Option<SyncCallback>,
}

impl Member {
    /// A member blocked in JoinGroup or SyncGroup needs no heartbeat.
    fn waiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }

    /// Takes the timeouts and protocols of a (re)join.
    fn update(&mut self, req: JoinRequest, now: i64) {
        self.protocols = req.protocols;
        self.client_id = req.client_id;
        self.client_host = req.client_host;
        self.session_timeout_ms = req.session_timeout_ms;
        self.rebalance_timeout_ms = req.rebalance_timeout_ms.max(req.session_timeout_ms);
        self.deadline_ms = now + i64::from(self.session_timeout_ms);
    }

    fn fail_waiters(&mut self, id: &str, error: GroupError) {
        if let Some(w) = self.join_waiter.take() {
            w(JoinResponse {
                error: Some(error),
                member_id: id.to_owned(),
                generation_id: -1,
                ..JoinResponse::default()
            });
        }
        if let Some(w) = self.sync_waiter.take() {
            w(SyncResponse { error: Some(error), ..SyncResponse::default() });
        }
    }
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: String,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, valid until the deadline.
    pending_members: HashMap<String, i64>,
    rebalance_deadline_ms: i64,
    /// Members must send SyncGroup before this (the rebalance timeout after the join
    /// phase completed, as Kafka's pending-sync timer).
    sync_deadline_ms: i64,
    initial_delay_until_ms: Option<i64>,
    offsets: BTreeMap<(String, i32), Committed>,
}

impl Group {
    fn new() -> Self {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: String::new(),
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            sync_deadline_ms: 0,
            initial_delay_until_ms: None,
            offsets: BTreeMap::new(),
        }
    }

    fn fail_waiters(&mut self, error: GroupError) {
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                w(SyncResponse { error: Some(error), ..SyncResponse::default() });
            }
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            m.fail_waiters(id, GroupError::UnknownMemberId);
        }
    }

    /// A request that names a static instance id held by another member id is fenced.
    fn check_fenced(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        match instance_id.and_then(|inst| self.static_member(inst)) {
            Some(holder) if holder != member_id => Err(GroupError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    /// The member id holding a static instance id.
    fn static_member(&self, instance: &str) -> Option<String> {
        self.members.iter().find(|(_, m)| m.instance_id.as_deref() == Some(instance)).map(|(id, _)| id.clone())
    }

    /// The JoinGroup answer for the current generation (a retried or static rejoin).
    fn current_join_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        JoinResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone(),
            member_id: member_id.to_owned(),
            members: if with_members { self.leader_view() } else { Vec::new() },
        }
    }

    fn leader_view(&self) -> Vec<(String, Option<String>, Bytes)> {
        self.members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), metadata_for(m, &self.protocol)))
            .collect()
    }

    /// A static member rejoined with an empty member id: the new id takes over the old
    /// member's place and assignment. In Stable, when the selected protocol stays the
    /// same, it is answered at once with the current generation and no rebalance
    /// (Kafka's `updateStaticMemberAndRebalance`); the answer names the old leader id so
    /// the member never runs an assignment a Stable group would not broadcast.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
        now: i64,
        respond: JoinCallback,
    ) {
        let Some(mut member) = self.members.remove(old_id) else { return };
        member.fail_waiters(old_id, GroupError::FencedInstanceId);
        let leader_before = self.leader.clone();
        if self.leader == old_id {
            self.leader = new_id.clone();
        }
        member.update(req, now);
        tracing::info!(old = old_id, new = %new_id, state = self.state.name(), "static member rejoined");
        self.members.insert(new_id.clone(), member);
        match self.state {
            State::Stable if self.select_protocol() == self.protocol => {
                let mut response = self.current_join_response(&new_id, false);
                response.leader = leader_before;
                respond(response);
            }
            State::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join_waiter = Some(respond);
                }
                self.maybe_complete_join(now);
            }
            _ => {
                // CompletingRebalance: the leader may be assigning to the old id; or the
                // protocol would change. Either way a new generation is needed.
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join_waiter = Some(respond);
                }
                self.prepare_rebalance(now, 0);
                self.initial_delay_until_ms = None;
                self.maybe_complete_join(now);
            }
        }
    }

    /// Whether the join phase can end now: every member and every member id handed out
    /// with MEMBER_ID_REQUIRED has (re)joined (Kafka's `hasAllMembersJoined`).
    fn all_joined(&self) -> bool {
        !self.members.is_empty()
            && self.pending_members.is_empty()
            && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Members whose session ran out: not waiting in a JoinGroup or SyncGroup and no
    /// heartbeat before their deadline; in CompletingRebalance and Stable also those that
    /// did not send SyncGroup before the sync deadline.
    fn expired_members(&self, now: i64) -> Vec<String> {
        let sync_over =
            matches!(self.state, State::CompletingRebalance | State::Stable) && now >= self.sync_deadline_ms;
        self.members
            .iter()
            .filter(|(_, m)| {
                let session_over = !m.waiting() && m.deadline_ms <= now;
                session_over || (sync_over && m.pending_sync && m.sync_waiter.is_none())
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn prepare_rebalance(&mut self, now: i64, initial_delay_ms: i64) {
        if self.state == State::CompletingRebalance {
            self.fail_waiters(GroupError::RebalanceInProgress);
        }
        let was_empty = self.state == State::Empty;
        self.state = State::PreparingRebalance;
        let timeout = self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
        self.rebalance_deadline_ms = now + timeout;
        self.initial_delay_until_ms = was_empty.then(|| (now + initial_delay_ms).min(self.rebalance_deadline_ms));
    }

    /// Completes the join phase when every member has rejoined (after the initial delay of
    /// a new group), or at the rebalance deadline without the stragglers.
    fn maybe_complete_join(&mut self, now: i64) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.all_joined();
        let delay_over = self.initial_delay_until_ms.is_none_or(|t| now >= t);
        if !(all_joined && delay_over) && now < self.rebalance_deadline_ms {
            return;
        }
        let stragglers: Vec<String> =
            self.members.iter().filter(|(_, m)| m.join_waiter.is_none()).map(|(id, _)| id.clone()).collect();
        for id in stragglers {
            tracing::info!(member = %id, "member did not rejoin before the rebalance deadline; removed");
            self.remove_member(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader.clear();
            return;
        }
        self.protocol = self.select_protocol();
        if !self.members.contains_key(&self.leader) {
            self.leader =
                self.members.iter().min_by_key(|(_, m)| m.joined_seq).map(|(id, _)| id.clone()).unwrap_or_default();
        }
        self.state = State::CompletingRebalance;
        tracing::info!(generation = self.generation, members = self.members.len(), protocol = %self.protocol, leader = %self.leader, "group rebalanced");
        let leader_view = self.leader_view();
        let rebalance_timeout = self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
        self.sync_deadline_ms = now + rebalance_timeout;
        for (id, m) in self.members.iter_mut() {
            m.deadline_ms = now + i64::from(m.session_timeout_ms);
            m.pending_sync = true;
            if let Some(w) = m.join_waiter.take() {
                w(JoinResponse {
                    error: None,
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: self.leader.clone(),
                    member_id: id.clone(),
                    members: if *id == self.leader { leader_view.clone() } else { Vec::new() },
                });
            }
        }
    }

    /// The protocol every member supports that gets the most first-preference votes.
    fn select_protocol(&self) -> String {
        let mut candidates: Option<Vec<&str>> = None;
        for m in self.members.values() {
            let names: Vec<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            candidates = Some(match candidates {
                None => names,
                Some(c) => c.into_iter().filter(|n| names.contains(n)).collect(),
            });
        }
        let candidates = candidates.unwrap_or_default();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n.as_str())) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|&(_, v)| v).map(|(n, _)| n.to_owned()).unwrap_or_default()
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if protocol_type != self.protocol_type {
            return false;
        }
        let common = self.members.values().fold(None::<Vec<&str>>, |acc, m| {
            let names: Vec<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            Some(match acc {
                None => names,
                Some(c) => c.into_iter().filter(|n| names.contains(n)).collect(),
            })
        });
        common.unwrap_or_default().iter().any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    fn info(&self, id: &str) -> GroupInfo {
        GroupInfo {
            group_id: id.to_owned(),
            state: if self.members.is_empty() && self.state == State::Empty { "Empty" } else { self.state.name() },
            protocol_type: self.protocol_type.clone(),
            protocol: if self.state == State::Stable || self.state == State::CompletingRebalance {
                self.protocol.clone()
            } else {
                String::new()
            },
            generation: self.generation,
            members: self
                .members
                .iter()
                .map(|(mid, m)| MemberInfo {
                    member_id: mid.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: metadata_for(m, &self.protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

/// Whether a consumer-protocol subscription (ConsumerProtocolSubscription: version i16,
/// topics [string], …) names `topic`. Malformed metadata names nothing.
fn subscription_has(metadata: &[u8], topic: &str) -> bool {
    let Some(mut rest) = metadata.get(2..) else { return false };
    let Some(count) = rest.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else { return false };
    rest = &rest[4..];
    for _ in 0..count.max(0) {
        let Some(len) = rest.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else { return false };
        let Some(name) = usize::try_from(len).ok().and_then(|l| rest.get(2..2 + l)) else { return false };
        if name == topic.as_bytes() {
            return true;
        }
        rest = &rest[2 + name.len()..];
    }
    false
}

fn metadata_for(m: &Member, protocol: &str) -> Bytes {
    m.protocols.iter().find(|(n, _)| n == protocol).map(|(_, md)| md.clone()).unwrap_or_default()
}

struct Inner {
    /// Classic groups, and the committed offsets of every group (KIP-848 groups too).
    groups: HashMap<String, Group>,
    /// KIP-848 groups' membership. A group id has members in at most one of the two maps.
    consumer_groups: HashMap<String, consumer::ConsumerGroup>,
    next_seq: u64,
}

/// The group coordinator of this node (the coordinator of every group).
pub struct Coordinator {
    config: GroupConfig,
    clock: Arc<dyn Clock>,
    store: Arc<Partition>,
    inner: Mutex<Inner>,
    /// The broker's topics (set by the broker once it is open).
    topics: std::sync::OnceLock<Arc<dyn consumer::TopicDirectory>>,
    /// The consumer embedded protocol's codec (set by the wire layer): without it classic and
    /// KIP-848 members never share a group.
    protocol: std::sync::OnceLock<Arc<dyn consumer::ConsumerProtocol>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").field("config", &self.config).finish_non_exhaustive()
    }
}

fn member_id_for(client_id: &str) -> String {
    let id: [u8; 16] = rand::random();
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let client = if client_id.is_empty() { "member" } else { client_id };
    format!("{client}-{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

impl Coordinator {
    /// Loads committed offsets and group generations from the offsets topic.
    pub fn open(config: GroupConfig, clock: Arc<dyn Clock>, store: Arc<Partition>) -> Result<Self, BrokerError> {
        let mut groups: HashMap<String, Group> = HashMap::new();
        let log = &store.log;
        let mut offset = log.log_start_offset();
        let mut buf = bytes::BytesMut::new();
        let mut records = 0u64;
        while offset < log.log_end_offset() {
            buf.clear();
            let info = log.read(offset, 1 << 20, &mut buf)?;
            if info.bytes == 0 {
                break;
            }
            let mut pos = 0;
            while pos < buf.len() {
                let h = BatchHeader::parse(&buf[pos..]).map_err(BrokerError::InvalidBatch)?;
                let batch = &buf[pos..pos + h.total_len()];
                for r in weir_log::record::Records::new(batch, &h).flatten() {
                    let Some(key) = r.key else { continue };
                    match store::decode(key, r.value) {
                        Some(rec) => apply(&mut groups, rec),
                        None => tracing::warn!(
                            offset = h.base_offset + i64::from(r.offset_delta),
                            "skipping malformed record in __consumer_offsets"
                        ),
                    }
                    records += 1;
                }
                offset = h.last_offset() as u64 + 1;
                pos += h.total_len();
            }
        }
        tracing::info!(groups = groups.len(), records, "group coordinator loaded");
        Ok(Self {
            config,
            clock,
            store,
            inner: Mutex::new(Inner { groups, consumer_groups: HashMap::new(), next_seq: 0 }),
            topics: std::sync::OnceLock::new(),
            protocol: std::sync::OnceLock::new(),
        })
    }

    /// Where the coordinator looks topics up (the broker sets it once).
    pub fn set_topic_directory(&self, topics: Arc<dyn consumer::TopicDirectory>) {
        let _ = self.topics.set(topics);
    }

    /// The codec of the consumer embedded protocol, which lets classic members and KIP-848
    /// members share a group (online upgrade; the wire layer sets it once).
    pub fn set_consumer_protocol(&self, protocol: Arc<dyn consumer::ConsumerProtocol>) {
        let _ = self.protocol.set(protocol);
    }

    fn directory(&self) -> Option<Arc<dyn consumer::TopicDirectory>> {
        self.topics.get().cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }

    pub fn join(&self, req: JoinRequest, respond: JoinCallback) {
        let fail = |respond: JoinCallback, error: GroupError, member_id: String| {
            respond(JoinResponse { error: Some(error), member_id, generation_id: -1, ..JoinResponse::default() })
        };
        if req.group_id.is_empty() {
            return fail(respond, GroupError::InvalidGroupId, req.member_id);
        }
        if !(self.config.session_timeout_min_ms..=self.config.session_timeout_max_ms).contains(&req.session_timeout_ms)
        {
            return fail(respond, GroupError::InvalidSessionTimeout, req.member_id);
        }
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        inner.next_seq += 1;
        let seq = inner.next_seq;
        let group_id = req.group_id.clone();
        if inner.consumer_groups.get(&group_id).is_some_and(|g| !g.is_empty()) {
            // A KIP-848 group with members: a classic member joins it as one of them, if its
            // subscription can be read (the consumer protocol); otherwise it cannot.
            let Some(codec) = self.protocol.get() else {
                return fail(respond, GroupError::InconsistentGroupProtocol, req.member_id);
            };
            let subscription = match (req.protocol_type.as_str(), req.protocols.first()) {
                ("consumer", Some((_, metadata))) => codec.subscription(metadata).ok(),
                _ => None,
            };
            let Some((topics, owned)) = subscription else {
                return fail(respond, GroupError::InconsistentGroupProtocol, req.member_id);
            };
            let dir = self.directory();
            let lookup = |n: &str| dir.as_ref().and_then(|d| d.lookup(n));
            let list = || dir.as_ref().map(|d| d.names()).unwrap_or_default();
            let names = consumer::TopicNames {
                lookup: &lookup,
                generation: dir.as_ref().map_or(0, |d| d.generation()),
                list: &list,
            };
            let owned = owned.iter().filter_map(|(t, p)| lookup(t).map(|(id, _)| (id, *p))).collect();
            let group = inner.consumer_groups.get_mut(&group_id).expect("checked above");
            if !group.has_member(&req.member_id) && group.members_len() >= self.config.members_max {
                return fail(respond, GroupError::GroupMaxSizeReached, req.member_id);
            }
            let client_id = req.client_id.clone();
            let join = consumer::ClassicJoin {
                member_id: req.member_id,
                instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms.max(req.session_timeout_ms),
                protocols: req.protocols,
                topics,
                owned,
                require_known_member: req.require_known_member,
            };
            return match group.classic_join(join, now, &names, || member_id_for(&client_id)) {
                Ok((member_id, generation_id, protocol_name)) => {
                    tracing::debug!(group = %group_id, member = %member_id, generation_id, "classic join to a consumer group");
                    respond(JoinResponse {
                        error: None,
                        generation_id,
                        protocol_type: "consumer".into(),
                        protocol_name,
                        leader: String::new(),
                        member_id,
                        members: Vec::new(),
                    })
                }
                Err((e, member_id)) => fail(respond, e, member_id),
            };
        }
        inner.consumer_groups.remove(&group_id);
        let group = inner.groups.entry(group_id.clone()).or_insert_with(Group::new);
        if !group.supports(&req.protocol_type, &req.protocols) {
            return fail(respond, GroupError::InconsistentGroupProtocol, req.member_id);
        }
        let mut member_id = req.member_id.clone();
        let static_holder = req.group_instance_id.as_ref().and_then(|inst| group.static_member(inst));
        if member_id.is_empty() {
            if let Some(old_id) = static_holder {
                // A static member coming back under a new member id takes over its old
                // self, assignment included (KIP-345).
                let new_id = member_id_for(&req.client_id);
                return group.replace_static_member(&old_id, new_id, req, now, respond);
            }
            member_id = member_id_for(&req.client_id);
            if req.require_known_member && req.group_instance_id.is_none() {
                group.pending_members.insert(member_id.clone(), now + i64::from(req.session_timeout_ms));
                return fail(respond, GroupError::MemberIdRequired, member_id);
            }
        } else if static_holder.as_ref().is_some_and(|holder| *holder != member_id) {
            return fail(respond, GroupError::FencedInstanceId, member_id);
        } else if !group.members.contains_key(&member_id) && group.pending_members.remove(&member_id).is_none() {
            return fail(respond, GroupError::UnknownMemberId, member_id);
        }
        if !group.members.contains_key(&member_id) && group.members.len() >= self.config.members_max {
            tracing::warn!(group = %req.group_id, max = self.config.members_max, "group is full");
            return fail(respond, GroupError::UnknownMemberId, member_id);
        }
        if group.members.is_empty() {
            group.protocol_type = req.protocol_type.clone();
        }
        // A known member that rejoins with unchanged metadata while nothing needs to change
        // (a retried JoinGroup) gets the current generation back without a rebalance.
        if let Some(m) = group.members.get(&member_id) {
            let unchanged = m.protocols == req.protocols && m.join_waiter.is_none();
            let answer_now = match group.state {
                State::Stable => unchanged && member_id != group.leader,
                State::CompletingRebalance => unchanged,
                State::Empty | State::PreparingRebalance => false,
            };
            if answer_now {
                let response = group.current_join_response(&member_id, member_id == group.leader);
                if let Some(m) = group.members.get_mut(&member_id) {
                    m.deadline_ms = now + i64::from(m.session_timeout_ms);
                }
                return respond(response);
            }
        }
        let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            deadline_ms: 0,
            pending_sync: false,
            joined_seq: seq,
            join_waiter: None,
            sync_waiter: None,
        });
        member.update(req, now);
        if let Some(old) = member.join_waiter.replace(respond) {
            old(JoinResponse {
                error: Some(GroupError::RebalanceInProgress),
                member_id: member_id.clone(),
                generation_id: -1,
                ..JoinResponse::default()
            });
        }
        tracing::debug!(group = %group_id, member = %member_id, state = group.state.name(), "join");
        if group.state != State::PreparingRebalance {
            group.prepare_rebalance(now, self.config.initial_rebalance_delay_ms);
        }
        group.maybe_complete_join(now);
    }

    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
        respond: SyncCallback,
    ) {
        self.sync_as(group_id, generation, member_id, &SyncIdentity::default(), assignments, respond)
    }

    /// SyncGroup with what the request names besides the member: its instance id (a static
    /// member held by another member id gets FENCED_INSTANCE_ID) and, from v5, the protocol
    /// type and name (another than the group's gets INCONSISTENT_GROUP_PROTOCOL).
    pub fn sync_as(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        who: &SyncIdentity,
        assignments: Vec<(String, Bytes)>,
        respond: SyncCallback,
    ) {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let fail =
            |respond: SyncCallback, error| respond(SyncResponse { error: Some(error), ..SyncResponse::default() });
        if let Some(group) = inner.consumer_groups.get_mut(group_id).filter(|g| !g.is_empty()) {
            // A classic member of a KIP-848 group: the broker's assignment, in its protocol.
            let (parts, protocol_name, metadata) =
                match group.classic_sync(member_id, who.instance_id.as_deref(), generation, now) {
                    Ok(r) => r,
                    Err(e) => return fail(respond, e),
                };
            if who.protocol_type.as_deref().is_some_and(|t| t != "consumer")
                || who.protocol_name.as_deref().is_some_and(|n| n != protocol_name)
            {
                return fail(respond, GroupError::InconsistentGroupProtocol);
            }
            let (Some(codec), Some(dir)) = (self.protocol.get(), self.directory()) else {
                return fail(respond, GroupError::UnknownMemberId);
            };
            let named: Vec<(String, i32)> =
                parts.iter().filter_map(|(id, p)| dir.name_of(id).map(|n| (n, *p))).collect();
            return respond(SyncResponse {
                error: None,
                protocol_type: "consumer".into(),
                protocol_name,
                assignment: codec.encode_assignment(&metadata, &named),
            });
        }
        let Some(group) = inner.groups.get_mut(group_id) else {
            return fail(respond, GroupError::UnknownMemberId);
        };
        if !group.members.contains_key(member_id) {
            return fail(respond, GroupError::UnknownMemberId);
        }
        if let Err(e) = group.check_fenced(member_id, who.instance_id.as_deref()) {
            return fail(respond, e);
        }
        tracing::debug!(
            group = group_id,
            member = member_id,
            generation,
            current = group.generation,
            state = group.state.name(),
            "sync"
        );
        if generation != group.generation {
            return fail(respond, GroupError::IllegalGeneration);
        }
        let differs =
            |asked: &Option<String>, ours: &str| asked.as_deref().is_some_and(|a| !ours.is_empty() && a != ours);
        if differs(&who.protocol_type, &group.protocol_type) || differs(&who.protocol_name, &group.protocol) {
            return fail(respond, GroupError::InconsistentGroupProtocol);
        }
        match group.state {
            State::Empty => fail(respond, GroupError::UnknownMemberId),
            State::PreparingRebalance => fail(respond, GroupError::RebalanceInProgress),
            State::Stable => {
                let m = &mut group.members.get_mut(member_id).expect("checked above");
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                m.pending_sync = false;
                respond(SyncResponse {
                    error: None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    assignment: m.assignment.clone(),
                })
            }
            State::CompletingRebalance => {
                if let Some(m) = group.members.get_mut(member_id) {
                    m.deadline_ms = now + i64::from(m.session_timeout_ms);
                    m.pending_sync = false;
                    if let Some(old) = m.sync_waiter.replace(respond) {
                        old(SyncResponse { error: Some(GroupError::RebalanceInProgress), ..SyncResponse::default() });
                    }
                }
                if member_id != group.leader {
                    return;
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for (id, m) in group.members.iter_mut() {
                    m.assignment = given.remove(id).unwrap_or_default();
                }
                group.state = State::Stable;
                let (pt, pn) = (group.protocol_type.clone(), group.protocol.clone());
                for m in group.members.values_mut() {
                    if let Some(w) = m.sync_waiter.take() {
                        w(SyncResponse {
                            error: None,
                            protocol_type: pt.clone(),
                            protocol_name: pn.clone(),
                            assignment: m.assignment.clone(),
                        });
                    }
                }
                let record = (store::group_key(group_id), Some(store::group_value(group.generation, &pt)));
                drop(inner);
                if let Err(e) = self.append(&[record]) {
                    tracing::error!(group = group_id, error = %e, "could not persist group metadata");
                }
            }
        }
    }

    /// A heartbeat extends the member's session in every state but Empty; during
    /// PreparingRebalance it answers REBALANCE_IN_PROGRESS so the member rejoins.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        if let Some(group) = inner.consumer_groups.get_mut(group_id).filter(|g| !g.is_empty()) {
            return group.classic_heartbeat(member_id, instance_id, generation, now);
        }
        let group = inner.groups.get_mut(group_id).ok_or(GroupError::UnknownMemberId)?;
        group.check_fenced(member_id, instance_id)?;
        let state = group.state;
        let group_generation = group.generation;
        let m = group.members.get_mut(member_id).ok_or(GroupError::UnknownMemberId)?;
        tracing::trace!(group = group_id, member = member_id, generation, state = state.name(), "heartbeat");
        if generation != group_generation {
            return Err(GroupError::IllegalGeneration);
        }
        match state {
            State::Empty => Err(GroupError::UnknownMemberId),
            State::PreparingRebalance => {
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                Err(GroupError::RebalanceInProgress)
            }
            State::CompletingRebalance | State::Stable => {
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                Ok(())
            }
        }
    }

    /// Removes members (by member id, or by instance id for static members). Returns one
    /// result per member, in order.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<Result<(), GroupError>> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        if let Some(group) = inner.consumer_groups.get_mut(group_id).filter(|g| !g.is_empty()) {
            let dir = self.directory();
            let lookup = |n: &str| dir.as_ref().and_then(|d| d.lookup(n));
            return group.classic_leave(members, &lookup);
        }
        let Some(group) = inner.groups.get_mut(group_id) else {
            return members.iter().map(|_| Err(GroupError::UnknownMemberId)).collect();
        };
        let mut results = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance_id) in members {
            // v3+ batch leave: by member id, or by instance id alone (member id empty);
            // both given must agree (Kafka's FENCED_INSTANCE_ID otherwise).
            let holder = instance_id.as_deref().and_then(|inst| group.static_member(inst));
            let result = match holder {
                Some(h) if member_id.is_empty() || *member_id == h => Ok(h),
                Some(_) => Err(GroupError::FencedInstanceId),
                None if instance_id.is_some() => Err(GroupError::UnknownMemberId),
                None if group.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(GroupError::UnknownMemberId),
            };
            match result {
                Ok(id) => {
                    tracing::info!(group = group_id, member = %id, "member left");
                    group.remove_member(&id);
                    removed = true;
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if removed {
            Self::after_removal(group, now);
        }
        results
    }

    fn after_removal(group: &mut Group, now: i64) {
        if group.members.is_empty() {
            group.fail_waiters(GroupError::RebalanceInProgress);
            group.state = State::Empty;
            group.generation += 1;
            group.leader.clear();
        } else if group.state != State::PreparingRebalance {
            group.prepare_rebalance(now, 0);
            group.initial_delay_until_ms = None;
            group.maybe_complete_join(now);
        } else {
            group.maybe_complete_join(now);
        }
    }

    /// Applies timeouts: expired sessions (in every state, PreparingRebalance included),
    /// missed SyncGroups, rebalance deadlines, the initial delay, unused pending ids.
    pub fn tick(&self) {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let mut shrunk = Vec::new();
        for (id, group) in inner.consumer_groups.iter_mut() {
            let gone = group.expire(now);
            for member in &gone {
                tracing::info!(group = %id, %member, "consumer group member session timed out; removed");
            }
            if !gone.is_empty() {
                shrunk.push(id.clone());
            }
        }
        for id in shrunk {
            self.maybe_downgrade(&mut inner, &id, now);
        }
        for (id, group) in inner.groups.iter_mut() {
            let pending_before = group.pending_members.len();
            group.pending_members.retain(|_, deadline| *deadline > now);
            if group.state == State::Empty {
                continue;
            }
            let expired = group.expired_members(now);
            for mid in &expired {
                tracing::info!(group = %id, member = %mid, state = group.state.name(), "session timed out; removing member");
                group.remove_member(mid);
            }
            if !expired.is_empty() {
                Self::after_removal(group, now);
            } else if group.state == State::PreparingRebalance || group.pending_members.len() != pending_before {
                group.maybe_complete_join(now);
            }
        }
    }

    /// Commits offsets for a group member, or for an empty group with generation -1 (a
    /// consumer using assign()). `known` says whether a topic partition exists. Returns the
    /// per-partition errors and the store offset to wait on for durability.
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        offsets: Vec<OffsetCommit>,
        known: &dyn Fn(&str, i32) -> bool,
    ) -> Result<(Vec<Option<GroupError>>, u64), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let consumer_members = match inner.consumer_groups.get(group_id) {
            Some(g) if !g.is_empty() => Some(g.check_commit(member_id, generation)),
            _ => None,
        };
        let group = inner.groups.entry(group_id.to_owned()).or_insert_with(Group::new);
        if let Some(check) = consumer_members {
            // KIP-848 group: the member and its epoch were checked above.
            check?;
        } else if generation < 0 && group.state == State::Empty {
            // Simple commit from outside any generation: allowed only while nobody is in the group.
        } else if group.state == State::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        } else if !group.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        } else if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let mut errors = Vec::with_capacity(offsets.len());
        let mut records = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::with_capacity(offsets.len());
        for (topic, partition, offset, leader_epoch, metadata) in offsets {
            if !known(&topic, partition) {
                errors.push(Some(GroupError::UnknownTopicOrPartition));
                continue;
            }
            errors.push(None);
            let c = Committed { offset, leader_epoch, metadata, commit_timestamp: now };
            records.push((store::offset_key(group_id, &topic, partition), Some(store::offset_value(&c))));
            accepted.push(((topic, partition), c));
        }
        // Appending under the lock keeps the log's order equal to the in-memory order.
        let end = self.append(&records).map_err(|e| {
            tracing::error!(group = group_id, error = %e, "could not store committed offsets");
            GroupError::Storage
        })?;
        let group = inner.groups.get_mut(group_id).expect("inserted above");
        if let Some(m) = group.members.get_mut(member_id) {
            m.deadline_ms = m.deadline_ms.max(now + i64::from(m.session_timeout_ms));
        }
        group.offsets.extend(accepted);
        Ok((errors, end))
    }

    /// Blocks until the store holds everything below `end` durably (policy `always`).
    pub fn wait_durable(&self, end: u64) -> Result<(), BrokerError> {
        self.store.wait_durable(end)
    }

    /// Committed offsets of a group: all of them, or those asked for (None where none is).
    pub fn fetch(&self, group_id: &str, wanted: Option<&[(String, i32)]>) -> Vec<((String, i32), Option<Committed>)> {
        let inner = self.lock();
        let group = inner.groups.get(group_id);
        match wanted {
            Some(w) => w.iter().map(|k| (k.clone(), group.and_then(|g| g.offsets.get(k).cloned()))).collect(),
            None => {
                group.map(|g| g.offsets.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect()).unwrap_or_default()
            }
        }
    }

    /// DescribeGroups: a classic group, or a KIP-848 group with members in the classic view.
    pub fn describe(&self, group_id: &str) -> Option<GroupInfo> {
        let inner = self.lock();
        if let Some(g) = inner.consumer_groups.get(group_id).filter(|g| !g.is_empty()) {
            let dir = self.directory();
            let name_of = |id: &[u8; 16]| dir.as_ref().and_then(|d| d.name_of(id));
            return Some(g.classic_view(group_id, self.protocol.get().map(|p| p.as_ref()), &name_of));
        }
        inner.groups.get(group_id).map(|g| g.info(group_id))
    }

    pub fn list(&self) -> Vec<GroupInfo> {
        let inner = self.lock();
        let mut out: Vec<GroupInfo> = inner
            .groups
            .iter()
            .filter(|(id, _)| inner.consumer_groups.get(*id).is_none_or(|c| c.is_empty()))
            .map(|(id, g)| g.info(id))
            .collect();
        out.extend(inner.consumer_groups.iter().filter(|(_, g)| !g.is_empty()).map(|(id, g)| GroupInfo {
            group_id: id.clone(),
            state: g.state(),
            protocol_type: "consumer".to_owned(),
            protocol: String::new(),
            generation: g.epoch(),
            members: Vec::new(),
        }));
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// OffsetDelete: removes committed offsets of a group. Refused per partition while the
    /// group has members subscribed to the topic (Kafka's GROUP_SUBSCRIBED_TO_TOPIC).
    /// Returns the per-partition errors and the store offset to wait on.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        offsets: &[(String, i32)],
    ) -> Result<(Vec<Option<GroupError>>, u64), GroupError> {
        let mut inner = self.lock();
        let Inner { groups, consumer_groups, .. } = &mut *inner;
        let group = groups.get_mut(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let kip848 = consumer_groups.get(group_id);
        let subscribed = |topic: &str| {
            kip848.is_some_and(|g| g.subscribes_to(topic))
                || (group.protocol_type == "consumer"
                    && group.members.values().any(|m| subscription_has(&metadata_for(m, &group.protocol), topic)))
        };
        let errors: Vec<Option<GroupError>> =
            offsets.iter().map(|(t, _)| subscribed(t).then_some(GroupError::GroupSubscribedToTopic)).collect();
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = offsets
            .iter()
            .zip(&errors)
            .filter(|((t, p), e)| e.is_none() && group.offsets.contains_key(&(t.clone(), *p)))
            .map(|((t, p), _)| (store::offset_key(group_id, t, *p), None))
            .collect();
        let end = self.append(&records).map_err(|_| GroupError::Storage)?;
        if let Some(group) = inner.groups.get_mut(group_id) {
            for ((t, p), e) in offsets.iter().zip(&errors) {
                if e.is_none() {
                    group.offsets.remove(&(t.clone(), *p));
                }
            }
        }
        Ok((errors, end))
    }

    /// KIP-848 ConsumerGroupHeartbeat: joins, heartbeats, reconciles, leaves.
    pub fn consumer_heartbeat(
        &self,
        req: consumer::HeartbeatRequest,
    ) -> Result<consumer::HeartbeatResponse, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let dir = self.directory();
        let lookup = |n: &str| dir.as_ref().and_then(|d| d.lookup(n));
        let list = || dir.as_ref().map(|d| d.names()).unwrap_or_default();
        let names = consumer::TopicNames {
            lookup: &lookup,
            generation: dir.as_ref().map_or(0, |d| d.generation()),
            list: &list,
        };
        let topics: consumer::TopicLookup<'_> = &lookup;
        let names = &names;
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        if inner.groups.get(&req.group_id).is_some_and(|g| !g.members.is_empty()) {
            // A classic group with members: a joining KIP-848 member upgrades it online
            // (KIP-848), when its members' subscriptions and assignments can be read.
            if req.member_epoch != 0 {
                return Err(GroupError::GroupIdNotFound);
            }
            // The request is checked first: a joiner that would be refused converts nothing.
            if req.subscribed_topics.is_none() && req.subscribed_regex.is_none() {
                return Err(GroupError::InvalidRequest("a joining member must send its subscription"));
            }
            consumer::Assignor::parse(req.server_assignor.as_deref()).ok_or(GroupError::UnsupportedAssignor)?;
            if let Some(r) = req.subscribed_regex.as_deref().filter(|r| !r.is_empty()) {
                consumer::compile_subscription(r).map_err(|_| GroupError::InvalidRegularExpression)?;
            }
            if inner.groups.get(&req.group_id).map_or(0, |g| g.members.len()) >= self.config.members_max {
                return Err(GroupError::GroupMaxSizeReached);
            }
            self.upgrade(&mut inner, &req.group_id, now, topics)?;
        }
        if !inner.consumer_groups.contains_key(&req.group_id) {
            if req.member_epoch != 0 {
                return Err(GroupError::UnknownMemberId);
            }
            // Epochs continue from the classic generation so they never go back.
            let start = inner.groups.get(&req.group_id).map_or(0, |g| g.generation.max(0));
            inner.consumer_groups.insert(req.group_id.clone(), consumer::ConsumerGroup::new(start));
        }
        let group = inner.consumer_groups.get_mut(&req.group_id).expect("inserted above");
        if req.member_epoch == 0 && !group.has_member(&req.member_id) && group.members_len() >= self.config.members_max
        {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let (session, interval) =
            (i64::from(self.config.consumer_session_timeout_ms), self.config.consumer_heartbeat_interval_ms);
        let client_id = req.client_id.clone();
        // A member leaving (-1, or -2 for a dynamic member, which leaves too).
        let leaving = req.member_epoch < 0;
        let group_id = req.group_id.clone();
        let r = group.heartbeat(req, now, session, interval, names, || member_id_for(&client_id));
        if leaving {
            self.maybe_downgrade(&mut inner, &group_id, now);
        }
        r
    }

    /// Turns a KIP-848 group whose last KIP-848 member left back into a classic group of its
    /// classic members (KIP-848's downgrade, as Kafka's default `bidirectional` policy): the
    /// generation is the group epoch, each member's assignment its target, and a rebalance
    /// starts, so the members rejoin (their next heartbeat says so) and their leader assigns.
    fn maybe_downgrade(&self, inner: &mut Inner, group_id: &str, now: i64) {
        let Some(members) = inner.consumer_groups.get(group_id).and_then(|g| g.classic_only()) else { return };
        let (Some(codec), Some(dir)) = (self.protocol.get(), self.directory()) else { return };
        if members.len() > self.config.members_max {
            return;
        }
        // The generation is the newest the members joined at (not the group epoch the leave
        // made, which no member has): members at it are told REBALANCE_IN_PROGRESS and their
        // commits are still accepted until they rejoin; any other gets ILLEGAL_GENERATION and
        // rejoins too.
        let epoch = members.iter().map(|d| d.epoch).max().unwrap_or(0);
        inner.consumer_groups.remove(group_id);
        let mut seq = inner.next_seq;
        let group = inner.groups.entry(group_id.to_owned()).or_insert_with(Group::new);
        let n = members.len();
        for d in members {
            let metadata = d.protocols.first().map(|(_, md)| md.clone()).unwrap_or_default();
            let named: Vec<(String, i32)> =
                d.partitions.iter().filter_map(|(id, p)| dir.name_of(id).map(|t| (t, *p))).collect();
            seq += 1;
            group.members.insert(
                d.member_id,
                Member {
                    instance_id: d.instance_id,
                    client_id: d.client_id,
                    client_host: d.client_host,
                    session_timeout_ms: d.session_timeout_ms,
                    rebalance_timeout_ms: d.rebalance_timeout_ms,
                    assignment: codec.encode_assignment(&metadata, &named),
                    protocols: d.protocols,
                    deadline_ms: now + i64::from(d.session_timeout_ms),
                    pending_sync: false,
                    joined_seq: seq,
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        inner.next_seq = seq;
        group.generation = epoch;
        group.protocol_type = "consumer".into();
        group.protocol = group.select_protocol();
        group.leader.clear();
        group.pending_members.clear();
        group.state = State::Stable;
        group.prepare_rebalance(now, 0);
        group.initial_delay_until_ms = None;
        tracing::info!(
            group = group_id,
            members = n,
            generation = epoch,
            "KIP-848 group downgraded to a classic group"
        );
    }

    /// Turns a classic group with members into a KIP-848 group (KIP-848's online upgrade, as
    /// Kafka's `group.consumer.migration.policy=upgrade|bidirectional` does): every member
    /// keeps its synced partitions at the classic generation and goes on as a classic member of
    /// the new group; joins and syncs under way are answered REBALANCE_IN_PROGRESS so they
    /// rejoin it. Refused (GROUP_ID_NOT_FOUND, as Kafka) when a member's subscription or
    /// assignment cannot be read or carries an assignor's user data.
    fn upgrade(
        &self,
        inner: &mut Inner,
        group_id: &str,
        now: i64,
        topics: consumer::TopicLookup<'_>,
    ) -> Result<(), GroupError> {
        let Some(codec) = self.protocol.get() else { return Err(GroupError::GroupIdNotFound) };
        let group = inner.groups.get_mut(group_id).expect("caller checked");
        let refuse = |why: String| {
            tracing::info!(group = group_id, reason = %why, "classic group not upgraded to a consumer group");
            GroupError::GroupIdNotFound
        };
        if group.protocol_type != "consumer" {
            return Err(refuse(format!("protocol type {:?}", group.protocol_type)));
        }
        let mut upgraded = Vec::with_capacity(group.members.len());
        for (id, m) in &group.members {
            let mut protocols = m.protocols.clone();
            if let Some(at) = protocols.iter().position(|(n, _)| *n == group.protocol) {
                protocols.swap(0, at);
            }
            let metadata = protocols.first().map(|(_, md)| md.clone()).unwrap_or_default();
            let (subscribed, _) = codec.subscription(&metadata).map_err(|e| refuse(format!("member {id}: {e}")))?;
            let parts = if m.assignment.is_empty() {
                Vec::new()
            } else {
                codec.assignment(&m.assignment).map_err(|e| refuse(format!("member {id}: {e}")))?
            };
            upgraded.push(consumer::Migrating {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols,
                topics: subscribed,
                partitions: parts.iter().filter_map(|(t, p)| topics(t).map(|(tid, _)| (tid, *p))).collect(),
                epoch: group.generation,
            });
        }
        for (id, mut m) in std::mem::take(&mut group.members) {
            m.fail_waiters(&id, GroupError::RebalanceInProgress);
        }
        group.state = State::Empty;
        group.leader.clear();
        group.pending_members.clear();
        let generation = group.generation;
        tracing::info!(
            group = group_id,
            members = upgraded.len(),
            generation,
            "classic group upgraded to a KIP-848 consumer group"
        );
        inner
            .consumer_groups
            .insert(group_id.to_owned(), consumer::ConsumerGroup::from_classic(generation, upgraded, now, topics));
        Ok(())
    }

    pub fn consumer_describe(&self, group_id: &str) -> Option<consumer::ConsumerGroupInfo> {
        self.lock().consumer_groups.get(group_id).map(|g| g.info(group_id))
    }

    /// Deletes an empty group and its committed offsets.
    pub fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        let mut inner = self.lock();
        if inner.consumer_groups.get(group_id).is_some_and(|g| !g.is_empty()) {
            return Err(GroupError::NonEmptyGroup);
        }
        inner.consumer_groups.remove(group_id);
        let group = inner.groups.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
        if !group.members.is_empty() {
            return Err(GroupError::NonEmptyGroup);
        }
        let mut records: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            group.offsets.keys().map(|(t, p)| (store::offset_key(group_id, t, *p), None)).collect();
        records.push((store::group_key(group_id), None));
        let end = self.append(&records).map_err(|_| GroupError::Storage)?;
        inner.groups.remove(group_id);
        drop(inner);
        self.wait_durable(end).map_err(|_| GroupError::Storage)
    }

    /// Appends records (key, value or tombstone) to the offsets topic as one batch.
    fn append(&self, records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<u64, BrokerError> {
        if records.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now_ms();
        let mut b = BatchBuilder::new();
        for (k, v) in records {
            b.push(now, Some(k), v.as_deref());
        }
        let bytes = b.build();
        let batch = ValidatedBatch::new(&bytes, usize::MAX)?;
        Ok(self.store.append(&batch)?.end_offset)
    }
}

fn apply(groups: &mut HashMap<String, Group>, rec: StoreRecord) {
    match rec {
        StoreRecord::Offset { group, topic, partition, value } => {
            let g = groups.entry(group).or_insert_with(Group::new);
            match value {
                Some(c) => {
                    g.offsets.insert((topic, partition), c);
                }
                None => {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        StoreRecord::Group { group, value } => match value {
            Some((generation, protocol_type)) => {
                let g = groups.entry(group).or_insert_with(Group::new);
                g.generation = generation;
                g.protocol_type = protocol_type;
            }
            None => {
                groups.remove(&group);
            }
        },
    }
}
