"""`sockmon ls [FILTER...]`: one snapshot of the kernel's TCP socket table — and with ``--udp`` / ``--unix``
its UDP and UNIX sockets — as an aligned table or JSON lines (`sockmon.core.jsonout`). ``-r`` shows host and
service names (`sockmon.core.names`) in the table.

FILTER is the filter language of `sockmon.core.table.filter` (ss's expressions and sockmon's shorthand): the
words are joined with spaces, so ``sockmon ls state established '( dport = :6379 or sport = :6379 )'`` reads
as it does for ss. It combines with ``--state`` / ``--listening`` / ``--port`` by ``and``. The states the
filter can match (and ``--state``) are asked of the kernel, so ``ls state time-wait`` never decodes the
other sockets. ``--rates S``: two dumps S seconds apart, each socket of the second with its
receive / send rate since the first (tcp_info byte counters, `sockmon.core.table.rates`); a signal during
the wait ends it cleanly (exit 0, nothing written).

Never imports Textual. Bad input (state name, port, namespace) → one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import socket
import sys

from sockmon.core.netns import ALL_NETNS
from sockmon.core.text import inert


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates needs seconds (e.g. 1 or 0.5), got {text!r}") from None
    if not 0 < value <= 3600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"--rates must be between 0 and 3600 seconds, got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ls", help="list TCP sockets once (like ss -tanoi, plus owners)",
        description="List the kernel's TCP sockets once (netlink sock_diag; /proc/net/tcp when that is "
        "unavailable), those FILTER matches: ss's filter language (state established, dport >= :1024, "
        "src 127.0.0.0/8, ( ... or ... ), not ...) and sockmon's shorthand (est, 8080, 127.0.0.1:6379, "
        "proc:nginx). Put a word that starts with '-' after '--': sockmon ls -- -time_wait.")
    p.add_argument("filter", nargs="*", metavar="FILTER",
                   help="filter words, joined with spaces (see README: the filter language)")
    p.add_argument("--json", action="store_true", help="one JSON object per socket (JSON lines)")
    p.add_argument("--listening", action="store_true", help="only LISTEN sockets")
    p.add_argument("--state", action="append", default=[], metavar="STATE",
                   help="only this state (repeatable), e.g. ESTABLISHED, TIME_WAIT, syn-sent")
    p.add_argument("--port", type=_port, default=None, metavar="N", help="local or remote port N")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--netns", dest="ls_netns", metavar="NAME", default=None,
                       help="a named network namespace (/run/netns/NAME) or pid:PID")
    where.add_argument("--all-netns", action="store_true",
                       help="every network namespace (named ones and those of running processes); each "
                            "row says its namespace: a Netns column, \"netns\" in JSON (NAME, or pid:N)")
    p.add_argument("--no-owners", action="store_true", help="skip the process lookup (faster)")
    p.add_argument("-t", "--tcp", action="store_true", help="TCP sockets (the default; combine with --udp, --unix)")
    p.add_argument("-u", "--udp", action="store_true", help="UDP sockets (like ss -uan)")
    p.add_argument("-x", "--unix", action="store_true", help="UNIX sockets (like ss -xan)")
    p.add_argument("-r", "--resolve", action="store_true",
                   help="host names (getnameinfo: /etc/hosts, then maybe DNS) and service names "
                        "(/etc/services) instead of numbers, like ss -r; text output only")
    p.add_argument("--closed", action="store_true",
                   help="record for --for S seconds (or until Ctrl-C), then list the connections that closed: "
                   "owner, lifetime, bytes each way, how each ended (FIN / RST)")
    p.add_argument("--for", dest="record_for", type=float, default=5.0, metavar="S",
                   help="with --closed: seconds to record (default 5)")
    p.add_argument("--check-consistency", action="store_true",
                   help="debug: keep the event-driven table (tracepoint + exact lookups) for --for S seconds "
                   "(default 5), then compare it with a full dump; prints the differences, exit 1 if any")
    p.add_argument("-o", "--options", action="store_true",
                   help="accepted for ss's habit (ss -o state ...): timers are always shown")
    p.add_argument("--rates", type=_seconds, default=None, metavar="S",
                   help="two dumps S seconds apart: each socket's receive / send rate (Recv/s, Send/s; JSON: "
                   "rx_bps, tx_bps) from the kernel's tcp_info byte counters; blank / null for sockets not in "
                   "the first dump or without tcp_info")
    p.set_defaults(run=run)


def fmt_endpoint(family: int, addr: str, port: int, names=None, protocol: str = "tcp") -> str:
    if names is not None:
        return inert(names.endpoint(addr, port, protocol))
    host = f"[{addr}]" if family == socket.AF_INET6 else addr
    return f"{host}:{port if port else '*'}"


def fmt_timer(timer) -> str:
    """``timer:(keepalive,4min25sec,0)`` as ``ss -o`` prints it (the same words and precision)."""
    if timer is None or not timer.kind:
        return ""
    from sockmon.core.states import ss_duration

    return f"timer:({timer.name},{ss_duration(timer.expires_ms)},{timer.retrans})"


def owner_cell(owner) -> str:
    """``name,pid=N,user=U`` with the process and user names made inert (they are anyone's choice)."""
    return f"{inert(owner.name)},pid={owner.pid},user={inert(owner.user)}" if owner else ""


def _inet_rows(socks, snapshot, names, netid: bool, with_ns: bool, rates=None) -> list[tuple[str, ...]]:
    from sockmon.core.series import rate_text

    rows = []
    for s in sorted(socks, key=lambda s: (s.state != 10, s.family, s.sport, s.dst, s.dport)):
        proto = s.protocol_name
        cells = ()
        if rates is not None:
            r = rates.get(s)
            cells = (rate_text(r[0]), rate_text(r[1])) if r is not None else ("", "")
        row = (s.state_name, str(s.recv_q), str(s.send_q), *cells, fmt_endpoint(s.family, s.src, s.sport, names, proto),
               fmt_endpoint(s.family, s.dst, s.dport, names, proto), fmt_timer(s.timer),
               owner_cell(snapshot.owner(s)))
        row = (proto, *row) if netid else row
        rows.append((inert(s.netns or ""), *row) if with_ns else row)  # a namespace name is anyone's choice
    return rows


def _unix_rows(snapshot, with_ns: bool, rate_cells: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """As ss -xan: Netid, State, queues, "path inode", "* peer-inode"."""
    rows = []
    for u in sorted(snapshot.unix, key=lambda u: (u.state != 10, u.type, u.path, u.inode)):
        row = (u.type_name, u.state_name, str(u.recv_q), str(u.send_q), *rate_cells, f"{inert(u.path or '*')} {u.inode}",
               f"* {u.peer}", "", owner_cell(snapshot.owner(u)))
        rows.append((inert(u.netns or ""), *row) if with_ns else row)
    return rows


def format_table(snapshot, names=None, rates=None) -> list[str]:
    """The aligned text table. Every outside string is inert: no control byte reaches the terminal.

    TCP alone (the default) or UDP alone: ss -tan / -uan's columns plus Timer and Process; several
    socket types, or UNIX sockets: a Netid column first (tcp, udp, u_str, u_dgr, u_seq) like ss.
    ``names`` (`sockmon.core.names.Names`): host and service names instead of numbers.
    An every-namespace snapshot (`--all-netns`) gets a Netns column first; with ``rates``
    (`sockmon.core.series.Rates`) Recv/s and Send/s follow the queues.
    """
    protos = getattr(snapshot, "protocols", None) or frozenset({"tcp"})
    netid = len(protos) > 1 or "unix" in protos
    header = ("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Timer", "Process")
    rate_cols = () if rates is None else ("Recv/s", "Send/s")
    header = header[:3] + rate_cols + header[3:]
    if netid:
        header = ("Netid", *header)
    with_ns = snapshot.netns == ALL_NETNS
    if with_ns:
        header = ("Netns", *header)
    rows = _inet_rows(snapshot.sockets, snapshot, names, netid, with_ns, rates)
    # UDP rows have no tcp_info, so no rate: blank cells under Recv/s and Send/s
    rows += _inet_rows(getattr(snapshot, "udp", ()), snapshot, names, netid, with_ns,
                       _NO_RATES if rates is not None else None)
    rows += _unix_rows(snapshot, with_ns, ("",) * len(rate_cols)) if getattr(snapshot, "unix", ()) else []
    lead = int(netid) + int(with_ns)  # the queue columns, right-aligned, come after State
    return align(header, rows, {1 + lead, 2 + lead, *range(3 + lead, 3 + lead + len(rate_cols))})


def align(header: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    """Rows as columns two spaces apart, each as wide as its widest cell; columns in ``right``
    right-aligned (numbers). The cells must already be inert."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        out.append("  ".join(cells).rstrip())
    return out


class _NoRates:
    """Rates of rows that have none (UDP: no tcp_info): every cell blank."""

    @staticmethod
    def get(_sock):
        return None


_NO_RATES = _NoRates()


def run(args) -> int:
    from dataclasses import replace

    from sockmon.core.states import LISTEN
    from sockmon.core.table.filter import parse
    from sockmon.core.table.owners import OwnerCache
    from sockmon.core.table.snapshot import normalize_states, take_snapshot

    flt = parse(" ".join(getattr(args, "filter", None) or []))  # BadInput: one line, exit 2
    states = normalize_states(args.state) if args.state else None
    if args.listening:
        states = sorted(set(states or []) | {LISTEN})
    if flt.states is not None:  # ask the kernel only for the states the filter can match (and --state's)
        narrowed = set(flt.states) & set(states) if states is not None else set(flt.states)
        states = sorted(narrowed) if narrowed else states or sorted(flt.states)
        if not states:  # nothing can match ("exclude all"): a dump of one state the predicate refuses
            states = [LISTEN]
    netns = getattr(args, "ls_netns", None)
    if netns is None:  # `ls --netns ""` is a bad name (refused below), not "no namespace given"
        netns = getattr(args, "netns", None)
    if getattr(args, "all_netns", False):
        if netns is not None:
            from sockmon.core.errors import BadInput

            raise BadInput("--all-netns and --netns exclude each other: every namespace, or one")
        netns = ALL_NETNS
    if getattr(args, "check_consistency", False):
        return run_check(netns, args.record_for)
    if args.closed:
        from sockmon.cli.closed import run_closed

        return run_closed(args, netns)
    protocols = [name for name in ("tcp", "udp", "unix") if getattr(args, name, False)] or ["tcp"]
    seconds = getattr(args, "rates", None)
    if seconds is not None and netns == ALL_NETNS:
        from sockmon.core.errors import BadInput

        raise BadInput("--rates and --all-netns do not go together (yet): give one namespace, or none")
    owners = None if args.no_owners else OwnerCache()

    def dump():
        try:
            return take_snapshot(netns=netns, states=states, port=args.port, with_info=True, owners=owners,
                                 protocols=protocols)
        except OSError as exc:
            from sockmon.core.errors import SockmonError

            if isinstance(exc, SockmonError):
                raise
            raise SockmonError.from_os_error(exc, "netlink sock_diag dump") from None

    snap = dump()
    rates = None
    if seconds is not None:
        from sockmon.core.table.rates import rates_between

        first = snap
        if not _wait(seconds):
            print("sockmon ls: interrupted before the second dump: no rates", file=sys.stderr)
            return 0
        snap = dump()
        rates = rates_between(first, snap)
        del first
    pred = flt.predicate(snap.owner)
    if pred is not None:
        # every list: TCP, and the UDP / UNIX sockets asked for (their records answer the same field names)
        snap = replace(snap, sockets=tuple(filter(pred, snap.sockets)), udp=tuple(filter(pred, snap.udp)),
                       unix=tuple(filter(pred, snap.unix)))
    if snap.note:
        print(f"sockmon: {inert(snap.note)}", file=sys.stderr)
    if args.json:
        from sockmon.cli.output import fileno_of_stdout, write_all
        from sockmon.core.jsonout import snapshot_lines

        fd = fileno_of_stdout()
        for piece in snapshot_lines(snap, rates=rates):
            write_all(fd, piece)
        return 0
    names = None
    if getattr(args, "resolve", False):
        from sockmon.core.names import Names

        names = Names(blocking=True)
    out = sys.stdout
    out.write("\n".join(format_table(snap, names, rates)) + "\n")
    out.flush()
    return 0


def run_check(netns, seconds: float) -> int:
    """``ls --check-consistency``: one tick a full dump, then event-driven ticks for ``seconds``, then
    the table against a fresh full dump. Exit 0: equal; 1: the differences printed; 2: not possible."""
    import time

    from sockmon.core.errors import BadInput
    from sockmon.core.table.collector import Collector

    if netns is not None:
        raise BadInput("--check-consistency checks our own namespace's table (the tracepoint names none)")
    if not 0 <= seconds <= 3600:
        raise BadInput(f"--for must be 0-3600 seconds, got {seconds}")
    col = Collector(event_table=True, start=False, with_owners=False, with_info=False, on_update=lambda u: None)
    try:
        if not col.event_table:
            print(f"sockmon ls: no event-driven table: {inert(col.tracer_note or 'tracepoint unavailable')}",
                  file=sys.stderr)
            return 2
        col.collect_once()
        col.hold_full_dumps()
        deadline = time.monotonic() + seconds
        ticks = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not _wait(min(1.0, left)):
                break
            u = col.collect_once()
            ticks += u.table == "events"
            if u.error:
                print(f"sockmon ls: {inert(u.error)}", file=sys.stderr)
        diffs = col.check_consistency()
        for line in diffs:
            print(line)
        print(f"sockmon ls: {len(col.table_sockets())} sockets in the event-driven table after {ticks} event "
              f"ticks, {col.full_dumps} full dumps: {len(diffs)} differences from a full dump", file=sys.stderr)
        return 1 if diffs else 0
    finally:
        col.stop()


def _wait(seconds: float) -> bool:
    """Sleep ``seconds``; False when SIGTERM / SIGINT / SIGHUP came first (their handlers restored after)."""
    import signal

    from sockmon.cli.output import Stop

    stop = Stop()
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    old = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in sigs}
    try:
        import time

        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            stop.wait(left)
        return False
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        stop.close()
