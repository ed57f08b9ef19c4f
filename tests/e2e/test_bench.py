"""`weir bench` smoke runs against a fresh broker (figures are reported, not asserted)."""

import json
import subprocess

from conftest import WEIR_BIN


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
