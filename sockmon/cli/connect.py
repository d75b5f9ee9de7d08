"""`sockmon connect HOST:PORT`: the client engine, headless. Prints the timeline, one line per event.

Sequence: connect (non-blocking, with timeout) → options → send → shutdown → hold → end of life
(graceful close by default, ``--close`` plain close, ``--abort`` RST). Any failure ends with a non-zero
exit status and one line naming the errno, its meaning and the action; never a traceback.
"""

from __future__ import annotations

import argparse
import threading
import time

from sockmon.cli.output import EventPrinter

REPLY_WAIT = 0.5  # after --send, how long to wait for a first reply when --hold is not given


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "connect", help="connect to HOST:PORT and print the socket's timeline (calls, states, bytes)",
        description="Connect with the client engine and print every call, kernel state and byte count. "
                    "Ends with a graceful close (shutdown WR, read to EOF, close) unless --close/--abort.")
    p.add_argument("endpoint", metavar="HOST:PORT", help="e.g. 127.0.0.1:8080 or [::1]:8080")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--send", metavar="TEXT", help="send this text once connected")
    data.add_argument("--hex", metavar="HEX", help="send these bytes, given as hex (e.g. 'de ad be ef')")
    data.add_argument("--framed", metavar="TEXT", help="send TEXT as one length-prefixed frame (4-byte big-endian)")
    p.add_argument("--linger", metavar="off|0|SECONDS", help="SO_LINGER: off, 0 (abort: RST on close) or N seconds")
    p.add_argument("--keepalive", metavar="IDLE,INTVL,CNT", help="enable SO_KEEPALIVE with these TCP_KEEP* values")
    p.add_argument("--user-timeout", type=int, metavar="MS", help="TCP_USER_TIMEOUT in milliseconds")
    p.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY (disable Nagle)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="connect timeout in seconds (default 5)")
    p.add_argument("--shutdown", choices=("rd", "wr", "rdwr"), help="shutdown() this direction after sending")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--close", action="store_true", help="plain close() at the end (instead of graceful close)")
    end.add_argument("--abort", action="store_true", help="abort at the end: linger 0 + close = RST, no TIME_WAIT")
    p.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                   help="stay connected this long before closing (events keep printing)")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.set_defaults(run=run)


class _Recorder(EventPrinter):
    """Prints events as they come and remembers the first failure."""

    def __init__(self, as_json: bool) -> None:
        super().__init__(as_json)
        self.failure = None
        self.got_reply = threading.Event()

    def seen(self, event) -> None:
        from sockmon.core.lab.events import EventKind

        if event.kind in (EventKind.FAILED, EventKind.RESET, EventKind.ERROR) and self.failure is None:
            self.failure = event
        if event.kind in (EventKind.BYTES_IN, EventKind.PEER_CLOSED, EventKind.RESET):
            self.got_reply.set()


def _payload(args) -> bytes | None:
    from sockmon.core.errors import BadInput
    from sockmon.core.lab.framing import encode_frame

    if args.send is not None:
        return args.send.encode()
    if args.hex is not None:
        try:
            return bytes.fromhex(args.hex.replace(":", " "))
        except ValueError:
            raise BadInput(f"bad --hex {args.hex!r}: give pairs of hex digits, e.g. 'de ad be ef'") from None
    if args.framed is not None:
        return encode_frame(args.framed.encode())
    return None


def run(args: argparse.Namespace) -> int:
    from sockmon.core.errors import BadInput
    from sockmon.core.lab.address import parse_endpoint
    from sockmon.core.lab.client import ClientEngine
    from sockmon.core.lab.events import EventKind
    from sockmon.core.lab.options import Keepalive, Linger

    endpoint = parse_endpoint(args.endpoint)
    linger = Linger.parse(args.linger) if args.linger is not None else None
    keepalive = Keepalive.parse(args.keepalive) if args.keepalive is not None else None
    if not 0 < args.timeout <= 3600:
        raise BadInput(f"bad --timeout {args.timeout}: use more than 0 and at most 3600 seconds")
    if args.hold is not None and not 0 <= args.hold <= 86400:
        raise BadInput(f"bad --hold {args.hold}: use 0-86400 seconds")
    if args.user_timeout is not None and not 0 <= args.user_timeout <= 2**31 - 1:
        raise BadInput(f"bad --user-timeout {args.user_timeout}: use 0-2147483647 ms")
    payload = _payload(args)

    rec = _Recorder(args.json)
    engine = ClientEngine(on_event=rec)
    try:
        engine.connect(endpoint.host, endpoint.port, timeout=args.timeout)
        if not engine.wait_connected(args.timeout + 5.0):
            raise _failure(rec, f"connect to {endpoint}")
        if rec.failure is not None and rec.failure.kind is EventKind.FAILED:
            # an earlier address of the name failed before this one answered; a RESET or ERROR that
            # already arrived on the connection itself (reset on accept) must still fail the run
            rec.failure = None
        if linger is not None:
            engine.set_linger(linger)
        if keepalive is not None:
            engine.set_keepalive(keepalive)
        if args.user_timeout is not None:
            engine.set_user_timeout(args.user_timeout)
        if args.nodelay:
            engine.set_nodelay(True)
        if payload:
            engine.send(payload)
            if args.hold is None:
                rec.got_reply.wait(REPLY_WAIT)
        if args.shutdown:
            engine.shutdown(args.shutdown)
        if args.hold:
            deadline = time.monotonic() + args.hold
            while engine.connected and time.monotonic() < deadline:
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if not engine.open:
            pass  # the connection already ended (reset, error): nothing left to close
        elif args.abort:
            engine.abort()
        elif args.close:
            engine.close()
        else:
            engine.graceful_close()
        linger_wait = linger.seconds if linger is not None and linger.enabled else 0
        engine.wait_closed(10.0 + linger_wait)
    finally:
        engine.stop()
    if rec.failure is not None:
        raise _failure(rec, "connection")
    return 0


def _failure(rec: _Recorder, doing: str):
    from sockmon.core.errors import SockmonError

    ev = rec.failure
    if ev is None:
        return SockmonError(f"{doing}: failed (no event reported)")
    if ev.errno_name:
        return SockmonError(f"{ev.detail or doing}: {ev.errno_name}: {ev.meaning} ({ev.action})")
    return SockmonError(f"{ev.detail or doing}: {ev.kind.value}")
