"""Change SO_LINGER and keepalive of any socket in the table (``o``).

Our own sockets are changed through a dup of our fd. Another process's socket is borrowed with
pidfd_getfd (root) and only after the user confirms, because the change affects that program: Apply
once shows what will change and whose socket it is, Apply again (same values) does it. Every value shown
is read back from the kernel; the socket work runs in a worker thread, never on the UI thread.
"""

from __future__ import annotations

import os

from rich.table import Table
from rich.text import Text
from sockmon.core.errors import SockmonError
from sockmon.core.lab.options import Keepalive, Linger, SocketOptions
from sockmon.core.records import Process, Socket
from sockmon.tui import fmt
from sockmon.tui.theme import state_text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


def why_not_changeable(sock: Socket, owner: Process | None) -> str | None:
    """None when the socket's options can be changed here, else the reason in one line."""
    from sockmon.core.lab.foreign import why_no_options

    return why_no_options(sock, owner)


def read_socket_options(pid: int, inode: int) -> SocketOptions:
    """Blocking (/proc scan, syscalls): call from a worker thread."""
    from sockmon.core.lab.foreign import read_options_of

    return read_options_of(pid, inode)[0]


def apply_socket_options(pid: int, inode: int, linger: Linger, keepalive: Keepalive) -> SocketOptions:
    """Set both options on process ``pid``'s socket, then read everything back (the core code that
    ``sockmon opts --set`` uses too). Blocking."""
    from sockmon.core.lab.foreign import change_options_of
    from sockmon.core.lab.options import OptionChanges

    return change_options_of(pid, inode, OptionChanges(linger=linger, keepalive=keepalive))


def _linger_field(linger: Linger) -> str:
    return "off" if not linger.enabled else str(linger.seconds)


def _keepalive_field(ka: Keepalive) -> str:
    return f"{ka.idle},{ka.intvl},{ka.cnt}" if ka.enabled else "off"


def options_table(opts: SocketOptions) -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="dim")
    t.add_column()
    lg = opts.linger
    if not lg.enabled:
        t.add_row("SO_LINGER", "off  (close() returns at once, unsent data goes in the background)")
    elif lg.seconds == 0:
        t.add_row("SO_LINGER", Text("on, 0 s  (close() sends RST, no TIME_WAIT)", style="bold #ff6b6b"))
    else:
        t.add_row("SO_LINGER", f"on, {lg.seconds} s  (close() blocks up to {lg.seconds} s)")
    ka = opts.keepalive
    if ka.enabled:
        t.add_row("SO_KEEPALIVE", Text(f"on  idle {ka.idle} s, intvl {ka.intvl} s, cnt {ka.cnt} → dead peer after "
                                       f"{ka.dead_peer_seconds} s", style="bold #4ec94e"))
    else:
        t.add_row("SO_KEEPALIVE", f"off  (timers kept: idle {ka.idle} s, intvl {ka.intvl} s, cnt {ka.cnt})")
    return t


class SocketOptionsScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    SocketOptionsScreen { align: center middle; }
    SocketOptionsScreen > Vertical { width: 92; max-width: 100%; height: auto; max-height: 100%;
                                     border: thick $accent; background: $surface; padding: 0 1; }
    SocketOptionsScreen .opt-row { height: auto; }
    SocketOptionsScreen .opt-row Label { width: 12; padding: 1 0 0 0; }
    SocketOptionsScreen .opt-row Input { width: 22; }
    SocketOptionsScreen .opt-row .hint { width: 1fr; padding: 1 0 0 1; color: $text-muted; }
    SocketOptionsScreen #opt-message { height: auto; margin: 1 0 0 0; }
    SocketOptionsScreen #opt-buttons { height: auto; margin: 1 0 0 0; }
    SocketOptionsScreen #opt-buttons Button { margin: 0 2 0 0; }
    """
    BINDINGS = [Binding("escape", "close", "Close", show=True)]

    def __init__(self, sock: Socket, owner: Process | None) -> None:
        super().__init__()
        self.sock = sock
        self.owner = owner
        self.blocked = why_not_changeable(sock, owner)
        self.foreign = owner is not None and owner.pid != os.getpid()
        self.current: SocketOptions | None = None
        self._armed: tuple[Linger, Keepalive] | None = None  # values the user was asked to confirm
        self.message = ""

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Socket options — SO_LINGER and keepalive (Esc closes)"
            yield Static(self._header(), id="opt-header")
            yield Static(Text("reading the current values…", style="dim"), id="opt-current")
            with Horizontal(classes="opt-row"):
                yield Label("SO_LINGER")
                yield Input(placeholder="off | 0 | N", id="opt-linger", disabled=bool(self.blocked))
                yield Static("off · 0 = close sends RST · N = close blocks up to N s", classes="hint")
            with Horizontal(classes="opt-row"):
                yield Label("Keepalive")
                yield Input(placeholder="off | 60,10,3", id="opt-keepalive", disabled=bool(self.blocked))
                yield Static("off · IDLE,INTVL,CNT (seconds, seconds, probes)", classes="hint")
            yield Static("", id="opt-message")
            with Horizontal(id="opt-buttons"):
                yield Button("Apply", id="opt-apply", variant="primary", disabled=bool(self.blocked))
                yield Button("Cancel", id="opt-cancel")

    def _header(self) -> Text:
        s = self.sock
        t = state_text(s.state, bold=True)
        t.append(f"  {fmt.local_of(s)} → {fmt.peer_of(s)}\n")
        t.append("owner: ", style="dim")
        t.append(fmt.owner_text(self.owner) or "—")
        if self.blocked:
            t.append(f"\n{fmt.inert(self.blocked)}", style="bold #e5c07b")
        elif self.foreign:
            t.append("\nanother process's socket: borrowed with pidfd_getfd (root); changes need confirmation",
                     style="#e5c07b")
        else:
            t.append("\nsockmon's own socket", style="dim")
        return t

    def on_mount(self) -> None:
        if self.blocked:
            self.query_one("#opt-current", Static).update(Text("nothing to read", style="dim"))
            self.query_one("#opt-cancel", Button).focus()
            return
        self.query_one("#opt-linger", Input).focus()
        self._read()

    # ------------------------------------------------------------------ worker side
    @work(thread=True, exclusive=True, group="socket-options")
    def _read(self) -> None:
        try:
            opts = read_socket_options(self.owner.pid, self.sock.inode)
        except (SockmonError, OSError) as exc:
            self.app.call_from_thread(self._failed, f"could not read the options: {exc}")
            return
        self.app.call_from_thread(self._show_current, opts, fill=True)

    @work(thread=True, exclusive=True, group="socket-options")
    def _apply(self, linger: Linger, keepalive: Keepalive) -> None:
        try:
            opts = apply_socket_options(self.owner.pid, self.sock.inode, linger, keepalive)
        except (SockmonError, OSError) as exc:
            self.app.call_from_thread(self._failed, f"not changed: {exc}")
            return
        self.app.call_from_thread(self._applied, opts)

    # ------------------------------------------------------------------ UI side
    def _show_current(self, opts: SocketOptions, fill: bool = False) -> None:
        self.current = opts
        box = Table.grid()
        box.add_column()
        box.add_row(Text("now, read back from the kernel:", style="bold"))
        box.add_row(options_table(opts))
        self.query_one("#opt-current", Static).update(box)
        if fill:
            self.query_one("#opt-linger", Input).value = _linger_field(opts.linger)
            self.query_one("#opt-keepalive", Input).value = _keepalive_field(opts.keepalive)

    def _say(self, text: str, style: str = "") -> None:
        self.message = text
        self.query_one("#opt-message", Static).update(fmt.safe_text(text, style=style))

    def _failed(self, line: str) -> None:
        self._armed = None
        self._say(line, "bold #ff6b6b")
        self.notify(fmt.inert(line), title="socket options", severity="error", timeout=8, markup=False)

    def _applied(self, opts: SocketOptions) -> None:
        self._armed = None
        self._show_current(opts)
        line = f"applied — kernel reads back: {opts.linger}; {opts.keepalive}"
        self._say(line, "bold #4ec94e")
        self.notify(fmt.inert(line), title="socket options", timeout=5, markup=False)
        refresh = getattr(self.app, "request_refresh", None)
        if callable(refresh):
            refresh()

    def _parse(self) -> tuple[Linger, Keepalive] | None:
        from sockmon.core.errors import BadInput

        for wid, parse in (("#opt-linger", Linger.parse), ("#opt-keepalive", Keepalive.parse)):
            field = self.query_one(wid, Input)
            try:
                parse(field.value)
            except BadInput as exc:
                self._armed = None
                self._say(str(exc), "bold #ff6b6b")
                field.focus()  # the typed text stays where it is
                return None
        return (Linger.parse(self.query_one("#opt-linger", Input).value),
                Keepalive.parse(self.query_one("#opt-keepalive", Input).value))

    def action_apply(self) -> None:
        if self.blocked:
            return
        values = self._parse()
        if values is None:
            return
        if self.foreign and self._armed != values:
            self._armed = values
            linger, ka = values
            who = fmt.owner_text(self.owner)
            warn = " — its close() will send RST" if linger.is_abort else ""
            self._say(f"This changes the socket of {who}: {linger}{warn}; {ka}. "
                      "Press Apply again to confirm, Esc to cancel.", "bold #e5c07b")
            return
        self._say("applying…", "dim")
        self._apply(*values)

    @on(Button.Pressed, "#opt-apply")
    def _on_apply(self) -> None:
        self.action_apply()

    @on(Input.Submitted)
    def _on_submit(self) -> None:
        self.action_apply()

    @on(Input.Changed)
    def _on_change(self) -> None:
        if self._armed is not None:  # different values need a new confirmation
            self._armed = None
            self._say("")

    @on(Button.Pressed, "#opt-cancel")
    def action_close(self) -> None:
        self.dismiss(None)
