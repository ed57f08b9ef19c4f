"""docs/grafana/weir.json: it parses as a dashboard, and every metric (and every label it
groups or filters by) exists on a running broker's /metrics, so the dashboard cannot drift
from what Weir exports."""

import json
import os
import re

import requests
from confluent_kafka import Consumer, Producer
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "grafana", "weir.json")
METRIC = re.compile(r"\b((?:weir|process)_[a-z0-9_]+)\b")
# Labels Prometheus adds when it scrapes, and the histogram bucket label.
SCRAPE_LABELS = {"instance", "job", "le"}


def exprs(dashboard):
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            yield panel["title"], t["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            yield var["name"], var["definition"]


def test_every_metric_the_dashboard_queries_exists(weir):
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    assert dashboard["title"] and dashboard["uid"] and dashboard["panels"]
    # Traffic of every kind, so that every labelled family has samples.
    requests.post(f"{weir.http}/topics/dash/records", json={"value": 1})
    requests.get(f"{weir.http}/topics/dash/records", params={"from": "earliest"})
    p = Producer({"bootstrap.servers": weir.bootstrap})
    p.produce("dash", b"x")
    p.flush(10)
    c = Consumer({"bootstrap.servers": weir.bootstrap, "group.id": "dash-readers", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe(["dash"])
    msg = None
    for _ in range(30):
        msg = c.poll(1)
        if msg is not None and not msg.error():
            break
    assert msg is not None and not msg.error()
    c.commit(msg, asynchronous=False)
    c.close()
    requests.get(f"{weir.http}/topics/missing")  # an error sample for the error families
    text = requests.get(f"{weir.http}/metrics").text
    labels_of = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels_of.setdefault(s.name, set()).update(s.labels)
    missing = []
    for where, expr in exprs(dashboard):
        names = METRIC.findall(expr)
        assert names, f"{where}: no Weir metric in {expr!r}"
        for name in names:
            if name not in labels_of:
                missing.append(f"{where}: {name}")
                continue
            known = labels_of[name] | SCRAPE_LABELS
            grouped = [l.strip() for g in re.findall(r"by \(([^)]*)\)", expr) for l in g.split(",")]
            filtered = re.findall(r"(\w+)\s*[=!]~?\s*\"", expr)
            for label in grouped + filtered:
                # A label may belong to another metric of the same expression.
                if label not in known and not any(label in labels_of.get(n, ()) for n in names):
                    missing.append(f"{where}: {name} has no label {label}")
    assert not missing, "\n".join(missing)
