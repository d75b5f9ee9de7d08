"""`sockmon ls --closed` / `sockmon watch --closed`: record closed connections, print them.

There is no history before sockmon runs, so this records: a `Collector` (tracepoint as root, else
snapshot diffs) feeds a `ClosedHistory` (`sockmon.core.table.closed`) for ``--for S`` seconds, or until
SIGINT / SIGTERM / SIGHUP, then one last collection catches what closed at the end and every connection
seen closing is printed, oldest first: JSON lines (`sockmon.core.jsonout.closed_lines`) or a text table
(every name inert). `watch --closed` prints each one as it is recorded, until a signal. Not a subcommand
of its own (`COMMANDS`): `sockmon.cli.ls` calls `run_closed`, `sockmon.cli.watch` `watch_closed`.
"""

from __future__ import annotations

import signal
import sys
import threading

from sockmon.cli.output import Stop, fileno_of_stdout, write_all
from sockmon.core.text import inert

RECORD_INTERVAL = 0.25  # seconds between snapshots while recording (bytes and owners are as last seen)
FINAL_WAIT = 3.0  # at most this long for the last collection after the recording ends


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 60:
        return f"{s:.3f}s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def format_closed(records) -> list[str]:
    """The aligned text table of closed connections; every outside string (names) inert."""
    from sockmon.cli.ls import fmt_endpoint, owner_cell
    from sockmon.core.jsonout import iso_time

    header = ("Closed", "Ended", "Final", "Local Address:Port", "Peer Address:Port", "Lifetime", "Recv",
              "Sent", "Process")
    rows = []
    for c in records:
        life = fmt_seconds(c.lifetime_s) if c.birth_seen else f">{fmt_seconds(c.lifetime_s)}" \
            if c.lifetime_s is not None else "?"
        rows.append((iso_time(c.closed_wall)[11:23], c.ended, c.state_name,
                     fmt_endpoint(c.family, c.src, c.sport), fmt_endpoint(c.family, c.dst, c.dport), life,
                     "?" if c.bytes_received is None else str(c.bytes_received),
                     "?" if c.bytes_sent is None else str(c.bytes_sent), owner_cell(c.owner)))
    from sockmon.cli.ls import align

    return align(header, rows, {5, 6, 7})


def closed_line(c) -> str:
    """One closed connection as one text line (`sockmon watch --closed`), names inert."""
    from sockmon.cli.ls import fmt_endpoint, owner_cell
    from sockmon.core.jsonout import iso_time

    life = fmt_seconds(c.lifetime_s) if c.birth_seen else "?"
    recv = "?" if c.bytes_received is None else str(c.bytes_received)
    sent = "?" if c.bytes_sent is None else str(c.bytes_sent)
    return (f"{iso_time(c.closed_wall)}  {c.ended:<14} {c.state_name:<11}  {fmt_endpoint(c.family, c.src, c.sport)} -> "
            f"{fmt_endpoint(c.family, c.dst, c.dport)}  lifetime {life}  recv {recv} sent {sent}  "
            f"{owner_cell(c.owner)}  [{c.source}]").rstrip()


def record(netns, port, with_owners: bool, seconds: float | None, *, label: str, on_new=None,
           use_tracepoint: bool | None = None):
    """Record closed connections for ``seconds`` (None: until a signal) with a `Collector` feeding a
    `ClosedHistory`; ``on_new(records)`` (collector thread) gets each tick's new records. Returns the model
    after one last collection (what closed at the very end) and `ClosedHistory.flush`."""
    from sockmon.core.table.closed import ClosedHistory
    from sockmon.core.table.collector import Collector

    if netns is not None:
        import os

        from sockmon.core.netns import open_netns

        os.close(open_netns(netns))  # a missing namespace: one line, before anything
    stop = Stop()
    model = ClosedHistory()
    failed: list[BaseException] = []
    final = threading.Event()
    lock = threading.Lock()
    state = {"final_from": None, "shown": 0}

    def emit_new() -> None:
        if on_new is None:
            return
        new = [c for c in model.records_oldest_first() if c.seq > state["shown"]]
        if new:
            state["shown"] = new[-1].seq
            on_new(new)

    def on_update(update) -> None:
        model.feed(update)
        if update.error:
            print(f"sockmon {label}: {inert(update.error)}", file=sys.stderr, flush=True)
        emit_new()
        with lock:
            if state["final_from"] is not None and update.snapshot is not None \
                    and update.snapshot.taken_at >= state["final_from"]:
                final.set()

    def on_error(exc: BaseException) -> None:
        failed.append(exc)
        stop.set()

    def on_signal(signum, frame) -> None:
        stop.set()

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in signals}
    try:
        # full dumps every tick (no event-driven table): a record's bytes and owner come from the last
        # snapshot holding its socket, which must have read every socket (core/table/closed.py)
        with Collector(interval=RECORD_INTERVAL, netns=netns, port=port, with_info=True, with_owners=with_owners,
                       use_tracepoint=use_tracepoint, on_update=on_update, on_error=on_error,
                       event_table=False) as collector:
            if collector.transition_source != "tracepoint":
                why = collector.tracer_note or "no tracepoint"
                print(f"sockmon {label}: how connections ended is inferred from snapshots ({inert(why)})",
                      file=sys.stderr, flush=True)
            # (the collector is running from here: tests and scripts may start their connections now)
            how_long = f"for {seconds:g} s (Ctrl-C ends it sooner)" if seconds else "until Ctrl-C"
            print(f"sockmon {label}: recording {how_long}", file=sys.stderr, flush=True)
            stop.wait(seconds)
            if not failed:  # one last collection: what closed just now
                import time

                with lock:
                    state["final_from"] = time.monotonic()
                collector.refresh_now()
                final.wait(FINAL_WAIT)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        stop.close()
    if failed:
        raise failed[0]
    model.flush()
    emit_new()
    return model


def run_closed(args, netns) -> int:
    """`sockmon ls --closed`: record, then print."""
    from sockmon.core.errors import BadInput
    from sockmon.core.jsonout import closed_lines

    seconds = args.record_for
    if not 0 < seconds <= 86400:  # refuses nan too
        raise BadInput(f"--for must be between 0 and 86400 seconds, got {seconds}")
    model = record(netns, args.port, not args.no_owners, seconds, label="ls --closed")
    records = model.records_oldest_first()
    if args.state:
        from sockmon.core.table.snapshot import normalize_states

        wanted = set(normalize_states(args.state))
        records = [c for c in records if c.state in wanted]
    fd = fileno_of_stdout()
    if args.json:
        if records:
            write_all(fd, closed_lines(records))
        return 0
    write_all(fd, ("\n".join(format_closed(records)) + "\n").encode("utf-8", "backslashreplace"))
    return 0


def watch_closed(args, netns) -> int:
    """`sockmon watch --closed`: each closed connection as it is recorded, until a signal."""
    from sockmon.core.jsonout import closed_lines

    fd = fileno_of_stdout()

    def on_new(records) -> None:  # collector thread: a closed pipe stops the recording (on_error)
        if args.json:
            write_all(fd, closed_lines(records))
        else:
            write_all(fd, "".join(closed_line(c) + "\n" for c in records).encode("utf-8", "backslashreplace"))

    record(netns, args.port, True, None, label="watch --closed", on_new=on_new,
           use_tracepoint=False if args.inferred else None)
    return 0
