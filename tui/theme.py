"""One colour per TCP state, used by every pane, the status bar and the detail screen.

Hex colours so they look the same in every terminal with truecolor (and degrade sensibly in 256).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from sockmon.core import states as S
from sockmon.core.lab.events import EventKind
from sockmon.core.states import STATE_CODES, state_name

STATE_COLORS: dict[int, str] = {
    S.ESTABLISHED: "#4ec94e",  # green: data flows
    S.SYN_SENT: "#e5c07b",  # amber: opening, our side
    S.SYN_RECV: "#d19a66",  # orange: opening, their side
    S.NEW_SYN_RECV: "#d19a66",
    S.LISTEN: "#56b6c2",  # cyan: waiting for clients
    S.FIN_WAIT1: "#61afef",  # blues: we closed first
    S.FIN_WAIT2: "#528bff",
    S.CLOSING: "#c678dd",  # violet: simultaneous close
    S.TIME_WAIT: "#9e9e9e",  # grey: dead but remembered
    S.CLOSE_WAIT: "#ff6b6b",  # red: peer closed, the application has not
    S.LAST_ACK: "#e06c75",  # rose: closing after the peer
    S.CLOSE: "#7f848e",
}
UNKNOWN_COLOR = "#ffffff"

# Display order everywhere counts per state are shown (roughly the life of a connection).
STATE_ORDER: tuple[int, ...] = (
    S.LISTEN, S.SYN_SENT, S.SYN_RECV, S.NEW_SYN_RECV, S.ESTABLISHED, S.FIN_WAIT1, S.FIN_WAIT2,
    S.CLOSING, S.TIME_WAIT, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSE,
)

_STYLES: dict[int, Style] = {code: Style(color=color) for code, color in STATE_COLORS.items()}
_BOLD: dict[int, Style] = {code: Style(color=color, bold=True) for code, color in STATE_COLORS.items()}

# Row marks in socket lists.
NEW_ROW_STYLE = Style(bgcolor="#1f4d2a", bold=True)  # a socket that appeared in the last refresh(es)
VANISHING_STYLE = Style(dim=True, strike=True)  # a socket that is gone, shown a moment before leaving
HIGHLIGHT_STYLE = Style(bgcolor="#5a4a12", bold=True)  # a row a running lab scenario names (tui/scenarios)
ERROR_STYLE = Style(color="#ff6b6b", bold=True)
MUTED_STYLE = Style(dim=True)


def state_color(code: int) -> str:
    return STATE_COLORS.get(code, UNKNOWN_COLOR)


def state_style(code: int, bold: bool = False) -> Style:
    table = _BOLD if bold else _STYLES
    return table.get(code) or Style(color=UNKNOWN_COLOR, bold=bold)


def state_text(code: int, bold: bool = False) -> Text:
    return Text(state_name(code), style=state_style(code, bold))


# Shorter state names for narrow terminals: ss's own (``ss -t`` prints ESTAB, TIME-WAIT…), then the
# shortest that are still unambiguous (the status bar at 80 columns).
STATE_SS_NAMES: dict[int, str] = {
    S.ESTABLISHED: "ESTAB", S.SYN_SENT: "SYN-SENT", S.SYN_RECV: "SYN-RECV", S.NEW_SYN_RECV: "SYN-RECV",
    S.FIN_WAIT1: "FIN-WAIT-1", S.FIN_WAIT2: "FIN-WAIT-2", S.TIME_WAIT: "TIME-WAIT", S.CLOSE: "UNCONN",
    S.CLOSE_WAIT: "CLOSE-WAIT", S.LAST_ACK: "LAST-ACK", S.LISTEN: "LISTEN", S.CLOSING: "CLOSING",
}
STATE_TINY_NAMES: dict[int, str] = {
    S.ESTABLISHED: "EST", S.SYN_SENT: "SS", S.SYN_RECV: "SR", S.NEW_SYN_RECV: "SR", S.FIN_WAIT1: "FW1",
    S.FIN_WAIT2: "FW2", S.TIME_WAIT: "TW", S.CLOSE: "CL", S.CLOSE_WAIT: "CW", S.LAST_ACK: "LA",
    S.LISTEN: "LIS", S.CLOSING: "CLG",
}


def counts_text(counts: dict[int, int], *, zero: bool = False, sep: str = "  ",
                names: dict[int, str] | None = None) -> Text:
    """``ESTABLISHED 12  TIME_WAIT 3`` with each name in its colour (zero counts left out unless asked);
    ``names``: shorter names (`STATE_SS_NAMES`, `STATE_TINY_NAMES`)."""
    out = Text()
    first = True
    known = [c for c in STATE_ORDER] + sorted(c for c in counts if c not in STATE_ORDER)
    for code in known:
        n = counts.get(code, 0)
        if not n and not zero:
            continue
        if not first:
            out.append(sep)
        first = False
        out.append((names or {}).get(code) or state_name(code), state_style(code, bold=True))
        out.append(f" {n}")
    return out


# One style per engine event kind (timeline, server log).
KIND_STYLE: dict[EventKind, str] = {
    EventKind.CALL: "bold #c8c8c8",
    EventKind.RETURNED: "#8fbf8f",
    EventKind.FAILED: "bold #ff6b6b",
    EventKind.ERROR: "bold #ff6b6b",
    EventKind.RESET: "bold #ff6b6b",
    EventKind.PEER_CLOSED: "#e5c07b",
    EventKind.BYTES_IN: "#56b6c2",
    EventKind.BYTES_OUT: "#61afef",
    EventKind.OPTION: "#c678dd",
    EventKind.ACCEPTED: "#4ec94e",
    EventKind.CLOSED: "#e5c07b",
    EventKind.INFO: "dim",
    EventKind.STATE: "",
}


def state_label(name: str | None, *, bold: bool = True) -> Text:
    """A state name in its colour; no name: a dim dash; unknown names in white."""
    if not name:
        return Text("—", style="dim")
    return Text(name, style=state_style(STATE_CODES.get(name.upper(), -1), bold))
