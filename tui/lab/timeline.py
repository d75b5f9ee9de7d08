"""Timeline pane: the life of one connection, line by line, with relative timestamps.

By default it follows the built-in client's connection: lifecycle calls and their results, kernel
states sampled by the engine (TCP_INFO), kernel transitions from the collector matched by 4-tuple
(so FIN_WAIT2 → CLOSE and the TIME_WAIT row keep showing after our fd is closed), bytes in/out and
errors with errno name, meaning and action. ``show_socket(sock)`` switches it to any kernel socket
(the one selected in a table); ``show_socket(None)`` or the ``f`` key goes back to the client.

The app feeds it with ``add_transitions`` (collector updates) and ``add_events`` (engine events); the
Client pane also feeds it directly — duplicates are dropped, so both may do it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.text import Text
from sockmon.core import states as S
from sockmon.core.lab.events import Event, EventKind
from sockmon.core.records import Socket, Transition
from sockmon.core.states import STATE_CODES
from sockmon.core.text import inert
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import RichLog, Static

try:  # one colour per state, everywhere (tui/theme.py)
    from sockmon.tui.theme import state_style
except ImportError:  # pragma: no cover - theme not there yet
    from rich.style import Style

    def state_style(code: int, bold: bool = False) -> Style:  # type: ignore[misc]
        return Style(bold=bold)


MAX_ENTRIES = 600
MAX_RECENT_TRANSITIONS = 4000
FourTuple = tuple[str, int, str, int]

KIND_STYLE = {
    EventKind.CALL: "bold #c8c8c8",
    EventKind.RETURNED: "#8fbf8f",
    EventKind.FAILED: "bold #ff6b6b",
    EventKind.ERROR: "bold #ff6b6b",
    EventKind.RESET: "bold #ff6b6b",
    EventKind.PEER_CLOSED: "#e5c07b",
    EventKind.BYTES_IN: "#56b6c2",
    EventKind.BYTES_OUT: "#61afef",
    EventKind.OPTION: "#c678dd",
    EventKind.ACCEPTED: "#4ec94e",
    EventKind.CLOSED: "#e5c07b",
    EventKind.INFO: "dim",
    EventKind.STATE: "",
}


def state_code(name: str | None) -> int:
    return STATE_CODES.get((name or "").upper(), -1)


def state_label(name: str | None, *, bold: bool = True) -> Text:
    """A state name in its colour (tui/theme.py); unknown names in white."""
    if not name:
        return Text("—", style="dim")
    return Text(name, style=state_style(state_code(name), bold))


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def as_endpoint(value) -> tuple[str, int] | None:
    """(host, port) from whatever the engine reports: Endpoint, sockaddr tuple, or "host:port" text."""
    if value is None:
        return None
    host = getattr(value, "host", None)
    port = getattr(value, "port", None)
    if host is not None and port is not None:
        return str(host), int(port)
    if isinstance(value, tuple | list) and len(value) >= 2:
        return str(value[0]), int(value[1])
    if isinstance(value, str) and ":" in value:
        host, _, port_text = value.rpartition(":")
        if port_text.isdigit():
            return host.strip("[]"), int(port_text)
    return None


def _norm_host(host: str) -> str:
    return host.removeprefix("::ffff:") if host.startswith("::ffff:") and "." in host else host


def _norm_tuple(t: FourTuple) -> FourTuple:
    return (_norm_host(t[0]), int(t[1]), _norm_host(t[2]), int(t[3]))


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "?"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


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
    label = {
        EventKind.CALL: "call   ", EventKind.RETURNED: "ok     ", EventKind.FAILED: "FAILED ",
        EventKind.ERROR: "ERROR  ", EventKind.RESET: "RESET  ", EventKind.PEER_CLOSED: "peer   ",
        EventKind.BYTES_IN: "in     ", EventKind.BYTES_OUT: "out    ", EventKind.OPTION: "option ",
        EventKind.ACCEPTED: "accept ", EventKind.CLOSED: "closed ", EventKind.INFO: "info   ",
    }.get(ev.kind, f"{ev.kind.value:<7}")
    out.append(label, style)
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


@dataclass(order=True)
class Entry:
    ts: float
    seq: int
    text: Text = field(compare=False)
    state: str | None = field(default=None, compare=False)  # the kernel state entered at ``ts``, if any
    gone: bool = field(default=False, compare=False)  # the row left the socket table
    dwell: bool = field(default=False, compare=False)  # append "(PREVIOUS for …)", computed when drawn
    tag: str = field(default="", compare=False)  # appended last, e.g. "[socket table]"
    sample: bool = field(default=False, compare=False)  # an engine TCP_INFO sample


class TimelinePane(Vertical, can_focus=True):
    """Calls, kernel states with dwell times, bytes and errors of one connection."""

    DEFAULT_CSS = """
    TimelinePane { height: 1fr; }
    TimelinePane:focus #timeline-header { background: $accent 30%; }
    TimelinePane #timeline-header { height: auto; padding: 0 1; background: $boost; }
    TimelinePane #timeline-log { height: 1fr; }
    """

    BINDINGS = [
        Binding("f", "follow_client", "Follow client", id="timeline.follow_client"),
        Binding("e", "clear_timeline", "Clear", id="timeline.clear"),
    ]

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._entries: list[Entry] = []
        self._seq = 0
        self._seen: set[tuple] = set()
        self._recent: deque[Transition] = deque(maxlen=MAX_RECENT_TRANSITIONS)
        self._events: deque[Event] = deque(maxlen=MAX_ENTRIES * 2)
        # What we follow: the client (its 4-tuple once known) or one kernel socket.
        self.following_client = True
        self.client_tuple: FourTuple | None = None
        self.client_closed = False
        self.socket: Socket | None = None
        self.kernel_state: str | None = None
        self._t0: float | None = None
        self._exact = False  # tracepoint transitions seen for what we follow: engine samples are dropped
        self.bytes_in = 0
        self.bytes_out = 0
        self._watch_stop: threading.Event | None = None
        self._lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield Static(self._header(), id="timeline-header")
        yield RichLog(id="timeline-log", wrap=True, highlight=False, markup=False, auto_scroll=True)

    # ------------------------------------------------------------------ what we follow
    @property
    def followed_tuple(self) -> FourTuple | None:
        if self.following_client:
            return self.client_tuple
        return _norm_tuple(self.socket.four_tuple) if self.socket is not None else None

    def show_socket(self, sock: Socket | None) -> None:
        """Follow a kernel socket (the table's selection); None goes back to following our client."""
        if sock is None:
            if not self.following_client:
                self.action_follow_client()
            return
        if (not self.following_client and self.socket is not None
                and _norm_tuple(self.socket.four_tuple) == _norm_tuple(sock.four_tuple)):
            self.socket = sock  # same connection, fresher record
            self._refresh_header()
            return
        self.following_client = False
        self.socket = sock
        self._reset_view()
        self.kernel_state = sock.state_name
        self._replay()
        if not self._entries:
            self._add(time.monotonic(), self._selected_line(sock), key=None, state=sock.state_name)
        self._refresh_header()

    def follow_client(self, local=None, peer=None, *, new_connection: bool = False) -> None:
        """Called by the Client pane: a new connection starts, or its 4-tuple is now known."""
        if new_connection:  # a connect from the Client pane: follow it (f does the same by hand)
            self._stop_watch()
            self.client_tuple = None
            self.client_closed = False
            self.bytes_in = self.bytes_out = 0
            self.following_client = True
            self.socket = None
            self._reset_view()
        loc, per = as_endpoint(local), as_endpoint(peer)
        if loc and per:
            self.client_tuple = _norm_tuple((loc[0], loc[1], per[0], per[1]))
            if self.following_client:
                self._replay_transitions()
        self._refresh_header()

    def client_fd_closed(self) -> None:
        """Our fd is gone: keep following the 4-tuple in the kernel's socket table (FIN_WAIT2, TIME_WAIT)."""
        self.client_closed = True
        self._refresh_header()
        if self.client_tuple is not None and self.is_mounted:
            self._start_watch(self.client_tuple)

    def action_follow_client(self) -> None:
        self.following_client = True
        self.socket = None
        self._reset_view()
        self._replay()
        self._refresh_header()

    def action_clear_timeline(self) -> None:
        self._reset_view()
        self._refresh_header()

    # ------------------------------------------------------------------ feeds
    def add_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            key = ("ev", ev.ts, ev.kind, ev.detail, ev.conn, ev.state, ev.nbytes)
            if key in self._seen:
                continue
            self._seen.add(key)
            self._events.append(ev)
            if self._event_matches(ev):
                self._show_event(ev)
        self._refresh_header()

    def add_transitions(self, transitions: Iterable[Transition]) -> None:
        for tr in transitions:
            key = ("tr", tr.ts, tr.src, tr.sport, tr.dst, tr.dport, tr.old, tr.new)
            if key in self._seen:
                continue
            self._seen.add(key)
            self._recent.append(tr)
            if self._transition_matches(tr):
                self._show_transition(tr)
        self._refresh_header()

    def kernel_row_seen(self, state: str | None, ts: float | None = None, detail: str = "socket table") -> None:
        """A socket-table observation of the followed connection (state name, or None = row gone)."""
        ts = time.monotonic() if ts is None else ts
        before = self._state_before(ts)
        if state is not None and before is not None and before[0] == state:
            return  # already known (a tracepoint or engine sample said so)
        out = Text("kernel ", "bold #c8c8c8")
        if state is None:
            out.append("no row left in the socket table: the kernel forgot the connection", "dim")
        else:
            out.append_text(state_label(state))
        self._add(ts, out, key=None, state=state, gone=state is None, dwell=state is not None, tag=f"  [{detail}]")
        self._refresh_header()
        self._tell_client(self.kernel_state)

    # ------------------------------------------------------------------ matching
    def _event_matches(self, ev: Event) -> bool:
        if self.following_client:
            return ev.conn == "client"
        if self.socket is None:
            return False
        tup = _norm_tuple(self.socket.four_tuple)
        if ev.conn == "client":
            return self.client_tuple is not None and self.client_tuple == tup
        if ev.conn:  # server events name the peer; the accepted socket's dst is that peer
            peer = as_endpoint(ev.conn)
            return peer is not None and (_norm_host(peer[0]), peer[1]) == (tup[2], tup[3])
        return False

    def _transition_matches(self, tr: Transition) -> bool:
        tup = self.followed_tuple
        return tup is not None and _norm_tuple((tr.src, tr.sport, tr.dst, tr.dport)) == tup

    # ------------------------------------------------------------------ rendering
    def _show_event(self, ev: Event) -> None:
        if ev.kind is EventKind.STATE:
            if self._exact:
                return  # the tracepoint already reports every state change of this connection
            before = self._state_before(ev.ts)
            if before is not None and before[0] == ev.state:
                return  # periodic sample, nothing new
            self._add(ev.ts, event_text(ev), key=None, state=ev.state, dwell=True, sample=True)
            return
        if ev.kind is EventKind.BYTES_IN and ev.nbytes:
            self.bytes_in += ev.nbytes
        elif ev.kind is EventKind.BYTES_OUT and ev.nbytes:
            self.bytes_out += ev.nbytes
        self._add(ev.ts, event_text(ev), key=None, state=ev.state)

    def _show_transition(self, tr: Transition) -> None:
        dwell = tr.dwell_ms
        if dwell is None:
            before = self._state_before(tr.ts)
            if before is not None and before[0] == tr.old_name:
                dwell = max(0.0, (tr.ts - before[1]) * 1000.0)
        self._add(tr.ts, transition_text(tr, dwell), key=None, state=tr.new_name)
        if tr.source == "tracepoint" and not self._exact:
            # Exact kernel transitions from here on: the engine's periodic TCP_INFO samples only add noise
            # (a sample read a moment before a transition arrives stamped after it: "FIN_WAIT1" after CLOSE).
            self._exact = True
            if any(e.sample for e in self._entries):
                self._entries = [e for e in self._entries if not e.sample]
                self.kernel_state = self._latest_state()
                self._redraw()
        if self.following_client:
            self._tell_client(self.kernel_state)

    def _state_before(self, ts: float, exclude: Entry | None = None) -> tuple[str, float] | None:
        """The kernel state in force at ``ts`` and since when, from the entries (whatever their arrival order)."""
        best: tuple[str, float] | None = None
        for entry in sorted(self._entries):
            if entry.ts > ts:
                break
            if entry is exclude:
                continue
            if entry.gone:
                best = None
            elif entry.state and (best is None or best[0] != entry.state):
                best = (entry.state, entry.ts)
        return best

    @staticmethod
    def _dwell_text(before: tuple[str, float] | None, ts: float) -> str:
        if before is None:
            return ""
        return f"  ({before[0]} for {fmt_ms(max(0.0, (ts - before[1]) * 1000.0))})"

    def _latest_state(self) -> str | None:
        for entry in sorted(self._entries, reverse=True):
            if entry.gone:
                return None
            if entry.state:
                return entry.state
        return self.socket.state_name if (not self.following_client and self.socket is not None) else None

    def _selected_line(self, sock: Socket) -> Text:
        out = Text("kernel ", "bold #c8c8c8")
        out.append_text(state_label(sock.state_name))
        out.append(f"  {endpoint(sock.src, sock.sport)} → {endpoint(sock.dst, sock.dport)}", "dim")
        if sock.timer is not None:
            out.append(f"  timer {sock.timer.name} {sock.timer.expires_ms / 1000:.1f} s", "dim")
        out.append("  [selected in the socket table]", "dim")
        return out

    def _add(self, ts: float, text: Text, key, *, state: str | None = None, gone: bool = False,
             dwell: bool = False, tag: str = "", sample: bool = False) -> None:
        self._seq += 1
        entry = Entry(ts, self._seq, text, state, gone, dwell, tag, sample)
        in_order = not self._entries or self._entries[-1].ts <= ts
        self._entries.append(entry)
        if self._t0 is None or ts < self._t0:
            self._t0 = ts
            in_order = False  # every relative time changes
        if len(self._entries) > MAX_ENTRIES:
            self._entries = sorted(self._entries)[-MAX_ENTRIES:]
            in_order = False
        if state is not None or gone:
            self.kernel_state = self._latest_state()
        if not self.is_mounted:
            return
        log = self.query_one("#timeline-log", RichLog)
        if in_order:
            log.write(self._line(entry, self._state_before(ts, exclude=entry)), width=self._wrap_width(log))
        else:
            self._entries.sort()
            self._redraw()

    def _line(self, entry: Entry, before: tuple[str, float] | None = None) -> Text:
        rel = entry.ts - (self._t0 or entry.ts)
        out = Text(f"+{rel:9.3f}s ", "dim")
        out.append_text(entry.text)
        if entry.dwell and before is not None and before[0] != entry.state:
            if entry.state == "TIME_WAIT" and before[0] == "CLOSE":
                # tcp_time_wait(): the full socket goes to CLOSE and a timewait socket takes over the
                # 4-tuple at that moment (no tracepoint for it): TIME_WAIT began there, not now
                since = before[1] - (self._t0 or before[1])
                out.append(f"  (since the → CLOSE at +{since:.3f}s: timewait socket)", "dim")
            else:
                out.append(self._dwell_text(before, entry.ts), "dim")
        if entry.tag:
            out.append(entry.tag, "dim")
        return out

    def _lines(self) -> list[Text]:
        """Every entry in time order, each with the dwell of the state it ends (whatever the arrival order)."""
        out: list[Text] = []
        current: tuple[str, float] | None = None
        for entry in sorted(self._entries):
            if entry.sample and current is not None and current[0] == entry.state:
                continue  # an engine sample of a state a kernel transition already showed
            out.append(self._line(entry, current))
            if entry.gone:
                current = None
            elif entry.state and (current is None or current[0] != entry.state):
                current = (entry.state, entry.ts)
        return out

    def plain_lines(self) -> list[str]:
        """The timeline as plain text lines (what the log shows, also when the tab is hidden)."""
        return [line.plain for line in self._lines()]

    def _redraw(self) -> None:
        if not self.is_mounted:
            return
        log = self.query_one("#timeline-log", RichLog)
        log.clear()
        width = self._wrap_width(log)
        for line in self._lines():
            log.write(line, width=width)

    def _wrap_width(self, log: RichLog) -> int:
        """The width to wrap lines at: the log's own, or (tab hidden: no size) the terminal's less the
        scrollbar, not RichLog's 78-column fallback."""
        return log.scrollable_content_region.width or max(20, self.app.size.width - 1)

    def on_mount(self) -> None:
        self._redraw()
        self._refresh_header()

    def on_resize(self) -> None:
        self.call_after_refresh(self._redraw)  # wrap again for the new width

    def on_unmount(self) -> None:
        self._stop_watch()

    def _reset_view(self) -> None:
        self._exact = False
        self._entries.clear()
        self._t0 = None
        self.kernel_state = None
        self._redraw()

    def _replay(self) -> None:
        for ev in list(self._events):
            if self._event_matches(ev):
                self._show_event(ev)
        self._replay_transitions()

    def _replay_transitions(self) -> None:
        shown = {(e.ts, e.text.plain) for e in self._entries}
        for tr in sorted(self._recent, key=lambda t: t.ts):
            if self._transition_matches(tr):
                dwell = tr.dwell_ms
                if (tr.ts, transition_text(tr, dwell).plain) in shown:
                    continue
                self._show_transition(tr)

    def _header(self) -> Text:
        out = Text()
        if self.following_client:
            out.append("Following: built-in client", "bold")
            if self.client_tuple:
                s, sp, d, dp = self.client_tuple
                out.append(f"  {endpoint(s, sp)} → {endpoint(d, dp)}")
            else:
                out.append("  (not connected yet: connect from the Client pane)", "dim")
            if self.client_closed:
                out.append("  fd closed, kernel still tracked by 4-tuple", "italic")
        elif self.socket is not None:
            sock = self.socket
            out.append("Following: selected socket", "bold")
            out.append(f"  {endpoint(sock.src, sock.sport)} → {endpoint(sock.dst, sock.dport)}")
        out.append("  kernel: ", "dim")
        out.append_text(state_label(self.kernel_state))
        out.append(f"  in {self.bytes_in} B  out {self.bytes_out} B", "dim")
        if not self.following_client:
            out.append("  (f: follow client)", "dim")
        return out

    def _refresh_header(self) -> None:
        if self.is_mounted:
            self.query_one("#timeline-header", Static).update(self._header())

    def _tell_client(self, state: str | None) -> None:
        if not self.following_client or not self.is_mounted:
            return
        try:
            from sockmon.tui.lab.client import ClientPane

            for pane in self.screen.query(ClientPane):
                pane.kernel_state_seen(state, closed=self.client_closed)
        except Exception:  # noqa: BLE001 - the client pane is optional
            pass

    # ------------------------------------------------------------------ socket-table watch after close
    def _start_watch(self, tup: FourTuple) -> None:
        """After our fd is closed, look for the 4-tuple in the socket table (TIME_WAIT has no fd, no
        tracepoint), off the UI thread, until the row is gone or a minute and a half has passed."""
        self._stop_watch()
        stop = threading.Event()
        self._watch_stop = stop
        app = self.app

        def poll() -> None:
            try:
                from sockmon.core.table.snapshot import take_snapshot
            except ImportError:
                return
            deadline = time.monotonic() + 90.0
            last: str | None = "?"
            seen = False
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    snap = take_snapshot(port=tup[1], with_info=False)
                except Exception:  # noqa: BLE001 - the table reader failed: stop quietly
                    return
                found = None
                for sock in snap.sockets:
                    if _norm_tuple(sock.four_tuple) == tup:
                        found = sock.state_name
                        break
                if found != last:
                    last = found
                    try:
                        app.call_from_thread(self._watch_seen, tup, found, snap.taken_at)
                    except Exception:  # noqa: BLE001 - app gone
                        return
                seen = seen or found is not None
                if found is None and (seen or time.monotonic() > deadline - 88.0):
                    return  # the row is gone (or never showed up): the kernel forgot the connection
                stop.wait(1.0 if found == "TIME_WAIT" else 0.25)  # TIME_WAIT lasts 60 s: look less often

        threading.Thread(target=poll, name="timeline-watch", daemon=True).start()

    def _watch_seen(self, tup: FourTuple, state: str | None, ts: float) -> None:
        if not self.following_client or self.client_tuple != tup:
            return
        if state is None and not any(e.state for e in self._entries):
            return
        self.kernel_row_seen(state, ts)

    def _stop_watch(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()
            self._watch_stop = None


__all__ = ["TimelinePane", "event_text", "state_label", "S"]
