"""Drawing a `StateDiagram` as lines of inert Rich `Text` (pure: no widget, no app).

``draw(model, width, height)`` gives the full diagram — RFC 9293's shape: the active (client) side down the
left, the passive (server) side down the right, the close states at the bottom, CLOSED at the top and
again as the sink at the bottom — when ``FULL_WIDTH`` × ``FULL_HEIGHT`` fit, else the compact form: the
states with their counts, the busiest edges and the followed path. Every piece of text is built from
our own words and numbers and appended as plain `Text` (never markup).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from sockmon.core.states import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    NEW_SYN_RECV,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
    state_name,
)
from sockmon.core.table.statemachine import EDGE_BY_KEY, NEVER, STATES, StateDiagram, edge_of, state_title
from sockmon.tui.fmt import safe_text
from sockmon.tui.theme import state_color

W, H = 196, 45  # the full diagram's canvas
BOX_W = 24
FOOTER_LINES = 5  # header + path + legend (2) + other edges
FULL_WIDTH, FULL_HEIGHT = W, H + FOOTER_LINES

# box top-left corners; "CLOSE_END" is CLOSED drawn again at the bottom, where closing edges end
BOXES: dict[object, tuple[int, int]] = {
    CLOSE: (86, 0), SYN_SENT: (6, 7), LISTEN: (140, 7), SYN_RECV: (140, 14), NEW_SYN_RECV: (170, 14),
    ESTABLISHED: (86, 21), FIN_WAIT1: (6, 28), CLOSE_WAIT: (140, 28), FIN_WAIT2: (6, 35), CLOSING: (50, 35),
    LAST_ACK: (140, 35), TIME_WAIT: (6, 42), "CLOSE_END": (86, 42),
}
# edge → (polyline: the arrowhead at the last point, label position)
ROUTES: dict[tuple[int, int], tuple[list[tuple[int, int]], tuple[int, int] | None]] = {
    (CLOSE, LISTEN): ([(110, 1), (152, 1), (152, 6)], (114, 0)),
    (CLOSE, SYN_SENT): ([(85, 1), (18, 1), (18, 6)], (22, 0)),
    (LISTEN, NEW_SYN_RECV): ([(164, 8), (182, 8), (182, 13)], (165, 7)),
    (NEW_SYN_RECV, SYN_RECV): ([(169, 15), (164, 15)], (170, 17)),
    (LISTEN, SYN_RECV): ([(152, 10), (152, 13)], (154, 12)),
    (LISTEN, SYN_SENT): ([(139, 8), (30, 8)], (60, 7)),
    (SYN_RECV, LISTEN): ([(146, 13), (146, 10)], (126, 11)),
    (SYN_SENT, SYN_RECV): ([(24, 10), (24, 15), (139, 15)], (40, 14)),
    (SYN_SENT, ESTABLISHED): ([(12, 10), (12, 22), (85, 22)], (32, 21)),
    (SYN_RECV, ESTABLISHED): ([(152, 17), (152, 22), (110, 22)], (113, 21)),
    (SYN_RECV, FIN_WAIT1): ([(144, 17), (144, 19), (28, 19), (28, 27)], (40, 18)),
    (ESTABLISHED, FIN_WAIT1): ([(94, 24), (94, 25), (18, 25), (18, 27)], (32, 24)),
    (ESTABLISHED, CLOSE_WAIT): ([(102, 24), (102, 25), (152, 25), (152, 27)], (106, 24)),
    (FIN_WAIT1, FIN_WAIT2): ([(18, 31), (18, 34)], (20, 32)),
    (FIN_WAIT1, CLOSING): ([(30, 29), (62, 29), (62, 34)], (34, 28)),
    (FIN_WAIT1, TIME_WAIT): ([(5, 29), (3, 29), (3, 43), (5, 43)], None),  # no room: the legend names it
    (FIN_WAIT2, TIME_WAIT): ([(18, 38), (18, 41)], (20, 39)),
    (CLOSING, TIME_WAIT): ([(62, 38), (62, 40), (24, 40), (24, 41)], (40, 39)),
    (TIME_WAIT, CLOSE): ([(30, 43), (85, 43)], (34, 44)),
    (CLOSE_WAIT, LAST_ACK): ([(152, 31), (152, 34)], (154, 32)),
    (LAST_ACK, CLOSE): ([(152, 38), (152, 43), (110, 43)], (114, 44)),
}
# edges into CLOSED drawn as a stub beside their box: "↘CLOSED cause rate"
STUBS: dict[tuple[int, int], tuple[int, int]] = {
    (LISTEN, CLOSE): (154, 10), (SYN_SENT, CLOSE): (26, 11), (SYN_RECV, CLOSE): (154, 18),
    (ESTABLISHED, CLOSE): (111, 23), (FIN_WAIT1, CLOSE): (20, 31), (FIN_WAIT2, CLOSE): (26, 38),
    (CLOSING, CLOSE): (75, 36), (CLOSE_WAIT, CLOSE): (165, 29),
}

N, E, S, WEST = 1, 2, 4, 8
LINE_CHARS = {N | S: "│", E | WEST: "─", S | E: "┌", S | WEST: "┐", N | E: "└", N | WEST: "┘",
              N | S | E: "├", N | S | WEST: "┤", E | WEST | S: "┬", E | WEST | N: "┴",
              N | S | E | WEST: "┼", N: "│", S: "│", E: "─", WEST: "─"}
ARROWS = {(0, 1): "▼", (0, -1): "▲", (1, 0): "▶", (-1, 0): "◀"}

EDGE_STYLE = Style(color="#7f848e")
LIVE_STYLE = Style(color="#d0d0d0")
NEVER_STYLE = Style(color="#5c6370", dim=True)
PATH_STYLE = Style(color="#ffd75f", bold=True)
NEWEST_STYLE = Style(color="#1c1c1c", bgcolor="#ffd75f", bold=True)
LABEL_STYLE = Style(color="#abb2bf")
DIM = Style(dim=True)
HEAD = Style(bold=True)


def rate_text(rate: float) -> str:
    if rate <= 0:
        return "0/s"
    if rate >= 1000:
        return f"{rate / 1000:.1f}k/s"
    return f"{rate:.1f}/s" if rate < 100 else f"{rate:.0f}/s"


def count_text(n: int) -> str:
    return f"{n:,}"


def edge_label(model: StateDiagram, key: tuple[int, int], *, long: bool = False) -> str:
    e = edge_of(*key)
    cause = e.cause if long else e.short
    if e.linux == NEVER:
        return f"{cause} ✗"
    return f"{cause} {rate_text(model.rate(*key))} ·{count_text(model.cumulative.get(key, 0))}"


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.chars = [[" "] * width for _ in range(height)]
        self.styles: list[list[Style | None]] = [[None] * width for _ in range(height)]
        self.masks = [[0] * width for _ in range(height)]

    def put(self, x: int, y: int, ch: str, style: Style | None) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            self.chars[y][x] = ch
            self.styles[y][x] = style

    def text(self, x: int, y: int, s: str, style: Style | None) -> None:
        for i, ch in enumerate(s):
            self.put(x + i, y, ch, style)

    def line(self, points: list[tuple[int, int]], style: Style) -> None:
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            dx = (x1 > x0) - (x1 < x0)
            dy = (y1 > y0) - (y1 < y0)
            x, y = x0, y0
            while (x, y) != (x1, y1):
                nx, ny = x + dx, y + dy
                self._link(x, y, nx, ny, style)
                x, y = nx, ny
        (xa, ya), (xb, yb) = points[-2], points[-1]
        d = ((xb > xa) - (xb < xa), (yb > ya) - (yb < ya))
        self.put(xb, yb, ARROWS[d], style)

    def _link(self, x: int, y: int, nx: int, ny: int, style: Style) -> None:
        out = {(1, 0): E, (-1, 0): WEST, (0, 1): S, (0, -1): N}[(nx - x, ny - y)]
        back = {E: WEST, WEST: E, S: N, N: S}[out]
        for (cx, cy), bit in (((x, y), out), ((nx, ny), back)):
            if 0 <= cx < self.w and 0 <= cy < self.h:
                self.masks[cy][cx] |= bit
                self.chars[cy][cx] = LINE_CHARS.get(self.masks[cy][cx], "┼")
                self.styles[cy][cx] = style

    def box(self, x: int, y: int, title: str, body: str, style: Style, body_style: Style) -> None:
        inner = BOX_W - 2
        top = f"┌{(' ' + title + ' ')[:inner].center(inner, '─')}┐"
        self.text(x, y, top, style)
        self.put(x, y + 1, "│", style)
        self.text(x + 1, y + 1, body[:inner].center(inner), body_style)
        self.put(x + BOX_W - 1, y + 1, "│", style)
        self.text(x, y + 2, "└" + "─" * inner + "┘", style)

    def lines(self) -> list[Text]:
        out = []
        for chars, styles in zip(self.chars, self.styles, strict=True):
            t = Text()
            run, run_style = [], None
            for ch, st in zip(chars, styles, strict=True):
                if st is not run_style and run:
                    t.append("".join(run), run_style)
                    run = []
                run_style = st
                run.append(ch)
            if run:
                t.append("".join(run), run_style)
            t.rstrip()
            out.append(t)
        return out


def _edge_style(model: StateDiagram, key, path: set, newest) -> Style:
    if key == newest:
        return NEWEST_STYLE
    if key in path:
        return PATH_STYLE
    e = EDGE_BY_KEY.get(key)
    if e is not None and e.linux == NEVER:
        return NEVER_STYLE
    return LIVE_STYLE if model.rate(*key) > 0 else EDGE_STYLE


def _path_sets(model: StateDiagram):
    edges = model.path_edges()
    return set(edges), (edges[-1] if edges else None)


def draw_full(model: StateDiagram) -> list[Text]:
    c = Canvas(W, H)
    path, newest = _path_sets(model)
    order = sorted(ROUTES, key=lambda k: (k == newest, k in path, model.rate(*k) > 0))  # highlighted last
    for key in order:
        points, _ = ROUTES[key]
        c.line(points, _edge_style(model, key, path, newest))
    for key in order:
        _, at = ROUTES[key]
        if at is None:
            continue
        lx, ly = at
        style = _edge_style(model, key, path, newest)
        c.text(lx, ly, edge_label(model, key), style if key in path else
               (NEVER_STYLE if style is NEVER_STYLE else LABEL_STYLE))
    for key, (x, y) in STUBS.items():
        style = _edge_style(model, key, path, newest)
        c.text(x, y, "↘CLOSED " + edge_label(model, key), style if key in path else LABEL_STYLE)
    for code, (x, y) in BOXES.items():
        state = CLOSE if code == "CLOSE_END" else code
        current = model.current == state and model.followed is not None
        color = state_color(state)
        style = Style(color=color, bold=current, reverse=current)
        title = state_title(state) if code != NEW_SYN_RECV else "NEW_SYN_RECV (req)"
        body = count_text(model.count(state))
        if current:
            body += "  ◀ followed"
        c.box(x, y, title, body, style, Style(color=color, bold=True))
    return c.lines()


def header(model: StateDiagram, source: str) -> Text:
    t = Text()
    t.append("TCP state machine", HEAD)
    scope = "host-wide" if model.pred is None else "filter "
    t.append(f" · {scope}", DIM)
    if model.pred is not None:
        t.append_text(safe_text(model.filter_text, style="bold"))
        t.append(" (transitions by 4-tuple, either state)", DIM)
    t.append(f" · {count_text(model.total)} sockets · {count_text(model.transitions_seen)} transitions "
             f"since {'the filter' if model.pred is not None else 'start'} · rates over {model.window} s", DIM)
    if source:
        t.append(f" · {source}", DIM)
    return t


def path_text(model: StateDiagram, width: int) -> Text:
    t = Text()
    if model.followed is None:
        t.append("Followed: nothing (select a connection in a list, or connect with the Client)", DIM)
        return t
    src, sport, dst, dport = model.followed
    t.append("Followed ", HEAD)
    t.append_text(safe_text(f"{src}:{sport} → {dst}:{dport}"))
    if model.current is not None:  # first: it survives a narrow screen's cut
        t.append(" now ", DIM)
        t.append(state_name(model.current), Style(color=state_color(model.current), bold=True, reverse=True))
    t.append(": ")
    edges = model.path_edges()
    if not edges:
        t.append("no transition seen yet", DIM)
    for i, (old, new) in enumerate(edges):
        if i == 0:
            t.append(state_name(old), Style(color=state_color(old)))
        t.append(" → ", NEWEST_STYLE if i == len(edges) - 1 else PATH_STYLE)
        t.append(state_name(new), Style(color=state_color(new), bold=True))
    t.truncate(width, overflow="ellipsis")
    return t


def legend(width: int) -> list[Text]:
    first = Text("✗ never reported by Linux: a request socket (NEW_SYN_RECV) changes no socket's state; "
                 "TIME-WAIT is a mini-socket (the full one goes FIN_WAIT2 / CLOSING → CLOSE), its 2MSL end no "
                 "state change.", DIM)
    second = Text("FIN-WAIT-1 → TIME-WAIT (rcv FIN,ACK) shows as FIN_WAIT1 → FIN_WAIT2 → CLOSE. N/s: over the "
                  "window, ·N: since start. Yellow: the followed connection's path (newest edge and its state's "
                  "box reversed).", DIM)
    for t in (first, second):
        t.truncate(width, overflow="ellipsis")
    return [first, second]


def other_edges(model: StateDiagram, width: int) -> Text:
    t = Text("Other edges seen: ", DIM)
    others = [k for k in model.cumulative if k not in ROUTES and k not in STUBS]
    if not others:
        t.append("none", DIM)
    for old, new in sorted(others):
        t.append(f"{state_name(old)}→{state_name(new)} ", LABEL_STYLE)
        t.append(f"{rate_text(model.rate(old, new))} ·{model.cumulative[(old, new)]:,}  ", LABEL_STYLE)
    t.truncate(width, overflow="ellipsis")
    return t


def draw_compact(model: StateDiagram, width: int, height: int, source: str = "") -> list[Text]:
    out = [header(model, source)]
    cell_w = 20
    per_line = max(1, width // cell_w)
    row = Text()
    for i, code in enumerate(STATES):
        current = model.current == code and model.followed is not None
        cell = Text()
        cell.append(state_name(code), Style(color=state_color(code), bold=True, reverse=current))
        cell.append(f" {count_text(model.count(code))}")
        cell.pad_right(cell_w - cell.cell_len)
        row.append_text(cell)
        if (i + 1) % per_line == 0:
            out.append(row)
            row = Text()
    if row.plain:
        out.append(row)
    out.append(path_text(model, width))
    room = max(0, height - len(out) - 1)
    out.append(Text("Busiest edges (rate over the window · count since start):", HEAD))
    path, newest = _path_sets(model)
    for e, rate, n in model.top_edges(room):
        key = (e.old, e.new)
        t = Text()
        style = NEWEST_STYLE if key == newest else PATH_STYLE if key in path else LABEL_STYLE
        t.append(f"{state_name(e.old)}→{state_name(e.new)}", style)
        t.append(f"  {rate_text(rate)} ·{n:,}  ", LIVE_STYLE)
        t.append(e.cause, DIM)
        t.truncate(width, overflow="ellipsis")
        out.append(t)
    if not model.cumulative:
        out.append(Text("none yet", DIM))
    return out[:max(1, height)]


def draw(model: StateDiagram, width: int, height: int, source: str = "") -> list[Text]:
    if width >= FULL_WIDTH and height >= FULL_HEIGHT:
        return ([header(model, source)] + draw_full(model)
                + [path_text(model, width), *legend(width), other_edges(model, width)])
    return draw_compact(model, width, height, source)
