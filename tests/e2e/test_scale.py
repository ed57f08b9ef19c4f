"""One owner per data directory, file-descriptor limits, and many partitions (issue 21).

Brokers started here may run under a lowered RLIMIT_NOFILE (set in the child before exec),
so they start through `Weir` subclassed with a preexec hook.
"""

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

import requests
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import WEIR_BIN, Weir


class LimitedWeir(Weir):
    """A broker whose RLIMIT_NOFILE (soft and hard) is `nofile`, and extra environment."""

    def __init__(self, data_dir, nofile=None, env=None, extra_args=()):
        self.nofile = nofile
        self.env = env or {}
        super().__init__(data_dir, extra_args)

    def start(self, port=None):
        listen = f"127.0.0.1:{port or self.port or 0}"
        http_listen = f"127.0.0.1:{self.http_port or 0}"
        nofile = self.nofile

        def limit():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [WEIR_BIN, "serve", "--data-dir", self.data_dir, "--kafka-listen", listen, "--http-listen", http_listen,
             *self.extra_args],
            stdout=subprocess.PIPE, stderr=log, preexec_fn=limit,
            env={**os.environ, "WEIR_LOG": "info", "NO_COLOR": "1", **self.env},
        )
        line = self.proc.stdout.readline().decode()
        m = re.search(r"kafka listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"weir did not start: {line!r}; log in {self.log_path}")
        self.port = int(m.group(1))
        line = self.proc.stdout.readline().decode()
        self.http_port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def serve_again(data_dir):
    """A second `weir serve` on `data_dir` with its own ports; returns (exit code, stderr, seconds)."""
    started = time.monotonic()
    p = subprocess.Popen(
        [WEIR_BIN, "serve", "--data-dir", str(data_dir), "--kafka-listen", "127.0.0.1:0",
         "--http-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError("the second broker kept running on a data directory in use")
    return p.returncode, out.decode(), err.decode(), time.monotonic() - started


def metric(text, name):
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def produce_one_each(bootstrap, topic, partitions, tag):
    delivered = {}

    def on_delivery(err, msg):
        assert err is None, err
        delivered[msg.partition()] = msg.offset()

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(partitions):
        while True:
            try:
                p.produce(topic, value=f"{tag}-{i}".encode(), partition=i, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0
    assert len(delivered) == partitions
    return delivered


def consume_every_partition(bootstrap, topic, partitions, expect):
    """Reads every partition from offset 0; returns {partition: [values]} once each holds `expect`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    c.assign([TopicPartition(topic, i, 0) for i in range(partitions)])
    seen = {}
    deadline = time.monotonic() + 120
    while sum(len(v) for v in seen.values()) < partitions * expect and time.monotonic() < deadline:
        for m in c.consume(1000, timeout=1):
            assert m.error() is None, m.error()
            seen.setdefault(m.partition(), []).append(m.value().decode())
    c.close()
    return seen


def test_second_broker_on_a_data_dir_in_use_exits_at_once_and_kill_9_frees_it(tmp_path):
    data = tmp_path / "data"
    first = Weir(data)
    try:
        rc, out, err, seconds = serve_again(data)
        assert rc != 0
        assert seconds < 1.0, f"the second broker took {seconds:.2f} s to give up"
        assert "in use" in err and str(data) in err and f"pid {first.proc.pid}" in err, err
        assert "listening" not in out
        assert (data / ".lock").read_text().strip() == str(first.proc.pid)
        # The first one is unharmed.
        produce_one_each(first.bootstrap, "locked", 1, "before")
        # A stale lock never blocks: after kill -9 a new broker takes the directory.
        first.stop(signal.SIGKILL)
        first.start()
        assert (data / ".lock").read_text().strip() == str(first.proc.pid)
        got = consume_every_partition(first.bootstrap, "locked", 1, 1)
        assert got == {0: ["before-0"]}
    finally:
        if first.alive():
            first.stop(signal.SIGKILL)


def test_topic_creation_that_runs_out_of_fds_leaves_no_partial_topic(tmp_path):
    data = tmp_path / "data"
    # Too few descriptors for 400 open partitions, and a pool budget above the limit, so the
    # open fails part-way (as when the operator sets --open-files-max too high).
    w = LimitedWeir(data, nofile=256, env={"WEIR_OPEN_FILES_MAX": "100000"})
    try:
        admin = AdminClient({"bootstrap.servers": w.bootstrap})
        f = admin.create_topics([NewTopic("wide", 400, 1)], operation_timeout=30)["wide"]
        try:
            f.result()
            raise AssertionError("creating 400 partitions under RLIMIT_NOFILE=256 succeeded")
        except KafkaException as e:
            assert "Too many open files" in str(e) or "os error 24" in str(e), str(e)
        # Nothing of it is left, in memory or on disk, and the broker still serves.
        assert "wide" not in admin.list_topics(timeout=10).topics
        assert not (data / "topics" / "wide").exists()
        assert not any((data / "creating").glob("*")) if (data / "creating").exists() else True
        produce_one_each(w.bootstrap, "small", 1, "still-serving")
        # Restart with the limit raised: the topic is absent, and a retry succeeds.
        w.stop()
        w.nofile = None
        w.env = {}
        w.start()
        admin = AdminClient({"bootstrap.servers": w.bootstrap})
        assert "wide" not in admin.list_topics(timeout=10).topics
        assert not (data / "creating").exists()
        admin.create_topics([NewTopic("wide", 400, 1)], operation_timeout=30)["wide"].result()
        assert len(admin.list_topics(timeout=10).topics["wide"].partitions) == 400
        assert sorted(os.listdir(data / "topics" / "wide")) == sorted([str(i) for i in range(400)] + ["topic.json"])
        produce_one_each(w.bootstrap, "wide", 400, "retry")
    finally:
        if w.alive():
            w.stop(signal.SIGKILL)


def test_more_partitions_than_the_fd_limit_all_produce_and_fetch(tmp_path):
    partitions = 3000
    w = LimitedWeir(tmp_path / "data", nofile=1024)
    try:
        admin = AdminClient({"bootstrap.servers": w.bootstrap})
        admin.create_topics([NewTopic("many", partitions, 1)], operation_timeout=60)["many"].result()
        offsets = produce_one_each(w.bootstrap, "many", partitions, "a")
        assert set(offsets.values()) == {0}
        assert w.open_fds() < 1024
        got = consume_every_partition(w.bootstrap, "many", partitions, 1)
        assert got == {i: [f"a-{i}"] for i in range(partitions)}
        # Restart under the same limit (every partition opens and recovers), then again
        # produce to and fetch from every partition.
        w.restart()
        produce_one_each(w.bootstrap, "many", partitions, "b")
        got = consume_every_partition(w.bootstrap, "many", partitions, 2)
        assert got == {i: [f"a-{i}", f"b-{i}"] for i in range(partitions)}
        assert w.open_fds() < 1024
        # The pool did close and reopen files (or the test proves nothing), within its budget.
        metrics = requests.get(f"{w.http}/metrics", timeout=10).text
        assert metric(metrics, "weir_log_files_reopened_total") >= partitions
        assert metric(metrics, "weir_log_files_open") <= 512
    finally:
        if w.alive():
            w.stop(signal.SIGKILL)


def test_topic_list_pages_in_name_order(weir):
    admin = AdminClient({"bootstrap.servers": weir.bootstrap})
    names = [f"page-{i:02d}" for i in range(7)]
    for f in admin.create_topics([NewTopic(n, 2, 1) for n in names]).values():
        f.result()

    def page(*args):
        r = subprocess.run([WEIR_BIN, "topic", "-b", weir.bootstrap, "list", "-o", "json", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [t["name"] for t in json.loads(r.stdout)], r.stderr

    first, hint = page("--limit", "3", "--after", "page")
    assert first == names[:3]
    assert "next page: --after page-02" in hint
    second, _ = page("--limit", "3", "--after", first[-1])
    assert second == names[3:6]
    last, hint = page("--limit", "3", "--after", second[-1])
    assert last == names[6:] and "next page" not in hint
    everything, hint = page()
    assert [n for n in everything if n.startswith("page-")] == names and hint == ""


def test_partition_benchmark_runs(tmp_path):
    """scripts/bench-partitions (the scale table in docs/PERFORMANCE.md) at a small size: it
    must run to the end and print a row; its figures are reported, not asserted."""
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "bench-partitions")
    r = subprocess.run(
        [sys.executable, script, "--bin", WEIR_BIN, "--counts", "100", "--big-topic", "300", "--per-partition", "2",
         "--idle-seconds", "1", "--settle-seconds", "0", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| 100 |")]
    assert len(rows) == 1, r.stdout
    assert "one topic of 300 partitions created" in r.stdout
    print(r.stdout)
