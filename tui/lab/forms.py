"""What the two lab panes (Client, Server) share: the lifecycle keys (shutdown RD/WR/RDWR, close, abort),
leaving a field with Escape, jumping to the data field with ``i``, and one inline error line that is
also a notification. Each pane says what its lifecycle actions act on (its connection, or the selected
client) through its own ``action_shutdown`` / ``action_close`` / ``action_abort``.
"""

from __future__ import annotations

import threading

from rich.text import Text
from sockmon.core.lab.events import Event
from sockmon.core.text import inert
from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

SHUTDOWN = Binding.Group("Shut", compact=True)


def lifecycle_bindings(prefix: str, *, what: str) -> list[Binding]:
    """The shutdown / close / abort keys, the same letters in both lab panes. Descriptions are short (the
    footer of an 80-column terminal); the tooltip says it in full (help screen, mouse hover)."""
    return [
        Binding("R", "shutdown('rd')", "Shut RD", id=f"{prefix}.shutdown_rd", group=SHUTDOWN,
                tooltip=f"Shut RD: shutdown(SHUT_RD) of {what}"),
        Binding("W", "shutdown('wr')", "Shut WR", id=f"{prefix}.shutdown_wr", group=SHUTDOWN,
                tooltip=f"Shut WR: shutdown(SHUT_WR) of {what}, sends FIN"),
        Binding("B", "shutdown('rdwr')", "Shut RDWR", id=f"{prefix}.shutdown_rdwr", group=SHUTDOWN,
                tooltip=f"Shut RDWR: shutdown(SHUT_RDWR) of {what}"),
        Binding("x", "close", "Close", id=f"{prefix}.close", tooltip=f"Close: close() {what} (honours SO_LINGER)"),
        Binding("a", "abort", "Abort", id=f"{prefix}.abort", tooltip=f"Abort: linger 0 + close(): RST to {what}"),
        Binding("i", "focus_data", "Type data", id=f"{prefix}.focus_data",
                tooltip="Type data: jump to the send field (Enter sends, Esc leaves it)"),
        Binding("escape", "leave_field", "Leave field", id=f"{prefix}.leave_field", show=False),
    ]


def event_error_line(ev: Event) -> str:
    """One line for a failed call: ``what: ENAME: meaning → action`` (inline and notification alike)."""
    line = ev.detail or ev.kind.value
    if ev.errno_name:
        line = f"{line}: {ev.errno_name}: {ev.meaning}"
        if ev.action:
            line += f" → {ev.action}"
    return line


def request_refresh(app) -> None:
    fn = getattr(app, "request_refresh", None)
    if callable(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001 - the socket table will catch up on its own
            pass


def quiet_stop(engine) -> None:
    try:
        engine.stop()
    except Exception:  # noqa: BLE001 - shutting down anyway
        pass


def stop_in_background(engine, name: str) -> None:
    """stop() joins the engine thread: never on the UI thread."""
    threading.Thread(target=quiet_stop, args=(engine,), name=name, daemon=True).start()


class LabPane(Vertical, can_focus=True):
    """Base of the Client and Server panes: error line, field validation feedback, Escape / ``i``."""

    TITLE = "Lab"  # notification title
    PREFIX = "lab"  # widget id prefix: #<prefix>-error, #<prefix>-send-text

    def __init__(self, *, name: str | None = None, id: str | None = None,  # noqa: A002
                 classes: str | None = None, engine_factory=None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.engine = None
        self._engine_factory = engine_factory  # seam: tests hand in a fake engine
        self.last_error: str | None = None

    def _error_line(self) -> Static:
        return self.query_one(f"#{self.PREFIX}-error", Static)

    def show_error(self, message: str, *, notify: bool = True) -> None:
        """One clear line, inline and as a notification; the app keeps running."""
        self.last_error = message
        if self.is_mounted:
            self._error_line().update(Text(inert(message)))  # errors carry names and typed text: never markup
        if notify:
            self.notify(inert(message), title=self.TITLE, severity="error", markup=False, timeout=6)

    def clear_error(self) -> None:
        self.last_error = None
        if self.is_mounted:
            self._error_line().update("")

    @on(Input.Changed)
    def _input_changed(self, event: Input.Changed) -> None:
        if not self.is_mounted:
            return
        result = event.validation_result
        if result is not None and not result.is_valid:
            msgs = result.failure_descriptions
            self._error_line().update(Text(inert(msgs[0] if msgs else "bad value")))
        elif self.last_error is None:
            self._error_line().update("")

    def done_with_field(self) -> None:
        """Enter applied a form field: give the keys back to the pane (digits switch panes again)."""
        if self.last_error is None:
            self.focus()

    def action_leave_field(self) -> None:
        self.focus()

    def action_focus_data(self) -> None:
        self.query_one(f"#{self.PREFIX}-send-text", Input).focus()
