"""Timeline pane: a view of one `ConnectionTimeline` (core/lab/timeline.py), line by line, with relative
timestamps and how long each kernel state lasted.

The model follows the built-in client's connection (by default) or the socket selected in a table, and
is fed by the app (tui/lab/wiring.py): engine events, kernel transitions and every snapshot, each once.
This pane only draws it (``refresh_view``) — the lines, and sparklines of the followed connection's last
refreshes (rtt, cwnd, receive / send rate, retransmissions: the model's ``samples``) once there are
any — and has keys of its own: ``f`` follows the client again, ``e`` clears the lines, ``L`` shows /
hides the packet ladder of the client's connection (a `LadderModel` fed by the app from the capture the
Client pane's engine starts before connect(): core/lab/ladder.py; ``refresh_ladder`` draws the packets
added since the last call). It calls no other pane and runs no thread.
"""

from __future__ import annotations

from rich.text import Text
from sockmon.core.lab.ladder import MAX_PACKETS, LadderModel, LadderPacket, packet_line
from sockmon.core.lab.timeline import MAX_LINES, ConnectionTimeline, Line
from sockmon.tui.fmt import Sparklines, duration, endpoint, event_text, fmt_ms, transition_text
from sockmon.tui.theme import state_label
from sockmon.tui.widgets.quiet import quiet_update
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import RichLog, Static


def line_text(line: Line, before: tuple[str, float] | None, t0: float | None) -> Text:
    """One line: ``+   1.234s`` then what happened, with the dwell of the state it ends."""
    base = t0 if t0 is not None else line.ts
    out = Text(f"+{line.ts - base:9.3f}s ", "dim")
    if line.kind == "event" and line.event is not None:
        out.append_text(event_text(line.event))
    elif line.kind == "transition" and line.transition is not None:
        tr = line.transition
        dwell = tr.dwell_ms
        if dwell is None and before is not None and before[0] == tr.old_name:
            dwell = max(0.0, (tr.ts - before[1]) * 1000.0)
        out.append_text(transition_text(tr, dwell))
        return out
    elif line.kind == "selected" and line.socket is not None:
        sock = line.socket
        out.append("kernel ", "bold #c8c8c8")
        out.append_text(state_label(sock.state_name))
        out.append(f"  {endpoint(sock.src, sock.sport)} → {endpoint(sock.dst, sock.dport)}", "dim")
        if sock.timer is not None and sock.timer.kind:
            out.append(f"  timer {sock.timer.name} {duration(sock.timer.expires_ms)}", "dim")
        out.append("  [selected in the socket table]", "dim")
        return out
    elif line.gone and line.kind == "row":
        out.append("kernel ", "bold #c8c8c8")
        out.append("no row left in the socket table: the kernel forgot the connection", "dim")
        return out
    else:  # a socket-table row
        out.append("kernel ", "bold #c8c8c8")
        out.append_text(state_label(line.state))
        if line.socket is not None and not line.socket.inode and line.state == "FIN_WAIT2":
            out.append("  orphaned after close(): the kernel waits for the peer's FIN (no fd)", "dim")
    if line.dwell and before is not None and before[0] != line.state:
        if line.state == "TIME_WAIT" and before[0] == "CLOSE":
            # tcp_time_wait(): the full socket goes to CLOSE and a timewait socket takes over the
            # 4-tuple at that moment (no tracepoint for it): TIME_WAIT began there, not now
            out.append(f"  (since the → CLOSE at +{before[1] - base:.3f}s: timewait socket)", "dim")
        else:
            out.append(f"  ({before[0]} for {fmt_ms(max(0.0, (line.ts - before[1]) * 1000.0))})", "dim")
    if line.kind == "row":
        out.append("  [socket table]", "dim")
    return out


LADDER_STYLES = {"c>s": "#61afef", "s>c": "#98c379"}


def ladder_text(packet: LadderPacket) -> Text:
    """One rung: the client → server packets in one colour, the answers in another; SYN / FIN / RST
    bold (numbers and names only: nothing from the peer's bytes reaches this line)."""
    style = LADDER_STYLES.get(packet.dir, "")
    if "RST" in packet.flags:
        style = "bold #e06c75"
    elif "SYN" in packet.flags or "FIN" in packet.flags:
        style += " bold"
    line = packet_line(packet)
    t, _, rest = line.partition("  client ")
    out = Text(t + "  ", "dim")
    out.append("client ", "bold")
    out.append(rest.rsplit(" server", 1)[0], style)
    out.append(" server", "bold")
    return out


class TimelinePane(Vertical, can_focus=True):
    """Calls, kernel states with dwell times, bytes and errors of one connection."""

    DEFAULT_CSS = """
    TimelinePane { height: 1fr; }
    TimelinePane:focus #timeline-header { background: $accent 30%; }
    TimelinePane #timeline-header { height: auto; padding: 0 1; background: $boost; }
    TimelinePane #timeline-graphs { height: auto; padding: 0 1; border-bottom: solid $primary 30%; }
    TimelinePane #timeline-log { height: 1fr; }
    TimelinePane #timeline-ladder-header { height: auto; padding: 0 1; background: $boost; display: none; }
    TimelinePane #timeline-ladder { height: 1fr; display: none; }
    TimelinePane.-ladder #timeline-ladder-header { display: block; }
    TimelinePane.-ladder #timeline-ladder { display: block; }
    """

    BINDINGS = [
        Binding("f", "follow_client", "Follow client", id="timeline.follow_client"),
        Binding("e", "clear_timeline", "Clear", id="timeline.clear"),
        Binding("L", "toggle_ladder", "Ladder", id="timeline.ladder",
                tooltip="show / hide the packet ladder of the client's connection (root: AF_PACKET capture)"),
    ]

    def __init__(self, model: ConnectionTimeline | None = None, *, ladder: LadderModel | None = None,
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(name=name, id=id, classes=classes)
        self.model = model if model is not None else ConnectionTimeline()
        self.ladder = ladder if ladder is not None else LadderModel()
        self._drawn: tuple[int, int] | None = None  # (model epoch, lines drawn) the log shows
        self._ladder_drawn: tuple[int, int] | None = None  # (ladder epoch, number of the last packet drawn)

    def compose(self) -> ComposeResult:
        yield Static(self._header(), id="timeline-header")
        graphs = Static(id="timeline-graphs")
        graphs.display = False
        yield graphs
        yield RichLog(id="timeline-log", wrap=True, highlight=False, markup=False, auto_scroll=True,
                      max_lines=MAX_LINES)
        yield Static(self._ladder_header(), id="timeline-ladder-header")
        yield RichLog(id="timeline-ladder", wrap=False, highlight=False, markup=False, auto_scroll=True,
                      max_lines=MAX_PACKETS)

    @property
    def ladder_shown(self) -> bool:
        return self.has_class("-ladder")

    def ladder_lines(self) -> list[str]:
        """The ladder as plain text lines (also when hidden), or the one line why it is empty."""
        packets = self.ladder.packets
        if not packets:
            return [self._ladder_header().plain]
        return [packet_line(p) for p in packets]

    def action_toggle_ladder(self) -> None:
        self.toggle_class("-ladder")
        self._ladder_drawn = None
        self.refresh_ladder()

    def refresh_ladder(self) -> None:
        """Draw the packets added since the last call (or all, after a new connect)."""
        if not self.is_mounted:
            return
        self.query_one("#timeline-ladder-header", Static).update(self._ladder_header())
        if not self.ladder_shown:
            return
        log = self.query_one("#timeline-ladder", RichLog)
        ladder = self.ladder
        packets = ladder.packets
        drawn = self._ladder_drawn
        if drawn is None or drawn[0] != ladder.epoch:
            log.clear()
            last = 0
        else:
            last = drawn[1]
        for p in packets:
            if p.n > last:
                log.write(ladder_text(p))
        self._ladder_drawn = (ladder.epoch, packets[-1].n if packets else last)

    def _ladder_header(self) -> Text:
        ladder = self.ladder
        out = Text("Packet ladder", "bold")
        out.append(" of the client's connection", "dim")
        if ladder.reason and not ladder.packets:
            out.append("  " + ladder.reason, "italic #e5c07b")
        elif not ladder.packets:
            out.append("  (no packets yet: connect from the Client pane)", "dim")
        else:
            out.append(f"  {ladder.log.evicted + len(ladder.log)} packets", "dim")
            if ladder.evicted:
                out.append(f", {ladder.evicted} oldest not kept", "dim")
        out.append("  (L: hide)", "dim")
        return out

    # ------------------------------------------------------------------ the model's state, for tests
    @property
    def kernel_state(self) -> str | None:
        return self.model.kernel_state

    @property
    def following_client(self) -> bool:
        return self.model.following_client

    @property
    def client_tuple(self):
        return self.model.client_tuple

    def plain_lines(self) -> list[str]:
        """The timeline as plain text lines (what the log shows, also when the tab is hidden)."""
        t0 = self.model.t0
        return [line_text(line, before, t0).plain for line, before in self.model.rendered()]

    def header_text(self) -> str:
        return self._header().plain

    def graphs_text(self, width: int = 120) -> str:
        """The sparklines as plain text (what the graphs line shows at ``width``), "" without samples."""
        from sockmon.tui.fmt import sparklines

        samples = self.model.samples
        return sparklines(samples, width, 2 if width >= 100 else 1, footer=False).plain if samples.has_data else ""

    # ------------------------------------------------------------------ keys
    def action_follow_client(self) -> None:
        self.model.follow_client()
        self.refresh_view()

    def action_clear_timeline(self) -> None:
        self.model.clear()
        self.refresh_view()

    # ------------------------------------------------------------------ drawing
    def refresh_view(self) -> None:
        """Draw what changed in the model since the last call: appended lines, or everything."""
        if not self.is_mounted:
            return
        quiet_update(self.query_one("#timeline-header", Static), self._header())
        model = self.model
        graphs = self.query_one("#timeline-graphs", Static)
        graphs.display = model.samples.has_data
        if graphs.display:
            graphs.update(Sparklines(model.samples, two_columns_at=100, footer=False))
        rendered = model.rendered()
        log = self.query_one("#timeline-log", RichLog)
        drawn = self._drawn
        width = self._wrap_width(log)
        if drawn is not None and drawn[0] == model.epoch and drawn[1] <= len(rendered):
            new = rendered[drawn[1]:]
        else:
            log.clear()
            new = rendered
        for line, before in new:
            log.write(line_text(line, before, model.t0), width=width)
        self._drawn = (model.epoch, len(rendered))

    def _redraw(self) -> None:
        self._drawn = None
        self.refresh_view()

    def _wrap_width(self, log: RichLog) -> int:
        """The width to wrap lines at: the log's own, or (tab hidden: no size) the terminal's less the
        scrollbar, not RichLog's 78-column fallback."""
        return log.scrollable_content_region.width or max(20, self.app.size.width - 1)

    def on_mount(self) -> None:
        self._redraw()

    def on_resize(self) -> None:
        self.call_after_refresh(self._redraw)  # wrap again for the new width

    def _header(self) -> Text:
        model = self.model
        out = Text()
        if model.following_client:
            out.append("Following: built-in client", "bold")
            if model.client_tuple:
                s, sp, d, dp = model.client_tuple
                out.append(f"  {endpoint(s, sp)} → {endpoint(d, dp)}")
            elif model.client_failed:
                out.append("  connect failed: the socket is closed, there is no connection", "italic")
            else:
                out.append("  (not connected yet: connect from the Client pane)", "dim")
            if model.client_closed and model.client_tuple:
                if model.gone:
                    out.append("  fd closed; the kernel has forgotten the connection", "italic")
                else:
                    out.append("  fd closed; the kernel still holds the 4-tuple", "italic")
        elif model.socket is not None:
            sock = model.socket
            out.append("Following: selected socket", "bold")
            out.append(f"  {endpoint(sock.src, sock.sport)} → {endpoint(sock.dst, sock.dport)}")
        out.append("  kernel: ", "dim")
        if model.kernel_state is None and model.gone:
            out.append("no row", "dim")
        elif model.kernel_state is None and model.following_client and model.client_failed:
            out.append("closed", "dim")
        else:
            out.append_text(state_label(model.kernel_state))
        if model.following_client:
            out.append(f"  in {model.bytes_in} B  out {model.bytes_out} B", "dim")
        elif model.bytes_in is not None:
            out.append(f"  tcp_info: bytes_received {model.bytes_in}  bytes_acked {model.bytes_out}", "dim")
        else:
            out.append("  bytes: no tcp_info for this socket", "dim")
        if not model.following_client:
            out.append("  (f: follow client)", "dim")
        return out


__all__ = ["TimelinePane", "line_text"]
