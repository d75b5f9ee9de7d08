"""`sockmon ls`: one snapshot of the kernel's TCP socket table, as an aligned table or JSON lines
(`sockmon.core.jsonout`). ``--rates S``: two dumps S seconds apart, each socket of the second with its
receive / send rate since the first (tcp_info byte counters, `sockmon.core.table.rates`); a signal during
the wait ends it cleanly (exit 0, nothing written).

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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates needs seconds (e.g. 1 or 0.5), got {text!r}") from None
    if not 0 < value <= 3600:  # also refuses nan
        raise argparse.ArgumentTypeError(f"--rates must be between 0 and 3600 seconds, got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser("ls", help="list TCP sockets once (like ss -tanoi, plus owners)",
                              description="List the kernel's TCP sockets once (netlink sock_diag; "
                              "/proc/net/tcp when that is unavailable).")
    p.add_argument("--json", action="store_true", help="one JSON object per socket (JSON lines)")
    p.add_argument("--listening", action="store_true", help="only LISTEN sockets")
    p.add_argument("--state", action="append", default=[], metavar="STATE",
                   help="only this state (repeatable), e.g. ESTABLISHED, TIME_WAIT, syn-sent")
    p.add_argument("--port", type=_port, default=None, metavar="N", help="local or remote port N")
    p.add_argument("--netns", dest="ls_netns", metavar="NAME", default=None,
                   help="a named network namespace (/run/netns/NAME) or pid:PID")
    p.add_argument("--no-owners", action="store_true", help="skip the process lookup (faster)")
    p.add_argument("--rates", type=_seconds, default=None, metavar="S",
                   help="two dumps S seconds apart: each socket's receive / send rate (Recv/s, Send/s; JSON: "
                   "rx_bps, tx_bps) from the kernel's tcp_info byte counters; blank / null for sockets not in "
                   "the first dump or without tcp_info")
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


def format_table(snapshot, rates=None) -> list[str]:
    """The aligned text table (with ``rates``: Recv/s and Send/s after the queues). Every outside string
    is inert: no control byte reaches the terminal."""
    from sockmon.core.series import rate_text

    header = ("State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Timer", "Process")
    rate_cols = () if rates is None else ("Recv/s", "Send/s")
    header = header[:3] + rate_cols + header[3:]
    rows = []
    for s in sorted(snapshot.sockets, key=lambda s: (s.state != 10, s.family, s.sport, s.dst, s.dport)):
        owner = snapshot.owner(s)
        r = () if rates is None else rates.get(s)
        cells = () if rates is None else ((rate_text(r[0]), rate_text(r[1])) if r is not None else ("", ""))
        rows.append((s.state_name, str(s.recv_q), str(s.send_q), *cells, fmt_endpoint(s.family, s.src, s.sport),
                     fmt_endpoint(s.family, s.dst, s.dport), fmt_timer(s.timer),
                     owner_cell(owner)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 2, *range(3, 3 + len(rate_cols))}
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        out.append("  ".join(cells).rstrip())
    return out


def run(args) -> int:
    from sockmon.core.states import LISTEN
    from sockmon.core.table.owners import OwnerCache
    from sockmon.core.table.snapshot import normalize_states, take_snapshot

    states = normalize_states(args.state) if args.state else None
    if args.listening:
        states = sorted(set(states or []) | {LISTEN})
    netns = getattr(args, "ls_netns", None)
    if netns is None:  # `ls --netns ""` is a bad name (refused below), not "no namespace given"
        netns = getattr(args, "netns", None)
    owners = None if args.no_owners else OwnerCache()

    def dump():
        try:
            return take_snapshot(netns=netns, states=states, port=args.port, with_info=True, owners=owners)
        except OSError as exc:
            from sockmon.core.errors import SockmonError

            if isinstance(exc, SockmonError):
                raise
            raise SockmonError.from_os_error(exc, "netlink sock_diag dump") from None

    snap = dump()
    rates = None
    seconds = getattr(args, "rates", None)
    if seconds is not None:
        from sockmon.core.table.rates import rates_between

        first = snap
        if not _wait(seconds):
            print("sockmon ls: interrupted before the second dump: no rates", file=sys.stderr)
            return 0
        snap = dump()
        rates = rates_between(first, snap)
        del first
    if snap.note:
        print(f"sockmon: {inert(snap.note)}", file=sys.stderr)
    if args.json:
        from sockmon.cli.output import fileno_of_stdout, write_all
        from sockmon.core.jsonout import snapshot_lines

        fd = fileno_of_stdout()
        for piece in snapshot_lines(snap, rates=rates):
            write_all(fd, piece)
        return 0
    out = sys.stdout
    out.write("\n".join(format_table(snap, rates)) + "\n")
    out.flush()
    return 0


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
