"""A JSON Lines input is streamed, not read whole: a pipeline over a file of more than 1 GB
stays under 100 MB of RSS (peak, VmHWM) while windowing every event."""

import json
import os
import random
import subprocess

from conftest import WEIR_BIN

TARGET_BYTES = 1_050_000_000


def test_a_1_gb_jsonl_input_runs_in_under_100_mb(tmp_path):
    src = tmp_path / "big.jsonl"
    rng = random.Random(1)
    pad = "x" * 200
    # 1,000 distinct lines repeated with increasing times: cheap to write, every event parsed.
    lines = [json.dumps({"customer": f"c{rng.randrange(50)}", "amount": rng.randint(1, 100), "pad": pad,
                         "ts": "TS"}) for _ in range(1000)]
    n = 0
    with open(src, "w") as f:
        t = 1_700_000_000_000
        while f.tell() < TARGET_BYTES:
            chunk = []
            for line in lines:
                t += 7
                chunk.append(line.replace('"TS"', str(t)))
            f.write("\n".join(chunk) + "\n")
            n += len(chunk)
    assert os.path.getsize(src) > 1_000_000_000
    spec = tmp_path / "big.yaml"
    spec.write_text("""
name: big
source: { jsonl: big.jsonl, time_field: ts }
steps:
  - key_by: "event.customer"
  - window: { tumbling: 1m, aggregates: [ { total: "sum(amount)" }, { orders: count } ] }
sink: { jsonl: sums.jsonl }
""")
    proc = subprocess.Popen([WEIR_BIN, "pipeline", "run", str(spec)], stderr=subprocess.PIPE, text=True)
    peak_kib = 0
    status = f"/proc/{proc.pid}/status"
    while proc.poll() is None:
        try:
            with open(status) as s:
                for line in s:
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
        except FileNotFoundError:
            break
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    err = proc.stderr.read()
    assert proc.returncode == 0, err[-2000:]
    print(f"\n{n} events, {os.path.getsize(src) / 1e9:.2f} GB, peak RSS {peak_kib / 1024:.1f} MB; {err.strip()}")
    assert f"{n} events" in err
    assert 0 < peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"
    total = sum(json.loads(line)["orders"] for line in open(tmp_path / "sums.jsonl"))
    assert total == n
