//! The classic group coordinator's liveness rules, driven by a manual clock: sessions expire
//! in every state, a rebalance ends as soon as every live member rejoined, static members
//! come back without a rebalance, LeaveGroup removes several members at once.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use weir_broker::group::{Coordinator, GroupError, JoinRequest, JoinResponse, SyncResponse};
use weir_broker::{Broker, BrokerConfig};
use weir_log::{FsStorage, ManualClock};

const SESSION_MS: i32 = 6_000;
const REBALANCE_MS: i32 = 300_000;

struct Env {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    broker: Broker,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig { data_dir: dir.path().to_owned(), ..BrokerConfig::default() };
        config.group.initial_rebalance_delay_ms = 0;
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let broker = Broker::open(config, Arc::new(FsStorage), clock.clone()).unwrap();
        Env { _dir: dir, clock, broker }
    }

    fn groups(&self) -> &Coordinator {
        self.broker.groups()
    }

    fn advance(&self, ms: i64) {
        self.clock.advance(ms);
        self.groups().tick();
    }

    /// Sends a JoinGroup; the answer lands in the returned slot (now or later).
    fn join(&self, member_id: &str, instance: Option<&str>) -> Slot<JoinResponse> {
        self.join_with(member_id, instance, b"meta")
    }

    fn join_with(&self, member_id: &str, instance: Option<&str>, metadata: &'static [u8]) -> Slot<JoinResponse> {
        let slot = Slot::default();
        let s = slot.clone();
        self.groups().join(
            JoinRequest {
                group_id: "g".into(),
                member_id: member_id.into(),
                group_instance_id: instance.map(str::to_owned),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: SESSION_MS,
                rebalance_timeout_ms: REBALANCE_MS,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::from_static(metadata))],
                require_known_member: false,
            },
            Box::new(move |r| s.put(r)),
        );
        slot
    }

    fn sync(&self, generation: i32, member_id: &str, assignments: &[(&str, &'static [u8])]) -> Slot<SyncResponse> {
        let slot = Slot::default();
        let s = slot.clone();
        let given = assignments.iter().map(|(m, a)| (m.to_string(), Bytes::from_static(a))).collect();
        self.groups().sync("g", generation, member_id, given, Box::new(move |r| s.put(r)));
        slot
    }

    fn heartbeat(&self, generation: i32, member_id: &str) -> Result<(), GroupError> {
        self.groups().heartbeat("g", generation, member_id, None)
    }

    fn state(&self) -> &'static str {
        self.groups().describe("g").unwrap().state
    }

    /// One member joins an empty group and becomes Stable with `assignment`.
    fn stable_single(&self, instance: Option<&str>, assignment: &'static [u8]) -> (String, i32) {
        let j = self.join("", instance).take().unwrap();
        assert_eq!(j.error, None);
        let s = self.sync(j.generation_id, &j.member_id, &[(&j.member_id, assignment)]).take().unwrap();
        assert_eq!(s.error, None);
        (j.member_id, j.generation_id)
    }
}

#[derive(Clone)]
struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot(Arc::new(Mutex::new(None)))
    }
}

impl<T> Slot<T> {
    fn put(&self, v: T) {
        *self.0.lock().unwrap() = Some(v);
    }
    fn take(&self) -> Option<T> {
        self.0.lock().unwrap().take()
    }
    fn is_set(&self) -> bool {
        self.0.lock().unwrap().is_some()
    }
}

#[test]
fn a_dead_member_is_removed_at_its_session_deadline_during_preparing_rebalance() {
    let env = Env::new();
    let (dead, _) = env.stable_single(None, b"a0");
    // The member dies right after a heartbeat; a new member joins one second later.
    env.advance(1_000);
    let fresh = env.join("", None);
    assert_eq!(env.state(), "PreparingRebalance");
    assert!(!fresh.is_set(), "the join waits for the old member to rejoin or expire");
    // Not at 4.9 s after the last heartbeat...
    env.advance(SESSION_MS as i64 - 1_000 - 100);
    assert!(!fresh.is_set());
    // ...but at the session deadline (6 s), not at the 300 s rebalance timeout.
    env.advance(100);
    let j = fresh.take().expect("new member answered at the dead member's session deadline");
    assert_eq!(j.error, None);
    assert_eq!(j.leader, j.member_id, "the new member leads");
    assert_eq!(j.members.len(), 1);
    assert_eq!(env.heartbeat(j.generation_id, &dead), Err(GroupError::UnknownMemberId));
}

#[test]
fn heartbeats_keep_a_member_alive_while_others_rejoin_and_the_rebalance_ends_when_all_rejoined() {
    let env = Env::new();
    let (a, g1) = env.stable_single(None, b"a0");
    let b = env.join("", None);
    // a keeps heartbeating through the rebalance: REBALANCE_IN_PROGRESS, but alive.
    for _ in 0..20 {
        env.advance(1_000);
        assert_eq!(env.heartbeat(g1, &a), Err(GroupError::RebalanceInProgress));
    }
    assert!(!b.is_set(), "still waiting for a to rejoin");
    assert_eq!(env.groups().describe("g").unwrap().members.len(), 2, "a was not expired");
    // a rejoins: the join phase ends at once (no waiting for the rebalance timeout).
    let ja = env.join(&a, None).take().expect("a answered at once");
    let jb = b.take().expect("b answered at once");
    assert_eq!((ja.error, jb.error), (None, None));
    assert_eq!(ja.generation_id, g1 + 1);
    assert_eq!(ja.leader, a, "the oldest member stays leader");
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty(), "only the leader gets the member list");
}

#[test]
fn a_member_that_neither_heartbeats_nor_rejoins_is_removed_while_others_wait_in_join() {
    let env = Env::new();
    let (a, g1) = env.stable_single(None, b"a0");
    let b = env.join("", None);
    let jb = b.take();
    assert!(jb.is_none());
    // b waits in JoinGroup (no heartbeat needed); a is silent and expires.
    env.advance(SESSION_MS as i64);
    let jb = b.take().unwrap();
    assert_eq!(jb.error, None);
    assert_eq!(jb.generation_id, g1 + 1);
    assert_eq!(env.heartbeat(g1, &a), Err(GroupError::UnknownMemberId));
}

#[test]
fn a_static_member_restarting_within_its_session_gets_its_assignment_back_without_a_rebalance() {
    let env = Env::new();
    let ja = env.join("", Some("a")).take().unwrap();
    let a = ja.member_id.clone();
    let b = env.join("", Some("b"));
    let ja = env.join(&a, Some("a")).take().unwrap();
    let jb = b.take().unwrap();
    let generation = ja.generation_id;
    assert_eq!(ja.leader, a);
    let sb = env.sync(generation, &jb.member_id, &[]);
    let sa = env.sync(generation, &a, &[(&a, b"a-parts"), (&jb.member_id, b"b-parts")]).take().unwrap();
    assert_eq!(&sa.assignment[..], b"a-parts");
    assert_eq!(&sb.take().unwrap().assignment[..], b"b-parts");

    // "b" crashes and restarts 2 s later under a new member id, same instance id.
    env.advance(2_000);
    assert_eq!(env.heartbeat(generation, &a), Ok(()));
    let again = env.join("", Some("b")).take().expect("answered at once, no rebalance");
    assert_eq!(again.error, None);
    assert_ne!(again.member_id, jb.member_id, "a new member id");
    assert_eq!(again.generation_id, generation, "same generation: no rebalance");
    assert_ne!(again.leader, again.member_id, "the restarted member does not assign");
    assert_eq!(env.state(), "Stable");
    let s = env.sync(generation, &again.member_id, &[]).take().unwrap();
    assert_eq!((s.error, &s.assignment[..]), (None, &b"b-parts"[..]), "its old assignment");
    // The other member never hears of a rebalance.
    assert_eq!(env.heartbeat(generation, &a), Ok(()));
    // The old incarnation is fenced.
    assert_eq!(env.heartbeat(generation, &jb.member_id), Err(GroupError::UnknownMemberId));
    assert_eq!(env.groups().heartbeat("g", generation, &jb.member_id, Some("b")), Err(GroupError::FencedInstanceId));
    let info = env.groups().describe("g").unwrap();
    assert_eq!(info.members.len(), 2);
    assert_eq!(info.generation, generation);
}

#[test]
fn a_static_member_rejoining_with_a_new_protocol_triggers_a_rebalance() {
    let env = Env::new();
    let j = env.join("", Some("a")).take().unwrap();
    env.sync(j.generation_id, &j.member_id, &[(&j.member_id, b"x")]).take().unwrap();
    let slot = env.groups();
    let answer = Slot::default();
    let s = answer.clone();
    slot.join(
        JoinRequest {
            group_id: "g".into(),
            member_id: String::new(),
            group_instance_id: Some("a".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: vec![("roundrobin".into(), Bytes::new()), ("range".into(), Bytes::new())],
            require_known_member: false,
        },
        Box::new(move |r: JoinResponse| s.put(r)),
    );
    let r: JoinResponse = answer.take().expect("the only member: the new generation completes at once");
    assert_eq!(r.generation_id, j.generation_id + 1);
    assert_eq!(r.protocol_name, "roundrobin");
}

#[test]
fn a_retried_join_with_unchanged_metadata_does_not_rebalance_a_stable_group() {
    let env = Env::new();
    let ja = env.join("", None).take().unwrap();
    let b = env.join("", None);
    let ja = env.join(&ja.member_id, None).take().unwrap();
    let jb = b.take().unwrap();
    let g = ja.generation_id;
    let sb = env.sync(g, &jb.member_id, &[]);
    env.sync(g, &ja.member_id, &[(&ja.member_id, b"1"), (&jb.member_id, b"2")]).take().unwrap();
    sb.take().unwrap();
    // The follower's JoinGroup is retried (lost response): same generation, no rebalance.
    let again = env.join(&jb.member_id, None).take().unwrap();
    assert_eq!((again.error, again.generation_id), (None, g));
    assert_eq!(env.state(), "Stable");
    // With new metadata it rebalances.
    let changed = env.join_with(&jb.member_id, None, b"other");
    assert!(!changed.is_set());
    assert_eq!(env.state(), "PreparingRebalance");
}

#[test]
fn leave_group_removes_several_members_at_once_by_member_or_instance_id() {
    let env = Env::new();
    let a = env.join("", None).take().unwrap().member_id;
    let b = env.join("", Some("b"));
    let c = env.join("", Some("c"));
    let ja = env.join(&a, None).take().unwrap();
    let (jb, jc) = (b.take().unwrap(), c.take().unwrap());
    assert_eq!(ja.members.len(), 3);
    let results = env.groups().leave(
        "g",
        &[
            (a.clone(), None),
            (String::new(), Some("b".into())),
            ("someone-else".into(), Some("c".into())),
            ("nobody".into(), None),
        ],
    );
    assert_eq!(results, vec![Ok(()), Ok(()), Err(GroupError::FencedInstanceId), Err(GroupError::UnknownMemberId)]);
    let left: Vec<String> = env.groups().describe("g").unwrap().members.into_iter().map(|m| m.member_id).collect();
    assert_eq!(left, vec![jc.member_id.clone()]);
    assert_ne!(jb.member_id, jc.member_id);
    assert_eq!(env.groups().leave("g", &[(jc.member_id, Some("c".into()))]), vec![Ok(())]);
    assert_eq!(env.state(), "Empty");
}

#[test]
fn a_member_that_never_sends_sync_group_is_removed_at_the_rebalance_timeout() {
    let env = Env::new();
    let a = env.join("", None).take().unwrap().member_id;
    let b = env.join("", None);
    let ja = env.join(&a, None).take().unwrap();
    let jb = b.take().unwrap();
    env.sync(ja.generation_id, &a, &[(&a, b"1"), (&jb.member_id, b"2")]).take().unwrap();
    // b keeps heartbeating but never syncs.
    for _ in 0..(REBALANCE_MS / 3_000) {
        env.advance(3_000);
        assert_eq!(
            env.heartbeat(ja.generation_id, &a),
            if env.state() == "Stable" { Ok(()) } else { Err(GroupError::RebalanceInProgress) }
        );
        let _ = env.heartbeat(ja.generation_id, &jb.member_id);
    }
    env.advance(3_000);
    let members: Vec<String> = env.groups().describe("g").unwrap().members.into_iter().map(|m| m.member_id).collect();
    assert_eq!(members, vec![a.clone()], "b was removed for not syncing");
}

#[test]
fn sync_group_checks_the_instance_id_and_the_protocol_it_names() {
    use weir_broker::group::SyncIdentity;
    let env = Env::new();
    let (a, g) = env.stable_single(Some("inst-a"), b"x");
    let sync = |who: SyncIdentity| {
        let slot = Slot::default();
        let s = slot.clone();
        env.groups().sync_as("g", g, &a, &who, Vec::new(), Box::new(move |r| s.put(r)));
        slot.take().unwrap().error
    };
    let named = |name: &str| SyncIdentity { protocol_name: Some(name.into()), ..SyncIdentity::default() };
    assert_eq!(sync(named("range")), None);
    assert_eq!(sync(named("roundrobin")), Some(GroupError::InconsistentGroupProtocol));
    let typed = SyncIdentity { protocol_type: Some("connect".into()), ..SyncIdentity::default() };
    assert_eq!(sync(typed), Some(GroupError::InconsistentGroupProtocol));
    let static_a = SyncIdentity { instance_id: Some("inst-a".into()), ..SyncIdentity::default() };
    assert_eq!(sync(static_a), None);
    // Another member claiming a's instance id is fenced.
    let joining = env.join("", None);
    let ja = env.join(&a, Some("inst-a")).take().unwrap();
    assert_eq!(ja.error, None);
    let j = joining.take().unwrap();
    let slot = Slot::default();
    let s = slot.clone();
    let who = SyncIdentity { instance_id: Some("inst-a".into()), ..SyncIdentity::default() };
    env.groups().sync_as("g", j.generation_id, &j.member_id, &who, Vec::new(), Box::new(move |r| s.put(r)));
    assert_eq!(slot.take().map(|r| r.error), Some(Some(GroupError::FencedInstanceId)));
}

mod kip848 {
    use super::*;
    use weir_broker::group::consumer::{HeartbeatRequest, HeartbeatResponse};
    use weir_broker::NewTopic;

    fn hb(
        env: &Env,
        member: &str,
        epoch: i32,
        owned: Option<Vec<([u8; 16], i32)>>,
    ) -> Result<HeartbeatResponse, GroupError> {
        env.broker.consumer_heartbeat(HeartbeatRequest {
            group_id: "k".into(),
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 30_000,
            subscribed_topics: (epoch == 0).then(|| vec!["t6".to_owned()]),
            subscribed_regex: None,
            server_assignor: None,
            owned,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        })
    }

    #[test]
    fn partitions_move_only_after_their_owner_revoked_them_and_dead_members_expire() {
        let env = Env::new();
        env.broker
            .create_topic(&NewTopic { name: "t6".into(), partitions: Some(6), ..NewTopic::default() }, false)
            .unwrap();
        let r1 = hb(&env, "m1", 0, None).unwrap();
        let a1 = r1.assignment.clone().unwrap();
        assert_eq!(a1.len(), 6, "alone: everything");
        let e1 = r1.member_epoch;
        assert!(e1 > 0);
        // m2 joins: its share is still owned by m1, so it gets nothing yet.
        let r2 = hb(&env, "m2", 0, None).unwrap();
        assert_eq!(r2.assignment.as_deref(), Some(&[][..]));
        let e2 = r2.member_epoch;
        assert!(e2 > e1);
        // m1 is told to give up three; its epoch waits until it has.
        let r1 = hb(&env, "m1", e1, None).unwrap();
        let kept = r1.assignment.clone().unwrap();
        assert_eq!((kept.len(), r1.member_epoch), (3, e1), "revoke three, epoch unchanged until acknowledged");
        assert_eq!(hb(&env, "m2", e2, None).unwrap().assignment, None, "still held by m1");
        // m1 acknowledges: now at the group epoch, and m2 gets the other three.
        let r1 = hb(&env, "m1", e1, Some(kept.clone())).unwrap();
        assert_eq!(r1.member_epoch, e2);
        let got = hb(&env, "m2", e2, None).unwrap().assignment.unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|p| !kept.contains(p)), "disjoint");
        assert_eq!(hb(&env, "m2", e2 + 5, None), Err(GroupError::FencedMemberEpoch));
        assert_eq!(hb(&env, "nobody", 3, None), Err(GroupError::UnknownMemberId));
        let info = env.groups().consumer_describe("k").unwrap();
        assert_eq!((info.members.len(), info.state), (2, "Stable"));
        // m1 dies: after the session timeout m2 gets everything.
        env.advance(45_000);
        env.advance(1);
        let r2 = hb(&env, "m2", e2, Some(got.clone())).unwrap_err();
        assert_eq!(r2, GroupError::UnknownMemberId, "m2 did not heartbeat either: expired too");
        let r2 = hb(&env, "m2", 0, None).unwrap();
        assert_eq!(r2.assignment.unwrap().len(), 6);
        // A classic member cannot join the group while it has members; the reverse neither.
        let j = env.groups();
        let slot = Slot::default();
        let s = slot.clone();
        j.join(
            JoinRequest {
                group_id: "k".into(),
                member_id: String::new(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: SESSION_MS,
                rebalance_timeout_ms: REBALANCE_MS,
                protocol_type: "consumer".into(),
                protocols: vec![("range".into(), Bytes::new())],
                require_known_member: false,
            },
            Box::new(move |r| s.put(r)),
        );
        assert_eq!(slot.take().unwrap().error, Some(GroupError::InconsistentGroupProtocol));
        env.stable_single(None, b"x");
        let err = env.broker.consumer_heartbeat(HeartbeatRequest {
            group_id: "g".into(),
            member_id: "m".into(),
            member_epoch: 0,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 1000,
            subscribed_topics: Some(vec![]),
            subscribed_regex: None,
            server_assignor: None,
            owned: None,
            client_id: "c".into(),
            client_host: "h".into(),
        });
        assert_eq!(err, Err(GroupError::GroupIdNotFound), "a classic group with members is not a consumer group");
    }
}

mod kip848_regex {
    use super::*;
    use weir_broker::group::consumer::{HeartbeatRequest, HeartbeatResponse};
    use weir_broker::NewTopic;

    fn hb(
        env: &Env,
        member: &str,
        epoch: i32,
        names: Option<Vec<&str>>,
        regex: Option<&str>,
        owned: Option<Vec<([u8; 16], i32)>>,
    ) -> Result<HeartbeatResponse, GroupError> {
        env.broker.consumer_heartbeat(HeartbeatRequest {
            group_id: "r".into(),
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 30_000,
            subscribed_topics: names.map(|n| n.into_iter().map(str::to_owned).collect()),
            subscribed_regex: regex.map(str::to_owned),
            server_assignor: None,
            owned,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        })
    }

    fn create(env: &Env, name: &str) {
        env.broker
            .create_topic(&NewTopic { name: name.into(), partitions: Some(2), ..NewTopic::default() }, false)
            .unwrap();
    }

    fn topics_of(env: &Env, parts: &[([u8; 16], i32)]) -> Vec<String> {
        let mut names: Vec<String> =
            parts.iter().map(|(id, _)| env.broker.topic_by_id(id).unwrap().name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn a_regex_subscription_follows_topics_created_and_deleted() {
        let env = Env::new();
        for t in ["orders-a", "orders-b", "orders", "payments"] {
            create(&env, t);
        }
        // Whole-name matches (Kafka's RE2/J matches()): "orders" alone is not "orders-.*".
        let r = hb(&env, "m", 0, Some(vec![]), Some("orders-.*"), None).unwrap();
        let parts = r.assignment.clone().unwrap();
        assert_eq!(topics_of(&env, &parts), ["orders-a", "orders-b"]);
        let e1 = r.member_epoch;
        // Nothing changed: the next heartbeat keeps the epoch and sends no assignment.
        let r = hb(&env, "m", e1, None, None, Some(parts.clone())).unwrap();
        assert_eq!((r.member_epoch, r.assignment), (e1, None));
        // A topic created that matches joins the subscription at the next heartbeat.
        create(&env, "orders-c");
        create(&env, "invoices");
        let r = hb(&env, "m", e1, None, None, Some(parts)).unwrap();
        let parts = r.assignment.clone().unwrap();
        assert_eq!(topics_of(&env, &parts), ["orders-a", "orders-b", "orders-c"]);
        assert!(r.member_epoch > e1, "a new group epoch");
        let e2 = r.member_epoch;
        // Names and a regex together: the union (as Kafka does; librdkafka sends both).
        let r = hb(&env, "m", e2, Some(vec!["payments"]), Some("orders-.*"), Some(parts)).unwrap();
        let parts = r.assignment.clone().unwrap();
        assert_eq!(topics_of(&env, &parts), ["orders-a", "orders-b", "orders-c", "payments"]);
        let e3 = r.member_epoch;
        // Describe shows the names and the regex as sent, not the regex's matches.
        let info = env.groups().consumer_describe("r").unwrap();
        assert_eq!(info.members[0].subscribed_topics, ["payments"]);
        assert_eq!(info.members[0].subscribed_regex, "orders-.*");
        // A deleted topic leaves it.
        env.broker.delete_topic("orders-b").unwrap();
        let r = hb(&env, "m", e3, None, None, Some(parts)).unwrap();
        let parts = r.assignment.clone().unwrap();
        assert_eq!(topics_of(&env, &parts), ["orders-a", "orders-c", "payments"]);
        let e4 = r.member_epoch;
        // An invalid regex is refused and changes nothing; an empty one clears the regex.
        assert_eq!(
            hb(&env, "m", e4, None, Some("orders-("), Some(parts.clone())),
            Err(GroupError::InvalidRegularExpression)
        );
        assert_eq!(env.groups().consumer_describe("r").unwrap().members[0].subscribed_regex, "orders-.*");
        assert_eq!(hb(&env, "m2", 0, Some(vec![]), Some("(x"), None), Err(GroupError::InvalidRegularExpression));
        assert_eq!(env.groups().consumer_describe("r").unwrap().members.len(), 1, "the bad joiner was not added");
        let r = hb(&env, "m", e4, None, Some(""), Some(parts)).unwrap();
        assert_eq!(topics_of(&env, &r.assignment.unwrap()), ["payments"]);
        // A pattern that only anchoring would make valid is refused as it is.
        assert_eq!(hb(&env, "m3", 0, Some(vec![]), Some("a)|(b"), None), Err(GroupError::InvalidRegularExpression));
        // `.*` is every topic but the internal offsets store.
        let r = hb(&env, "m4", 0, Some(vec![]), Some(".*"), None).unwrap();
        assert!(r.member_epoch > 0);
        let info = env.groups().consumer_describe("r").unwrap();
        let m4 = info.members.iter().find(|x| x.member_id == "m4").unwrap();
        let names = topics_of(&env, &m4.target);
        assert!(!names.is_empty() && !names.iter().any(|n| n.starts_with("__")), "{names:?}");
    }

    #[test]
    fn two_members_share_one_regexs_partitions() {
        let env = Env::new();
        create(&env, "ev-1");
        create(&env, "ev-2");
        let a = hb(&env, "a", 0, Some(vec![]), Some("ev-[0-9]+"), None).unwrap();
        let b = hb(&env, "b", 0, Some(vec![]), Some("ev-[0-9]+"), None).unwrap();
        // a revokes half; then b gets it.
        let a = hb(&env, "a", a.member_epoch, None, None, a.assignment).unwrap();
        let kept = a.assignment.clone().unwrap();
        assert_eq!(kept.len(), 2);
        hb(&env, "a", a.member_epoch, None, None, Some(kept.clone())).unwrap();
        let got = hb(&env, "b", b.member_epoch, None, None, None).unwrap().assignment.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|p| !kept.contains(p)));
    }
}

mod kip848_migration {
    use super::*;
    use weir_broker::group::consumer::{ConsumerProtocol, HeartbeatRequest, HeartbeatResponse};
    use weir_broker::NewTopic;

    /// A stand-in for the consumer embedded protocol (the real one is weir-server's):
    /// subscriptions are `topic,topic|topic/p,topic/p` (topics, then owned partitions),
    /// assignments `topic/p,topic/p`, and an assignment starting with `!` carries user data.
    struct TextCodec;

    fn parts(text: &str) -> Vec<(String, i32)> {
        text.split(',')
            .filter(|x| !x.is_empty())
            .map(|x| {
                let (t, p) = x.split_once('/').unwrap();
                (t.to_owned(), p.parse().unwrap())
            })
            .collect()
    }

    impl ConsumerProtocol for TextCodec {
        fn subscription(&self, metadata: &[u8]) -> Result<(Vec<String>, Vec<(String, i32)>), String> {
            let text = std::str::from_utf8(metadata).map_err(|e| e.to_string())?;
            let (topics, owned) = text.split_once('|').ok_or("no |")?;
            Ok((topics.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(), parts(owned)))
        }
        fn assignment(&self, assignment: &[u8]) -> Result<Vec<(String, i32)>, String> {
            let text = std::str::from_utf8(assignment).map_err(|e| e.to_string())?;
            if text.starts_with('!') {
                return Err("user data".into());
            }
            Ok(parts(text))
        }
        fn encode_assignment(&self, _metadata: &[u8], partitions: &[(String, i32)]) -> Bytes {
            let text: Vec<String> = partitions.iter().map(|(t, p)| format!("{t}/{p}")).collect();
            Bytes::from(text.join(","))
        }
        fn encode_subscription(&self, topics: &[String]) -> Bytes {
            Bytes::from(format!("{}|", topics.join(",")))
        }
    }

    fn hb(
        env: &Env,
        group: &str,
        member: &str,
        epoch: i32,
        owned: Option<Vec<([u8; 16], i32)>>,
    ) -> Result<HeartbeatResponse, GroupError> {
        env.broker.consumer_heartbeat(HeartbeatRequest {
            group_id: group.into(),
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 30_000,
            subscribed_topics: (epoch == 0).then(|| vec!["t6".to_owned()]),
            subscribed_regex: None,
            server_assignor: None,
            owned,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        })
    }

    fn assigned(bytes: &Bytes) -> Vec<i32> {
        let mut ps: Vec<i32> = TextCodec
            .assignment(bytes)
            .unwrap()
            .into_iter()
            .map(|(t, p)| {
                assert_eq!(t, "t6");
                p
            })
            .collect();
        ps.sort();
        ps
    }

    #[test]
    fn a_kip848_member_upgrades_a_classic_group_and_its_classic_member_is_assigned_by_the_broker() {
        let env = Env::new();
        env.broker
            .create_topic(&NewTopic { name: "t6".into(), partitions: Some(6), ..NewTopic::default() }, false)
            .unwrap();
        env.groups().set_consumer_protocol(Arc::new(TextCodec));
        // A classic member alone owns all six partitions.
        let j = env.join_with("", None, b"t6|").take().unwrap();
        let (a, g1) = (j.member_id.clone(), j.generation_id);
        let all: &'static [u8] = b"t6/0,t6/1,t6/2,t6/3,t6/4,t6/5";
        assert_eq!(env.sync(g1, &a, &[(&a, all)]).take().unwrap().error, None);
        // A KIP-848 member joins: the group is upgraded; A still holds everything.
        let m = hb(&env, "g", "m", 0, None).unwrap();
        assert_eq!(m.assignment.as_deref(), Some(&[][..]), "all partitions are still A's");
        assert!(m.member_epoch > g1);
        assert_eq!(env.groups().consumer_describe("g").unwrap().members.len(), 2);
        // A is told to rejoin; a wrong generation is refused; commits need its epoch.
        assert_eq!(env.heartbeat(g1, &a), Err(GroupError::RebalanceInProgress));
        assert_eq!(env.heartbeat(g1 + 7, &a), Err(GroupError::IllegalGeneration));
        let known = |_: &str, _: i32| true;
        let offsets = || vec![("t6".to_owned(), 0, 5, -1, None)];
        assert_eq!(
            env.groups().commit("g", g1 + 1, &a, offsets(), &known).map(|_| ()),
            Err(GroupError::IllegalGeneration)
        );
        assert!(env.groups().commit("g", g1, &a, offsets(), &known).is_ok(), "still at its generation");
        // A rejoins (eager: it revoked everything): answered at once, no leader, its
        // partitions in SyncGroup.
        let j = env.join_with(&a, None, b"t6|").take().unwrap();
        assert_eq!((j.error, j.leader.as_str(), j.members.len(), j.protocol_name.as_str()), (None, "", 0, "range"));
        let g2 = j.generation_id;
        assert_eq!(g2, m.member_epoch);
        assert_eq!(env.sync(g1, &a, &[]).take().unwrap().error, Some(GroupError::IllegalGeneration));
        let s = env.sync(g2, &a, &[]).take().unwrap();
        assert_eq!(s.error, None);
        let mine = assigned(&s.assignment);
        assert_eq!(mine.len(), 3);
        // m gets the other three, and A is settled.
        let got = hb(&env, "g", "m", m.member_epoch, Some(Vec::new())).unwrap().assignment.unwrap();
        let theirs: Vec<i32> = got.iter().map(|(_, p)| *p).collect();
        assert_eq!(theirs.len(), 3);
        assert!(theirs.iter().all(|p| !mine.contains(p)));
        assert_eq!(env.heartbeat(g2, &a), Ok(()));
        // DescribeGroups shows the KIP-848 group in the classic view: both members, each
        // with its subscription and partitions.
        let d = env.groups().describe("g").unwrap();
        assert_eq!((d.protocol_type.as_str(), d.protocol.as_str(), d.state), ("consumer", "uniform", "Stable"));
        let mut shown: Vec<(String, Vec<i32>)> =
            d.members.iter().map(|x| (x.member_id.clone(), assigned(&x.assignment))).collect();
        shown.sort();
        let mut want = vec![
            (a.clone(), mine.clone()),
            ("m".to_owned(), {
                let mut t = theirs.clone();
                t.sort();
                t
            }),
        ];
        want.sort();
        assert_eq!(shown, want);
        let m_meta = &d.members.iter().find(|x| x.member_id == "m").unwrap().metadata;
        assert_eq!(&m_meta[..], b"t6|");
        // A second KIP-848 member joins: A must rejoin; it does not, and is removed after its
        // rebalance timeout (m2 keeps heartbeating).
        let m2 = hb(&env, "g", "m2", 0, None).unwrap();
        assert_eq!(env.heartbeat(g2, &a), Err(GroupError::RebalanceInProgress));
        // Each KIP-848 member reports owning what it was last given (revoking at once).
        let mut live = [("m2", m2.member_epoch, m2.assignment.unwrap_or_default()), ("m", m.member_epoch, got)];
        for _ in 0..(REBALANCE_MS / SESSION_MS + 1) {
            env.advance(i64::from(SESSION_MS) - 1);
            let _ = env.heartbeat(g2, &a);
            for (id, epoch, owned) in live.iter_mut() {
                let r = hb(&env, "g", id, *epoch, Some(owned.clone())).unwrap();
                *epoch = r.member_epoch;
                if let Some(now_owned) = r.assignment {
                    *owned = now_owned;
                }
            }
        }
        let info = env.groups().consumer_describe("g").unwrap();
        assert_eq!(info.members.len(), 2, "A never rejoined: removed");
        assert!(info.members.iter().all(|x| x.member_id != a));
    }

    #[test]
    fn the_last_kip848_member_leaving_turns_the_group_classic_again() {
        let env = Env::new();
        env.broker
            .create_topic(&NewTopic { name: "t6".into(), partitions: Some(6), ..NewTopic::default() }, false)
            .unwrap();
        env.groups().set_consumer_protocol(Arc::new(TextCodec));
        let j = env.join_with("", None, b"t6|").take().unwrap();
        let a = j.member_id.clone();
        assert_eq!(
            env.sync(j.generation_id, &a, &[(&a, b"t6/0,t6/1,t6/2,t6/3,t6/4,t6/5")]).take().unwrap().error,
            None
        );
        let m = hb(&env, "g", "m", 0, None).unwrap();
        let j = env.join_with(&a, None, b"t6|").take().unwrap();
        let s = env.sync(j.generation_id, &a, &[]).take().unwrap();
        assert_eq!(assigned(&s.assignment).len(), 3);
        // m leaves: only a classic member is left, so the group is classic again, in a
        // rebalance, A's assignment being its target (everything).
        hb(&env, "g", "m", -1, None).unwrap();
        assert!(env.groups().consumer_describe("g").is_none());
        let info = env.groups().describe("g").unwrap();
        assert_eq!(
            (info.state, info.protocol_type.as_str(), info.members.len()),
            ("PreparingRebalance", "consumer", 1)
        );
        assert_eq!(assigned(&info.members[0].assignment), [0, 1, 2, 3, 4, 5]);
        // A's next heartbeat tells it to rejoin; it does, leads, and assigns as a classic leader.
        let g = j.generation_id;
        assert_eq!(env.heartbeat(g, &a), Err(GroupError::RebalanceInProgress));
        let j = env.join_with(&a, None, b"t6|").take().unwrap();
        assert_eq!((j.error, j.leader.as_str(), j.members.len()), (None, a.as_str(), 1));
        assert!(j.generation_id > g && j.generation_id >= m.member_epoch);
        let s = env.sync(j.generation_id, &a, &[(&a, b"t6/0,t6/1,t6/2,t6/3,t6/4,t6/5")]).take().unwrap();
        assert_eq!((s.error, assigned(&s.assignment).len()), (None, 6));
        assert_eq!(env.state(), "Stable");
    }

    #[test]
    fn partitions_a_classic_joiner_claims_are_not_taken_from_their_holder() {
        let env = Env::new();
        env.broker
            .create_topic(&NewTopic { name: "t6".into(), partitions: Some(6), ..NewTopic::default() }, false)
            .unwrap();
        env.groups().set_consumer_protocol(Arc::new(TextCodec));
        let m = hb(&env, "g", "m", 0, None).unwrap();
        assert_eq!(m.assignment.as_ref().map(Vec::len), Some(6));
        // A classic member joins claiming all six: it gets none of m's until m lets them go.
        let j = env.join_with("", None, b"t6|t6/0,t6/1,t6/2,t6/3,t6/4,t6/5").take().unwrap();
        assert_eq!(j.error, None);
        let s = env.sync(j.generation_id, &j.member_id, &[]).take().unwrap();
        assert_eq!((s.error, assigned(&s.assignment)), (None, vec![]));
        // m revokes three; the joiner is told to rejoin, and then gets exactly those.
        let kept = hb(&env, "g", "m", m.member_epoch, None).unwrap().assignment.unwrap();
        assert_eq!(kept.len(), 3);
        hb(&env, "g", "m", m.member_epoch, Some(kept.clone())).unwrap();
        assert_eq!(env.heartbeat(j.generation_id, &j.member_id), Err(GroupError::RebalanceInProgress));
        let j = env.join_with(&j.member_id, None, b"t6|").take().unwrap();
        let s = env.sync(j.generation_id, &j.member_id, &[]).take().unwrap();
        let got = assigned(&s.assignment);
        assert_eq!(got.len(), 3);
        assert!(kept.iter().all(|(_, p)| !got.contains(p)), "disjoint from m's");
    }

    #[test]
    fn groups_whose_assignments_carry_user_data_or_without_a_codec_are_not_upgraded() {
        let env = Env::new();
        env.broker
            .create_topic(&NewTopic { name: "t6".into(), partitions: Some(6), ..NewTopic::default() }, false)
            .unwrap();
        let j = env.join_with("", None, b"t6|").take().unwrap();
        assert_eq!(env.sync(j.generation_id, &j.member_id, &[(&j.member_id, b"!sticky")]).take().unwrap().error, None);
        assert_eq!(hb(&env, "g", "m", 0, None), Err(GroupError::GroupIdNotFound), "no codec: no upgrade");
        env.groups().set_consumer_protocol(Arc::new(TextCodec));
        assert_eq!(hb(&env, "g", "m", 0, None), Err(GroupError::GroupIdNotFound), "user data would be lost");
        assert_eq!(env.heartbeat(j.generation_id, &j.member_id), Ok(()), "the classic group goes on");
    }
}

mod kip848_static {
    use super::*;
    use weir_broker::group::consumer::HeartbeatRequest;
    use weir_broker::NewTopic;

    fn hb(
        env: &Env,
        member: &str,
        instance: &str,
        epoch: i32,
        owned: Option<Vec<([u8; 16], i32)>>,
    ) -> (i32, Option<Vec<([u8; 16], i32)>>) {
        let r = env
            .broker
            .consumer_heartbeat(HeartbeatRequest {
                group_id: "s".into(),
                member_id: member.into(),
                member_epoch: epoch,
                instance_id: Some(instance.into()),
                rack_id: None,
                rebalance_timeout_ms: 30_000,
                subscribed_topics: (epoch == 0).then(|| vec!["t4".to_owned()]),
                subscribed_regex: None,
                server_assignor: None,
                owned,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
            })
            .unwrap();
        (r.member_epoch, r.assignment)
    }

    #[test]
    fn a_restarted_static_member_gets_its_partitions_back_and_nobody_else_moves() {
        let env = Env::new();
        env.broker
            .create_topic(&NewTopic { name: "t4".into(), partitions: Some(4), ..NewTopic::default() }, false)
            .unwrap();
        let (ea, a) = hb(&env, "a1", "a", 0, None);
        let (ea, a) = hb(&env, "a1", "a", ea, a);
        let (eb, _) = hb(&env, "b1", "b", 0, None);
        let (_, a_kept) = hb(&env, "a1", "a", ea, None);
        let a_kept = a_kept.unwrap();
        let (ea, _) = hb(&env, "a1", "a", ea, Some(a_kept.clone()));
        let (eb, b_got) = hb(&env, "b1", "b", eb, None);
        let b_got = b_got.unwrap();
        assert_eq!((a_kept.len(), b_got.len(), ea, eb), (2, 2, eb, eb));
        drop(a);
        // b leaves for a restart (-2), comes back as b2 with the same instance id.
        assert_eq!(hb(&env, "b1", "b", -2, None).0, -2);
        let (e_new, back) = hb(&env, "b2", "b", 0, None);
        assert_eq!(back.unwrap(), b_got, "its partitions back");
        assert_eq!(e_new, eb, "no new group epoch");
        assert_eq!(hb(&env, "a1", "a", ea, None), (ea, None), "a sees nothing change");
        let info = env.groups().consumer_describe("s").unwrap();
        let ids: Vec<_> = info.members.iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(ids, vec!["a1", "b2"]);
    }
}
