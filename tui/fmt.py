"""Small formatters shared by the socket panes and the detail screen (no widgets here)."""

from __future__ import annotations

from rich.text import Text
from sockmon.core.records import Process, Socket, Timer
from sockmon.core.states import TIMER_KEEPALIVE, TIMER_ON, TIMER_PERSIST, TIMER_TIMEWAIT

_TIMER_STYLE = {TIMER_ON: "#e5c07b", TIMER_KEEPALIVE: "#56b6c2", TIMER_TIMEWAIT: "#9e9e9e",
                TIMER_PERSIST: "#c678dd"}


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_of(sock: Socket) -> str:
    return endpoint(sock.src, sock.sport)


def peer_of(sock: Socket) -> str:
    if sock.dport == 0 and sock.dst in ("0.0.0.0", "::"):
        return "*"
    return endpoint(sock.dst, sock.dport)


_USERS: dict[int, str] = {}


def user_name(uid: int) -> str:
    """Login name of a uid (cached; the uid as text when it has none)."""
    name = _USERS.get(uid)
    if name is None:
        try:
            import pwd

            name = pwd.getpwuid(uid).pw_name
        except (KeyError, ImportError):
            name = str(uid)
        _USERS[uid] = name
    return name


def owner_text(proc: Process | None) -> str:
    return "" if proc is None else f"{proc.pid}/{proc.name}"


def seconds(ms: float) -> str:
    if ms >= 100_000:
        return f"{ms / 60_000:.0f}m"
    if ms >= 10_000:
        return f"{ms / 1000:.0f}s"
    return f"{ms / 1000:.1f}s"


def timer_remaining_ms(timer: Timer | None, elapsed_ms: float) -> float | None:
    """The timer's expiry as the kernel reported it, minus the time since the snapshot (≥ 0)."""
    if timer is None or not timer.kind:
        return None
    return max(0.0, timer.expires_ms - elapsed_ms)


def timer_text(timer: Timer | None, elapsed_ms: float) -> Text:
    """``keepalive 7.2s`` counting down live; ``(r2)`` when retransmits/probes were sent."""
    remaining = timer_remaining_ms(timer, elapsed_ms)
    if remaining is None or timer is None:
        return Text("")
    out = Text(f"{timer.name} {seconds(remaining)}", style=_TIMER_STYLE.get(timer.kind, ""))
    if timer.retrans:
        out.append(f" r{timer.retrans}", style="bold #ff6b6b")
    return out


def rtt_ms(sock: Socket) -> float | None:
    rtt = sock.rtt  # reads 4 bytes of tcp_info, never decodes the whole struct
    return rtt / 1000.0 if rtt else None


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
