"""`weir bench` smoke runs against a fresh broker (figures are reported, not asserted)."""

import json
import os
import subprocess

from conftest import WEIR_BIN

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "nexmark")


def bench(w, *args):
    r = subprocess.run([WEIR_BIN, "bench", *args, "--bootstrap", w.bootstrap, "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_bench_produce_consume_e2e(weir):
    p = bench(weir, "produce", "--duration", "10", "--size", "100", "--messages", "2000000")
    assert p["messages"] > 0 and p["errors"] == 0 and p["latency_us"]["p50"] > 0
    # Keyless records: the sticky partitioner spreads them over the default 3 partitions.
    spread = [x["messages"] for x in p["partitions"]]
    assert len(spread) == 3 and sum(spread) == p["messages"] and min(spread) > 0, spread
    # Consumption has its own pace: read what was produced (bounded by the duration).
    c = bench(weir, "consume", "--duration", "1m", "--count", str(p["messages"]))
    assert c["messages"] == p["messages"], (c["messages"], p["messages"])
    assert [x["messages"] for x in c["partitions"]] == spread
    e = bench(weir, "e2e", "--duration", "3s", "--rate", "5000", "--size", "1024")
    assert e["messages"] >= 14_000 and e["latency_us"]["p99"] > 0
    print(f"bench: produce {p['messages_per_second']:.0f} msg/s, consume {c['messages_per_second']:.0f} msg/s, "
          f"e2e p50 {e['latency_us']['p50']} us p99 {e['latency_us']['p99']} us")


def test_nexmark_via_a_topic_gives_the_in_process_outputs(weir):
    """The Rust test checks every query against an independent computation; this checks that
    going through a Weir topic and a real Kafka client changes nothing."""
    args = ["nexmark", "--events", "50000", "--event-rate", "1000"]
    local = {r["query"]: r for r in bench(weir, *args)}
    remote = {r["query"]: r for r in bench(weir, *args, "--via-topic")}
    assert sorted(local) == sorted(remote) == sorted(["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11"])
    for q, r in local.items():
        assert r["outputs"] > 0, q
        assert remote[q]["events"] == r["events"] == 50_000
        assert remote[q]["outputs"] == r["outputs"], q
    print("nexmark events/s: " + ", ".join(
        f"{q} {local[q]['events_per_second']:.0f}/{remote[q]['events_per_second']:.0f}" for q in sorted(local)))


def test_bench_pipeline_runs_specs_from_a_file_and_a_topic_alike(weir):
    """`weir bench pipeline`: the YAML specs through `weir pipeline run`, over a generated file
    and over a topic the same events were produced to, give the same number of outputs."""
    specs = []
    for q in ("q1", "q2", "q7"):
        specs += ["--spec", os.path.join(EXAMPLES, f"{q}.yaml")]
    args = ["pipeline", "--events", "30000", *specs]
    local = bench(weir, *args)
    remote = bench(weir, *args, "--via-topic")
    assert [r["spec"] for r in local] == [r["spec"] for r in remote] == ["q1.yaml", "q2.yaml", "q7.yaml"]
    for f, t in zip(local, remote):
        assert (f["mode"], t["mode"]) == ("file", "topic")
        assert f["events"] == t["events"] == 30_000
        assert f["cpu_seconds"] > 0 and f["max_rss_kb"] > 1000 and f["events_per_second"] > 0
    # Stateless specs give the same outputs both ways. A window over a topic stays open at the
    # end (--until-end stops reading; the topic may grow), where a file's end closes it.
    for f, t in zip(local[:2], remote[:2]):
        assert f["outputs"] == t["outputs"] > 0, (f, t)
    assert local[2]["outputs"] >= remote[2]["outputs"]
    # q1 keeps the bids (92 % of Nexmark events), q2 one auction in 123.
    assert 25_000 < local[0]["outputs"] < 30_000 and local[1]["outputs"] < 1_000
    print("bench pipeline events/s (file/topic): " + ", ".join(
        f"{f['spec']} {f['events_per_second']:.0f}/{t['events_per_second']:.0f}" for f, t in zip(local, remote)))


def test_bench_pipeline_runs_sql_scripts_from_a_file_and_a_topic_alike(weir):
    """The SQL scripts of examples/nexmark through `weir pipeline run`, over the file and over a
    topic the same events were produced to (through repartition topics for the join): the same
    outputs as each other and as the YAML specs."""
    names = ("q1", "q2", "q3")
    specs = []
    for q in names:
        specs += ["--spec", os.path.join(EXAMPLES, f"{q}.sql"), "--spec", os.path.join(EXAMPLES, f"{q}.yaml")]
    args = ["pipeline", "--events", "30000", *specs]
    local = bench(weir, *args)
    remote = bench(weir, *args, "--via-topic")
    for i, q in enumerate(names):
        sql_file, yaml_file = local[2 * i], local[2 * i + 1]
        sql_topic = remote[2 * i]
        assert sql_file["spec"] == f"{q}.sql" and sql_topic["mode"] == "topic"
        assert sql_file["outputs"] == yaml_file["outputs"] == sql_topic["outputs"] > 0, (q, sql_file, sql_topic)
    print("bench pipeline SQL events/s (file/topic): " + ", ".join(
        f"{local[2 * i]['spec']} {local[2 * i]['events_per_second']:.0f}/{remote[2 * i]['events_per_second']:.0f}"
        for i in range(len(names))))
