"""Client pane (lab): connect the built-in client, send, read, and toggle socket options with one key.

The engine (``sockmon.core.lab.client.ClientEngine``) owns the socket and does every socket call in its own
thread; this pane only queues commands (a queue append and a wake-up byte: the UI never waits on a socket;
connecting, which may stop an old engine, runs in a worker) and shows what it reports. Every option shown is the value read back from the kernel, carried by the engine's
events (``Event.options``: after a change, after connect, and whenever the engine's periodic re-read sees
that someone else changed them); the pane never reads a socket itself.

Entering the pane focuses Target (a focused field takes every printable key, digits too); after a
connect succeeds the focus moves to the send box, like a chat client. Text mode sends each line plus its
ending (CRLF by default; ``e`` / ctrl+n cycles none / LF / CRLF, ``E`` / ctrl+t turns C escapes on); a
multi-line paste sends every line. The Received log shows both directions (▶ sent, ◀ received) with
wall-clock times.

Keys (when no input field has focus — Escape leaves a field): ``o`` connect, ``L`` cycle SO_LINGER
off → 0 → N, ``K`` keepalive on/off (idle/intvl/cnt fields), ``n`` TCP_NODELAY, ``u`` TCP_USER_TIMEOUT,
``R``/``W``/``B`` shutdown RD/WR/RDWR, ``g`` graceful close, ``x`` close, ``a`` abort, ``m`` send mode.
Lowercase l/c/k/t/p/r/q stay the app's (pane switching, pause, refresh, quit).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from sockmon.core.errors import SockmonError
from sockmon.core.lab.events import Event, EventKind
from sockmon.core.lab.framing import encode_frame
from sockmon.core.lab.timeline import as_endpoint, connect_dropped_socket
from sockmon.tui.fmt import endpoint
from sockmon.tui.lab.forms import (
    SEND_MODES,
    SEND_PLACEHOLDER,
    CoreValidator,
    LabPane,
    SendInput,
    clock_text,
    data_line,
    ending_text,
    event_error_line,
    field_error,
    hexdump,
    key_line_bindings,
    lifecycle_bindings,
    parse_endpoint_text,
    parse_keep,
    parse_linger_seconds,
    parse_timeout,
    parse_user_timeout,
    request_refresh,
    send_bindings,
    stop_in_background,
)
from sockmon.tui.messages import (
    ClientConnecting,
    ClientEndpointsKnown,
    ClientFdClosed,
    EngineEvent,
    LadderPacketsCaptured,
    LadderUnavailableSeen,
)
from sockmon.tui.theme import state_label
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, RichLog, Select, Static


# ---------------------------------------------------------------------- the pane
class ClientPane(LabPane):
    """Built-in client: connect, send, receive, options with one key, lifecycle actions."""

    DEFAULT_CSS = """
    ClientPane { height: 1fr; padding: 0 1; }
    ClientPane:focus { background: $boost; }
    ClientPane .lab-row { height: 1; margin-top: 1; }
    ClientPane #client-buttons { margin-top: 0; }
    ClientPane .lab-row Label { padding: 0 1 0 0; }
    ClientPane .lab-row Input { margin-right: 1; }
    ClientPane Input.-invalid { background: $error 30%; }
    ClientPane #client-target { width: 28; }
    ClientPane #client-timeout { width: 7; }
    ClientPane #client-linger-n, ClientPane #client-ka-idle, ClientPane #client-ka-intvl { width: 6; }
    ClientPane #client-ka-cnt { width: 5; }
    ClientPane #client-user-timeout { width: 9; }
    ClientPane #client-send-mode { width: 12; margin-right: 1; }
    ClientPane #client-send-text { width: 1fr; }
    ClientPane #client-ending { width: auto; margin-right: 1; }
    ClientPane Button { margin-right: 1; min-width: 5; }
    ClientPane #client-status, ClientPane #client-options { height: auto; }
    ClientPane #client-error { height: auto; min-height: 1; max-height: 3; color: $error; text-style: bold; }
    ClientPane #client-received { height: 1fr; min-height: 3; border: round $primary 50%; }
    """

    TITLE = "Client"
    PREFIX = "client"
    BINDINGS = key_line_bindings([
        Binding("o", "connect", "Connect", id="client.connect",
                tooltip="Connect: to Target with the timeout (again: the old connection is closed first)"),
        Binding("T", "focus_target", "Target", id="client.target",
                tooltip="Target: edit HOST:PORT (Enter connects, Esc leaves the field)"),
        Binding("L", "cycle_linger", "Linger", id="client.linger", tooltip="Linger: SO_LINGER off → 0 → N s → off"),
        Binding("K", "toggle_keepalive", "KA", id="client.keepalive",
                tooltip="KA: SO_KEEPALIVE on (idle / intvl / cnt fields) or off"),
        Binding("n", "toggle_nodelay", "Nodelay", id="client.nodelay", tooltip="Nodelay: TCP_NODELAY on / off"),
        Binding("u", "toggle_user_timeout", "UsrTmo", id="client.user_timeout",
                tooltip="UsrTmo: TCP_USER_TIMEOUT from the usr-tmo field, or back to 0"),
        Binding("g", "graceful_close", "Graceful", id="client.graceful_close",
                tooltip="Graceful: shutdown WR, read to EOF, then close"),
        *lifecycle_bindings("client", what="the connection"),
        Binding("m", "cycle_send_mode", "Mode", id="client.send_mode",
                tooltip="Mode: send text → hex → framed (4-byte length prefix)"),
        *send_bindings("client"),
    ])

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None,
                 engine_factory: Callable | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes, engine_factory=engine_factory)
        self.state: str | None = None
        self.kernel_state: str | None = None
        self.fd_closed = False
        self.kernel_gone = False  # the kernel has no row for our 4-tuple any more
        self.connect_failed = False  # the connect failed: the engine closed the socket
        self.local = None
        self.peer = None
        self.options = None  # SocketOptions read back from the kernel (from the newest event carrying them)
        self.netns: str | None = None  # the app's --netns: the engine runs there
        self.option_lines: dict[str, str] = {}  # last OPTION event detail per option
        self.bytes_in = 0
        self.bytes_out = 0
        self._generation = 0
        self._ladder = None  # the LadderHook of the newest connect (its capture runs in its own thread)
        self._we_closed = False  # we sent FIN first (graceful close / shutdown WR): the peer's FIN is expected
        self._connect_focus = False  # the connect started with the focus in this pane: move it to the send box
        self.clock_text: Callable[..., str] = clock_text  # wall-clock HH:MM:SS.mmm (snapshot tests fix it)

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        with Horizontal(classes="lab-row"):
            yield Label("Target")
            yield Input("127.0.0.1:8080", placeholder="HOST:PORT", id="client-target", compact=True,
                        validators=[CoreValidator(parse_endpoint_text)], validate_on=["changed", "submitted"])
            yield Label("timeout s")
            yield Input("5", id="client-timeout", compact=True, validators=[CoreValidator(parse_timeout)],
                        validate_on=["changed", "submitted"])
            yield Button("Connect (o)", id="client-connect", compact=True, variant="primary")
        yield Static(self._status_text(), id="client-status")
        yield Static(self._options_text(), id="client-options")
        with Horizontal(classes="lab-row"):
            yield Label("linger N")
            yield Input("5", id="client-linger-n", compact=True, validators=[CoreValidator(parse_linger_seconds)],
                        validate_on=["changed", "submitted"])
            yield Label("ka idle")
            yield Input("60", id="client-ka-idle", compact=True, validators=[CoreValidator(parse_keep("idle"))],
                        validate_on=["changed", "submitted"])
            yield Label("intvl")
            yield Input("10", id="client-ka-intvl", compact=True, validators=[CoreValidator(parse_keep("intvl"))],
                        validate_on=["changed", "submitted"])
            yield Label("cnt")
            yield Input("3", id="client-ka-cnt", compact=True, validators=[CoreValidator(parse_keep("cnt"))],
                        validate_on=["changed", "submitted"])
            yield Label("usr-tmo ms")
            yield Input("5000", id="client-user-timeout", compact=True,
                        validators=[CoreValidator(parse_user_timeout)], validate_on=["changed", "submitted"])
        with Horizontal(classes="lab-row"):
            yield Select(SEND_MODES, value="text", allow_blank=False, id="client-send-mode", compact=True)
            yield SendInput("", placeholder=SEND_PLACEHOLDER["text"], id="client-send-text", compact=True,
                            validators=[CoreValidator(self._parse_payload)], validate_on=["submitted"])
            yield Static(ending_text(self.ending, self.escapes), id="client-ending")
            yield Button("Send", id="client-send", compact=True)
        with Horizontal(classes="lab-row", id="client-buttons"):
            yield Button("shut RD", id="client-shut-rd", compact=True)
            yield Button("shut WR", id="client-shut-wr", compact=True)
            yield Button("shut RDWR", id="client-shut-rdwr", compact=True)
            yield Button("graceful", id="client-graceful", compact=True)
            yield Button("close", id="client-close", compact=True)
            yield Button("abort", id="client-abort", compact=True, variant="error")
        yield Static("", id="client-error")
        log = RichLog(id="client-received", wrap=False, highlight=False, markup=False, max_lines=2000)
        log.border_title = "Data (▶ sent ◀ received, text + hex)"
        yield log
        yield self.key_line()

    # ------------------------------------------------------------------ display
    def _status_text(self) -> Text:
        out = Text()
        out.append("State ", "bold")
        if self.connect_failed:
            out.append("closed", "bold")
            out.append(" (the connect failed; no connection, no socket)", "dim")
        elif self.fd_closed:
            out.append("fd closed", "bold")
            out.append("; kernel: ", "dim")
            if self.kernel_gone or self.kernel_state is None:
                out.append("no row left (the kernel forgot the connection)" if self.kernel_gone else "?", "dim")
            else:
                out.append_text(state_label(self.kernel_state))
        elif self.engine is None and self.state is None:
            out.append("not connected", "dim")
        else:
            out.append_text(state_label(self.state))
        loc, per = as_endpoint(self.local), as_endpoint(self.peer)
        if loc and per:
            out.append(f"  {endpoint(*loc)} → {endpoint(*per)}")
        out.append(f"  sent {self.bytes_out} B  recv {self.bytes_in} B", "dim")
        return out

    def _options_text(self) -> Text:
        opts = self.options
        out = Text()
        if opts is None:
            out.append("Options (read back from the kernel): not connected", "dim")
            return out
        linger = opts.linger
        out.append("L ", "bold #e5c07b")
        out.append("SO_LINGER ")
        if not linger.enabled:
            out.append("off", "bold")
        elif linger.seconds == 0:
            out.append("0 (close sends RST)", "bold #ff6b6b")
        else:
            out.append(f"{linger.seconds} s", "bold")
        out.append("   K ", "bold #e5c07b")
        ka = opts.keepalive
        out.append("SO_KEEPALIVE ")
        out.append("on" if ka.enabled else "off", "bold")
        out.append(f" idle {ka.idle} intvl {ka.intvl} cnt {ka.cnt}")
        out.append("   n ", "bold #e5c07b")
        out.append("TCP_NODELAY ")
        out.append("on" if opts.nodelay else "off", "bold")
        out.append("   u ", "bold #e5c07b")
        out.append("TCP_USER_TIMEOUT ")
        out.append(f"{opts.user_timeout_ms} ms" if opts.user_timeout_ms else "0 (default)", "bold")
        out.append("\nDead peer: ", "bold")
        out.append(self.dead_peer_text())
        return out

    def dead_peer_text(self) -> str:
        opts = self.options
        if opts is None:
            return "?"
        ka, ut = opts.keepalive, opts.user_timeout_ms
        if not ka.enabled:
            text = "not detected while idle (keepalive off)"
            if ut:
                text += f"; unacknowledged data gives up after {ut / 1000:g} s (TCP_USER_TIMEOUT)"
            return text
        import time

        from sockmon.core.lab.options import dead_peer

        # the engine's newest tcp_info sample: when the last segment (data or ACK) arrived
        last = getattr(self.engine, "last_received_at", None) if self.engine is not None else None
        since_ms = None if not isinstance(last, float) else max(0.0, (time.monotonic() - last) * 1000.0)
        dp = dead_peer(ka, user_timeout_ms=ut, since_recv_ms=since_ms)
        text = (f"if the peer went silent, the kernel gives up {dp.at_s:g} s after the last segment received "
                f"({dp.formula}) with ETIMEDOUT")
        if ut:
            text += "; TCP_USER_TIMEOUT replaces the probe count"
        if dp.remaining_s is not None and not self.fd_closed:
            text += f"; last received {since_ms / 1000:.1f} s ago → in {dp.remaining_s:.0f} s"
        return text

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick_display)
        self._show_ending()

    def _tick_display(self) -> None:
        if self.options is not None and self.options.keepalive.enabled:
            self._refresh_display()  # the dead-peer countdown

    def _refresh_display(self) -> None:
        if not self.is_mounted:
            return
        self.query_one("#client-status", Static).update(self._status_text())
        self.query_one("#client-options", Static).update(self._options_text())

    def kernel_state_seen(self, state: str | None, *, gone: bool = False, closed: bool = False,
                          failed: bool = False) -> None:
        """The app's timeline model learnt the kernel's state of our connection (transition, snapshot row)."""
        changed = (state, gone) != (self.kernel_state, self.kernel_gone) or (failed and not self.connect_failed)
        self.kernel_state, self.kernel_gone = state, gone
        if failed:
            self.connect_failed = True
            self.state = None
        if changed and (closed or self.fd_closed or failed):
            self._refresh_display()

    # ------------------------------------------------------------------ input handling
    def _parse_payload(self, text: str) -> bytes:
        return self.payload_from(text)

    def focus_entry(self) -> None:
        self.query_one("#client-target", Input).focus()

    def action_focus_target(self) -> None:
        self.focus_entry()

    @on(Input.Submitted, "#client-target, #client-timeout")
    def _submit_connect(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_connect()
        self.done_with_field()

    @on(Input.Submitted, "#client-send-text")
    def _submit_send(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_send()

    @on(SendInput.MultiLinePaste, "#client-send-text")
    def _paste_lines(self, event: SendInput.MultiLinePaste) -> None:
        self.send_pasted(event)

    @on(Input.Submitted, "#client-linger-n")
    def _submit_linger(self, event: Input.Submitted) -> None:
        event.stop()
        if field_error(self, [event.input]) is None:
            self._apply_linger_n()
            self.done_with_field()

    @on(Input.Submitted, "#client-ka-idle, #client-ka-intvl, #client-ka-cnt")
    def _submit_keepalive(self, event: Input.Submitted) -> None:
        event.stop()
        ka = self._keepalive_from_fields()
        if ka is not None and self._connected_engine("set SO_KEEPALIVE") is not None:
            self._command("set_keepalive", ka)
            self.done_with_field()

    @on(Input.Submitted, "#client-user-timeout")
    def _submit_user_timeout(self, event: Input.Submitted) -> None:
        event.stop()
        if field_error(self, [event.input]) is None and self._connected_engine("set TCP_USER_TIMEOUT") is not None:
            self._command("set_user_timeout", parse_user_timeout(event.value))
            self.done_with_field()

    @on(Select.Changed, "#client-send-mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        self.show_send_placeholder(event.value)

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        actions = {
            "client-connect": self.action_connect, "client-send": self.action_send,
            "client-shut-rd": lambda: self.action_shutdown("rd"),
            "client-shut-wr": lambda: self.action_shutdown("wr"),
            "client-shut-rdwr": lambda: self.action_shutdown("rdwr"),
            "client-graceful": self.action_graceful_close, "client-close": self.action_close,
            "client-abort": self.action_abort,
        }
        fn = actions.get(event.button.id or "")
        if fn is not None:
            event.stop()
            fn()

    # ------------------------------------------------------------------ actions
    def action_connect(self) -> None:
        target = self.query_one("#client-target", Input)
        timeout_field = self.query_one("#client-timeout", Input)
        if field_error(self, [target, timeout_field]) is not None:
            return
        ep = parse_endpoint_text(target.value)
        timeout = parse_timeout(timeout_field.value)
        self.clear_error()
        old = self.engine
        note = self._replacing_note() if old is not None else None
        self._connect_focus = self._focus_in_pane()
        self._generation += 1
        generation = self._generation
        try:
            self.engine = self._make_engine(generation)
        except Exception as exc:  # noqa: BLE001 - engine missing or failed to start
            self.engine = old
            self.show_error(f"cannot start the client engine: {exc}")
            return
        self.state = None
        self.kernel_state = None
        self.fd_closed = self.kernel_gone = self.connect_failed = False
        self._we_closed = False
        self.local = self.peer = None
        self.options = None
        self.bytes_in = self.bytes_out = 0
        log = self.query_one("#client-received", RichLog)
        log.clear()
        if note:
            log.write(Text(f"{clock_text()} {note}", style="bold #e5c07b"))
            self.notify(note, title="Client", markup=False, timeout=6)
        self.post_message(ClientConnecting(generation))
        self._refresh_display()
        self._connect_in_thread(old, self.engine, ep.host, ep.port, timeout)

    def _replacing_note(self) -> str | None:
        """What a new connect does to the one still open (None when there is none left)."""
        if self.fd_closed or self.connect_failed or self.state is None:
            return None
        loc, per = as_endpoint(self.local), as_endpoint(self.peer)
        which = f"{endpoint(*loc)} → {endpoint(*per)}" if loc and per else "the connection in progress"
        linger = self.options.linger if self.options is not None else None
        if linger is not None and linger.enabled and linger.seconds == 0:
            how = "close() with SO_LINGER 0: RST, no TIME_WAIT"
        else:
            how = "close(): FIN, our side then goes FIN_WAIT → TIME_WAIT (60 s)"
        return f"the old connection {which} is closed by {how}; a new one starts"

    def _focus_in_pane(self) -> bool:
        focused = self.app.focused
        return focused is not None and self in focused.ancestors_with_self

    @work(thread=True, group="client-engine", exit_on_error=False)
    def _connect_in_thread(self, old, engine, host: str, port: int, timeout: float) -> None:
        if old is not None:
            try:
                old.stop()
            except Exception:  # noqa: BLE001 - the old engine is being dropped anyway
                pass
        try:
            engine.connect(host, port, timeout=timeout)
        except SockmonError as exc:
            self.app.call_from_thread(self.show_error, str(exc))
        except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
            self.app.call_from_thread(self.show_error, f"connect failed: {exc}")

    def _make_engine(self, generation: int):
        def on_event(event: Event) -> None:  # engine thread
            if generation != self._generation:
                return  # a replaced engine (connect pressed again) tearing down: not this connection
            self.post_message(EngineEvent(event, "client", generation))

        if self._engine_factory is not None:
            return self._engine_factory(on_event)
        from sockmon.core.lab.client import ClientEngine

        return ClientEngine(on_event, sample_interval=0.2, netns=self.netns,
                            before_connect=self._ladder_hook(generation))

    def _ladder_hook(self, generation: int):
        """The packet ladder of this connect (shown in the Timeline): a capture started by the engine
        just before connect() (core/lab/ladder.py); packets reach the app in batches, off the UI thread."""
        from sockmon.core.lab.ladder import LadderHook, PacketQueue

        if self._ladder is not None:
            self._ladder.stop()
        queue = PacketQueue()

        def on_packet(packet) -> None:  # capture thread
            if queue.put(packet):
                self.post_message(LadderPacketsCaptured(queue, generation))

        def on_unavailable(reason: str) -> None:  # engine thread
            self.post_message(LadderUnavailableSeen(reason, generation))

        self._ladder = LadderHook(on_packet, on_unavailable)
        return self._ladder

    def _connected_engine(self, what: str):
        if self.engine is None:
            self.show_error(f"cannot {what}: not connected (press o to connect)")
            return None
        return self.engine

    def _send_payload(self, text: str) -> bool:
        mode = self._send_mode()
        try:
            payload = self.payload_from(text)
        except SockmonError as exc:
            self.show_error(str(exc))
            return False
        if self._connected_engine("send") is None:
            return False
        self.clear_error()
        self._command("send_framed" if mode == "framed" else "send", payload)
        if self.last_error is None:
            self._show_sent(encode_frame(payload) if mode == "framed" else payload)
        return self.last_error is None

    def action_cycle_linger(self) -> None:
        from sockmon.core.lab.options import Linger

        if self._connected_engine("set SO_LINGER") is None:
            return
        current = self.options.linger if self.options is not None else Linger(False, 0)
        if not current.enabled:
            self._command("set_linger", Linger(True, 0))
        elif current.seconds == 0:
            self._apply_linger_n()
        else:
            self._command("set_linger", Linger(False, 0))

    def _apply_linger_n(self) -> None:
        from sockmon.core.lab.options import Linger

        field = self.query_one("#client-linger-n", Input)
        if field_error(self, [field]) is not None:
            return
        if self._connected_engine("set SO_LINGER") is None:
            return
        self._command("set_linger", Linger(True, parse_linger_seconds(field.value)))

    def _keepalive_from_fields(self):
        from sockmon.core.lab.options import Keepalive

        fields = [self.query_one(f"#client-ka-{n}", Input) for n in ("idle", "intvl", "cnt")]
        if field_error(self, fields) is not None:
            return None
        try:
            return Keepalive(True, *(int(f.value.strip()) for f in fields))
        except SockmonError as exc:
            self.show_error(str(exc))
            return None

    def action_toggle_keepalive(self) -> None:
        from sockmon.core.lab.options import Keepalive

        if self._connected_engine("set SO_KEEPALIVE") is None:
            return
        if self.options is not None and self.options.keepalive.enabled:
            ka = self.options.keepalive
            self._command("set_keepalive", Keepalive(False, ka.idle, ka.intvl, ka.cnt))
            return
        ka = self._keepalive_from_fields()
        if ka is not None:
            self._command("set_keepalive", ka)

    def action_toggle_nodelay(self) -> None:
        if self._connected_engine("set TCP_NODELAY") is None:
            return
        current = bool(self.options.nodelay) if self.options is not None else False
        self._command("set_nodelay", not current)

    def action_toggle_user_timeout(self) -> None:
        if self._connected_engine("set TCP_USER_TIMEOUT") is None:
            return
        if self.options is not None and self.options.user_timeout_ms:
            self._command("set_user_timeout", 0)
            return
        field = self.query_one("#client-user-timeout", Input)
        if field_error(self, [field]) is not None:
            return
        self._command("set_user_timeout", parse_user_timeout(field.value))

    def action_shutdown(self, how: str) -> None:
        if self._connected_engine(f"shutdown {how}") is not None:
            self._we_closed = self._we_closed or how in ("wr", "rdwr")
            self._command("shutdown", how)

    def action_graceful_close(self) -> None:
        if self._connected_engine("close") is not None:
            self._we_closed = True
            self._command("graceful_close")

    def action_close(self) -> None:
        if self._connected_engine("close") is not None:
            self._command("close")

    def action_abort(self) -> None:
        if self._connected_engine("abort") is not None:
            self._command("abort")

    def _command(self, method: str, *args) -> None:
        """Queue one engine command (it runs in the engine thread; its event carries the read-back)."""
        self.clear_error()
        engine = self.engine
        try:
            getattr(engine, method)(*args)  # queues and returns at once (option setters: a Future)
        except SockmonError as exc:
            self.show_error(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
            self.show_error(f"{method} failed: {exc}")
            return
        request_refresh(self.app)

    def _endpoints_known(self, local, peer) -> None:
        if local is not None and peer is not None and (self.local is None or self.peer is None):
            self.local, self.peer = tuple(local), tuple(peer)
            self.post_message(ClientEndpointsKnown(self.local, self.peer))
            if self._connect_focus and self._focus_in_pane():
                self.query_one("#client-send-text", Input).focus()  # connected: type what to send

    # ------------------------------------------------------------------ engine events (UI thread)
    def on_engine_event(self, message: EngineEvent) -> None:
        if message.origin != "client":
            return
        if message.generation is not None and message.generation != self._generation:
            message.stop()  # queued before a new connect: neither this pane nor the timeline shows it
            return
        ev = message.event
        if ev.state and not self.fd_closed:
            self.state = ev.state
        if ev.kind is EventKind.BYTES_IN and ev.nbytes:
            self.bytes_in += ev.nbytes
            if ev.data:
                self._show_received(ev.data, self.clock_text(ev.ts))
        elif ev.kind is EventKind.BYTES_OUT and ev.nbytes:
            self.bytes_out += ev.nbytes
        elif ev.kind in (EventKind.FAILED, EventKind.ERROR, EventKind.RESET):
            if connect_dropped_socket(ev):  # the engine closed the socket it was connecting
                self.connect_failed = True
                self.state = None
            line = event_error_line(ev)
            # SockmonApp notifies FAILED/ERROR events itself: then show them inline only.
            app_notifies = ev.kind is not EventKind.RESET and getattr(self.app, "NOTIFIES_ENGINE_FAILURES", False)
            self.show_error(line, notify=not app_notifies)
        elif ev.kind is EventKind.CLOSED:
            self.fd_closed = True
            self.post_message(ClientFdClosed())
            request_refresh(self.app)
        elif ev.kind is EventKind.PEER_CLOSED and not self._we_closed:
            self.notify("peer closed its side (recv returned 0): close or shut down WR",
                        title="Client", markup=False)
        options = getattr(ev, "options", None)
        if options is not None:
            self.options = options
        self._endpoints_known(getattr(ev, "local", None), getattr(ev, "peer", None))
        if ev.kind is EventKind.RETURNED:
            request_refresh(self.app)
        self._refresh_display()

    def _show_received(self, data: bytes, at: str | None = None) -> None:
        log = self.query_one("#client-received", RichLog)
        log.write(data_line("in", data, at or self.clock_text()))  # peer bytes: inert
        for line in hexdump(data, self.bytes_in - len(data))[:64]:
            log.write(Text("   " + line, style="dim"))

    def _show_sent(self, data: bytes, at: str | None = None) -> None:
        log = self.query_one("#client-received", RichLog)
        log.write(data_line("out", data, at or self.clock_text()))
        for line in hexdump(data)[:16]:
            log.write(Text("   " + line, style="dim"))

    def on_unmount(self) -> None:
        if self._ladder is not None:
            self._ladder.stop()
        engine, self.engine = self.engine, None
        self._generation += 1
        if engine is not None:
            stop_in_background(engine, "client-pane-stop")
