"""Fleet screen (``F``): every host's sockets as a Prometheus server stores them (`sockmon --prometheus URL`).

A view of `sockmon.core.fleet.FleetView`: one row per host (instance, namespace, sockets per state, overflow /
drop / retransmit / transition rates over the last minute) and the fleet's listeners closest to a full accept
queue. The queries run in a thread worker every `REFRESH_S` (``r``: now), never on the UI thread; the newest
answer wins. A bad URL or a Prometheus that is down gives one line at the top; the screen and the app keep
running and the next refresh tries again. Without ``--prometheus`` the screen says how to enable it.
Every string from the server (instances, namespaces, process names) is shown inert (`tui/fmt.py`).
"""

from __future__ import annotations

import time

from rich.text import Text
from sockmon.core.fleet import FleetError, PrometheusClient, fmt_rate, query_fleet
from sockmon.tui.fmt import cell, safe_text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

REFRESH_S = 5.0
STATES = ("established", "listen", "time_wait", "syn_recv", "close_wait")
HOW_TO = ("The fleet view reads `sockmon export` metrics back from Prometheus. Start sockmon with "
          "--prometheus URL (e.g. sockmon --prometheus http://127.0.0.1:9090), run `sockmon export` on each host "
          "and let Prometheus scrape them (README: Prometheus export).")




class FleetScreen(Screen[None]):
    DEFAULT_CSS = """
    FleetScreen #fleet-status { height: auto; padding: 0 1; background: $boost; }
    FleetScreen #fleet-status.-error { background: $error 30%; }
    FleetScreen #fleet-hosts { height: 1fr; min-height: 4; }
    FleetScreen #fleet-listeners-title { height: 1; padding: 0 1; text-style: bold; }
    FleetScreen #fleet-listeners { height: 1fr; min-height: 4; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", show=True),
        Binding("q", "app.pop_screen", "Back", show=False),
        Binding("r", "refresh_fleet", "Refresh", show=True),
    ]

    def __init__(self, url: str | None, *, refresh_s: float = REFRESH_S, timeout: float = 5.0) -> None:
        super().__init__()
        self.url = url
        self.refresh_s = refresh_s
        self.timeout = timeout
        self.view = None  # the newest FleetView shown
        self.error: str | None = None
        self.refreshes = 0  # answers or errors shown (tests wait on it)
        self._client: PrometheusClient | None = None
        self._setup_error: str | None = None
        if url:
            try:
                self._client = PrometheusClient(url, timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - BadInput: shown as the status line
                self._setup_error = str(exc)

    def compose(self) -> ComposeResult:
        yield Static(id="fleet-status", markup=False)
        yield DataTable(id="fleet-hosts", cursor_type="row", zebra_stripes=True)
        yield Static("Listeners closest to a full accept queue", id="fleet-listeners-title", markup=False)
        yield DataTable(id="fleet-listeners", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        hosts = self.query_one("#fleet-hosts", DataTable)
        hosts.add_columns("Host", "Netns", "Total", "Estab", "Listen", "TimeWait", "SynRecv", "CloseWait",
                          "Ovfl/s", "Drop/s", "Retr/s", "Trans/s")
        self.query_one("#fleet-listeners", DataTable).add_columns(
            "Host", "Netns", "Local", "Process", "Queue", "Backlog", "Fill")
        if self._client is None:
            self._status(self._setup_error or HOW_TO, error=self._setup_error is not None)
            for widget in self.query("DataTable, #fleet-listeners-title"):
                widget.display = False  # nothing to show: only the line above
            return
        self._status(f"asking Prometheus at {self.url} …")
        hosts.focus()
        self.set_interval(self.refresh_s, self.action_refresh_fleet)
        self.action_refresh_fleet()

    def _status(self, line: str, *, error: bool = False) -> None:
        status = self.query_one("#fleet-status", Static)
        status.update(safe_text(line))
        status.set_class(error, "-error")

    def action_refresh_fleet(self) -> None:
        if self._client is not None:
            self._fetch()

    @work(thread=True, exclusive=True, group="fleet", exit_on_error=False)
    def _fetch(self) -> None:
        worker = get_current_worker()
        try:
            view = query_fleet(self._client)
        except FleetError as exc:
            result, error = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug or an odd answer: one line, the app keeps running
            result, error = None, f"fleet query failed: {type(exc).__name__}: {exc}"
        else:
            result, error = view, None
        if not worker.is_cancelled:  # a newer refresh was started: its answer wins
            self.app.call_from_thread(self._show, result, error)

    def _show(self, view, error: str | None) -> None:
        if not self.is_mounted:
            return
        self.refreshes += 1
        if error is not None:
            self.error = error
            shown = "" if self.view is None else " (the tables show the last answer)"
            self._status(f"{error}{shown}; retrying every {self.refresh_s:g} s (r: now)", error=True)
            return
        self.error = None
        self.view = view
        stamp = time.strftime("%H:%M:%S", time.localtime(view.taken_at))
        self._status(f"Prometheus {view.url} · {len(view.hosts)} host(s) · {stamp} · refresh every "
                     f"{self.refresh_s:g} s (r: now) · rates over the last minute")
        hosts = self.query_one("#fleet-hosts", DataTable)
        hosts.clear()
        for h in view.hosts:
            hosts.add_row(cell(h.instance), cell(h.netns), Text(str(h.total), justify="right"),
                          *(Text(str(h.sockets.get(s, 0)), justify="right") for s in STATES),
                          *(Text(fmt_rate(v), justify="right") for v in (h.overflows_per_s, h.drops_per_s,
                                                                        h.retransmits_per_s, h.transitions_per_s)))
        listeners = self.query_one("#fleet-listeners", DataTable)
        listeners.clear()
        for li in view.listeners:
            listeners.add_row(cell(li.instance), cell(li.netns), cell(li.local), cell(li.process),
                              Text(str(li.queue), justify="right"), Text(str(li.backlog), justify="right"),
                              Text(f"{li.fill * 100:.0f}%", justify="right",
                                   style="bold red" if li.fill >= 0.9 else ""))
