"""Soak: mixed produce / group consume / HTTP read load for WEIR_SOAK_SECONDS (default 120),
RSS sampled every 2 s. After a warm-up third, RSS must stay within ±10% of its mean."""

import os
import signal
import sys
import threading
import time

import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from test_groups import Member

SECONDS = int(os.environ.get("WEIR_SOAK_SECONDS", "120"))


def test_soak_rss_stays_flat(weir_factory, tmp_path):
    w = weir_factory("--group-initial-rebalance-delay-ms", "500", "--segment-bytes", str(16 << 20),
                     "--retention-bytes", str(64 << 20), "--maintenance-interval-ms", "2000")
    a = AdminClient({"bootstrap.servers": w.bootstrap})
    for f in a.create_topics([NewTopic("soak", 4, 1)]).values():
        f.result(10)
    stop = threading.Event()
    produced = [0]

    def produce():
        p = Producer({"bootstrap.servers": w.bootstrap, "linger.ms": 5, "enable.idempotence": True})
        payload = b"s" * 400
        while not stop.is_set():
            for _ in range(200):
                try:
                    p.produce("soak", key=str(produced[0] % 1000).encode(), value=payload)
                    produced[0] += 1
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
            time.sleep(0.05)  # about 4,000 messages/s
        p.flush(30)

    def http_reads():
        while not stop.is_set():
            requests.get(f"{w.http}/topics/soak/records", params={"partition": produced[0] % 4, "from": "latest", "wait": 200})
            requests.get(f"{w.http}/groups/soakers")
            requests.get(f"{w.http}/metrics")
            time.sleep(0.2)

    members = [Member(w.bootstrap, "soakers", "soak", str(tmp_path / f"s{i}.txt")) for i in range(2)]
    threads = [threading.Thread(target=produce), threading.Thread(target=http_reads)]
    for t in threads:
        t.start()
    samples = []
    start = time.monotonic()
    try:
        while time.monotonic() - start < SECONDS:
            time.sleep(2)
            samples.append((time.monotonic() - start, w.rss_kib()))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        for m in members:
            m.stop(signal.SIGTERM)
    steady = [rss for t, rss in samples if t > SECONDS / 3]
    mean = sum(steady) / len(steady)
    lo, hi = min(steady), max(steady)
    print(f"soak {SECONDS}s: {produced[0]} produced; RSS after warm-up {lo}..{hi} KiB (mean {mean:.0f}); "
          f"all samples {[rss for _, rss in samples]}")
    assert hi <= mean * 1.10 and lo >= mean * 0.90, f"RSS {lo}..{hi} KiB around {mean:.0f}"
    assert produced[0] > SECONDS * 1000
