"""`sockmon lab`: each scenario, headless as root, reaches its promised states in order — from its JSON steps
AND independently (the test's own tracefs instance, `ss`) — ends ok, and leaves nothing behind; a failed
check gives ok:false and exit 1; a scenario stopped mid-way (SIGTERM, SIGINT, stop()) releases every
namespace, link, socket and tracefs instance it made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sockmon.core.table.tracepoint import TransitionTracer, list_instances, tracing_available

from tests.sockhelp import ss_rows

ROOT_OK, WHY = tracing_available()
needs_root = pytest.mark.skipif(not ROOT_OK or os.geteuid() != 0, reason=f"needs root and tracefs: {WHY}")
SOCKMON = [sys.executable, "-m", "sockmon"]
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def _run_json(*args: str, timeout: float = 60) -> tuple[int, list[dict], subprocess.CompletedProcess]:
    out = subprocess.run([*SOCKMON, "lab", *args, "--json"], capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return out.returncode, lines, out


def _rows_of(step: dict, port: int) -> list[dict]:
    """`ss` rows of the step's connections (either direction) and of the listener on ``port``."""
    mine = set()
    for e in step["sockets"]:
        a, b = f"{e['src']}:{e['sport']}", f"{e['dst']}:{e['dport']}"
        mine |= {(a, b), (b, a)}
    return [r for r in ss_rows(port) if (r["local"], r["peer"]) in mine
            or (r["lport"] == port and r["state"] == "LISTEN")]


def _left_behind(pid: int, step: dict, port: int) -> list[str]:
    """What a finished run with this pid left: namespaces, tracefs instances, its sockets."""
    left = [n for n in _netns() if n.startswith(f"lab-{pid}-")]
    left += [n for n in list_instances() if n.startswith(f"sockmon-{pid}-")]
    left += [f"{r['state']} {r['local']} {r['peer']}" for r in _rows_of(step, port)]
    return left


def _path(transitions, ft) -> list[str]:
    src, sport, dst, dport = ft
    out: list[str] = []
    for t in transitions:
        if (t.src, t.sport, t.dst, t.dport) == (src, sport, dst, dport):
            if not out:
                out.append(t.old_name)
            out.append(t.new_name)
    return out


def _in_order(seen: list[str], wanted: list[str]) -> bool:
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


def _table_states(steps) -> list[str]:
    """The states the run's table checks reported, in step order."""
    return [c["observed"] for s in steps for c in s["checks"] if c["source"] == "table"
            and not any(w in c["what"] for w in ("timer", "retransmitted", "probe"))]


# scenario → the states its table checks report, in this order (from its JSON steps)
PROMISED_TABLE = {
    "time-wait": ["ESTABLISHED", "ESTABLISHED", "FIN_WAIT2", "CLOSE_WAIT", "no such socket", "TIME_WAIT"],
    "close-wait": ["ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT2", "CLOSE_WAIT", "no such socket", "TIME_WAIT"],
    "linger-abort": ["ESTABLISHED", "ESTABLISHED", "no such socket", "no row"],
    "half-close": ["ESTABLISHED", "FIN_WAIT2", "CLOSE_WAIT", "CLOSE_WAIT", "TIME_WAIT"],
    "backlog-overflow": ["Recv-Q 0, Send-Q 1", "ESTABLISHED", "1", "ESTABLISHED", "2", "Recv-Q 2", "SYN_SENT"],
    "epoll-level-vs-edge": ["Recv-Q 90", "Recv-Q 0", "Recv-Q 90", "Recv-Q 58", "Recv-Q 90", "Recv-Q 0",
                            "Recv-Q 90", "Recv-Q 0"],
    "short-writes": ["ESTABLISHED", "Send-Q up to "],
    "keepalive-dead-peer": ["ESTABLISHED", "no such socket"],
    "blocking-echo-stall": ["ESTABLISHED", "ESTABLISHED", "Recv-Q ", "Recv-Q 5", "ESTABLISHED"],
    "framing-split": ["Recv-Q 2", "Recv-Q 5", "Recv-Q 297"],
    "addr-in-use": ["ESTABLISHED", "TIME_WAIT", "none", "TIME_WAIT", "LISTEN", "TIME_WAIT"],
    "refused-and-timeout": ["CLOSE", "no such socket", "ESTABLISHED", "no such socket"],
}


def _sockets(steps) -> list[tuple]:
    seen = []
    for s in steps:
        for e in s["sockets"]:
            ft = (e["src"], e["sport"], e["dst"], e["dport"])
            if ft not in seen:
                seen.append(ft)
    return seen


@needs_root
@pytest.mark.root
@pytest.mark.parametrize("name", list(PROMISED_TABLE))
def test_scenario_reaches_its_states_and_leaves_nothing(name):
    with TransitionTracer() as tracer:  # the test's own view of the kernel, independent of the run's
        rc, lines, out = _run_json(name)
        time.sleep(0.2)
        transitions = tracer.read()
    assert rc == 0, out.stdout + out.stderr
    result = lines[-1]
    steps = [x for x in lines[:-1] if "index" in x]
    ladder = [x["ladder"] for x in lines if "ladder" in x]
    assert result["scenario"] == name and result["ok"] is True, result
    assert result["observed"]["transitions_from"] == "tracepoint"
    # the run's packet ladder (root): after the steps, its first packet a SYN, counted in observed
    assert lines[:len(steps)] == steps and lines[len(steps):-2] == [{"ladder": p} for p in ladder]
    assert lines[-2]["ladder_end"]["packets"] == len(ladder)
    assert ladder and ladder[0]["flags"] == ["SYN"] and result["observed"]["packets"] == len(ladder)
    assert steps and all(s["ok"] for s in steps) and [s["index"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(s["text"] and s["checks"] for s in steps)
    seen = _table_states(steps)
    promised = PROMISED_TABLE[name]
    assert len(seen) == len(promised) and all(o.startswith(p) for o, p in zip(seen, promised, strict=True)), seen
    socks = _sockets(steps)
    ports = {result["observed"]["port"]} | {ft[1] for ft in socks} | {ft[3] for ft in socks}
    ss = {(r["local"], r["peer"]): r["state"] for r in ss_rows(*ports)}

    def ss_state(ft):
        return ss.get((f"{ft[0]}:{ft[1]}", f"{ft[2]}:{ft[3]}"))

    if name in ("time-wait", "close-wait", "half-close"):
        client, server = socks[0], socks[1]
        assert _in_order(_path(transitions, client), ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2"])
        assert _in_order(_path(transitions, server), ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSE"])
        assert ss_state(client) == "TIME-WAIT"  # ss, not sockmon's own netlink code
        assert ss_state(server) is None
        if name == "time-wait":
            first, second = result["observed"]["time_wait_timer_ms"]
            assert 0 < second < first <= 60_000
        if name == "half-close":
            assert result["observed"]["bytes_after_shutdown"] == 200_000
    elif name == "linger-abort":
        client, server = socks[0], socks[1]
        assert _path(transitions, client)[-2:] == ["ESTABLISHED", "CLOSE"]
        assert not {"FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"} & set(_path(transitions, client))
        assert _path(transitions, server)[-2:] == ["ESTABLISHED", "CLOSE"]
        assert ss_state(client) is None and ss_state(server) is None
        assert result["observed"]["peer_error"] == "ECONNRESET"
        assert result["observed"]["abort_on_data_delta"] >= 1
    elif name == "backlog-overflow":
        dropped = socks[-1]
        assert _path(transitions, dropped) == ["SYN_SENT", "CLOSE"]
        gave_up = [t for t in transitions if (t.src, t.sport, t.dst, t.dport) == dropped][-1]
        assert 2000 <= gave_up.dwell_ms <= 4000  # SYN_SENT until ETIMEDOUT, by the tracepoint's clock
        for first in socks[:2]:  # the two queued clients completed their handshake
            assert _in_order(_path(transitions, first), ["SYN_SENT", "ESTABLISHED"])
        assert result["observed"]["queued"] == 2
        assert result["observed"]["listen_overflows"] >= 1 and result["observed"]["listen_drops"] >= 2
        assert result["observed"]["netns"] not in _netns()
    elif name == "epoll-level-vs-edge":
        o = result["observed"]  # exactly the figures the issue promises
        assert (o["level_reads"], o["edge_reads"], o["edge_stranded"]) == ([32, 32, 26], [32], 58)
        assert (o["level_drain_reads"], o["edge_drain_reads"], o["edge_drain_stranded"]) == ([90], [90], 0)
        # the stranded 58 bytes were in the kernel's receive queue: the Recv-Q table checks above
        assert len(socks) == 4 and all(_in_order(_path(transitions, ft), ["ESTABLISHED"]) for ft in socks)
    elif name == "short-writes":
        o = result["observed"]
        assert o["received"] == 1 << 20 and o["sha256_equal"] is True
        assert o["short_writes"] >= 2 and o["first_send"] < 1 << 20 and o["unchecked_loss"] == (1 << 20) - o["first_send"]
        assert o["max_send_q"] > 0
        writer = socks[0]
        assert _in_order(_path(transitions, writer), ["ESTABLISHED", "FIN_WAIT1"])  # shutdown(WR) after the last byte
    elif name == "keepalive-dead-peer":
        o = result["observed"]
        assert abs(o["detected_s"] - 4) <= 1.5 and o["error"] == "ETIMEDOUT"  # idle + intvl × cnt = 1 + 1 × 3
        assert o["probes_seen"] == sorted(o["probes_seen"]) and o["probes_seen"][-1] >= 2
        client = socks[0]
        assert client[0] == "10.213.1.1"
        end = [t for t in transitions if (t.src, t.sport, t.dst, t.dport) == client][-1]
        assert (end.old_name, end.new_name) == ("ESTABLISHED", "CLOSE")
        assert 2500 <= end.dwell_ms <= 5500  # ESTABLISHED until the kernel gave up, by the tracepoint's clock
        assert not set(o["netns"]) & set(_netns())
    elif name == "blocking-echo-stall":
        o = result["observed"]
        assert o["blocking_wait_ms"] >= 1000.0 - 5 and o["engine_wait_ms"] < 50.0  # idle 1 s vs at once
        first = socks[0]
        closed = [t for t in transitions if (t.src, t.sport, t.dst, t.dport) == first and t.new_name == "FIN_WAIT1"]
        assert closed and closed[0].dwell_ms >= 1000.0 - 5  # idle ESTABLISHED for 1 s, by the tracepoint's clock
        assert not [r for r in ss_rows(o["engine_port"]) if r["state"] == "LISTEN" and r["lport"] == o["engine_port"]]
    elif name == "framing-split":
        o = result["observed"]
        assert o["decoder_states"] == ["length unknown, have 2 of 4 header bytes", "length known = 300, have 3 bytes",
                                       "between frames, 1 complete"]
        assert o["naive_reads"][0] == "2 bytes: a truncated header, record dropped"
        assert o["splits_checked"] == 303 * 302 // 2 and o["split_failures"] == 0
        assert all(_in_order(_path(transitions, ft), ["ESTABLISHED"]) for ft in socks)
    elif name == "addr-in-use":
        server = socks[1]
        assert ss_state(server) == "TIME-WAIT"
        assert result["observed"]["without_reuseaddr"] == "EADDRINUSE"
        assert result["observed"]["with_reuseaddr"] == "success"
    elif name == "refused-and-timeout":
        refused, blackholed = socks[0], socks[-1]
        assert _path(transitions, refused) == ["SYN_SENT", "CLOSE"]
        assert result["observed"]["nonblocking_refused_so_error"] == "ECONNREFUSED"
        # the namespace half: SYN_SENT until the kernel gave up (ETIMEDOUT after 1 + 2 s, TCP_SYNCNT 1)
        assert blackholed[0] == "10.213.0.1" and _path(transitions, blackholed) == ["SYN_SENT", "CLOSE"]
        gave_up = [t for t in transitions if (t.src, t.sport, t.dst, t.dport) == blackholed][-1]
        assert 2000 <= gave_up.dwell_ms <= 4000  # time in SYN_SENT, by the tracepoint's own clock
        assert result["observed"]["blackhole_so_error"] == "ETIMEDOUT"
        assert result["observed"]["syn_retransmits"] >= 1
        assert not set(result["observed"]["blackhole_netns"]) & set(_netns())
    # nothing left behind: the process is gone, so is everything it made
    for inst in list_instances():
        assert not inst.startswith("sockmon-") or _alive(inst), f"tracefs instance left: {inst}"
    assert not [n for n in _netns() if n.startswith("lab-") and not _alive(n)]
    mine = {(f"{ft[0]}:{ft[1]}", f"{ft[2]}:{ft[3]}") for ft in socks}
    port = result["observed"]["port"]
    left = [r for r in ss_rows(*ports) if r["state"] != "TIME-WAIT"
            and ((r["local"], r["peer"]) in mine or r["lport"] == port)]  # its connections and its listener
    assert not left, left


def _alive(name: str) -> bool:
    """An instance / namespace named PREFIX-PID-… whose process still runs (another test's, another helper's)."""
    try:
        pid = int(name.split("-")[1])
        os.kill(pid, 0)
        return True
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True


# ------------------------------------------------------------------- seams: a failing check, a hang
SEAM = r'''
import sys, socket
sys.path.insert(0, {here!r})
from sockmon.core.lab.scenarios import register
from sockmon.core.lab.scenarios.base import Scenario, four_tuple_of
from sockmon.cli import main

def wrong(ctx):
    lst = ctx.listener()
    cli = ctx.tcp_socket(); cli.connect(lst.getsockname()); ctx.accept(lst)
    ft = four_tuple_of(cli)
    chk, _ = ctx.check_row("deliberately wrong: a connected socket expected in LISTEN", ft, "LISTEN", timeout=0.2)
    yield ctx.step("client", "connect()", sockets=[ft], checks=[chk], observed={{"port": lst.getsockname()[1]}})

def hang(ctx):
    ns_a, ns_b = ctx.netns(), ctx.netns()
    la, _, lb, _ = ctx.veth(ns_a, ns_b, "10.213.9")
    lst = ctx.listener()
    port = lst.getsockname()[1]
    ctx.watch_port(port)
    cli = ctx.tcp_socket(); cli.connect(("127.0.0.1", port)); srv = ctx.accept(lst)
    ft = four_tuple_of(cli)
    yield ctx.step("lab", "made everything", sockets=[ft],
                   observed={{"port": port, "netns": [ns_a, ns_b], "links": [la, lb]}})
    ctx.sleep(60)
    yield ctx.step("lab", "never reached")

register(Scenario(name="wrong", summary="a check that must fail", run=wrong))
register(Scenario(name="hang", summary="makes everything, then waits", run=hang))
sys.exit(main(sys.argv[1:]))
'''


def _seam(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SEAM.format(here=HERE), "lab", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@needs_root
@pytest.mark.root
def test_a_failed_check_gives_ok_false_and_exit_1():
    proc = _seam("wrong", "--json")
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1, stdout + stderr
    lines = [json.loads(line) for line in stdout.splitlines()]
    step, result = lines[0], lines[-1]
    assert lines[1:-1] == [{"ladder_unavailable": "packet ladder empty: the scenario watched no port"}]
    assert step["ok"] is False and step["checks"][0]["observed"] == "ESTABLISHED"
    assert result["ok"] is False and "LISTEN" in result["failed"][0]
    assert not [r for r in ss_rows(result["observed"]["port"])]  # cleanup reset the connection


@needs_root
@pytest.mark.root
@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_scenario_leaves_nothing(sig, status):
    proc = _seam("hang", "--json")
    try:
        first = json.loads(proc.stdout.readline())
        port = first["observed"]["port"]
        ns_a, ns_b = first["observed"]["netns"]
        # it all exists while the scenario runs
        assert {ns_a, ns_b} <= set(_netns())
        assert any(n.startswith(f"sockmon-{proc.pid}-") for n in list_instances())
        assert {r["state"] for r in _rows_of(first, port)} == {"LISTEN", "ESTAB"}
        links_in_a = subprocess.run(["ip", "-n", ns_a, "-o", "link"], capture_output=True, text=True).stdout
        assert first["observed"]["links"][0] in links_in_a
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # the test failed mid-way: do the cleanup the run could not
            proc.kill()
            proc.wait()
            for n in _netns():
                if n.startswith(f"lab-{proc.pid}-"):
                    subprocess.run(["ip", "netns", "del", n], capture_output=True)
    assert proc.returncode == status, stderr
    result = json.loads(stdout.splitlines()[-1])
    assert result["ok"] is False and signal.Signals(sig).name in result["error"]
    assert _left_behind(proc.pid, first, port) == []
    assert ns_a not in _netns() and ns_b not in _netns()
    assert not any(link in _links() for link in first["observed"]["links"])


@needs_root
@pytest.mark.root
def test_stop_from_another_thread_and_an_exception_clean_up():
    import threading

    from sockmon.core.lab.scenarios.base import Interrupted, Scenario
    from sockmon.core.scenarios.runner import KernelContext, run_scenario

    made = {}

    def body(ctx):
        made["ns"] = ctx.netns()
        lst = ctx.listener()
        made["port"] = lst.getsockname()[1]
        ctx.watch_port(made["port"])
        made["instances"] = [n for n in list_instances() if n.startswith(f"sockmon-{os.getpid()}-")]
        yield ctx.step("lab", "made a namespace, a listener and a tracefs instance")
        if made.get("fail"):
            raise RuntimeError("a scenario bug")
        ctx.sleep(60)

    ctx = KernelContext("stoppable")
    threading.Timer(0.5, ctx.stop).start()
    with pytest.raises(Interrupted):
        run_scenario(Scenario(name="stoppable", summary="", run=body), context=ctx)
    assert made["ns"] not in _netns() and made["instances"]
    assert not set(made["instances"]) & set(list_instances())
    assert not ss_rows(made["port"])

    made.clear()
    made["fail"] = True
    result = run_scenario(Scenario(name="buggy", summary="", run=body))
    assert result.ok is False and "RuntimeError: a scenario bug" in result.error
    assert made["ns"] not in _netns() and not set(made["instances"]) & set(list_instances())
    assert not ss_rows(made["port"])


def test_list_and_bad_names():
    out = subprocess.run([*SOCKMON, "lab", "--list"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names == ["time-wait", "close-wait", "linger-abort", "half-close", "backlog-overflow", "keepalive-dead-peer",
                     "addr-in-use", "refused-and-timeout", "blocking-echo-stall", "epoll-level-vs-edge",
                     "framing-split", "short-writes"]
    assert all(len(line.split(None, 1)) == 2 for line in out.stdout.splitlines())  # name, then a description
    bad = subprocess.run([*SOCKMON, "lab", "no-such\x1b[31m"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and "time-wait" in bad.stderr and "\x1b" not in bad.stderr


def test_kernel_context_keeps_a_bounded_list_of_transitions():
    import socket as _socket

    from sockmon.core.records import Transition
    from sockmon.core.scenarios import runner

    class FakeTracer:
        def __init__(self):
            self.n = 0

        def batches(self):
            for _ in range(3):
                out = [Transition(ts=float(self.n + i), family=_socket.AF_INET, src="127.0.0.1", sport=1,
                                  dst="127.0.0.1", dport=2, old=1, new=4, source="tracepoint")
                       for i in range(5_000)]
                self.n += 5_000
                yield out

        def close(self):
            pass

    ctx = runner.KernelContext("bounds", use_tracepoint=False)
    ctx._tracers = {1: FakeTracer()}
    for _ in range(4):  # 60,000 transitions through a cap of MAX_TRANSITIONS
        got = ctx.transitions()
        assert len(got) <= runner.MAX_TRANSITIONS
    assert len(got) == runner.MAX_TRANSITIONS and got[-1].ts == 59_999.0  # the newest kept
    ctx.close()


@needs_root
@pytest.mark.root
@pytest.mark.parametrize("name", list(PROMISED_TABLE))
def test_without_the_tracepoint_paths_come_from_snapshots(name):
    """Non-root mode (no tracefs): the same scenario holds with its paths read from successive snapshots."""
    from sockmon.core.scenarios.runner import run_scenario

    steps = []
    result = run_scenario(name, steps.append, use_tracepoint=False)
    assert result.ok, result.line()
    assert result.observed["transitions_from"] == "snapshots"
    sources = {c.source for s in steps for c in s.checks}
    assert "tracepoint" not in sources
    assert not [n for n in list_instances() if n.startswith(f"sockmon-{os.getpid()}-")]
