"""Detail screen for one socket: every tcp_info field, the timer, the sockaddr bytes of both ends
field by field, the owner process, its socket options, sparklines of its last refreshes (rtt, cwnd,
receive / send rate, retransmissions: the timeline model's samples of the connection it follows, which
is this one) and its transition history. Updated live while
open: the options are re-read from the kernel at every refresh, off the UI thread (ours through a dup of
our fd, another process's through pidfd_getfd as root)."""

from __future__ import annotations

import time

import msgspec
from rich.console import Group
from rich.table import Table
from rich.text import Text
from sockmon.core.records import Process, Socket, Transition
from sockmon.core.series import SampleRing
from sockmon.core.states import TIME_WAIT
from sockmon.tui import fmt
from sockmon.tui.theme import state_style, state_text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

_US = {"rto", "ato", "rtt", "rttvar", "min_rtt", "rcv_rtt", "busy_time"}
_MS = {"last_data_sent", "last_data_recv", "last_ack_recv"}
_BYTES = {"bytes_acked", "bytes_received", "bytes_sent", "bytes_retrans", "notsent_bytes", "snd_wnd", "rcv_wnd",
          "rcv_space", "rcv_ssthresh"}
_RATE = {"pacing_rate", "delivery_rate"}
_CA_STATES = {0: "Open", 1: "Disorder", 2: "CWR", 3: "Recovery", 4: "Loss"}
_OPTIONS = ((1, "TIMESTAMPS"), (2, "SACK"), (4, "WSCALE"), (8, "ECN"), (16, "ECN_SEEN"), (32, "SYN_DATA"))


def tcp_info_value(name: str, value: int) -> str:
    if name in _US:
        return f"{value} µs" + (f"  ({value / 1000:.3f} ms)" if value >= 1000 else "")
    if name in _MS:
        return f"{value} ms ago"
    if name in _BYTES:
        return f"{value}" + (f"  ({fmt.human_bytes(value)})" if value >= 1024 else "")
    if name in _RATE:
        return f"{value} B/s" + (f"  ({fmt.human_bytes(value)}/s)" if value >= 1024 else "")
    if name == "ca_state":
        return f"{value} ({_CA_STATES.get(value, '?')})"
    if name == "options":
        names = [n for bit, n in _OPTIONS if value & bit]
        return f"{value:#x} ({' '.join(names) or 'none'})"
    if name == "state":
        from sockmon.core.states import state_name

        return f"{value} ({state_name(value)})"
    return str(value)


def _kv_table(rows, key_width: int | None = None) -> Table:
    """Key/value rows; every ``str`` value is shown literally and inert (names, cmdlines: never markup).
    Labels are never cut: their column is as wide as the longest label and never shrinks (fixed
    width); values wrap, and a long word (a number, a path) folds."""
    rows = list(rows)
    widest = max((len(k) for k, _ in rows), default=0)
    t = Table.grid(padding=(0, 1))
    t.add_column(style="dim", no_wrap=True, width=max(widest, key_width or 0))
    t.add_column(overflow="fold", ratio=1)
    for k, v in rows:
        t.add_row(fmt.cell(k), fmt.cell(v))
    return t


def socket_section(sock: Socket, elapsed_ms: float) -> Table:
    timer = sock.timer
    if timer is None or not timer.kind:
        timer_val: Text | str = Text("none", style="dim")
    else:
        timer_val = fmt.timer_text(timer, elapsed_ms)
        timer_val.append(f"   (kernel said {timer.expires_ms} ms at the snapshot, retrans {timer.retrans})",
                         style="dim")
    if fmt.has_no_user(sock):
        uid: Text | str = Text(f"{sock.uid} (reported for sockets with no owner: no user)", style="dim")
    else:
        uid = str(sock.uid)
    return _kv_table([
        ("state", state_text(sock.state, bold=True)),
        ("family", f"{fmt.family_word(sock)}  ({sock.family_name})"),
        ("local", fmt.local_of(sock)),
        ("peer", fmt.peer_of(sock)),
        ("recv-q", f"{sock.recv_q}" + ("  (accept queue now)" if sock.state == 10 else "")),
        ("send-q", f"{sock.send_q}" + ("  (backlog)" if sock.state == 10 else "")),
        ("timer", timer_val),
        ("uid", uid),
        ("inode", str(sock.inode) + ("  (no fd: TIME_WAIT or orphan)" if not sock.inode else "")),
        ("cookie", f"{sock.cookie:#x}"),
        ("ifindex", str(sock.ifindex)),
        ("congestion", sock.cong or "—"),
        *([("netns", sock.netns)] if sock.netns is not None else []),  # the all-namespaces view (N)
    ], 10)


def owner_section(owner: Process | None, sock: Socket) -> Table | Text:
    if owner is None or sock.state == TIME_WAIT:
        why = ("TIME_WAIT and orphaned sockets belong to no process" if not sock.inode or sock.state == TIME_WAIT
               else "not found (another user's process needs root, or it just exited)")
        return Text(why, style="dim italic")
    cmd = " ".join(owner.cmdline) if owner.cmdline else "—"  # _kv_table makes every value inert
    return _kv_table([("pid", str(owner.pid)), ("name", owner.name), ("user", owner.user), ("cmdline", cmd)], 10)


def sockaddr_section(sock: Socket) -> Group | Text:
    try:
        from sockmon.core.lab.sockaddr import sockaddr_fields
    except ImportError:
        return Text("sockmon.core.lab.sockaddr is not available", style="dim")
    parts = []
    for label, host, port in (("local", sock.src, sock.sport), ("peer", sock.dst, sock.dport)):
        try:
            fields = sockaddr_fields(sock.family, host, port)
        except Exception as exc:  # noqa: BLE001 - shown, never fatal
            parts.append(fmt.safe_text(f"{label}: {exc}", style="red"))
            continue
        total = sum(len(f.raw) for f in fields)
        struct = "sockaddr_in6" if total == 28 else "sockaddr_in"
        head = Text(f"{label} {fmt.endpoint(host, port)} → struct {struct}, {total} bytes", style="bold")
        t = Table(box=None, padding=(0, 1), show_header=True, header_style="dim")
        t.add_column("field", no_wrap=True, min_width=max(len(f.name) for f in fields))
        t.add_column("off", justify="right", no_wrap=True)
        t.add_column("bytes", style="#e5c07b", min_width=11)  # wraps between bytes when narrow
        t.add_column("meaning", ratio=1)
        for f in fields:
            t.add_row(*map(fmt.cell, (f.name, str(f.offset), f.hex, f.meaning)))
        allhex = Text("  " + " ".join(f.hex for f in fields), style="#e5c07b")
        parts.extend([head, t, allhex, Text("")])
    return Group(*parts)


def options_section(opts, note: str) -> Table | Text:
    if opts is None:
        return Text(note or "reading…", style="dim italic")
    ka = opts.keepalive
    linger = opts.linger
    if not linger.enabled:
        linger_text = "off"
    else:
        linger_text = "on, 0 s (close sends RST)" if linger.seconds == 0 else f"on, {linger.seconds} s"
    ka_text = (f"on  idle {ka.idle} s  intvl {ka.intvl} s  cnt {ka.cnt}" if ka.enabled
               else f"off  (idle {ka.idle} s  intvl {ka.intvl} s  cnt {ka.cnt} if turned on)")
    return _kv_table([
        ("SO_KEEPALIVE", ka_text),
        ("SO_LINGER", linger_text),
        ("TCP_NODELAY", "on" if opts.nodelay else "off"),
        ("TCP_USER_TIMEOUT", f"{opts.user_timeout_ms} ms" if opts.user_timeout_ms else "0 (default)"),
        ("SO_REUSEADDR", "on" if opts.reuseaddr else "off"),
        ("SO_RCVBUF", str(opts.rcvbuf)),
        ("SO_SNDBUF", str(opts.sndbuf)),
        ("read", Text(note, style="dim")),
    ], 16)


def tcp_info_section(sock: Socket, pairs: int = 2) -> Table | Text:
    """Every field as name / value; ``pairs`` side by side (1 on a narrow terminal: names never cut)."""
    info = sock.tcp_info
    if info is None:
        return Text("no tcp_info (TIME_WAIT and request sockets carry none, or the dump was without it)",
                    style="dim italic")
    items = list(msgspec.structs.asdict(info).items())
    widest = max(len(k) for k, _ in items)
    rows_n = (len(items) + pairs - 1) // pairs
    t = Table.grid(padding=(0, 1))
    for _ in range(pairs):
        t.add_column(style="dim", no_wrap=True, width=widest)
        t.add_column(overflow="fold", min_width=12, ratio=1)
    for i in range(rows_n):
        row = []
        for j in range(pairs):
            k, v = items[i + j * rows_n] if i + j * rows_n < len(items) else ("", None)
            row += [k, "" if v is None else tcp_info_value(k, v)]
        t.add_row(*map(fmt.cell, row))
    return t


def history_section(transitions: list[Transition], now: float) -> Table | Text:
    if not transitions:
        return Text("no transitions seen for this socket since sockmon started", style="dim italic")
    t = Table(box=None, padding=(0, 1), show_header=True, header_style="dim")
    t.add_column("ago", justify="right")
    t.add_column("from")
    t.add_column("")
    t.add_column("to")
    t.add_column("dwell", justify="right")
    t.add_column("source", style="dim")
    for tr in transitions:
        dwell = "" if tr.dwell_ms is None else f"{tr.dwell_ms:.1f} ms"
        t.add_row(f"{max(0.0, now - tr.ts):.1f}s", Text(tr.old_name, style=state_style(tr.old)), "→",
                  Text(tr.new_name, style=state_style(tr.new, bold=True)), dwell, fmt.safe_text(tr.source))
    return t


class DetailScreen(Screen[None]):
    DEFAULT_CSS = """
    DetailScreen { layout: vertical; }
    DetailScreen #detail-title { height: auto; max-height: 3; padding: 0 1; background: $panel; }
    DetailScreen VerticalScroll { height: 1fr; }
    DetailScreen .detail-box { border: round $primary 60%; height: auto; padding: 0 1; }
    DetailScreen #detail-row { height: auto; }
    DetailScreen #detail-socket { width: 1fr; }
    DetailScreen #detail-right { width: 1fr; height: auto; }
    DetailScreen.-narrow #detail-row { layout: vertical; }
    DetailScreen.-narrow #detail-socket, DetailScreen.-narrow #detail-right { width: 1fr; }
    """
    NARROW = 110  # below this many columns: boxes stacked, tcp_info one field per line
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", show=True),
        Binding("q", "app.pop_screen", "Back", show=False),
        Binding("o", "options", "Options", show=True, tooltip="Options: change SO_LINGER / keepalive of this socket"),
    ]

    def __init__(self, sock: Socket, owner: Process | None, history: list[Transition],
                 taken_at: float | None = None, *, samples: SampleRing | None = None) -> None:
        self._ready = False
        super().__init__()
        self.sock = sock
        self.owner = owner
        self.history = history
        self.taken_at = taken_at
        self.samples = samples
        self.gone = False
        self.options = None  # SocketOptions read at the latest refresh
        self.options_note = ""
        self.reader = None  # seam: (sock, owner) -> (SocketOptions | None, note)
        self._reads = None

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title")
        with VerticalScroll():
            with Horizontal(id="detail-row"):
                yield Static(id="detail-socket", classes="detail-box")
                with Vertical(id="detail-right"):  # beside the socket's dozen lines
                    yield Static(id="detail-owner", classes="detail-box")
                    yield Static(id="detail-graphs", classes="detail-box")
            yield Static(id="detail-options", classes="detail-box")
            yield Static(id="detail-tcpinfo", classes="detail-box")
            yield Static(id="detail-sockaddr", classes="detail-box")
            yield Static(id="detail-history", classes="detail-box")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._ready = True
        from sockmon.tui.widgets.options_reader import OptionsReader

        self._reads = OptionsReader(self.app, self._options_read, self.reader)
        self._request_options()
        for wid, title in (("socket", "Socket"), ("owner", "Owner process"),
                           ("options", "Socket options (read from the kernel at each refresh)"),
                           ("tcpinfo", "tcp_info (all fields)"),
                           ("sockaddr", "sockaddr bytes, field by field"), ("history", "Transition history")):
            self.query_one(f"#detail-{wid}", Static).border_title = title
        self.set_interval(0.5, self._refresh_timer)
        self.set_class(self.narrow, "-narrow")
        self.render_all()

    @property
    def narrow(self) -> bool:
        return (self.size.width or self.app.size.width) < self.NARROW

    def on_resize(self) -> None:
        self.set_class(self.narrow, "-narrow")
        if self._ready:
            self.render_all()

    def action_options(self) -> None:
        self.app.open_options(self.sock)

    def _clock(self) -> float:
        # the app's view clock: frozen while collection is paused, like every other countdown
        return (getattr(self.app, "view_clock", None) or getattr(self.app, "clock", time.monotonic))()

    def _elapsed_ms(self) -> float:
        return 0.0 if self.taken_at is None else max(0.0, (self._clock() - self.taken_at) * 1000.0)

    def update_socket(self, sock: Socket | None, owner: Process | None, history: list[Transition],
                      taken_at: float | None, *, samples: SampleRing | None = None) -> None:
        """A new snapshot: the fresh record of our socket, or None when it left the table."""
        self.samples = samples
        if sock is None:
            self.gone = True
        else:
            self.gone = False
            # keep the owner we had only while the socket still has the same fd (an owner lookup can
            # miss once); a socket that lost its fd (TIME_WAIT, orphan) has no owner any more
            keep = self.owner if sock.inode and sock.inode == self.sock.inode else None
            self.sock, self.owner, self.taken_at = sock, owner or keep, taken_at
        self.history = history
        self._request_options()
        self.render_all()

    def _request_options(self) -> None:
        if self._reads is None:
            return
        if self.gone:
            self.options, self.options_note = None, "the socket is gone: no options to read"
            return
        self._reads.reader = self.reader
        self._reads.request_any(self.sock, self.owner)

    def _options_read(self, sock: Socket, result, note: str, seq: int) -> None:
        if sock.key != self.sock.key or (self._reads is not None and seq < self._reads.seq and self.options):
            return
        self.options, self.options_note = result, note
        if self._ready:
            self.query_one("#detail-options", Static).update(options_section(self.options, self.options_note))

    def _refresh_timer(self) -> None:
        if self._ready:
            self.query_one("#detail-socket", Static).update(socket_section(self.sock, self._elapsed_ms()))

    def render_all(self) -> None:
        if not self._ready:
            return
        s = self.sock
        title = Text("Detail  ", style="bold")
        title.append_text(state_text(s.state, bold=True))
        title.append(f"  {fmt.local_of(s)} → {fmt.peer_of(s)}")
        if self.gone:
            title.append("   GONE from the socket table (last record shown)", style="bold #ff6b6b")
        title.append("   Esc: back", style="dim")
        self.query_one("#detail-title", Static).update(title)
        self.query_one("#detail-socket", Static).update(socket_section(s, self._elapsed_ms()))
        self.query_one("#detail-owner", Static).update(owner_section(self.owner, s))
        graphs = self.query_one("#detail-graphs", Static)
        n = len(self.samples) if self.samples is not None else 0
        size = self.samples.size if self.samples is not None else 0
        graphs.border_title = f"Last {n} of {size} refreshes" if n else "Last refreshes"
        graphs.update(fmt.Sparklines(self.samples, footer=False))
        self.query_one("#detail-options", Static).update(options_section(self.options, self.options_note))
        self.query_one("#detail-tcpinfo", Static).update(tcp_info_section(s, 1 if self.narrow else 2))
        self.query_one("#detail-sockaddr", Static).update(sockaddr_section(s))
        self.query_one("#detail-history", Static).update(history_section(self.history, self._clock()))
