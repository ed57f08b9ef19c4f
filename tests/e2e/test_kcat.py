"""Debian's kcat (librdkafka 2.0.2) against weir: every codec, listing, restart."""

import subprocess
from collections import defaultdict

import pytest
from conftest import WEIR_BIN
from confluent_kafka.admin import AdminClient, NewTopic


def kcat(*args, input=None, timeout=60):
    r = subprocess.run(["kcat", *args], input=input, capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result(timeout=10)


def consume_all(bootstrap, topic):
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%p\t%o\t%k\t%s\n")
    by_partition = defaultdict(list)
    for line in out.splitlines():
        p, o, k, v = line.split("\t")
        by_partition[int(p)].append((int(o), k, v))
    return by_partition


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_roundtrip_every_codec(weir, codec):
    topic = f"kcat-{codec}"
    create_topic(weir.bootstrap, topic, 3)
    lines = [f"key{i % 97}:{codec}-value-{i}" for i in range(10_000)]
    kcat("-b", weir.bootstrap, "-P", "-t", topic, "-z", codec, "-K:", input="\n".join(lines).encode())
    got = consume_all(weir.bootstrap, topic)
    assert sum(len(v) for v in got.values()) == 10_000
    assert len(got) == 3, "keys spread over all 3 partitions"
    # Per partition: dense offsets from 0, and the order the producer sent per key.
    sent_by_key = defaultdict(list)
    for line in lines:
        k, v = line.split(":", 1)
        sent_by_key[k].append(v)
    got_by_key = defaultdict(list)
    for p, records in got.items():
        assert [o for o, _, _ in records] == list(range(len(records)))
        for _, k, v in records:
            got_by_key[k].append(v)
    assert got_by_key == sent_by_key


def test_kcat_lists_topics_and_partitions(weir):
    create_topic(weir.bootstrap, "listed", 4)
    out = kcat("-b", weir.bootstrap, "-L", "-t", "listed")
    assert 'topic "listed" with 4 partitions' in out
    for p in range(4):
        assert f"partition {p}, leader 0" in out
    assert f"broker 0 at {weir.bootstrap}" in out


def test_restart_between_produce_and_consume_keeps_everything(weir):
    create_topic(weir.bootstrap, "durable", 2)
    lines = [f"k{i % 10}:v{i}" for i in range(2000)]
    kcat("-b", weir.bootstrap, "-P", "-t", "durable", "-K:", input="\n".join(lines).encode())
    before = consume_all(weir.bootstrap, "durable")
    assert weir.restart() == 0, "graceful shutdown exits 0"
    assert consume_all(weir.bootstrap, "durable") == before
    # Killed without a shutdown: page-cache data survives a process crash, offsets continue.
    weir.restart(sig=9)
    assert consume_all(weir.bootstrap, "durable") == before
    kcat("-b", weir.bootstrap, "-P", "-t", "durable", "-p", "0", input=b"after-restart")
    after = consume_all(weir.bootstrap, "durable")
    assert after[0][-1] == (len(before[0]), "", "after-restart")


def test_kcat_exiting_normally_logs_no_warning(weir):
    # Produce, consume to the end, consume as a group member, list: each kcat exits with
    # requests (a long-poll fetch, a heartbeat) still in flight, which is a normal close.
    kcat("-b", weir.bootstrap, "-P", "-t", "calm", "-K:", input=b"a:1\nb:2\nc:3\n")
    assert len(consume_all(weir.bootstrap, "calm")[0]) == 3
    kcat("-b", weir.bootstrap, "-G", "calm-group", "calm", "-e", "-q", "-X", "auto.offset.reset=earliest")
    kcat("-b", weir.bootstrap, "-L")
    # The bench's consumers exit with a fetch in flight: its response meets a closed socket.
    r = subprocess.run([WEIR_BIN, "bench", "e2e", "--bootstrap", weir.bootstrap, "--duration", "2", "--rate", "1000"],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    weir.stop()
    with open(weir.log_path) as f:
        warnings = [line for line in f if " WARN " in line or " ERROR " in line]
    assert warnings == [], "".join(warnings)
