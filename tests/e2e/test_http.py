"""The HTTP/JSON API against a real `weir serve`, cross-checked with Kafka clients."""

import base64
import json
import socket
import time

import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families


def test_topics_crud_and_errors(weir):
    h = weir.http
    r = requests.post(f"{h}/topics", json={"name": "t1", "partitions": 3, "configs": {"retention.ms": "60000"}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["partitions"]) == 3 and body["configs"]["retention.ms"] == "60000"
    assert requests.post(f"{h}/topics", json={"name": "t1"}).status_code == 409
    assert requests.post(f"{h}/topics", json={"name": "bad name"}).json()["error"] == "invalid_topic"
    r = requests.post(f"{h}/topics", data="{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    assert requests.post(f"{h}/topics", json={"name": "t2", "configs": {"retention.ms": "soon"}}).status_code == 400
    assert [t["name"] for t in requests.get(f"{h}/topics").json() if not t["internal"]] == ["t1"]
    r = requests.patch(f"{h}/topics/t1/configs", json={"retention.ms": None, "segment.bytes": "1048576"})
    assert r.status_code == 200 and r.json()["configs"]["retention.ms"] == "604800000"
    assert r.json()["configs"]["segment.bytes"] == "1048576"
    assert requests.get(f"{h}/topics/nope").status_code == 404
    assert requests.delete(f"{h}/topics/t1").status_code == 204
    assert requests.delete(f"{h}/topics/t1").status_code == 404
    err = requests.get(f"{h}/topics/nope/records").json()
    assert err == {"error": "unknown_topic", "message": 'topic "nope" does not exist'}


def test_produce_and_read_all_forms(weir):
    h = weir.http
    requests.post(f"{h}/topics", json={"name": "forms", "partitions": 1})
    r = requests.post(f"{h}/topics/forms/records", json={"key": "k", "value": {"a": 1}, "headers": {"trace": "x"}})
    assert r.json() == {"offsets": [{"partition": 0, "offset": 0}]}
    r = requests.post(f"{h}/topics/forms/records", json=[{"value": [1, 2]}, {"value_base64": base64.b64encode(b"\xff\x00").decode()}])
    assert [o["offset"] for o in r.json()["offsets"]] == [1, 2]
    r = requests.post(f"{h}/topics/forms/records?key=raw", data=b"plain text", headers={"content-type": "application/octet-stream"})
    assert r.json()["offsets"][0]["offset"] == 3
    recs = requests.get(f"{h}/topics/forms/records", params={"from": "earliest"}).json()
    assert [x["value"] for x in recs["records"]] == [{"a": 1}, [1, 2], base64.b64encode(b"\xff\x00").decode(),
                                                     base64.b64encode(b"plain text").decode()]
    assert [x["value_encoding"] for x in recs["records"]] == ["json", "json", "base64", "base64"]
    assert recs["records"][0]["headers"] == {"trace": "x"} and recs["records"][3]["key"] == "raw"
    assert recs["next_offset"] == 4 and recs["high_watermark"] == 4
    page = requests.get(f"{h}/topics/forms/records", params={"offset": 1, "max": 2}).json()
    assert [x["offset"] for x in page["records"]] == [1, 2] and page["next_offset"] == 3
    ts = recs["records"][0]["timestamp"]
    assert requests.get(f"{h}/topics/forms/records", params={"timestamp": ts}).json()["records"][0]["offset"] == 0
    assert len(requests.get(f"{h}/topics/forms/records", params={"from": "5m"}).json()["records"]) == 4
    assert requests.get(f"{h}/topics/forms/records", params={"from": "latest"}).json()["records"] == []
    assert requests.get(f"{h}/topics/forms/records", params={"offset": 99}).status_code == 416
    assert requests.get(f"{h}/topics/forms/records", params={"from": "yesterday"}).status_code == 400
    # Long poll: a read at the end waits for the next append.
    import threading
    threading.Timer(0.5, lambda: requests.post(f"{h}/topics/forms/records", json={"value": "late"})).start()
    t0 = time.monotonic()
    r = requests.get(f"{h}/topics/forms/records", params={"offset": 4, "wait": 5000}).json()
    assert r["records"][0]["value"] == "late" and 0.3 < time.monotonic() - t0 < 3


def test_http_and_kafka_agree_on_keys_and_partitions(weir):
    h = weir.http
    requests.post(f"{h}/topics", json={"name": "agree", "partitions": 6})
    keys = [f"user-{i}" for i in range(40)]
    http_parts = {}
    for k in keys:
        r = requests.post(f"{h}/topics/agree/records", json={"key": k, "value": {"via": "http"}})
        http_parts[k] = r.json()["offsets"][0]["partition"]
    # librdkafka's murmur2 partitioner is Java's default: the same keys go to the same partitions.
    delivered = {}
    p = Producer({"bootstrap.servers": weir.bootstrap, "partitioner": "murmur2_random"})
    for k in keys:
        p.produce("agree", key=k.encode(), value=b'{"via":"kafka"}', on_delivery=lambda e, m: delivered.__setitem__(m.key().decode(), m.partition()))
    p.flush(10)
    assert delivered == http_parts
    assert len(set(http_parts.values())) > 1
    # Kafka consumer reads what HTTP wrote (same key and partition), and HTTP reads what Kafka wrote.
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "x", "enable.auto.commit": False})
    c.assign([TopicPartition("agree", part, 0) for part in range(6)])
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 80 and time.monotonic() < deadline:
        for m in c.consume(100, timeout=0.5):
            if m.error() is None:
                seen.append((m.key().decode(), m.partition(), json.loads(m.value())["via"]))
    c.close()
    assert sorted((k, p) for k, p, via in seen if via == "http") == sorted(http_parts.items())
    via_http = []
    for part in range(6):
        for rec in requests.get(f"{h}/topics/agree/records", params={"partition": part, "max": 1000}).json()["records"]:
            via_http.append((rec["key"], part, rec["value"]["via"]))
    assert sorted(via_http) == sorted(seen)


def test_oversized_body_and_slow_headers(weir_factory):
    w = weir_factory("--http-body-max-bytes", "1000", "--http-header-timeout-ms", "1000")
    requests.post(f"{w.http}/topics", json={"name": "big", "partitions": 1})
    r = requests.post(f"{w.http}/topics/big/records", json={"value": "x" * 5000})
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    # Slowloris: headers trickle in a line at a time; the server hangs up after the header
    # timeout (1 s) although bytes keep coming.
    s = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    t0 = time.monotonic()
    closed_after = None
    while time.monotonic() - t0 < 8:
        try:
            s.sendall(b"X-Slow: 1\r\n")
            s.settimeout(0.3)
            data = s.recv(4096)
            if data == b"" or data.startswith(b"HTTP/1.1 408"):
                closed_after = time.monotonic() - t0
                break
        except socket.timeout:
            continue
        except OSError:
            closed_after = time.monotonic() - t0
            break
    assert closed_after is not None and closed_after < 4, closed_after
    # Idle connections (silent from the start, or after a keep-alive response) are closed too.
    for first in [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"]:
        s = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
        if first:
            s.sendall(first)
            assert b"200 OK" in s.recv(4096)
        t0 = time.monotonic()
        s.settimeout(5)
        assert s.recv(4096) == b"" and time.monotonic() - t0 < 3
    assert requests.get(f"{w.http}/healthz").status_code == 200


def test_sse_follows_and_drops_a_stalled_subscriber(weir_factory):
    w = weir_factory("--sse-stall-timeout-ms", "1000")
    requests.post(f"{w.http}/topics", json={"name": "live", "partitions": 1})
    requests.post(f"{w.http}/topics/live/records", json=[{"value": i} for i in range(3)])
    with requests.get(f"{w.http}/topics/live/subscribe", params={"from": "earliest"}, stream=True, timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = []
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                events.append(json.loads(line[6:])["value"])
                if len(events) == 3:
                    requests.post(f"{w.http}/topics/live/records", json={"value": "new"})
                if len(events) == 4:
                    break
        assert events == [0, 1, 2, "new"]
    # A subscriber that never reads: its buffer fills and it is dropped, not buffered forever.
    s = socket.create_connection(("127.0.0.1", w.http_port), timeout=30)
    s.sendall(b"GET /topics/live/subscribe?from=earliest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    payload = [{"value": "y" * 2000} for _ in range(500)]
    # More than the server's socket and HTTP buffers plus the 256-event channel can hold.
    for _ in range(40):
        requests.post(f"{w.http}/topics/live/records", json=payload)
    time.sleep(2.5)
    s.settimeout(10)
    data = b""
    deadline = time.monotonic() + 30
    while b"event: dropped" not in data[-4096:] and time.monotonic() < deadline:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    assert b"event: dropped" in data, f"{len(data)} bytes without a dropped event"
    assert requests.get(f"{w.http}/healthz").status_code == 200


def test_metrics_parse_as_prometheus_and_cover_the_essentials(weir):
    h = weir.http
    requests.post(f"{h}/topics", json={"name": "m", "partitions": 2})
    requests.post(f"{h}/topics/m/records", json={"value": 1, "partition": 1})
    p = Producer({"bootstrap.servers": weir.bootstrap})
    p.produce("m", b"x", partition=0)
    p.flush(10)
    text = requests.get(f"{h}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ["weir_kafka_requests", "weir_kafka_request_seconds", "weir_http_requests", "weir_http_request_seconds",
                 "weir_kafka_connections", "weir_kafka_bytes_in", "weir_partition_log_end_offset",
                 "weir_partition_size_bytes", "weir_fsync_seconds", "weir_group_lag", "weir_recovery_truncations"]:
        assert name in families, name
    produce = [s for s in families["weir_kafka_requests"].samples if s.labels.get("api") == "Produce"]
    assert produce and produce[0].value >= 1
    ends = {(s.labels["topic"], s.labels["partition"]): s.value for s in families["weir_partition_log_end_offset"].samples}
    assert ends[("m", "0")] == 1 and ends[("m", "1")] == 1


def test_openapi_lists_every_route(weir):
    doc = requests.get(f"{weir.http}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ["/topics", "/topics/{topic}", "/topics/{topic}/records", "/topics/{topic}/subscribe",
                 "/topics/{topic}/configs", "/groups", "/groups/{group}", "/metrics", "/healthz", "/readyz"]:
        assert path in doc["paths"], path
    assert "post" in doc["paths"]["/topics/{topic}/records"] and "get" in doc["paths"]["/topics/{topic}/records"]


def test_every_error_body_is_json(weir):
    h = weir.http
    requests.post(f"{h}/topics", json={"name": "errs", "partitions": 1})
    requests.post(f"{h}/topics/errs/records", json=[{"value": 1}, {"value": 2}])
    cases = [
        (requests.get(f"{h}/topics/errs/records", params={"offset": "abc"}), 400, "bad_request"),
        (requests.get(f"{h}/no/such/route"), 404, "not_found"),
        (requests.get(f"{h}/"), 404, "not_found"),
        (requests.put(f"{h}/topics"), 405, "method_not_allowed"),
        (requests.delete(f"{h}/metrics"), 405, "method_not_allowed"),
        (requests.get(f"{h}/topics/errs/records", params={"offset": 100}), 416, "offset_out_of_range"),
    ]
    for r, status, code in cases:
        assert r.status_code == status, (r.url, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), (r.url, r.headers)
        body = r.json()
        assert set(body) == {"error", "message"} and body["error"] == code and body["message"], (r.url, body)
    assert "offset" in cases[0][0].json()["message"]
    assert "GET" in cases[3][0].headers.get("allow", "")
    # Messages say what was wrong and what is valid, not which layer noticed.
    msg = cases[5][0].json()["message"]
    assert msg.startswith("offset 100 is out of range") and "0" in msg and "2" in msg, msg
    assert "storage" not in msg and "error" not in msg, msg


def test_reads_of_a_topic_with_several_partitions_name_one(weir):
    h = weir.http
    requests.post(f"{h}/topics", json={"name": "multi", "partitions": 3})
    requests.post(f"{h}/topics/multi/records", json={"value": 1, "partition": 2})
    for route in ("records", "subscribe"):
        r = requests.get(f"{h}/topics/multi/{route}", params={"from": "earliest"}, timeout=10)
        assert r.status_code == 400 and r.json()["error"] == "partition_required", r.text
        assert "partition=0 to partition=2" in r.json()["message"]
    r = requests.get(f"{h}/topics/multi/records", params={"partition": 2, "from": "earliest"})
    assert [x["value"] for x in r.json()["records"]] == [1]


def test_produce_auto_creates_by_kafkas_rule(weir_factory):
    on = weir_factory()
    r = requests.post(f"{on.http}/topics/fresh/records", json={"value": 1})
    assert r.status_code == 200, r.text
    assert requests.get(f"{on.http}/topics/fresh").json()["partitions"][0]["log_end_offset"] == 1
    off = weir_factory("--auto-create-topics", "false")
    r = requests.post(f"{off.http}/topics/fresh/records", json={"value": 1})
    assert r.status_code == 404 and r.json()["error"] == "unknown_topic"
    assert "weir topic create fresh" in r.json()["message"], r.text
    assert requests.get(f"{off.http}/topics/fresh").status_code == 404


def test_http_requests_are_counted_by_route_method_and_status(weir):
    h = weir.http
    requests.get(f"{h}/topics")
    requests.get(f"{h}/topics/missing")
    requests.put(f"{h}/topics")
    text = requests.get(f"{h}/metrics").text
    samples = {(s.labels["route"], s.labels["method"], s.labels["status"]): s.value
               for f in text_string_to_metric_families(text) if f.name == "weir_http_requests"
               for s in f.samples if s.name == "weir_http_requests_total"}
    assert samples[("/topics", "GET", "200")] >= 1
    assert samples[("/topics/{topic}", "GET", "404")] >= 1
    assert samples[("/topics", "other", "405")] >= 1
    assert not any(r.startswith("/topics/missing") for r, _, _ in samples), "raw paths must not become labels"


def test_one_timestamp_rule_for_http_kafka_and_the_cli(weir):
    import subprocess
    from conftest import WEIR_BIN
    h = weir.http
    requests.post(f"{h}/topics", json={"name": "stamped", "partitions": 1,
                                       "configs": {"message.timestamp.type": "LogAppendTime"}})
    old = 1_000_000_000_000  # 2001: a producer's clock far off
    before = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": weir.bootstrap})
    p.produce("stamped", b'{"n":1}', timestamp=old)
    p.flush(10)
    after = int(time.time() * 1000)
    over_http = requests.get(f"{h}/topics/stamped/records", params={"from": "earliest"}).json()["records"][0]
    assert before - 1000 <= over_http["timestamp"] <= after + 1000, over_http
    out = subprocess.run([WEIR_BIN, "consume", "--bootstrap", weir.bootstrap, "stamped", "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["timestamp"] == over_http["timestamp"]
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "ts-rule", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("stamped", 0, 0)])
    msg = c.poll(10)
    c.close()
    assert msg is not None and msg.timestamp()[1] == over_http["timestamp"]
