"""The README's "5-minute tour", run literally, top to bottom, against a fresh `weir serve`.

Every command of the tour's ```sh blocks runs in order (curl, kcat, weir …; heredocs and
backslash continuations kept whole) and must succeed. Only the addresses change: the README
says 127.0.0.1:9092 and :9644, the test's broker listens on ephemeral loopback ports, so those
are rewritten, `weir` is this build's binary, and curl is told to fail on an HTTP error. The block that starts the broker is replaced
by the test's own broker. A `# …` line right after a command is output the README promises:
each must appear in what the command printed (`…` matches anything). A command marked
`# Ctrl-C to stop` follows data forever: it must print what the README shows (or anything),
then it is interrupted as a reader would.
"""

import os
import re
import select
import signal
import subprocess
import time

import pytest
from conftest import WEIR_BIN

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
TOUR_HEADING = "## A 5-minute tour"
FOLLOWS = "Ctrl-C to stop"


def tour_blocks(text):
    """The ```sh blocks between the tour heading and the next level-2 heading."""
    start = text.index(TOUR_HEADING)
    end = text.find("\n## ", start + len(TOUR_HEADING))
    section = text[start:end if end >= 0 else len(text)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def commands(block):
    """(command, expected output lines) in order; a heredoc or a `\\` continuation is one command."""
    lines = block.splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cmd = [line]
        while cmd[-1].endswith("\\") and i < len(lines):
            cmd.append(lines[i])
            i += 1
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            while i < len(lines):
                cmd.append(lines[i])
                i += 1
                if lines[i - 1].strip() == heredoc.group(1):
                    break
        expected = []
        while i < len(lines) and lines[i].lstrip().startswith("# "):
            expected.append(lines[i].lstrip()[2:])
            i += 1
        out.append(("\n".join(cmd), expected))
    return out


def pattern(expected_line):
    return re.compile(".*".join(re.escape(part) for part in expected_line.split("…")))


def test_the_readme_tour_runs_top_to_bottom(tmp_path, weir):
    with open(README) as f:
        blocks = tour_blocks(f.read())
    assert len(blocks) >= 8, "the tour section or its sh blocks moved"
    # The first block starts the broker: the test's own `weir` fixture stands in for it.
    assert "serve" in blocks[0], blocks[0]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(os.path.abspath(WEIR_BIN), bin_dir / "weir")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "WEIR_BOOTSTRAP": weir.bootstrap,
           "NO_COLOR": "1"}

    def rewrite(cmd):
        cmd = cmd.replace("127.0.0.1:9092", weir.bootstrap).replace("127.0.0.1:9644", f"127.0.0.1:{weir.http_port}")
        # An HTTP error (the tour's old 416) is a failed step, though curl exits 0 for it.
        return re.sub(r"(^|\| )curl ", r"\1curl --fail-with-body ", cmd)

    ran = 0
    for block in blocks[1:]:
        for cmd, expected in commands(block):
            shell = rewrite(cmd)
            if FOLLOWS in cmd:
                out = follow(shell, expected, work, env)
            else:
                r = subprocess.run(["bash", "-c", shell], cwd=work, env=env, capture_output=True, text=True,
                                   timeout=120)
                assert r.returncode == 0, f"README command failed ({r.returncode}):\n{cmd}\n{r.stderr}{r.stdout}"
                out = r.stdout
            for line in expected:
                assert pattern(line).search(out), f"README promises {line!r} from\n{cmd}\nbut it printed:\n{out}"
            ran += 1
    assert ran >= 20, f"only {ran} commands found in the tour"
    # Clients that exit normally (kcat, the pipeline, the bench) are no cause for a warning.
    assert weir.stop() == 0
    with open(weir.log_path) as f:
        warnings = [line for line in f if " WARN " in line or " ERROR " in line]
    assert warnings == [], "".join(warnings)


def follow(shell, expected, cwd, env):
    """Runs a command that never ends by itself until it printed what the README shows."""
    p = subprocess.Popen(["bash", "-c", f"exec {shell}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    fd = p.stdout.fileno()
    out, deadline = b"", time.monotonic() + 30

    def printed():
        text = out.decode(errors="replace")
        return text and all(pattern(line).search(text) for line in expected)

    while time.monotonic() < deadline and p.poll() is None and not printed():
        if select.select([fd], [], [], 0.1)[0]:
            out += os.read(fd, 1 << 16)
    assert p.poll() is None, f"{shell} ended by itself ({p.returncode}): {p.stderr.read().decode()}"
    p.send_signal(signal.SIGINT)
    try:
        rest, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"{shell} did not stop on Ctrl-C")
    out += rest
    assert out, f"{shell} printed nothing: {err.decode()}"
    return out.decode(errors="replace")
