"""Status bar: refresh rate or PAUSED, counts per state, root / non-root, transition source, losses."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from sockmon.core.text import inert
from sockmon.tui.theme import ERROR_STYLE, counts_text
from textual.widgets import Static


@dataclass
class StatusInfo:
    interval: float = 1.0
    paused: bool = False
    is_root: bool = True
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    transition_source: str | None = None  # "tracepoint" | "inferred"
    overruns: int = 0
    collect_ms: float | None = None
    paint_ms: float | None = None
    source: str | None = None  # snapshot source: "netlink" | "procfs"
    netns: str | None = None  # the namespace the lists show ("all namespaces", a name, pid:N…); None: ours
    lab_netns: str | None = None  # where the built-in client and server create their sockets
    error: str | None = None
    collecting: bool = False


def status_text(info: StatusInfo) -> Text:
    out = Text()
    if info.paused:
        out.append(" PAUSED ", style="bold reverse #e5c07b")
    else:
        out.append(f"⟳ {info.interval:g}s", style="bold")
    if info.collect_ms is not None:
        out.append(f" {info.collect_ms:.0f}ms", style="dim")
    out.append(" │ ", style="dim")
    out.append("root" if info.is_root else "non-root", style="bold #4ec94e" if info.is_root else "bold #e5c07b")
    if info.netns:
        out.append(f" netns {inert(info.netns)}", style="bold")  # a name someone else chose
    if info.lab_netns:
        out.append(f" · lab in netns {inert(info.lab_netns)}", style="bold #56b6c2")
    if info.source and info.source != "netlink":
        out.append(f" {info.source}", style="bold #e5c07b")
    out.append(" │ ", style="dim")
    src = info.transition_source or "?"
    out.append(src, style="bold" if src == "tracepoint" else "italic")
    if info.overruns:
        out.append(f" lost {info.overruns}", style=ERROR_STYLE)
    out.append(" │ ", style="dim")
    if info.collect_ms is None and not info.total:
        out.append("waiting for the first snapshot…", style="dim italic")
    else:
        out.append(f"{info.total} sockets: ", style="bold")  # not "22 LISTEN 4": the total is no LISTEN count
        out.append_text(counts_text(info.counts, sep=" "))
    if info.error:
        out.append(" │ ", style="dim")
        out.append(f"⚠ {inert(info.error)}", style=ERROR_STYLE)  # errors carry names and addresses
    return out


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.info = StatusInfo()

    def show(self, **changes) -> None:
        for k, v in changes.items():
            setattr(self.info, k, v)
        self.update(status_text(self.info))
