"""The metrics `sockmon export` serves: a model of the socket table for Prometheus (no HTTP, no client library).

`MetricsCollector` runs one daemon thread. Every ``interval`` it takes, for each namespace it watches
(its own, one ``netns``, or every namespace `all_netns()` finds), one snapshot without tcp_info, reads the
namespace's TCP counters (/proc/net/netstat TcpExt ListenOverflows / ListenDrops, /proc/net/snmp Tcp
RetransSegs) and builds one immutable `ExportSample`; the newest replaces the previous one (`latest`).
A scrape only reads `latest`, so no scrape ever starts a dump and two dumps never overlap: the cost of
collection is one dump per interval whatever the number of scrapers (HA Prometheus pairs scrape
twice), and a scrape answers in milliseconds even at 60k sockets (bench/bench_export.py).

Transitions (`sockmon_tcp_transitions_total{old,new}`) are counted from the kernel tracepoint
(`TransitionTracer`, drained every `DRAIN_EVERY` s between ticks) when sockmon is root, the tracepoint
exists and the exporter watches only its own namespace: the tracepoint reports every namespace of the
host and cannot say which, so with ``netns`` / ``all_netns`` they are inferred per namespace from
consecutive snapshots (`core/table/diff.py`: intermediate states between two ticks are not seen).
`ExportSample.transitions_source` says which; the exporter publishes it in ``sockmon_exporter_info``.

`families(sample)` turns a sample into plain `Family` records (name, type, help, samples); the command
(`sockmon/cli/export.py`) hands them to prometheus_client, which owns the exposition format. The metric
names live here (`METRICS`) so the fleet query model (`core/fleet.py`), the Grafana dashboard test and the
exporter agree.

Bounds: listener series are capped at ``max_listeners`` (top N by accept-queue fill, then queue length;
the rest counted in ``sockmon_listeners_not_exported``), namespaces at ``max_netns`` (ours first, then
named ones, then by pid; the rest counted in ``sockmon_netns_not_exported``); transition pairs are at
most 12 × 12 per namespace; per-namespace state (previous snapshot, counters) exists only for the
namespaces of the latest round. Untrusted text (process names) becomes label values with control
characters made visible (`sockmon.core.text.inert`) and cut at `LABEL_MAX` characters.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

from sockmon.core.netns import NetnsRef, all_netns
from sockmon.core.records import Snapshot
from sockmon.core.states import LISTEN, NEW_SYN_RECV, STATE_NAMES
from sockmon.core.table.diff import diff
from sockmon.core.table.owners import OwnerCache
from sockmon.core.table.snapshot import take_snapshot
from sockmon.core.table.summary import read_tcp_counters
from sockmon.core.text import inert

DEFAULT_INTERVAL = 5.0
DEFAULT_MAX_LISTENERS = 100
DEFAULT_MAX_NETNS = 256
DRAIN_EVERY = 0.1  # s between tracepoint drains (docs/kernel-facts.md §3)
DRAIN_BATCHES = 64  # tracepoint batches read per drain at most
LABEL_MAX = 64  # characters of an untrusted label value (process name) kept

# metric name → (type, help). Counters are named without "_total" here as prometheus_client wants
# them; the exposition (and PromQL) adds it.
METRICS: dict[str, tuple[str, str]] = {
    "sockmon_tcp_sockets": ("gauge", "TCP sockets per state (lower-case ss names), IPv4 and IPv6"),
    "sockmon_listen_queue": ("gauge", "Connections waiting in a listener's accept queue (Recv-Q of LISTEN)"),
    "sockmon_listen_backlog": ("gauge", "A listener's accept-queue limit (Send-Q of LISTEN: min(backlog, somaxconn))"),
    "sockmon_listen_overflows": ("counter", "TcpExt ListenOverflows of the namespace: accept queue was full"),
    "sockmon_listen_drops": ("counter", "TcpExt ListenDrops of the namespace: SYNs / ACKs a listener dropped"),
    "sockmon_tcp_retransmits": ("counter", "Tcp RetransSegs of the namespace (/proc/net/snmp)"),
    "sockmon_tcp_transitions": ("counter", "TCP state transitions old -> new seen by the exporter"),
    "sockmon_transition_events_lost": ("counter", "Tracepoint events the kernel dropped (trace buffer overrun)"),
    "sockmon_listeners_not_exported": ("gauge", "Listeners beyond --max-listeners, not exported this round"),
    "sockmon_netns_not_exported": ("gauge", "Network namespaces beyond the cap, not collected this round"),
    "sockmon_collect_duration_seconds": ("gauge", "Wall time of the latest collection round"),
    "sockmon_collect_timestamp_seconds": ("gauge", "When the latest collection round finished (Unix time)"),
    "sockmon_collect_errors": ("counter", "Namespace collections that failed (the namespace's series are left out)"),
    "sockmon_exporter_info": ("gauge", "sockmon exporter: version, where transitions come from, interval"),
}


def exposed_names() -> set[str]:
    """Every series name a scrape can hold (counters with their ``_total``)."""
    return {n + "_total" if t == "counter" else n for n, (t, _) in METRICS.items()}


def state_label(code: int) -> str:
    """``established``, ``time_wait``, ``new_syn_recv``...: ss's state names in lower case."""
    return STATE_NAMES.get(code, f"unknown_{code}").lower()


def label_text(text: str) -> str:
    """An untrusted string as a label value: terminal controls made visible, at most LABEL_MAX characters."""
    text = inert(text)
    return text if len(text) <= LABEL_MAX else text[:LABEL_MAX - 1] + "…"


def endpoint_label(family: int, addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if family == socket.AF_INET6 else f"{addr}:{port}"


@dataclass(frozen=True, slots=True)
class Listener:
    netns: str | None
    local: str  # "127.0.0.1:8080" / "[::]:443"
    process: str  # owner's name (label-safe), "" when unknown
    queue: int  # summed over listeners with the same (netns, local, process): SO_REUSEPORT groups
    backlog: int
    count: int = 1  # listening sockets behind this series

    @property
    def fill(self) -> float:
        return self.queue / self.backlog if self.backlog > 0 else float(self.queue > 0)


@dataclass(frozen=True, slots=True)
class NetnsSample:
    netns: str | None  # the ident (NAME / pid:N) or None for the exporter's own namespace unlabelled
    by_state: tuple[tuple[str, int], ...]  # (state label, count), every state (new_syn_recv only if seen)
    listen_overflows: int | None
    listen_drops: int | None
    retrans_segs: int | None
    transitions: tuple[tuple[str, str, int], ...]  # (old, new, cumulative count)
    events_lost: int
    sockets: int


@dataclass(frozen=True, slots=True)
class ExportSample:
    namespaces: tuple[NetnsSample, ...]
    listeners: tuple[Listener, ...]  # the exported ones, at most max_listeners
    listeners_not_exported: int
    netns_not_exported: int
    transitions_source: str  # "tracepoint" or "inferred"
    duration_s: float
    finished_at: float  # time.time()
    errors_total: int
    errors: tuple[str, ...] = ()  # this round's, one line each
    labelled: bool = False  # the netns label is on every series


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    type: str  # "gauge" / "counter"
    help: str
    labels: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...] = field(default=())


_STATE_OF = attrgetter("state")
_PAIR = attrgetter("old", "new")


class _NsState:
    """What the collector keeps per namespace between rounds (only for namespaces of the latest round)."""

    __slots__ = ("prev", "transitions")

    def __init__(self) -> None:
        self.prev: Snapshot | None = None
        self.transitions: Counter = Counter()  # (old code, new code) → count; ≤ 144 keys


class MetricsCollector:
    """One thread collecting an `ExportSample` every ``interval``; `latest` is the newest (None before the
    first round). ``netns``: one namespace (a /run/netns name or pid:N); ``all_netns``: every namespace.
    ``use_tracepoint`` None = when possible (root, own namespace only)."""

    def __init__(self, *, interval: float = DEFAULT_INTERVAL, netns: str | None = None, all_netns: bool = False,
                 max_listeners: int = DEFAULT_MAX_LISTENERS, max_netns: int = DEFAULT_MAX_NETNS,
                 use_tracepoint: bool | None = None,
                 list_netns: Callable[[], list[NetnsRef]] = all_netns,
                 on_error: Callable[[str], None] | None = None) -> None:
        if not 0 < interval <= 3600:
            raise ValueError(f"interval must be in (0, 3600] seconds, got {interval}")
        if max_listeners < 0 or max_netns < 1:
            raise ValueError("max_listeners must be >= 0 and max_netns >= 1")
        self.interval = float(interval)
        self.netns = netns
        self.all_netns = all_netns
        self.labelled = all_netns or netns is not None
        self.max_listeners = max_listeners
        self.max_netns = max_netns
        self._list_netns = list_netns
        self._on_error = on_error
        self._owners = OwnerCache()
        self._ns: dict[str | None, _NsState] = {}
        self._errors_total = 0
        self._latest: ExportSample | None = None
        self._stop = threading.Event()
        self._collecting = threading.Lock()  # one round at a time, whoever calls collect_once
        self.rounds = 0
        self._tracer = None
        self._drained: Counter = Counter()  # tracepoint (old, new) counts since the start
        self._drain_lock = threading.Lock()  # the thread's drains and a round's final drain never interleave
        self.tracer_note = ""
        want = use_tracepoint if use_tracepoint is not None else not self.labelled
        if want and not self.labelled:
            from sockmon.core.table.tracepoint import TransitionTracer, tracing_available

            ok, why = tracing_available()
            if ok:
                try:
                    self._tracer = TransitionTracer()
                except OSError as exc:
                    self.tracer_note = f"tracepoint unavailable: {exc}"
            else:
                self.tracer_note = why
        elif self.labelled:
            self.tracer_note = "per-namespace transitions are inferred from snapshots (the tracepoint cannot tell namespaces apart)"
        self.transitions_source = "tracepoint" if self._tracer is not None else "inferred"
        self._thread = threading.Thread(target=self._run, name="sockmon-export", daemon=True)

    # -- control ----------------------------------------------------------------------------------
    @property
    def latest(self) -> ExportSample | None:
        return self._latest

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and remove the tracefs instance (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._tracer is not None:
            self._tracer.close()

    def __enter__(self) -> MetricsCollector:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        next_round = time.monotonic() if self._latest is None else time.monotonic() + self.interval
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_round:
                self.collect_once()
                next_round = max(next_round + self.interval, time.monotonic())  # no burst after a slow round
            self._drain()
            wait = next_round - time.monotonic()
            if self._tracer is not None:
                wait = min(wait, DRAIN_EVERY)
            self._stop.wait(max(wait, 0.0))

    def _drain(self) -> None:
        tracer = self._tracer
        if tracer is None or tracer.closed:
            return
        with self._drain_lock:
            try:
                for n, batch in enumerate(tracer.batches(), 1):
                    self._drained.update(map(_PAIR, batch))
                    if n >= DRAIN_BATCHES:
                        break
            except Exception as exc:  # noqa: BLE001 - the thread lives on; said once per new message
                self._report(f"tracepoint read failed: {type(exc).__name__}: {exc}")

    def _report(self, line: str) -> None:
        if self._on_error is not None:
            try:
                self._on_error(line)
            except Exception:  # noqa: BLE001 - a failing reporter must not stop collection
                pass

    def _targets(self) -> tuple[list[tuple[str | None, str | None]], int]:
        """[(label, run_in_netns target)] for this round, and how many namespaces were left out."""
        if not self.all_netns:
            return [(self.netns, self.netns)], 0
        refs = self._list_netns()
        out = [(ref.ident, ref.target) for ref in refs[:self.max_netns]]
        return out, max(0, len(refs) - self.max_netns)

    def collect_once(self) -> ExportSample:
        """One round over every namespace; the sample becomes `latest` and is returned."""
        with self._collecting:
            return self._collect()

    def _collect(self) -> ExportSample:
        t0 = time.perf_counter()
        targets, ns_left_out = self._targets()
        samples: list[NetnsSample] = []
        raw_listeners: list[tuple[str | None, object]] = []
        errors: list[str] = []
        seen: dict[str | None, _NsState] = {}
        if self._tracer is not None:
            self._drain()
        for label, target in targets:
            state = self._ns.get(label) or _NsState()
            try:
                snap = take_snapshot(netns=target, with_info=False)
                counters = read_tcp_counters(target)  # monotonic since the namespace was created
                lo, ld, rs = (counters.get(k) for k in ("TcpExt.ListenOverflows", "TcpExt.ListenDrops",
                                                        "Tcp.RetransSegs"))
            except Exception as exc:  # noqa: BLE001 - a namespace that vanished, EPERM...: left out this round
                errors.append(f"namespace {label or 'own'}: {type(exc).__name__}: {exc}")
                continue
            seen[label] = state
            if self._tracer is not None:
                with self._drain_lock:
                    counts = Counter(self._drained)  # a copy: the thread's next drain may run meanwhile
                lost = self._tracer.overruns
            else:
                if state.prev is not None:
                    state.transitions.update(map(_PAIR, diff(state.prev, snap).transitions))
                state.prev = snap
                counts = state.transitions
                lost = 0
            by_code = Counter(map(_STATE_OF, snap.sockets))
            by_state = tuple((state_label(code), by_code.get(code, 0)) for code in STATE_NAMES
                             if code != NEW_SYN_RECV or by_code.get(code))
            trans = tuple(sorted((state_label(o), state_label(n), c) for (o, n), c in counts.items()))
            samples.append(NetnsSample(label if self.labelled else None, by_state, lo, ld, rs, trans, lost,
                                       len(snap.sockets)))
            raw_listeners.extend((label, s) for s in snap.sockets if s.state == LISTEN)
        self._ns = seen  # namespaces gone from this round are forgotten (bounded)
        self._errors_total += len(errors)
        for line in errors:
            self._report(line)
        listeners, left_out = self._listeners(raw_listeners)
        sample = ExportSample(tuple(samples), listeners, left_out, ns_left_out, self.transitions_source,
                              time.perf_counter() - t0, time.time(), self._errors_total, tuple(errors),
                              self.labelled)
        self._latest = sample
        self.rounds += 1
        return sample

    def _listeners(self, raw: list) -> tuple[tuple[Listener, ...], int]:
        socks = [s for _, s in raw]
        owners = self._owners.resolve_sockets(socks) if socks else {}
        groups: dict[tuple, list[int]] = {}
        for label, s in raw:
            proc = owners.get(s.inode) if s.inode else None
            key = (label if self.labelled else None, endpoint_label(s.family, s.src, s.sport),
                   label_text(proc.name) if proc is not None else "")
            g = groups.get(key)
            if g is None:
                groups[key] = [s.recv_q, s.send_q, 1]
            else:
                g[0] += s.recv_q
                g[1] += s.send_q
                g[2] += 1
        items = [Listener(k[0], k[1], k[2], q, b, n) for k, (q, b, n) in groups.items()]
        items.sort(key=lambda li: (-li.fill, -li.queue, li.netns or "", li.local, li.process))
        kept = items[:self.max_listeners]
        return tuple(kept), len(items) - len(kept)


def families(sample: ExportSample, *, version: str = "", interval: float | None = None) -> list[Family]:
    """The sample as metric families, in `METRICS` order. With ``sample.labelled`` every family except the
    exporter's own (info, duration, timestamp, errors, caps) carries ``netns`` first."""
    ns = ("netns",) if sample.labelled else ()

    def nsv(value: str | None) -> tuple[str, ...]:
        return (value or "",) if sample.labelled else ()

    def fam(name: str, labels: tuple[str, ...], samples) -> Family:
        typ, hlp = METRICS[name]
        return Family(name, typ, hlp, labels, tuple(samples))

    spaces = sample.namespaces
    out = [
        fam("sockmon_tcp_sockets", (*ns, "state"),
            ((nsv(s.netns) + (st,), n) for s in spaces for st, n in s.by_state)),
        fam("sockmon_listen_queue", (*ns, "local", "process"),
            ((nsv(li.netns) + (li.local, li.process), li.queue) for li in sample.listeners)),
        fam("sockmon_listen_backlog", (*ns, "local", "process"),
            ((nsv(li.netns) + (li.local, li.process), li.backlog) for li in sample.listeners)),
        fam("sockmon_listen_overflows", ns,
            ((nsv(s.netns), s.listen_overflows) for s in spaces if s.listen_overflows is not None)),
        fam("sockmon_listen_drops", ns,
            ((nsv(s.netns), s.listen_drops) for s in spaces if s.listen_drops is not None)),
        fam("sockmon_tcp_retransmits", ns,
            ((nsv(s.netns), s.retrans_segs) for s in spaces if s.retrans_segs is not None)),
        fam("sockmon_tcp_transitions", (*ns, "old", "new"),
            ((nsv(s.netns) + (o, n), c) for s in spaces for o, n, c in s.transitions)),
        fam("sockmon_transition_events_lost", ns, ((nsv(s.netns), s.events_lost) for s in spaces)),
        fam("sockmon_listeners_not_exported", (), [((), sample.listeners_not_exported)]),
        fam("sockmon_netns_not_exported", (), [((), sample.netns_not_exported)]),
        fam("sockmon_collect_duration_seconds", (), [((), sample.duration_s)]),
        fam("sockmon_collect_timestamp_seconds", (), [((), sample.finished_at)]),
        fam("sockmon_collect_errors", (), [((), sample.errors_total)]),
        fam("sockmon_exporter_info", ("version", "transitions", "interval"),
            [((version, sample.transitions_source, "" if interval is None else f"{interval:g}"), 1)]),
    ]
    return out
