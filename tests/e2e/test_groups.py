"""Consumer groups with real clients: confluent-kafka, kafka-python, kcat -G."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import wait_for

HERE = os.path.dirname(__file__)


class Member:
    def __init__(self, bootstrap, group, topic, out, *extra):
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "group_consumer.py"), bootstrap, group, topic, out, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.assigned = None
        # (monotonic time, partitions) of every assignment and revocation reported.
        self.assignments = []
        self.revocations = []
        # A thread reads the member's reports: select() on a buffered pipe would miss lines.
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            fields = line.split()
            if not fields or fields[0] not in ("ASSIGNED", "REVOKED"):
                continue
            parts = sorted(int(p) for p in (fields[1] if len(fields) > 1 else "").split(",") if p)
            if fields[0] == "REVOKED":
                self.revocations.append((time.monotonic(), parts))
            else:
                self.assigned = parts
                self.assignments.append((time.monotonic(), parts))

    def poll_assignment(self):
        return self.assigned

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


def create(bootstrap, name, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result(timeout=10)


def produce(bootstrap, topic, start, count):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for i in range(start, start + count):
        p.produce(topic, key=str(i).encode(), value=f"m{i}".encode())
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def processed(out_paths):
    lines = []
    for path in out_paths:
        if os.path.exists(path):
            with open(path) as f:
                lines += [tuple(l.split()) for l in f if l.strip()]
    return lines


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    c.close()
    return {tp.partition: tp.offset for tp in tps}


@pytest.fixture
def broker(weir_factory):
    return weir_factory("--group-initial-rebalance-delay-ms", "1000")


def test_three_members_share_six_partitions_exactly_once_and_survive_a_kill(broker, tmp_path):
    topic, group = "events", "workers"
    create(broker.bootstrap, topic, 6)
    outs = [str(tmp_path / f"member{i}.txt") for i in range(3)]
    members = [Member(broker.bootstrap, group, topic, o) for o in outs]
    try:
        wait_for(lambda: all(m.poll_assignment() and len(m.poll_assignment()) == 2 for m in members),
                 timeout=60, what="three members with two partitions each")
        all_parts = sorted(p for m in members for p in m.assigned)
        assert all_parts == list(range(6))

        produce(broker.bootstrap, topic, 0, 60_000)
        wait_for(lambda: len(processed(outs)) >= 60_000, timeout=120, what="60,000 messages processed")
        values = Counter(v for _, _, v in processed(outs))
        assert len(values) == 60_000 and max(values.values()) == 1, "every message exactly once"
        wait_for(lambda: sum(committed(broker.bootstrap, group, topic, 6).values()) == 60_000, what="all committed")

        # Kill one member without LeaveGroup, in the middle of more work.
        victim = members[0]
        produce(broker.bootstrap, topic, 60_000, 30_000)
        time.sleep(0.3)
        victim.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        survivors = members[1:]
        wait_for(lambda: sorted(p for m in survivors for p in (m.poll_assignment() or [])) == list(range(6)),
                 timeout=40, what="survivors take over all partitions")
        took_over = time.monotonic() - killed_at
        assert took_over < 6 + 10, f"rebalance took {took_over:.1f}s (session 6 s)"
        wait_for(lambda: len(set(v for _, _, v in processed(outs))) >= 90_000, timeout=120,
                 what="all 90,000 messages processed")
        values = Counter(v for _, _, v in processed(outs))
        assert set(values) == {f"m{i}" for i in range(90_000)}, "no message lost"
        duplicates = sum(n - 1 for n in values.values())
        # Only the killed member's uncommitted batch (<= 200 per consume call) can come again.
        assert duplicates <= 400, f"{duplicates} duplicates"
        print(f"rebalance after kill: {took_over:.1f}s, duplicates: {duplicates}")
    finally:
        for m in members:
            m.stop(signal.SIGKILL)


def test_committed_offsets_survive_a_broker_restart(broker, tmp_path):
    topic, group = "resume", "resumers"
    create(broker.bootstrap, topic, 3)
    outs = [str(tmp_path / f"r{i}.txt") for i in range(2)]
    members = [Member(broker.bootstrap, group, topic, o) for o in outs]
    try:
        wait_for(lambda: all(m.poll_assignment() for m in members), timeout=60, what="assignment")
        produce(broker.bootstrap, topic, 0, 5000)
        wait_for(lambda: sum(committed(broker.bootstrap, group, topic, 3).values()) == 5000, timeout=60,
                 what="first 5000 committed")
        before = committed(broker.bootstrap, group, topic, 3)
        assert sum(before.values()) == 5000
        assert broker.restart() == 0
        assert committed(broker.bootstrap, group, topic, 3) == before, "commits survived the restart"
        produce(broker.bootstrap, topic, 5000, 5000)
        wait_for(lambda: len(set(v for _, _, v in processed(outs))) >= 10_000, timeout=90, what="resumed")
        lines = processed(outs)
        seen = Counter((int(p), int(o)) for p, o, _ in lines)
        reread = [k for k, n in seen.items() if n > 1 and k[1] < before[k[0]]]
        assert reread == [], f"{len(reread)} messages committed before the restart were read again"
        # Messages produced after the restart may come twice if a commit raced the members'
        # rejoin (at-least-once); count them for the record.
        print(f"after restart: {sum(n - 1 for n in seen.values())} re-deliveries of uncommitted messages")
    finally:
        for m in members:
            m.stop(signal.SIGKILL)


def test_kafka_python_group_consumer_commits(broker):
    from kafka import KafkaConsumer

    create(broker.bootstrap, "kp-group", 2)
    produce(broker.bootstrap, "kp-group", 0, 1000)
    c = KafkaConsumer("kp-group", bootstrap_servers=broker.bootstrap, group_id="kp", auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=8000)
    got = [m.value for m in c]
    c.commit()
    c.close()
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(1000))
    assert sum(committed(broker.bootstrap, "kp", "kp-group", 2).values()) == 1000


def test_kcat_balanced_consumer_commits(broker):
    create(broker.bootstrap, "kc-group", 2)
    produce(broker.bootstrap, "kc-group", 0, 1000)
    r = subprocess.run(["kcat", "-b", broker.bootstrap, "-G", "kc", "kc-group", "-e", "-q", "-f", "%s\n",
                        "-X", "auto.commit.interval.ms=100", "-X", "session.timeout.ms=6000",
                        "-X", "auto.offset.reset=earliest"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(r.stdout.decode().split()) == sorted(f"m{i}" for i in range(1000))
    wait_for(lambda: sum(committed(broker.bootstrap, "kc", "kc-group", 2).values()) == 1000, what="kcat commits")


def test_hostile_commits_get_error_codes_and_others_keep_working(broker):
    from kafka.admin import KafkaAdminClient  # noqa: F401 (ensures kafka-python importable)
    import socket
    import struct

    create(broker.bootstrap, "hostile-commits", 1)

    def offset_commit_v2(group, generation, member, topic, partition):
        body = struct.pack(">h", len(group)) + group.encode()
        body += struct.pack(">i", generation) + struct.pack(">h", len(member)) + member.encode()
        body += struct.pack(">q", -1)  # retention
        body += struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic.encode()
        body += struct.pack(">i", 1) + struct.pack(">iq", partition, 5) + struct.pack(">h", -1)
        header = struct.pack(">hhih", 8, 2, 77, 1) + b"x"
        frame = header + body
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", s.recv(4))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
        s.close()
        # v2 response: correlation i32, topics[1]: name, partitions[1]: partition i32, error i16
        (correlation,) = struct.unpack(">i", data[:4])
        assert correlation == 77
        tlen = struct.unpack(">h", data[8:10])[0]
        at = 10 + tlen + 4 + 4
        return struct.unpack(">h", data[at:at + 2])[0]

    assert offset_commit_v2("simple", -1, "", "hostile-commits", 0) == 0, "simple commit to an empty group"
    assert offset_commit_v2("simple", -1, "", "no-such-topic", 0) == 3
    assert offset_commit_v2("simple", -1, "", "hostile-commits", 7) == 3

    # A live group: stale generations and foreign member ids are refused.
    member = Member(broker.bootstrap, "live", "hostile-commits", "/dev/null")
    try:
        wait_for(lambda: member.poll_assignment() is not None, timeout=60, what="member joined")
        assert offset_commit_v2("live", -1, "", "hostile-commits", 0) == 25, "UNKNOWN_MEMBER_ID"
        assert offset_commit_v2("live", 1, "intruder", "hostile-commits", 0) == 25
        # The coordinator still serves other groups.
        assert offset_commit_v2("another", -1, "", "hostile-commits", 0) == 0
    finally:
        member.stop(signal.SIGKILL)


@pytest.mark.parametrize("strategy", ["roundrobin", "cooperative-sticky"])
def test_other_assignors_split_and_consume_everything(broker, strategy):
    topic = f"assign-{strategy}"
    create(broker.bootstrap, topic, 4)
    produce(broker.bootstrap, topic, 0, 4000)
    consumers = [Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{strategy}",
                           "partition.assignment.strategy": strategy, "auto.offset.reset": "earliest",
                           "session.timeout.ms": 6000, "enable.auto.commit": True,
                           "auto.commit.interval.ms": 200}) for _ in range(2)]
    for c in consumers:
        c.subscribe([topic])
    seen = Counter()
    owners = {}
    deadline = time.monotonic() + 60
    while len(seen) < 4000 and time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            for m in c.consume(500, timeout=0.1):
                if m.error() is None:
                    seen[m.value()] += 1
                    owners.setdefault(m.partition(), set()).add(i)
    # Let the group settle, then both members must own partitions.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(len(c.assignment()) == 2 for c in consumers):
        for c in consumers:
            c.consume(10, timeout=0.1)
    assignments = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
    for c in consumers:
        c.close()
    assert len(seen) == 4000
    assert sorted(assignments[0] + assignments[1]) == [0, 1, 2, 3], assignments
    assert all(len(a) == 2 for a in assignments), assignments


def test_static_members_replace_their_old_selves(broker):
    topic = "static"
    create(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, 0, 200)

    def member(instance):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "statics", "group.instance.id": instance,
                      "session.timeout.ms": 10000, "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        return c

    a, b = member("a"), member("b")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (a.assignment() and b.assignment()):
        a.consume(10, timeout=0.1)
        b.consume(10, timeout=0.1)
    assert a.assignment() and b.assignment()
    # "a" goes away without leaving (static members keep their place) and comes back.
    a.close()
    a2 = member("a")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (a2.assignment() and b.assignment()):
        a2.consume(10, timeout=0.1)
        b.consume(10, timeout=0.1)
    assert a2.assignment() and b.assignment()
    from confluent_kafka.admin import AdminClient as Admin

    admin = Admin({"bootstrap.servers": broker.bootstrap})  # keep the client alive for the future
    desc = admin.describe_consumer_groups(["statics"])["statics"].result(10)
    instances = sorted(m.group_instance_id for m in desc.members)
    assert instances == ["a", "b"], instances
    a2.close()
    b.close()


class Producing:
    """Produces m<i> continuously from a thread until stopped; `count` says how many were acked."""

    def __init__(self, bootstrap, topic, start=0):
        self.bootstrap, self.topic, self.next = bootstrap, topic, start
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "enable.idempotence": True})
        while self.running:
            for _ in range(100):
                p.produce(self.topic, key=str(self.next).encode(), value=f"m{self.next}".encode())
                self.next += 1
            p.poll(0)
            time.sleep(0.02)
        assert p.flush(60) == 0

    def stop(self):
        self.running = False
        self.thread.join(90)
        return self.next


def assigned_at(member, wanted, since):
    """When `member` first reported an assignment satisfying `wanted` after `since`."""
    for t, parts in member.assignments:
        if t >= since and wanted(parts):
            return t
    return None


def test_a_new_member_is_assigned_within_the_session_timeout_of_a_killed_one(broker, tmp_path):
    """Kafka removes a dead member at its session deadline even while the group is
    PreparingRebalance; the new member must not wait for the dead one's rebalance timeout
    (max.poll.interval.ms, 300 s here)."""
    topic, group = "liveness", "liveness-g"
    create(broker.bootstrap, topic, 4)
    opts = ("--session", "6000", "--max-poll", "300000")
    old = Member(broker.bootstrap, group, topic, str(tmp_path / "old.txt"), *opts)
    fresh = None
    try:
        wait_for(lambda: old.poll_assignment() == [0, 1, 2, 3], timeout=60, what="first member assigned")
        old.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        fresh = Member(broker.bootstrap, group, topic, str(tmp_path / "new.txt"), *opts)
        wait_for(lambda: fresh.poll_assignment() == [0, 1, 2, 3], timeout=30, what="new member assigned")
        took = assigned_at(fresh, lambda p: p == [0, 1, 2, 3], killed_at) - killed_at
        print(f"new member assigned {took:.1f}s after the kill (session 6 s, rebalance timeout 300 s)")
        assert took <= 6 + 3, f"assigned {took:.1f}s after the kill"
    finally:
        old.stop(signal.SIGKILL)
        if fresh:
            fresh.stop(signal.SIGKILL)


def test_kill_one_of_three_and_add_one_under_continuous_production(broker, tmp_path):
    """No message lost; the only duplicates are messages the killed member processed after
    its last commit."""
    topic, group, partitions = "churn", "churners", 6
    create(broker.bootstrap, topic, partitions)
    opts = ("--session", "6000", "--max-poll", "300000")
    outs = [str(tmp_path / f"member{i}.txt") for i in range(4)]
    members = [Member(broker.bootstrap, group, topic, outs[i], *opts) for i in range(3)]
    producing = None
    try:
        wait_for(lambda: sorted(p for m in members for p in (m.poll_assignment() or [])) == list(range(6))
                 and all(m.poll_assignment() for m in members), timeout=60, what="three members assigned")
        producing = Producing(broker.bootstrap, topic)
        wait_for(lambda: len(processed(outs)) >= 5000, timeout=60, what="consumption under way")
        victim = members[0]
        victim_parts = victim.poll_assignment()
        victim.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        members.append(Member(broker.bootstrap, group, topic, outs[3], *opts))
        # Nobody else can commit the victim's partitions before the rebalance completes.
        time.sleep(0.5)
        committed_at_kill = committed(broker.bootstrap, group, topic, partitions)
        live = members[1:]
        wait_for(lambda: sorted(p for m in live for p in (m.poll_assignment() or [])) == list(range(6))
                 and members[3].poll_assignment(), timeout=30, what="survivors and the new member own everything")
        took = assigned_at(members[3], bool, killed_at) - killed_at
        assert took <= 6 + 3, f"new member assigned {took:.1f}s after the kill"
        time.sleep(2)
        total = producing.stop()
        producing = None
        wait_for(lambda: len(set(v for _, _, v in processed(outs))) >= total, timeout=120,
                 what=f"all {total} messages processed")
        lines = processed(outs)
        values = Counter(v for _, _, v in lines)
        assert set(values) == {f"m{i}" for i in range(total)}, "no message lost"
        by_victim = set((int(p), int(o)) for p, o, _ in processed([outs[0]]))
        seen = Counter((int(p), int(o)) for p, o, _ in lines)
        duplicates = [k for k, n in seen.items() if n > 1]
        uncommitted = [k for k in duplicates
                       if k in by_victim and k[0] in victim_parts and k[1] >= committed_at_kill[k[0]]]
        assert sorted(duplicates) == sorted(uncommitted), \
            f"{len(duplicates) - len(uncommitted)} duplicates outside the killed member's uncommitted range"
        print(f"{total} messages, new member assigned after {took:.1f}s, {len(duplicates)} duplicates "
              f"(all from the killed member's uncommitted range)")
    finally:
        if producing:
            producing.stop()
        for m in members:
            m.stop(signal.SIGKILL)


def test_a_static_member_restarted_within_its_session_keeps_its_partitions_without_a_rebalance(broker, tmp_path):
    topic, group = "static-restart", "static-g"
    create(broker.bootstrap, topic, 6)
    outs = [str(tmp_path / f"s{i}.txt") for i in range(4)]

    def start(i, out):
        return Member(broker.bootstrap, group, topic, out, "--instance", f"s{i}", "--session", "10000")

    members = [start(i, outs[i]) for i in range(3)]
    try:
        wait_for(lambda: all(m.poll_assignment() and len(m.poll_assignment()) == 2 for m in members),
                 timeout=60, what="three static members with two partitions each")
        produce(broker.bootstrap, topic, 0, 3000)
        wait_for(lambda: len(processed(outs)) >= 3000, timeout=60, what="first messages processed")
        before = [m.poll_assignment() for m in members]
        settled = time.monotonic()
        members[1].stop(signal.SIGKILL)
        killed_at = time.monotonic()
        members[1] = start(1, outs[3])
        wait_for(lambda: members[1].poll_assignment(), timeout=30, what="restarted member assigned")
        took = assigned_at(members[1], bool, killed_at) - killed_at
        assert members[1].poll_assignment() == before[1], "the same partitions back"
        assert took < 10, f"restart took {took:.1f}s, longer than the session"
        produce(broker.bootstrap, topic, 3000, 3000)
        wait_for(lambda: len(set(v for _, _, v in processed(outs))) >= 6000, timeout=60, what="all processed")
        time.sleep(1)
        for i in (0, 2):
            assert members[i].poll_assignment() == before[i], f"member {i}'s assignment changed"
            late = [r for r in members[i].revocations if r[0] >= settled]
            assert late == [], f"member {i} saw revocations {late}"
        print(f"static member back with {before[1]} after {took:.1f}s; no revocation elsewhere")
    finally:
        for m in members:
            m.stop(signal.SIGKILL)


@pytest.fixture
def kip848_broker(weir_factory):
    return weir_factory("--group-initial-rebalance-delay-ms", "1000", "--group-consumer-session-timeout-ms", "6000",
                        "--group-consumer-heartbeat-interval-ms", "500")


def test_kip848_three_members_six_partitions_one_killed_one_added_every_message_processed(kip848_broker, tmp_path):
    """group.protocol=consumer (KIP-848): the broker assigns; a SIGKILLed member's partitions
    move after its session (6 s here); a new member gets a share; every message is processed."""
    broker = kip848_broker
    topic, group, partitions = "kip848", "kip848-g", 6
    create(broker.bootstrap, topic, partitions)
    outs = [str(tmp_path / f"c{i}.txt") for i in range(4)]
    opts = ("--protocol", "consumer")
    members = [Member(broker.bootstrap, group, topic, outs[i], *opts) for i in range(3)]
    producing = None
    try:
        wait_for(lambda: sorted(p for m in members for p in (m.poll_assignment() or [])) == list(range(6))
                 and all(m.poll_assignment() and len(m.poll_assignment()) == 2 for m in members),
                 timeout=60, what="three KIP-848 members with two partitions each")
        producing = Producing(broker.bootstrap, topic)
        wait_for(lambda: len(processed(outs)) >= 3000, timeout=60, what="consumption under way")
        victim = members[0]
        victim_parts = victim.poll_assignment()
        victim.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        members.append(Member(broker.bootstrap, group, topic, outs[3], *opts))
        time.sleep(0.5)
        committed_at_kill = committed(broker.bootstrap, group, topic, partitions)
        live = members[1:]
        wait_for(lambda: sorted(p for m in live for p in (m.poll_assignment() or [])) == list(range(6))
                 and all(m.poll_assignment() for m in live), timeout=45, what="survivors and the new member own everything")
        took = time.monotonic() - killed_at
        time.sleep(2)
        total = producing.stop()
        producing = None
        wait_for(lambda: len(set(v for _, _, v in processed(outs))) >= total, timeout=120,
                 what=f"all {total} messages processed")
        values = Counter(v for _, _, v in processed(outs))
        assert set(values) == {f"m{i}" for i in range(total)}, "no message lost"
        by_victim = set((int(p), int(o)) for p, o, _ in processed([outs[0]]))
        seen = Counter((int(p), int(o)) for p, o, _ in processed(outs))
        duplicates = [k for k, n in seen.items() if n > 1]
        outside = [k for k in duplicates
                   if not (k in by_victim and k[0] in victim_parts and k[1] >= committed_at_kill[k[0]])]
        assert outside == [], f"{len(outside)} duplicates outside the killed member's uncommitted range"
        assert took <= 6 + 3, f"partitions owned again {took:.1f}s after the kill"
        print(f"KIP-848: {total} messages, all partitions owned again {took:.1f}s after the kill, "
              f"{len(duplicates)} duplicates (all from the killed member's uncommitted range)")
    finally:
        if producing:
            producing.stop()
        for m in members:
            m.stop(signal.SIGKILL)


def test_classic_and_kip848_groups_side_by_side(kip848_broker, tmp_path):
    broker = kip848_broker
    create(broker.bootstrap, "mixed", 2)
    classic = Member(broker.bootstrap, "mixed-classic", "mixed", str(tmp_path / "a.txt"))
    modern = Member(broker.bootstrap, "mixed-848", "mixed", str(tmp_path / "b.txt"), "--protocol", "consumer")
    try:
        wait_for(lambda: classic.poll_assignment() == [0, 1] and modern.poll_assignment() == [0, 1], timeout=60,
                 what="both groups assigned")
        produce(broker.bootstrap, "mixed", 0, 2000)
        for m in (classic, modern):
            wait_for(lambda: len(set(v for _, _, v in processed([m.out]))) >= 2000, timeout=60, what="each group reads all")
        # DescribeGroups shows the KIP-848 group too (as Kafka answers it): `weir group
        # describe` lists its member and partitions, and reset-offsets is refused while it is active.
        weir = os.environ.get("WEIR_BIN", os.path.join(HERE, "..", "..", "target", "release", "weir"))
        d = json.loads(subprocess.run([weir, "group", "-b", broker.bootstrap, "describe", "mixed-848", "-o", "json"],
                                      capture_output=True, text=True, timeout=30, check=True).stdout)
        assert d["state"] == "Stable" and len(d["members"]) == 1, d
        assert sorted(a["partition"] for a in d["members"][0]["assignment"]) == [0, 1]
        assert all(p["member_id"] == d["members"][0]["member_id"] for p in d["partitions"]), d
        r = subprocess.run([weir, "group", "-b", broker.bootstrap, "reset-offsets", "mixed-848", "--to", "earliest"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "active member" in r.stderr, r.stderr
        # A classic member joins the KIP-848 group as one of its members (KIP-848 migration):
        # the broker assigns it one of the two partitions.
        late = Member(broker.bootstrap, "mixed-848", "mixed", str(tmp_path / "c.txt"))
        try:
            wait_for(lambda: sorted((late.poll_assignment() or []) + (modern.poll_assignment() or [])) == [0, 1]
                     and len(late.poll_assignment() or []) == 1, timeout=60, what="the classic member's share")
        finally:
            late.stop(signal.SIGKILL)
    finally:
        classic.stop(signal.SIGKILL)
        modern.stop(signal.SIGKILL)


def test_kip848_static_member_restart_gets_its_partitions_back_without_moving_others(kip848_broker, tmp_path):
    broker = kip848_broker
    topic, group = "kip848-static", "kip848-static-g"
    create(broker.bootstrap, topic, 6)
    outs = [str(tmp_path / f"s{i}.txt") for i in range(4)]

    def start(i, out):
        return Member(broker.bootstrap, group, topic, out, "--protocol", "consumer", "--instance", f"s{i}")

    members = [start(i, outs[i]) for i in range(3)]
    try:
        wait_for(lambda: all(m.poll_assignment() and len(m.poll_assignment()) == 2 for m in members),
                 timeout=60, what="three static KIP-848 members with two partitions each")
        before = [m.poll_assignment() for m in members]
        settled = time.monotonic()
        members[1].stop(signal.SIGKILL)
        killed_at = time.monotonic()
        members[1] = start(1, outs[3])
        wait_for(lambda: members[1].poll_assignment(), timeout=30, what="restarted member assigned")
        took = assigned_at(members[1], bool, killed_at) - killed_at
        assert members[1].poll_assignment() == before[1], "the same partitions back"
        assert took < 6, f"restart took {took:.1f}s, longer than the session"
        produce(broker.bootstrap, topic, 0, 3000)
        wait_for(lambda: len(set(v for _, _, v in processed(outs))) >= 3000, timeout=60, what="all processed")
        for i in (0, 2):
            assert members[i].poll_assignment() == before[i], f"member {i}'s assignment changed"
            late = [r for r in members[i].revocations if r[0] >= settled]
            assert late == [], f"member {i} saw revocations {late}"
        print(f"KIP-848 static member back with {before[1]} after {took:.1f}s; no revocation elsewhere")
    finally:
        for m in members:
            m.stop(signal.SIGKILL)


def test_kip848_regex_subscription_follows_new_topics(kip848_broker):
    """group.protocol=consumer with a regex (librdkafka sends it as SubscribedTopicRegex, KIP-848
    v1): the broker resolves it against its topics, whole names only, and a topic created later
    that matches is assigned without the consumer re-subscribing."""
    broker = kip848_broker
    for name, n in [("re-a", 2), ("re-b", 1), ("re", 1), ("other-re-x", 1)]:
        create(broker.bootstrap, name, n)
        produce(broker.bootstrap, name, 0, 10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "re-g", "group.protocol": "consumer",
                  "auto.offset.reset": "earliest"})
    c.subscribe(["^re-.*"])
    got = Counter()
    try:
        deadline = time.monotonic() + 30
        while sum(got.values()) < 20 and time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.5):
                if m.error() is None:
                    got[m.topic()] += 1
        time.sleep(1)  # nothing more arrives: "re" and "other-re-x" do not match
        for m in c.consume(100, timeout=0.5):
            if m.error() is None:
                got[m.topic()] += 1
        assert got == {"re-a": 10, "re-b": 10}, got
        assignment = sorted((tp.topic, tp.partition) for tp in c.assignment())
        assert assignment == [("re-a", 0), ("re-a", 1), ("re-b", 0)]
        created = time.monotonic()
        create(broker.bootstrap, "re-c", 3)
        produce(broker.bootstrap, "re-c", 0, 10)
        deadline = time.monotonic() + 30
        while got["re-c"] < 10 and time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.5):
                if m.error() is None:
                    got[m.topic()] += 1
        took = time.monotonic() - created
        assert got == {"re-a": 10, "re-b": 10, "re-c": 10}, got
        print(f"regex subscription: a new matching topic consumed {took:.1f}s after its creation")
    finally:
        c.close()


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_kip848_online_upgrade_of_a_classic_group_under_production(kip848_broker, tmp_path, assignor):
    """Two classic members (eager range, or cooperative-sticky) share six partitions; a
    group.protocol=consumer member joins the same group: the broker upgrades the group online
    (KIP-848), the classic members rejoin and are assigned by the broker, all three end with
    two partitions each, and every message is processed. A classic member that leaves hands
    its partitions to the others; when the KIP-848 member leaves, the group is classic again."""
    broker = kip848_broker
    topic, group = f"upgrade-{assignor}", f"upgrade-g-{assignor}"
    create(broker.bootstrap, topic, 6)
    outs = [str(tmp_path / f"u{i}.txt") for i in range(3)]
    classic = [Member(broker.bootstrap, group, topic, outs[i], "--assignor", assignor) for i in range(2)]
    members = list(classic)
    producing = None
    try:
        wait_for(lambda: all(m.poll_assignment() and len(m.poll_assignment()) == 3 for m in classic), timeout=60,
                 what="two classic members with three partitions each")
        producing = Producing(broker.bootstrap, topic)
        wait_for(lambda: len(processed(outs)) >= 2000, timeout=60, what="consumption under way")
        joined = time.monotonic()
        members.append(Member(broker.bootstrap, group, topic, outs[2], "--protocol", "consumer"))

        def spread():
            parts = [m.poll_assignment() or [] for m in members]
            return sorted(p for ps in parts for p in ps) == list(range(6)) and all(len(ps) == 2 for ps in parts)

        wait_for(spread, timeout=60, what="three members with two partitions each after the upgrade")
        took = time.monotonic() - joined
        classic[0].stop()  # a clean close: LeaveGroup from a classic member of the upgraded group
        rest = members[1:]
        wait_for(lambda: sorted(p for m in rest for p in (m.poll_assignment() or [])) == list(range(6)),
                 timeout=60, what="the two members left own everything")
        # The KIP-848 member leaves: the group turns classic again (downgrade) and the last
        # classic member, rejoining as a classic leader, takes everything.
        members[2].stop()
        wait_for(lambda: classic[1].poll_assignment() == list(range(6)), timeout=60,
                 what="the classic member owns everything after the downgrade")
        total = producing.stop()
        producing = None
        wait_for(lambda: len(set(v for _, _, v in processed(outs))) >= total, timeout=120,
                 what=f"all {total} messages processed")
        values = Counter(v for _, _, v in processed(outs))
        assert set(values) == {f"m{i}" for i in range(total)}, "no message lost"
        duplicates = sum(n - 1 for n in values.values())
        print(f"online upgrade ({assignor}): {total} messages, spread over three members {took:.1f}s after the "
              f"KIP-848 member joined, {duplicates} duplicates")
    finally:
        if producing:
            producing.stop()
        for m in members:
            m.stop(signal.SIGKILL)
