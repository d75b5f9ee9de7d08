"""`sockmon ls [FILTER...]`: one snapshot of the kernel's TCP socket table, as an aligned table or JSON lines
(`sockmon.core.jsonout`).

FILTER is the filter language of `sockmon.core.table.filter` (ss's expressions and sockmon's shorthand): the
words are joined with spaces, so ``sockmon ls state established '( dport = :6379 or sport = :6379 )'`` reads
as it does for ss. It combines with ``--state`` / ``--listening`` / ``--port`` by ``and``. The states the
filter can match (and ``--state``) are asked of the kernel, so ``ls state time-wait`` never decodes the
other sockets.

Never imports Textual. Bad input (state name, port, namespace) → one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import socket
import sys

from sockmon.core.text import inert


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
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
    p.add_argument("--netns", dest="ls_netns", metavar="NAME", default=None,
                   help="a named network namespace (/run/netns/NAME) or pid:PID")
    p.add_argument("--no-owners", action="store_true", help="skip the process lookup (faster)")
    p.add_argument("-o", "--options", action="store_true",
                   help="accepted for ss's habit (ss -o state ...): timers are always shown")
    p.set_defaults(run=run)


def fmt_endpoint(family: int, addr: str, port: int) -> str:
    host = f"[{addr}]" if family == socket.AF_INET6 else addr
    return f"{host}:{port if port else '*'}"


def fmt_timer(timer) -> str:
    if timer is None:
        return ""
    return f"{timer.name},{timer.expires_ms / 1000:.3f}s,{timer.retrans}"


def owner_cell(owner) -> str:
    """``name,pid=N,user=U`` with the process and user names made inert (they are anyone's choice)."""
    return f"{inert(owner.name)},pid={owner.pid},user={inert(owner.user)}" if owner else ""


def format_table(snapshot) -> list[str]:
    """The aligned text table. Every outside string is inert: no control byte reaches the terminal."""
    header = ("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Timer", "Process")
    rows = []
    for s in sorted(snapshot.sockets, key=lambda s: (s.state != 10, s.family, s.sport, s.dst, s.dport)):
        owner = snapshot.owner(s)
        rows.append((s.state_name, str(s.recv_q), str(s.send_q), fmt_endpoint(s.family, s.src, s.sport),
                     fmt_endpoint(s.family, s.dst, s.dport), fmt_timer(s.timer),
                     owner_cell(owner)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 2}
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        out.append("  ".join(cells).rstrip())
    return out


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
    try:
        snap = take_snapshot(netns=netns, states=states, port=args.port, with_info=True,
                             owners=None if args.no_owners else OwnerCache())
    except OSError as exc:
        from sockmon.core.errors import SockmonError

        if isinstance(exc, SockmonError):
            raise
        raise SockmonError.from_os_error(exc, "netlink sock_diag dump") from None
    pred = flt.predicate(snap.owner)
    if pred is not None:
        snap = replace(snap, sockets=tuple(filter(pred, snap.sockets)))
    if snap.note:
        print(f"sockmon: {inert(snap.note)}", file=sys.stderr)
    if args.json:
        from sockmon.cli.output import fileno_of_stdout, write_all
        from sockmon.core.jsonout import snapshot_lines

        fd = fileno_of_stdout()
        for piece in snapshot_lines(snap):
            write_all(fd, piece)
        return 0
    out = sys.stdout
    out.write("\n".join(format_table(snap)) + "\n")
    out.flush()
    return 0
