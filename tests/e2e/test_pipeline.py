"""Stream-processing pipelines end to end: a JSON Lines file of orders -> a Weir topic -> `weir
pipeline run` (filter + 1-minute tumbling sum per customer + late events to a dead-letter topic)
-> PostgreSQL. The table must equal an independent computation: this file simulates the
watermark itself to find the late events and lets SQLite do the GROUP BY over the rest.

Also: kill -9 at random points (final table unchanged, every event accounted for), two
instances in one group, --from rewinds, and both sink error policies."""

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
import zlib

import psycopg
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import WEIR_BIN, wait_for

PARTITIONS = 6
WINDOW_MS = 60_000
LATENESS_MS = 30_000
OUT_OF_ORDER_MS = 10_000
BASE_MS = 1_700_000_040_000 // WINDOW_MS * WINDOW_MS


def partition_of(customer):
    return zlib.crc32(customer.encode()) % PARTITIONS


def make_orders(n, seed):
    """(partition, line) pairs in production order; lines are JSON orders plus a few broken ones.
    The last line of every partition is an `end` marker far in the future: it is filtered out,
    but its time moves that partition's watermark past every window."""
    rng = random.Random(seed)
    out = []
    t = BASE_MS
    for i in range(n):
        t += rng.randint(100, 500)
        customer = f"c{rng.randint(0, 39):02d}"
        p = partition_of(customer)
        order = {"order_id": i, "customer": customer, "amount": rng.randint(1, 500),
                 "status": "paid" if rng.random() < 0.8 else "cancelled",
                 "timestamp": t + rng.randint(-3000, 3000)}
        if i > 2000 and i % 397 == 0:
            order["timestamp"] = t - 10 * 60_000  # late: ten minutes behind
        if i % 1009 == 0:
            del order["amount"]  # a paid order without an amount cannot be summed
        out.append((p, json.dumps(order)))
        if i % 1499 == 0:
            out.append((rng.randrange(PARTITIONS), '{"customer": "c01", "amount": 3, broken'))
        if i % 1801 == 0:
            out.append((p, json.dumps({"customer": customer, "amount": 1, "status": "paid"})))  # no time
    for p in range(PARTITIONS):
        out.append((p, json.dumps({"status": "end", "timestamp": t + 3_600_000})))
    return out


def expected_results(lines):
    """Independent computation. Returns (rows, dead_positions, filtered_count) where rows is the
    sorted list of (customer, window_start, sum, count). Positions are (partition, index)."""
    max_seen = {}
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE orders (customer TEXT, ts INTEGER, amount INTEGER)")
    dead, filtered = set(), 0
    index = {p: 0 for p in range(PARTITIONS)}
    for p, line in lines:
        pos = (p, index[p])
        index[p] += 1
        try:
            o = json.loads(line)
        except ValueError:
            dead.add(pos)
            continue
        if not isinstance(o.get("timestamp"), int):
            dead.add(pos)
            continue
        t = o["timestamp"]
        watermark = max_seen.get(p, -(2 ** 62)) - OUT_OF_ORDER_MS
        max_seen[p] = max(max_seen.get(p, -(2 ** 62)), t)
        if o.get("status") != "paid":
            filtered += 1
            continue
        if "amount" not in o:
            dead.add(pos)
            continue
        window_end = t // WINDOW_MS * WINDOW_MS + WINDOW_MS
        if window_end + LATENESS_MS <= watermark:
            dead.add(pos)
            continue
        db.execute("INSERT INTO orders VALUES (?, ?, ?)", (o["customer"], t, o["amount"]))
    rows = db.execute(
        f"SELECT customer, ts / {WINDOW_MS} * {WINDOW_MS} AS ws, SUM(amount), COUNT(*) FROM orders "
        "GROUP BY customer, ws ORDER BY customer, ws").fetchall()
    return [(c, ws, float(s), n) for c, ws, s, n in rows], dead, filtered


class Setup:
    def __init__(self, weir, pg, tmp_path, name, lines, extra_source="", extra=""):
        self.weir, self.pg, self.name, self.lines = weir, pg, name, lines
        self.topic, self.dlq, self.table = f"orders_{name}", f"orders_{name}_dlq", f"sums_{name}"
        admin = AdminClient({"bootstrap.servers": weir.bootstrap})
        for f in admin.create_topics([NewTopic(self.topic, PARTITIONS, 1), NewTopic(self.dlq, 1, 1)]).values():
            f.result(timeout=30)
        with psycopg.connect(pg, autocommit=True) as c:
            c.execute(f"DROP TABLE IF EXISTS {self.table}")
            if self._has_cp(c):  # a previous run on this machine left checkpoints behind
                c.execute("DELETE FROM weir_checkpoints WHERE id LIKE %s", (f"{name}/%",))
        self.jsonl = tmp_path / f"{name}.jsonl"
        self.jsonl.write_text("".join(f"{line}\n" for _, line in lines))
        self.spec = tmp_path / f"{name}.yaml"
        self.spec.write_text(f"""
name: {name}
source:
  kafka:
    brokers: {weir.bootstrap}
    topic: {self.topic}
    group: {name}
    partitioned_by_key: true  # produced to crc32(customer) % partitions
    properties: {{ session.timeout.ms: "6000"{extra_source} }}
  time_field: timestamp
  key_field: customer
steps:
  - filter: "event.status == 'paid'"
window: {{ tumbling: 1m, aggregate: sum, field: amount, allowed_lateness: 30s, out_of_orderness: 10s }}
sink: {{ postgres: "{pg}", table: {self.table} }}
dead_letters: {{ topic: {self.dlq} }}
checkpoint: {{ interval: 300ms }}
{extra}""")

    @staticmethod
    def _has_cp(c):
        return c.execute("SELECT to_regclass('weir_checkpoints')").fetchone()[0] is not None

    def produce(self, lines=None, pace_s=0.0):
        """Writes the JSON Lines file's lines to their partitions (optionally spread over time)."""
        prod = Producer({"bootstrap.servers": self.weir.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        lines = self.lines if lines is None else lines
        for i, (p, line) in enumerate(lines):
            prod.produce(self.topic, value=line.encode(), partition=p)
            if i % 500 == 0:
                prod.poll(0)
                if pace_s:
                    time.sleep(pace_s)
        assert prod.flush(30) == 0

    def start(self, *args, log_name="pipeline"):
        log = open(self.spec.parent / f"{self.name}-{log_name}.log", "ab")
        return subprocess.Popen([WEIR_BIN, "pipeline", "run", str(self.spec), *args], stdout=log, stderr=log,
                                env={**os.environ, "WEIR_LOG": "info", "NO_COLOR": "1"})

    def run_to_end(self, *args, timeout=120):
        out = subprocess.run([WEIR_BIN, "pipeline", "run", str(self.spec), "--until-end", *args],
                             capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, out.stderr[-3000:]
        return parse_stats(out.stderr)

    def rows(self):
        with psycopg.connect(self.pg) as c:
            return c.execute(f"SELECT key, window_start, value, count FROM {self.table} WHERE final "
                             "ORDER BY key, window_start").fetchall()

    def dead_letters(self):
        """Every record of the dead-letter topic as (key, value)."""
        c = Consumer({"bootstrap.servers": self.weir.bootstrap, "group.id": f"dlq-reader-{time.time()}",
                      "auto.offset.reset": "earliest", "enable.partition.eof": True})
        c.assign([TopicPartition(self.dlq, 0, 0)])
        out = []
        while True:
            m = c.poll(10)
            assert m is not None, "dead-letter topic read timed out"
            if m.error():
                break
            out.append((m.key().decode(), json.loads(m.value())))
        c.close()
        return out


def parse_stats(stderr):
    m = re.search(r"(\d+) events? in ([\d.]+)s \((\d+) events/s\): (\d+) outputs?, (\d+) dead letters?", stderr)
    assert m, stderr[-3000:]
    return {"events": int(m.group(1)), "secs": float(m.group(2)), "rate": int(m.group(3)),
            "results": int(m.group(4)), "dead": int(m.group(5))}


def check(setup, expected, dead, filtered):
    assert setup.rows() == expected
    positions = set()
    for key, v in setup.dead_letters():
        topic, p, offset = key.split("/")
        assert topic == setup.topic and v["reason"]
        positions.add((int(p), int(offset)))
    assert positions == dead, f"missing {sorted(dead - positions)[:5]} extra {sorted(positions - dead)[:5]}"
    # Every input event is accounted for: in a window, in the dead letters, or filtered out.
    assert sum(n for *_, n in expected) + len(positions) + filtered == len(setup.lines)


def test_orders_to_postgres_equal_sql_group_by(weir, pg, tmp_path):
    lines = make_orders(20_000, seed=1)
    expected, dead, filtered = expected_results(lines)
    assert len(dead) > 60 and filtered > 3000 and len(expected) > 1000
    s = Setup(weir, pg, tmp_path, "once", lines)
    s.produce()
    stats = s.run_to_end()
    print(f"\npipeline: {stats['events']} events in {stats['secs']:.2f}s = {stats['rate']} events/s (incl. join)")
    assert stats["events"] == len(lines)
    check(s, expected, dead, filtered)
    # A second run finds its checkpoints: nothing is read twice, the table is unchanged.
    again = s.run_to_end()
    assert again["events"] == 0
    check(s, expected, dead, filtered)


def test_kill_9_at_random_points_changes_nothing(weir, pg, tmp_path):
    lines = make_orders(30_000, seed=2)
    expected, dead, filtered = expected_results(lines)
    # Static membership: a restarted instance takes its partitions back at once.
    s = Setup(weir, pg, tmp_path, "crash", lines, extra_source=', group.instance.id: "crash-1"')
    # Production is spread over the kills (~15 s), so they land mid-stream.
    producer = threading.Thread(target=s.produce, kwargs={"pace_s": 0.25})
    producer.start()
    rng = random.Random(7)
    kills = 0
    while kills < 12:
        proc = s.start(log_name=f"run{kills}")
        time.sleep(rng.uniform(0.5, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    producer.join()
    stats = s.run_to_end()
    assert kills >= 10
    resumed = sum("restored checkpoint" in (s.spec.parent / f"crash-run{i}.log").read_text() for i in range(kills))
    assert resumed >= 4, f"only {resumed} runs were killed after their first checkpoint"
    assert stats["events"] < len(lines), "the last run should resume, not start over"
    check(s, expected, dead, filtered)


def test_two_instances_split_partitions(weir, pg, tmp_path):
    lines = make_orders(12_000, seed=3)
    expected, dead, filtered = expected_results(lines)
    s = Setup(weir, pg, tmp_path, "pair", lines)
    a = s.start(log_name="a")
    b = s.start(log_name="b")
    s.produce(pace_s=0.02)
    wait_for(lambda: s.rows() == expected, timeout=120, interval=0.5, what="both instances' results")
    counts = []
    for proc, log in ((a, "a"), (b, "b")):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        counts.append(parse_stats((s.spec.parent / f"pair-{log}.log").read_text())["events"])
    assert all(n > 0 for n in counts), f"one instance did nothing: {counts}"
    assert sum(counts) >= len(lines)
    check(s, expected, dead, filtered)


def test_from_earliest_and_from_duration_rewind(weir, pg, tmp_path):
    lines = make_orders(3_000, seed=4)
    expected, dead, filtered = expected_results(lines)
    s = Setup(weir, pg, tmp_path, "rewind", lines)
    s.produce()
    assert s.run_to_end()["events"] == len(lines)
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute(f"TRUNCATE {s.table}")
    assert s.run_to_end()["events"] == 0  # the checkpoint says everything was read
    assert s.run_to_end("--from", "earliest")["events"] == len(lines)
    assert s.rows() == expected
    # Every record was written within the last 2 hours: --from 2h reads them all again.
    assert s.run_to_end("--from", "2h")["events"] == len(lines)
    assert s.rows() == expected


def test_sink_error_policy_dead_letter_skips_refused_rows(weir, pg, tmp_path):
    lines = make_orders(3_000, seed=5)
    expected, _, _ = expected_results(lines)
    s = Setup(weir, pg, tmp_path, "skip", lines, extra="on_sink_error: dead_letter\n")
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute(f"CREATE TABLE {s.table} (key TEXT NOT NULL, window_start BIGINT NOT NULL, window_end BIGINT NOT NULL,"
                  " value DOUBLE PRECISION NOT NULL CHECK (value < 1000), count BIGINT NOT NULL,"
                  " final BOOLEAN NOT NULL DEFAULT true, PRIMARY KEY (key, window_start))")
    s.produce()
    s.run_to_end()
    assert s.rows() == [r for r in expected if r[2] < 1000]
    refused = sorted((v["result"]["key"], v["result"]["window_start"]) for k, v in s.dead_letters()
                     if k.startswith("result/"))
    assert refused == [(r[0], r[1]) for r in expected if r[2] >= 1000]
    assert refused and all("sink failed" in v["reason"] for k, v in s.dead_letters() if k.startswith("result/"))


def metrics(log):
    """The pipeline's /metrics as {name{labels}: value}, from the address in its log."""
    m = re.search(r"pipeline metrics on (http://\S+)", log.read_text())
    assert m, "no metrics address in the log"
    text = requests.get(m.group(1), timeout=5).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_sink_error_policy_retry_waits_until_the_sink_works(weir, pg, tmp_path):
    lines = make_orders(3_000, seed=6)
    expected, dead, _ = expected_results(lines)
    s = Setup(weir, pg, tmp_path, "retry", lines)
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute(f"CREATE TABLE {s.table} (key TEXT NOT NULL, window_start BIGINT NOT NULL, window_end BIGINT NOT NULL,"
                  " value DOUBLE PRECISION NOT NULL CONSTRAINT small CHECK (value < 1000), count BIGINT NOT NULL,"
                  " final BOOLEAN NOT NULL DEFAULT true, PRIMARY KEY (key, window_start))")
    s.produce()
    proc = s.start("--metrics-listen", "127.0.0.1:0")
    log = s.spec.parent / "retry-pipeline.log"
    wait_for(lambda: "sink write failed" in log.read_text(), timeout=60, interval=0.2, what="a failed write")
    time.sleep(1)
    assert s.rows() == [] and proc.poll() is None  # waiting, not skipping
    before = metrics(log)
    assert before["weir_pipeline_sink_failures_total"] >= 2
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute(f"ALTER TABLE {s.table} DROP CONSTRAINT small")
    wait_for(lambda: s.rows() == expected, timeout=60, interval=0.3, what="the retried write")
    after = metrics(log)
    assert after["weir_pipeline_events_total"] == len(lines)
    assert after["weir_pipeline_checkpoints_total"] >= 1 and after["weir_pipeline_partitions"] == PARTITIONS
    by_reason = {k: v for k, v in after.items() if k.startswith("weir_pipeline_dead_letters_total")}
    assert sum(by_reason.values()) == len(dead) and by_reason['weir_pipeline_dead_letters_total{reason="late"}'] > 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_kafka_sink_topic_holds_the_same_results(weir, pg, tmp_path):
    lines = make_orders(4_000, seed=8)
    expected, dead, filtered = expected_results(lines)
    s = Setup(weir, pg, tmp_path, "tokafka", lines)
    results_topic = "sums_tokafka_topic"
    admin = AdminClient({"bootstrap.servers": weir.bootstrap})
    admin.create_topics([NewTopic(results_topic, 1, 1)])[results_topic].result(timeout=30)
    s.spec.write_text(s.spec.read_text().replace(
        f'sink: {{ postgres: "{pg}", table: {s.table} }}', f"sink: {{ kafka: {{ topic: {results_topic} }} }}"))
    s.spec.write_text(s.spec.read_text().replace("checkpoint: { interval: 300ms }",
                                                 f"checkpoint: {{ interval: 300ms, dir: {tmp_path}/cp }}"))
    s.produce()
    assert s.run_to_end()["events"] == len(lines)
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "reader", "enable.partition.eof": True})
    c.assign([TopicPartition(results_topic, 0, 0)])
    latest = {}
    while True:
        m = c.poll(10)
        assert m is not None
        if m.error():
            break
        v = json.loads(m.value())
        assert m.key().decode() == f"{v['key']}@{v['window_start']}"
        latest[m.key()] = v
    c.close()
    rows = sorted((v["key"], v["window_start"], v["value"], v["count"]) for v in latest.values() if v["final"])
    assert rows == expected
    assert {(int(k.split("/")[1]), int(k.split("/")[2])) for k, _ in s.dead_letters()} == dead
    assert os.listdir(tmp_path / "cp"), "checkpoint files for a non-database sink"
