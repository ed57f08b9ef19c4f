"""A confluent-kafka group member run as its own process so tests can kill it.

Writes one line per processed message ("partition offset value") to OUT, flushes, and only
then commits synchronously: commit-after-processing, so a crash re-delivers at most the
uncommitted batch. When partitions are revoked it first commits what it processed of them,
and it never processes a message of a partition it no longer owns, so a clean rebalance
causes no duplicates. Prints "ASSIGNED p,p,..." whenever its assignment changes and
"REVOKED p,p,..." when partitions are taken away.

usage: group_consumer.py BOOTSTRAP GROUP TOPIC OUT [--instance ID] [--session MS]
       [--max-poll MS] [--protocol classic|consumer] [--assignor range|cooperative-sticky]
"""

import argparse
import signal

from confluent_kafka import Consumer, TopicPartition

ap = argparse.ArgumentParser()
ap.add_argument("bootstrap")
ap.add_argument("group")
ap.add_argument("topic")
ap.add_argument("out")
ap.add_argument("--instance", default=None)
ap.add_argument("--session", type=int, default=6000)
ap.add_argument("--max-poll", type=int, default=300000)
ap.add_argument("--protocol", default="classic")
ap.add_argument("--assignor", default="range")
args = ap.parse_args()
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)

config = {
    "bootstrap.servers": args.bootstrap,
    "group.id": args.group,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
}
if args.protocol == "consumer":
    # KIP-848: the broker assigns; session and heartbeat settings are the broker's.
    config["group.protocol"] = "consumer"
else:
    config.update({
        "session.timeout.ms": args.session,
        "max.poll.interval.ms": args.max_poll,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": args.assignor,
    })
if args.instance:
    config["group.instance.id"] = args.instance
c = Consumer(config)
assigned = set()
# Next offset to commit per partition: one past the last processed message.
processed_to = {}


def report(kind, parts):
    print(kind + " " + ",".join(str(p) for p in sorted(parts)), flush=True)


def commit(parts):
    offsets = [TopicPartition(args.topic, p, processed_to[p]) for p in parts if p in processed_to]
    if not offsets:
        return
    try:
        c.commit(offsets=offsets, asynchronous=False)
    except Exception as e:  # a rebalance or broker restart: the batch is re-delivered
        print(f"COMMIT-FAILED {e}", flush=True)


def on_assign(consumer, partitions):
    assigned.update(p.partition for p in partitions)
    report("ASSIGNED", assigned)


def on_revoke(consumer, partitions):
    gone = {p.partition for p in partitions}
    commit(gone & assigned)
    assigned.difference_update(gone)
    for p in gone:
        processed_to.pop(p, None)
    report("REVOKED", gone)
    report("ASSIGNED", assigned)


c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
with open(args.out, "a") as out:
    while running:
        msgs = c.consume(num_messages=200, timeout=0.2)
        good = [m for m in msgs if m.error() is None and m.partition() in assigned]
        if not good:
            continue
        for m in good:
            out.write(f"{m.partition()} {m.offset()} {m.value().decode()}\n")
            processed_to[m.partition()] = m.offset() + 1
        out.flush()
        commit({m.partition() for m in good})
c.close()
