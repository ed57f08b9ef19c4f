"""Hostile input: the server answers with an error or closes that connection, keeps serving
others, and its memory does not jump."""

import os
import socket
import struct
import subprocess
import time

import pytest


def connect(w):
    s = socket.create_connection(("127.0.0.1", w.port), timeout=10)
    s.settimeout(10)
    return s


def closed_by_server(s, timeout=10):
    """True when the server closes the connection (EOF or reset) within `timeout`."""
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def request(api_key, version, correlation, body=b"", client_id=b"hostile"):
    header = struct.pack(">hhih", api_key, version, correlation, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def still_serving(w):
    r = subprocess.run(["kcat", "-b", w.bootstrap, "-L", "-m", "5"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return True


def test_hostile_frames_do_not_hurt_the_server(weir):
    still_serving(weir)
    rss_before = weir.rss_kib()

    cases = {
        "2 GiB frame": struct.pack(">i", 2**31 - 1) + b"\x00" * 16,
        "negative frame": struct.pack(">i", -5),
        # Metadata v1 whose topics array claims 2^31-1 entries with nothing behind it.
        "array count 2^31": request(3, 1, 1, struct.pack(">i", 2**31 - 1)),
        # CreateTopics v2 with a huge topics count (elements are large structs).
        "struct array count 2^31": request(19, 2, 2, struct.pack(">i", 2**31 - 1)),
        "unknown api key": request(9999, 0, 3),
        "unsupported version": request(3, 99, 4),
        "produce v0 (advertised, rejected)": request(0, 0, 5, b"\x00" * 20),
        "garbage with a valid size": struct.pack(">i", 64) + os.urandom(64),
        "shorter than a header": struct.pack(">i", 3) + b"abc",
    }
    for name, payload in cases.items():
        s = connect(weir)
        s.sendall(payload)
        assert closed_by_server(s), f"{name}: connection left open"
        s.close()

    # A truncated frame: the client vanishes mid-request.
    s = connect(weir)
    s.sendall(struct.pack(">i", 1000) + b"\x00" * 100)
    s.close()

    # Random garbage streams, many connections.
    for i in range(50):
        s = connect(weir)
        try:
            s.sendall(os.urandom(200 + i))
        except OSError:
            pass
        s.close()

    time.sleep(0.5)
    assert weir.alive()
    still_serving(weir)
    rss_after = weir.rss_kib()
    assert rss_after - rss_before < 50 * 1024, f"RSS grew from {rss_before} KiB to {rss_after} KiB"


def test_api_versions_unsupported_version_gets_v0_error_response(weir):
    s = connect(weir)
    s.sendall(request(18, 77, 42))
    size = struct.unpack(">i", s.recv(4))[0]
    body = b""
    while len(body) < size:
        body += s.recv(size - len(body))
    correlation, error = struct.unpack(">ih", body[:6])
    assert correlation == 42
    assert error == 35
    s.close()


def test_slow_client_is_disconnected_after_request_timeout(weir_factory):
    w = weir_factory("--request-timeout-ms", "1000")
    s = connect(w)
    s.sendall(struct.pack(">i", 100))  # promises 100 bytes
    start = time.monotonic()
    for _ in range(5):  # a byte every 0.4 s: slowloris
        try:
            s.sendall(b"\x00")
        except OSError:
            break
        time.sleep(0.4)
    assert closed_by_server(s, timeout=5)
    assert time.monotonic() - start < 5
    still_serving(w)


def test_a_thousand_idle_connections_do_not_stop_service(weir_factory):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2500:
        pytest.skip(f"open-file limit {hard} too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2500), hard))
    w = weir_factory()  # inherits the raised limit
    base = w.rss_kib()
    idle = [socket.create_connection(("127.0.0.1", w.port), timeout=10) for _ in range(1000)]
    time.sleep(0.5)
    t0 = time.monotonic()
    still_serving(w)
    took = time.monotonic() - t0
    rss = w.rss_kib()
    for s in idle:
        s.close()
    assert took < 5
    per_connection = (rss - base) * 1024 / 1000
    print(f"1000 idle connections: RSS {base} -> {rss} KiB ({per_connection:.0f} bytes per connection)")
    assert per_connection < 64 * 1024


def test_streaming_max_size_frames_stays_within_the_inflight_bound(weir_factory):
    import threading

    # 4 MiB frames, at most 16 MiB of frames in flight.
    w = weir_factory("--max-frame-bytes", str(4 << 20), "--max-inflight-bytes", str(16 << 20))
    base = w.rss_kib()
    stop = threading.Event()
    frame = struct.pack(">i", 4 << 20) + struct.pack(">hhih", 0, 9, 1, 0) + os.urandom(256) + b"\x00" * ((4 << 20) - 266)

    def flood():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", w.port), timeout=5)
                s.sendall(frame)
                closed_by_server(s, timeout=5)
                s.close()
            except OSError:
                pass

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    peak = base
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        peak = max(peak, w.rss_kib())
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    still_serving(w)
    grew_mib = (peak - base) / 1024
    print(f"max-size frame flood: RSS {base} -> peak {peak} KiB (+{grew_mib:.1f} MiB, bound 16 MiB in flight)")
    assert grew_mib < 16 + 8, f"RSS grew {grew_mib:.1f} MiB"
