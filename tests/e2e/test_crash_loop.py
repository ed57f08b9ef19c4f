"""Crash loop: `weir serve --fsync always` is SIGKILLed at random moments while an idempotent
acks=all producer writes sequence-numbered messages; every acknowledged message must be
present exactly once and in order per partition. WEIR_CRASH_ITERATIONS sets the number of
kills (default 20; run 100+ by hand)."""

import os
import random
import signal
import threading
import time
from collections import defaultdict

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ITERATIONS = int(os.environ.get("WEIR_CRASH_ITERATIONS", "20"))
PARTITIONS = 4


def test_acknowledged_messages_survive_sigkill_loops(weir_factory):
    w = weir_factory("--fsync", "always")
    a = AdminClient({"bootstrap.servers": w.bootstrap})
    for f in a.create_topics([NewTopic("ledger", PARTITIONS, 1)]).values():
        f.result(10)
    acked, failed = {}, {}
    lock = threading.Lock()
    stop = threading.Event()
    fatal = []

    def on_delivery(err, msg):
        seq = int(msg.value().split(b"-")[1])
        with lock:
            if err is None:
                acked[seq] = (msg.partition(), msg.offset())
            else:
                failed[seq] = str(err)
                if err.fatal():
                    fatal.append(str(err))

    def produce():
        p = Producer({"bootstrap.servers": w.bootstrap, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 2, "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 200,
                      "retry.backoff.ms": 50})
        seq = 0
        while not stop.is_set():
            try:
                p.produce("ledger", key=str(seq % 97).encode(), value=f"seq-{seq}".encode(), on_delivery=on_delivery)
                seq += 1
            except BufferError:
                pass
            p.poll(0.001 if seq % 50 else 0.01)
        p.flush(90)

    t = threading.Thread(target=produce)
    t.start()
    rng = random.Random(7)
    try:
        for _ in range(ITERATIONS):
            time.sleep(rng.uniform(0.2, 0.8))
            w.stop(signal.SIGKILL)
            w.start(w.port)
    finally:
        time.sleep(1.0)
        stop.set()
        t.join(120)
    assert not fatal, fatal[:3]
    assert len(acked) > 1000, f"only {len(acked)} acknowledged"

    c = Consumer({"bootstrap.servers": w.bootstrap, "group.id": "verify", "enable.auto.commit": False})
    c.assign([TopicPartition("ledger", p, 0) for p in range(PARTITIONS)])
    ends = [c.get_watermark_offsets(TopicPartition("ledger", p), timeout=10)[1] for p in range(PARTITIONS)]
    seen = defaultdict(list)
    got = 0
    deadline = time.monotonic() + 60
    while got < sum(ends) and time.monotonic() < deadline:
        for m in c.consume(1000, timeout=0.5):
            if m.error() is None:
                seen[m.partition()].append((m.offset(), int(m.value().split(b"-")[1])))
                got += 1
    c.close()
    count = defaultdict(int)
    for p, recs in seen.items():
        for _, seq in recs:
            count[seq] += 1
    lost = [s for s in acked if count[s] == 0]
    dup_acked = [s for s in acked if count[s] > 1]
    dup_unacked = [s for s in failed if count[s] > 1]
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
    assert not dup_acked and not dup_unacked, f"duplicates: {dup_acked[:5]} {dup_unacked[:5]}"
    for seq, (p, off) in acked.items():
        assert (off, seq) in seen[p], f"seq {seq} not at its acknowledged offset {p}/{off}"
    # Per partition, sequence numbers of the same key only increase.
    for p, recs in seen.items():
        last = {}
        for off, seq in sorted(recs):
            k = seq % 97
            assert last.get(k, -1) < seq, f"partition {p}: seq {seq} after {last[k]}"
            last[k] = seq
    present_unacked = sum(1 for s in failed if count[s] == 1)
    print(f"{ITERATIONS} kills: {len(acked)} acknowledged (all present once), "
          f"{len(failed)} unacknowledged ({present_unacked} present)")
