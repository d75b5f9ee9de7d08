"""Small formatters shared by the socket panes and the detail screen (no widgets here).

Untrusted text — process names and command lines, user and namespace names, peer bytes, error strings
(they carry addresses and names) — reaches the screen only through this module's funnel: `inert` for a
plain ``str`` that goes into a `VirtualTable` cell or a `rich.text.Text`, `safe_text` for a Rich
renderable (a ``str`` handed to a Rich ``Table`` or to Textual's ``Static``/``Label`` is parsed as
markup: ``[/x]`` raises, ``[bold red]`` restyles), and `cell` for table values of either kind.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from sockmon.core.lab.events import Event, EventKind
from sockmon.core.records import Process, Socket, Timer, Transition
from sockmon.core.series import SampleRing, rate_text  # rate_text: the one rate format (core: ls uses it too)
from sockmon.core.states import SYN_RECV, TIME_WAIT, TIMER_KEEPALIVE, TIMER_ON, TIMER_PERSIST, TIMER_TIMEWAIT
from sockmon.core.text import inert
from sockmon.tui.theme import KIND_STYLE, state_label

_TIMER_STYLE = {TIMER_ON: "#e5c07b", TIMER_KEEPALIVE: "#56b6c2", TIMER_TIMEWAIT: "#9e9e9e",
                TIMER_PERSIST: "#c678dd"}


def safe_text(text: object, style: str = "") -> Text:
    """Outside text as a Rich renderable: control characters shown as visible escapes, never markup."""
    return Text(inert("" if text is None else str(text)), style=style)


def cell(value: RenderableType | None) -> RenderableType:
    """A value for a Rich ``Table`` cell: a ``str`` becomes literal, inert `Text`; renderables pass."""
    if value is None or isinstance(value, str):
        return safe_text(value)
    return value


def fit_span(text: str, width: int, overflow: str = "end") -> tuple[int, int]:
    """How much of ``text`` (longer than ``width``) to keep around one "…": (head, tail) lengths, with
    head + 1 + tail == width. "end" keeps the head, "start" the tail, "endpoint" an address's port and
    as much of the host on both sides of the "…" as fits (``[2001:db8…7334]:443``): never the port cut."""
    room = max(0, width - 1)
    if overflow == "start":
        return 0, room
    if overflow == "endpoint":
        colon = text.rfind(":")
        if colon > 0:
            port_len = len(text) - colon
            if text[colon - 1] == "]":
                port_len += 1  # keep the closing bracket of [v6]:port with the port
            host_room = room - port_len
            if host_room >= 2:
                head = host_room - host_room // 2
                return head, port_len + host_room // 2
        return 0, room  # no port, or not even that fits: the end is what tells sockets apart
    return room, 0


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_AF_UNIX = 1  # socket.AF_UNIX: a UnixSocket row shows "path inode" / "* peer-inode", like ss -x
_SHORT_STATES = {"ESTABLISHED": "ESTAB"}


def short_state(name: str) -> str:
    return _SHORT_STATES.get(name, name)


def local_of(sock: Socket) -> str:
    if sock.family == _AF_UNIX:
        return f"{sock.src} {sock.sport}"
    return endpoint(sock.src, sock.sport)


def peer_of(sock: Socket) -> str:
    if sock.family == _AF_UNIX:
        return f"* {sock.dport}"
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
        name = inert(name)
        if len(_USERS) >= 4096:  # bounded: uids seen on a host are few, but never trust that
            _USERS.clear()
        _USERS[uid] = name
    return name


def has_no_user(sock: Socket) -> bool:
    """True for sockets whose uid means nothing: TIME_WAIT mini-sockets and request sockets (the kernel
    reports uid 0 whoever made them), and fd-less sockets reported as uid 0 (orphans): like ss, which
    prints a uid only when it is not 0, these show no user rather than a false "root"."""
    return sock.state == TIME_WAIT or (not sock.inode and (sock.state == SYN_RECV or not sock.uid))


def socket_user(sock: Socket, owner: Process | None) -> str:
    """The User column: the owner's user, else the socket's uid as a name; nothing for `has_no_user`."""
    if sock.state == TIME_WAIT:
        return ""  # never an owner's user either: a TIME_WAIT socket has no owner
    if owner is not None and owner.user:
        return inert(owner.user)
    if has_no_user(sock):
        return ""
    return user_name(sock.uid)


FAMILY_WORDS = {2: "v4", 10: "v6"}  # AF_INET, AF_INET6: the words the filter takes


def family_word(sock: Socket) -> str:
    """``v4`` / ``v6``, as the filter spells the families."""
    return FAMILY_WORDS.get(sock.family, str(sock.family))


def owner_text(proc: Process | None) -> str:
    """``pid/name``, inert (a plain ``str``: wrap it with `safe_text` before a Rich table sees it)."""
    return "" if proc is None else f"{proc.pid}/{inert(proc.name)}"


def duration(ms: float) -> str:
    """A timer's time left, compact and as precise as ``ss -o`` (which truncates, as this does):
    ``850ms``, ``9.5s``, ``59.1s``, ``4m05s``, ``12m30s``, ``1h02m`` (ss: ``850ms``, ``9.500sec``,
    ``59sec``, ``4min5sec``, ``12min``, ``62min``). Every timer on screen goes through here."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms // 100 / 10:.1f}s"
    secs = ms // 1000
    if secs < 3600:
        m, s = divmod(secs, 60)
        return f"{m}m{s:02d}s"
    h, m = divmod(secs // 60, 60)
    return f"{h}h{m:02d}m"


seconds = duration  # the older name


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
    out = Text(f"{timer.name} {duration(remaining)}", style=_TIMER_STYLE.get(timer.kind, ""))
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


SPARK_BARS = "▁▂▃▄▅▆▇█"


def spark(values, width: int | None = None) -> str:
    """A one-line sparkline: one cell per value (the newest at the right; the last ``width`` values,
    right-aligned in ``width`` cells), scaled from 0 to the largest value (a steady stream is a flat bar,
    not noise magnified); None (unknown) is a blank cell, 0 the lowest bar."""
    vals = list(values)
    if width is not None:
        vals = vals[-width:] if width > 0 else []
    top = max((v for v in vals if v is not None), default=0) or 0
    cells = []
    last = len(SPARK_BARS) - 1
    for v in vals:
        if v is None:
            cells.append(" ")
        elif top <= 0 or v <= 0:
            cells.append(SPARK_BARS[0])
        else:
            cells.append(SPARK_BARS[max(0, min(last, round(v / top * last)))])
    out = "".join(cells)
    return out.rjust(width) if width is not None else out


_SPARK_STYLE = "#61afef"
_SPARK_LABEL = 8  # "retrans " and friends
_SPARK_VALUE = 24  # " 9.87 MB/s  max 10.2 MB/s"


def _metric_rows(samples: SampleRing) -> list[tuple[str, list, str, str]]:
    """(label, values, now, max) of each metric a sparkline shows."""
    def last(values):
        return next((v for v in reversed(values) if v is not None), None)

    def peak(values):
        return max((v for v in values if v is not None), default=None)

    rtt = [None if v is None else v / 1000.0 for v in samples.series("rtt_us")]
    cwnd = samples.series("cwnd")
    rx, tx = samples.series("rx_bps"), samples.series("tx_bps")
    retr = samples.retrans_deltas()
    total = last(samples.series("total_retrans"))

    def ms(v):
        return "" if v is None else fmt_ms(v)

    def num(v):
        return "" if v is None else str(v)

    return [
        ("rtt", rtt, ms(last(rtt)), ms(peak(rtt))),
        ("cwnd", cwnd, num(last(cwnd)), num(peak(cwnd))),
        ("recv/s", rx, rate_text(last(rx)), rate_text(peak(rx))),
        ("send/s", tx, rate_text(last(tx)), rate_text(peak(tx))),
        ("retrans", retr, "" if total is None else f"{total} total",
         f"{peak(retr)}/refresh" if peak(retr) else ""),
    ]


def sparklines(samples: SampleRing | None, width: int, columns: int = 1, footer: bool = True) -> Text:
    """Sparklines of rtt, cwnd, receive / send rate and retransmissions per refresh of one connection's
    last refreshes (`SampleRing`), one cell per refresh (newest right, blank = unknown), each scaled
    from 0 to its own maximum, with the newest value and the maximum; ``columns`` metrics per line."""
    if samples is None or not len(samples):
        return Text("no samples yet: one per refresh while this connection is followed", style="dim italic")
    if not samples.has_data:
        return Text("no tcp_info for this connection (TIME_WAIT, or a dump without it): nothing to draw",
                    style="dim italic")
    columns = max(1, columns)
    cell = max(_SPARK_LABEL + 12 + _SPARK_VALUE, (width - 2 * (columns - 1)) // columns)
    spark_w = min(samples.size, cell - _SPARK_LABEL - _SPARK_VALUE - 1)
    out = Text(no_wrap=True, overflow="ellipsis")  # a narrow box cuts a line, never wraps it
    rows = _metric_rows(samples)
    for i, (label, values, now, top) in enumerate(rows):
        if i:
            out.append("\n" if i % columns == 0 else "  ")
        out.append(f"{label:<{_SPARK_LABEL}}", "dim")
        out.append(spark(values, spark_w), _SPARK_STYLE)
        value = f" {now}"
        if top and top != now:
            value += f"  max {top}"
        out.append(value.ljust(_SPARK_VALUE + 1) if (i + 1) % columns and i + 1 < len(rows) else value)
    if footer:
        out.append(f"\n{len(samples)} of the last {samples.size} refreshes", "dim")
    return out


class Sparklines:
    """`sparklines` laid out for the width it is drawn at (two metrics a line from ``two_columns_at``)."""

    def __init__(self, samples: SampleRing | None, two_columns_at: int = 110, footer: bool = True) -> None:
        self.samples = samples
        self.two_columns_at = two_columns_at
        self.footer = footer

    def __rich_console__(self, console, options):
        width = options.max_width
        yield sparklines(self.samples, width, 2 if width >= self.two_columns_at else 1, self.footer)


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "?"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


_EVENT_LABEL = {
    EventKind.CALL: "call   ", EventKind.RETURNED: "ok     ", EventKind.FAILED: "FAILED ",
    EventKind.ERROR: "ERROR  ", EventKind.RESET: "RESET  ", EventKind.PEER_CLOSED: "peer   ",
    EventKind.BYTES_IN: "in     ", EventKind.BYTES_OUT: "out    ", EventKind.OPTION: "option ",
    EventKind.ACCEPTED: "accept ", EventKind.CLOSED: "closed ", EventKind.INFO: "info   ",
}


def event_text(ev: Event) -> Text:
    """One timeline line (without the timestamp) for an engine event."""
    style = KIND_STYLE.get(ev.kind, "")
    out = Text()
    if ev.kind is EventKind.STATE:
        out.append("state  ", "dim")
        out.append_text(state_label(ev.state))
        if ev.detail:
            out.append(f"  {inert(ev.detail)}", "dim")
        return out
    out.append(_EVENT_LABEL.get(ev.kind, f"{ev.kind.value:<7}"), style)
    if ev.kind in (EventKind.BYTES_IN, EventKind.BYTES_OUT) and ev.nbytes is not None:
        out.append(f"{ev.nbytes} bytes", style)
        if ev.data:
            preview = ev.data[:24].decode("utf-8", "backslashreplace")
            out.append(f"  {inert(repr(preview))}" + ("…" if len(ev.data) > 24 else ""), "dim")
        if ev.detail:
            out.append(f"  {inert(ev.detail)}", "dim")
    elif ev.detail:  # details carry peer addresses, names and error text: inert
        out.append(inert(ev.detail), style if ev.kind is not EventKind.CALL else "bold")
    if ev.kind is EventKind.PEER_CLOSED and not ev.detail:
        out.append("recv() returned 0: the peer closed its side (FIN)", style)
    if ev.state and ev.kind is not EventKind.STATE:
        out.append("  → ", "dim")
        out.append_text(state_label(ev.state))
    if ev.errno_name:
        out.append(f"  {ev.errno_name}", "bold #ff6b6b")
        if ev.meaning:
            out.append(f": {ev.meaning}", "#ff6b6b")
        if ev.action:
            out.append(f"  → {ev.action}", "italic #e5c07b")
    return out


def transition_text(tr: Transition, dwell_ms: float | None) -> Text:
    out = Text()
    out.append("kernel ", "bold #c8c8c8")
    out.append_text(state_label(tr.old_name, bold=False))
    out.append(" → ", "dim")
    out.append_text(state_label(tr.new_name))
    if dwell_ms is not None:
        out.append(f"  ({tr.old_name} for {fmt_ms(dwell_ms)})", "dim")
    out.append(f"  [{tr.source}]", "dim")
    return out
