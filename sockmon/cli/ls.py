"""`sockmon ls`: one snapshot of the kernel's TCP socket table, as an aligned table or JSON lines."""

from __future__ import annotations

import argparse


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser("ls", help="list TCP sockets once (like ss -tanoi, plus owners)",
                              description="List the kernel's TCP sockets once (netlink sock_diag).")
    p.add_argument("--json", action="store_true", help="one JSON object per socket")
    p.add_argument("--listening", action="store_true", help="only LISTEN sockets")
    p.add_argument("--state", action="append", default=[], metavar="STATE",
                   help="only this state (repeatable), e.g. ESTABLISHED, TIME_WAIT")
    p.add_argument("--port", type=_port, default=None, metavar="N", help="local or remote port N")
    p.add_argument("--netns", dest="ls_netns", metavar="NAME", default=None,
                   help="a named network namespace (/run/netns/NAME) or pid:PID")
    p.set_defaults(run=run)


def run(args) -> int:
    from sockmon.cli._lsimpl import run_ls

    return run_ls(args)
