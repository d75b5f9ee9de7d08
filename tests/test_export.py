"""`sockmon export`: the exposition scraped over HTTP (urllib) and parsed with prometheus_client's parser.

Sockets live in private namespaces (prom-…) so the counts are exact; a child process named with a
terminal escape, a BEL and Rich markup owns a listener; the listener cap, inferred and tracepoint
transitions, a real ListenOverflows, SIGTERM / SIGINT cleanup and the non-loopback warning."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from prom_helpers import SocketSet, http_get, private_netns, ss_counts, start_export, stop_process, wait_until
from prometheus_client.parser import text_string_to_metric_families
from sockmon.core.errors import BadInput
from sockmon.core.netns import run_in_netns
from sockmon.core.table.metrics import MetricsCollector, exposed_names, families
from sockmon.core.text import inert

from sockmon.cli.export import _Bridge, is_loopback, parse_listen, serve

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

EVIL_COMM = "\x1b]0;X\x07\x1b[2J[/x]"  # title + clear screen + markup: 14 bytes, fits comm
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # every control but \t and \n

CHILD = r"""
import ctypes, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, ctypes.c_char_p(sys.argv[1].encode()), 0, 0, 0) != 0:  # PR_SET_NAME
    raise SystemExit("prctl failed")
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(7)
print(lst.getsockname()[1], flush=True)
sys.stdin.read()
"""


def scrape(port: int) -> tuple[str, dict]:
    text = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams: dict, name: str) -> list:
    return [s for f in fams.values() for s in f.samples if s.name == name]


@pytest.fixture
def served():
    """(start(collector) -> port); every server and collector stopped afterwards."""
    running = []

    def start(collector) -> int:
        collector.collect_once()
        collector.start()
        httpd, _ = serve(collector, "127.0.0.1", 0, "test")
        running.append((httpd, collector))
        return httpd.server_address[1]

    yield start
    for httpd, collector in running:
        httpd.shutdown()
        httpd.server_close()
        collector.stop()


def test_exposition_counts_listeners_and_hostile_process_name(served):
    with private_netns("x") as ns:
        made = SocketSet(ns, listeners=2, pairs=3, time_wait=1, queued=1)
        child = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CHILD, EVIL_COMM],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            evil_port = int(child.stdout.readline())
            expected = made.expected + Counter(listen=1)
            wait_until(lambda: ss_counts(ns) == expected, 10, "the sockets to settle")
            port = served(MetricsCollector(interval=0.2, netns=ns))
            text, fams = scrape(port)

            assert not RAW_CONTROL.search(text)  # the escape and BEL never reach the exposition raw
            states = {s.labels["state"]: s.value for s in samples(fams, "sockmon_tcp_sockets")}
            assert {k: v for k, v in states.items() if v} == expected == ss_counts(ns)
            assert {"established", "time_wait", "listen", "syn_sent", "close_wait"} <= states.keys()
            assert all(s.labels["netns"] == ns for s in samples(fams, "sockmon_tcp_sockets"))

            queues = {s.labels["local"]: s for s in samples(fams, "sockmon_listen_queue")}
            backlogs = {s.labels["local"]: s.value for s in samples(fams, "sockmon_listen_backlog")}
            evil = queues[f"127.0.0.1:{evil_port}"]
            assert evil.labels["process"] == inert(EVIL_COMM)  # \x1b]0;X\x07\x1b[2J[/x] as visible text
            assert "[/x]" in evil.labels["process"] and "\x1b" not in evil.labels["process"]
            assert backlogs[f"127.0.0.1:{evil_port}"] == 7
            qlocal = f"127.0.0.1:{made.queued_port}"
            assert (queues[qlocal].value, backlogs[qlocal]) == (1, 1)
            assert samples(fams, "sockmon_listen_queue")[0].labels["local"] == qlocal  # fullest first
            assert queues[qlocal].labels["process"]  # this test process

            for name in ("sockmon_listen_overflows", "sockmon_listen_drops", "sockmon_tcp_retransmits",
                         "sockmon_tcp_transitions", "sockmon_transition_events_lost"):
                assert fams[name].type == "counter", name
            assert samples(fams, "sockmon_tcp_retransmits_total")[0].value == 0  # a fresh namespace
            info = samples(fams, "sockmon_exporter_info")[0].labels
            assert info["transitions"] == "inferred"  # a namespace: the tracepoint cannot tell them apart
            assert {s.name for f in fams.values() for s in f.samples if s.name.startswith("sockmon_")} <= \
                exposed_names()
        finally:
            child.stdin.close()
            child.wait(timeout=10)
            made.close()


def test_listener_cap_keeps_the_fullest(served):
    with private_netns("cap") as ns:
        made = SocketSet(ns, listeners=5, pairs=0, time_wait=0, queued=1)
        try:
            collector = MetricsCollector(interval=60, netns=ns, max_listeners=2)
            port = served(collector)
            _, fams = scrape(port)
            locals_ = [s.labels["local"] for s in samples(fams, "sockmon_listen_queue")]
            assert len(locals_) == 2 and locals_[0] == f"127.0.0.1:{made.queued_port}"
            assert samples(fams, "sockmon_listeners_not_exported")[0].value == 4
            assert samples(fams, "sockmon_tcp_sockets") and \
                {s.labels["state"]: s.value for s in samples(fams, "sockmon_tcp_sockets")}["listen"] == 6
        finally:
            made.close()


def test_inferred_transitions_and_a_real_listen_overflow():
    with private_netns("tr") as ns:
        held = []
        try:
            collector = MetricsCollector(interval=60, netns=ns)
            first = collector.collect_once()
            assert first.namespaces[0].transitions == ()

            def build():
                lst = socket.socket()
                lst.bind(("127.0.0.1", 0))
                lst.listen(0)  # room for one connection in the accept queue
                held.append(lst)
                for _ in range(4):  # nobody accepts: the queue overflows, SYNs are dropped
                    c = socket.socket()
                    c.setblocking(False)
                    c.connect_ex(lst.getsockname())
                    held.append(c)
            run_in_netns(ns, build)
            time.sleep(0.5)
            second = collector.collect_once()
            sample = second.namespaces[0]
            pairs = {(o, n): c for o, n, c in sample.transitions}
            assert pairs[("close", "listen")] == 1
            assert pairs[("close", "established")] >= 2  # the queued child + its client
            assert sample.listen_overflows >= 1 and sample.listen_drops >= 1
            fams = {f.name: f for f in families(second)}
            assert fams["sockmon_tcp_transitions"].labels == ("netns", "old", "new")
            before = dict(pairs)
            for s in held[1:]:
                s.close()
            time.sleep(0.2)
            third = collector.collect_once().namespaces[0]
            after = {(o, n): c for o, n, c in third.transitions}
            assert all(after[k] >= v for k, v in before.items())  # counters only grow
            assert third.listen_overflows >= sample.listen_overflows
        finally:
            for s in held:
                s.close()


def test_tracepoint_transitions_when_own_namespace():
    from sockmon.core.table.tracepoint import tracing_available

    ok, why = tracing_available()
    if not ok:
        pytest.skip(why)
    with MetricsCollector(interval=60) as collector:
        assert collector.transitions_source == "tracepoint"
        base = dict(((o, n), c) for o, n, c in collector.collect_once().namespaces[0].transitions)
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(4)
        cli = socket.create_connection(lst.getsockname())
        srv, _ = lst.accept()
        for s in (cli, srv, lst):
            s.close()
        time.sleep(0.3)
        now = dict(((o, n), c) for o, n, c in collector.collect_once().namespaces[0].transitions)
        assert now.get(("close", "listen"), 0) - base.get(("close", "listen"), 0) >= 1
        assert now.get(("syn_sent", "established"), 0) - base.get(("syn_sent", "established"), 0) >= 1
        assert now.get(("established", "fin_wait1"), 0) - base.get(("established", "fin_wait1"), 0) >= 1
        name = collector._tracer.name
    assert name not in os.listdir("/sys/kernel/tracing/instances")  # stop() removed it


@pytest.mark.parametrize("sig", [15, 2])
def test_signal_ends_export_cleanly(sig):
    proc, port = start_export("--interval", "0.5")
    try:
        text, fams = scrape(port)
        info = samples(fams, "sockmon_exporter_info")[0].labels
        instances = [n for n in os.listdir("/sys/kernel/tracing/instances") if n.startswith(f"sockmon-{proc.pid}-")]
        if info["transitions"] == "tracepoint":
            assert len(instances) == 1
        assert "netns" not in samples(fams, "sockmon_tcp_sockets")[0].labels  # own namespace: no label
    finally:
        rc = stop_process(proc, sig)
    assert rc == 0
    assert not [n for n in os.listdir("/sys/kernel/tracing/instances") if n.startswith(f"sockmon-{proc.pid}-")]
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_non_loopback_listen_warns():
    with private_netns("wan") as ns:  # 0.0.0.0 inside a private namespace: reachable by nobody
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "sockmon", "export",
                                 "--listen", "0.0.0.0:0"], stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stderr.readline()
            assert first.startswith("sockmon export: warning: serving on 0.0.0.0:0, not loopback")
            assert "serving http://0.0.0.0:" in proc.stderr.readline()
        finally:
            assert stop_process(proc) == 0


def test_listen_parsing_and_loopback():
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen(":9464") == ("127.0.0.1", 9464)
    for bad in ("9464", "127.0.0.1:x", "127.0.0.1:70000", "[::1]9464"):
        with pytest.raises(BadInput):
            parse_listen(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")


def test_export_bad_input_is_one_line():
    for args, needle in ((["--netns", "prom-no-such-ns"], "no network namespace"),
                         (["--interval", "0"], "--interval"), (["--listen", "nowhere"], "--listen")):
        out = subprocess.run([sys.executable, "-m", "sockmon", "export", *args], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 2 and needle in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr


def test_no_sample_yet_serves_nothing():
    class Empty:
        latest = None
        interval = 5.0

    assert list(_Bridge(Empty(), "x").collect()) == []


def test_all_netns_labels_each_namespace_and_caps_them():
    from sockmon.core.netns import all_netns
    from sockmon.core.table.metrics import LABEL_MAX, label_text

    with private_netns("all1") as ns1, private_netns("all2") as ns2:
        a = SocketSet(ns1, listeners=1, pairs=2, time_wait=0)
        b = SocketSet(ns2, listeners=2, pairs=0, time_wait=0)
        try:
            sample = MetricsCollector(interval=60, all_netns=True).collect_once()  # every namespace, for real
            by_ns = {s.netns: s for s in sample.namespaces}
            for ns, made in ((ns1, a), (ns2, b)):
                assert {k: v for k, v in by_ns[ns].by_state if v} == made.expected
            assert sample.labelled and all(s.netns for s in sample.namespaces)
            assert {li.netns for li in sample.listeners} >= {ns1, ns2}

            refs = {r.ident: r for r in all_netns()}
            own = next(r for r in refs.values() if r.current)
            shown = [own, refs[ns1], refs[ns2]]
            col = MetricsCollector(interval=60, all_netns=True, max_netns=2, list_netns=lambda: shown)
            first = col.collect_once()
            assert [s.netns for s in first.namespaces] == [own.ident, ns1] and first.netns_not_exported == 1
            assert set(col._ns) == {own.ident, ns1}
            shown[:] = [own, refs[ns2]]  # ns1 left: its state is forgotten
            second = col.collect_once()
            assert [s.netns for s in second.namespaces] == [own.ident, ns2] and second.netns_not_exported == 0
            assert set(col._ns) == {own.ident, ns2}
        finally:
            a.close()
            b.close()
    long = "x" * 500 + "\x1b"
    assert len(label_text(long)) == LABEL_MAX and "\x1b" not in label_text("a\x1bb")


def test_a_namespace_that_vanishes_is_one_error_not_a_crash(served):
    errors = []
    with private_netns("gone") as ns:
        collector = MetricsCollector(interval=0.2, netns=ns, on_error=errors.append)
        port = served(collector)
    wait_until(lambda: errors, 10, "the failed round to be reported")
    _, fams = scrape(port)
    assert not samples(fams, "sockmon_tcp_sockets")  # no stale counts for a namespace that is gone
    assert samples(fams, "sockmon_collect_errors_total")[0].value >= 1
    assert "namespace" in errors[0]
