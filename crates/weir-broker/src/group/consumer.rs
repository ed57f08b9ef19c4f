//! KIP-848 consumer groups (`ConsumerGroupHeartbeat`): the broker computes the assignment
//! and members reconcile towards it incrementally, without a stop-the-world rebalance.
//!
//! Every membership or subscription change (or a change of the subscribed topics' partition
//! counts) bumps the group epoch and recomputes the target assignment with the chosen
//! assignor. Each heartbeat moves its member towards its target: partitions leaving the
//! member are dropped from its assignment at once (the member revokes them and reports
//! so), partitions coming to it are handed over only once no other member still holds or
//! owns them. A member reaches the group's epoch once it has nothing left to revoke.
//! The timers and errors are in docs/groups.md.

use super::GroupError;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Largest compiled subscription regex (bytes of the regex engine's program): a bound on what
/// one heartbeat can make the broker allocate.
const REGEX_SIZE_MAX: usize = 1 << 20;

/// A subscription regex, compiled to match whole topic names (Kafka's RE2/J `matches()`).
pub fn compile_subscription(pattern: &str) -> Result<regex::Regex, String> {
    let build = |p: &str| regex::RegexBuilder::new(p).size_limit(REGEX_SIZE_MAX).build().map_err(|e| e.to_string());
    // The pattern alone first: `a)|(b` must be refused, not read as `^(?:a)|(b)$`.
    build(pattern)?;
    build(&format!("^(?:{pattern})$"))
}

/// The broker's topic names for resolving subscription regexes: a generation that changes
/// whenever a topic is created or deleted, and the names themselves (asked only when the
/// generation moved or a new regex arrived).
pub struct TopicNames<'a> {
    /// A topic by name: id and partition count.
    pub lookup: TopicLookup<'a>,
    pub generation: u64,
    pub list: &'a dyn Fn() -> Vec<String>,
}

/// The broker's topics as the group coordinator needs them: by name (id and partition
/// count), by id (name), and every name with a generation that moves on each creation or
/// deletion (for regex subscriptions).
pub trait TopicDirectory: Send + Sync {
    fn lookup(&self, name: &str) -> Option<([u8; 16], i32)>;
    fn name_of(&self, id: &[u8; 16]) -> Option<String>;
    fn generation(&self) -> u64;
    fn names(&self) -> Vec<String>;
}

/// The consumer embedded protocol's bytes (Kafka's ConsumerProtocolSubscription and
/// ConsumerProtocolAssignment), read and written by the wire layer for groups whose classic
/// members meet KIP-848 ones (online migration). Partitions by topic name.
pub trait ConsumerProtocol: Send + Sync {
    /// Topics subscribed and partitions owned, from a JoinGroup protocol's metadata.
    fn subscription(&self, metadata: &[u8]) -> Result<(Vec<String>, Vec<(String, i32)>), String>;
    /// The partitions of a member's SyncGroup assignment (refused when it carries an
    /// assignor's user data, which a broker-side assignment would lose).
    fn assignment(&self, assignment: &[u8]) -> Result<Vec<(String, i32)>, String>;
    /// An assignment for a member, in the version of its subscription `metadata`.
    fn encode_assignment(&self, metadata: &[u8], partitions: &[(String, i32)]) -> Bytes;
    /// A subscription to `topics` (DescribeGroups shows KIP-848 members with one).
    fn encode_subscription(&self, topics: &[String]) -> Bytes;
}

/// A classic-protocol member of a KIP-848 group: it joins, syncs and heartbeats the classic
/// way, and the broker assigns it as it assigns the others.
#[derive(Debug, Clone)]
struct Classic {
    session_timeout_ms: i32,
    /// (name, metadata) from its last JoinGroup; it speaks the first.
    protocols: Vec<(String, Bytes)>,
}

/// A classic JoinGroup into a KIP-848 group, decoded.
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub topics: Vec<String>,
    pub owned: Vec<TopicPartition>,
    pub require_known_member: bool,
}

/// A classic member as it moves between a classic group and a KIP-848 group: into one (an
/// online upgrade: its subscribed topics and synced partitions) or back (a downgrade: its
/// target's partitions and its member epoch).
#[derive(Debug, Clone)]
pub(crate) struct Migrating {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub topics: Vec<String>,
    pub partitions: Vec<TopicPartition>,
    /// Its member epoch (the generation it last joined); an upgrade sets it from the group.
    pub epoch: i32,
}

/// A partition by topic id and index.
pub type TopicPartition = ([u8; 16], i32);

/// The server-side assignors (KIP-848's `uniform` and `range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    pub fn parse(name: Option<&str>) -> Option<Assignor> {
        match name {
            None | Some("uniform") => Some(Assignor::Uniform),
            Some("range") => Some(Assignor::Range),
            Some(_) => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }
}

/// One ConsumerGroupHeartbeat in domain terms.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// None: unchanged since the last heartbeat.
    pub subscribed_topics: Option<Vec<String>>,
    /// KIP-848 regex subscription (v1+, RE2 syntax, whole names): None unchanged, empty none.
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// None: unchanged since the last heartbeat.
    pub owned: Option<Vec<TopicPartition>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed (or the member's report disagrees with it).
    pub assignment: Option<Vec<TopicPartition>>,
}

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct ConsumerMemberInfo {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    /// The topic names the member subscribed to by name (not the regex's matches).
    pub subscribed_topics: Vec<String>,
    /// Its subscription regex, empty when none.
    pub subscribed_regex: String,
    pub assignment: Vec<TopicPartition>,
    pub target: Vec<TopicPartition>,
}

#[derive(Debug, Clone)]
pub struct ConsumerGroupInfo {
    pub group_id: String,
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<ConsumerMemberInfo>,
}

#[derive(Debug)]
struct Member {
    epoch: i32,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    /// Topics subscribed by name, sorted.
    names: Vec<String>,
    /// Subscription regex ("" none).
    regex: String,
    /// Everything it subscribes to: `names` and the regex's matches, sorted.
    subscribed: Vec<String>,
    /// What this member was told it owns.
    assigned: BTreeSet<TopicPartition>,
    /// What it last reported owning (it may still be revoking partitions).
    owned: BTreeSet<TopicPartition>,
    session_deadline_ms: i64,
    /// Set while the member holds partitions its target no longer has; it must report
    /// their revocation before this or it is removed. For a classic member: it was told to
    /// rejoin and must before this.
    revoke_deadline_ms: Option<i64>,
    /// Set for a member that speaks the classic protocol.
    classic: Option<Classic>,
}

/// One KIP-848 group: its members, epoch and target assignment.
#[derive(Debug)]
pub(crate) struct ConsumerGroup {
    epoch: i32,
    assignment_epoch: i32,
    assignor: Assignor,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    /// The subscribed topics' (id, partition count) when the target was computed.
    topology: Vec<(String, [u8; 16], i32)>,
    /// Subscription regexes in use, compiled, with the topics each matched.
    regexes: BTreeMap<String, (Arc<regex::Regex>, Vec<String>)>,
    /// Member ids handed to classic joiners with MEMBER_ID_REQUIRED, valid until the deadline.
    pending: BTreeMap<String, i64>,
    /// The topic-name generation the regexes were last resolved against.
    resolved_generation: Option<u64>,
}

/// Looks a topic up by name: its id and partition count.
pub type TopicLookup<'a> = &'a dyn Fn(&str) -> Option<([u8; 16], i32)>;

impl ConsumerGroup {
    pub(crate) fn new(epoch: i32) -> Self {
        ConsumerGroup {
            epoch,
            assignment_epoch: epoch,
            assignor: Assignor::Uniform,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topology: Vec::new(),
            regexes: BTreeMap::new(),
            pending: BTreeMap::new(),
            resolved_generation: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn epoch(&self) -> i32 {
        self.epoch
    }

    pub(crate) fn has_member(&self, id: &str) -> bool {
        self.members.contains_key(id)
    }

    pub(crate) fn members_len(&self) -> usize {
        self.members.len()
    }

    /// Offset commits from a member carry its epoch: a newer one than the member has is
    /// invalid, an older one is still accepted (its partitions may be mid-revocation).
    pub(crate) fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), GroupError> {
        let m = self.members.get(member_id).ok_or(GroupError::UnknownMemberId)?;
        if m.classic.is_some() {
            // A classic member commits with its generation, which is its member epoch.
            return if epoch == m.epoch { Ok(()) } else { Err(GroupError::IllegalGeneration) };
        }
        if epoch > m.epoch {
            return Err(GroupError::StaleMemberEpoch);
        }
        Ok(())
    }

    pub(crate) fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch != self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.epoch) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub(crate) fn subscribes_to(&self, topic: &str) -> bool {
        self.members.values().any(|m| m.subscribed.iter().any(|t| t == topic))
    }

    pub(crate) fn heartbeat(
        &mut self,
        req: HeartbeatRequest,
        now: i64,
        session_timeout_ms: i64,
        heartbeat_interval_ms: i32,
        names: &TopicNames<'_>,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatResponse, GroupError> {
        let topics = names.lookup;
        // A new regex is compiled before anything changes: a bad one leaves the group as it was.
        let new_regex = match req.subscribed_regex.as_deref() {
            Some(r) if !r.is_empty() && !self.regexes.contains_key(r) => {
                let compiled = compile_subscription(r).map_err(|e| {
                    tracing::debug!(group = %req.group_id, regex = r, error = %e, "invalid subscription regex");
                    GroupError::InvalidRegularExpression
                })?;
                Some((r.to_owned(), Arc::new(compiled)))
            }
            _ => None,
        };
        let mut changed = false;
        let mut member_id = req.member_id.clone();
        match req.member_epoch {
            -2 if self.members.get(&member_id).is_some_and(|m| m.instance_id.is_some()) => {
                // A static member leaving for a while (KIP-848): it keeps its place and
                // partitions until its session runs out; back in time, it gets them again.
                return Ok(HeartbeatResponse {
                    member_id,
                    member_epoch: req.member_epoch,
                    heartbeat_interval_ms,
                    assignment: None,
                });
            }
            -1 | -2 => {
                if self.members.get(&member_id).is_some_and(|m| m.classic.is_some()) {
                    return Err(GroupError::UnknownMemberId);
                }
                if self.members.remove(&member_id).is_some() {
                    tracing::info!(group = %req.group_id, member = %member_id, "consumer group member left");
                    self.target.remove(&member_id);
                    self.bump(topics);
                }
                return Ok(HeartbeatResponse {
                    member_id,
                    member_epoch: req.member_epoch,
                    heartbeat_interval_ms,
                    assignment: None,
                });
            }
            0 => {
                if member_id.is_empty() {
                    member_id = new_member_id();
                }
                if let Some(inst) = &req.instance_id {
                    // A static member coming back takes its old incarnation's place and
                    // target under the new member id: no new epoch, nobody else moves.
                    let old = self
                        .members
                        .iter()
                        .find(|(id, m)| m.instance_id.as_ref() == Some(inst) && **id != member_id)
                        .map(|(id, _)| id.clone());
                    if let Some(old) = old {
                        if let Some(m) = self.members.remove(&old) {
                            self.members.insert(member_id.clone(), m);
                        }
                        if let Some(t) = self.target.remove(&old) {
                            self.target.insert(member_id.clone(), t);
                        }
                        tracing::info!(group = %req.group_id, %old, new = %member_id, "static member rejoined");
                    }
                }
                if req.subscribed_topics.is_none()
                    && req.subscribed_regex.is_none()
                    && !self.members.contains_key(&member_id)
                {
                    return Err(GroupError::InvalidRequest("a joining member must send its subscription"));
                }
                let m = self.members.entry(member_id.clone()).or_insert_with(|| {
                    changed = true;
                    Member {
                        epoch: 0,
                        instance_id: req.instance_id.clone(),
                        rack_id: req.rack_id.clone(),
                        client_id: req.client_id.clone(),
                        client_host: req.client_host.clone(),
                        rebalance_timeout_ms: req.rebalance_timeout_ms,
                        names: Vec::new(),
                        regex: String::new(),
                        subscribed: Vec::new(),
                        assigned: BTreeSet::new(),
                        owned: BTreeSet::new(),
                        session_deadline_ms: 0,
                        revoke_deadline_ms: None,
                        classic: None,
                    }
                });
                // Rejoining at epoch 0 means the member holds nothing; a classic member (or a
                // static one's classic incarnation) coming back this way has switched protocol.
                m.assigned.clear();
                m.owned.clear();
                m.epoch = 0;
                m.classic = None;
                m.client_id.clone_from(&req.client_id);
                m.client_host.clone_from(&req.client_host);
                m.rack_id.clone_from(&req.rack_id);
            }
            epoch => {
                let m = self.members.get(&member_id).ok_or(GroupError::UnknownMemberId)?;
                if m.classic.is_some() {
                    return Err(GroupError::UnknownMemberId);
                }
                if epoch != m.epoch {
                    return Err(GroupError::FencedMemberEpoch);
                }
            }
        }
        if let Some(a) = req.server_assignor.as_deref() {
            let assignor = Assignor::parse(Some(a)).ok_or(GroupError::UnsupportedAssignor)?;
            if assignor != self.assignor {
                self.assignor = assignor;
                changed = true;
            }
        }
        let m = self.members.get_mut(&member_id).expect("present: inserted or checked above");
        m.session_deadline_ms = now + session_timeout_ms;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        if let Some(mut subs) = req.subscribed_topics {
            subs.sort();
            subs.dedup();
            m.names = subs;
        }
        if let Some(r) = req.subscribed_regex {
            m.regex = r;
        }
        let reported = req.owned.map(|o| o.into_iter().collect::<BTreeSet<_>>());
        if let Some(o) = &reported {
            m.owned = o.clone();
        }
        if let Some((pattern, compiled)) = new_regex {
            self.regexes.insert(pattern, (compiled, Vec::new()));
            self.resolved_generation = None;
        }
        if self.resolve_subscriptions(names, &member_id) {
            changed = true;
        }
        if changed || self.topology_changed(topics) {
            self.bump(topics);
        }
        let before = self.members[&member_id].assigned.clone();
        self.reconcile(&member_id, now);
        let m = self.members.get_mut(&member_id).expect("present");
        let send = m.assigned != before || req.member_epoch == 0 || reported.is_some_and(|o| o != m.assigned);
        if send {
            // What a member was given counts as owned until it reports otherwise: nothing
            // it may still be consuming is handed to another member before it says so.
            m.owned.extend(m.assigned.iter().copied());
        }
        let m = &self.members[&member_id];
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: m.epoch,
            heartbeat_interval_ms,
            assignment: send.then(|| m.assigned.iter().copied().collect()),
        })
    }

    /// Recomputes every member's subscription from its names and its regex's matches; the
    /// regexes are matched again only when topics were created or deleted since the last time
    /// (or a regex is new). Regexes no member uses any more are dropped. Returns whether any
    /// member's subscription changed.
    fn resolve_subscriptions(&mut self, names: &TopicNames<'_>, touched: &str) -> bool {
        let used: BTreeSet<&str> = self.members.values().map(|m| m.regex.as_str()).filter(|r| !r.is_empty()).collect();
        self.regexes.retain(|r, _| used.contains(r.as_str()));
        let mut rematched = false;
        if self.regexes.is_empty() {
            self.resolved_generation = None;
        } else if self.resolved_generation != Some(names.generation) {
            let all = (names.list)();
            for (regex, matched) in self.regexes.values_mut() {
                *matched = all.iter().filter(|t| regex.is_match(t)).cloned().collect();
            }
            self.resolved_generation = Some(names.generation);
            rematched = true;
        }
        // Only the member that sent a subscription, and regex members after a new match, can
        // have changed: the others are not rebuilt (no work per heartbeat for them).
        let mut changed = false;
        for (id, m) in self.members.iter_mut() {
            let subs = match self.regexes.get(&m.regex) {
                None if m.subscribed != m.names => m.names.clone(),
                Some((_, matched)) if rematched || id == touched => {
                    let mut subs = m.names.clone();
                    subs.extend(matched.iter().cloned());
                    subs.sort();
                    subs.dedup();
                    subs
                }
                _ => continue,
            };
            if subs != m.subscribed {
                m.subscribed = subs;
                changed = true;
            }
        }
        changed
    }

    /// Moves a member towards its target: drops what it should no longer have, adds what
    /// is free, and gives it the group epoch once it has nothing left to revoke.
    fn reconcile(&mut self, member_id: &str, now: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_by_others: BTreeSet<TopicPartition> = self
            .members
            .iter()
            .filter(|(id, _)| *id != member_id)
            .flat_map(|(_, m)| m.assigned.iter().chain(m.owned.iter()).copied())
            .collect();
        let epoch = self.epoch;
        let m = self.members.get_mut(member_id).expect("caller checked");
        m.assigned.retain(|p| target.contains(p));
        let revoking = m.owned.iter().any(|p| !target.contains(p));
        for p in &target {
            if !held_by_others.contains(p) {
                m.assigned.insert(*p);
            }
        }
        m.revoke_deadline_ms = if revoking {
            Some(m.revoke_deadline_ms.unwrap_or(now + i64::from(m.rebalance_timeout_ms.max(0))))
        } else {
            None
        };
        // Once nothing is left to revoke the member is at the group epoch; partitions
        // still held by others come later without another epoch (KIP-848).
        if !revoking {
            m.epoch = epoch;
        }
    }

    fn topology(&self, topics: TopicLookup<'_>) -> Vec<(String, [u8; 16], i32)> {
        let names: BTreeSet<&String> = self.members.values().flat_map(|m| m.subscribed.iter()).collect();
        names.into_iter().filter_map(|n| topics(n).map(|(id, count)| (n.clone(), id, count))).collect()
    }

    fn topology_changed(&self, topics: TopicLookup<'_>) -> bool {
        self.topology(topics) != self.topology
    }

    /// A new group epoch and target assignment.
    fn bump(&mut self, topics: TopicLookup<'_>) {
        self.epoch += 1;
        self.topology = self.topology(topics);
        self.target = compute_target(self.assignor, &self.members, &self.topology, &self.target);
        self.assignment_epoch = self.epoch;
    }

    /// Removes members whose session ran out or who did not revoke in time; returns them.
    /// The new target uses the topology last seen (the next heartbeat refreshes it).
    pub(crate) fn expire(&mut self, now: i64) -> Vec<String> {
        self.pending.retain(|_, deadline| *deadline > now);
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.session_deadline_ms <= now || m.revoke_deadline_ms.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
            self.target.remove(id);
        }
        if !gone.is_empty() {
            let topology = std::mem::take(&mut self.topology);
            let lookup = |name: &str| topology.iter().find(|(n, _, _)| n == name).map(|(_, id, c)| (*id, *c));
            self.bump(&lookup);
        }
        gone
    }

    /// A KIP-848 group made from a classic one (online upgrade): every member keeps the
    /// partitions it was synced with, at the classic generation, and the target is that
    /// assignment, so nothing moves until the joining member changes the group.
    pub(crate) fn from_classic(
        generation: i32,
        members: Vec<Migrating>,
        now: i64,
        topics: TopicLookup<'_>,
    ) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(generation);
        for u in members {
            let assigned: BTreeSet<TopicPartition> = u.partitions.into_iter().collect();
            let mut names = u.topics;
            names.sort();
            names.dedup();
            g.target.insert(u.member_id.clone(), assigned.clone());
            g.members.insert(
                u.member_id,
                Member {
                    epoch: generation,
                    instance_id: u.instance_id,
                    rack_id: None,
                    client_id: u.client_id,
                    client_host: u.client_host,
                    rebalance_timeout_ms: u.rebalance_timeout_ms,
                    subscribed: names.clone(),
                    names,
                    regex: String::new(),
                    owned: assigned.clone(),
                    assigned,
                    session_deadline_ms: now + i64::from(u.session_timeout_ms),
                    revoke_deadline_ms: None,
                    classic: Some(Classic { session_timeout_ms: u.session_timeout_ms, protocols: u.protocols }),
                },
            );
        }
        g.topology = g.topology(topics);
        g
    }

    /// Its members, when every one speaks the classic protocol (a downgrade may follow);
    /// None when the group is empty or a KIP-848 member is left.
    pub(crate) fn classic_only(&self) -> Option<Vec<Migrating>> {
        if self.members.is_empty() {
            return None;
        }
        self.members
            .iter()
            .map(|(id, m)| {
                let c = m.classic.as_ref()?;
                Some(Migrating {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: c.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: c.protocols.clone(),
                    topics: m.subscribed.clone(),
                    partitions: self.target.get(id).map(|t| t.iter().copied().collect()).unwrap_or_default(),
                    epoch: m.epoch,
                })
            })
            .collect()
    }

    /// A classic member's JoinGroup: answered at once with (member id, generation = its member
    /// epoch, protocol name); its partitions come in SyncGroup. On error the member id to
    /// answer with comes back too (MEMBER_ID_REQUIRED hands one out).
    pub(crate) fn classic_join(
        &mut self,
        j: ClassicJoin,
        now: i64,
        names: &TopicNames<'_>,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<(String, i32, String), (GroupError, String)> {
        let topics = names.lookup;
        let Some(protocol) = j.protocols.first().map(|(n, _)| n.clone()) else {
            return Err((GroupError::InconsistentGroupProtocol, j.member_id));
        };
        let holder = j
            .instance_id
            .as_ref()
            .and_then(|inst| self.members.iter().find(|(_, m)| m.instance_id.as_ref() == Some(inst)))
            .map(|(id, _)| id.clone());
        if holder.as_ref().is_some_and(|h| self.members.get(h).is_some_and(|m| m.classic.is_none())) {
            // The instance id belongs to a KIP-848 member: nothing moves.
            return Err((GroupError::InconsistentGroupProtocol, j.member_id));
        }
        // Every classic member must share a protocol with the others (as Kafka checks), or a
        // later downgrade would leave them none to agree on.
        let shares = self
            .members
            .iter()
            .filter(|(id, _)| Some(*id) != holder.as_ref() && **id != j.member_id)
            .filter_map(|(_, m)| m.classic.as_ref())
            .all(|c| c.protocols.iter().any(|(n, _)| j.protocols.iter().any(|(jn, _)| jn == n)));
        if !shares {
            return Err((GroupError::InconsistentGroupProtocol, j.member_id));
        }
        let member_id = if j.member_id.is_empty() {
            let id = new_member_id();
            match holder {
                // A static member back under a new member id takes its old place and target.
                Some(old) => {
                    if let Some(m) = self.members.remove(&old) {
                        self.members.insert(id.clone(), m);
                    }
                    if let Some(t) = self.target.remove(&old) {
                        self.target.insert(id.clone(), t);
                    }
                }
                None if j.require_known_member && j.instance_id.is_none() => {
                    self.pending.insert(id.clone(), now + i64::from(j.session_timeout_ms));
                    return Err((GroupError::MemberIdRequired, id));
                }
                None => {}
            }
            id
        } else {
            if holder.as_ref().is_some_and(|h| *h != j.member_id) {
                return Err((GroupError::FencedInstanceId, j.member_id));
            }
            if !self.members.contains_key(&j.member_id) && self.pending.remove(&j.member_id).is_none() {
                return Err((GroupError::UnknownMemberId, j.member_id));
            }
            j.member_id.clone()
        };
        if self.members.get(&member_id).is_some_and(|m| m.classic.is_none()) {
            return Err((GroupError::InconsistentGroupProtocol, member_id));
        }
        let m = self.members.entry(member_id.clone()).or_insert_with(|| Member {
            epoch: 0,
            instance_id: j.instance_id.clone(),
            rack_id: None,
            client_id: j.client_id.clone(),
            client_host: j.client_host.clone(),
            rebalance_timeout_ms: j.rebalance_timeout_ms,
            names: Vec::new(),
            regex: String::new(),
            subscribed: Vec::new(),
            assigned: BTreeSet::new(),
            owned: BTreeSet::new(),
            session_deadline_ms: 0,
            revoke_deadline_ms: None,
            classic: None,
        });
        let mut subs = j.topics;
        subs.sort();
        subs.dedup();
        m.names = subs;
        m.regex.clear();
        m.instance_id = j.instance_id;
        m.rebalance_timeout_ms = j.rebalance_timeout_ms;
        m.session_deadline_ms = now + i64::from(j.session_timeout_ms);
        m.classic = Some(Classic { session_timeout_ms: j.session_timeout_ms, protocols: j.protocols });
        // Rejoining, it owns what it says (an eager member revoked everything first); what it
        // claims counts only where it was given it: nothing held by another member is taken.
        m.owned = j.owned.into_iter().collect();
        let kept: BTreeSet<TopicPartition> = m.assigned.intersection(&m.owned).copied().collect();
        m.assigned = kept;
        m.revoke_deadline_ms = None;
        let changed = self.resolve_subscriptions(names, &member_id);
        if changed || self.topology_changed(topics) {
            self.bump(topics);
        }
        self.reconcile(&member_id, now);
        let epoch = self.members[&member_id].epoch;
        Ok((member_id, epoch, protocol))
    }

    /// The classic member named, checked as Kafka checks SyncGroup and Heartbeat: known,
    /// classic, holding its instance id, at its generation.
    fn classic_member(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<&mut Member, GroupError> {
        let m = self.members.get_mut(member_id).ok_or(GroupError::UnknownMemberId)?;
        if instance_id.is_some_and(|i| m.instance_id.as_deref() != Some(i)) {
            return Err(GroupError::FencedInstanceId);
        }
        let Some(classic) = &m.classic else { return Err(GroupError::UnknownMemberId) };
        if generation != m.epoch {
            return Err(GroupError::IllegalGeneration);
        }
        m.session_deadline_ms = now + i64::from(classic.session_timeout_ms);
        Ok(m)
    }

    /// Whether a member holds anything its target no longer has.
    fn revoking(&self, member_id: &str) -> bool {
        let empty = BTreeSet::new();
        let target = self.target.get(member_id).unwrap_or(&empty);
        self.members.get(member_id).is_some_and(|m| m.owned.iter().chain(&m.assigned).any(|p| !target.contains(p)))
    }

    /// A classic member's SyncGroup: its partitions (what it may have of its target now), the
    /// protocol it speaks and that protocol's metadata (the assignment's version follows it).
    pub(crate) fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(Vec<TopicPartition>, String, Bytes), GroupError> {
        let revoking = self.revoking(member_id);
        let assignment_epoch = self.assignment_epoch;
        let m = self.classic_member(member_id, instance_id, generation, now)?;
        if assignment_epoch > m.epoch && !revoking {
            let deadline = now + i64::from(m.rebalance_timeout_ms.max(0));
            m.revoke_deadline_ms.get_or_insert(deadline);
            return Err(GroupError::RebalanceInProgress);
        }
        let assigned: Vec<TopicPartition> = m.assigned.iter().copied().collect();
        m.owned.extend(assigned.iter().copied());
        let (name, metadata) =
            m.classic.as_ref().and_then(|c| c.protocols.first().cloned()).expect("a classic member has a protocol");
        Ok((assigned, name, metadata))
    }

    /// A classic member's Heartbeat: REBALANCE_IN_PROGRESS when it must rejoin to move
    /// towards its target (behind the group epoch, holding what it should give up, or a
    /// partition of its target is free now); it then has its rebalance timeout to rejoin.
    pub(crate) fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        let revoking = self.revoking(member_id);
        let held_by_others: BTreeSet<TopicPartition> = self
            .members
            .iter()
            .filter(|(id, _)| *id != member_id)
            .flat_map(|(_, m)| m.assigned.iter().chain(m.owned.iter()).copied())
            .collect();
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let epoch = self.epoch;
        let m = self.classic_member(member_id, instance_id, generation, now)?;
        let claimable = target.iter().any(|p| !m.assigned.contains(p) && !held_by_others.contains(p));
        if m.epoch < epoch || revoking || claimable {
            let deadline = now + i64::from(m.rebalance_timeout_ms.max(0));
            m.revoke_deadline_ms.get_or_insert(deadline);
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Classic LeaveGroup (by member id, or by instance id alone): one result per member.
    pub(crate) fn classic_leave(
        &mut self,
        members: &[(String, Option<String>)],
        topics: TopicLookup<'_>,
    ) -> Vec<Result<(), GroupError>> {
        let mut removed = false;
        let results = members
            .iter()
            .map(|(member_id, instance_id)| {
                let holder = instance_id.as_deref().and_then(|inst| {
                    self.members.iter().find(|(_, m)| m.instance_id.as_deref() == Some(inst)).map(|(id, _)| id.clone())
                });
                let id = match holder {
                    Some(h) if member_id.is_empty() || *member_id == h => h,
                    Some(_) => return Err(GroupError::FencedInstanceId),
                    None if instance_id.is_some() => return Err(GroupError::UnknownMemberId),
                    None if self.members.contains_key(member_id) => member_id.clone(),
                    None => return Err(GroupError::UnknownMemberId),
                };
                if self.members.get(&id).is_some_and(|m| m.classic.is_none()) {
                    // A KIP-848 member leaves with its own heartbeat (epoch -1).
                    return Err(GroupError::UnknownMemberId);
                }
                self.members.remove(&id);
                self.target.remove(&id);
                removed = true;
                Ok(())
            })
            .collect();
        if removed {
            self.bump(topics);
        }
        results
    }

    /// The group as classic DescribeGroups shows it (Kafka answers it for KIP-848 groups too):
    /// protocol type `consumer`, the assignor as the protocol, the group epoch as the
    /// generation, and each member's subscription and assignment in the consumer protocol.
    pub(crate) fn classic_view(
        &self,
        group_id: &str,
        codec: Option<&dyn ConsumerProtocol>,
        name_of: &dyn Fn(&[u8; 16]) -> Option<String>,
    ) -> super::GroupInfo {
        let members = self
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = match (&m.classic, codec) {
                    (Some(c), _) => c.protocols.first().map(|(_, md)| md.clone()).unwrap_or_default(),
                    (None, Some(codec)) => codec.encode_subscription(&m.subscribed),
                    (None, None) => Bytes::new(),
                };
                let named: Vec<(String, i32)> =
                    m.assigned.iter().filter_map(|(t, p)| name_of(t).map(|n| (n, *p))).collect();
                super::MemberInfo {
                    member_id: id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    assignment: codec.map(|c| c.encode_assignment(&metadata, &named)).unwrap_or_default(),
                    metadata,
                }
            })
            .collect();
        super::GroupInfo {
            group_id: group_id.to_owned(),
            state: self.state(),
            protocol_type: "consumer".to_owned(),
            protocol: self.assignor.name().to_owned(),
            generation: self.epoch,
            members,
        }
    }

    pub(crate) fn info(&self, group_id: &str) -> ConsumerGroupInfo {
        ConsumerGroupInfo {
            group_id: group_id.to_owned(),
            state: self.state(),
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.name(),
            members: self
                .members
                .iter()
                .map(|(id, m)| ConsumerMemberInfo {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topics: m.names.clone(),
                    subscribed_regex: m.regex.clone(),
                    assignment: m.assigned.iter().copied().collect(),
                    target: self.target.get(id).map(|t| t.iter().copied().collect()).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// The target assignment: every subscribed partition to exactly one subscribed member.
/// Uniform keeps a member's current target partitions up to its fair share and spreads
/// the rest to the members with the fewest; range gives each member a contiguous range of
/// each topic, as the classic range assignor does.
fn compute_target(
    assignor: Assignor,
    members: &BTreeMap<String, Member>,
    topology: &[(String, [u8; 16], i32)],
    previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> =
        members.keys().map(|id| (id.clone(), BTreeSet::new())).collect();
    for (name, id, count) in topology {
        let subscribers: Vec<&String> =
            members.iter().filter(|(_, m)| m.subscribed.contains(name)).map(|(k, _)| k).collect();
        if subscribers.is_empty() {
            continue;
        }
        let partitions: Vec<TopicPartition> = (0..*count).map(|p| (*id, p)).collect();
        match assignor {
            Assignor::Range => {
                let n = subscribers.len();
                let per = partitions.len() / n;
                let extra = partitions.len() % n;
                let mut at = 0;
                for (i, m) in subscribers.iter().enumerate() {
                    let take = per + usize::from(i < extra);
                    out.get_mut(*m).expect("every member has an entry").extend(&partitions[at..at + take]);
                    at += take;
                }
            }
            Assignor::Uniform => {
                // Each member gets the floor or the ceiling of an even share (exactly
                // `len % n` get the ceiling), keeping what it had where it can.
                let n = subscribers.len();
                let quota_min = partitions.len() / n;
                let mut ceilings_left = partitions.len() % n;
                let mut counts: BTreeMap<&String, usize> = subscribers.iter().map(|m| (*m, 0)).collect();
                let mut free: Vec<TopicPartition> = Vec::new();
                for p in &partitions {
                    let keeper = subscribers.iter().find(|m| {
                        let c = counts[*m];
                        previous.get(**m).is_some_and(|t| t.contains(p))
                            && (c < quota_min || (c == quota_min && ceilings_left > 0))
                    });
                    match keeper {
                        Some(m) => {
                            let c = counts.get_mut(*m).expect("subscriber");
                            if *c == quota_min {
                                ceilings_left -= 1;
                            }
                            *c += 1;
                            out.get_mut(*m).expect("every member has an entry").insert(*p);
                        }
                        None => free.push(*p),
                    }
                }
                for p in free {
                    let m = *subscribers.iter().min_by_key(|m| (counts[**m], (**m).clone())).expect("non-empty");
                    *counts.get_mut(m).expect("subscriber") += 1;
                    out.get_mut(m).expect("every member has an entry").insert(p);
                }
            }
        }
    }
    out
}
