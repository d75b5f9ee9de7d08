"""`sockmon watch`: stream TCP state transitions until SIGINT/SIGTERM."""

from __future__ import annotations

from sockmon.cli.ls import _port


def register(subparsers) -> None:
    p = subparsers.add_parser("watch", help="stream TCP state transitions (tracepoint as root, else inferred)",
                              description="Stream TCP state transitions until interrupted. As root the "
                              "kernel tracepoint sock:inet_sock_set_state gives every transition; otherwise "
                              "they are inferred from snapshot diffs.")
    p.add_argument("--json", action="store_true", help="one JSON object per transition")
    p.add_argument("--port", type=_port, default=None, metavar="N", help="local or remote port N")
    p.add_argument("--interval", dest="watch_interval", type=float, default=None, metavar="S",
                   help="poll interval (default 0.05 s with the tracepoint, 0.5 s inferred)")
    p.add_argument("--inferred", action="store_true", help="never use the tracepoint; diff snapshots")
    p.set_defaults(run=run)


def run(args) -> int:
    from sockmon.cli._watchimpl import run_watch

    return run_watch(args)
