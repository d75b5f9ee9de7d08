"""The server engine: one non-blocking listener and its clients on a selector, in its own thread.

Modes: ``echo`` (send back what arrives), ``discard`` (read and drop), ``hold`` (accept, never read),
``no-accept`` (listen only: the accept queue fills), ``close`` (accept then FIN), ``reset`` (accept then
RST with linger 0). Every socket is non-blocking and partial writes are buffered and flushed when the
socket is writable, so a client that connects and sends nothing never delays any other.

Per-client actions take the client id ("127.0.0.1:51234") and may be called from any thread:
``send``/``shutdown``/``close``/``abort`` are queued to the engine thread and return at once;
``set_linger``/``set_keepalive`` are engine commands too: they return a Future of the value read back
from the kernel, and their OPTION event carries every option read back (``Event.options``). The engine
re-reads each client's options at every sample (an OPTION event when someone else changed them), so
``options(cid)`` and ``clients()`` report the newest read without a syscall in the caller's thread.
An unknown id raises SockmonError.

``netns``: the listener and every accepted socket live in that network namespace.
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab import lifecycle
from sockmon.core.lab.address import format_endpoint, resolve
from sockmon.core.lab.engine import EngineLoop, OnEvent, failure_fields, socket_failure_fields
from sockmon.core.lab.events import EventKind
from sockmon.core.lab.options import Keepalive, Linger, SocketOptions, read_options
from sockmon.core.lab.options import set_keepalive as _set_keepalive
from sockmon.core.lab.options import set_linger as _set_linger
from sockmon.core.lab.sockio import MSG_NOSIGNAL
from sockmon.core.states import state_name
from sockmon.core.tcpinfo import read_tcp_info

MODES = ("echo", "discard", "hold", "no-accept", "close", "reset")
READING_MODES = ("echo", "discard")
RECV_SIZE = 65536
EVENT_DATA_MAX = 4096  # BYTES_IN / BYTES_OUT events carry at most this much of the data (by default)
ACCEPT_BATCH = 64
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux 4.12+: u32 sk_meminfo[SK_MEMINFO_VARS]
SK_MEMINFO_DROPS = 8  # index of sk_drops: a listener counts there each connection dropped at its queue


def system_somaxconn() -> int | None:
    """net.core.somaxconn (/proc/sys/net/core/somaxconn, of the caller's network namespace): the largest
    accept queue listen() grants; None when it cannot be read."""
    try:
        with open("/proc/thread-self/sys/net/core/somaxconn") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        try:
            with open("/proc/sys/net/core/somaxconn") as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None


def listen_overflows() -> int | None:
    """TcpExt ListenOverflows of the calling thread's network namespace (/proc/thread-self/net/netstat):
    connections dropped because some listener's accept queue was full. None when unreadable."""
    try:
        with open("/proc/thread-self/net/netstat", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], vals.split()[1:], strict=False))
            try:
                return int(table["ListenOverflows"])
            except (KeyError, ValueError):
                return None
    return None


OVERFLOW_CHECK = 1.0  # seconds between two looks at the accept queue's drops (one line at most each)


@dataclass(frozen=True, slots=True)
class AcceptQueue:
    """A listener's accept queue as the kernel reports it (TCP_INFO on a LISTEN socket: ``unacked`` is the
    queue length, ``sacked`` the backlog granted) and its drop count (SO_MEMINFO ``sk_drops``: connections
    dropped because the queue was full, or for want of memory). ``drops`` is None when unreadable."""

    queued: int
    backlog: int
    drops: int | None


@dataclass(frozen=True, slots=True)
class ServerClient:
    """A snapshot of one accepted client (``state`` read from TCP_INFO when the snapshot was taken)."""

    id: str
    peer: tuple[str, int]
    local: tuple[str, int]
    bytes_in: int
    bytes_out: int
    state: str
    read_shut: bool
    write_shut: bool
    peer_closed: bool = False
    pending_out: int = 0  # bytes queued in the engine, not yet accepted by the kernel
    options: SocketOptions | None = None  # as the engine thread last read them from the kernel


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    id: str
    peer: tuple[str, int]
    local: tuple[str, int]
    bytes_in: int = 0
    bytes_out: int = 0
    out: bytearray = field(default_factory=bytearray)
    read_shut: bool = False
    write_shut: bool = False
    peer_closed: bool = False
    closed: bool = False
    close_after_flush: bool = False
    shutdown_after_flush: bool = False
    mask: int = 0
    state: str = ""
    options: SocketOptions | None = None
    unacked: int = 0  # tcp_info unacked at the last sample


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise BadInput(f"unknown server mode {mode!r}; one of: {', '.join(MODES)}")
    return mode


class ServerEngine(EngineLoop):
    name = "sockmon-server"

    def __init__(self, host: str, port: int, *, mode: str = "echo", backlog: int = 128, reuseaddr: bool = True,
                 on_event: OnEvent | None = None, close_on_eof: bool = True, max_pending: int = 1 << 20,
                 sample_interval: float = 0.5, netns: str | None = None, numeric: bool = False,
                 event_data_max: int = EVENT_DATA_MAX) -> None:
        """``close_on_eof``: in echo/discard mode, close a client once it has closed and our output is
        flushed (False keeps it in CLOSE_WAIT until ``close(cid)``). ``max_pending``: stop reading from
        an echo client whose unsent output exceeds this (back-pressure). ``numeric``: the host must be an
        address, never looked up. ``event_data_max``: bytes of each read/write a BYTES_IN / BYTES_OUT event
        carries."""
        super().__init__(on_event, netns=netns)
        self.host = host
        self.port = port
        self.mode = _check_mode(mode)
        if not 0 <= backlog <= 65535:
            raise BadInput(f"bad backlog {backlog}: use 0-65535")
        self.backlog = backlog
        self.reuseaddr = reuseaddr
        self.close_on_eof = close_on_eof
        self.max_pending = max_pending
        self.sample_interval = sample_interval
        self.numeric = numeric
        self.event_data_max = event_data_max
        self._listener: socket.socket | None = None
        self._listener_options: SocketOptions | None = None
        self._listening_registered = False
        self._paused_until = 0.0
        self._conns: dict[str, _Conn] = {}
        self._address: tuple[str, int] | None = None
        self._next_sample = 0.0
        self._next_overflow_check = 0.0
        self._drops_seen: int | None = None
        self._overflows_seen: int | None = None

    # -- control (any thread) ---------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """The address actually bound (port 0 → the port the kernel chose)."""
        if self._address is None:
            raise SockmonError("server not started")
        return self._address

    def start(self) -> ServerEngine:
        """Bind and listen now (errors raise SockmonError, e.g. EADDRINUSE), then serve in a thread."""
        if self._thread is not None:
            raise SockmonError("server already started")
        family, sockaddr = resolve(self.host, self.port, passive=True, numeric=self.numeric)[0]
        where = format_endpoint(sockaddr[0], sockaddr[1])
        try:
            if self.netns is not None:
                from sockmon.core.netns import run_in_netns

                sock = run_in_netns(self.netns, lambda: socket.socket(family, socket.SOCK_STREAM))
            else:
                sock = socket.socket(family, socket.SOCK_STREAM)
        except BaseException:
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            raise
        try:
            if self.reuseaddr:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.queue_event(EventKind.CALL, f"bind({where})" + (" with SO_REUSEADDR" if self.reuseaddr else ""))
            sock.bind(sockaddr)
            self.queue_event(EventKind.CALL, f"listen(backlog={self.backlog})")
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            raise SockmonError.from_os_error(exc, f"bind/listen {where}") from None
        self._listener = sock
        self._address = tuple(sock.getsockname()[:2])
        try:
            self._listener_options = read_options(sock)
        except SockmonError:
            self._listener_options = None
        self.queue_event(EventKind.RETURNED, "listen", state="LISTEN")
        self.queue_event(EventKind.INFO, f"listening on {format_endpoint(*self._address)}, mode {self.mode}")
        self._update_listener()
        try:
            self._start_thread()
        except BaseException:
            sock.close()
            raise
        return self

    def set_mode(self, mode: str) -> None:
        """New mode for new clients; echo/discard/hold also start/stop reading existing clients."""
        _check_mode(mode)
        self.post(lambda: self._do_set_mode(mode))

    def clients(self) -> list[ServerClient]:
        with self._lock:
            conns = [c for c in self._conns.values() if not c.closed]
            out = []
            for c in conns:
                try:
                    st = state_name(read_tcp_info(c.sock).state)
                except OSError:
                    st = "CLOSED"
                out.append(ServerClient(c.id, c.peer, c.local, c.bytes_in, c.bytes_out, st, c.read_shut,
                                        c.write_shut, c.peer_closed, len(c.out), c.options))
        return out

    def send(self, cid: str, data: bytes) -> None:
        self._known(cid)
        data = bytes(data)
        self.post(lambda: self._with(cid, "send", lambda c: self._queue_send(c, data)))

    def shutdown(self, cid: str, how: str) -> None:
        code = lifecycle.parse_how(how)
        self._known(cid)
        self.post(lambda: self._with(cid, "shutdown", lambda c: self._do_shutdown(c, code)))

    def close(self, cid: str) -> None:
        self._known(cid)
        self.post(lambda: self._with(cid, "close", lambda c: self._close(c, "close()")))

    def abort(self, cid: str) -> None:
        self._known(cid)
        self.post(lambda: self._with(cid, "abort", lambda c: self._close(c, "abort", abort=True)))

    def set_linger(self, cid: str, linger: Linger) -> Future:
        self._known(cid)
        return self.call(lambda: self._do_option(cid, "SO_LINGER", lambda s: _set_linger(s, linger)))

    def set_keepalive(self, cid: str, keepalive: Keepalive) -> Future:
        self._known(cid)
        return self.call(lambda: self._do_option(cid, "SO_KEEPALIVE", lambda s: _set_keepalive(s, keepalive)))

    def options(self, cid: str) -> SocketOptions | None:
        """The client's options as the engine thread last read them (no syscall here)."""
        return self._known(cid).options

    def accept_queue(self) -> AcceptQueue | None:
        """The listener's accept queue now (queued / backlog) and its drop count: two getsockopt calls, any
        thread. None before start or after stop."""
        with self._lock:
            sock = self._listener
            if sock is None or sock.fileno() < 0:
                return None
            try:
                info = read_tcp_info(sock)
            except OSError:
                return None
            try:
                raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * 16)
                drops = int.from_bytes(raw[4 * SK_MEMINFO_DROPS:4 * SK_MEMINFO_DROPS + 4], "little") \
                    if len(raw) >= 4 * (SK_MEMINFO_DROPS + 1) else None
            except OSError:
                drops = None
        return AcceptQueue(info.unacked, info.sacked, drops)

    def listener_options(self) -> SocketOptions | None:
        """The listener's options as read right after listen() (no syscall, no lock here)."""
        return self._listener_options

    def _known(self, cid: str) -> _Conn:
        with self._lock:
            conn = self._conns.get(cid)
            if conn is None or conn.closed:
                raise SockmonError(f"no client {cid} (closed, or never connected)", errno=errno.ENOTCONN)
            return conn

    # -- engine thread ----------------------------------------------------------------------------------
    def _do_option(self, cid: str, what: str, fn):
        conn = self._conns.get(cid)
        if conn is None or conn.closed:
            self.emit(EventKind.FAILED, f"setsockopt({what}): no client {cid} (already closed)", conn=cid,
                      **failure_fields(errno.ENOTCONN))
            return None
        try:
            value = fn(conn.sock)
            conn.options = read_options(conn.sock)
        except SockmonError as exc:
            self.emit(EventKind.FAILED, f"setsockopt({what})", conn=cid, **failure_fields(exc.errno))
            return None
        self.emit(EventKind.OPTION, str(value), conn=cid, options=conn.options, local=conn.local, peer=conn.peer)
        return value

    def _failure_fields(self, conn: _Conn, code: int | None) -> dict:
        return socket_failure_fields(code, conn.sock, conn.options, conn.unacked)

    def _with(self, cid: str, what: str, fn) -> None:
        conn = self._conns.get(cid)
        if conn is None or conn.closed:
            self.emit(EventKind.FAILED, f"{what}: no client {cid} (already closed)", conn=cid,
                      **failure_fields(errno.ENOTCONN))
            return
        fn(conn)

    def _timeout(self) -> float | None:
        return min(self.sample_interval, 0.5)

    def _update_listener(self) -> None:
        want = (self._listener is not None and self.mode != "no-accept" and time.monotonic() >= self._paused_until)
        if want and not self._listening_registered:
            self._sel.register(self._listener, selectors.EVENT_READ, "listen")
        elif not want and self._listening_registered:
            self._sel.unregister(self._listener)
        self._listening_registered = want

    def _do_set_mode(self, mode: str) -> None:
        old, self.mode = self.mode, mode
        self._update_listener()
        for conn in list(self._conns.values()):
            self._update(conn)
        self.emit(EventKind.INFO, f"mode {old} → {mode}")

    def _on_ready(self, key: selectors.SelectorKey, mask: int) -> None:
        if key.data == "listen":
            self._accept()
            return
        conn: _Conn = key.data
        if conn.closed:
            return
        if mask & selectors.EVENT_READ:
            self._read(conn)
        if mask & selectors.EVENT_WRITE and not conn.closed:
            self._flush(conn)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE/ENFILE/ENOBUFS: pause accepting rather than spin
                self.emit(EventKind.ERROR, "accept() failed; pausing accepts for 1 s", **failure_fields(exc.errno))
                self._paused_until = time.monotonic() + 1.0
                self._update_listener()
                return
            sock.setblocking(False)
            peer = tuple(peer[:2])
            local = tuple(sock.getsockname()[:2])
            cid = format_endpoint(*peer)
            conn = _Conn(sock, cid, peer, local)
            try:
                conn.options = read_options(sock)
            except SockmonError:
                conn.options = None
            with self._lock:
                self._conns[cid] = conn
            self.emit(EventKind.ACCEPTED, f"accept() → {cid} on {format_endpoint(*local)}", conn=cid,
                      options=conn.options, local=local, peer=peer)
            self._sample(conn)
            if self.mode == "close":
                self._close(conn, "close() on accept (mode close): FIN")
            elif self.mode == "reset":
                self._close(conn, "abort on accept (mode reset): linger 0 + close → RST", abort=True)
            else:
                self._update(conn)

    def _wants_read(self, conn: _Conn) -> bool:
        return (self.mode in READING_MODES and not conn.peer_closed and not conn.read_shut
                and len(conn.out) < self.max_pending)

    def _update(self, conn: _Conn) -> None:
        if conn.closed:
            return
        mask = (selectors.EVENT_READ if self._wants_read(conn) else 0) | (selectors.EVENT_WRITE if conn.out else 0)
        if mask == conn.mask:
            return
        if conn.mask == 0:
            self._sel.register(conn.sock, mask, conn)
        elif mask == 0:
            self._sel.unregister(conn.sock)
        else:
            self._sel.modify(conn.sock, mask, conn)
        conn.mask = mask

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            self.emit(EventKind.RESET, "recv(): RST from the peer", conn=conn.id, **failure_fields(errno.ECONNRESET))
            self._close(conn, "close() after reset")
            return
        except OSError as exc:
            self.emit(EventKind.ERROR, "recv() failed", conn=conn.id, **self._failure_fields(conn, exc.errno))
            self._close(conn, "close() after error")
            return
        if not data:
            conn.peer_closed = True
            self.emit(EventKind.PEER_CLOSED, "recv() returned 0: the peer sent FIN", conn=conn.id)
            self._sample(conn)
            if self.close_on_eof:
                if conn.out:
                    conn.close_after_flush = True
                else:
                    self._close(conn, "close() after the peer closed")
                    return
            self._update(conn)
            return
        conn.bytes_in += len(data)
        self.emit(EventKind.BYTES_IN, conn=conn.id, nbytes=len(data), data=data[:self.event_data_max])
        if self.mode == "echo":
            self._queue_send(conn, data)
        else:
            self._update(conn)

    def _queue_send(self, conn: _Conn, data: bytes) -> None:
        if conn.write_shut:
            self.emit(EventKind.FAILED, f"send({len(data)} bytes) after shutdown(SHUT_WR)", conn=conn.id,
                      **failure_fields(errno.EPIPE))
            return
        conn.out += data
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.out:
            try:
                n = conn.sock.send(conn.out, MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except (BrokenPipeError, ConnectionResetError) as exc:
                kind = EventKind.RESET if exc.errno == errno.ECONNRESET else EventKind.FAILED
                self.emit(kind, "send() failed", conn=conn.id, **failure_fields(exc.errno))
                self._close(conn, "close() after a failed send")
                return
            except OSError as exc:
                self.emit(EventKind.ERROR, "send() failed", conn=conn.id, **self._failure_fields(conn, exc.errno))
                self._close(conn, "close() after a failed send")
                return
            sent = bytes(conn.out[:min(n, self.event_data_max)])
            del conn.out[:n]
            conn.bytes_out += n
            self.emit(EventKind.BYTES_OUT, conn=conn.id, nbytes=n, data=sent)
        if not conn.out:
            if conn.shutdown_after_flush:
                conn.shutdown_after_flush = False
                self._do_shutdown(conn, socket.SHUT_WR)
            if conn.close_after_flush:
                self._close(conn, "close() after the peer closed")
                return
        self._update(conn)

    def _do_shutdown(self, conn: _Conn, code: int) -> None:
        name = lifecycle.HOW_NAMES[code]
        if code in (socket.SHUT_WR, socket.SHUT_RDWR) and conn.out and not conn.shutdown_after_flush:
            # our queued output goes first; the FIN follows it
            conn.shutdown_after_flush = True
            if code == socket.SHUT_WR:
                self.emit(EventKind.INFO, f"shutdown({name}) waits for {len(conn.out)} queued bytes", conn=conn.id)
                return
            code, name = socket.SHUT_RD, "SHUT_RD"
        self.emit(EventKind.CALL, f"shutdown({name})", conn=conn.id)
        try:
            conn.sock.shutdown(code)
        except OSError as exc:
            self.emit(EventKind.FAILED, f"shutdown({name})", conn=conn.id, **failure_fields(exc.errno))
            return
        if code in (socket.SHUT_RD, socket.SHUT_RDWR):
            conn.read_shut = True
        if code in (socket.SHUT_WR, socket.SHUT_RDWR):
            conn.write_shut = True
        self.emit(EventKind.RETURNED, f"shutdown({name})", conn=conn.id)
        self._sample(conn)
        self._update(conn)

    def _close(self, conn: _Conn, how: str, *, abort: bool = False) -> None:
        """Close one client; a lingering close (SO_LINGER N > 0) runs in a background thread."""
        if conn.closed:
            return
        self._sample(conn)
        self.emit(EventKind.CALL, how + (f" ({len(conn.out)} unsent bytes dropped)" if conn.out else ""),
                  conn=conn.id)
        if conn.mask:
            self._sel.unregister(conn.sock)
            conn.mask = 0
        with self._lock:
            conn.closed = True
            self._conns.pop(conn.id, None)
            if abort:
                try:
                    _set_linger(conn.sock, Linger.ABORT)
                except SockmonError as exc:
                    self.queue_event(EventKind.FAILED, "setsockopt(SO_LINGER, on, 0)", conn=conn.id,
                                     **failure_fields(exc.errno))
            elif lifecycle.lingers(conn.sock):
                cid = conn.id

                sock = conn.sock

                def work() -> None:
                    seconds, err = lifecycle.timed_close(sock)
                    if err is not None:
                        self.queue_event(EventKind.FAILED, "close()", conn=cid,
                                         **failure_fields(getattr(err, "errno", None)))
                    self.queue_event(EventKind.CLOSED, f"lingering close() returned after {seconds:.2f} s",
                                     conn=cid)

                self.run_in_background(work)
                return
            conn.sock.close()
        self.emit(EventKind.CLOSED, "RST sent" if abort else "fd closed", conn=conn.id)

    def _sample(self, conn: _Conn) -> None:
        try:
            info = read_tcp_info(conn.sock)
        except OSError:
            return
        st = state_name(info.state)
        conn.unacked = info.unacked
        if st != conn.state:
            conn.state = st
            self.emit(EventKind.STATE, conn=conn.id, state=st)

    def _check_overflow(self) -> None:
        """Once a second: did the accept queue drop connections since the last look? One INFO line saying
        how many (the listener's own sk_drops; the namespace's ListenOverflows alongside), and the queue."""
        queue = self.accept_queue()
        overflows = listen_overflows()
        if queue is None:
            return
        drops, self._drops_seen = (None if queue.drops is None or self._drops_seen is None
                                   else queue.drops - self._drops_seen), queue.drops
        ns_delta, self._overflows_seen = (None if overflows is None or self._overflows_seen is None
                                          else overflows - self._overflows_seen), overflows
        if not drops and not (queue.drops is None and ns_delta):  # sk_drops unreadable: the namespace's count
            return
        said = (f"{drops} connection attempts dropped by this listener" if drops
                else "connection attempts dropped in this namespace")
        ns = f"; ListenOverflows +{ns_delta} in the namespace" if ns_delta else ""
        self.emit(EventKind.ERROR, f"accept queue overflow: {said} in the last {OVERFLOW_CHECK:g} s "
                  f"(queue {queue.queued}/{queue.backlog}{ns}): raise the backlog (and net.core.somaxconn) "
                  "or accept faster")

    def _tick(self) -> None:
        now = time.monotonic()
        if self._listener is not None and now >= self._next_overflow_check:
            self._next_overflow_check = now + OVERFLOW_CHECK
            self._check_overflow()
        if self._paused_until and now >= self._paused_until:
            self._paused_until = 0.0
            self._update_listener()
        if now >= self._next_sample:
            self._next_sample = now + self.sample_interval
            for conn in list(self._conns.values()):
                if not conn.closed:
                    self._sample(conn)
                if not conn.closed:
                    self.reread_options(conn.sock, conn.options, lambda o, c=conn: setattr(c, "options", o),
                                        conn=conn.id, local=conn.local, peer=conn.peer)

    def _teardown(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn, "close() (server stopping)")
        if self._listener is not None:
            if self._listening_registered:
                self._sel.unregister(self._listener)
                self._listening_registered = False
            with self._lock:
                self._listener.close()
            self.emit(EventKind.CLOSED, f"listener {format_endpoint(*self._address)} closed")
        self.emit(EventKind.INFO, "server stopped")
