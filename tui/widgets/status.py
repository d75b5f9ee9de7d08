"""Status bar: refresh rate or PAUSED, counts per state, root / non-root, transition source, losses."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from sockmon.core.text import inert
from sockmon.tui.theme import ERROR_STYLE, STATE_SS_NAMES, STATE_TINY_NAMES, counts_text
from sockmon.tui.widgets.quiet import quiet_update
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
    gap: float | None = None  # seconds between refreshes when more than the interval (full dumps over budget)
    table: str | None = None  # "events": the event-driven table (core/table/evtable.py); else full dumps
    full_reason: str | None = None  # with the event-driven table: why every refresh is a full dump now


def status_text(info: StatusInfo, width: int | None = None) -> Text:
    """The status line; with ``width``, the most detailed of three forms that fits (ss's state names,
    then the shortest ones with the refresh time and labels dropped), cut with "…" if none does."""
    out = _status(info, 0)
    if width is None or out.cell_len <= width:
        return out
    for level in (1, 2):
        out = _status(info, level)
        if out.cell_len <= width:
            return out
    out.truncate(width, overflow="ellipsis")
    return out


def _status(info: StatusInfo, level: int) -> Text:
    sep = " │ " if level < 2 else "│"
    out = Text()
    if info.paused:
        out.append(" PAUSED " if level < 2 else "PAUSED", style="bold reverse #e5c07b")
    else:
        out.append(f"⟳ {info.interval:g}s" if level < 2 else f"⟳{info.interval:g}s", style="bold")
        if info.gap is not None and info.gap > info.interval * 1.05:  # spaced out: full dumps over budget
            out.append(f"→{info.gap:.1f}s", style="bold #e5c07b")
    if info.collect_ms is not None and level < 2:
        out.append(f" {info.collect_ms:.0f}ms", style="dim")
    out.append(sep, style="dim")
    out.append("root" if info.is_root else "non-root", style="bold #4ec94e" if info.is_root else "bold #e5c07b")
    if info.netns:
        out.append(f" netns {inert(info.netns)}" if level < 1 else f" ns {inert(info.netns)}",
                   style="bold")  # a name someone else chose
    if info.lab_netns:
        out.append(f" · lab in netns {inert(info.lab_netns)}" if level < 1 else f" lab {inert(info.lab_netns)}",
                   style="bold #56b6c2")
    if info.source and info.source != "netlink":
        out.append(f" {info.source}", style="bold #e5c07b")
    out.append(sep, style="dim")
    src = info.transition_source or "?"
    if level >= 1:
        src = {"tracepoint": "trace", "inferred": "infer"}.get(src, src)
    out.append(src, style="bold" if src in ("tracepoint", "trace") else "italic")
    if info.table == "events" and level < 1:
        out.append(f" · full dumps: {info.full_reason}" if info.full_reason else " · event table", style="dim")
    if info.overruns:
        out.append(f" lost {info.overruns}", style=ERROR_STYLE)
    out.append(sep, style="dim")
    if info.collect_ms is None and not info.total:
        out.append("waiting for the first snapshot…" if level < 2 else "waiting…", style="dim italic")
    else:
        # not "22 LISTEN 4": the total is no LISTEN count
        out.append(f"{info.total} sockets: " if level < 1 else f"{info.total}: ", style="bold")
        names = None if level == 0 else STATE_SS_NAMES if level == 1 else STATE_TINY_NAMES
        out.append_text(counts_text(info.counts, sep=" ", names=names))
    if info.error:
        out.append(sep, style="dim")
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
        self._draw()

    def _draw(self) -> None:
        width = self.content_region.width
        quiet_update(self, status_text(self.info, width or None))

    def on_resize(self) -> None:
        self._draw()
