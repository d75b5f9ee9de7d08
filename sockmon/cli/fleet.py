"""`sockmon fleet --prometheus URL`: every host's sockets as a Prometheus server stores them.

Reads back what `sockmon export` instances publish (the model: `sockmon.core.fleet`): sockets per state per
host, overflow / drop / retransmit / transition rates over the last minute, and the listeners of the
whole fleet closest to a full accept queue. A text table (every string from the server made inert) or one
JSON object (``--json``); ``--watch S`` repeats every S seconds until SIGTERM / SIGINT / SIGHUP (JSON
lines then), and a failed round prints one line on stderr and the next round tries again. Never imports
Textual.
"""

from __future__ import annotations

import signal
import sys
import time

from sockmon.core.errors import BadInput
from sockmon.core.text import inert

SHOWN_STATES = ("established", "listen", "time_wait", "syn_recv", "close_wait")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fleet", help="every host's TCP sockets, read back from Prometheus (sockmon export series)",
        description="Query a Prometheus server that scrapes `sockmon export` instances and show every host: "
        "sockets per state, ListenOverflows / ListenDrops / retransmit / transition rates (last minute) and the "
        "listeners closest to a full accept queue.")
    p.add_argument("--prometheus", dest="fleet_prometheus", required=True, metavar="URL",
                   help="the Prometheus server's base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--json", action="store_true", help="one JSON object (per round with --watch)")
    p.add_argument("--watch", type=float, default=None, metavar="S", help="query again every S seconds")
    p.add_argument("--top", type=int, default=10, metavar="N", help="listeners shown (default 10)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="HTTP timeout (default 5 s)")
    p.set_defaults(run=run)




def format_view(view) -> list[str]:
    """The fleet as aligned text: one row per host, then the fullest listeners. Every outside string inert."""
    from sockmon.core.fleet import fmt_rate

    with_ns = any(h.netns for h in view.hosts) or any(li.netns for li in view.listeners)
    head = ["HOST", *(["NETNS"] if with_ns else []), "TOTAL", "ESTAB", "LISTEN", "TIME_WAIT", "SYN_RECV",
            "CLOSE_WAIT", "OTHER", "OVERFLOW/s", "DROP/s", "RETRANS/s", "TRANS/s"]
    rows = []
    for h in view.hosts:
        other = h.total - sum(h.sockets.get(s, 0) for s in SHOWN_STATES)
        rows.append([inert(h.instance), *([inert(h.netns)] if with_ns else []), str(h.total),
                     *(str(h.sockets.get(s, 0)) for s in SHOWN_STATES), str(other), fmt_rate(h.overflows_per_s),
                     fmt_rate(h.drops_per_s), fmt_rate(h.retransmits_per_s), fmt_rate(h.transitions_per_s)])
    out = _align(head, rows, left=2 if with_ns else 1)
    if not view.hosts:
        out.append(f"(no sockmon_tcp_sockets series in {inert(view.url)}: is Prometheus scraping `sockmon export`?)")
    if view.listeners:
        out.append("")
        out.append("Listeners closest to a full accept queue:")
        lhead = ["HOST", *(["NETNS"] if with_ns else []), "LOCAL", "PROCESS", "QUEUE", "BACKLOG", "FILL"]
        lrows = [[inert(li.instance), *([inert(li.netns)] if with_ns else []), inert(li.local), inert(li.process),
                  str(li.queue), str(li.backlog), f"{li.fill * 100:.0f}%"] for li in view.listeners]
        out += _align(lhead, lrows, left=4 if with_ns else 3)
    return out


def _align(head: list[str], rows: list[list[str]], left: int) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    for r in [head, *rows]:
        cells = [c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return lines


def run(args) -> int:
    from sockmon.cli.output import Stop, fileno_of_stdout, write_all
    from sockmon.core.fleet import FleetError, PrometheusClient, query_fleet
    from sockmon.core.jsonout import encode_lines

    if args.watch is not None and not 0 < args.watch <= 3600:
        raise BadInput(f"--watch must be between 0 and 3600 seconds, got {args.watch}")
    if not 0 < args.timeout <= 600:
        raise BadInput(f"--timeout must be between 0 and 600 seconds, got {args.timeout}")
    if args.top < 0:
        raise BadInput(f"--top must be >= 0, got {args.top}")
    client = PrometheusClient(args.fleet_prometheus, timeout=args.timeout)
    fd = fileno_of_stdout()

    def show(view) -> None:
        if args.json:
            write_all(fd, encode_lines([view.as_dict()]))
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(view.taken_at))
            head = [f"# {inert(view.url)} at {stamp}"] if args.watch is not None else []
            write_all(fd, ("\n".join([*head, *format_view(view)]) + "\n").encode("utf-8", "backslashreplace"))

    if args.watch is None:
        show(query_fleet(client, top=args.top))  # FleetError: one line, exit 1 (cli.main)
        return 0
    stop = Stop()
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    old = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in signals}
    try:
        first = True
        while not stop.is_set():
            try:
                view = query_fleet(client, top=args.top)
            except FleetError as exc:
                print(f"sockmon fleet: {inert(str(exc))}", file=sys.stderr, flush=True)
            else:
                if not first and not args.json:
                    write_all(fd, b"\n")
                show(view)
                first = False
            stop.wait(args.watch)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        stop.close()
    return 0
