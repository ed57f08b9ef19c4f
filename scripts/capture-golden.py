#!/usr/bin/env python3
"""Captures request frames from real Kafka clients (kcat, confluent-kafka, kafka-python) into
tests/golden/<client>/<api>-v<version>.bin: one frame per (client, API, version), size
prefix included. The broker advertises the proxy's port, so every connection goes through it.

usage: .venv/bin/python scripts/capture-golden.py target/release/weir
"""

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "golden")
FRAME_BYTES_MAX = 64 * 1024
client_name = "unknown"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def record(frame):
    key, version = struct.unpack(">hh", frame[4:8])
    if len(frame) - 4 > FRAME_BYTES_MAX:
        return
    d = os.path.join(OUT, client_name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{key:02d}-v{version}.bin")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(frame)


def pump(src, dst, frames=None):
    """Copies src to dst; with `frames`, also splits what passes into size-prefixed frames."""
    buf = b""
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            break
        if not data:
            break
        dst.sendall(data)
        if frames is None:
            continue
        buf += data
        while len(buf) >= 4:
            (n,) = struct.unpack(">i", buf[:4])
            if len(buf) < 4 + n:
                break
            frame, buf = buf[:4 + n], buf[4 + n:]
            frames(frame)
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def proxy(listen_port, target_port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(64)
    while True:
        c, _ = ls.accept()
        u = socket.create_connection(("127.0.0.1", target_port))
        threading.Thread(target=pump, args=(c, u, record), daemon=True).start()
        threading.Thread(target=pump, args=(u, c), daemon=True).start()


def main():
    global client_name
    weir = sys.argv[1]
    shutil.rmtree(OUT, ignore_errors=True)
    data = tempfile.mkdtemp()
    proxy_port = free_port()
    p = subprocess.Popen([weir, "serve", "--data-dir", data, "--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                          "--advertised-port", str(proxy_port), "--group-initial-rebalance-delay-ms", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(re.search(rb":(\d+)", p.stdout.readline()).group(1))
    threading.Thread(target=proxy, args=(proxy_port, port), daemon=True).start()
    b = f"127.0.0.1:{proxy_port}"
    time.sleep(0.2)
    try:
        client_name = "kcat"
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
            subprocess.run(["kcat", "-b", b, "-P", "-t", "golden", "-z", codec, "-K:"], input=b"k:v1\nk:v2\n", check=True)
        subprocess.run(["kcat", "-b", b, "-C", "-t", "golden", "-e", "-q"], check=True, capture_output=True)
        subprocess.run(["kcat", "-b", b, "-L"], check=True, capture_output=True)
        subprocess.run(["kcat", "-b", b, "-G", "kg", "golden", "-e", "-q", "-X", "auto.offset.reset=earliest"], check=True,
                       capture_output=True, timeout=60)

        client_name = "confluent-kafka"
        from confluent_kafka import Consumer, Producer
        from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
        pr = Producer({"bootstrap.servers": b, "enable.idempotence": True, "compression.type": "zstd"})
        for i in range(10):
            pr.produce("golden", key=b"k", value=f"v{i}".encode())
        pr.flush(10)
        a = AdminClient({"bootstrap.servers": b})
        for f in a.create_topics([NewTopic("golden-admin", 2, 1, config={"retention.ms": "1000000"})]).values():
            f.result(10)
        res = ConfigResource(ConfigResource.Type.TOPIC, "golden-admin")
        a.describe_configs([res])[res].result(10)
        for f in a.delete_topics(["golden-admin"]).values():
            f.result(10)
        c = Consumer({"bootstrap.servers": b, "group.id": "cg", "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["golden"])
        got = 0
        deadline = time.time() + 20
        while got < 5 and time.time() < deadline:
            got += len([m for m in c.consume(10, timeout=1) if m.error() is None])
        c.commit(asynchronous=False)
        c.close()
        # KIP-848: ConsumerGroupHeartbeat, and commits with member epochs.
        c = Consumer({"bootstrap.servers": b, "group.id": "cg848", "group.protocol": "consumer",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["golden"])
        got = 0
        deadline = time.time() + 20
        while got < 5 and time.time() < deadline:
            got += len([m for m in c.consume(10, timeout=1) if m.error() is None])
        c.commit(asynchronous=False)
        c.close()
        from confluent_kafka import TopicCollection
        a.describe_topics(TopicCollection(["golden"]))["golden"].result(10)

        client_name = "kafka-python"
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic
        kp = KafkaProducer(bootstrap_servers=b)
        kp.send("golden-plain", b"kp").get(10)
        kp.close()
        ka = KafkaAdminClient(bootstrap_servers=b)
        ka.create_topics([KNewTopic("golden-kp", 1, 1)])
        ka.delete_topics(["golden-kp"])
        ka.close()
        kc = KafkaConsumer("golden-plain", bootstrap_servers=b, group_id="kpg", auto_offset_reset="earliest", consumer_timeout_ms=3000)
        list(kc)
        kc.commit()
        kc.close()
    finally:
        p.terminate()
        p.wait(10)
        shutil.rmtree(data, ignore_errors=True)
    n = sum(len(files) for _, _, files in os.walk(OUT))
    print(f"captured {n} frames into {OUT}")


if __name__ == "__main__":
    main()
