"""`sockmon serve HOST:PORT`: the server engine, headless. Prints one line (or JSON object) per event, each
with its wall-clock time, and what each client sends (text with non-printables escaped, ``--raw``: the
bytes unchanged on stdout and the timeline on stderr, ``--json``: text and exact hex).

The default backlog is the system's ``net.core.somaxconn`` (the most listen() grants), so a burst of
clients is not silently left half-open in a short queue; when the accept queue overflows anyway, a line
says so once per second (the listener's own drop count, and the namespace's ListenOverflows).

Runs until SIGINT/SIGTERM, then closes every socket and exits 0. HOST is required: there is no default
of 0.0.0.0 (127.0.0.1 is the recommended choice).
"""

from __future__ import annotations

import signal
import sys

from sockmon.cli.output import EventPrinter

MODES_HELP = ("echo: send back what arrives; discard: read and drop; hold: accept, never read; "
              "no-accept: listen only (the accept queue fills); close: accept then FIN; "
              "reset: accept then RST (linger 0)")
FALLBACK_BACKLOG = 4096  # when net.core.somaxconn cannot be read (the kernel's default since 5.4)


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
        description="Run the server engine on HOST:PORT (e.g. 127.0.0.1:8080) until SIGINT/SIGTERM and print "
                    "every event and what each client sends. " + MODES_HELP)
    p.add_argument("endpoint", metavar="HOST:PORT", help="address to bind, e.g. 127.0.0.1:8080 or [::1]:8080")
    p.add_argument("--mode", choices=_ServerModes(), default="echo", metavar="MODE",
                   help="what to do with clients: one of the modes above (default echo)")
    p.add_argument("--backlog", type=int, default=None, metavar="N",
                   help="listen() backlog (default: the system's net.core.somaxconn)")
    p.add_argument("--no-reuseaddr", action="store_true", help="do not set SO_REUSEADDR before bind")
    p.add_argument("-n", "--numeric", action="store_true",
                   help="never look a host name up: HOST must be an IPv4/IPv6 address (like nc -n)")
    p.add_argument("--raw", action="store_true",
                   help="write what clients send unchanged to stdout; the timeline goes to stderr")
    p.add_argument("--json", action="store_true", help="one JSON object per event (with ts and wall-clock time)")
    p.set_defaults(run=run)


def run(args) -> int:
    from sockmon.cli.output import Stop
    from sockmon.core.errors import BadInput
    from sockmon.core.lab.address import parse_endpoint, resolve
    from sockmon.core.lab.server import RECV_SIZE, ServerEngine, system_somaxconn

    endpoint = parse_endpoint(args.endpoint)
    if args.numeric:
        resolve(endpoint.host, endpoint.port, passive=True, numeric=True)  # a name: one line, exit 2
    backlog = args.backlog
    if backlog is None:
        backlog = min(system_somaxconn() or FALLBACK_BACKLOG, 65535)
    if not 0 <= backlog <= 65535:
        raise BadInput(f"bad backlog {backlog}: use 0-65535")
    stop = Stop()  # set from a signal handler: threading.Event.set() there can deadlock the waiter

    def on_signal(signum, _frame) -> None:
        stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    engine = ServerEngine(endpoint.host, endpoint.port, mode=args.mode, backlog=backlog,
                          reuseaddr=not args.no_reuseaddr, on_event=EventPrinter(args.json, raw=args.raw),
                          numeric=args.numeric, event_data_max=RECV_SIZE)
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
        stop.close()
    return 0
