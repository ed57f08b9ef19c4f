//! Group coordinator for Kafka's classic group protocol: membership, rebalances, and
//! committed offsets kept in the compacted `__consumer_offsets` topic.
//!
//! A pure state machine over a [`Clock`]: calls change state, and `tick` applies timeouts
//! (session expiry, rebalance deadlines, the initial rebalance delay). JoinGroup and
//! SyncGroup answers that must wait for other members are delivered later through the
//! callbacks given with the request, so this module knows nothing of async runtimes.

pub mod store;
pub use store::Committed;

use crate::error::BrokerError;
use crate::partition::Partition;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use store::StoreRecord;
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
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            session_timeout_min_ms: 1000,
            session_timeout_max_ms: 1_800_000,
            members_max: 1000,
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
    /// Removed when no heartbeat (or join/sync) arrives before this.
    deadline_ms: i64,
    /// Order of joining: the earliest member becomes leader.
    joined_seq: u64,
    join_waiter: Option<JoinCallback>,
    sync_waiter: Option<SyncCallback>,
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
            if let Some(w) = m.join_waiter.take() {
                w(JoinResponse {
                    error: Some(GroupError::UnknownMemberId),
                    member_id: id.to_owned(),
                    ..JoinResponse::default()
                });
            }
            if let Some(w) = m.sync_waiter.take() {
                w(SyncResponse { error: Some(GroupError::UnknownMemberId), ..SyncResponse::default() });
            }
        }
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
        let all_joined = !self.members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
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
        let leader_view: Vec<(String, Option<String>, Bytes)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.instance_id.clone(), metadata_for(m, &self.protocol)))
            .collect();
        for (id, m) in self.members.iter_mut() {
            m.deadline_ms = now + i64::from(m.session_timeout_ms);
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

fn metadata_for(m: &Member, protocol: &str) -> Bytes {
    m.protocols.iter().find(|(n, _)| n == protocol).map(|(_, md)| md.clone()).unwrap_or_default()
}

struct Inner {
    groups: HashMap<String, Group>,
    next_seq: u64,
}

/// The group coordinator of this node (the coordinator of every group).
pub struct Coordinator {
    config: GroupConfig,
    clock: Arc<dyn Clock>,
    store: Arc<Partition>,
    inner: Mutex<Inner>,
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
        Ok(Self { config, clock, store, inner: Mutex::new(Inner { groups, next_seq: 0 }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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
        let group = inner.groups.entry(req.group_id.clone()).or_insert_with(Group::new);
        if !group.supports(&req.protocol_type, &req.protocols) {
            return fail(respond, GroupError::InconsistentGroupProtocol, req.member_id);
        }
        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            if let Some(instance) = &req.group_instance_id {
                // A static member coming back under a new member id replaces its old self.
                let old: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(_, m)| m.instance_id.as_ref() == Some(instance))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in old {
                    group.remove_member(&id);
                }
                member_id = member_id_for(&req.client_id);
            } else {
                member_id = member_id_for(&req.client_id);
                if req.require_known_member {
                    group.pending_members.insert(member_id.clone(), now + i64::from(req.session_timeout_ms));
                    return fail(respond, GroupError::MemberIdRequired, member_id);
                }
            }
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
        let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            deadline_ms: 0,
            joined_seq: seq,
            join_waiter: None,
            sync_waiter: None,
        });
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms.max(req.session_timeout_ms);
        member.deadline_ms = now + i64::from(member.rebalance_timeout_ms);
        if let Some(old) = member.join_waiter.replace(respond) {
            old(JoinResponse {
                error: Some(GroupError::RebalanceInProgress),
                member_id: member_id.clone(),
                ..JoinResponse::default()
            });
        }
        tracing::debug!(group = %req.group_id, member = %member_id, state = group.state.name(), "join");
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
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let fail =
            |respond: SyncCallback, error| respond(SyncResponse { error: Some(error), ..SyncResponse::default() });
        let Some(group) = inner.groups.get_mut(group_id) else {
            return fail(respond, GroupError::UnknownMemberId);
        };
        if !group.members.contains_key(member_id) {
            return fail(respond, GroupError::UnknownMemberId);
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
        match group.state {
            State::Empty => fail(respond, GroupError::UnknownMemberId),
            State::PreparingRebalance => fail(respond, GroupError::RebalanceInProgress),
            State::Stable => {
                let m = &mut group.members.get_mut(member_id).expect("checked above");
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
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
                    m.sync_waiter = Some(respond);
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

    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> Result<(), GroupError> {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        let group = inner.groups.get_mut(group_id).ok_or(GroupError::UnknownMemberId)?;
        let state = group.state;
        let group_generation = group.generation;
        let m = group.members.get_mut(member_id).ok_or(GroupError::UnknownMemberId)?;
        tracing::trace!(group = group_id, member = member_id, generation, state = state.name(), "heartbeat");
        match state {
            State::Empty => Err(GroupError::UnknownMemberId),
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ if generation != group_generation => Err(GroupError::IllegalGeneration),
            _ => {
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
        let Some(group) = inner.groups.get_mut(group_id) else {
            return members.iter().map(|_| Err(GroupError::UnknownMemberId)).collect();
        };
        let mut results = Vec::with_capacity(members.len());
        let mut removed = false;
        for (member_id, instance_id) in members {
            let id = if !member_id.is_empty() && group.members.contains_key(member_id) {
                Some(member_id.clone())
            } else {
                instance_id.as_ref().and_then(|inst| {
                    group.members.iter().find(|(_, m)| m.instance_id.as_ref() == Some(inst)).map(|(id, _)| id.clone())
                })
            };
            match id {
                Some(id) => {
                    group.remove_member(&id);
                    removed = true;
                    results.push(Ok(()));
                }
                None => results.push(Err(GroupError::UnknownMemberId)),
            }
        }
        if removed {
            self.after_removal(group, now);
        }
        results
    }

    fn after_removal(&self, group: &mut Group, now: i64) {
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

    /// Applies timeouts: expired sessions, rebalance deadlines, the initial delay.
    pub fn tick(&self) {
        let now = self.clock.now_ms();
        let mut inner = self.lock();
        for (id, group) in inner.groups.iter_mut() {
            group.pending_members.retain(|_, deadline| *deadline > now);
            match group.state {
                State::PreparingRebalance => group.maybe_complete_join(now),
                State::CompletingRebalance | State::Stable => {
                    let expired: Vec<String> =
                        group.members.iter().filter(|(_, m)| m.deadline_ms < now).map(|(mid, _)| mid.clone()).collect();
                    if expired.is_empty() {
                        continue;
                    }
                    for mid in &expired {
                        tracing::info!(group = %id, member = %mid, "session timed out; removing member");
                        group.remove_member(mid);
                    }
                    self.after_removal(group, now);
                }
                State::Empty => {}
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
        let group = inner.groups.entry(group_id.to_owned()).or_insert_with(Group::new);
        if generation < 0 && group.state == State::Empty {
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

    pub fn describe(&self, group_id: &str) -> Option<GroupInfo> {
        self.lock().groups.get(group_id).map(|g| g.info(group_id))
    }

    pub fn list(&self) -> Vec<GroupInfo> {
        let inner = self.lock();
        let mut out: Vec<GroupInfo> = inner.groups.iter().map(|(id, g)| g.info(id)).collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// Deletes an empty group and its committed offsets.
    pub fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        let mut inner = self.lock();
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
