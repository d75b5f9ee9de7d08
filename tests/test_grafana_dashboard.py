"""docs/grafana-sockmon.json is valid JSON, a Grafana dashboard whose every query names only series that
`sockmon export` serves (checked against a real collection's families, counters with their _total)."""

from __future__ import annotations

import json
import os
import re

from sockmon.core.table.metrics import MetricsCollector, exposed_names, families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(ROOT, "docs", "grafana-sockmon.json")
NAME = re.compile(r"\bsockmon_[a-z0-9_]+")


def dashboard_exprs() -> list[str]:
    with open(DASHBOARD, encoding="utf-8") as fh:
        dash = json.load(fh)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    return exprs


def test_dashboard_is_valid_and_names_only_exported_series():
    with open(DASHBOARD, encoding="utf-8") as fh:
        dash = json.load(fh)
    assert dash["title"] and dash["uid"] and len(dash["panels"]) >= 5
    assert all(p["targets"] and p["datasource"] for p in dash["panels"])
    exprs = dashboard_exprs()
    used = {n for e in exprs for n in NAME.findall(e)}
    sample = MetricsCollector(interval=60, use_tracepoint=False).collect_once()
    served = {f.name + ("_total" if f.type == "counter" else "") for f in families(sample)}
    assert served == exposed_names()
    assert used and used <= served, used - served
    # the families a fleet needs are all on the dashboard
    assert {"sockmon_tcp_sockets", "sockmon_listen_queue", "sockmon_listen_backlog", "sockmon_listen_overflows_total",
            "sockmon_tcp_transitions_total", "sockmon_tcp_retransmits_total"} <= used
