"""Starts a real `weir serve` on an ephemeral loopback port for each test that asks for one."""

import os
import re
import signal
import subprocess
import time

import pytest

WEIR_BIN = os.environ.get("WEIR_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "weir"))


class Weir:
    """A running broker process; restartable on the same data directory."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = str(data_dir)
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.http_port = None
        os.makedirs(self.data_dir, exist_ok=True)
        self.log_path = self.data_dir + ".log"
        self.start()

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def http(self):
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, port=None):
        listen = f"127.0.0.1:{port or self.port or 0}"
        http_listen = f"127.0.0.1:{self.http_port or 0}"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [WEIR_BIN, "serve", "--data-dir", self.data_dir, "--kafka-listen", listen, "--http-listen", http_listen,
             *self.extra_args],
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "WEIR_LOG": os.environ.get("WEIR_LOG", "info"), "NO_COLOR": "1"},
        )
        line = self.proc.stdout.readline().decode()
        m = re.search(r"kafka listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"weir did not start: {line!r}; log in {self.log_path}")
        self.port = int(m.group(1))
        line = self.proc.stdout.readline().decode()
        m = re.search(r"http listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"weir http did not start: {line!r}")
        self.http_port = int(m.group(1))

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.proc = None
        return rc

    def restart(self, sig=signal.SIGTERM):
        rc = self.stop(sig)
        self.start(self.port)
        return rc

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def weir(tmp_path):
    w = Weir(tmp_path / "data")
    yield w
    if w.alive():
        w.stop(signal.SIGKILL)


@pytest.fixture
def weir_factory(tmp_path):
    started = []

    def make(*args):
        w = Weir(tmp_path / f"data{len(started)}", args)
        started.append(w)
        return w

    yield make
    for w in started:
        if w.alive():
            w.stop(signal.SIGKILL)


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def pg():
    """A PostgreSQL conninfo: the test script's cluster ($WEIR_TEST_POSTGRES), else one started
    by scripts/postgres."""
    conninfo = os.environ.get("WEIR_TEST_POSTGRES")
    if not conninfo:
        script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "postgres")
        conninfo = subprocess.run([script], check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    return conninfo
