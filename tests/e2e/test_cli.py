"""`weir topic|produce|consume` against a running broker, cross-checked with kcat."""

import json
import os
import re
import signal
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
    for args in [("consume", *b, "missing"), ("topic", *b, "describe", "missing"),
                 ("topic", *b, "delete", "missing"), ("consume", "--bootstrap", "127.0.0.1:1", "x")]:
        r = cli(*args, input="x\n", check=False)
        assert r.returncode != 0, args
        assert r.stderr.count("\n") == 1, (args, r.stderr)
    r = cli("topic", *b, "create", "bad name", check=False)
    assert r.returncode != 0 and "invalid" in r.stderr.lower(), r.stderr


def produce(b, topic, lines, *args):
    return cli("produce", *b, topic, *args, input=lines)


def test_consume_formats_headers_and_counts(weir):
    b = ["--bootstrap", weir.bootstrap]
    cli("topic", *b, "create", "fmt", "-p", "2")
    r = produce(b, "fmt", '{"key": "a", "value": {"n": 1}, "headers": {"h1": "x", "h2": "y"}, "partition": 1}\n', "--json")
    assert "produced 1 record in" in r.stderr, r.stderr
    r = produce(b, "fmt", "k:v2\n", "-K", ":", "-p", "1")
    # kcat-style format: key, value, offset, timestamp, partition, topic, headers; escapes.
    out = cli("consume", *b, "fmt", "-p", "1", "-f", r"%k|%v|%o|%T|%p|%t|%h\n").stdout.splitlines()
    assert len(out) == 2, out
    k, v, o, ts, p, t, h = out[0].split("|")
    assert (k, v, o, p, t, h) == ("a", '{"n":1}', "0", "1", "fmt", "h1=x,h2=y") and int(ts) > 1_600_000_000_000
    assert out[1].split("|")[:3] == ["k", "v2", "1"] and out[1].endswith("|")
    # Without a \n in the format, each record still gets its line.
    assert cli("consume", *b, "fmt", "-p", "1", "-f", "%o %K %S").stdout == "0 1 7\n1 1 2\n"
    # -o json carries the headers; the old spelling --format json is the same.
    j = [json.loads(x) for x in cli("consume", *b, "fmt", "-o", "json").stdout.splitlines()]
    assert j == [json.loads(x) for x in cli("consume", *b, "fmt", "--format", "json").stdout.splitlines()]
    assert j[0]["headers"] == {"h1": "x", "h2": "y"} and j[1]["headers"] == {}
    table = cli("consume", *b, "fmt", "-o", "table").stdout.splitlines()
    assert table[0].split("\t")[3:] == ["a", '{"n":1}', "h1=x,h2=y"], table
    assert cli("consume", *b, "fmt", "--format", "full").stdout.splitlines() == table
    # --count (-c) stops early; --max is its earlier spelling.
    assert len(cli("consume", *b, "fmt", "-c", "1").stdout.splitlines()) == 1
    assert len(cli("consume", *b, "fmt", "--max", "1").stdout.splitlines()) == 1
    r = cli("consume", *b, "fmt", "-f", "%q", check=False)
    assert r.returncode != 0 and "unknown %q" in r.stderr, r.stderr


def test_consume_from_positions_and_out_of_range(weir):
    b = ["--bootstrap", weir.bootstrap]
    cli("topic", *b, "create", "orders", "-p", "1")
    produce(b, "orders", "a\nb\n")
    r = cli("consume", *b, "orders", "--from", "100", check=False)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1, r.stderr
    assert "offsets 0 to 1" in r.stderr and "--from latest" in r.stderr and "OffsetOutOfRange" not in r.stderr, r.stderr
    # The end itself is a valid start (nothing yet), and so is any offset in range.
    assert cli("consume", *b, "orders", "--from", "2").stdout == ""
    assert cli("consume", *b, "orders", "--from", "1").stdout == "b\n"
    # earliest/latest everywhere, beginning/end kept; durations in the one syntax.
    for spelling in ["earliest", "beginning", "1h", "90s", "time:0"]:
        assert cli("consume", *b, "orders", "--from", spelling).stdout == "a\nb\n", spelling
    for spelling in ["latest", "end"]:
        assert cli("consume", *b, "orders", "--from", spelling).stdout == "", spelling
    r = cli("consume", *b, "orders", "--from", "yesterday", check=False)
    assert r.returncode != 0 and "earliest, latest" in r.stderr, r.stderr


def test_group_reset_to_a_duration_ago(weir):
    b = ["--bootstrap", weir.bootstrap]
    cli("topic", *b, "create", "ledger", "-p", "1")
    produce(b, "ledger", "".join(f"r{i}\n" for i in range(5)))
    assert len(cli("consume", *b, "ledger", "-g", "auditors").stdout.splitlines()) == 5
    # 5m ago: every record is younger, so the group goes back to the first one.
    out = json.loads(cli("group", *b, "reset-offsets", "auditors", "--to", "5m", "-o", "json").stdout)
    assert out == [{"topic": "ledger", "partition": 0, "offset": 0}], out
    out = json.loads(cli("group", *b, "reset-offsets", "auditors", "--to", "end", "-o", "json").stdout)
    assert out[0]["offset"] == 5
    out = json.loads(cli("group", *b, "reset-offsets", "auditors", "--to", "beginning", "-o", "json").stdout)
    assert out[0]["offset"] == 0
    r = cli("group", *b, "reset-offsets", "auditors", "--to", "5 minutes", check=False)
    assert r.returncode != 0 and "duration" in r.stderr, r.stderr


def test_status_shows_version_listeners_topics_groups_and_disk(weir):
    b = ["--bootstrap", weir.bootstrap]
    cli("topic", *b, "create", "st", "-p", "3")
    produce(b, "st", "x\ny\n")
    cli("consume", *b, "st", "-g", "watchers")
    version = cli("--version").stdout.split()[-1]
    http = weir.http.removeprefix("http://")
    s = json.loads(cli("status", *b, "--http", http, "-o", "json").stdout)
    assert s["version"] == version, s
    assert s["listeners"] == {"kafka": [weir.bootstrap], "http": http}, s
    assert {"name": "st", "partitions": 3, "internal": False} in s["topics"]
    assert s["partitions"] >= 3 and sum(s["groups"].values()) >= 1, s
    assert s["disk_bytes"] > 0 and s["log_dirs"][0]["path"].startswith(weir.data_dir), s
    table = cli("status", *b, "--http", http).stdout
    for word in ["version", version, weir.bootstrap, http, "topics", "groups", "disk"]:
        assert word in table, (word, table)
    # Without a reachable HTTP API the Kafka side is still reported.
    s = json.loads(cli("status", *b, "--http", "127.0.0.1:1", "-o", "json").stdout)
    assert s["version"] is None and s["listeners"]["kafka"] == [weir.bootstrap]


def test_completions(tmp_path):
    for shell in ["bash", "zsh", "fish"]:
        script = cli("completions", shell).stdout
        assert "consume" in script and "reset-offsets" in script, shell
    path = tmp_path / "weir.bash"
    path.write_text(cli("completions", "bash").stdout)
    subprocess.run(["bash", "-n", str(path)], check=True)


def serve(*args, cwd=None):
    """`weir serve` with these arguments; returns the process and its two listen lines."""
    p = subprocess.Popen([WEIR_BIN, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "NO_COLOR": "1"}, cwd=cwd)
    lines = [p.stdout.readline(), p.stdout.readline()]
    return p, lines


def stop(p):
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    return err


def test_listen_flags_take_a_bare_port(tmp_path):
    p, lines = serve("--data-dir", str(tmp_path / "d"), "--kafka-listen", ":0", "--http-listen", ":0")
    try:
        assert re.match(r"weir: kafka listening on 127\.0\.0\.1:\d+$", lines[0].strip()), lines
        assert re.match(r"weir: http listening on 127\.0\.0\.1:\d+$", lines[1].strip()), lines
        port = int(lines[0].rsplit(":", 1)[1])
        assert port != 0
        cli("topic", "-b", f"127.0.0.1:{port}", "list")
    finally:
        stop(p)
    r = cli("serve", "--data-dir", str(tmp_path / "e"), "--kafka-listen", "9092", check=False)
    assert r.returncode != 0 and "HOST:PORT or :PORT" in r.stderr, r.stderr


def test_config_file_keys_are_the_flag_names(tmp_path):
    repo = os.path.join(os.path.dirname(__file__), "..", "..")
    cfg = tmp_path / "weir.toml"
    cfg.write_text(f'data-dir = "{tmp_path / "fromfile"}"\nkafka-listen = ":0"\nhttp_listen = ":0"\n')
    p, lines = serve("--config", str(cfg))
    try:
        assert "kafka listening on 127.0.0.1:" in lines[0] and "http listening on 127.0.0.1:" in lines[1], lines
    finally:
        stop(p)
    assert (tmp_path / "fromfile" / ".lock").exists()
    # The repository's sample parses; flags override what it would set.
    p, lines = serve("--config", os.path.join(repo, "weir.toml"), "--data-dir", str(tmp_path / "sample"),
                     "--kafka-listen", ":0", "--http-listen", ":0")
    try:
        assert "kafka listening on 127.0.0.1:" in lines[0], lines
    finally:
        stop(p)
    cfg.write_text('data-dri = "x"\n')
    r = cli("serve", "--config", str(cfg), check=False)
    assert r.returncode != 0 and "data-dri" in r.stderr and "data-dir" in r.stderr, r.stderr


def test_log_format_json(weir_factory):
    w = weir_factory("--log-format", "json")
    cli("topic", "-b", w.bootstrap, "list")
    w.stop()
    with open(w.log_path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    assert lines, "no log lines"
    records = [json.loads(line) for line in lines]
    assert all({"timestamp", "level", "target"} <= set(r) for r in records), records[:3]
    assert any(r.get("message") == "shut down cleanly" for r in records), records[-3:]
    assert not any("\x1b[" in line for line in lines)


def test_produce_follows_the_brokers_auto_create_rule(weir_factory):
    # Kafka's auto.create.topics.enable, as for kcat and HTTP: on by default...
    on = weir_factory()
    cli("produce", "--bootstrap", on.bootstrap, "fresh", input="x\n")
    assert cli("consume", "--bootstrap", on.bootstrap, "fresh").stdout == "x\n"
    # ...and when it is off, the refusal says how to create the topic.
    off = weir_factory("--auto-create-topics", "false")
    r = cli("produce", "--bootstrap", off.bootstrap, "fresh", input="x\n", check=False)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert "weir topic create fresh" in r.stderr, r.stderr


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
