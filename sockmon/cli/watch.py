"""`sockmon watch`: stream TCP state transitions until SIGINT/SIGTERM (exit 0, nothing left behind).

As root: every transition from the kernel tracepoint (private tracefs instance, removed on exit), read
as binary ring-buffer pages (``trace_pipe_raw``, core/table/traceraw.py) when the kernel offers them, else
(or with ``--text-reader``) as text from ``trace_pipe``.
Otherwise, and for another namespace (`sockmon --netns NAME watch`): transitions inferred from
consecutive snapshots. Never imports Textual.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from sockmon.cli.ls import _port, fmt_endpoint
from sockmon.cli.output import Stop, fileno_of_stdout, write_all
from sockmon.core.text import inert


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
    p.add_argument("--text-reader", action="store_true",
                   help="read the tracepoint as text (trace_pipe) instead of binary pages (trace_pipe_raw)")
    p.add_argument("--all-netns", action="store_true",
                   help="every network namespace: each transition says its namespace (\"netns\" in JSON; "
                        "null when the snapshots cannot tell); snapshots every --interval (default 0.5 s)")
    p.add_argument("--closed", action="store_true",
                   help="instead of transitions: each connection as it closes (owner, lifetime, bytes, FIN / RST)")
    p.set_defaults(run=run)


def format_transition(t, with_netns: bool = False) -> str:
    dwell = "" if t.dwell_ms is None else f"  after {t.dwell_ms:.3f} ms"
    where = f"  netns {inert(t.netns or '?')}" if with_netns else ""
    return (f"{t.ts:.6f}  {t.old_name:>11} -> {t.new_name:<11}  {fmt_endpoint(t.family, t.src, t.sport)} -> "
            f"{fmt_endpoint(t.family, t.dst, t.dport)}{dwell}  [{t.source}]{where}")


def run(args) -> int:
    from sockmon.core.errors import BadInput
    from sockmon.core.jsonout import transition_lines

    interval = args.watch_interval
    if interval is not None and not 0 < interval <= 3600:
        raise BadInput(f"--interval must be between 0 and 3600 seconds, got {interval}")
    netns = getattr(args, "netns", None)  # `sockmon --netns NAME watch`
    all_netns = getattr(args, "all_netns", False)
    if all_netns and netns is not None:
        raise BadInput("--all-netns and --netns exclude each other: every namespace, or one")
    if args.closed:
        from sockmon.cli.closed import watch_closed

        return watch_closed(args, netns)
    if netns is not None:
        from sockmon.core.netns import open_netns

        os.close(open_netns(netns))  # a missing / empty / unreadable namespace: one line, before anything
    stop = Stop()

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
            write_all(fd, transition_lines(transitions, all_netns))
        else:
            write_all(fd, "".join(format_transition(t, all_netns) + "\n" for t in transitions).encode())

    try:
        from sockmon.core.table.tracepoint import TransitionTracer, tracing_available

        if all_netns:  # snapshots name each transition's namespace: the collector, tracepoint or not
            from sockmon.core.netns import ALL_NETNS

            return _watch_inferred(args.port, interval or 0.5, stop, emit, ALL_NETNS,
                                   use_tracepoint=False if args.inferred else None)
        if args.inferred:
            ok, why = False, "--inferred given"
        elif netns is not None:  # the tracepoint sees every namespace and cannot tell them apart
            ok, why = False, f"namespace {netns!r}"
        else:
            ok, why = tracing_available()
        if ok:
            reader = "text" if getattr(args, "text_reader", False) else "auto"
            return _watch_tracepoint(TransitionTracer, args.port, interval or 0.05, stop, emit, reader)
        print(f"sockmon watch: transitions inferred from snapshots ({inert(why)})", file=sys.stderr)
        return _watch_inferred(args.port, interval or 0.5, stop, emit, netns)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        stop.close()


BATCHES_PER_ROUND = 32  # then the overrun count is checked (and reported) before reading on
FINAL_DRAIN_S = 2.0  # after SIGTERM / SIGINT: what is still waiting is written for at most this long


def _watch_tracepoint(tracer_cls, port, interval, stop, emit, reader: str = "auto") -> int:
    """Write each bounded batch before reading the next (flat memory under a backlog); a signal is
    noticed between batches. A fall back to the text reader is said on stderr."""
    reported = 0
    with tracer_cls(port=port, reader=reader) as tracer:
        if reader == "auto" and tracer.source != "binary":
            print(f"sockmon watch: {inert(tracer.note)}", file=sys.stderr, flush=True)
        while True:
            n = 0
            for batch in tracer.batches():
                emit(batch)
                n += 1
                if stop.is_set() or n >= BATCHES_PER_ROUND:
                    break
            lost = tracer.overruns
            if lost > reported:
                print(f"sockmon watch: the kernel dropped {lost - reported} transition events (buffer overrun)",
                      file=sys.stderr, flush=True)
                reported = lost
            if stop.is_set():
                break
            if n < BATCHES_PER_ROUND:  # drained: wait; else more is waiting, go on at once
                stop.wait(interval)
        deadline = time.monotonic() + FINAL_DRAIN_S
        for batch in tracer.batches():
            emit(batch)
            if time.monotonic() > deadline:
                break
    return 0


def _watch_inferred(port, interval, stop, emit, netns=None, use_tracepoint: bool | None = False) -> int:
    """The collector's own snapshot diffs (no owners, no tcp_info: only states matter here); with
    ``use_tracepoint`` None and ``netns`` ALL_NETNS the collector's tracepoint transitions, named by
    namespace from its snapshots.

    ``emit`` runs in the collector's thread: an exception there (a closed pipe: BrokenPipeError) comes
    back through ``on_error``, stops the wait, and is raised here in the main thread, so `main` ends
    the command the same way as in tracepoint mode (exit 0 on a closed pipe).
    """
    from sockmon.core.table.collector import Collector

    failed: list[BaseException] = []

    def on_update(update) -> None:
        if update.error:
            print(f"sockmon watch: {inert(update.error)}", file=sys.stderr, flush=True)
        emit(update.transitions)

    def on_error(exc: BaseException) -> None:
        failed.append(exc)
        stop.set()

    with Collector(interval=interval, netns=netns, port=port, with_info=False, with_owners=False,
                   use_tracepoint=use_tracepoint, on_update=on_update, on_error=on_error):
        stop.wait()
    if failed:
        raise failed[0]
    return 0
