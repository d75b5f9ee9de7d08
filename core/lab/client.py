"""The client engine: one TCP connection driven through its whole life, in its own thread.

``connect`` returns at once; resolution and the non-blocking connect (EINPROGRESS → writable →
SO_ERROR, trying each getaddrinfo address in turn, one overall timeout) run in the engine thread.
The timeline samples TCP_INFO right after each call and every ``sample_interval`` seconds and emits a
STATE event whenever the kernel state changes (SYN_SENT → ESTABLISHED → FIN_WAIT1 → FIN_WAIT2 ...).

Threading: ``connect``/``send``/``send_framed``/``shutdown``/``graceful_close``/``close``/``abort`` queue
a command and return None immediately; failures arrive as FAILED/ERROR/RESET events. Option setters
(``set_linger``, ``set_keepalive``, ``set_nodelay``, ``set_user_timeout``, ``set_buffers``) are engine
commands too: they return a Future of the value read back from the kernel (None when there is no
socket), and the OPTION event carries every option read back (``Event.options``). The engine re-reads the
options at each sample, so a change made by anyone else (another process through pidfd_getfd, sockmon's
options screen) arrives as an OPTION event too; ``options()`` returns the newest read without a syscall.
Bad values raise BadInput at once. Every event is delivered from the engine thread.

The connect timeout measures the kernel's connect only: its clock starts at the connect() call, and
before a timeout is declared SO_ERROR and the state are read once more (a handshake that completed is a
success, never a timeout). An ETIMEDOUT on an established connection is explained from its options
(keepalive gave up after CNT unanswered probes, or retransmissions / TCP_USER_TIMEOUT gave up).
"""

from __future__ import annotations

import errno
import fcntl
import selectors
import socket
import termios
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab import lifecycle
from sockmon.core.lab import options as opts
from sockmon.core.lab.address import format_endpoint, parse_port, resolve
from sockmon.core.lab.engine import EngineLoop, OnEvent, failure_fields, socket_failure_fields
from sockmon.core.lab.events import EventKind
from sockmon.core.lab.framing import encode_frame
from sockmon.core.lab.options import Keepalive, Linger, SocketOptions
from sockmon.core.lab.sockaddr import SockaddrField, sockaddr_fields
from sockmon.core.lab.sockio import MSG_NOSIGNAL
from sockmon.core.states import state_name
from sockmon.core.tcpinfo import TcpInfo, read_tcp_info

CONN = "client"
RECV_SIZE = 65536
EVENT_DATA_MAX = 4096  # BYTES_IN / BYTES_OUT events carry at most this much of the data (by default)
_FIN_PENDING_STATES = ("FIN_WAIT1", "CLOSING", "LAST_ACK")  # our FIN is sent or queued, not yet acked


def kernel_unacked_bytes(sock: socket.socket) -> int | None:
    """Bytes in the kernel's send queue not yet acknowledged by the peer (SIOCOUTQ: sent-but-unacked plus
    not-yet-sent), without a FIN of ours that is still unacknowledged; None when it cannot be read."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # TIOCOUTQ == SIOCOUTQ
        outq = int.from_bytes(raw, "little", signed=True)
        if outq > 0 and state_name(read_tcp_info(sock).state) in _FIN_PENDING_STATES:
            outq -= 1  # the FIN takes one sequence number in the queue
    except OSError:
        return None
    return max(0, outq)


class ClientEngine(EngineLoop):
    name = "sockmon-client"

    def __init__(self, on_event: OnEvent | None = None, *, sample_interval: float = 0.2,
                 max_received: int = 65536, graceful_timeout: float = 5.0, netns: str | None = None,
                 event_data_max: int = EVENT_DATA_MAX,
                 before_connect: Callable[[socket.socket, int, tuple], str | None] | None = None) -> None:
        """``event_data_max``: how many bytes of each send/receive a BYTES_IN / BYTES_OUT event carries (the
        headless CLI prints every byte: it passes RECV_SIZE or more).

        ``before_connect(sock, family, sockaddr)``: called in the engine thread (its network namespace)
        for each new socket just before connect(), e.g. to bind it and start a packet capture that
        catches the SYN (`sockmon.core.lab.ladder.LadderHook`); the text it returns (or the text of
        what it raises) becomes an INFO event, and connect() goes ahead either way."""
        super().__init__(on_event, netns=netns)
        if not 0 < sample_interval <= 60:
            raise BadInput(f"bad sample interval {sample_interval}: use more than 0 and at most 60 s")
        self.sample_interval = sample_interval
        self.max_received = max_received
        self.graceful_timeout = graceful_timeout
        self.event_data_max = event_data_max
        self.before_connect = before_connect
        # bytes handed to send() but not delivered to the peer's kernel when the last connection's fd was
        # closed (the engine's queue + the kernel's unacknowledged send queue); None before any close
        self.undelivered: int | None = None
        self._room = threading.Condition(threading.Lock())  # notified when the engine's send queue drains
        self._posted = 0  # bytes of send commands queued, not yet run by the engine thread (under _room)
        self._sock: socket.socket | None = None
        self._phase = "idle"  # idle | connecting | connected | closing | closed
        self._addrs: list[tuple[int, tuple]] = []
        self._where = ""
        self._target = ""
        self._deadline = 0.0
        self._connect_timeout = 0.0
        self._budget = 0.0  # connect timeout left for the remaining addresses (time inside connect only)
        self._connect_started = 0.0
        self._options: SocketOptions | None = None  # newest read, engine thread only writes it
        self._unacked = 0  # tcp_info unacked at the last sample
        self.last_received_at: float | None = None  # monotonic; from tcp_info at the newest sample
        self._close_deadline: float | None = None
        self._out = bytearray()
        self._mask = 0
        self._read_shut = self._write_shut = self._peer_closed = False
        self._shutdown_after_flush = False
        self._state: str | None = None
        self._local: tuple[str, int] | None = None
        self._peer: tuple[str, int] | None = None
        self._family = socket.AF_INET
        self._received = bytearray()
        self._connect_ok = False
        self._reset_by_peer = False  # a RESET ended the latest connection (set by emit)
        self._settled = threading.Event()
        self._settled.set()
        self._closed = threading.Event()
        self._closed.set()
        self._next_sample = 0.0
        self._start_thread()

    # -- read-only views (any thread) -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """The handshake completed and our fd is open (also true while a graceful close drains)."""
        return self._phase in ("connected", "closing")

    @property
    def open(self) -> bool:
        """We hold a socket (connecting, connected or closing)."""
        return self._sock is not None

    @property
    def state(self) -> str | None:
        """The last kernel state observed (TCP_INFO) while we held the fd."""
        return self._state

    @property
    def local(self) -> tuple[str, int] | None:
        return self._local

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._peer

    @property
    def received(self) -> bytes:
        """The last ``max_received`` bytes received on the current/last connection."""
        with self._lock:
            return bytes(self._received)

    @property
    def pending_out(self) -> int:
        """Bytes given to ``send`` that the kernel has not taken yet (queued commands, then the engine's
        buffer while the kernel's send buffer is full)."""
        return self._posted + len(self._out)

    def wait_send_room(self, limit: int, timeout: float | None = None) -> bool:
        """Wait until at most ``limit`` bytes are queued in the engine (or the connection ended): lets a
        caller stream a large input with bounded memory. False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._room:
            while self._posted + len(self._out) > limit and self._sock is not None and not self._stopping:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._room.wait(0.5 if left is None else min(left, 0.5))
        return True

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait until the last ``connect`` succeeded or failed; True if it succeeded."""
        self._settled.wait(timeout)
        return self._connect_ok

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until we hold no socket (closed, lingering close done, or connect failed)."""
        return self._closed.wait(timeout)

    def tcp_info(self) -> TcpInfo | None:
        with self._lock:
            if self._sock is None:
                return None
            try:
                return read_tcp_info(self._sock)
            except OSError:
                return None

    def options(self) -> SocketOptions | None:
        """The options as the engine thread last read them from the kernel (no syscall, no lock)."""
        return self._options if self._sock is not None else None

    def sockaddr(self, *, peer: bool = False) -> list[SockaddrField] | None:
        """The local (or peer) address as the kernel's sockaddr bytes, field by field."""
        addr = self._peer if peer else self._local
        return sockaddr_fields(self._family, addr[0], addr[1]) if addr else None

    # -- commands (any thread; queued, return at once) --------------------------------------------------
    def connect(self, host: str, port: int | str, timeout: float = 5.0, *, numeric: bool = False) -> None:
        """``numeric`` (like ``nc -n``): never look a name up; a host that is not an address fails."""
        port = parse_port(port)
        if not host or not str(host).strip():
            raise BadInput("empty host (use e.g. 127.0.0.1)")
        if not 0 < timeout <= 3600:
            raise BadInput(f"bad connect timeout {timeout}: use more than 0 and at most 3600 s")
        if self._stopping:
            raise SockmonError("this client engine is stopped; make a new one")
        with self._lock:
            if self._sock is None and self._settled.is_set():
                self._connect_ok = False
                self._settled.clear()
                self._closed.clear()
        self.post(lambda: self._do_connect(str(host).strip(), port, timeout, numeric))

    def send(self, data: bytes) -> None:
        data = bytes(data)
        with self._room:
            self._posted += len(data)
        if not self.post(lambda: self._do_send(data)):
            with self._room:
                self._posted -= len(data)

    def send_framed(self, payload: bytes) -> None:
        self.send(encode_frame(bytes(payload)))

    def shutdown(self, how: str) -> None:
        code = lifecycle.parse_how(how)
        self.post(lambda: self._do_shutdown(code))

    def graceful_close(self, timeout: float | None = None) -> None:
        """shutdown(SHUT_WR), keep reading until the peer's FIN (or ``timeout``), then close."""
        limit = self.graceful_timeout if timeout is None else timeout
        self.post(lambda: self._do_graceful(limit))

    def close(self) -> None:
        """Plain close(); with SO_LINGER N > 0 it runs in a background thread (CLOSED when it returns)."""
        self.post(lambda: self._do_close("close()"))

    def abort(self) -> None:
        """SO_LINGER on, 0 s, then close: RST, no TIME_WAIT."""
        self.post(lambda: self._do_close("abort: setsockopt(SO_LINGER, on, 0) + close() → RST", abort=True))

    # -- option setters (any thread; engine commands, a Future of the value read back) -----------------
    def set_linger(self, linger: Linger) -> Future:
        return self._option("SO_LINGER", lambda s: opts.set_linger(s, linger))

    def set_keepalive(self, keepalive: Keepalive) -> Future:
        return self._option("SO_KEEPALIVE", lambda s: opts.set_keepalive(s, keepalive))

    def set_nodelay(self, on: bool) -> Future:
        return self._option("TCP_NODELAY", lambda s: opts.set_nodelay(s, on))

    def set_user_timeout(self, ms: int) -> Future:
        if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= 2**31 - 1:
            raise BadInput(f"bad user timeout {ms!r}: use 0-2147483647 ms")
        return self._option("TCP_USER_TIMEOUT", lambda s: opts.set_user_timeout(s, ms))

    def set_buffers(self, rcvbuf: int | None = None, sndbuf: int | None = None) -> Future:
        for name, value in (("rcvbuf", rcvbuf), ("sndbuf", sndbuf)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 < value <= 2**30):
                raise BadInput(f"bad {name} {value!r}: use 1-{2**30} bytes")
        return self._option("SO_RCVBUF/SO_SNDBUF", lambda s: opts.set_buffers(s, rcvbuf, sndbuf))

    def _option(self, what: str, fn: Callable[[socket.socket], object]) -> Future:
        return self.call(lambda: self._do_option(what, fn))

    def _do_option(self, what: str, fn: Callable[[socket.socket], object]):
        sock = self._sock
        if sock is None:
            self.emit(EventKind.FAILED, f"setsockopt({what}): not connected", conn=CONN,
                      **failure_fields(errno.ENOTCONN))
            return None
        try:
            value = fn(sock)
            self._options = opts.read_options(sock)
        except SockmonError as exc:
            self.emit(EventKind.FAILED, f"setsockopt({what})", conn=CONN, **failure_fields(exc.errno))
            return None
        detail = f"{what}: {value}" if what in ("TCP_NODELAY", "TCP_USER_TIMEOUT", "SO_RCVBUF/SO_SNDBUF") \
            else str(value)
        self.emit(EventKind.OPTION, detail, conn=CONN, options=self._options)
        self._sample()
        return value

    # -- engine thread ----------------------------------------------------------------------------------
    def _timeout(self) -> float | None:
        if self._sock is None:
            return 1.0
        now = time.monotonic()
        t = max(0.0, self._next_sample - now)
        if self._phase == "connecting":
            t = min(t, max(0.0, self._deadline - now))
        if self._close_deadline is not None:
            t = min(t, max(0.0, self._close_deadline - now))
        return t

    def _do_connect(self, host: str, port: int, timeout: float, numeric: bool = False) -> None:
        if self._sock is not None:
            self.emit(EventKind.FAILED, "connect(): this engine already holds a socket; close it first", conn=CONN,
                      **failure_fields(errno.EISCONN))
            return
        self._target = format_endpoint(host, port)
        self._reset_by_peer = False
        self.undelivered = None
        self.emit(EventKind.CALL, f"getaddrinfo({host}, {port})", conn=CONN)
        try:
            addrs = resolve(host, port, numeric=numeric)
        except BadInput as exc:
            self.emit(EventKind.FAILED, f"getaddrinfo({host})", conn=CONN,
                      errno_name=getattr(exc, "gai_name", "EAI_FAIL"), meaning=str(exc),
                      action="give a numeric address" if numeric else "check the host name")
            self._connect_failed()
            return
        self.emit(EventKind.RETURNED, "getaddrinfo → " + ", ".join(a[1][0] for a in addrs), conn=CONN)
        self._addrs = list(addrs)
        self._connect_timeout = timeout
        self._budget = timeout
        with self._lock:
            self._received.clear()
        self._try_next()

    def _try_next(self) -> None:
        while self._addrs:
            family, sockaddr = self._addrs.pop(0)
            self._where = format_endpoint(sockaddr[0], sockaddr[1])
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            with self._lock:
                self._sock = sock
                self._family = family
                self._phase = "connecting"
                self._out.clear()
                self._read_shut = self._write_shut = self._peer_closed = False
                self._shutdown_after_flush = False
                self._close_deadline = None
                self._state = None
                self._local = self._peer = None
            if self.before_connect is not None:
                try:
                    note = self.before_connect(sock, family, sockaddr)
                except Exception as exc:  # noqa: BLE001 - a hook's failure must not stop the connect
                    note = str(exc) or type(exc).__name__
                if note:
                    self.emit(EventKind.INFO, note, conn=CONN)
            self.emit(EventKind.CALL, f"connect({self._where})", conn=CONN)
            self._connect_started = time.monotonic()  # the timeout measures the kernel's connect only
            self._deadline = self._connect_started + self._budget
            err = sock.connect_ex(sockaddr)
            if err == 0:
                self._connected_ok()
                return
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EINTR):
                self._local = tuple(sock.getsockname()[:2])
                self.emit(EventKind.INFO, f"connect() = -1 EINPROGRESS from {format_endpoint(*self._local)}: "
                          "handshake under way, waiting for writability", conn=CONN)
                self._set_mask(selectors.EVENT_WRITE)
                self._sample()
                return
            self.emit(EventKind.FAILED, f"connect({self._where})", conn=CONN, **failure_fields(err))
            self._drop_socket()
        self._connect_failed()

    def _connect_result(self) -> None:
        self._connect_result_with(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _connect_result_with(self, err: int) -> None:
        self._budget = max(0.0, self._budget - (time.monotonic() - self._connect_started))
        if err == 0:
            self._connected_ok()
            return
        self._sample()
        if err == errno.ECONNRESET:  # the handshake completed, then an RST arrived before we looked
            self.emit(EventKind.RESET, f"connect({self._where}): connected, then reset by the peer", conn=CONN,
                      **failure_fields(err))
        else:
            self.emit(EventKind.FAILED, f"connect({self._where}): SO_ERROR", conn=CONN, **failure_fields(err))
        self._drop_socket()
        self._try_next()

    def _connected_ok(self) -> None:
        sock = self._sock
        try:
            local = tuple(sock.getsockname()[:2])
            peer = tuple(sock.getpeername()[:2])
        except OSError:  # ENOTCONN: the handshake completed but an RST already ended it
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or errno.ECONNRESET
            self._sample()
            self.emit(EventKind.RESET, f"connect({self._where}): connected, then reset by the peer", conn=CONN,
                      **failure_fields(err))
            self._drop_socket()
            self._addrs = []
            self._connect_failed()
            return
        self._phase = "connected"
        self._local, self._peer = local, peer
        self._addrs = []
        try:
            self._options = opts.read_options(sock)
        except SockmonError:
            self._options = None
        self.emit(EventKind.RETURNED, f"connect({self._where}) from {format_endpoint(*self._local)}", conn=CONN,
                  options=self._options, local=local, peer=peer)
        self._sample()
        self._connect_ok = True
        self._settled.set()
        self._update_mask()

    def _connect_failed(self) -> None:
        self._phase = "idle"
        self._connect_ok = False
        self._settled.set()
        self._closed.set()

    def _drop_socket(self) -> None:
        """Forget a socket whose connect failed (no CLOSED event: it never carried a connection)."""
        self._set_mask(0)
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _set_mask(self, mask: int) -> None:
        if mask == self._mask:
            return
        if self._mask == 0:
            self._sel.register(self._sock, mask, "sock")
        elif mask == 0:
            self._sel.unregister(self._sock)
        else:
            self._sel.modify(self._sock, mask, "sock")
        self._mask = mask

    def _update_mask(self) -> None:
        if self._sock is None:
            return
        if self._phase == "connecting":
            self._set_mask(selectors.EVENT_WRITE)
            return
        read = not self._peer_closed and not self._read_shut
        self._set_mask((selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if self._out else 0))

    def _on_ready(self, key: selectors.SelectorKey, mask: int) -> None:
        if self._sock is None:
            return
        if self._phase == "connecting":
            if mask & selectors.EVENT_WRITE:
                self._connect_result()
            return
        if mask & selectors.EVENT_READ:
            self._read()
        if mask & selectors.EVENT_WRITE and self._sock is not None:
            self._flush()

    def _read(self) -> None:
        try:
            data = self._sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            self.emit(EventKind.RESET, "recv(): RST from the peer", conn=CONN, **failure_fields(errno.ECONNRESET))
            self._finish_close("close() after the reset")
            return
        except OSError as exc:
            self.emit(EventKind.ERROR, "recv() failed", conn=CONN, **self._failure_fields(exc.errno))
            self._finish_close("close() after the error")
            return
        if not data:
            self._peer_closed = True
            self.emit(EventKind.PEER_CLOSED, "recv() returned 0: the peer sent FIN", conn=CONN)
            self._sample()
            if self._phase == "closing":
                self._finish_close("close() after the peer's FIN")
                return
            self._update_mask()
            return
        with self._lock:
            self._received += data
            if len(self._received) > self.max_received:
                del self._received[:len(self._received) - self.max_received]
        self.emit(EventKind.BYTES_IN, conn=CONN, nbytes=len(data), data=data[:self.event_data_max])

    def _failure_fields(self, code: int | None) -> dict:
        return socket_failure_fields(code, self._sock, self._options, self._unacked)

    def _not_connected(self, what: str) -> bool:
        if self._sock is None or self._phase not in ("connected", "closing"):
            if self._reset_by_peer:  # a command that was queued before the peer's RST ended the connection
                self.emit(EventKind.FAILED, f"{what}: the peer had reset the connection", conn=CONN,
                          **failure_fields(errno.ECONNRESET))
            else:
                self.emit(EventKind.FAILED, f"{what}: not connected", conn=CONN, **failure_fields(errno.ENOTCONN))
            return True
        return False

    def emit(self, kind: EventKind, detail: str = "", **kw) -> None:
        if kind is EventKind.RESET:
            self._reset_by_peer = True  # until the next connect(): later commands say why they cannot run
        super().emit(kind, detail, **kw)

    def _do_send(self, data: bytes) -> None:
        with self._room:
            self._posted -= len(data)
        what = f"send({len(data)} bytes)"
        if self._not_connected(what):
            return
        if self._write_shut or self._shutdown_after_flush:
            self.emit(EventKind.FAILED, f"{what} after shutdown(SHUT_WR)", conn=CONN, **failure_fields(errno.EPIPE))
            return
        self.emit(EventKind.CALL, what, conn=CONN)
        self._out += data
        self._flush()
        self._sample()

    def _flush(self) -> None:
        while self._out:
            try:
                n = self._sock.send(self._out, MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionResetError:
                self.emit(EventKind.RESET, "send(): RST from the peer", conn=CONN, **failure_fields(errno.ECONNRESET))
                self._finish_close("close() after the reset")
                return
            except OSError as exc:
                if exc.errno == errno.EPIPE and self._peer_reset("send()"):
                    return
                self.emit(EventKind.FAILED, f"send(): {len(self._out)} bytes not sent", conn=CONN,
                          **self._failure_fields(exc.errno))
                self._out.clear()
                break
            sent = bytes(self._out[:min(n, self.event_data_max)])
            del self._out[:n]
            self.emit(EventKind.BYTES_OUT, conn=CONN, nbytes=n, data=sent)
        self._notify_room()
        if not self._out and self._shutdown_after_flush:
            self._shutdown_after_flush = False
            self._do_shutdown(socket.SHUT_WR)
        self._update_mask()

    def _do_shutdown(self, code: int) -> None:
        name = lifecycle.HOW_NAMES[code]
        if self._not_connected(f"shutdown({name})"):
            return
        if code in (socket.SHUT_WR, socket.SHUT_RDWR) and self._out:
            self._shutdown_after_flush = True  # queued output first, then the FIN
            self.emit(EventKind.INFO, f"shutdown(SHUT_WR) waits for {len(self._out)} queued bytes", conn=CONN)
            if code == socket.SHUT_WR:
                return
            code, name = socket.SHUT_RD, "SHUT_RD"
        self.emit(EventKind.CALL, f"shutdown({name})", conn=CONN)
        try:
            self._sock.shutdown(code)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN and self._peer_reset(f"shutdown({name})"):
                return
            self.emit(EventKind.FAILED, f"shutdown({name})", conn=CONN, **failure_fields(exc.errno))
            return
        if code in (socket.SHUT_RD, socket.SHUT_RDWR):
            self._read_shut = True
        if code in (socket.SHUT_WR, socket.SHUT_RDWR):
            self._write_shut = True
        self.emit(EventKind.RETURNED, f"shutdown({name})", conn=CONN)
        self._sample()
        self._update_mask()

    def _notify_room(self) -> None:
        with self._room:
            self._room.notify_all()

    def _peer_reset(self, what: str) -> bool:
        """A call failed with ENOTCONN / EPIPE on a connection we still hold: if the kernel has closed it
        because the peer reset it (typically: the peer closed at once, our data after its FIN drew its
        RST; the kernel records EPIPE for an RST in CLOSE_WAIT), report that RESET and close. False when
        the socket is not in that case (the caller reports its own failure)."""
        sock = self._sock
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            kernel_state = state_name(read_tcp_info(sock).state)
        except OSError:
            return False
        if kernel_state != "CLOSE":
            return False
        why = ("the peer had closed (FIN) and reset the connection when our data arrived"
               if self._peer_closed else "the peer reset the connection")
        self._state = "CLOSE"
        self.emit(EventKind.STATE, "kernel state after the peer's RST", conn=CONN, state="CLOSE")
        fields = failure_fields(errno.ECONNRESET)
        self.emit(EventKind.RESET, f"{what}: {why}" + (f" (SO_ERROR {errno.errorcode.get(err, err)})" if err else ""),
                  conn=CONN, **fields)
        self._finish_close("close() after the reset")
        return True

    def _do_graceful(self, timeout: float) -> None:
        if self._sock is not None and self._phase == "connecting":
            self._do_close("close() (graceful close while connecting)")
            return
        if self._not_connected("graceful close"):
            return
        self._phase = "closing"
        self._close_deadline = time.monotonic() + timeout
        self.emit(EventKind.INFO, f"graceful close: shutdown(SHUT_WR), read to EOF (≤ {timeout:g} s), close()",
                  conn=CONN)
        if not self._write_shut and not self._shutdown_after_flush:
            self._do_shutdown(socket.SHUT_WR)
        if self._sock is not None and (self._peer_closed or self._read_shut):
            self._finish_close("close()")

    def _do_close(self, how: str, *, abort: bool = False) -> None:
        if self._sock is None:
            self.emit(EventKind.FAILED, f"{how.split(':')[0]}: not connected", conn=CONN,
                      **failure_fields(errno.ENOTCONN))
            return
        self._finish_close(how, abort=abort)

    def _finish_close(self, how: str, *, abort: bool = False) -> None:
        if self._sock is None:
            return
        self._sample()
        dropped = f" ({len(self._out)} unsent bytes dropped)" if self._out else ""
        in_kernel = kernel_unacked_bytes(self._sock) or 0
        self.undelivered = len(self._out) + in_kernel
        if self.undelivered:
            parts = [f"{in_kernel} in the kernel's send queue, unacknowledged"] if in_kernel else []
            if self._out:
                parts.append(f"{len(self._out)} never handed to the kernel")
            self.emit(EventKind.INFO, f"{self.undelivered} bytes sent were not delivered to the peer's kernel "
                      f"before close ({', '.join(parts)})", conn=CONN, nbytes=self.undelivered)
        self.emit(EventKind.CALL, how + dropped, conn=CONN)
        self._set_mask(0)
        with self._lock:
            sock, self._sock = self._sock, None
            self._options = None
            self._phase = "closed"
            self._out.clear()
            self._close_deadline = None
            self._addrs = []
            if abort:
                try:
                    opts.set_linger(sock, Linger.ABORT)
                except SockmonError as exc:
                    self.queue_event(EventKind.FAILED, "setsockopt(SO_LINGER, on, 0)", conn=CONN,
                                     **failure_fields(exc.errno))
            lingering = not abort and lifecycle.lingers(sock)
        self._settled.set()
        self._notify_room()
        if lingering:
            def work() -> None:
                seconds, err = lifecycle.timed_close(sock)
                if err is not None:
                    self.queue_event(EventKind.FAILED, "close()", conn=CONN, **failure_fields(err.errno))
                self.queue_event(EventKind.CLOSED, f"lingering close() returned after {seconds:.2f} s", conn=CONN)
                self._closed.set()

            self.emit(EventKind.INFO, "SO_LINGER on: close() may block; running it off the engine thread",
                      conn=CONN)
            self.run_in_background(work)
            return
        sock.close()
        self.emit(EventKind.CLOSED, "RST sent, no TIME_WAIT" if abort else "fd closed", conn=CONN)
        self._closed.set()

    def _sample(self) -> None:
        with self._lock:
            sock = self._sock
            if sock is None:
                return
            try:
                info = read_tcp_info(sock)
            except OSError:
                return
        self._next_sample = time.monotonic() + self.sample_interval
        self._unacked = info.unacked
        # when the last segment arrived (data or ACK): the keepalive timer's idle clock starts there
        self.last_received_at = time.monotonic() - min(info.last_data_recv, info.last_ack_recv) / 1000.0
        if self._phase in ("connected", "closing"):
            self.reread_options(sock, self._options, lambda o: setattr(self, "_options", o), conn=CONN)
        name = state_name(info.state)
        if name != self._state:
            self._state = name
            self.emit(EventKind.STATE, f"rtt {info.rtt / 1000:.3f} ms, cwnd {info.snd_cwnd}, "
                      f"retrans {info.total_retrans}, unacked {info.unacked}", conn=CONN, state=name)

    def _tick(self) -> None:
        now = time.monotonic()
        if self._sock is None:
            return
        if self._phase == "connecting" and now >= self._deadline:
            # Before declaring a timeout, ask the kernel once more: the handshake may have completed
            # (or failed) after the last select round.
            err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            try:
                kernel_state = state_name(read_tcp_info(self._sock).state)
            except OSError:
                kernel_state = None
            if err or kernel_state not in ("SYN_SENT", None):
                if err:  # reading SO_ERROR cleared it: hand it on
                    self._connect_result_with(err)
                else:
                    self._connect_result()
                return
            self._sample()
            self.emit(EventKind.FAILED, f"connect({self._where}) timed out after {self._connect_timeout:g} s "
                      "(kernel still in SYN_SENT: no SYN-ACK arrived)", conn=CONN,
                      **failure_fields(errno.ETIMEDOUT))
            self._addrs = []
            self._drop_socket()
            self._connect_failed()
            return
        if self._close_deadline is not None and now >= self._close_deadline:
            self.emit(EventKind.INFO, "graceful close: the peer did not close in time", conn=CONN)
            self._finish_close("close() (graceful close timed out)")
            return
        if now >= self._next_sample:
            self._sample()

    def _teardown(self) -> None:
        if self._sock is not None:
            if self._phase == "connecting":
                self._drop_socket()
                self._connect_failed()
            else:
                self._finish_close("close() (engine stopping)")
