"""Confirm killing one socket (``k`` on a row of Listening or Connections).

Names the socket (state, both ends) and its owner (inert text: a process name is anyone's choice) and
says what SOCK_DESTROY will do to it. Dismisses with True only when the user says yes (``y`` or the Kill
button); Esc, ``n`` or Cancel dismiss with False. The app does the kill off the UI thread
(core/table/destroy.py) and shows the outcome.
"""

from __future__ import annotations

from rich.text import Text
from sockmon.core.records import Process, Socket
from sockmon.core.states import LISTEN, NEW_SYN_RECV, SYN_RECV, TIME_WAIT
from sockmon.tui import fmt
from sockmon.tui.theme import state_text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def what_happens(sock: Socket) -> str:
    """What SOCK_DESTROY does to a socket in this state (docs/kernel-facts.md)."""
    if sock.state == LISTEN:
        return ("the listener is closed: its owner's accept() fails (EINVAL) and the connections waiting in its "
                "accept queue are reset")
    if sock.state == TIME_WAIT:
        return "the TIME_WAIT entry is removed: its ends can be used again at once"
    if sock.state in (SYN_RECV, NEW_SYN_RECV):
        return "the half-open connection is dropped from its listener's queue"
    return "its owner's next call on it fails with ECONNABORTED; the peer gets a RST (ECONNRESET)"


def owner_line(sock: Socket, owner: Process | None, is_root: bool = True) -> Text:
    if owner is not None:
        out = Text("owner: ", style="dim")
        out.append(fmt.inert(owner.name), style="bold")  # plain appended text: never parsed as markup
        out.append(f"  pid {owner.pid}, user ", style="dim")
        out.append(fmt.inert(owner.user))
        return out
    if not sock.inode:
        return Text("owner: no process (no file descriptor: TIME_WAIT, orphaned, or not accepted yet)", style="dim")
    if is_root:
        return Text("owner: no process found (the kernel's own socket, or one in flight between processes)",
                    style="dim")
    return Text("owner: unknown (another user's process: root sees it)", style="dim")


class KillScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    KillScreen { align: center middle; }
    KillScreen > Vertical { width: 84; max-width: 100%; height: auto; max-height: 100%;
                            border: thick $error; background: $surface; padding: 0 1; }
    KillScreen #kill-what { height: auto; }
    KillScreen #kill-buttons { height: auto; margin: 1 0 0 0; }
    KillScreen #kill-buttons Button { margin: 0 2 0 0; }
    """
    BINDINGS = [
        Binding("y", "kill", "Kill", show=True),
        Binding("n,escape", "cancel", "Cancel", show=True),
    ]

    def __init__(self, sock: Socket, owner: Process | None, *, is_root: bool = True) -> None:
        super().__init__()
        self.sock = sock
        self.owner = owner
        self.is_root = is_root

    def describe(self) -> Text:
        s = self.sock
        t = state_text(s.state, bold=True)
        t.append(f"  {fmt.local_of(s)} → {fmt.peer_of(s)}\n")
        t.append_text(owner_line(s, self.owner, self.is_root))
        t.append("\n\n")
        t.append("SOCK_DESTROY (like ss -K): ", style="bold")
        t.append(what_happens(s))
        if not self.is_root:
            t.append("\nnot root: the kernel will refuse (EPERM) unless sockmon has CAP_NET_ADMIN",
                     style="bold #e5c07b")
        t.append("\n\ny kills it · n / Esc cancels", style="dim")
        return t

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Kill this socket?"
            yield Static(self.describe(), id="kill-what")
            with Horizontal(id="kill-buttons"):
                yield Button("Kill", id="kill-yes", variant="error")
                yield Button("Cancel", id="kill-no")

    def on_mount(self) -> None:
        self.query_one("#kill-no", Button).focus()  # Enter alone never kills

    @on(Button.Pressed, "#kill-yes")
    def action_kill(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#kill-no")
    def action_cancel(self) -> None:
        self.dismiss(False)
