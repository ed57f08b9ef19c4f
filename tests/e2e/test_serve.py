"""`weir serve` itself: settings precedence, acks=0, long poll, graceful shutdown."""

import os
import re
import signal
import subprocess
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import WEIR_BIN


def start(args, env=None, cwd=None):
    p = subprocess.Popen([WEIR_BIN, "serve", "--http-listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env={**os.environ, **(env or {})}, cwd=cwd)
    line = p.stdout.readline().decode()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert m, line
    return p, int(m.group(1))


def test_settings_flags_beat_env_beat_file(tmp_path):
    cfg = tmp_path / "weir.toml"
    cfg.write_text(f'data_dir = "{tmp_path}/from-file"\nkafka_listen = "127.0.0.1:0"\ndefault_partitions = 2\n')
    # File only.
    p, port = start(["--config", str(cfg)])
    prod = Producer({"bootstrap.servers": f"127.0.0.1:{port}"})
    prod.produce("auto", b"x")
    prod.flush(10)
    md = prod.list_topics(timeout=10)
    assert len(md.topics["auto"].partitions) == 2
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    assert (tmp_path / "from-file" / "topics" / "auto").is_dir()
    # Environment beats the file, the flag beats the environment.
    p, port = start(["--config", str(cfg), "--default-partitions", "4"],
                    env={"WEIR_DATA_DIR": str(tmp_path / "from-env"), "WEIR_DEFAULT_PARTITIONS": "3"})
    prod = Producer({"bootstrap.servers": f"127.0.0.1:{port}"})
    prod.produce("auto2", b"x")
    prod.flush(10)
    assert len(prod.list_topics(timeout=10).topics["auto2"].partitions) == 4
    p.send_signal(signal.SIGINT)
    assert p.wait(20) == 0
    assert (tmp_path / "from-env" / "topics" / "auto2").is_dir()


def test_bad_settings_fail_with_a_clear_message(tmp_path):
    r = subprocess.run([WEIR_BIN, "serve", "--fsync", "sometimes", "--data-dir", str(tmp_path)],
                       capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"fsync" in r.stderr


def test_acks_zero_gets_no_response_but_data_lands(weir):
    # librdkafka counts an acks=0 message delivered once written to the socket; kafka-python
    # resolves it on enqueue and may drop unsent bytes on close, so kcat is the better probe.
    lines = "\n".join(f"m{i}" for i in range(500)).encode()
    r = subprocess.run(["kcat", "-b", weir.bootstrap, "-P", "-t", "fire-and-forget", "-p", "0", "-X", "acks=0"],
                       input=lines, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "unused"})
    deadline = time.monotonic() + 15
    high = 0
    while high < 500 and time.monotonic() < deadline:
        _, high = c.get_watermark_offsets(TopicPartition("fire-and-forget", 0), timeout=5)
        time.sleep(0.1)
    c.close()
    assert high == 500


def test_fetch_long_poll_wakes_on_produce(weir):
    p = Producer({"bootstrap.servers": weir.bootstrap, "linger.ms": 0})
    p.produce("poll", b"first", partition=0)
    p.flush(10)
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "unused", "fetch.wait.max.ms": 5000,
                  "fetch.min.bytes": 1, "enable.auto.commit": False})
    c.assign([TopicPartition("poll", 0, 0)])
    m = c.poll(10)
    assert m.value() == b"first"
    sent_at = []

    def later():
        time.sleep(1.0)
        sent_at.append(time.monotonic())
        p.produce("poll", b"second", partition=0)
        p.flush(10)

    t = threading.Thread(target=later)
    t.start()
    m = c.poll(10)
    got_at = time.monotonic()
    t.join()
    assert m is not None and m.value() == b"second"
    # With a 5 s max wait, only a wake-up on append explains a fast delivery.
    assert got_at - sent_at[0] < 1.0, f"delivered {got_at - sent_at[0]:.2f}s after produce"
    c.close()


def test_port_in_use_fails_before_the_data_dir_is_touched(tmp_path, weir):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    # The other broker holds its Kafka port; then, separately, its HTTP port.
    for args in (["--kafka-listen", weir.bootstrap, "--http-listen", "127.0.0.1:0"],
                 ["--kafka-listen", "127.0.0.1:0", "--http-listen", f"127.0.0.1:{weir.http_port}"]):
        r = subprocess.run([WEIR_BIN, "serve", *args], capture_output=True, timeout=30, cwd=cwd,
                           env={**os.environ, "NO_COLOR": "1"})
        assert r.returncode != 0
        assert b"binding the" in r.stderr and b"listener" in r.stderr, r.stderr
        assert list(cwd.iterdir()) == [], r.stderr
