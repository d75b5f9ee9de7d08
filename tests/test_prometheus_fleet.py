"""Must show: a real Prometheus scrapes two `sockmon export` instances, each collecting from its own test
namespace; its query API returns each instance's sockets per state with exactly the counts the test made
(and `ss -tan` in that namespace lists); `sockmon fleet --json` against that Prometheus shows both hosts
with those counts and the fullest listener first."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter

import pytest
from prom_helpers import (
    Prometheus,
    SocketSet,
    private_netns,
    ss_counts,
    start_export,
    stop_process,
    wait_until,
)

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("prometheus") is None and not __import__("os").path.exists(
                  "/usr/bin/prometheus"), reason="Debian's prometheus is not installed (.ci/run installs it)")]


def _per_instance(rows: list[dict]) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for r in rows:
        m = r["metric"]
        n = int(float(r["value"][1]))
        if n:
            out.setdefault(m["instance"], Counter())[m["state"]] = n
    return out


def test_prometheus_scrapes_two_exporters_and_fleet_shows_both():
    workdir = tempfile.mkdtemp(prefix="prom-test-")
    procs = []
    prom = None
    sets = []
    try:
        with private_netns("a") as ns_a, private_netns("b") as ns_b:
            a = SocketSet(ns_a, listeners=3, pairs=2, time_wait=1, queued=1)
            b = SocketSet(ns_b, listeners=1, pairs=1, time_wait=2)
            sets = [a, b]
            assert a.expected != b.expected
            for s in sets:  # the kernel finished the closing handshakes: ss lists exactly what we made
                wait_until(lambda s=s: ss_counts(s.netns) == s.expected, 10, f"ss -tan in {s.netns}")
            exp_a, port_a = start_export("--netns", ns_a, "--interval", "1")
            procs.append(exp_a)
            exp_b, port_b = start_export("--netns", ns_b, "--interval", "1")
            procs.append(exp_b)
            inst_a, inst_b = f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"
            prom = Prometheus([inst_a, inst_b], workdir)

            got = wait_until(lambda: (lambda d: d if {inst_a, inst_b} <= d.keys() else None)(
                _per_instance(prom.query("sockmon_tcp_sockets"))), 60, "sockmon_tcp_sockets of both instances")
            assert got[inst_a] == a.expected, (got[inst_a], a.expected)
            assert got[inst_b] == b.expected, (got[inst_b], b.expected)
            assert got[inst_a] == ss_counts(ns_a) and got[inst_b] == ss_counts(ns_b)
            netns_of = {r["metric"]["instance"]: r["metric"].get("netns")
                        for r in prom.query("sockmon_tcp_sockets")}
            assert netns_of == {inst_a: ns_a, inst_b: ns_b}

            out = subprocess.run([sys.executable, "-m", "sockmon", "fleet", "--prometheus", prom.url, "--json"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            view = json.loads(out.stdout)
            hosts = {h["instance"]: h for h in view["hosts"]}
            assert set(hosts) == {inst_a, inst_b}
            for inst, s in ((inst_a, a), (inst_b, b)):
                assert hosts[inst]["netns"] == s.netns
                assert {k: v for k, v in hosts[inst]["sockets"].items() if v} == dict(s.expected)
                assert hosts[inst]["total"] == sum(s.expected.values())
            top = view["listeners"][0]  # one connection queued on a backlog of 1: the fullest in the fleet
            assert (top["instance"], top["local"], top["queue"], top["backlog"]) == (
                inst_a, f"127.0.0.1:{a.queued_port}", 1, 1)
            assert top["process"]  # this test process owns it

            text = subprocess.run([sys.executable, "-m", "sockmon", "fleet", "--prometheus", prom.url],
                                  capture_output=True, text=True, timeout=60)
            assert text.returncode == 0, text.stderr
            assert inst_a in text.stdout and inst_b in text.stdout and ns_a in text.stdout

            # every query of the Grafana dashboard is valid PromQL and finds data in this Prometheus
            from test_grafana_dashboard import dashboard_exprs

            for expr in dashboard_exprs():
                q = expr.replace("$instance", ".*")
                if q.startswith("label_values("):
                    q = q[len("label_values("):].rsplit(",", 1)[0]
                assert prom.query(q) or "increase(" in q or "rate(" in q, q

            for p in procs:  # SIGTERM ends them cleanly
                assert stop_process(p) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if prom is not None:
            prom.stop()
        for s in sets:
            s.close()
        shutil.rmtree(workdir, ignore_errors=True)
