#!/usr/bin/env python3
"""Repartition cost: one spec re-keyed through a repartition topic vs keyed by the record key.
Usage: WEIR_BIN=target/release/weir .venv/bin/python scripts/perf-repartition.py [orders]"""
import sys, os, subprocess, time, pathlib, shutil, re
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import conftest
from test_dataflow import *
import tempfile; tmp = pathlib.Path(tempfile.mkdtemp())
w = conftest.Weir(tmp / "data")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
orders, end = make_orders(N, seed=1)
create(w, ("orders", 3)); produce(w, "orders", orders, end, 3)
expected = group_by(orders)
for name, extra in (("single", ", partitioned_by_key: true"), ("rekey", "")):
    db = tmp / f"{name}.db"
    p = spec(tmp, w, name, "orders", f"{{ sqlite: {db}, table: sums }}")
    txt = p.read_text().replace("topic: orders,", "topic: orders" + extra + ",")
    if name == "single": txt = txt.replace('  - key_by: "event.customer"\n', '')
    p.write_text(txt)
    t0=time.time()
    out = subprocess.run([WEIR_BIN, "pipeline", "run", str(p), "--until-end"], capture_output=True, text=True, timeout=600)
    print(name, f"{time.time()-t0:.1f}s", [l for l in out.stderr.splitlines() if "events" in l or "repartition" in l][-3:])
    if name == "rekey": print("rows equal:", sqlite_rows(db) == expected)
w.stop()
