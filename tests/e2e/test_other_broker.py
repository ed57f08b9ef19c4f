"""The CLI's data and admin commands against a Kafka-protocol implementation we did not write:
librdkafka's mock cluster (three brokers on 127.0.0.1), started through confluent-kafka in a
child process. Partitions have different leaders, the group coordinator is one of the three,
ApiVersions v3 is refused (the mock knows v0-v2), and several admin APIs do not exist there:
the CLI must route each request to the right broker, speak the versions the broker offers, and
say which API is missing instead of failing on a closed connection."""

import json
import subprocess
import sys

import pytest

from conftest import WEIR_BIN

MOCK = r"""
import sys, time
import confluent_kafka
p = confluent_kafka.Producer({"test.mock.num.brokers": 3, "bootstrap.servers": "", "log_level": 0})
md = p.list_topics(timeout=10)
print(",".join(f"{b.host}:{b.port}" for b in md.brokers.values()), flush=True)
sys.stdin.read()  # lives until the test closes stdin
"""


@pytest.fixture
def mock_cluster():
    proc = subprocess.Popen([sys.executable, "-c", MOCK], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.count(",") == 2, f"mock cluster did not start: {line!r}"
        assert all(a.startswith("127.0.0.1:") for a in line.split(","))
        yield line
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def cli(*args, input=None, check=True):
    r = subprocess.run([WEIR_BIN, *args], capture_output=True, text=True, input=input, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def kcat(*args, input=None):
    r = subprocess.run(["kcat", *args], capture_output=True, text=True, input=input, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cli_against_librdkafka_mock_cluster(mock_cluster):
    b = ["-b", mock_cluster]
    # The mock creates topics (4 partitions over 3 brokers) on first produce's metadata.
    lines = "".join(f"k{i % 7}:v{i}\n" for i in range(200))
    assert "produced 200 records" in cli("produce", *b, "from-weir", "-K", ":", input=lines).stderr
    # Another client reads what the CLI produced, keys included, from every leader.
    got = kcat("-b", mock_cluster, "-C", "-t", "from-weir", "-e", "-q", "-f", "%k:%s\n")
    assert sorted(got.splitlines()) == sorted(lines.splitlines())
    # And the CLI reads what that client produced.
    kcat("-b", mock_cluster, "-P", "-t", "from-kcat", "-K", ":", input="".join(f"a{i}:x{i}\n" for i in range(50)))
    recs = [json.loads(x) for x in cli("consume", *b, "from-kcat", "-o", "json").stdout.splitlines()]
    assert sorted(r["value"] for r in recs) == sorted(f"x{i}" for i in range(50))
    assert {r["partition"] for r in recs} == {0, 1, 2, 3}
    assert all(r["key"] == "a" + r["value"][1:] for r in recs)
    # Group progress through the group's coordinator: 20, then the other 30, nothing twice.
    first = cli("consume", *b, "from-kcat", "-g", "readers", "--max", "20").stdout.splitlines()
    rest = cli("consume", *b, "from-kcat", "-g", "readers").stdout.splitlines()
    assert len(first) == 20 and sorted(first + rest) == sorted(f"x{i}" for i in range(50))
    assert cli("consume", *b, "from-kcat", "-g", "readers").stdout == ""
    # Listing and describing use what the mock offers; what it lacks is said, not guessed.
    topics = {t["name"]: t["partitions"] for t in json.loads(cli("topic", *b, "list", "-o", "json").stdout)}
    assert topics == {"from-weir": 4, "from-kcat": 4}
    d = json.loads(cli("topic", *b, "describe", "from-kcat", "-o", "json").stdout)
    assert sum(p["log_end_offset"] - p["log_start_offset"] for p in d["partitions"]) == 50
    assert d["configs"] is None
    table = cli("topic", *b, "describe", "from-kcat").stdout
    assert "configs: unknown (the broker does not support DescribeConfigs)" in table
    st = cli("status", *b).stdout
    assert "mockCluster" in st and st.count("kafka  ") == 3, st
    assert "groups       unknown (the broker does not support ListGroups)" in st
    for args, api in [(("topic", *b, "create", "new", "-p", "2"), "CreateTopics (API key 19)"),
                      (("topic", *b, "delete", "from-weir"), "DeleteTopics (API key 20)"),
                      (("group", *b, "list"), "ListGroups (API key 16)"),
                      (("group", *b, "describe", "readers"), "DescribeGroups (API key 15)")]:
        r = cli(*args, check=False)
        assert r.returncode != 0
        assert f"does not support {api}" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_routes_to_leaders_and_coordinators_of_weir_too(weir):
    """The same code paths against Weir (one broker: every leader and coordinator is it)."""
    b = ["-b", weir.bootstrap]
    cli("topic", *b, "create", "routed", "-p", "3")
    cli("produce", *b, "routed", "-K", ":", input="".join(f"k{i}:v{i}\n" for i in range(30)))
    first = cli("consume", *b, "routed", "-g", "g", "--max", "10").stdout.splitlines()
    rest = cli("consume", *b, "routed", "-g", "g").stdout.splitlines()
    assert sorted(first + rest) == sorted(f"v{i}" for i in range(30))
    groups = json.loads(cli("group", *b, "list", "-o", "json").stdout)
    assert [g["group"] for g in groups] == ["g"]
    st = json.loads(cli("status", *b, "-o", "json").stdout)
    assert st["groups"] == {"Empty": 1} and st["log_dirs"]
