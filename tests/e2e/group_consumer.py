"""A confluent-kafka group member run as its own process so tests can kill it.

Writes one line per processed message ("partition offset value") to OUT, flushes, and only
then commits synchronously: commit-after-processing, so a crash re-delivers at most the
uncommitted batch. Prints "ASSIGNED p,p,..." whenever its assignment changes.

usage: group_consumer.py BOOTSTRAP GROUP TOPIC OUT
"""

import signal
import sys

from confluent_kafka import Consumer

bootstrap, group, topic, out_path = sys.argv[1:5]
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)

c = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "partition.assignment.strategy": "range",
})
assigned = set()


def report():
    print("ASSIGNED " + ",".join(str(p) for p in sorted(assigned)), flush=True)


def on_assign(consumer, partitions):
    assigned.update(p.partition for p in partitions)
    report()


def on_revoke(consumer, partitions):
    assigned.difference_update(p.partition for p in partitions)
    report()


c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
with open(out_path, "a") as out:
    while running:
        msgs = c.consume(num_messages=200, timeout=0.2)
        good = [m for m in msgs if m.error() is None]
        if not good:
            continue
        for m in good:
            out.write(f"{m.partition()} {m.offset()} {m.value().decode()}\n")
        out.flush()
        try:
            c.commit(asynchronous=False)
        except Exception as e:  # a rebalance or broker restart: the batch is re-delivered
            print(f"COMMIT-FAILED {e}", flush=True)
c.close()
