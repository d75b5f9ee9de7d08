"""Server pane (lab): start/stop the built-in server, see its clients and act on each one.

The engine (``sockmon.core.lab.server.ServerEngine``) runs its own selector thread; this pane sends it
commands from worker threads and shows what it reports (``EngineEvent`` messages, origin "server").
The host defaults to 127.0.0.1, never 0.0.0.0. The mode can be changed while running.

Keys (when no input field has focus — Escape leaves a field): ``s`` start/stop, ``m`` opens the mode
picker (a direct choice: switching no-accept → echo never passes through close / reset), ``C`` focuses
the client list, ``A`` sends to all clients instead of the selected one, ``M`` send mode (text / hex /
framed), ``e`` / ``E`` line ending and C escapes (as in the Client pane), ``R``/``W``/``B`` shutdown
RD/WR/RDWR of the selected client, ``x`` close it, ``a`` abort it (RST).

Clients are listed sorted by peer address and port. The listener's accept queue (queued / backlog) comes
from the app's latest socket snapshot: the app hands the listener's row to the pane (`ListenerRow`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from rich.text import Text
from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab.events import EventKind
from sockmon.core.lab.framing import encode_frame
from sockmon.core.lab.timeline import as_endpoint
from sockmon.core.text import inert
from sockmon.tui.fmt import endpoint, event_text
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
    key_line_bindings,
    lifecycle_bindings,
    parse_int,
    request_refresh,
    send_bindings,
    stop_in_background,
)
from sockmon.tui.messages import EngineEvent, ListenerRow
from sockmon.tui.theme import state_label
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, DataTable, Input, Label, RichLog, Select, Static, Switch

try:
    from sockmon.core.lab.server import MODES as _ENGINE_MODES
except Exception:  # noqa: BLE001 - engine not there yet
    _ENGINE_MODES = ("echo", "discard", "hold", "no-accept", "close", "reset")

MODES: tuple[str, ...] = tuple(_ENGINE_MODES)
MODE_HELP = {
    "echo": "echo: send back what arrives",
    "discard": "discard: read and drop",
    "hold": "hold: accept, never read (receive queue fills)",
    "no-accept": "no-accept: listen only, the accept queue fills",
    "close": "close: accept then close (FIN)",
    "reset": "reset: accept then abort (RST)",
}
MAX_BACKLOG = 65535


def parse_host(text: str) -> str:
    raw = (text or "").strip()
    if not raw:
        raise BadInput("empty host: use e.g. 127.0.0.1 (or ::1)")
    if any(c.isspace() for c in raw) or "/" in raw:
        raise BadInput(f"bad host {raw!r}: give an address or name, e.g. 127.0.0.1")
    return raw.strip("[]")


def parse_server_port(text: str) -> int:
    from sockmon.core.lab.address import parse_port

    return parse_port(text)


def parse_backlog(text: str) -> int:
    return parse_int(text, "backlog", 0, MAX_BACKLOG)


def parse_linger_text(text: str):
    from sockmon.core.lab.options import Linger

    return Linger.parse(text)


def parse_keepalive_text(text: str):
    from sockmon.core.lab.options import Keepalive

    return Keepalive.parse(text)


def options_summary(opts) -> str:
    """``linger off · ka 60/10/3 (90 s)`` from SocketOptions read back from the kernel."""
    linger = opts.linger
    lg = "off" if not linger.enabled else ("0 (RST)" if linger.seconds == 0 else f"{linger.seconds}s")
    ka = opts.keepalive
    kas = f"ka {ka.idle}/{ka.intvl}/{ka.cnt} ({ka.dead_peer_seconds}s)" if ka.enabled else "ka off"
    return f"linger {lg} · {kas}"


def _cell(value) -> str:
    return "" if value is None else str(value)


def peer_order(client) -> tuple:
    """Sort key of a client row: peer address (numerically, v4 before v6), then port."""
    peer = as_endpoint(getattr(client, "peer", None))
    if not peer:
        return (2, 0, 0, str(getattr(client, "id", "")))
    try:
        ip = ipaddress.ip_address(str(peer[0]).split("%")[0])
        return (0 if ip.version == 4 else 1, int(ip), int(peer[1]), "")
    except ValueError:
        return (2, 0, int(peer[1]) if str(peer[1]).isdigit() else 0, str(peer[0]))


class ServerPane(LabPane):
    """Built-in server: form, start/stop, clients with per-client actions, event log."""

    DEFAULT_CSS = """
    ServerPane { height: 1fr; padding: 0 1; }
    ServerPane:focus { background: $boost; }
    ServerPane .lab-row { height: 1; margin-top: 1; }
    ServerPane .lab-row Label { padding: 0 1 0 0; }
    ServerPane .lab-row Input { margin-right: 1; }
    ServerPane Input.-invalid { background: $error 30%; }
    ServerPane #server-host { width: 16; }
    ServerPane #server-port { width: 7; }
    ServerPane #server-backlog { width: 6; }
    ServerPane #server-mode { width: 14; }
    ServerPane Switch { height: 1; border: none; padding: 0; margin-right: 1; width: auto; }
    ServerPane #server-send-text { width: 1fr; min-width: 10; }
    ServerPane #server-send-mode { width: 12; margin-right: 1; }
    ServerPane #server-ending, ServerPane #server-send-to { width: auto; margin-right: 1; }
    ServerPane #server-linger { width: 6; }
    ServerPane #server-keepalive { width: 10; }
    ServerPane Button { margin-right: 1; min-width: 5; }
    ServerPane #server-row-start { height: auto; }
    ServerPane #server-status { width: 1fr; height: auto; }
    ServerPane #server-error { height: auto; min-height: 1; max-height: 3; color: $error; text-style: bold; }
    ServerPane #server-clients { height: 2fr; min-height: 3; }
    ServerPane #server-log { height: 1fr; min-height: 4; border: round $primary 50%; }
    """

    TITLE = "Server"
    PREFIX = "server"
    BINDINGS = key_line_bindings([
        Binding("s", "toggle_server", "Start/stop", id="server.toggle",
                tooltip="Start/stop: the server on host:port with backlog, mode and SO_REUSEADDR"),
        Binding("m", "pick_mode", "Mode", id="server.mode",
                tooltip="Mode: pick echo / discard / hold / no-accept / close / reset directly (also while running)"),
        Binding("C", "focus_clients", "Clients", id="server.clients",
                tooltip="Clients: focus the client list (arrows pick the client the actions act on)"),
        *lifecycle_bindings("server", what="the selected client"),
        Binding("A", "toggle_send_all", "To all", id="server.send_all",
                tooltip="To all: send to every client, or to the selected one only"),
        Binding("M", "cycle_send_mode", "Data", id="server.send_mode",
                tooltip="Data: send text → hex → framed (4-byte length prefix)"),
        *send_bindings("server"),
    ])

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None,
                 engine_factory: Callable | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes, engine_factory=engine_factory)
        self.address = None
        self.mode = "echo"
        self.clients: list = []
        self._options: dict[str, str] = {}  # client id -> options read back from the kernel
        self._starting = False
        self._generation = 0
        self.netns: str | None = None  # the app's --netns: the server listens there
        self.send_all = False  # the send box sends to every client (else to the selected one)
        self.listener = None  # the listener's Socket row from the app's latest snapshot (accept queue)
        self.clock_text = clock_text  # wall-clock HH:MM:SS.mmm (snapshot tests fix it)

    def compose(self) -> ComposeResult:
        with Horizontal(classes="lab-row"):
            yield Label("Host")
            yield Input("127.0.0.1", id="server-host", compact=True, validators=[CoreValidator(parse_host)],
                        validate_on=["changed", "submitted"])
            yield Label("port")
            yield Input("8080", id="server-port", compact=True, validators=[CoreValidator(parse_server_port)],
                        validate_on=["changed", "submitted"])
            yield Label("backlog")
            yield Input("16", id="server-backlog", compact=True, validators=[CoreValidator(parse_backlog)],
                        validate_on=["changed", "submitted"])
            yield Label("mode")
            yield Select([(m, m) for m in MODES], value="echo", allow_blank=False, id="server-mode", compact=True)
        with Horizontal(classes="lab-row", id="server-row-start"):
            yield Label("SO_REUSEADDR")
            yield Switch(True, id="server-reuseaddr")
            yield Label("on", id="server-reuseaddr-label")
            yield Button("Start (s)", id="server-start", compact=True, variant="primary")
            yield Static(self._status_text(), id="server-status")
        yield Static("", id="server-error")
        yield DataTable(id="server-clients", cursor_type="row", zebra_stripes=True)
        with Horizontal(classes="lab-row"):
            yield Select(SEND_MODES, value="text", allow_blank=False, id="server-send-mode", compact=True)
            yield SendInput("", placeholder=SEND_PLACEHOLDER["text"], id="server-send-text", compact=True)
            yield Static(ending_text(self.ending, self.escapes), id="server-ending")
            yield Static(self._send_to_text(), id="server-send-to")
            yield Button("Send", id="server-send", compact=True)
        with Horizontal(classes="lab-row"):
            yield Label("client: linger")
            yield Input("off", id="server-linger", compact=True, validators=[CoreValidator(parse_linger_text)],
                        validate_on=["changed", "submitted"])
            yield Button("set", id="server-set-linger", compact=True)
            yield Label("ka")
            yield Input("60,10,3", id="server-keepalive", compact=True,
                        validators=[CoreValidator(parse_keepalive_text)], validate_on=["changed", "submitted"])
            yield Button("set", id="server-set-keepalive", compact=True)
            yield Button("shut RD", id="server-shut-rd", compact=True)
            yield Button("shut WR", id="server-shut-wr", compact=True)
            yield Button("shut RDWR", id="server-shut-rdwr", compact=True)
            yield Button("close", id="server-close", compact=True)
            yield Button("abort", id="server-abort", compact=True, variant="error")
        log = RichLog(id="server-log", wrap=False, highlight=False, markup=False, max_lines=500)
        log.border_title = "Server events (▶ sent ◀ received)"
        yield log
        yield self.key_line()

    def on_mount(self) -> None:
        table = self.query_one("#server-clients", DataTable)
        for label, key in (("client (peer)", "id"), ("local", "local"), ("state", "state"),
                           ("in B", "in"), ("out B", "out"), ("flags", "flags"),
                           ("options (read back)", "options")):
            table.add_column(label, key=key)
        self.set_interval(1.0, self._tick)
        self._show_ending()

    # ------------------------------------------------------------------ display
    def _status_text(self) -> Text:
        out = Text()
        if self.engine is None:
            out.append("Server ", "bold")
            out.append("stopped", "dim")
            out.append("  (s starts it)", "dim")
            return out
        out.append("Server ", "bold")
        if self._starting:
            out.append("starting…", "italic")
        else:
            out.append_text(state_label("LISTEN"))
            addr = as_endpoint(self.address)
            if addr:
                out.append(f" on {endpoint(*addr)}")
        out.append("  mode ", "dim")
        out.append(self.mode, "bold")
        out.append(f"  clients {len(self.clients)}", "dim")
        lst = self.listener
        if lst is not None and not self._starting:
            out.append("  queue ", "dim")
            # a LISTEN row: Recv-Q = connections waiting for accept(), Send-Q = the backlog
            out.append(f"{lst.recv_q}/{lst.send_q}", "bold #ff6b6b" if lst.recv_q > lst.send_q else "bold")
            out.append(" (queued/backlog)", "dim")
        out.append(f"  {MODE_HELP.get(self.mode, self.mode)}", "dim")
        return out

    def _refresh_display(self) -> None:
        if not self.is_mounted:
            return
        self.query_one("#server-status", Static).update(self._status_text())
        self.query_one("#server-start", Button).label = "Stop (s)" if self.engine is not None else "Start (s)"

    def _fill_table(self) -> None:
        table = self.query_one("#server-clients", DataTable)
        selected = self.selected_client_id()
        table.clear()
        cursor = 0
        for i, cl in enumerate(self.clients):
            cid = str(getattr(cl, "id", i))
            peer = as_endpoint(getattr(cl, "peer", None))
            local = as_endpoint(getattr(cl, "local", None))
            state = getattr(cl, "state", None)
            state_cell = state_label(state) if isinstance(state, str) else Text(_cell(state))
            flags = [name for attr, name in (("read_shut", "RD shut"), ("write_shut", "WR shut"),
                                             ("peer_closed", "peer FIN")) if getattr(cl, attr, False)]
            pending = getattr(cl, "pending_out", 0)
            if pending:
                flags.append(f"{pending} B queued")
            name = endpoint(*peer) if peer else cid
            cells = (name, endpoint(*local) if local else "", state_cell,
                     _cell(getattr(cl, "bytes_in", "")), _cell(getattr(cl, "bytes_out", "")),
                     ", ".join(flags), self._options.get(cid, ""))
            # DataTable parses str cells as markup: "[fe80::1]:80" would lose its address. Text is literal.
            table.add_row(*(c if isinstance(c, Text) else Text(inert(str(c))) for c in cells), key=cid)
            if selected is not None and cid == str(selected):
                cursor = i
        if self.clients:
            table.move_cursor(row=cursor)

    def selected_client_id(self):
        if not self.is_mounted:
            return None
        table = self.query_one("#server-clients", DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        except Exception:  # noqa: BLE001 - cursor out of range during a refresh
            return None
        for i, cl in enumerate(self.clients):
            cid = getattr(cl, "id", i)
            if str(cid) == key:
                return cid
        return None

    # ------------------------------------------------------------------ inputs and buttons
    @on(Input.Submitted, "#server-host, #server-port, #server-backlog")
    def _submit_form(self, event: Input.Submitted) -> None:
        event.stop()
        if self.engine is None:
            self.action_toggle_server()
        self.done_with_field()

    @on(Input.Submitted, "#server-send-text")
    def _submit_send(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_send()

    @on(Input.Submitted, "#server-linger")
    def _submit_linger(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_set_linger()

    @on(Input.Submitted, "#server-keepalive")
    def _submit_keepalive(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_set_keepalive()

    @on(Switch.Changed, "#server-reuseaddr")
    def _reuse_changed(self, event: Switch.Changed) -> None:
        self.query_one("#server-reuseaddr-label", Label).update("on" if event.value else "off")

    @on(Select.Changed, "#server-mode")
    def _mode_changed(self, event: Select.Changed) -> None:
        mode = str(event.value)
        if mode == self.mode:
            return
        self.mode = mode
        if self.engine is not None and not self._starting:
            self._call(self.engine, "set_mode", mode)
        self._refresh_display()

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        actions = {
            "server-start": self.action_toggle_server, "server-send": self.action_send,
            "server-shut-rd": lambda: self.action_shutdown("rd"),
            "server-shut-wr": lambda: self.action_shutdown("wr"),
            "server-shut-rdwr": lambda: self.action_shutdown("rdwr"),
            "server-close": self.action_close, "server-abort": self.action_abort,
            "server-set-linger": self.action_set_linger, "server-set-keepalive": self.action_set_keepalive,
        }
        fn = actions.get(event.button.id or "")
        if fn is not None:
            event.stop()
            fn()

    # ------------------------------------------------------------------ actions
    def action_pick_mode(self) -> None:
        """Open the mode list: the choice is applied directly (never via the modes in between)."""
        select = self.query_one("#server-mode", Select)
        select.focus()
        select.action_show_overlay()

    def action_focus_clients(self) -> None:
        self.query_one("#server-clients", DataTable).focus()

    def action_toggle_send_all(self) -> None:
        self.send_all = not self.send_all
        if self.is_mounted:
            self.query_one("#server-send-to", Static).update(self._send_to_text())

    def _send_to_text(self) -> Text:
        return Text.assemble(("→ ", "dim"), ("all clients" if self.send_all else "selected", "bold"))

    @on(Select.Changed, "#server-send-mode")
    def _send_mode_changed(self, event: Select.Changed) -> None:
        self.show_send_placeholder(event.value)

    def on_listener_row(self, message: ListenerRow) -> None:
        """The app's latest snapshot holds this row for our listener (None: no row)."""
        message.stop()
        if self.listener != message.socket:
            self.listener = message.socket
            self._refresh_display()

    def action_toggle_server(self) -> None:
        if self._starting:
            return
        if self.engine is not None:
            engine, self.engine = self.engine, None
            self.clients = []
            self.address = None
            self.listener = None
            self._generation += 1
            self._stop_engine(engine)
            self._fill_table()
            self._refresh_display()
            return
        fields = [self.query_one(f"#server-{n}", Input) for n in ("host", "port", "backlog")]
        if field_error(self, fields) is not None:
            return
        host = parse_host(fields[0].value)
        port = parse_server_port(fields[1].value)
        backlog = parse_backlog(fields[2].value)
        reuse = self.query_one("#server-reuseaddr", Switch).value
        mode = self.mode
        self.clear_error()

        def on_event(event) -> None:  # engine thread
            self.post_message(EngineEvent(event, "server"))

        try:
            if self._engine_factory is not None:
                engine = self._engine_factory(host, port, mode=mode, backlog=backlog, reuseaddr=reuse,
                                              on_event=on_event)
            else:
                from sockmon.core.lab.server import ServerEngine

                engine = ServerEngine(host, port, mode=mode, backlog=backlog, reuseaddr=reuse, on_event=on_event,
                                      netns=self.netns)
        except SockmonError as exc:
            self.show_error(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - engine missing or refused the arguments
            self.show_error(f"cannot create the server: {exc}")
            return
        self.engine = engine
        self._starting = True
        self._generation += 1
        self._refresh_display()
        self._start_engine(engine, self._generation)

    @work(thread=True, group="server-start", exit_on_error=False)
    def _start_engine(self, engine, generation: int) -> None:
        try:
            engine.start()
        except SockmonError as exc:
            self.app.call_from_thread(self._start_failed, generation, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
            self.app.call_from_thread(self._start_failed, generation, f"start failed: {exc}")
            return
        self.app.call_from_thread(self._started, generation, getattr(engine, "address", None))

    def _start_failed(self, generation: int, message: str) -> None:
        if generation != self._generation:
            return
        self.engine = None
        self._starting = False
        self.show_error(message)
        self._refresh_display()

    def _started(self, generation: int, address) -> None:
        if generation != self._generation:
            return
        self._starting = False
        self.address = address
        self._refresh_display()
        request_refresh(self.app)
        self._poll_clients()

    @work(thread=True, group="server-stop", exit_on_error=False)
    def _stop_engine(self, engine) -> None:
        try:
            engine.stop()
        except Exception as exc:  # noqa: BLE001
            self.app.call_from_thread(self.show_error, f"stop failed: {exc}")
        self.app.call_from_thread(request_refresh, self.app)

    def _need_client(self, what: str):
        if self.engine is None or self._starting:
            self.show_error(f"cannot {what}: the server is not running (press s to start it)")
            return None
        cid = self.selected_client_id()
        if cid is None:
            self.show_error(f"cannot {what}: no client selected (connect one, then pick it in the list)")
            return None
        return cid

    @on(SendInput.MultiLinePaste, "#server-send-text")
    def _paste_lines(self, event: SendInput.MultiLinePaste) -> None:
        self.send_pasted(event)

    def _send_payload(self, text: str) -> bool:
        """Send the box's bytes to the selected client or to all; each send is logged (▶)."""
        try:
            payload = self.payload_from(text)
        except SockmonError as exc:
            self.show_error(str(exc))
            return False
        if self._send_mode() == "framed":
            payload = encode_frame(payload)
        if self.send_all:
            if self.engine is None or self._starting:
                self.show_error("cannot send: the server is not running (press s to start it)")
                return False
            targets = [str(getattr(c, "id", "")) for c in self.clients]
            if not targets:
                self.show_error("cannot send: no client connected (none accepted yet)")
                return False
        else:
            cid = self._need_client("send")
            if cid is None:
                return False
            targets = [cid]
        self.clear_error()
        self._send_to(self.engine, targets, payload)  # one worker for all of them (each send only queues)
        who = f"all {len(targets)} clients" if self.send_all else str(targets[0])
        self.query_one("#server-log", RichLog).write(data_line("out", payload, self.clock_text(), who))
        return True

    @work(thread=True, group="server-send", exit_on_error=False)
    def _send_to(self, engine, targets: list[str], payload: bytes) -> None:
        failed: list[str] = []
        for cid in targets:
            try:
                engine.send(cid, payload)
            except SockmonError as exc:  # this client went away meanwhile: say so, send to the others
                failed.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
                failed.append(f"send failed: {exc}")
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            self.app.call_from_thread(self.show_error, failed[0] + more)
        self.app.call_from_thread(request_refresh, self.app)
        self.app.call_from_thread(self._poll_clients)

    def action_shutdown(self, how: str) -> None:
        cid = self._need_client(f"shutdown {how}")
        if cid is not None:
            self._call(self.engine, "shutdown", cid, how)

    def action_close(self) -> None:
        cid = self._need_client("close")
        if cid is not None:
            self._call(self.engine, "close", cid)

    def action_abort(self) -> None:
        cid = self._need_client("abort")
        if cid is not None:
            self._call(self.engine, "abort", cid)

    def action_set_linger(self) -> None:
        field = self.query_one("#server-linger", Input)
        if field_error(self, [field]) is not None:
            return
        cid = self._need_client("set SO_LINGER")
        if cid is not None:
            self._call(self.engine, "set_linger", cid, parse_linger_text(field.value))

    def action_set_keepalive(self) -> None:
        field = self.query_one("#server-keepalive", Input)
        if field_error(self, [field]) is not None:
            return
        cid = self._need_client("set SO_KEEPALIVE")
        if cid is not None:
            self._call(self.engine, "set_keepalive", cid, parse_keepalive_text(field.value))

    def _call(self, engine, method: str, *args) -> None:
        self.clear_error()
        self._run_call(engine, method, args)

    @work(thread=True, group="server-command", exit_on_error=False)
    def _run_call(self, engine, method: str, args: tuple) -> None:
        try:
            result = getattr(engine, method)(*args)
        except SockmonError as exc:
            self.app.call_from_thread(self.show_error, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
            self.app.call_from_thread(self.show_error, f"{method} failed: {exc}")
            return
        if method in ("set_linger", "set_keepalive") and hasattr(result, "add_done_callback"):
            # an engine command: its OPTION event carries the read-back; say it when it is done
            def done(fut) -> None:
                value = None if fut.cancelled() or fut.exception() is not None else fut.result()
                if value is not None:
                    self.app.call_from_thread(self.notify, f"read back: {value}", title="Server", markup=False)

            result.add_done_callback(done)
        elif method in ("set_linger", "set_keepalive") and result is not None:
            self.app.call_from_thread(self.notify, f"read back: {result}", title="Server", markup=False)
        self.app.call_from_thread(request_refresh, self.app)
        self.app.call_from_thread(self._poll_clients)

    # ------------------------------------------------------------------ clients list
    def _tick(self) -> None:
        if self.engine is not None and not self._starting:
            self._poll_clients()

    def _poll_clients(self) -> None:
        if self.engine is not None:
            self._fetch_clients(self.engine, self._generation)

    @work(thread=True, group="server-clients", exclusive=True, exit_on_error=False)
    def _fetch_clients(self, engine, generation: int) -> None:
        try:
            clients = list(engine.clients())
        except Exception:  # noqa: BLE001 - stopping: keep the last list
            return
        options: dict[str, str] = {}
        for cl in clients:
            try:  # as the engine thread last read them from the kernel (no syscall here)
                opts = getattr(cl, "options", None) or engine.options(cl.id)
                if opts is not None:
                    options[str(cl.id)] = options_summary(opts)
            except Exception:  # noqa: BLE001 - the client went away meanwhile
                continue
        self.app.call_from_thread(self._set_clients, generation, clients, options)

    def _set_clients(self, generation: int, clients: list, options: dict[str, str]) -> None:
        if generation != self._generation:
            return
        clients = sorted(clients, key=peer_order)
        if clients != self.clients or options != self._options:
            self.clients = clients
            self._options = options
            self._fill_table()
        self._refresh_display()

    # ------------------------------------------------------------------ engine events (UI thread)
    def on_engine_event(self, message: EngineEvent) -> None:
        if message.origin != "server":
            return
        ev = message.event
        if self.is_mounted:
            self.query_one("#server-log", RichLog).write(self._log_line(ev))
        if ev.kind in (EventKind.FAILED, EventKind.ERROR):
            self.show_error(event_error_line(ev), notify=not getattr(self.app, "NOTIFIES_ENGINE_FAILURES", False))  # SockmonApp notifies
        if ev.kind in (EventKind.ACCEPTED, EventKind.CLOSED, EventKind.RESET, EventKind.PEER_CLOSED,
                       EventKind.BYTES_IN, EventKind.BYTES_OUT, EventKind.OPTION, EventKind.STATE):
            self._poll_clients()
        if ev.kind in (EventKind.ACCEPTED, EventKind.CLOSED, EventKind.INFO):
            request_refresh(self.app)

    def _log_line(self, ev) -> Text:
        at = self.clock_text(ev.ts)
        if ev.kind is EventKind.BYTES_IN and ev.data:  # what a client sent: ◀, as in the Client pane
            return data_line("in", ev.data, at, ev.conn or "")
        out = Text(f"{at} ", "dim")
        if ev.conn:
            out.append(f"[{inert(ev.conn)}] ", "dim")
        out.append_text(event_text(ev))
        return out

    def on_unmount(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            stop_in_background(engine, "server-pane-stop")
