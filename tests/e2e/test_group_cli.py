"""`weir group ...` against a running broker."""

import json
import signal
import subprocess

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import WEIR_BIN


def weir(*args, check=True):
    r = subprocess.run([WEIR_BIN, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_group_list_describe_reset_delete(weir_factory):
    w = weir_factory("--group-initial-rebalance-delay-ms", "0")
    b = ["--bootstrap", w.bootstrap]
    a = AdminClient({"bootstrap.servers": w.bootstrap})
    for f in a.create_topics([NewTopic("clicks", 2, 1)]).values():
        f.result(10)
    p = Producer({"bootstrap.servers": w.bootstrap})
    for i in range(100):
        p.produce("clicks", value=b"x", partition=i % 2)
    p.flush(10)

    # A member consumes 60 messages and commits, then stays in the group.
    c = Consumer({"bootstrap.servers": w.bootstrap, "group.id": "analytics", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["clicks"])
    got = 0
    while got < 60:
        for m in c.consume(60 - got, timeout=1):
            if m.error() is None:
                got += 1
    c.commit(asynchronous=False)

    groups = json.loads(weir("group", *b, "list", "-o", "json").stdout)
    assert {"group": "analytics", "state": "Stable", "protocol_type": "consumer"} in groups
    table = weir("group", *b, "list").stdout
    assert "analytics" in table and "Stable" in table

    d = json.loads(weir("group", *b, "describe", "analytics", "-o", "json").stdout)
    assert d["state"] == "Stable" and len(d["members"]) == 1
    assert sorted((x["topic"], x["partition"]) for x in d["members"][0]["assignment"]) == [("clicks", 0), ("clicks", 1)]
    assert sum(x["committed_offset"] for x in d["partitions"]) == 60
    assert sum(x["lag"] for x in d["partitions"]) == 40
    assert all(x["log_end_offset"] == 50 for x in d["partitions"])

    # Reset refuses while the member is active; one line, nonzero exit.
    r = weir("group", *b, "reset-offsets", "analytics", "--to", "earliest", check=False)
    assert r.returncode != 0 and "active member" in r.stderr and r.stderr.count("\n") == 1
    c.close()

    out = json.loads(weir("group", *b, "reset-offsets", "analytics", "--to", "earliest", "-o", "json").stdout)
    assert sorted((x["topic"], x["partition"], x["offset"]) for x in out) == [("clicks", 0, 0), ("clicks", 1, 0)]
    d = json.loads(weir("group", *b, "describe", "analytics", "-o", "json").stdout)
    assert d["state"] == "Empty" and sum(x["lag"] for x in d["partitions"]) == 100
    weir("group", *b, "reset-offsets", "analytics", "--to", "latest")
    d = json.loads(weir("group", *b, "describe", "analytics", "-o", "json").stdout)
    assert sum(x["lag"] for x in d["partitions"]) == 0

    assert "deleted" in weir("group", *b, "delete", "analytics").stdout
    r = weir("group", *b, "describe", "analytics", check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_cli_reports_a_down_broker_in_one_line(tmp_path):
    r = weir("group", "--bootstrap", "127.0.0.1:1", "list", check=False)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "cannot reach the broker" in r.stderr
