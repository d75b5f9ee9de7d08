"""The help screen lists every lab-pane key from the panes' own bindings."""

from rich.console import Console
from sockmon.tui.lab.client import ClientPane
from sockmon.tui.lab.server import ServerPane
from sockmon.tui.screens.help import help_renderable


def _help_text() -> str:
    console = Console(width=120, record=True)
    console.print(help_renderable())
    return console.export_text()


def test_help_lists_every_client_and_server_key():
    text = _help_text()
    for pane in (ClientPane, ServerPane):
        for binding in pane.BINDINGS:
            if binding.key == "escape":
                continue
            assert binding.description in text, binding
    assert "Client pane (3)" in text and "Server pane (4)" in text and "Timeline pane (5)" in text
