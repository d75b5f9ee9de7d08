"""Namespace picker (``N``): which network namespace the socket lists show.

Lists "every namespace" (a Netns column in Listening and Connections), sockmon's own, the named ones
(/run/netns) and those only running processes hold, each labelled with its name or a process (command
name and pid) and, when its cgroup names one, the container. The list is read off the UI thread
(`all_netns` walks /proc); every label is someone else's text and shown inert. Choosing one dismisses
the screen with a `NetnsChoice`; the app hands it to the collector (`Collector.set_netns`), which
collects the new view on its own thread. The lab panes stay where ``--netns`` put them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from sockmon.core.netns import ALL_NETNS, NetnsRef, all_netns, container_of
from sockmon.tui.fmt import safe_text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


@dataclass(frozen=True, slots=True)
class NetnsChoice:
    target: str | None  # None: sockmon's own namespace; ALL_NETNS: every one; else a NetnsRef.ident
    label: str  # what the status bar says (untrusted parts included: shown inert)


ALL_CHOICE = NetnsChoice(ALL_NETNS, "all namespaces")


def choices(refs: list[NetnsRef], containers: dict[int, str] | None = None) -> list[tuple[NetnsChoice, Text]]:
    """(choice, its line) for every namespace, "every namespace" first; lines are inert text."""
    containers = containers or {}
    out: list[tuple[NetnsChoice, Text]] = [(ALL_CHOICE, Text("all namespaces  (a Netns column says which)",
                                                             style="bold"))]
    for ref in refs:
        line = Text()
        if ref.current:
            line.append("own  ", style="bold #4ec94e")
            line.append("sockmon's namespace  ", style="bold")
            line.append_text(safe_text(ref.ident, style="dim"))
        else:
            line.append("named  " if ref.name is not None else "process  ",
                        style="bold #56b6c2" if ref.name is not None else "dim")
            line.append_text(safe_text(ref.label or ref.ident, style="bold"))
        if ref.name is not None and ref.pid is not None:
            line.append_text(safe_text(f"  pid {ref.pid}", style="dim"))
        container = containers.get(ref.inode)
        if container:
            line.append_text(safe_text(f"  [{container}]", style="#e5c07b"))
        line.append(f"  net:[{ref.inode}]", style="dim")
        label = "own namespace" if ref.current else (ref.label or ref.ident)
        if container and not ref.current:
            label += f" [{container}]"
        out.append((NetnsChoice(ref.target, label), line))
    return out


class NetnsScreen(ModalScreen["NetnsChoice | None"]):
    DEFAULT_CSS = """
    NetnsScreen { align: center middle; }
    NetnsScreen > Vertical { width: 90; max-width: 100%; height: auto; max-height: 90%;
      border: thick $accent; background: $panel; padding: 0 1; }
    NetnsScreen #netns-title { height: auto; }
    NetnsScreen OptionList { height: auto; max-height: 20; }
    NetnsScreen #netns-hint { height: auto; color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Close", show=True)]

    def __init__(self, current: str | None = None, lab_netns: str | None = None) -> None:
        super().__init__()
        self.current = current  # the view shown now (marked in the list)
        self.lab_netns = lab_netns
        self.choices: list[NetnsChoice] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Show which network namespace?", style="bold"), id="netns-title")
            yield OptionList(Option(Text("reading namespaces…", style="dim italic"), disabled=True), id="netns-list")
            lab = f"--netns {self.lab_netns}" if self.lab_netns else "sockmon's own namespace"
            yield Static(safe_text(f"Enter shows it · Esc keeps the current view · the lab panes (Client, Server) "
                                   f"stay in {lab}"), id="netns-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        refs = all_netns()  # reads /proc: never on the UI thread
        containers = {}
        for ref in refs:
            if ref.pid is not None and not ref.current:
                found = container_of(ref.pid)
                if found:
                    containers[ref.inode] = found
        self.app.call_from_thread(self._fill, choices(refs, containers))

    def _fill(self, items: list[tuple[NetnsChoice, Text]]) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        self.choices = [choice for choice, _ in items]
        highlight = 0
        for i, (choice, line) in enumerate(items):
            if choice.target == self.current:
                line = Text("● ", style="bold #4ec94e") + line
                highlight = i
            else:
                line = Text("  ") + line
            options.add_option(Option(line, id=str(i)))
        options.highlighted = highlight

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id is not None and event.option_id.isdigit():
            self.dismiss(self.choices[int(event.option_id)])

    def action_cancel(self) -> None:
        self.dismiss(None)
