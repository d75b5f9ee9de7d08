"""Summary of a snapshot like `ss -s`: counts per state, listener counters, keepalive sysctls."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sockmon.core.netns import ALL_NETNS, each_netns, run_in_netns
from sockmon.core.records import FAMILY_NAMES, SOCKET_FAMILY, SOCKET_STATE, Snapshot
from sockmon.core.states import state_name

_EMPTY: Mapping = MappingProxyType({})
_FAMILY = SOCKET_FAMILY
_STATE = SOCKET_STATE


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    by_state: Mapping[str, int]  # state name (no TCP_ prefix) → count; only states present
    listen_overflows: int | None  # TcpExt ListenOverflows (accept queue full), None if unreadable
    listen_drops: int | None  # TcpExt ListenDrops
    keepalive_time: int | None  # net.ipv4.tcp_keepalive_time (s)
    keepalive_intvl: int | None  # net.ipv4.tcp_keepalive_intvl (s)
    keepalive_probes: int | None  # net.ipv4.tcp_keepalive_probes
    sockstat: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # "TCP inuse", "TCP tw", "TCP6 inuse"…
    families: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # "inet"/"inet6" → count

    def count(self, name: str) -> int:
        return self.by_state.get(name, 0)


def _proc_net(netns_used: bool) -> str:
    return "/proc/thread-self/net" if netns_used else "/proc/net"


def _read_netstat(path: str) -> dict[str, dict[str, int]]:
    """/proc/net/netstat or /proc/net/snmp: {"TcpExt": {"ListenOverflows": n, ...}, ...}."""
    out: dict[str, dict[str, int]] = {}
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        hname, _, hkeys = head.partition(":")
        _, _, hvals = vals.partition(":")
        try:
            out[hname] = dict(zip(hkeys.split(), (int(v) for v in hvals.split()), strict=False))
        except ValueError:
            continue
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_sockstat(base: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in ("sockstat", "sockstat6"):
        try:
            with open(f"{base}/{name}", encoding="ascii") as fh:
                for line in fh:
                    proto, _, rest = line.partition(":")
                    if proto not in ("TCP", "TCP6", "sockets"):
                        continue
                    f = rest.split()
                    for k, v in zip(f[::2], f[1::2], strict=False):
                        if v.isdigit():
                            out[f"{proto} {k}"] = int(v)
        except OSError:
            continue
    return out


def read_listen_counters(netns: str | int | None = None) -> tuple[int | None, int | None]:
    """(ListenOverflows, ListenDrops) of the namespace since boot / namespace creation."""
    def read():
        tcpext = _read_netstat(f"{_proc_net(netns is not None)}/netstat").get("TcpExt", {})
        return tcpext.get("ListenOverflows"), tcpext.get("ListenDrops")
    return run_in_netns(netns, read)


def read_tcp_counters(netns: str | int | None = None) -> dict[str, int]:
    """Every TcpExt (/proc/net/netstat) and Tcp (/proc/net/snmp) counter of the namespace, keyed
    "TcpExt.ListenDrops", "Tcp.OutRsts"… (the lab scenarios' counter checks)."""
    def read():
        base = _proc_net(netns is not None)
        out: dict[str, int] = {}
        for name in ("netstat", "snmp"):
            for group, values in _read_netstat(f"{base}/{name}").items():
                if group in ("TcpExt", "Tcp"):
                    out.update({f"{group}.{k}": v for k, v in values.items()})
        return out
    return run_in_netns(netns, read)


def read_keepalive_sysctls(netns: str | int | None = None) -> tuple[int | None, int | None, int | None]:
    """(tcp_keepalive_time, tcp_keepalive_intvl, tcp_keepalive_probes) of the namespace."""
    def read():
        base = "/proc/sys/net/ipv4/tcp_keepalive_"
        return _read_int(base + "time"), _read_int(base + "intvl"), _read_int(base + "probes")
    return run_in_netns(netns, read)


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else (a if b is None else a + b)


def _read_all(snapshot: Snapshot):
    """The counters of an every-namespace snapshot: ListenOverflows / ListenDrops and sockstat summed
    over its namespaces (each read inside its namespace); the keepalive sysctls of sockmon's own one."""
    def read(_ref):
        base = _proc_net(True)
        tcpext = _read_netstat(f"{base}/netstat").get("TcpExt", {})
        return tcpext.get("ListenOverflows"), tcpext.get("ListenDrops"), _read_sockstat(base)

    lo = ld = None
    sockstat: dict[str, int] = {}
    if snapshot.namespaces:
        try:
            results, _ = each_netns(list(snapshot.namespaces), read)
        except Exception:  # noqa: BLE001 - counters are extras: every namespace gone since the dump
            results = []
        for _ref, (o, d, st) in results:
            lo, ld = _add(lo, o), _add(ld, d)
            for k, v in st.items():
                sockstat[k] = sockstat.get(k, 0) + v
    k = "/proc/sys/net/ipv4/tcp_keepalive_"
    return lo, ld, _read_int(k + "time"), _read_int(k + "intvl"), _read_int(k + "probes"), sockstat


def summarize(snapshot: Snapshot, *, read_system: bool = True) -> Summary:
    """Counts from the snapshot; with ``read_system`` also the namespace's counters and sysctls (an
    every-namespace snapshot: counters summed over its namespaces, the sysctls of sockmon's own)."""
    states = Counter(map(_STATE, snapshot.sockets))  # counted in C: no per-socket Python call
    fams = Counter(map(_FAMILY, snapshot.sockets))
    return _summary(snapshot, states, fams, read_system)


def summarize_changes(prev: Summary, changes, snapshot: Snapshot, *, read_system: bool = True) -> Summary:
    """`summarize` of ``snapshot`` from the previous tick's summary and what changed since (a
    `SnapshotDiff` with added, removed and changed): the event-driven table's ticks, where counting
    the whole table again would cost more than everything else. Exact when ``changes`` is the whole
    difference between the two tables (tests/test_evtable.py checks it against `summarize`)."""
    codes = {name: code for code, name in ((c, state_name(c)) for c in range(1, 13))}
    states = Counter({codes[name]: n for name, n in prev.by_state.items() if name in codes})
    names = {name: f for f, name in FAMILY_NAMES.items()}
    fams = Counter({names.get(name, name): n for name, n in prev.families.items()})
    for s in changes.removed:
        states[s.state] -= 1
        fams[s.family] -= 1
    for s in changes.added:
        states[s.state] += 1
        fams[s.family] += 1
    for o, n in changes.changed:
        if o.state != n.state:
            states[o.state] -= 1
            states[n.state] += 1
    return _summary(snapshot, +states, +fams, read_system)


def _summary(snapshot: Snapshot, states: Counter, fams_by_code: Counter, read_system: bool) -> Summary:
    fams = {FAMILY_NAMES.get(f, str(f)): n for f, n in fams_by_code.items()}
    by_state = {state_name(code): n for code, n in sorted(states.items())}
    lo = ld = kt = ki = kp = None
    sockstat: dict[str, int] = {}
    if read_system and snapshot.netns == ALL_NETNS:
        lo, ld, kt, ki, kp, sockstat = _read_all(snapshot)
    elif read_system:
        ns = snapshot.netns

        def read():
            base = _proc_net(ns is not None)
            tcpext = _read_netstat(f"{base}/netstat").get("TcpExt", {})
            k = "/proc/sys/net/ipv4/tcp_keepalive_"
            return (tcpext.get("ListenOverflows"), tcpext.get("ListenDrops"), _read_int(k + "time"),
                    _read_int(k + "intvl"), _read_int(k + "probes"), _read_sockstat(base))
        lo, ld, kt, ki, kp, sockstat = run_in_netns(ns, read)
    return Summary(len(snapshot.sockets), MappingProxyType(by_state), lo, ld, kt, ki, kp,
                   MappingProxyType(sockstat), MappingProxyType(fams))
