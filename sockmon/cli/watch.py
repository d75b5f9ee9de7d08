"""`sockmon watch`: stream TCP state transitions until SIGINT/SIGTERM (exit 0, nothing left behind).

As root: every transition from the kernel tracepoint (private tracefs instance, removed on exit).
Otherwise: transitions inferred from consecutive snapshots. Never imports Textual.
"""

from __future__ import annotations

import signal
import sys
import threading

from sockmon.cli.ls import _port, fmt_endpoint
from sockmon.cli.output import fileno_of_stdout, write_all


def register(subparsers) -> None:
    p = subparsers.add_parser("watch", help="stream TCP state transitions (tracepoint as root, else inferred)",
                              description="Stream TCP state transitions until interrupted. As root the "
                              "kernel tracepoint sock:inet_sock_set_state gives every transition; otherwise "
                              "they are inferred from snapshot diffs.")
    p.add_argument("--json", action="store_true", help="one JSON object per transition (JSON lines)")
    p.add_argument("--port", type=_port, default=None, metavar="N", help="local or remote port N")
    p.add_argument("--interval", dest="watch_interval", type=float, default=None, metavar="S",
                   help="poll interval (default 0.05 s with the tracepoint, 0.5 s inferred)")
    p.add_argument("--inferred", action="store_true", help="never use the tracepoint; diff snapshots")
    p.set_defaults(run=run)


def format_transition(t) -> str:
    dwell = "" if t.dwell_ms is None else f"  after {t.dwell_ms:.3f} ms"
    return (f"{t.ts:.6f}  {t.old_name:>11} -> {t.new_name:<11}  {fmt_endpoint(t.family, t.src, t.sport)} -> "
            f"{fmt_endpoint(t.family, t.dst, t.dport)}{dwell}  [{t.source}]")


def run(args) -> int:
    from sockmon.core.errors import BadInput
    from sockmon.core.jsonout import transition_lines

    interval = args.watch_interval
    if interval is not None and not 0 < interval <= 3600:
        raise BadInput(f"--interval must be between 0 and 3600 seconds, got {interval}")
    stop = threading.Event()

    def on_term(signum, frame):  # SIGTERM / SIGINT: finish the loop, clean up, exit 0
        stop.set()

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_int = signal.signal(signal.SIGINT, on_term)
    as_json = args.json
    fd = fileno_of_stdout()

    def emit(transitions) -> None:
        if not transitions:
            return
        if as_json:
            write_all(fd, transition_lines(transitions))
        else:
            write_all(fd, "".join(format_transition(t) + "\n" for t in transitions).encode())

    try:
        from sockmon.core.table.tracepoint import TransitionTracer, tracing_available

        ok, why = (False, "--inferred given") if args.inferred else tracing_available()
        if ok:
            return _watch_tracepoint(TransitionTracer, args.port, interval or 0.05, stop, emit)
        print(f"sockmon watch: transitions inferred from snapshots ({why})", file=sys.stderr)
        return _watch_inferred(args.port, interval or 0.5, stop, emit)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def _watch_tracepoint(tracer_cls, port, interval, stop, emit) -> int:
    reported = 0
    with tracer_cls(port=port) as tracer:
        while True:
            emit(tracer.read())
            lost = tracer.overruns
            if lost > reported:
                print(f"sockmon watch: the kernel dropped {lost - reported} transition events (buffer overrun)",
                      file=sys.stderr, flush=True)
                reported = lost
            if stop.is_set():
                break
            stop.wait(interval)
        emit(tracer.read())
    return 0


def _watch_inferred(port, interval, stop, emit) -> int:
    """The collector's own snapshot diffs (no owners, no tcp_info: only states matter here)."""
    from sockmon.core.table.collector import Collector

    def on_update(update) -> None:
        if update.error:
            print(f"sockmon watch: {update.error}", file=sys.stderr, flush=True)
        emit(update.transitions)

    with Collector(interval=interval, port=port, with_info=False, with_owners=False, use_tracepoint=False,
                   on_update=on_update):
        stop.wait()
    return 0
