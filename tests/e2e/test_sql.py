"""Streaming SQL end to end: `weir sql validate|explain` on the examples, and a windowed SQL
query over a real `weir serve` topic into PostgreSQL, checked against SQLite running the same
GROUP BY over the same rows. Also: kill -9 ten times (the table equals an uninterrupted run's)
and two instances in one group."""

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import time

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import WEIR_BIN, wait_for

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "nexmark")
PARTITIONS = 4
WINDOW_MS = 10_000
BASE_MS = 1_700_000_000_000


def test_sql_validate_explain_and_errors(tmp_path):
    scripts = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".sql"))
    assert len(scripts) >= 7, scripts
    for f in scripts:
        r = subprocess.run([WEIR_BIN, "sql", "validate", os.path.join(EXAMPLES, f)], capture_output=True, text=True)
        assert r.returncode == 0, (f, r.stderr)
        assert "is valid" in r.stdout
    r = subprocess.run([WEIR_BIN, "sql", "explain", os.path.join(EXAMPLES, "q5.sql")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "window Sliding" in r.stdout and "top 1 by" in r.stdout and "stage(s)" in r.stdout, r.stdout
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE SOURCE t (a BIGINT) WITH (format = 'jsonl', path = 't.jsonl');\n"
                   "CREATE SINK s AS SELECT a, b FROM t;\n")
    r = subprocess.run([WEIR_BIN, "sql", "validate", str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "line 2, column 28: unknown column b" in r.stderr, r.stderr


def make_orders(n, seed):
    """(partition, order) pairs: time order within ±2 s (the watermark trails by 5 s, so none is
    late), a fifth cancelled; then an `end` marker per partition an hour later, which moves every
    partition's watermark past the last window."""
    rng = random.Random(seed)
    out = []
    t = BASE_MS
    for i in range(n):
        t += rng.randint(5, 60)
        customer = f"c{rng.randint(0, 19):02d}"
        out.append((rng.randrange(PARTITIONS), {
            "id": i, "customer": customer, "amount": rng.randint(1, 500),
            "status": "paid" if rng.random() < 0.8 else "cancelled", "ts": t + rng.randint(-2000, 2000)}))
    for p in range(PARTITIONS):
        out.append((p, {"status": "end", "ts": t + 3_600_000}))
    return out


def expected(orders):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE o (customer TEXT, amount INTEGER, status TEXT, ts INTEGER)")
    db.executemany("INSERT INTO o VALUES (?, ?, ?, ?)",
                   [(o.get("customer"), o.get("amount"), o["status"], o["ts"]) for _, o in orders])
    return db.execute(f"SELECT customer, ts / {WINDOW_MS} * {WINDOW_MS}, SUM(amount), COUNT(*) FROM o "
                      "WHERE status = 'paid' GROUP BY 1, 2 ORDER BY 1, 2").fetchall()


class Setup:
    def __init__(self, weir, pg, tmp_path, name, orders, extra=""):
        self.weir, self.pg, self.name, self.orders = weir, pg, name, orders
        self.topic, self.table = f"sql_orders_{name}", f"sql_sums_{name}"
        admin = AdminClient({"bootstrap.servers": weir.bootstrap})
        admin.create_topics([NewTopic(self.topic, PARTITIONS, 1)])[self.topic].result(timeout=30)
        with psycopg.connect(pg, autocommit=True) as c:
            c.execute(f"DROP TABLE IF EXISTS {self.table}")
            if c.execute("SELECT to_regclass('weir_checkpoints')").fetchone()[0] is not None:
                c.execute("DELETE FROM weir_checkpoints WHERE id LIKE %s", (f"{name}/%",))
        self.script = tmp_path / f"{name}.sql"
        self.script.write_text(f"""
-- Paid order totals per customer and 10 s window.
CREATE SOURCE orders (
    id BIGINT, customer VARCHAR, amount BIGINT, status VARCHAR, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (format = 'json', topic = '{self.topic}', brokers = '{weir.bootstrap}', group = '{name}',
        'properties.session.timeout.ms' = '6000'{extra});

CREATE SINK {name} WITH (format = 'postgres', conninfo = '{pg}', table = '{self.table}',
                         checkpoint_interval = '300ms') AS
SELECT customer, window_start, SUM(amount) AS total, COUNT(*) AS orders
FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '10' SECOND))
WHERE status = 'paid'
GROUP BY customer, window_start, window_end;
""")

    def produce(self, pace_s=0.0):
        prod = Producer({"bootstrap.servers": self.weir.bootstrap, "enable.idempotence": True, "linger.ms": 5})
        for i, (p, o) in enumerate(self.orders):
            prod.produce(self.topic, value=json.dumps(o).encode(), partition=p)
            if i % 500 == 0:
                prod.poll(0)
                if pace_s:
                    time.sleep(pace_s)
        assert prod.flush(30) == 0

    def start(self, log_name):
        log = open(self.script.parent / f"{self.name}-{log_name}.log", "ab")
        return subprocess.Popen([WEIR_BIN, "sql", "run", str(self.script)], stdout=log, stderr=log,
                                env={**os.environ, "WEIR_LOG": "info", "NO_COLOR": "1"})

    def run_to_end(self, timeout=120):
        out = subprocess.run([WEIR_BIN, "sql", "run", str(self.script), "--until-end"],
                             capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, out.stderr[-3000:]
        m = re.search(r"(\d+) events? in", out.stderr)
        assert m, out.stderr[-3000:]
        return int(m.group(1))

    def rows(self):
        with psycopg.connect(self.pg) as c:
            if c.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()[0] is None:
                return []
            return c.execute(f"SELECT customer, window_start, total, orders FROM {self.table} "
                             "ORDER BY customer, window_start").fetchall()


def test_sql_over_a_topic_into_postgres_equals_group_by(weir, pg, tmp_path):
    orders = make_orders(20_000, seed=1)
    want = expected(orders)
    assert len(want) > 500
    s = Setup(weir, pg, tmp_path, "sqlonce", orders)
    s.produce()
    assert s.run_to_end() == len(orders)
    assert s.rows() == want
    # A second run finds its checkpoints: nothing is read again, nothing is written twice.
    assert s.run_to_end() == 0
    assert s.rows() == want


def test_sql_kill_9_ten_times_changes_nothing(weir, pg, tmp_path):
    orders = make_orders(30_000, seed=2)
    want = expected(orders)
    s = Setup(weir, pg, tmp_path, "sqlcrash", orders, extra=", 'properties.group.instance.id' = 'sqlcrash-1'")
    import threading
    producer = threading.Thread(target=s.produce, kwargs={"pace_s": 0.2})
    producer.start()
    rng = random.Random(7)
    for kill in range(10):
        proc = s.start(log_name=f"run{kill}")
        time.sleep(rng.uniform(0.5, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    producer.join()
    assert s.run_to_end() < len(orders), "the last run should resume from a checkpoint"
    resumed = sum("restored checkpoint" in (tmp_path / f"sqlcrash-run{i}.log").read_text() for i in range(10))
    assert resumed >= 3, f"only {resumed} runs were killed after their first checkpoint"
    assert s.rows() == want


def test_sql_two_instances_split_the_partitions(weir, pg, tmp_path):
    orders = make_orders(12_000, seed=3)
    want = expected(orders)
    s = Setup(weir, pg, tmp_path, "sqlpair", orders)
    a, b = s.start("a"), s.start("b")
    s.produce(pace_s=0.02)
    wait_for(lambda: s.rows() == want, timeout=120, interval=0.5, what="both instances' rows")
    counts = []
    for proc, log in ((a, "a"), (b, "b")):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        m = re.search(r"(\d+) events? in", (tmp_path / f"sqlpair-{log}.log").read_text())
        counts.append(int(m.group(1)))
    assert all(n > 0 for n in counts), f"one instance did nothing: {counts}"
    assert s.rows() == want


def test_sql_ad_hoc_query_over_a_topic(weir):
    """`weir sql "SELECT …"`: a topic read as it is now, records written by kcat, columns inferred
    from the JSON values plus the record's key and timestamp; ORDER BY and LIMIT on the answer."""
    admin = AdminClient({"bootstrap.servers": weir.bootstrap})
    admin.create_topics([NewTopic("adhoc_orders", 3, 1)])["adhoc_orders"].result(timeout=30)
    rng = random.Random(5)
    lines, totals = [], {}
    for i in range(300):
        k = f"c{rng.randint(0, 9)}"
        amount = rng.randint(1, 100)
        totals[k] = totals.get(k, 0) + amount
        lines.append(f'{k}:{{"amount": {amount}, "i": {i}}}')
    r = subprocess.run(["kcat", "-b", weir.bootstrap, "-t", "adhoc_orders", "-P", "-K:"], input="\n".join(lines) + "\n",
                       text=True, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    query = "SELECT key, COUNT(*) AS n, SUM(amount) AS total FROM adhoc_orders GROUP BY key ORDER BY total DESC LIMIT 3"
    r = subprocess.run([WEIR_BIN, "sql", "-b", weir.bootstrap, "-o", "json", query], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    want = sorted(totals.items(), key=lambda kv: -kv[1])[:3]
    assert [(row["key"], row["total"]) for row in got] == want, (got, want)
    r = subprocess.run([WEIR_BIN, "sql", "-b", weir.bootstrap, query], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    table = r.stdout.splitlines()
    assert table[0].split() == ["KEY", "N", "TOTAL"] and len(table) == 4, r.stdout
    assert "3 rows (from 300 records)" in r.stderr
    r = subprocess.run([WEIR_BIN, "sql", "-b", weir.bootstrap, "SELECT nope FROM adhoc_orders"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "line 1, column 8: unknown column nope" in r.stderr, r.stderr


def test_sql_temporal_join_with_a_compacted_topic(weir, tmp_path):
    """`JOIN customers FOR SYSTEM_TIME AS OF o.ts`: the orders topic joined with a customers
    table topic (updates half-way, tombstones) in SQL, windowed over the joined rows: the same
    sums as the YAML table join's test computes, and a second run resumes from the checkpoint."""
    from test_dataflow import table_join_case
    orders, expected, _ = table_join_case(weir, "sql_e_orders", "sql_e_customers")
    db = tmp_path / "sums.db"
    script = tmp_path / "enrich.sql"
    script.write_text(f"""
CREATE SOURCE orders (customer VARCHAR, amount BIGINT, status VARCHAR,
    "timestamp" TIMESTAMP, WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '5' SECOND)
  WITH (format = 'json', topic = 'sql_e_orders', brokers = '{weir.bootstrap}', group = 'sql-enrich');
CREATE TABLE customers (id VARCHAR, country VARCHAR, "timestamp" TIMESTAMP, PRIMARY KEY (id) NOT ENFORCED,
    WATERMARK FOR "timestamp" AS "timestamp")
  WITH (format = 'json', topic = 'sql_e_customers', brokers = '{weir.bootstrap}', group = 'sql-enrich');
CREATE VIEW enriched AS
SELECT c.country, o.amount, o."timestamp" AS t FROM orders AS o
JOIN customers FOR SYSTEM_TIME AS OF o."timestamp" AS c ON o.customer = c.id
WHERE o.status = 'paid';
CREATE SINK sums WITH (format = 'sqlite', path = '{db}', table = 'sums', checkpoint_interval = '200ms',
                       dead_letters = '{tmp_path / "dead.jsonl"}') AS
SELECT country, window_start, SUM(amount) AS total, COUNT(*) AS orders
FROM TABLE(TUMBLE(TABLE enriched, DESCRIPTOR(t), INTERVAL '1' MINUTE))
GROUP BY country, window_start, window_end;
""")
    r = subprocess.run([WEIR_BIN, "sql", "explain", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "join (temporal" in r.stdout and "right customers" in r.stdout, r.stdout
    out = subprocess.run([WEIR_BIN, "sql", "run", str(script), "--until-end"], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    got = sqlite3.connect(db).execute(
        "SELECT country, window_start, total, orders FROM sums ORDER BY country, window_start").fetchall()
    assert got == expected
