"""Command-line entry point.

`sockmon` alone starts the terminal UI; `sockmon serve|connect|ls|watch|kill|opts` are headless and never import
Textual. Each subcommand lives in its own module here and exposes ``register(subparsers)``, which adds
its parser and sets ``run=<callable(args) -> int>`` as a default.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from sockmon.core.errors import SockmonError
from sockmon.core.text import inert

COMMANDS = ("serve", "connect", "ls", "watch", "export", "fleet", "kill", "opts", "lab")


class _Version(argparse.Action):
    """``--version`` reads the package metadata only when asked (importlib.metadata costs every command ~12 ms)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"sockmon {version()}")  # stdout, as argparse's own version action
        parser.exit()


def version() -> str:
    """The installed distribution's version (package metadata), else the source tree's ``__version__``."""
    from importlib import metadata

    try:
        return metadata.version("sockmon")
    except metadata.PackageNotFoundError:
        from sockmon import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sockmon",
        description="A terminal monitor and lab for TCP sockets on Linux. Without a command: the terminal UI.",
    )
    parser.add_argument("-V", "--version", action=_Version, nargs=0, help="print the version and exit")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="UI refresh interval in seconds (default 1)")
    parser.add_argument("--netns", metavar="NAME", default=None,
                        help="monitor the named network namespace (/run/netns/NAME)")
    parser.add_argument("--prometheus", metavar="URL", default=None,
                        help="Prometheus base URL for the fleet screen (F), e.g. http://127.0.0.1:9090")
    parser.add_argument("--event-table", action=argparse.BooleanOptionalAction, default=None,
                        help="keep the TCP table from the tracepoint's events between full dumps (root; the "
                        "default where the tracepoint is available); --no-event-table: every refresh a full "
                        "dump (also SOCKMON_EVENT_TABLE=0)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"sockmon.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A peer that closes while we write must give EPIPE, never kill us.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "event_table", None) is not None:  # every Collector of this process (the TUI's included)
        os.environ["SOCKMON_EVENT_TABLE"] = "1" if args.event_table else "0"
    try:
        if args.command is None:
            if not 0 < args.interval <= 3600:  # also refuses nan (every comparison with nan is false)
                parser.error(f"--interval must be between 0 and 3600 seconds, got {args.interval}")
            if args.netns is not None:
                from sockmon.core.netns import open_netns

                os.close(open_netns(args.netns))  # refuse a missing namespace before the screen opens
            if args.prometheus is not None:
                from sockmon.core.fleet import parse_url

                parse_url(args.prometheus)  # a bad URL: one line, before the screen opens
            from sockmon.tui.app import run_app

            return run_app(interval=args.interval, netns=args.netns, prometheus=args.prometheus)
        return int(args.run(args) or 0)
    except SockmonError as exc:
        print(f"sockmon: {inert(str(exc))}", file=sys.stderr)  # errors carry names and addresses
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout went away (e.g. `sockmon ls | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
