"""The scenario model: a `Scenario` is a name, a one-line summary and ``run(ctx)``, a generator of `Step`s.

Each `Step` narrates one thing done and the kernel's answer ("client: close() → kernel sends FIN; client
socket now FIN_WAIT2"), names the connections involved (4-tuples, so a UI can highlight their rows) and
carries `Check`s. A check compares a promised outcome with what the KERNEL reports — the socket table,
tracepoint transitions, counters — read through the context's kernel view (`ScenarioContext.table`,
`transitions`, `counters`), never with the scenario's own bookkeeping.

`ScenarioContext` owns every resource a scenario makes (sockets, threads, network namespaces, veth links;
its kernel view owns the tracefs instance) and releases them all in `close()`: on success, on a failed
check, on an exception and when stopped (`stop()` from another thread, or KeyboardInterrupt / SIGTERM in
the thread that runs the scenario). This module knows nothing of how the kernel is read: the runner in
``sockmon.core.scenarios`` subclasses the context with a kernel view (core.lab never imports core.table).
"""

from __future__ import annotations

import errno as _errno
import os
import secrets
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import Struct
from sockmon.core.errors import SockmonError
from sockmon.core.lab.ladder import MAX_PACKETS, ConnPacket, LadderUnavailable, PortCapture, packet_line
from sockmon.core.netns import run_in_netns
from sockmon.core.records import Socket, Transition
from sockmon.core.states import state_name

FourTuple = tuple[str, int, str, int]  # (src, sport, dst, dport) as the socket table shows the socket
NETNS_PREFIX = "lab-"  # every namespace a scenario creates is named lab-<pid>-<random>
POLL_S = 0.01  # how often a wait re-reads the socket table
MAX_CAPTURES = 8  # packet captures one run opens (one per watched port and namespace); further ports: none


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt: not an Exception, never swallowed
    """The scenario was stopped (Ctrl-C, SIGTERM, `ScenarioContext.stop()`); the context still cleans up."""


class Check(Struct, frozen=True):
    what: str  # the promise, in words
    ok: bool
    expected: str
    observed: str  # what the kernel said
    source: str  # the kernel: "table", "tracepoint", "snapshots", "counters", "syscall", "routes"; else "clock", "decoder"

    @property
    def said(self) -> str:
        return "measured" if self.source in ("clock", "decoder") else "kernel says"


class Endpoint4(Struct, frozen=True):
    src: str
    sport: int
    dst: str
    dport: int

    @property
    def four_tuple(self) -> FourTuple:
        return (self.src, self.sport, self.dst, self.dport)


class Step(Struct, frozen=True):
    scenario: str
    index: int
    actor: str  # who acted: "client", "server", "kernel", "lab"
    text: str  # the call made and the kernel's answer
    why: str = ""
    sockets: tuple[Endpoint4, ...] = ()  # the rows involved, each as the table shows it
    checks: tuple[Check, ...] = ()
    observed: dict[str, Any] = {}  # figures measured in this step (merged into the result's)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def line(self) -> str:
        head = f"[{self.index}] {self.actor}: {self.text}"
        if self.why:
            head += f"\n      why: {self.why}"
        for c in self.checks:
            mark = "ok  " if c.ok else "FAIL"
            head += f"\n      {mark} {c.what}: expected {c.expected}, {c.said} {c.observed} ({c.source})"
        return head


class Result(Struct, frozen=True):
    scenario: str
    ok: bool
    observed: dict[str, Any]
    failed: tuple[str, ...] = ()  # the checks that failed, in words
    error: str | None = None  # an exception that ended the scenario early
    ladder: tuple[ConnPacket, ...] = ()  # the run's packets (every watched port), in time order, numbered
    ladder_note: str | None = None  # one line: why the ladder is empty (no capture could run)
    ladder_evicted: int = 0  # packets left out beyond the caps (oldest first)
    ladder_drops: int = 0  # packets the kernel dropped (capture buffer full)

    def ladder_lines(self) -> list[str]:
        """The ladder as text: a heading, one `packet_line` per packet (naming its connection), or the
        one-line reason it is empty."""
        if self.ladder_note is not None and not self.ladder:
            return [self.ladder_note]
        head = f"packet ladder: {len(self.ladder)} packets"
        conns = {(p.client, p.server) for p in self.ladder}
        if len(conns) == 1:  # one connection: named once, its sides drawn as client / server
            client, server = next(iter(conns))
            head += f", client {client} ⇄ server {server}"

            def labels(p: ConnPacket) -> tuple[str, str]:
                return "client", "server"
        else:  # several: each side by its port (the JSON lines carry the addresses)
            head += f" of {len(conns)} connections" if conns else ""

            def labels(p: ConnPacket) -> tuple[str, str]:
                return ":" + p.client.rpartition(":")[2], ":" + p.server.rpartition(":")[2]
        if self.ladder_evicted:
            head += f" ({self.ladder_evicted} more left out: the caps)"
        if self.ladder_drops:
            head += f", {self.ladder_drops} dropped by the kernel"
        return [head] + [f"{p.n:>4}" + packet_line(p, *labels(p)) for p in self.ladder]

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        figures = ", ".join(f"{k}={v}" for k, v in self.observed.items())
        out = f"{self.scenario}: {verdict}" + (f"  ({figures})" if figures else "")
        for f in self.failed:
            out += f"\n  failed: {f}"
        if self.error:
            out += f"\n  error: {self.error}"
        return out


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # one line
    run: Callable[[ScenarioContext], Iterator[Step]]
    needs_root: bool = False


@dataclass(frozen=True)
class LoopbackPair:
    """`ScenarioContext.loopback_pair`: listener, its port, client, accepted server socket, and the
    client's (``c``) and server's (``s``) 4-tuples."""

    listener: socket.socket
    port: int
    client: socket.socket
    server: socket.socket
    c: FourTuple
    s: FourTuple


def reverse(ft: FourTuple) -> FourTuple:
    return (ft[2], ft[3], ft[0], ft[1])


def four_tuple_of(sock: socket.socket) -> FourTuple:
    src, sport = sock.getsockname()[:2]
    dst, dport = sock.getpeername()[:2]
    return (src, sport, dst, dport)


def _states(states: Iterable[int | str] | int | str) -> tuple[str, ...]:
    if isinstance(states, (int, str)):
        states = (states,)
    return tuple(state_name(s) if isinstance(s, int) else s for s in states)


class ScenarioContext:
    """Resources and checks of one scenario run. Subclasses supply the kernel view (`table`,
    `transitions`, `counters`, `tracing`, `watch_port`, `close_kernel_view`)."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self._index = 0
        # stop flag + self-pipe: stop() is safe in a signal handler (threading.Event.set() there can
        # deadlock when the handler interrupts the same thread inside Event.wait)
        self._stopped = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.Lock()  # guards the pipe's closing; stop() never blocks on it
        self._wake_open = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._netns: list[str] = []
        self._links: list[tuple[str | None, str]] = []  # (namespace or None, link name)
        self._closers: list[tuple[str, Callable[[], Any]]] = []  # (what, how to release it), e.g. an engine
        self._seen: dict[FourTuple, list[str]] = {}  # states the table showed for each 4-tuple, in order
        self._captures: list[tuple[int, str | None, PortCapture]] = []  # (port, namespace, capture)
        self.capture_packets = True  # watch_port also captures the port's packets (the ladder; root)
        self.ladder_note: str | None = None  # why a capture could not run (the first reason)
        self._ladder_t0: float | None = None  # one time axis for every capture of the run
        self.closed = False

    # ------------------------------------------------------------------ kernel view (subclass)
    tracing = False

    def table(self, port: int | None = None, *, netns: str | None = None) -> list[Socket]:
        """The kernel's TCP sockets on ``port`` (either side), in the caller's namespace or ``netns``."""
        raise NotImplementedError

    def watch_port(self, port: int, *, netns: str | None = None) -> None:
        """Start recording transitions of connections on ``port`` (the tracepoint, root; subclass) and
        capturing their packets in ``netns`` (None: the caller's namespace) for the ladder (`capture`)."""
        self.capture(port, netns=netns)

    def capture(self, port: int, *, netns: str | None = None) -> PortCapture | None:
        """Capture the packets of every connection on ``port`` (either side) with an AF_PACKET socket
        opened in ``netns`` (a helper thread enters it; None: the caller's namespace), on every device
        there; call it before the first connect() so the SYN is caught. Stopped and closed by `close()`
        (before the sockets are reset: the cleanup's own RSTs are not drawn). Without root (CAP_NET_RAW)
        there is no capture and `ladder_note` says why; the scenario runs on. Bounded: at most
        `MAX_CAPTURES` per run, each with the capture's own caps."""
        if not self.capture_packets:
            return None
        with self._lock:
            if self.closed:
                raise Interrupted("the scenario was stopped")
            if any(p == port and ns == netns for p, ns, _ in self._captures):
                return None
            if len(self._captures) >= MAX_CAPTURES:
                return None
            if self._ladder_t0 is None:
                self._ladder_t0 = time.time()
        cap = PortCapture(port, t0=self._ladder_t0)
        try:
            run_in_netns(netns, cap.start)
        except LadderUnavailable as exc:
            self.ladder_note = self.ladder_note or str(exc)
            return None
        except SockmonError as exc:  # the namespace could not be entered
            self.ladder_note = self.ladder_note or f"packet ladder empty: {exc}"
            return None
        with self._lock:
            self._captures.append((port, netns, cap))
            if self.closed:  # stopped while the capture was being opened
                self._captures.pop()
                cap.stop()
                raise Interrupted("the scenario was stopped")
        return cap

    def ladder(self) -> tuple[list[ConnPacket], int, int]:
        """The packets of every capture so far, in time order, numbered from 1, ``t_ms`` from the first
        (one clock: the kernel's receive timestamps of every capture) (at most `MAX_PACKETS`,
        the newest kept), how many were left out (evicted by a capture or here) and the kernel's drops."""
        with self._lock:
            caps = [c for _, _, c in self._captures]
        packets: list[ConnPacket] = []
        evicted = drops = 0
        for cap in caps:
            packets += cap.packets
            evicted += cap.evicted + cap.untracked
            drops += cap.kernel_drops
        packets.sort(key=lambda p: p.t_ms)
        if len(packets) > MAX_PACKETS:
            evicted += len(packets) - MAX_PACKETS
            packets = packets[-MAX_PACKETS:]
        t0 = packets[0].t_ms if packets else 0.0  # +0 ms: the run's first packet (as `connect --ladder`)
        return [msgspec.structs.replace(p, n=i, t_ms=round(p.t_ms - t0, 3)) for i, p in enumerate(packets, 1)], \
            evicted, drops

    @property
    def captured_ports(self) -> list[int]:
        with self._lock:
            return [p for p, _, _ in self._captures]

    def stop_captures(self) -> list[str]:
        """Stop and close every capture (each drains what the kernel already queued); what would not stop."""
        with self._lock:
            caps = [c for _, _, c in self._captures]
        problems = []
        for cap in caps:
            cap.stop()
            if not cap.wait_done(2.0):
                problems.append(f"packet capture of port {cap.port} still running")
        return problems

    def transitions(self) -> list[Transition]:
        return []

    def counters(self, *, netns: str | None = None) -> dict[str, int]:
        """TcpExt and Tcp counters of /proc/net/netstat and /proc/net/snmp (of the caller's namespace or
        ``netns``), as "TcpExt.Name" → value."""
        return {}

    def close_kernel_view(self) -> None:
        pass

    # ------------------------------------------------------------------ steps and checks
    def step(self, actor: str, text: str, *, why: str = "", sockets: Iterable[FourTuple] = (),
             checks: Iterable[Check] = (), observed: dict[str, Any] | None = None) -> Step:
        self._index += 1
        return Step(scenario=self.scenario, index=self._index, actor=actor, text=text, why=why,
                    sockets=tuple(Endpoint4(*ft) for ft in sockets), checks=tuple(checks),
                    observed=dict(observed or {}))

    @staticmethod
    def check(what: str, ok: bool, expected: object, observed: object, source: str) -> Check:
        return Check(what=what, ok=bool(ok), expected=str(expected), observed=str(observed), source=source)

    def row(self, ft: FourTuple, *, netns: str | None = None) -> Socket | None:
        """The table's row of the 4-tuple now (None when the kernel holds no such socket)."""
        for s in self.table(ft[1], netns=netns):
            if (s.src, s.sport, s.dst, s.dport) == ft:
                self._note(ft, s.state_name)
                return s
        return None

    def _note(self, ft: FourTuple, name: str) -> None:
        seen = self._seen.setdefault(ft, [])
        if not seen or seen[-1] != name:
            seen.append(name)

    def wait_row(self, ft: FourTuple, states, timeout: float = 3.0, *, netns: str | None = None) -> Socket | None:
        """Re-read the table until the 4-tuple's row is in one of ``states``; None at the timeout."""
        wanted = _states(states)
        deadline = time.monotonic() + timeout
        while True:
            s = self.row(ft, netns=netns)
            if s is not None and s.state_name in wanted:
                return s
            if time.monotonic() >= deadline:
                return None
            self.sleep(POLL_S)

    def wait_gone(self, ft: FourTuple, timeout: float = 3.0, *, netns: str | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while self.row(ft, netns=netns) is not None:
            if time.monotonic() >= deadline:
                return False
            self.sleep(POLL_S)
        return True

    def check_row(self, what: str, ft: FourTuple, states, timeout: float = 3.0, *,
                  netns: str | None = None) -> tuple[Check, Socket | None]:
        wanted = _states(states)
        s = self.wait_row(ft, wanted, timeout, netns=netns)
        if s is None:
            now = self.row(ft, netns=netns)
            seen = "no such socket" if now is None else now.state_name
        else:
            seen = s.state_name
        return self.check(what, s is not None, " or ".join(wanted), seen, "table"), s

    def check_gone(self, what: str, ft: FourTuple, timeout: float = 3.0, *, netns: str | None = None) -> Check:
        gone = self.wait_gone(ft, timeout, netns=netns)
        now = None if gone else self.row(ft, netns=netns)
        return self.check(what, gone, "no such socket", "no such socket" if gone else now.state_name, "table")

    def path(self, ft: FourTuple) -> tuple[list[str], str]:
        """The states the kernel moved the 4-tuple's socket through, in order, and where that came from:
        the tracepoint (every transition, root) or the successive snapshots this context read."""
        if self.tracing:
            out = []
            for t in self.transitions():
                if (t.src, t.sport, t.dst, t.dport) == ft:
                    if not out:
                        out.append(t.old_name)
                    out.append(t.new_name)
            return out, "tracepoint"
        return list(self._seen.get(ft, [])), "snapshots"

    def check_path(self, what: str, ft: FourTuple, states: Iterable[str], *, exact: bool = False,
                   timeout: float = 2.0, absent: Iterable[str] = (), steady: Iterable[str] | None = None) -> Check:
        """The 4-tuple went through ``states`` in this order (a subsequence of its path; ``exact``: the
        path from the first of them on is exactly these) and never through any of ``absent``.

        Without the tracepoint the path is what successive snapshots caught: a state that lasts
        microseconds (LAST_ACK, FIN_WAIT1 on loopback) or CLOSE (no row) is never seen, so only the
        ``steady`` states among ``states`` are required then (None: all of them)."""
        wanted = list(states)
        if not self.tracing and steady is not None:
            keep = set(steady)
            wanted = [w for w in wanted if w in keep]
        bad = set(absent)
        deadline = time.monotonic() + timeout
        while True:
            seen, source = self.path(ft)
            ok = _follows(seen, wanted, exact) and not bad.intersection(seen)
            if ok or time.monotonic() >= deadline:
                break
            self.sleep(POLL_S)
        expected = " → ".join(wanted) + (f" (never {', '.join(sorted(bad))})" if bad else "")
        return self.check(what, ok, expected, " → ".join(seen) or "nothing seen", source)

    def check_counter_rose(self, what: str, name: str, before: dict[str, int], timeout: float = 1.0, *,
                           netns: str | None = None) -> tuple[Check, int]:
        """Counter ``name`` ("TcpExt.TCPAbortOnData") rose since ``before`` (in the caller's namespace
        others may add to it too; a scenario's private namespace counts only its own)."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.counters(netns=netns)
            delta = now.get(name, 0) - before.get(name, 0)
            if delta > 0 or time.monotonic() >= deadline:
                break
            self.sleep(POLL_S)
        if name not in now:
            return self.check(what, False, f"{name} +≥1", "counter not found", "counters"), 0
        return self.check(what, delta > 0, f"{name} +≥1", f"{name} +{delta}", "counters"), delta

    # ------------------------------------------------------------------ resources
    def _own(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if self.closed:
                sock.close()
                raise Interrupted("the scenario was stopped")
            self._sockets.append(sock)
        return sock

    def tcp_socket(self, family: int = socket.AF_INET, *, timeout: float | None = 5.0,
                   netns: str | None = None) -> socket.socket:
        """A TCP socket owned by the context (closed by `close()` if the scenario has not), made in the
        caller's namespace or in ``netns`` (a socket stays in the namespace it was made in)."""
        sock = self._own(run_in_netns(netns, lambda: socket.socket(family, socket.SOCK_STREAM)))
        sock.settimeout(timeout)
        return sock

    def listener(self, host: str = "127.0.0.1", port: int = 0, *, backlog: int = 16,
                 reuseaddr: bool = False, netns: str | None = None) -> socket.socket:
        """A listening socket on a port the kernel picks (port 0: parallel runs never collide)."""
        sock = self.tcp_socket(socket.AF_INET6 if ":" in host else socket.AF_INET, netns=netns)
        if reuseaddr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        return sock

    def accept(self, listener: socket.socket) -> socket.socket:
        conn, _ = listener.accept()
        self._own(conn)
        conn.settimeout(listener.gettimeout())
        return conn

    def loopback_pair(self, *, reuseaddr: bool = False) -> LoopbackPair:
        """The start most scenarios share: a listener on a port the kernel picks (its packets captured:
        `watch_port`), a client connected to it on 127.0.0.1 and the server's accepted socket — all owned
        by the context — and the client's 4-tuple with its reverse (the server's)."""
        lst = self.listener(reuseaddr=reuseaddr)
        port = lst.getsockname()[1]
        self.watch_port(port)
        client = self.tcp_socket()
        client.connect(("127.0.0.1", port))
        server = self.accept(lst)
        c = four_tuple_of(client)
        return LoopbackPair(lst, port, client, server, c, reverse(c))

    def release(self, sock: socket.socket) -> None:
        """Forget a socket the scenario closed itself."""
        with self._lock:
            if sock in self._sockets:
                self._sockets.remove(sock)

    def defer(self, what: str, fn: Callable[[], Any]) -> None:
        """Release something else the scenario made (a lab engine: ``engine.stop``) in `close()`, after
        the sockets."""
        with self._lock:
            if self.closed:
                fn()
                raise Interrupted("the scenario was stopped")
            self._closers.append((what, fn))

    def spawn(self, fn: Callable[[], Any], name: str = "scenario") -> threading.Thread:
        """A thread owned by the context: joined by `close()` (after the sockets are closed, which
        wakes any blocking call it is in)."""
        th = threading.Thread(target=fn, name=f"lab-{self.scenario}-{name}", daemon=True)
        with self._lock:
            self._threads.append(th)
        th.start()
        return th

    @staticmethod
    def can_make_namespaces() -> bool:
        return os.geteuid() == 0

    def netns(self) -> str:
        """A new network namespace ``lab-<pid>-<random>`` with lo up, removed by `close()`."""
        name = f"{NETNS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        with self._lock:
            if self.closed:
                raise Interrupted("the scenario was stopped")
            self._netns.append(name)
        _ip("netns", "add", name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns_a: str, ns_b: str, subnet: str = "10.213.0") -> tuple[str, str, str, str]:
        """A veth pair from ``ns_a`` (SUBNET.1/30) to ``ns_b`` (SUBNET.2/30), both up; removed by
        `close()`. Returns (link in a, address in a, link in b, address in b)."""
        tag = secrets.token_hex(3)
        la, lb = f"lab{tag}a", f"lab{tag}b"
        with self._lock:
            self._links.append((ns_a, la))
        _ip("link", "add", la, "netns", ns_a, "type", "veth", "peer", "name", lb, "netns", ns_b)
        _ip("-n", ns_a, "addr", "add", f"{subnet}.1/30", "dev", la)
        _ip("-n", ns_b, "addr", "add", f"{subnet}.2/30", "dev", lb)
        _ip("-n", ns_a, "link", "set", la, "up")
        _ip("-n", ns_b, "link", "set", lb, "up")
        return la, f"{subnet}.1", lb, f"{subnet}.2"

    # ------------------------------------------------------------------ stopping and cleanup
    def stop(self) -> None:
        """Ask the scenario to stop (any thread, or a signal handler): its next wait raises `Interrupted`."""
        self._stopped = True
        if not self._wake_lock.acquire(blocking=False):
            return  # close() is closing the pipe: the scenario is ending anyway
        try:
            if self._wake_open:
                os.write(self._wake_w, b"x")
        except OSError:  # pipe full: already woken
            pass
        finally:
            self._wake_lock.release()

    @property
    def stopping(self) -> bool:
        return self._stopped

    def sleep(self, seconds: float) -> None:
        """Wait; raises `Interrupted` when the scenario is stopped (also with ``seconds`` 0: a stop point)."""
        if not self._stopped and seconds > 0 and self._wake_open:
            try:
                select.select([self._wake_r], [], [], seconds)
            except (OSError, ValueError):  # closed under us: stopped
                pass
        if self._stopped:
            raise Interrupted("the scenario was stopped")

    def close(self) -> list[str]:
        """Release everything (idempotent): sockets (reset, so cleanup leaves no FIN_WAIT / TIME_WAIT of
        its own), threads, links, namespaces, the kernel view. Returns what could not be released."""
        with self._lock:
            if self.closed:
                return []
            self.closed = True
            sockets, self._sockets = self._sockets, []
            threads, self._threads = self._threads, []
            links, self._links = self._links, []
            namespaces, self._netns = self._netns, []
            closers, self._closers = self._closers, []
        self._stopped = True
        problems: list[str] = self.stop_captures()  # first: the ladder ends with the scenario, not its cleanup
        for sock in sockets:
            try:
                if sock.fileno() >= 0:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    # wakes a thread blocked in accept() / recv() on it (close() alone would not); sends nothing
                    sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        for sock in sockets:
            sock.close()
        for what, fn in closers:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - reported, the rest is still released
                problems.append(f"{what}: {exc}")
        for th in threads:
            th.join(timeout=5.0)
            if th.is_alive():
                problems.append(f"thread {th.name} still running")
        for ns, link in links:
            r = subprocess.run(["ip", *(["-n", ns] if ns else []), "link", "del", link],
                               capture_output=True, text=True, timeout=10)
            if r.returncode and "Cannot find device" not in r.stderr and "No such file" not in r.stderr \
                    and "Invalid netns" not in r.stderr:
                problems.append(f"link {link}: {r.stderr.strip()}")
        for ns in namespaces:
            r = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, timeout=10)
            if r.returncode and os.path.exists(f"/run/netns/{ns}"):
                problems.append(f"namespace {ns}: {r.stderr.strip()}")
        try:
            self.close_kernel_view()
        except OSError as exc:
            problems.append(f"kernel view: {exc}")
        with self._wake_lock:
            self._wake_open = False
            os.close(self._wake_r)
            os.close(self._wake_w)
        return problems

    def __enter__(self) -> ScenarioContext:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _follows(seen: list[str], wanted: list[str], exact: bool) -> bool:
    if exact:
        if not wanted or wanted[0] not in seen:
            return False
        i = seen.index(wanted[0])
        return seen[i:i + len(wanted)] == wanted and len(seen) - i == len(wanted)
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


def run_ip(*args: str) -> str:
    """``ip ARGS`` (iproute2): its output; `SockmonError` with its message when it fails."""
    return _ip(*args)


def _ip(*args: str) -> str:
    try:
        r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    except FileNotFoundError as exc:
        raise SockmonError("the `ip` command (iproute2) is needed for namespace scenarios") from exc
    if r.returncode:
        raise SockmonError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def errno_name(exc: OSError | int) -> str:
    """ECONNREFUSED for an OSError or an errno; "0" for none."""
    code = exc if isinstance(exc, int) else (exc.errno or 0)
    return _errno.errorcode.get(code, str(code))


def read_sysctl(path: str) -> int | None:
    try:
        with open(f"/proc/sys/{path}", encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
