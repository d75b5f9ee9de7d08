"""`sockmon serve HOST:PORT`: the server engine, headless. Prints one line (or JSON object) per event.

Runs until SIGINT/SIGTERM, then closes every socket and exits 0. HOST is required: there is no default
of 0.0.0.0 (127.0.0.1 is the recommended choice).
"""

from __future__ import annotations

import signal
import sys
import threading

from sockmon.cli.output import EventPrinter

MODES_HELP = ("echo: send back what arrives; discard: read and drop; hold: accept, never read; "
              "no-accept: listen only (the accept queue fills); close: accept then FIN; "
              "reset: accept then RST (linger 0)")


class _ServerModes:
    """The server engine's modes (``--mode`` choices), imported when ``serve`` parses its arguments:
    building the parser for another command (``ls``, ``watch``) does not load the server engine."""

    @staticmethod
    def _modes() -> tuple[str, ...]:
        from sockmon.core.lab.server import MODES

        return MODES

    def __contains__(self, mode: object) -> bool:
        return mode in self._modes()

    def __iter__(self):
        return iter(self._modes())


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="run a TCP server (echo, discard, hold, no-accept, close, reset) and print its events",
        description="Run the server engine on HOST:PORT (e.g. 127.0.0.1:8080) until SIGINT/SIGTERM. "
                    + MODES_HELP)
    p.add_argument("endpoint", metavar="HOST:PORT", help="address to bind, e.g. 127.0.0.1:8080 or [::1]:8080")
    p.add_argument("--mode", choices=_ServerModes(), default="echo", metavar="MODE",
                   help="what to do with clients: one of the modes above (default echo)")
    p.add_argument("--backlog", type=int, default=128, metavar="N", help="listen() backlog (default 128)")
    p.add_argument("--no-reuseaddr", action="store_true", help="do not set SO_REUSEADDR before bind")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.set_defaults(run=run)


def run(args) -> int:
    from sockmon.core.errors import BadInput
    from sockmon.core.lab.address import parse_endpoint
    from sockmon.core.lab.server import ServerEngine

    endpoint = parse_endpoint(args.endpoint)
    if not 0 <= args.backlog <= 65535:
        raise BadInput(f"bad backlog {args.backlog}: use 0-65535")
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    engine = ServerEngine(endpoint.host, endpoint.port, mode=args.mode, backlog=args.backlog,
                          reuseaddr=not args.no_reuseaddr, on_event=EventPrinter(args.json))
    try:
        engine.start()
        while not stop.wait(0.5):
            if not engine.running:
                print("sockmon: server loop ended unexpectedly", file=sys.stderr)
                return 1
    finally:
        engine.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0
