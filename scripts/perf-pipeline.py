#!/usr/bin/env python3
"""End-to-end pipeline throughput: N orders (JSON) in a 6-partition topic on a running broker ->
`weir pipeline run --until-end` (filter + 1-minute tumbling sum per customer, late events to a
dead-letter topic) -> a sink (PostgreSQL by default, or SQLite with --sqlite PATH).

    .venv/bin/python scripts/perf-pipeline.py --bootstrap 127.0.0.1:9092 --events 2000000 \
        --postgres "host=127.0.0.1 port=54329 user=postgres dbname=postgres"
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", default="127.0.0.1:9092")
ap.add_argument("--events", type=int, default=1_000_000)
ap.add_argument("--postgres", default="host=127.0.0.1 port=54329 user=postgres dbname=postgres")
ap.add_argument("--sqlite")
ap.add_argument("--weir", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "weir"))
a = ap.parse_args()

run = f"perf{os.getpid()}"
topic = f"orders_{run}"
admin = AdminClient({"bootstrap.servers": a.bootstrap})
for f in admin.create_topics([NewTopic(topic, 6, 1), NewTopic(topic + "_dlq", 1, 1)]).values():
    f.result(timeout=30)
rng = random.Random(1)
p = Producer({"bootstrap.servers": a.bootstrap, "linger.ms": 20, "batch.size": 1_000_000})
t = 1_700_000_000_000
started = time.time()
for i in range(a.events):
    t += rng.randint(0, 20)
    c = f"c{rng.randint(0, 999):03d}"
    order = {"order_id": i, "customer": c, "amount": rng.randint(1, 500),
             "status": "paid" if rng.random() < 0.8 else "cancelled", "timestamp": t + rng.randint(-2000, 2000)}
    while True:
        try:
            p.produce(topic, key=c, value=json.dumps(order))
            break
        except BufferError:
            p.poll(0.05)
    if i % 10000 == 0:
        p.poll(0)
p.flush(60)
print(f"produced {a.events} orders in {time.time() - started:.1f}s", file=sys.stderr)

sink = f'{{ sqlite: "{a.sqlite}", table: sums_{run} }}' if a.sqlite else f'{{ postgres: "{a.postgres}", table: sums_{run} }}'
spec = f"""
name: {run}
source:
  kafka: {{ brokers: {a.bootstrap}, topic: {topic}, group: {run} }}
  time_field: timestamp
  key_field: customer
steps:
  - filter: "event.status == 'paid'"
window: {{ tumbling: 1m, aggregate: sum, field: amount, allowed_lateness: 30s, out_of_orderness: 5s }}
sink: {sink}
dead_letters: {{ topic: {topic}_dlq }}
checkpoint: {{ interval: 5s }}
"""
with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write(spec)
out = subprocess.run([a.weir, "pipeline", "run", f.name, "--until-end"], capture_output=True, text=True)
print(out.stderr.strip().splitlines()[-2:] if out.returncode == 0 else out.stderr[-2000:])
sys.exit(out.returncode)
