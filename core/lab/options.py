"""Socket options as one small typed API. Every value is read back from the kernel (getsockopt).

SO_LINGER (off / abort = on,0 / N seconds), SO_KEEPALIVE + TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT,
TCP_USER_TIMEOUT, SO_REUSEADDR, TCP_NODELAY, SO_RCVBUF/SO_SNDBUF. Setters return what the kernel
reports after the change (e.g. Linux doubles buffer sizes); bad values raise BadInput.
"""

from __future__ import annotations

import math
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sockmon.core.errors import BadInput, SockmonError

_LINGER = struct.Struct("ii")
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
MAX_KEEPIDLE = 32767  # MAX_TCP_KEEPIDLE
MAX_KEEPINTVL = 32767  # MAX_TCP_KEEPINTVL
MAX_KEEPCNT = 127  # MAX_TCP_KEEPCNT
MAX_LINGER = 32767  # any larger value is clamped by nobody sensible; keep it well inside int
SYSCTL_DIR = Path("/proc/sys/net/ipv4")


def _int(text: str, what: str) -> int:
    raw = text.strip()
    if not raw or not (raw.isascii() and raw.lstrip("-").isdigit()):
        raise BadInput(f"bad {what} {text!r}: not a whole number")
    return int(raw)


@dataclass(frozen=True, slots=True)
class Linger:
    """SO_LINGER: off (close returns at once), on with 0 (close sends RST), on with N (close blocks ≤ N s)."""

    enabled: bool
    seconds: int = 0

    OFF: ClassVar[Linger]
    ABORT: ClassVar[Linger]

    def __post_init__(self) -> None:
        if not 0 <= self.seconds <= MAX_LINGER:
            raise BadInput(f"bad linger {self.seconds}: use 0-{MAX_LINGER} seconds")

    @classmethod
    def off(cls) -> Linger:
        return cls(False, 0)

    @classmethod
    def abort(cls) -> Linger:
        return cls(True, 0)

    @classmethod
    def after(cls, seconds: int) -> Linger:
        return cls(True, int(seconds))

    @classmethod
    def parse(cls, text: str) -> Linger:
        """``off`` | ``0`` (abort: RST on close) | ``N`` seconds."""
        raw = str(text).strip().lower()
        if raw in ("off", "no", "none"):
            return cls.off()
        if raw in ("abort", "rst"):
            return cls.abort()
        return cls.after(_int(raw, "linger"))

    @property
    def is_abort(self) -> bool:
        return self.enabled and self.seconds == 0

    def __str__(self) -> str:
        if not self.enabled:
            return "linger off"
        return "linger on, 0 s (close sends RST)" if self.seconds == 0 else f"linger on, {self.seconds} s"


Linger.OFF = Linger(False, 0)
Linger.ABORT = Linger(True, 0)


@dataclass(frozen=True, slots=True)
class Keepalive:
    """SO_KEEPALIVE with its three timers; a dead peer is noticed after ``idle + intvl × cnt`` seconds."""

    enabled: bool
    idle: int = 7200
    intvl: int = 75
    cnt: int = 9

    def __post_init__(self) -> None:
        for name, value, top in (("idle", self.idle, MAX_KEEPIDLE), ("intvl", self.intvl, MAX_KEEPINTVL),
                                 ("cnt", self.cnt, MAX_KEEPCNT)):
            if not 1 <= value <= top:
                raise BadInput(f"bad keepalive {name} {value}: use 1-{top}")

    @property
    def dead_peer_seconds(self) -> int:
        return self.idle + self.intvl * self.cnt

    @classmethod
    def parse(cls, text: str) -> Keepalive:
        """``IDLE,INTVL,CNT`` (seconds, seconds, probes) → enabled keepalive; ``off`` → disabled."""
        raw = str(text).strip()
        if raw.lower() == "off":
            return cls(False)
        parts = raw.split(",")
        if len(parts) != 3:
            raise BadInput(f"bad keepalive {text!r}: expected IDLE,INTVL,CNT e.g. 60,10,3")
        idle, intvl, cnt = (_int(p, "keepalive value") for p in parts)
        return cls(True, idle, intvl, cnt)

    def __str__(self) -> str:
        state = "on" if self.enabled else "off"
        return (f"keepalive {state} idle={self.idle}s intvl={self.intvl}s cnt={self.cnt} "
                f"(dead peer after {self.dead_peer_seconds}s)")


@dataclass(frozen=True, slots=True)
class SocketOptions:
    linger: Linger
    keepalive: Keepalive
    user_timeout_ms: int
    reuseaddr: bool
    nodelay: bool
    rcvbuf: int
    sndbuf: int


def _wrap(exc: OSError, doing: str) -> SockmonError:
    return SockmonError.from_os_error(exc, doing)


def read_linger(sock: socket.socket) -> Linger:
    onoff, secs = _LINGER.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER.size))
    return Linger(bool(onoff), secs)


def read_keepalive(sock: socket.socket) -> Keepalive:
    on = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    return Keepalive(bool(on), sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                     sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                     sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT))


def read_options(sock: socket.socket) -> SocketOptions:
    """All options as the kernel has them now."""
    try:
        return SocketOptions(
            linger=read_linger(sock),
            keepalive=read_keepalive(sock),
            user_timeout_ms=sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT),
            reuseaddr=bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)),
            nodelay=bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)),
            rcvbuf=sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sndbuf=sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )
    except OSError as exc:
        raise _wrap(exc, "getsockopt") from None


def set_linger(sock: socket.socket, linger: Linger) -> Linger:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER.pack(int(linger.enabled), linger.seconds))
        return read_linger(sock)
    except OSError as exc:
        raise _wrap(exc, "setsockopt(SO_LINGER)") from None


def set_keepalive(sock: socket.socket, keepalive: Keepalive) -> Keepalive:
    """Sets SO_KEEPALIVE on/off and the three timers (kept when turning it off).

    Order matters for when the first probe goes: turning SO_KEEPALIVE on arms the timer a full idle time
    from *now*, while setting TCP_KEEPIDLE on a socket with keepalive on re-arms it from the last segment
    received (tcp_sock_set_keepidle_locked). So SO_KEEPALIVE goes first and TCP_KEEPIDLE last: the kernel
    then notices a dead peer idle + intvl × cnt after the last segment received, as ``dead_peer`` says,
    also when keepalive is turned on for a connection that was already idle (first probe at once)."""
    try:
        if keepalive.enabled:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, keepalive.intvl)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, keepalive.cnt)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepalive.idle)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        return read_keepalive(sock)
    except OSError as exc:
        raise _wrap(exc, "setsockopt(SO_KEEPALIVE)") from None


def set_nodelay(sock: socket.socket, on: bool) -> bool:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(bool(on)))
        return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    except OSError as exc:
        raise _wrap(exc, "setsockopt(TCP_NODELAY)") from None


def set_user_timeout(sock: socket.socket, ms: int) -> int:
    """TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the kernel gives up (0 = default)."""
    if isinstance(ms, bool) or not isinstance(ms, int) or not 0 <= ms <= 2**31 - 1:
        raise BadInput(f"bad user timeout {ms!r}: use 0-2147483647 ms")
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, ms)
        return sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT)
    except OSError as exc:
        raise _wrap(exc, "setsockopt(TCP_USER_TIMEOUT)") from None


def set_reuseaddr(sock: socket.socket, on: bool) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(bool(on)))
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR))
    except OSError as exc:
        raise _wrap(exc, "setsockopt(SO_REUSEADDR)") from None


def set_buffers(sock: socket.socket, rcvbuf: int | None = None, sndbuf: int | None = None) -> tuple[int, int]:
    """SO_RCVBUF / SO_SNDBUF; returns ``(rcvbuf, sndbuf)`` as read back (Linux doubles, and clamps)."""
    for name, value in (("rcvbuf", rcvbuf), ("sndbuf", sndbuf)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 < value <= 2**30):
            raise BadInput(f"bad {name} {value!r}: use 1-{2**30} bytes")
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
    except OSError as exc:
        raise _wrap(exc, "setsockopt(SO_RCVBUF/SO_SNDBUF)") from None


SET_NAMES = ("linger", "keepalive", "nodelay", "user-timeout")
_ON = ("on", "yes", "1", "true")
_OFF = ("off", "no", "0", "false")


@dataclass(frozen=True, slots=True)
class OptionChanges:
    """What to change on a socket; None leaves an option as it is. ``keepalive`` True turns SO_KEEPALIVE
    on with the socket's current timers, False turns it off (timers kept), a `Keepalive` sets all four."""

    linger: Linger | None = None
    keepalive: Keepalive | bool | None = None
    nodelay: bool | None = None
    user_timeout_ms: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.linger, self.keepalive, self.nodelay, self.user_timeout_ms))

    def describe(self) -> str:
        """The changes in one line, e.g. ``linger on, 0 s (close sends RST); nodelay on``."""
        parts = []
        if self.linger is not None:
            parts.append(str(self.linger))
        ka = self.keepalive
        if ka is True:
            parts.append("keepalive on (current timers)")
        elif ka is False or (isinstance(ka, Keepalive) and not ka.enabled):
            parts.append("keepalive off")
        elif isinstance(ka, Keepalive):
            parts.append(f"keepalive on idle={ka.idle}s intvl={ka.intvl}s cnt={ka.cnt}")
        if self.nodelay is not None:
            parts.append(f"nodelay {'on' if self.nodelay else 'off'}")
        if self.user_timeout_ms is not None:
            parts.append(f"user-timeout {self.user_timeout_ms} ms" + (" (system default)"
                                                                       if not self.user_timeout_ms else ""))
        return "; ".join(parts) or "nothing"


def _on_off(value: str, what: str) -> bool:
    low = value.strip().lower()
    if low in _ON:
        return True
    if low in _OFF:
        return False
    raise BadInput(f"bad {what} {value!r}: on or off")


def parse_set(items: list[str] | tuple[str, ...]) -> OptionChanges:
    """``NAME=VALUE`` texts (``sockmon opts --set``) → `OptionChanges`; BadInput names the bad one.

    ``linger=off|0|N`` (0: close sends RST), ``keepalive=on|off|IDLE,INTVL,CNT``, ``nodelay=on|off``,
    ``user-timeout=MS`` (0: the system's retransmission limits decide)."""
    found: dict[str, object] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name = name.strip().lower().replace("_", "-")
        if not sep or not value.strip():
            raise BadInput(f"bad --set {item!r}: expected NAME=VALUE with NAME one of {', '.join(SET_NAMES)}")
        if name not in SET_NAMES:
            raise BadInput(f"unknown option {name!r} in --set {item!r}: use one of {', '.join(SET_NAMES)}")
        if name in found:
            raise BadInput(f"--set {name} given twice")
        value = value.strip()
        if name == "linger":
            found[name] = Linger.parse(value)
        elif name == "keepalive":
            low = value.lower()
            if low in _ON:
                found[name] = True
            elif low in _OFF:
                found[name] = False
            else:
                found[name] = Keepalive.parse(value)
        elif name == "nodelay":
            found[name] = _on_off(value, "nodelay")
        else:
            ms = _int(value, "user-timeout")
            if not 0 <= ms <= 2**31 - 1:
                raise BadInput(f"bad user-timeout {ms}: use 0-2147483647 ms")
            found[name] = ms
    return OptionChanges(linger=found.get("linger"), keepalive=found.get("keepalive"),  # type: ignore[arg-type]
                         nodelay=found.get("nodelay"), user_timeout_ms=found.get("user-timeout"))  # type: ignore[arg-type]


def apply_changes(sock: socket.socket, changes: OptionChanges) -> SocketOptions:
    """Make every change in ``changes`` on ``sock``, then read every option back from the kernel."""
    if changes.linger is not None:
        set_linger(sock, changes.linger)
    ka = changes.keepalive
    if ka is True:
        try:
            current = read_keepalive(sock)
        except OSError as exc:
            raise _wrap(exc, "getsockopt(SO_KEEPALIVE)") from None
        set_keepalive(sock, Keepalive(True, current.idle, current.intvl, current.cnt))
    elif ka is False:
        set_keepalive(sock, Keepalive(False))
    elif ka is not None:
        set_keepalive(sock, ka)
    if changes.nodelay is not None:
        set_nodelay(sock, changes.nodelay)
    if changes.user_timeout_ms is not None:
        set_user_timeout(sock, changes.user_timeout_ms)
    return read_options(sock)


def require_tcp(sock: socket.socket, what: str) -> None:
    """BadInput unless ``sock`` is a TCP socket (IPv4 or IPv6): the TCP options mean nothing elsewhere."""
    try:
        proto = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
    except OSError:
        proto = None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM or \
            proto not in (None, socket.IPPROTO_TCP):
        kind = {socket.AF_UNIX: "a UNIX socket", socket.AF_NETLINK: "a netlink socket"}.get(
            sock.family, f"a {getattr(sock.family, 'name', sock.family)} {getattr(sock.type, 'name', sock.type)} socket")
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_DGRAM:
            kind = "a UDP socket"
        raise BadInput(f"{what} is {kind}, not TCP: these options are TCP socket options")


def system_keepalive(root: Path = SYSCTL_DIR) -> Keepalive:
    """The system defaults new sockets get: tcp_keepalive_time / _intvl / _probes (keepalive itself is off)."""
    try:
        idle = int((root / "tcp_keepalive_time").read_text())
        intvl = int((root / "tcp_keepalive_intvl").read_text())
        cnt = int((root / "tcp_keepalive_probes").read_text())
    except (OSError, ValueError) as exc:
        raise SockmonError(f"cannot read keepalive sysctls under {root}: {exc}") from None
    return Keepalive(False, idle, intvl, cnt)


@dataclass(frozen=True, slots=True)
class DeadPeer:
    """When the kernel will give up on a silent peer, as the keepalive timer code decides it.

    ``at_s``: seconds after the last segment received (data or ACK) at which the connection fails with
    ETIMEDOUT; ``remaining_s``: seconds from now (both refined by the running keepalive timer when known:
    probes already out, keepalive turned on late); ``formula`` says how it was computed; ``note`` adds a
    caveat (e.g. unacknowledged data: then retransmissions, not keepalive, decide). ``at_s`` is None when
    keepalive is off (a silent peer is then never noticed while the connection is idle).
    """

    at_s: float | None
    remaining_s: float | None
    formula: str
    note: str = ""


def dead_peer(ka: Keepalive, *, since_recv_ms: float | None = None, user_timeout_ms: int = 0,
              probes_out: int = 0, timer_remaining_ms: float | None = None, unacked: int = 0) -> DeadPeer:
    """What the kernel will do if the peer went silent now (net/ipv4/tcp_timer.c, tcp_keepalive_timer).

    The keepalive timer measures idleness from the last segment received (tcp_info ``last_data_recv`` /
    ``last_ack_recv``, the smaller of the two): after ``idle`` s it sends a probe, then one every ``intvl``
    s; an answered probe counts as a received segment and starts the idle time again. When ``cnt`` probes
    are unanswered at the next firing, the connection fails with ETIMEDOUT: ``idle + intvl × cnt`` s after
    the last segment received. With TCP_USER_TIMEOUT set, the count is replaced by that timeout (checked
    at each firing once a probe is out). ``probes_out`` / ``timer_remaining_ms`` (the socket table's
    keepalive timer) refine the figure once probing has started.
    """
    if not ka.enabled:
        if user_timeout_ms:
            return DeadPeer(None, None, "keepalive off",
                            f"not noticed while idle; unacknowledged data gives up after {user_timeout_ms / 1000:g} s "
                            "(TCP_USER_TIMEOUT)")
        return DeadPeer(None, None, "keepalive off", "not noticed while idle (only when sending times out)")
    note = ""
    if unacked:
        note = (f"{unacked} segment(s) unacknowledged: retransmissions decide first "
                "(tcp_retries2 or TCP_USER_TIMEOUT); keepalive probes only an idle connection")
    since = None if since_recv_ms is None else max(0.0, since_recv_ms / 1000.0)
    ut = user_timeout_ms / 1000.0
    if ut:
        # firings at idle, idle + intvl, ...: fails at the first firing, once a probe is out, ≥ ut idle
        k = max(1, math.ceil(max(0.0, ut - ka.idle) / ka.intvl))
        at = float(ka.idle + ka.intvl * k)
        formula = f"idle {ka.idle} + {k} × intvl {ka.intvl} (the first probe firing ≥ user timeout {ut:g} s)"
    else:
        at = float(ka.dead_peer_seconds)
        formula = f"idle {ka.idle} + intvl {ka.intvl} × cnt {ka.cnt}"
    if since is None:
        return DeadPeer(at, None, formula, note)
    # The next firing that probes: the running timer's when probes are out; otherwise when the idle time
    # is reached (sockmon arms it from the last segment received, see set_keepalive), or later if the
    # timer was armed later (SO_KEEPALIVE turned on after the idle time had passed, by someone else).
    if probes_out and timer_remaining_ms is not None:
        next_fire, sent = timer_remaining_ms / 1000.0, probes_out
        note = "; ".join(x for x in (note, f"{probes_out} probe(s) already sent unanswered") if x)
    else:
        next_fire, sent = max(ka.idle - since, 0.0), 0
        if timer_remaining_ms is not None:
            next_fire = max(next_fire, timer_remaining_ms / 1000.0)
    if ut:
        first = 0 if sent else 1
        j = max(first, math.ceil(max(0.0, ut - since - next_fire) / ka.intvl))
        remaining = next_fire + ka.intvl * j
    else:
        remaining = next_fire + ka.intvl * max(0, ka.cnt - sent)
    remaining = max(0.0, remaining)
    if since + remaining > at + 0.5:
        note = "; ".join(x for x in (note, "the keepalive timer started after the last segment received "
                                     "(keepalive turned on later): probing starts later than idle after it") if x)
    return DeadPeer(since + remaining, remaining, formula, note)


def timed_out_meaning(ka: Keepalive | None, user_timeout_ms: int, unacked: int) -> tuple[str, str] | None:
    """(meaning, action) for an ETIMEDOUT on an established connection, from its options; None: no context."""
    if unacked or ka is None or not ka.enabled:
        if user_timeout_ms:
            return (f"timed out: data stayed unacknowledged longer than TCP_USER_TIMEOUT {user_timeout_ms} ms",
                    "the peer or the path to it is gone: close and reconnect")
        if unacked:
            return ("timed out: retransmissions of unacknowledged data gave up (tcp_retries2)",
                    "the peer or the path to it is gone: close and reconnect")
        return None
    if user_timeout_ms:
        return (f"keepalive gave up: probes unanswered for TCP_USER_TIMEOUT {user_timeout_ms} ms "
                f"(idle {ka.idle} s, intvl {ka.intvl} s)", "the peer or the path to it is gone: close and reconnect")
    return (f"keepalive gave up after {ka.cnt} unanswered probes (idle {ka.idle} s + {ka.cnt} × {ka.intvl} s "
            "with nothing received)", "the peer or the path to it is gone: close and reconnect")
