"""Full disk: the broker on a 24 MiB tmpfs. Produce fails with KAFKA_STORAGE_ERROR, nothing
partial is readable, reads keep working, and producing works again once space is freed —
without a restart. Needs root (mount); skipped otherwise."""

import os
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import Weir


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.decode()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def produce(bootstrap, topic, n, size, partition=0):
    results = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "message.timeout.ms": 10000,
                  "retries": 0, "batch.size": 65536})
    for i in range(n):
        p.produce(topic, value=f"{i:08d}".encode() + b"x" * size, partition=partition,
                  on_delivery=lambda e, m: results.append((e, m.offset() if e is None else None)))
        p.poll(0)
    p.flush(30)
    return results


def test_full_disk_fails_cleanly_and_recovers_without_restart(small_disk):
    w = Weir(small_disk / "data", ["--segment-bytes", "4194304"])
    try:
        a = AdminClient({"bootstrap.servers": w.bootstrap})
        for f in a.create_topics([NewTopic("filler", 1, 1), NewTopic("events", 1, 1)]).values():
            f.result(10)
        # Fill most of the disk with a topic we can delete later.
        produce(w.bootstrap, "filler", 1500, 10_000)
        before = produce(w.bootstrap, "events", 200, 1000)
        assert all(e is None for e, _ in before)
        # Now run it full.
        results = produce(w.bootstrap, "events", 3000, 10_000)
        errors = [e for e, _ in results if e is not None]
        assert errors, "the disk never filled"
        assert any(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in errors), {e.name() for e in errors}
        acked = 200 + sum(1 for e, _ in results if e is None)

        # Reads keep working, and only whole, valid records are there.
        c = Consumer({"bootstrap.servers": w.bootstrap, "group.id": "r", "enable.auto.commit": False})
        c.assign([TopicPartition("events", 0, 0)])
        values = []
        deadline = time.monotonic() + 30
        while len(values) < acked and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                assert m.error() is None, m.error()
                values.append(m.value())
        c.close()
        assert len(values) == acked
        assert all(v[8:] == b"x" * len(v[8:]) and len(v) in (1008, 10_008) for v in values)

        # Free space by deleting the filler topic: producing works again, same process.
        for f in a.delete_topics(["filler"]).values():
            f.result(10)
        after = produce(w.bootstrap, "events", 50, 1000)
        assert all(e is None for e, _ in after), [e for e, _ in after if e][:3]
        offsets = [o for _, o in after]
        assert offsets[0] == acked and offsets == list(range(acked, acked + 50)), "offsets continue with no gap"
        log = open(w.log_path).read()
        assert "No space left" in log or "no space" in log.lower(), "the failure is logged"
    finally:
        if w.alive():
            w.stop()
