"""`sockmon connect HOST:PORT`: the client engine, headless, as good a client as ``nc``. Prints the timeline,
one line per event, each starting with the wall-clock time; received bytes are printed as they arrive.

Sequence: connect (non-blocking, with timeout) → options → data → hold → end of life (graceful close by
default, ``--close`` plain close, ``--abort`` RST) → the socket followed in the kernel's table after the
fd is closed (TIME_WAIT and its timer).

Data: ``--send TEXT`` (C escapes: ``\\r \\n \\t \\0 \\\\ \\xHH``), ``--hex``, ``--framed``; without them and
with stdin a pipe, a file or a socket (not a terminal, not /dev/null), stdin is streamed to the socket and
at its end the socket is half-closed (shutdown SHUT_WR, like ``nc -N``), then the reply is read until the peer closes (or ``--hold`` / ``-w``).
``--crlf`` turns LF into CRLF (like ``nc -C``). ``--raw`` writes the received bytes unchanged to stdout and
the timeline to stderr.

Exit status: non-zero with one line when anything failed, and when bytes we sent had not reached the
peer's kernel when our fd was closed (the engine's queue plus the kernel's unacknowledged send queue,
read just before close) — also with ``--abort``. Never a traceback.
"""

from __future__ import annotations

import argparse
import os
import select
import stat
import threading
import time

from sockmon.cli.output import EventPrinter

REPLY_WAIT = 0.5  # after --send, how long to wait for a first reply when --hold is not given
STDIN_CHUNK = 65536
SEND_HIGH_WATER = 256 * 1024  # stdin is read only while the engine holds at most this much unsent
FOLLOW_LIMIT = 2.0  # after close, how long to follow the socket in the kernel table before reporting


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "connect", help="connect to HOST:PORT, send, print what comes back and the socket's timeline",
        description="Connect with the client engine and print every call, kernel state, byte sent and "
                    "received, with wall-clock times. Without --send/--hex/--framed and with stdin a pipe "
                    "or a file, stdin is sent and the socket half-closed at its end (like nc -N). Ends with "
                    "a graceful close (shutdown WR, read to EOF, close) unless --close/--abort, then follows "
                    "the socket in the kernel table (TIME_WAIT).")
    p.add_argument("endpoint", metavar="HOST:PORT", help="e.g. 127.0.0.1:8080 or [::1]:8080")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--send", metavar="TEXT",
                      help="send this text once connected; C escapes: \\r \\n \\t \\0 \\\\ \\xHH "
                           "(e.g. 'PING\\r\\n')")
    data.add_argument("--hex", metavar="HEX", help="send these bytes, given as hex (e.g. 'de ad be ef')")
    data.add_argument("--framed", metavar="TEXT", help="send TEXT as one length-prefixed frame (4-byte big-endian)")
    data.add_argument("-d", "--no-stdin", action="store_true",
                      help="do not read stdin even when it is not a terminal (like nc -d)")
    p.add_argument("-C", "--crlf", action="store_true", help="turn LF into CRLF in what is sent (like nc -C)")
    p.add_argument("--raw", action="store_true",
                   help="write received bytes unchanged to stdout; the timeline goes to stderr")
    p.add_argument("-n", "--numeric", action="store_true",
                   help="never look a host name up: HOST must be an IPv4/IPv6 address (like nc -n)")
    p.add_argument("--linger", metavar="off|0|SECONDS", help="SO_LINGER: off, 0 (abort: RST on close) or N seconds")
    p.add_argument("--keepalive", metavar="IDLE,INTVL,CNT", help="enable SO_KEEPALIVE with these TCP_KEEP* values")
    p.add_argument("--user-timeout", type=int, metavar="MS", help="TCP_USER_TIMEOUT in milliseconds")
    p.add_argument("--nodelay", action="store_true", help="set TCP_NODELAY (disable Nagle)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="connect timeout in seconds (default 5)")
    p.add_argument("-w", "--wait", type=float, default=None, metavar="S",
                   help="give up after S seconds in which no byte moved either way (like nc -w); also how "
                        "long the graceful close waits for the peer's FIN (default 5)")
    p.add_argument("--shutdown", choices=("rd", "wr", "rdwr"), help="shutdown() this direction after sending")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--close", action="store_true", help="plain close() at the end (instead of graceful close)")
    end.add_argument("--abort", action="store_true", help="abort at the end: linger 0 + close = RST, no TIME_WAIT")
    p.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                   help="stay connected this long before closing (events keep printing); with stdin: wait "
                        "at most this long for the peer to close after stdin ended")
    p.add_argument("--json", action="store_true", help="one JSON object per event (with ts and wall-clock time)")
    p.add_argument("--ladder", action="store_true",
                   help="also print the connection's packets as a ladder, one line each as they pass (SYN, "
                        "SYN-ACK, ACK, data, FIN, RST with relative seq/ack, window, options; root: AF_PACKET "
                        "capture started before connect(); with --json one {\"ladder\": {...}} line each)")
    p.add_argument("--ladder-iface", metavar="DEV",
                   help="capture the ladder on this device only (default: every device, e.g. lo)")
    p.set_defaults(run=run)


class _Recorder(EventPrinter):
    """Prints events as they come and remembers the first failure, the peer's FIN and the last progress."""

    def __init__(self, as_json: bool, raw: bool) -> None:
        super().__init__(as_json, raw=raw)
        self.failure = None
        self.got_reply = threading.Event()
        self.peer_closed = threading.Event()
        self.last_progress = time.monotonic()

    def seen(self, event) -> None:
        from sockmon.core.lab.events import EventKind

        if event.kind in (EventKind.FAILED, EventKind.RESET, EventKind.ERROR) and self.failure is None:
            self.failure = event
        if event.kind in (EventKind.BYTES_IN, EventKind.PEER_CLOSED, EventKind.RESET):
            self.got_reply.set()
        if event.kind in (EventKind.PEER_CLOSED, EventKind.RESET, EventKind.CLOSED):
            self.peer_closed.set()
        if event.kind in (EventKind.BYTES_IN, EventKind.BYTES_OUT):
            self.last_progress = time.monotonic()


class LfToCrlf:
    """``nc -C``: every LF not already after a CR becomes CRLF, across chunk boundaries."""

    def __init__(self) -> None:
        self._after_cr = False

    def __call__(self, data: bytes) -> bytes:
        if not data:
            return data
        out = bytearray()
        start = 0
        while (i := data.find(b"\n", start)) >= 0:
            out += data[start:i]
            prev_cr = data[i - 1] == 0x0D if i > 0 else self._after_cr
            out += b"\n" if prev_cr else b"\r\n"
            start = i + 1
        out += data[start:]
        self._after_cr = data[-1] == 0x0D
        return bytes(out)


def _payload(args) -> bytes | None:
    from sockmon.core.errors import BadInput
    from sockmon.core.lab.framing import encode_frame
    from sockmon.core.lab.payload import parse_hex, unescape

    if args.send is not None:
        try:
            data = unescape(args.send)
        except BadInput as exc:
            raise BadInput(f"bad --send: {exc}") from None
        return LfToCrlf()(data) if args.crlf else data
    if args.hex is not None:
        try:
            return parse_hex(args.hex)
        except BadInput as exc:
            raise BadInput(f"bad --hex: {exc}") from None
    if args.framed is not None:
        return encode_frame(args.framed.encode())
    return None


def _stdin_streams(args) -> bool:
    if args.send is not None or args.hex is not None or args.framed is not None or args.no_stdin:
        return False
    try:
        mode = os.fstat(0).st_mode
    except OSError:  # no stdin at all
        return False
    # piped or redirected from a file: stream it. A terminal is for people; a character device such as
    # /dev/null (cron, systemd, `< /dev/null`) means "no input": the run behaves as with -d.
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def run(args: argparse.Namespace) -> int:
    from sockmon.core.errors import BadInput
    from sockmon.core.lab.address import parse_endpoint, resolve
    from sockmon.core.lab.client import RECV_SIZE, ClientEngine
    from sockmon.core.lab.events import EventKind
    from sockmon.core.lab.options import Keepalive, Linger

    endpoint = parse_endpoint(args.endpoint)
    if args.numeric:
        resolve(endpoint.host, endpoint.port, numeric=True)  # a name: one clear line, exit 2, no lookup
    linger = Linger.parse(args.linger) if args.linger is not None else None
    keepalive = Keepalive.parse(args.keepalive) if args.keepalive is not None else None
    if not 0 < args.timeout <= 3600:
        raise BadInput(f"bad --timeout {args.timeout}: use more than 0 and at most 3600 seconds")
    if args.hold is not None and not 0 <= args.hold <= 86400:
        raise BadInput(f"bad --hold {args.hold}: use 0-86400 seconds")
    if args.wait is not None and not 0 < args.wait <= 86400:
        raise BadInput(f"bad --wait {args.wait}: use more than 0 and at most 86400 seconds")
    if args.user_timeout is not None and not 0 <= args.user_timeout <= 2**31 - 1:
        raise BadInput(f"bad --user-timeout {args.user_timeout}: use 0-2147483647 ms")
    payload = _payload(args)
    streaming = _stdin_streams(args)

    rec = _Recorder(args.json, args.raw)
    ladder = None
    if args.ladder or args.ladder_iface:
        from sockmon.core.lab.ladder import LadderHook

        ladder = LadderHook(on_packet=rec.ladder, iface=args.ladder_iface,
                            on_unavailable=lambda reason: rec.note("ladder_unavailable", reason, reason))
    engine = ClientEngine(on_event=rec, event_data_max=RECV_SIZE,
                          graceful_timeout=args.wait if args.wait is not None else 5.0, before_connect=ladder)
    interrupted = False
    stdin_read = None
    try:
        engine.connect(endpoint.host, endpoint.port, timeout=args.timeout, numeric=args.numeric)
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
        try:
            if streaming:
                stdin_read = _stream_stdin(engine, rec, args)
            else:
                if payload:
                    engine.send(payload)
                    if args.hold is None:
                        rec.got_reply.wait(REPLY_WAIT)
                if args.shutdown:
                    engine.shutdown(args.shutdown)
                if args.hold:
                    _wait_until(engine, rec, args, time.monotonic() + args.hold, until_peer_closes=False)
        except KeyboardInterrupt:
            interrupted = True
        local, peer = engine.local, engine.peer
        if not engine.open:
            pass  # the connection already ended (reset, error): nothing left to close
        elif args.abort:
            engine.abort()
        elif args.close or interrupted:
            engine.close()
        else:
            engine.graceful_close()
        linger_wait = linger.seconds if linger is not None and linger.enabled else 0
        engine.wait_closed(10.0 + linger_wait + (args.wait or 5.0))
    finally:
        engine.stop()
        if ladder is not None:
            _end_ladder(rec, ladder)
    active_close = not args.abort and rec.failure is None and local is not None and peer is not None
    if active_close and not interrupted:
        _follow_in_table(rec, local, peer)
    undelivered = engine.undelivered or 0
    lost = ""
    if undelivered:
        lost = (f"{undelivered} bytes sent were not delivered to the peer's kernel before close"
                + (f" ({stdin_read} bytes read from stdin)" if stdin_read is not None else ""))
    if rec.failure is not None:
        exc = _failure(rec, "connection")
        if lost:
            exc.args = (f"{exc.args[0]}; {lost}",)
        raise exc
    if lost:
        from sockmon.core.errors import SockmonError

        raise SockmonError(lost + ": the peer did not read them (or the network did not carry them)")
    return 130 if interrupted else 0


LADDER_WAIT = 1.0  # after close, how long the ladder may wait for the connection's last FIN/ACK or RST


def _end_ladder(rec: _Recorder, ladder) -> None:
    """Let the capture see the connection's last segment (it ends by itself a grace period after the last
    FIN is acknowledged or an RST), stop it after LADDER_WAIT seconds at most, and say what it kept."""
    capture = ladder.capture
    if capture is None:
        return
    ladder.wait_done(LADDER_WAIT)
    summary = {"packets": capture.ladder.count, "evicted": capture.evicted, "kernel_drops": capture.kernel_drops}
    text = f"ladder: {capture.ladder.count} packets"
    if capture.evicted or capture.kernel_drops:
        text += f" ({capture.evicted} evicted, {capture.kernel_drops} dropped by the kernel)"
    rec.note("ladder_end", summary, text)


def _wait_until(engine, rec: _Recorder, args, deadline: float | None, *, until_peer_closes: bool) -> None:
    """Stay connected until ``deadline`` (None: no limit), the peer's close (when ``until_peer_closes``),
    the end of the connection, or ``--wait`` seconds without progress."""
    while engine.connected:
        now = time.monotonic()
        if until_peer_closes and rec.peer_closed.is_set():
            return
        if deadline is not None and now >= deadline:
            return
        if _gave_up_idle(engine, rec, args):
            return
        step = 0.1 if deadline is None else min(0.1, max(0.0, deadline - now))
        rec.peer_closed.wait(step) if until_peer_closes else time.sleep(step)


def _gave_up_idle(engine, rec: _Recorder, args) -> bool:
    """True (and said in the timeline) when no byte moved for ``-w`` seconds."""
    if args.wait is None or time.monotonic() - rec.last_progress < args.wait:
        return False
    from sockmon.core.lab.events import EventKind

    _note(engine, EventKind.INFO, f"no byte moved for {args.wait:g} s (-w): giving up")
    return True


def _note(engine, kind, text: str) -> None:
    """An event of ours in the engine's timeline, after every command queued before it."""
    engine.post(lambda: engine.emit(kind, text, conn="client"))


def _stream_stdin(engine, rec: _Recorder, args) -> int:
    """Send stdin as it comes (bounded: at most SEND_HIGH_WATER bytes wait in the engine), half-close at its
    end, then read until the peer closes (or --hold / -w). Returns the bytes read from stdin."""
    from sockmon.core.lab.events import EventKind

    crlf = LfToCrlf() if args.crlf else None
    total = 0
    eof = False
    while engine.connected and not rec.peer_closed.is_set():
        if not engine.wait_send_room(SEND_HIGH_WATER, 0.1):
            if _gave_up_idle(engine, rec, args):
                return total
            continue
        try:
            ready, _, _ = select.select([0], [], [], 0.1)
        except (OSError, ValueError):
            ready = [0]
        if not ready:
            if _gave_up_idle(engine, rec, args):
                return total
            continue
        try:
            chunk = os.read(0, STDIN_CHUNK)
        except InterruptedError:
            continue
        except OSError as exc:
            _note(engine, EventKind.ERROR, f"reading stdin failed: {exc.strerror}")
            chunk = b""
        if not chunk:
            eof = True
            break
        total += len(chunk)
        rec.last_progress = time.monotonic()
        engine.send(crlf(chunk) if crlf else chunk)
    if eof and engine.connected:
        _note(engine, EventKind.INFO, f"stdin ended after {total} bytes: half-close (like nc -N), "
              "then read until the peer closes")
        engine.shutdown("wr")
        deadline = None if args.hold is None else time.monotonic() + args.hold
        _wait_until(engine, rec, args, deadline, until_peer_closes=True)
    return total


def _follow_in_table(rec: _Recorder, local: tuple[str, int], peer: tuple[str, int]) -> None:
    """After our fd is closed the connection may live on in the kernel (FIN_WAIT2, TIME_WAIT): find it by
    its 4-tuple in the socket table and print each state seen, until TIME_WAIT (with the time the
    timewait timer gives it), its end, or FOLLOW_LIMIT seconds."""
    from sockmon.core.errors import SockmonError
    from sockmon.core.lab.events import EventKind, make_event
    from sockmon.core.states import TIMER_TIMEWAIT
    from sockmon.core.table.snapshot import take_snapshot

    deadline = time.monotonic() + FOLLOW_LIMIT
    last = None
    while True:
        try:
            snap = take_snapshot(port=local[1], with_info=False)
        except SockmonError as exc:
            rec(make_event(EventKind.INFO, f"kernel table not readable: {exc}", conn="client"))
            return
        tup = (*local, *peer)
        found = next((s for s in snap.sockets if s.four_tuple == tup), None)
        name = found.state_name if found is not None else None
        if name != last:
            last = name
            if found is None:
                rec(make_event(EventKind.INFO, "kernel table: the connection is gone (no TIME_WAIT here: the "
                               "peer closed first, or it was reset)", conn="client", local=local, peer=peer))
                return
            timer = found.timer
            detail = "kernel table, fd closed"
            if timer is not None and timer.kind == TIMER_TIMEWAIT:
                detail += (f": timewait timer {timer.expires_ms / 1000:.1f} s left, then the kernel forgets "
                           "the 4-tuple")
            elif timer is not None:
                detail += f": {timer.name} timer {timer.expires_ms / 1000:.1f} s"
            rec(make_event(EventKind.STATE, detail, conn="client", state=name, local=local, peer=peer))
            if name == "TIME_WAIT":
                return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def _failure(rec: _Recorder, doing: str):
    from sockmon.core.errors import SockmonError

    ev = rec.failure
    if ev is None:
        return SockmonError(f"{doing}: failed (no event reported)")
    if ev.errno_name:
        return SockmonError(f"{ev.detail or doing}: {ev.errno_name}: {ev.meaning} ({ev.action})")
    return SockmonError(f"{ev.detail or doing}: {ev.kind.value}")
