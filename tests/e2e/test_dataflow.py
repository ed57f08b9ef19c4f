"""Dataflow pipelines over a real `weir serve`: a key change before a window goes through a
repartition topic, so results are right for any input partitioning, for any number of
instances, and across kill -9 (the repartition topic may hold duplicates; the sink may not).

Orders carry random record keys (so one customer's orders are spread over every partition);
the pipeline re-keys by customer and sums per 1-minute window. Every closed window must equal
a GROUP BY the test computes over the raw input."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import WEIR_BIN, wait_for

WINDOW_MS = 60_000
BASE_MS = 1_700_000_040_000 // WINDOW_MS * WINDOW_MS


def make_orders(n, seed, customers=25):
    """Orders in time order with up to 2 s of jitter (the spec allows 5 s out of order)."""
    rng = random.Random(seed)
    t = BASE_MS
    out = []
    for i in range(n):
        t += rng.randint(20, 200)
        out.append({"order_id": i, "customer": f"c{rng.randrange(customers):02d}", "amount": rng.randint(1, 100),
                    "status": "paid" if rng.random() < 0.85 else "cancelled", "timestamp": t - rng.randint(0, 2000)})
    return out, t


def group_by(orders):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE o (customer TEXT, ts INTEGER, amount INTEGER)")
    db.executemany("INSERT INTO o VALUES (?, ?, ?)",
                   [(o["customer"], o["timestamp"], o["amount"]) for o in orders if o["status"] == "paid"])
    return db.execute(f"SELECT customer, ts / {WINDOW_MS} * {WINDOW_MS} AS ws, SUM(amount), COUNT(*) FROM o "
                      "GROUP BY customer, ws ORDER BY customer, ws").fetchall()


def create(weir, *topics):
    admin = AdminClient({"bootstrap.servers": weir.bootstrap})
    for f in admin.create_topics([NewTopic(t, p, 1) for t, p in topics]).values():
        f.result(timeout=30)


def produce(weir, topic, orders, end_ms, partitions, pace_s=0.0):
    """Random record keys (the default partitioner spreads every customer over all partitions),
    then an `end` marker per partition that moves every watermark past the last window."""
    prod = Producer({"bootstrap.servers": weir.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i, o in enumerate(orders):
        prod.produce(topic, key=uuid.uuid4().hex.encode(), value=json.dumps(o).encode())
        if i % 500 == 0:
            prod.poll(0)
            if pace_s:
                time.sleep(pace_s)
    for p in range(partitions):
        prod.produce(topic, value=json.dumps({"status": "end", "timestamp": end_ms + 3_600_000}).encode(), partition=p)
    assert prod.flush(30) == 0


def spec(tmp_path, weir, name, topic, sink, extra_source="", checkpoint=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
name: {name}
source:
  kafka: {{ brokers: "{weir.bootstrap}", topic: {topic}, properties: {{ session.timeout.ms: "6000"{extra_source} }} }}
  time_field: timestamp
out_of_orderness: 5s
steps:
  - filter: "event.status == 'paid'"
  - key_by: "event.customer"
  - window: {{ tumbling: 1m, aggregates: [ {{ total: "sum(amount)" }}, {{ orders: count }} ] }}
sink: {sink}
checkpoint: {{ interval: 200ms{checkpoint} }}
""")
    return path


def run(path, *args, log=None, **kw):
    out = open(log, "ab") if log else subprocess.PIPE
    return subprocess.Popen([WEIR_BIN, "pipeline", "run", str(path), *args], stdout=out, stderr=out,
                            env={**os.environ, "WEIR_LOG": "info", "NO_COLOR": "1"}, **kw)


def sqlite_rows(db):
    if not db.exists():
        return []
    try:
        c = sqlite3.connect(db, timeout=10)
        rows = c.execute("SELECT key, window_start, total, orders FROM sums WHERE final ORDER BY key, window_start")
        return [(k, ws, int(t), n) for k, ws, t, n in rows.fetchall()]
    except sqlite3.OperationalError:
        return []


def topic_rows(weir, topic):
    """Final results in a result topic: the latest value per key (what compaction keeps)."""
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": f"r-{uuid.uuid4()}", "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    latest, eof = {}, set()
    while len(eof) < len(md.partitions):
        m = c.poll(10)
        assert m is not None, "result topic read timed out"
        if m.error():
            eof.add(m.partition())
            continue
        latest[m.key()] = json.loads(m.value()) if m.value() else None
    c.close()
    return sorted((v["key"], v["window_start"], int(v["total"]), v["orders"])
                  for v in latest.values() if v and v["final"])


def test_rekey_before_a_window_equals_group_by_for_any_partitioning(weir, tmp_path):
    orders, end = make_orders(20_000, seed=1)
    expected = group_by(orders)
    assert len(expected) > 400
    create(weir, ("orders", 3))
    produce(weir, "orders", orders, end, 3)
    db = tmp_path / "sums.db"
    path = spec(tmp_path, weir, "rekey", "orders", f"{{ sqlite: {db}, table: sums }}")
    out = subprocess.run([WEIR_BIN, "pipeline", "run", str(path), "--until-end"], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sqlite_rows(db) == expected
    # The repartition topic exists with the source's partition count.
    md = AdminClient({"bootstrap.servers": weir.bootstrap}).list_topics(timeout=10)
    assert len(md.topics["rekey-1-repartition"].partitions) == 3


def test_two_instances_give_the_same_rows(weir, tmp_path):
    orders, end = make_orders(12_000, seed=2)
    expected = group_by(orders)
    create(weir, ("orders2", 4))
    db = tmp_path / "sums.db"
    path = spec(tmp_path, weir, "pair", "orders2", f"{{ sqlite: {db}, table: sums }}")
    a = run(path, log=tmp_path / "a.log")
    b = run(path, log=tmp_path / "b.log")
    produce(weir, "orders2", orders, end, 4, pace_s=0.02)
    wait_for(lambda: sqlite_rows(db) == expected, timeout=180, interval=0.5, what="both instances' results")
    for p in (a, b):
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
    assert sqlite_rows(db) == expected


def test_an_instance_killed_with_open_windows_its_partitions_continue_elsewhere(weir, tmp_path):
    """Two instances with their own checkpoint directories (as on two machines) would lose the
    dead one's state; checkpoints are in the `<pipeline>-checkpoints` topic instead, so the
    survivor picks the dead instance's tasks up where its last checkpoint left them."""
    orders, end = make_orders(16_000, seed=3)
    expected = group_by(orders)
    create(weir, ("orders3", 4), ("sums3", 1))
    machines = []
    for m in ("a", "b"):  # each its own copy of the spec, so its own default checkpoint directory
        (tmp_path / m).mkdir()
        machines.append(spec(tmp_path / m, weir, "survivor", "orders3", "{ kafka: { topic: sums3 } }"))
    first, rest = orders[:8000], orders[8000:]
    a = run(machines[0], log=tmp_path / "a.log", cwd=tmp_path / "a")
    b = run(machines[1], log=tmp_path / "b.log", cwd=tmp_path / "b")
    produce(weir, "orders3", first, end, 0, pace_s=0.02)
    # Windows are open in both instances: kill one without warning.
    wait_for(lambda: "restored checkpoint" in (tmp_path / "a.log").read_text() or
             len(topic_rows(weir, "sums3")) > 10, timeout=60, interval=0.5, what="some results")
    time.sleep(1)
    a.send_signal(signal.SIGKILL)
    a.wait()
    produce(weir, "orders3", rest, end, 4, pace_s=0.01)
    wait_for(lambda: topic_rows(weir, "sums3") == expected, timeout=180, interval=1, what="the survivor's results")
    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=60) == 0
    assert "restored checkpoint" in (tmp_path / "b.log").read_text()


def test_kill_9_at_random_points_of_a_two_stage_pipeline_changes_nothing(weir, tmp_path):
    orders, end = make_orders(24_000, seed=4)
    expected = group_by(orders)
    create(weir, ("orders4", 3))
    db = tmp_path / "sums.db"
    path = spec(tmp_path, weir, "crash", "orders4", f"{{ sqlite: {db}, table: sums }}",
                extra_source=', group.instance.id: "crash-1"')
    producer = threading.Thread(target=produce, args=(weir, "orders4", orders, end, 3), kwargs={"pace_s": 0.2})
    producer.start()
    rng = random.Random(9)
    for i in range(12):
        p = run(path, log=tmp_path / f"run{i}.log")
        time.sleep(rng.uniform(0.8, 2.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
    producer.join()
    out = subprocess.run([WEIR_BIN, "pipeline", "run", str(path), "--until-end"], capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = sum("restored checkpoint" in (tmp_path / f"run{i}.log").read_text() for i in range(12))
    assert resumed >= 4, f"only {resumed} runs were killed after their first checkpoint"
    assert sqlite_rows(db) == expected


def test_a_missing_source_topic_is_an_error(weir, tmp_path):
    path = spec(tmp_path, weir, "nosource", "no_such_topic", "{ stdout: true }")
    out = subprocess.run([WEIR_BIN, "pipeline", "run", str(path), "--until-end"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "no_such_topic" in out.stderr and "does not exist" in out.stderr


def test_local_checkpoints_missing_on_another_machine_refuse_instead_of_starting_empty(weir, tmp_path):
    orders, end = make_orders(3_000, seed=5)
    create(weir, ("orders5", 2))
    produce(weir, "orders5", orders, end, 2)
    paths = []
    for m in ("a", "b"):
        (tmp_path / m).mkdir()
        paths.append(spec(tmp_path / m, weir, "local", "orders5", "{ jsonl: out.jsonl }", checkpoint=", dir: cp"))
    first = subprocess.run([WEIR_BIN, "pipeline", "run", str(paths[0]), "--until-end"], capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]
    assert os.listdir(tmp_path / "a" / "cp")
    # The same group from a machine without those files: committed offsets, no checkpoint.
    second = subprocess.run([WEIR_BIN, "pipeline", "run", str(paths[1]), "--until-end"], capture_output=True,
                            text=True, timeout=120)
    assert second.returncode != 0
    assert "no checkpoint" in second.stderr and "--from earliest" in second.stderr, second.stderr[-2000:]


def test_until_end_closes_what_a_partition_that_ran_ahead_allows(weir, tmp_path):
    """Uneven partitions: nearly everything on one, the others stop early. A bounded run tells
    the next stage its caught-up tasks are idle, so the windows the furthest partition passed
    close instead of waiting for the idle timeout after the run has ended."""
    orders, _ = make_orders(6_000, seed=6)
    create(weir, ("uneven", 3))
    prod = Producer({"bootstrap.servers": weir.bootstrap, "linger.ms": 5})
    for i, o in enumerate(orders):
        prod.produce("uneven", value=json.dumps(o).encode(), partition=0 if i >= 30 else i % 3)
    assert prod.flush(30) == 0
    db = tmp_path / "sums.db"
    path = spec(tmp_path, weir, "uneven", "uneven", f"{{ sqlite: {db}, table: sums }}")
    out = subprocess.run([WEIR_BIN, "pipeline", "run", str(path), "--until-end"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    watermark = max(o["timestamp"] for o in orders) - 5_000
    expected = [r for r in group_by(orders) if r[1] + WINDOW_MS <= watermark]
    assert len(expected) > 20
    assert sqlite_rows(db) == expected


def table_join_case(weir, orders_topic, customers_topic):
    """Orders (3 partitions, random record keys) and a customers table (2 partitions, keyed by
    id) whose rows change country half-way and are partly deleted by tombstones, produced to
    the two topics. Returns the orders, the paid sums per (country, minute) of every order
    joined with its customer's row as of its time, and when the rows changed."""
    orders, end = make_orders(6_000, seed=11)
    customers = [f"c{i:02d}" for i in range(25)]
    countries = ["NL", "DE", "FR", "US"]
    moved_at, start = BASE_MS + 300_000, BASE_MS - 1_000
    # Per partition of the customers topic, its records in order: (key, row or None).
    parts = {0: [], 1: []}
    for i, c in enumerate(customers):
        parts[i % 2].append((c, {"id": c, "country": countries[i % 4], "timestamp": start}))
    for i, c in enumerate(customers[:10]):
        parts[i % 2].append((c, {"id": c, "country": countries[(i + 1) % 4], "timestamp": moved_at}))
    for i, c in enumerate(customers[20:], start=20):
        parts[i % 2].append((c, None))  # a tombstone: at the latest time read in its partition
    create(weir, (orders_topic, 3), (customers_topic, 2))
    prod = Producer({"bootstrap.servers": weir.bootstrap, "enable.idempotence": True})
    history = {}  # customer -> [(time, row or None)] in partition order
    for p, records in parts.items():
        latest = -1
        for key, row in records:
            if row is None:
                prod.produce(customers_topic, key=key.encode(), value=None, partition=p)
                history.setdefault(key, []).append((latest, None))
            else:
                prod.produce(customers_topic, key=key.encode(), value=json.dumps(row).encode(), partition=p)
                latest = max(latest, row["timestamp"])
                history.setdefault(key, []).append((row["timestamp"], row))
        marker = {"id": "zz-end", "country": "XX", "timestamp": end + 3_600_000}
        prod.produce(customers_topic, key=b"zz-end", value=json.dumps(marker).encode(), partition=p)
    assert prod.flush(30) == 0
    produce(weir, orders_topic, orders, end, 3)

    def as_of(customer, t):
        row = None
        for ts, r in history.get(customer, []):
            if ts <= t:
                row = r  # later in the partition wins at equal times
        return row

    expected = {}
    for o in orders:
        row = as_of(o["customer"], o["timestamp"])
        if o["status"] != "paid" or row is None:
            continue
        k = (row["country"], o["timestamp"] // WINDOW_MS * WINDOW_MS)
        total, n = expected.get(k, (0, 0))
        expected[k] = (total + o["amount"], n + 1)
    expected = sorted((c, ws, t, n) for (c, ws), (t, n) in expected.items())
    assert len(expected) > 30
    return orders, expected, moved_at


def test_two_source_topics_table_join_as_of_event_time_with_updates_and_tombstones(weir, tmp_path):
    """Orders (3 partitions, random record keys) joined with a customers table (2 partitions,
    keyed by id): rows change country half-way and some are deleted by tombstones. The join
    stage co-partitions both through one repartition topic; every order joins its customer's
    row as of the order's time; the sums per country and minute equal that computation."""
    orders, expected, moved_at = table_join_case(weir, "e_orders", "e_customers")
    db = tmp_path / "sums.db"
    path = tmp_path / "enrich.yaml"
    path.write_text(f"""
name: enrich
sources:
  orders: {{ kafka: {{ brokers: "{weir.bootstrap}", topic: e_orders }}, time_field: timestamp }}
  customers: {{ kafka: {{ brokers: "{weir.bootstrap}", topic: e_customers }}, time_field: timestamp, key_field: id }}
out_of_orderness: 5s
steps:
  - join: {{ left: orders, left_key: "event.customer", right: customers, right_key: "event.id", table: true }}
  - filter: "event.left.status == 'paid'"
  - map: "{{'country': event.right.country, 'amount': event.left.amount}}"
  - key_by: "event.country"
  - window: {{ tumbling: 1m, aggregates: [ {{ total: "sum(amount)" }}, {{ orders: count }} ] }}
sink: {{ sqlite: {db}, table: sums }}
dead_letters: {{ jsonl: {tmp_path / "dead.jsonl"} }}
checkpoint: {{ interval: 200ms }}
""")
    out = subprocess.run([WEIR_BIN, "pipeline", "run", str(path), "--until-end"], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sqlite_rows(db) == expected
    # The tombstones mattered: without them the deleted customers' later orders would count.
    deleted = [o for o in orders if o["customer"] >= "c20" and o["status"] == "paid" and o["timestamp"] >= moved_at]
    assert deleted and sum(n for *_, n in expected) < sum(1 for o in orders if o["status"] == "paid")
    # The join's repartition topic has the larger source's partition count.
    md = AdminClient({"bootstrap.servers": weir.bootstrap}).list_topics(timeout=10)
    assert len(md.topics["enrich-1-repartition"].partitions) == 3
