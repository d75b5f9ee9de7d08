"""Scenarios pane: the lab's guided scenarios (core/lab/scenarios), one at a time.

Enter on a scenario runs it in a worker thread (``sockmon.core.scenarios.runner.run_scenario``, never on
the UI thread); each step arrives through ``call_from_thread`` and is written as inert text: the call made
and the kernel's answer, why, and every check (✓ / ✗ with what the kernel said). The result line gives
ok / FAILED and the observed figures; below the narration, the run's packet ladder (every packet of the
scenario's connections, root; else the one line saying why it is empty). The 4-tuples of each step go to the app as `ScenarioSockets`; the
app highlights those rows in the socket lists (this pane imports no other pane). ``x`` stops a running
scenario: it stops at its next wait and its context releases every socket, namespace, link and tracefs
instance. The app's shutdown calls `stop_and_wait`.

Test seam: `show_step` / `show_result` draw a given step / result (a fake stream, for snapshots).
"""

from __future__ import annotations

import threading

from rich.text import Text
from sockmon.core.lab.scenarios import scenarios
from sockmon.core.lab.scenarios.base import Interrupted, Result, Step
from sockmon.tui.fmt import safe_text
from sockmon.tui.messages import ScenarioSockets
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, RichLog, Static
from textual.widgets.option_list import Option

MAX_LINES = 2_000  # narration lines kept (oldest first beyond)
MAX_LADDER_LINES = 500  # packets of a run's ladder written below its narration (the rest counted)
STOP_WAIT_S = 5.0  # shutdown waits this long for a stopped scenario's cleanup


def step_text(step: Step) -> Text:
    out = Text()
    out.append(f"[{step.index}] ", "dim")
    out.append(f"{step.actor}: ", "bold #56b6c2")
    out.append_text(safe_text(step.text))
    if step.why:
        out.append("\n    why: ", "dim")
        out.append_text(safe_text(step.why, "dim italic"))
    for c in step.checks:
        out.append("\n    ")
        out.append("✓ " if c.ok else "✗ ", "bold green" if c.ok else "bold red")
        out.append_text(safe_text(c.what))
        out.append(f": {c.said} ", "dim")
        out.append_text(safe_text(c.observed, "" if c.ok else "bold red"))
        if not c.ok:
            out.append(", expected ", "dim")
            out.append_text(safe_text(c.expected))
        out.append(f" ({c.source})", "dim")
    return out


def result_text(result: Result) -> Text:
    out = Text()
    out.append(f"{result.scenario}: ", "bold")
    out.append("ok" if result.ok else "FAILED", "bold green" if result.ok else "bold red")
    figures = ", ".join(f"{k}={v}" for k, v in result.observed.items())
    if figures:
        out.append_text(safe_text(f"  {figures}", "dim"))
    for f in result.failed:
        out.append("\n  failed: ", "red")
        out.append_text(safe_text(f))
    if result.error:
        out.append("\n  error: ", "red")
        out.append_text(safe_text(result.error))
    return out


def ladder_texts(result: Result, cap: int = MAX_LADDER_LINES) -> list[Text]:
    """The run's packet ladder as inert lines: a heading, one line per packet (at most ``cap``, then how
    many more), SYN / FIN / RST picked out; or the one line saying why it is empty."""
    lines = result.ladder_lines()
    if not lines:
        return []
    if not result.ladder:
        return [safe_text(lines[0], "yellow")]
    out = [Text.assemble(("── ", "dim"), safe_text(lines[0], "bold"), (" ──", "dim"))]
    for p, line in zip(result.ladder[:cap], lines[1:cap + 1], strict=False):
        style = "bold red" if "RST" in p.flags else "bold yellow" if "FIN" in p.flags else \
            "bold #56b6c2" if "SYN" in p.flags else ""
        out.append(safe_text(line, style))
    if len(result.ladder) > cap:
        out.append(Text(f"… {len(result.ladder) - cap} more packets (sockmon lab {result.scenario} prints "
                        "every one)", "dim"))
    return out


class _StepArrived(Message):
    def __init__(self, step: Step) -> None:
        super().__init__()
        self.step = step


class _Finished(Message):
    def __init__(self, name: str, result: Result | None) -> None:
        super().__init__()
        self.name = name
        self.result = result  # None: stopped


class ScenariosPane(Vertical):
    BINDINGS = [
        Binding("enter", "run", "Run", show=True),
        Binding("x", "stop", "Stop", show=True),
        Binding("e", "clear", "Clear", show=False),
    ]
    DEFAULT_CSS = """
    ScenariosPane #scenario-list { height: auto; max-height: 40%; border: round $primary-darken-2;
                                   text-wrap: nowrap; text-overflow: ellipsis; }
    ScenariosPane #scenario-log { height: 1fr; border: round $primary-darken-2; }
    ScenariosPane #scenario-result { height: auto; max-height: 6; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self._ctx = None  # the running scenario's context (stop() from the UI thread is safe)
        self._done = threading.Event()
        self._done.set()
        self.running: str | None = None
        self.last_result: Result | None = None
        self.steps_shown = 0

    def compose(self) -> ComposeResult:
        width = max(len(s.name) for s in scenarios())
        yield OptionList(*(Option(Text.assemble((s.name.ljust(width), "bold"), "  ", (s.summary, "dim"),
                                                no_wrap=True, overflow="ellipsis"), id=s.name)
                           for s in scenarios()), id="scenario-list")
        yield RichLog(id="scenario-log", wrap=True, highlight=False, markup=False, auto_scroll=True,
                      max_lines=MAX_LINES)
        yield Static(Text("Enter runs the scenario under the cursor; x stops it. Each step is checked against "
                          "the kernel.", "dim"), id="scenario-result", markup=False)

    def on_mount(self) -> None:
        self.query_one("#scenario-list", OptionList).border_title = "Scenarios"
        self.query_one("#scenario-log", RichLog).border_title = "Narration"

    def focus_list(self) -> None:
        self.query_one("#scenario-list", OptionList).focus()

    # ------------------------------------------------------------------ drawing (UI thread; test seam)
    def show_start(self, name: str) -> None:
        self.running = name
        self.steps_shown = 0
        log = self.query_one("#scenario-log", RichLog)
        log.border_title = f"Narration: {name}"
        log.write(Text(f"── {name} ──", "bold"))
        self.query_one("#scenario-result", Static).update(Text(f"{name}: running… (x stops it)", "yellow"))

    def show_step(self, step: Step) -> None:
        self.steps_shown += 1
        log = self.query_one("#scenario-log", RichLog)
        # wrap at the log's own width (a hidden tab has none: the terminal's, not RichLog's 78 columns)
        log.write(step_text(step), width=log.scrollable_content_region.width or max(20, self.app.size.width - 4))
        self.post_message(ScenarioSockets(tuple(e.four_tuple for e in step.sockets)))

    def show_result(self, result: Result) -> None:
        self.running = None
        self.last_result = result
        self.query_one("#scenario-result", Static).update(result_text(result))
        log = self.query_one("#scenario-log", RichLog)
        width = log.scrollable_content_region.width or max(20, self.app.size.width - 4)
        for line in ladder_texts(result):
            log.write(line, width=width)

    def show_stopped(self, name: str) -> None:
        self.running = None
        self.query_one("#scenario-result", Static).update(
            Text(f"{name}: stopped; everything it made is removed", "yellow"))

    # ------------------------------------------------------------------ running
    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.run_scenario(event.option.id)

    def action_run(self) -> None:
        lst = self.query_one("#scenario-list", OptionList)
        if lst.highlighted is not None:
            self.run_scenario(lst.get_option_at_index(lst.highlighted).id)

    def run_scenario(self, name: str | None) -> None:
        if name is None:
            return
        if self.running is not None:
            self.app.notify(f"{self.running} is running: x stops it", severity="warning", timeout=3)
            return
        from sockmon.core.scenarios.runner import KernelContext

        self._ctx = KernelContext(name)
        self._done.clear()
        self.show_start(name)
        self._run(name, self._ctx)

    @work(thread=True, exclusive=True, group="scenario", exit_on_error=False)
    def _run(self, name: str, ctx) -> None:
        from sockmon.core.scenarios.runner import run_scenario

        # post_message never blocks (call_from_thread would, and the UI thread may be in stop_and_wait)
        result: Result | None = None
        try:
            result = run_scenario(name, lambda step: self.post_message(_StepArrived(step)), context=ctx)
        except Interrupted:
            pass
        except Exception as exc:  # noqa: BLE001 - shown, the app keeps running
            result = Result(scenario=name, ok=False, observed={}, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()
        self.post_message(_Finished(name, result))

    @on(_StepArrived)
    def _step_arrived(self, message: _StepArrived) -> None:
        message.stop()
        self.show_step(message.step)

    @on(_Finished)
    def _finished(self, message: _Finished) -> None:
        message.stop()
        if message.result is None:
            self.show_stopped(message.name)
        else:
            self.show_result(message.result)

    def action_stop(self) -> None:
        if self._ctx is not None and self.running is not None:
            self._ctx.stop()

    def action_clear(self) -> None:
        self.query_one("#scenario-log", RichLog).clear()

    def stop_and_wait(self, timeout: float = STOP_WAIT_S) -> bool:
        """Stop a running scenario and wait for its cleanup (any thread but the worker's); True when done."""
        if self._ctx is not None:
            self._ctx.stop()
        return self._done.wait(timeout)

    def on_unmount(self) -> None:
        if self._ctx is not None:
            self._ctx.stop()
