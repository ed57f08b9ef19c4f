"""`weir topic|produce|consume` against a running broker, cross-checked with kcat."""

import json
import subprocess

from conftest import WEIR_BIN


def cli(*args, input=None, check=True):
    r = subprocess.run([WEIR_BIN, *args], capture_output=True, text=True, input=input, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_topic_produce_consume_round_trip(weir):
    b = ["--bootstrap", weir.bootstrap]
    cli("topic", *b, "create", "cli", "-p", "3", "-c", "retention.ms=3600000")
    topics = json.loads(cli("topic", *b, "list", "-o", "json").stdout)
    assert {"name": "cli", "partitions": 3, "internal": False} in topics
    lines = "".join(f"k{i % 5}:v{i}\n" for i in range(3000))
    r = cli("produce", *b, "cli", "-K", ":", input=lines)
    assert "produced 3000 records" in r.stderr
    # kcat (another client) sees the same records, keyed the same way.
    k = subprocess.run(["kcat", "-b", weir.bootstrap, "-C", "-t", "cli", "-e", "-q", "-f", "%k:%s\n"],
                       capture_output=True, text=True, timeout=60)
    assert sorted(k.stdout.splitlines()) == sorted(lines.splitlines())
    out = cli("consume", *b, "cli", "--format", "json").stdout.splitlines()
    recs = [json.loads(x) for x in out]
    assert len(recs) == 3000
    per_key = {}
    for r_ in recs:
        per_key.setdefault(r_["key"], set()).add(r_["partition"])
    assert all(len(ps) == 1 for ps in per_key.values()), "a key always goes to one partition"
    d = json.loads(cli("topic", *b, "describe", "cli", "-o", "json").stdout)
    assert sum(p["log_end_offset"] for p in d["partitions"]) == 3000
    assert d["configs"]["retention.ms"] == "3600000"
    cli("topic", *b, "alter", "cli", "-c", "retention.ms=", "-c", "segment.bytes=1048576")
    d = json.loads(cli("topic", *b, "describe", "cli", "-o", "json").stdout)
    assert d["configs"]["retention.ms"] == "604800000" and d["configs"]["segment.bytes"] == "1048576"
    # Group progress: two runs of 1000 and the rest continue where the last left off.
    first = cli("consume", *b, "cli", "-g", "cli-readers", "--max", "1000").stdout.splitlines()
    rest = cli("consume", *b, "cli", "-g", "cli-readers").stdout.splitlines()
    assert len(first) == 1000 and len(rest) == 2000
    assert sorted(first + rest) == sorted(f"v{i}" for i in range(3000))
    # JSON lines and time-based starts.
    cli("produce", *b, "cli", "--json", "-p", "1", input='{"key": "j", "value": {"n": 1}, "headers": {"h": "1"}}\n')
    last = json.loads(cli("consume", *b, "cli", "-p", "1", "--from", "1m", "--format", "json").stdout.splitlines()[-1])
    assert last["key"] == "j" and last["value"] == {"n": 1}
    assert cli("consume", *b, "cli", "--from", "end").stdout == ""
    cli("topic", *b, "delete", "cli")


def test_cli_errors_are_one_line_and_nonzero(weir):
    b = ["--bootstrap", weir.bootstrap]
    for args in [("consume", *b, "missing"), ("produce", *b, "missing"), ("topic", *b, "describe", "missing"),
                 ("topic", *b, "delete", "missing"), ("consume", "--bootstrap", "127.0.0.1:1", "x")]:
        r = cli(*args, input="x\n", check=False)
        assert r.returncode != 0, args
        assert r.stderr.count("\n") == 1, (args, r.stderr)
    r = cli("topic", *b, "create", "bad name", check=False)
    assert r.returncode != 0 and "invalid" in r.stderr.lower(), r.stderr


def test_out_of_range_configs_are_refused_by_the_cli_and_the_serve_flags(weir, tmp_path):
    """One range check behind every front end: `weir topic create|alter -c` and the serve
    flags that set the broker's defaults refuse retention.ms=-5 naming key, value and range."""
    b = ["--bootstrap", weir.bootstrap]
    r = cli("topic", *b, "create", "cli-bad", "-c", "retention.ms=-5", check=False)
    assert r.returncode != 0 and "retention.ms" in r.stderr and "at least -1" in r.stderr, r.stderr
    cli("topic", *b, "create", "cli-ranged")
    r = cli("topic", *b, "alter", "cli-ranged", "-c", "segment.index.bytes=3", check=False)
    assert r.returncode != 0 and "segment.index.bytes" in r.stderr and "at least 4" in r.stderr, r.stderr
    r = subprocess.run([WEIR_BIN, "serve", "--data-dir", str(tmp_path / "d"), "--retention-ms=-5",
                        "--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "retention.ms" in r.stderr and "at least -1" in r.stderr, r.stderr
