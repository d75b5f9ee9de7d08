"""Exact TCP state transitions from the kernel tracepoint `sock:inet_sock_set_state` (root).

`TransitionTracer` makes a private tracefs instance ``instances/sockmon-<pid>-<rand>`` (so it never
disturbs the global trace buffer or another tool), sets its clock to ``mono`` (timestamps are
CLOCK_MONOTONIC, the clock of `time.monotonic()`), filters ``protocol == 6`` (plus the port, if
any), enables the event and reads it non-blocking until EAGAIN, by one of two readers (`source`):

- ``binary`` (the default when available): one fd per online CPU on ``per_cpu/cpuN/trace_pipe_raw``,
  whose reads return ring-buffer pages, decoded by core/table/traceraw.py with the layout read from the
  instance's ``events/header_page``, ``events/header_event`` and the event's ``format`` file (no
  offset is assumed). The kernel formats no text: about a third of the text reader's CPU
  (docs/kernel-facts.md §3). The CPUs' records are merged by time.
- ``text``: ``trace_pipe`` lines (`parse_line`), when the per-CPU files or the format files are
  missing or do not parse (`note` says why), or when asked (``reader="text"``).

Call `batches()` (or `read()`) often (every ≤ 100 ms at high rates, docs/kernel-facts.md §3); losses
are counted by the kernel per CPU (``per_cpu/cpuN/stats``: overrun + dropped events; the binary pages
also carry the count) and reported by `overruns`, never hidden.

Bounded: a reader that fell behind finds up to 2 × `DEFAULT_BUFFER_KB` waiting in the kernel.
`batches()` reads at most `BATCH_BYTES` of text, or `PAGES_PER_BATCH` pages of each CPU, at a time and
hands out the records of one batch before reading the next, so memory stays flat however large the
backlog, and a caller can stop (SIGTERM) between batches. The binary reader holds back the records
newer than what a CPU that still has pages waiting delivered (≤ `PAGES_PER_BATCH` pages of records per
CPU: a CPU with held records is not read again until they are out) so that batches come in time
order. The dwell-time table keeps at most `MAX_OPEN` sockets (oldest evicted).

The instance is removed by `close()`, on leaving the ``with`` block (also on an exception), at
interpreter exit (atexit) and — for the CLI — by SIGTERM turned into SystemExit. Instances left by
crashed runs (their pid is gone) are removed by `cleanup_stale_instances()`.
"""

from __future__ import annotations

import atexit
import bisect
import ctypes
import ctypes.util
import dataclasses
import errno as _errno
import itertools
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from operator import itemgetter

from sockmon.core.errors import SockmonError
from sockmon.core.records import Transition
from sockmon.core.states import STATE_CODES
from sockmon.core.table.traceraw import (
    TraceRawError,
    TransitionDecoder,
    parse_format,
    parse_header_event,
    parse_header_page,
)

TRACEFS = "/sys/kernel/tracing"
EVENT = "events/sock/inet_sock_set_state"
PREFIX = "sockmon-"
_MARK = ": inet_sock_set_state: "
_STATE = {f"TCP_{name}": code for name, code in STATE_CODES.items()}
_FAMILY = {"AF_INET": socket.AF_INET.value, "AF_INET6": socket.AF_INET6.value}
_FAMILY_TOKEN = {f"family={k}": v for k, v in _FAMILY.items()}
_OLD_TOKEN = {f"oldstate=TCP_{name}": code for name, code in STATE_CODES.items()}
_NEW_TOKEN = {f"newstate=TCP_{name}": code for name, code in STATE_CODES.items()}
DEFAULT_BUFFER_KB = 16384  # per CPU: ~3 s of events at 10k connections/s if the reader is starved
BATCH_BYTES = 256 * 1024  # trace_pipe text read per batch (≈ 1,300 transitions)
_READ_CHUNK = 64 * 1024
MAX_OPEN = 65_536  # sockets whose last transition is remembered (for dwell_ms); oldest evicted beyond
PAGES_PER_BATCH = 16  # binary reader: ring-buffer pages read per CPU per batch (64 KiB, ≈ 850 transitions)
READERS = ("auto", "binary", "text")


class TracingUnavailable(SockmonError):
    pass


_TS = itemgetter(0)


def _online_cpus() -> list[int]:
    """The online CPUs (``/sys/devices/system/cpu/online``: "0-3,5"), else every CPU os.cpu_count() counts."""
    try:
        with open("/sys/devices/system/cpu/online", encoding="ascii") as fh:
            spec = fh.read().strip()
        cpus: list[int] = []
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
        return cpus
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


def _mount_tracefs(path: str = TRACEFS) -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return libc.mount(b"nodev", path.encode(), b"tracefs", 0, None) == 0


def tracefs_root(*, mount: bool = True) -> str | None:
    """The tracefs mount point (mounting it at /sys/kernel/tracing as root when absent), or None."""
    if os.path.isdir(os.path.join(TRACEFS, "instances")):
        return TRACEFS
    if os.path.isdir("/sys/kernel/debug/tracing/instances"):
        return "/sys/kernel/debug/tracing"
    if mount and os.geteuid() == 0 and os.path.isdir(TRACEFS):
        try:
            if _mount_tracefs() and os.path.isdir(os.path.join(TRACEFS, "instances")):
                return TRACEFS
        except OSError:
            pass
    return None


def tracing_available() -> tuple[bool, str]:
    """(True, "") when the tracepoint can be used, else (False, why) in one line."""
    if os.geteuid() != 0:
        return False, "not root: exact transitions need root (tracefs); transitions are inferred from snapshots"
    root = tracefs_root()
    if root is None:
        return False, f"tracefs is not mounted at {TRACEFS} and could not be mounted"
    if not os.path.isdir(os.path.join(root, EVENT)):
        return False, "this kernel has no sock:inet_sock_set_state tracepoint"
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def _remove_instance(path: str) -> None:
    try:
        _write(os.path.join(path, EVENT, "enable"), "0")
    except OSError:
        pass
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != _errno.EBUSY:
                raise
            time.sleep(0.01)  # a reader is still closing trace_pipe
    os.rmdir(path)


def list_instances(root: str | None = None) -> list[str]:
    root = root or tracefs_root(mount=False)
    if root is None:
        return []
    try:
        return sorted(n for n in os.listdir(os.path.join(root, "instances")) if n.startswith(PREFIX))
    except OSError:
        return []


def cleanup_stale_instances(root: str | None = None) -> list[str]:
    """Remove sockmon instances whose creating pid no longer exists; returns their names."""
    root = root or tracefs_root(mount=False)
    removed = []
    for name in list_instances(root):
        parts = name.split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        if _pid_alive(int(parts[1])):
            continue
        try:
            _remove_instance(os.path.join(root, "instances", name))  # type: ignore[arg-type]
            removed.append(name)
        except OSError:
            continue
    return removed


_LIVE: set[TransitionTracer] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    for tracer in list(_LIVE):
        try:
            tracer.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def parse_line(line: str) -> tuple | None:
    """(ts, family, src, sport, dst, dport, old, new) from one trace_pipe line; None if not ours."""
    i = line.find(_MARK)
    if i < 0:
        return None
    try:
        ts = float(line[:i].rsplit(None, 1)[1])
        f = line[i + len(_MARK):].split()
        # family= protocol= sport= dport= saddr= daddr= saddrv6= daddrv6= oldstate= newstate=
        family = _FAMILY[f[0][7:]]
        sport = int(f[2][6:])
        dport = int(f[3][6:])
        if family == socket.AF_INET:
            src, dst = f[4][6:], f[5][6:]
        else:
            src, dst = f[6][8:], f[7][8:]
        old = _STATE[f[8][9:]]
        new = _STATE[f[9][9:]]
    except (IndexError, KeyError, ValueError):
        return None
    return ts, family, src, sport, dst, dport, old, new


class TransitionTracer:
    """Context manager over a private tracefs instance; `read()` returns new `Transition`s."""

    def __init__(self, *, port: int | None = None, buffer_kb: int = DEFAULT_BUFFER_KB,
                 root: str | None = None, reader: str = "auto") -> None:
        """``reader``: "binary" (``per_cpu/cpuN/trace_pipe_raw``, decoded by core/table/traceraw.py),
        "text" (``trace_pipe``) or "auto" (binary when the per-CPU files and the format parse, else text;
        `source` says which, `note` why)."""
        if reader not in READERS:
            raise ValueError(f"reader must be one of {', '.join(READERS)}, got {reader!r}")
        ok, why = tracing_available() if root is None else (True, "")
        if not ok:
            raise TracingUnavailable(why)
        self.root = root or tracefs_root()
        self.name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.path = os.path.join(self.root, "instances", self.name)  # type: ignore[arg-type]
        self._fd: int | None = None
        self._raw_fds: dict[int, int] | None = None  # binary reader: CPU → its trace_pipe_raw fd
        self._decoder: TransitionDecoder | None = None
        self._page_size = 4096
        self._held: dict[int, list[tuple]] = {}  # binary: per CPU, records not handed out yet (time order)
        self._missed = 0  # binary: events lost as the pages' headers say
        self.bad_pages = 0  # binary: pages that did not decode (skipped; the error in `note`)
        self.source = "text"
        self.note = ""
        self._rest = ""
        self._last: dict[tuple, tuple[float, int]] = {}  # 4-tuple → (ts, state) of its last transition
        self._lock = threading.Lock()
        self._closed = False
        self.events = 0
        self.batch_bytes_max = 0  # the largest batch of text read so far (≤ BATCH_BYTES)
        cleanup_stale_instances(self.root)
        os.mkdir(self.path)
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            _write(os.path.join(self.path, "buffer_size_kb"), str(int(buffer_kb)))
            _write(os.path.join(self.path, "trace_clock"), "mono")
            flt = "protocol == 6"
            if port is not None:
                flt += f" && (sport == {int(port)} || dport == {int(port)})"
            _write(os.path.join(self.path, EVENT, "filter"), flt)
            why = ""
            if reader != "text":
                try:
                    self._open_raw()
                except (OSError, TraceRawError) as exc:
                    if reader == "binary":
                        raise TracingUnavailable(f"binary tracepoint reader unavailable: {exc}") from exc
                    why = f"{type(exc).__name__}: {exc}"
            if self._raw_fds is not None:
                self.source = "binary"
                self.note = f"binary reader (trace_pipe_raw, {len(self._raw_fds)} CPUs)"
            else:
                self._fd = os.open(os.path.join(self.path, "trace_pipe"),
                                   os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                self.note = "text reader (trace_pipe)" + (f"; binary reader unavailable: {why}" if why else "")
            _write(os.path.join(self.path, EVENT, "enable"), "1")
        except BaseException:
            self.close()
            raise

    def _open_raw(self) -> None:
        """The decoder (from the instance's format files) and one non-blocking fd per online CPU."""
        def text(*parts: str) -> str:
            for base in (self.path, self.root):
                try:
                    with open(os.path.join(base, *parts), encoding="ascii", errors="replace") as fh:
                        return fh.read()
                except FileNotFoundError:
                    continue
            raise TraceRawError(f"no {'/'.join(parts)} in tracefs")

        layout = parse_header_page(text("events", "header_page"))
        parse_header_event(text("events", "header_event"))
        try:  # sub-buffers may be larger than a page (Linux ≥ 6.8); a read returns one sub-buffer
            with open(os.path.join(self.path, "buffer_subbuf_size_kb"), encoding="ascii") as fh:
                subbuf = int(fh.read().strip() or 0) * 1024
        except (OSError, ValueError):
            subbuf = 0
        if subbuf > layout.page_size:
            layout = dataclasses.replace(layout, data_size=subbuf - layout.data_offset)
        self._decoder = TransitionDecoder(parse_format(text(EVENT, "format")), layout)
        self._page_size = layout.page_size
        fds: dict[int, int] = {}
        try:
            for cpu in _online_cpus():
                try:
                    fds[cpu] = os.open(os.path.join(self.path, "per_cpu", f"cpu{cpu}", "trace_pipe_raw"),
                                       os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        if not fds:
            raise TraceRawError("no per_cpu/cpuN/trace_pipe_raw in the instance")
        self._raw_fds = fds

    def __enter__(self) -> TransitionTracer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def read_raw(self, max_bytes: int = BATCH_BYTES) -> list[str]:
        """Complete lines from at most ``max_bytes`` of new text (non-blocking); [] when none is waiting.

        A line cut at the end of the batch is kept for the next call.
        """
        if self._fd is None:
            return []
        chunks = []
        total = 0
        while total < max_bytes:
            try:
                data = os.read(self._fd, min(_READ_CHUNK, max_bytes - total))
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not data:
                break
            chunks.append(data)
            total += len(data)
        if not chunks:
            return []
        self.batch_bytes_max = max(self.batch_bytes_max, total)
        text = self._rest + b"".join(chunks).decode("ascii", "replace")
        del chunks
        lines = text.split("\n")
        self._rest = lines.pop()
        if not lines:  # text but no complete line yet: say so with an empty line
            return [""]
        return lines

    def batches(self, max_bytes: int = BATCH_BYTES) -> Iterator[list[Transition]]:
        """The transitions waiting now, one batch (≤ ``max_bytes`` of text) at a time, oldest first.

        Stops at EAGAIN. Each batch is parsed only when the previous one was taken, so a caller that
        handles (writes) each batch before asking for the next never holds more than one.
        """
        while True:
            with self._lock:
                if self._raw_fds is not None:  # binary: ≤ PAGES_PER_BATCH pages per CPU
                    records = self._read_binary(PAGES_PER_BATCH)
                    if records is None:
                        return
                    batch = self._transitions(records)
                else:
                    lines = self.read_raw(max_bytes)
                    if not lines:
                        return
                    batch = self._parse(lines)
                    del lines
            if batch:
                yield batch

    def _read_binary(self, max_pages: int) -> list[tuple] | None:
        """Records of at most ``max_pages`` pages per CPU, oldest first; None when nothing was waiting.

        The CPUs' streams are merged by time. A CPU that may still have older events waiting (it hit
        ``max_pages``, or records of it are held) bounds what can be handed out: records after the
        earliest such bound are held, per CPU, for the next batch, and a CPU with held records is not
        read again until they are handed out — so at most ``max_pages`` pages of records per CPU are held."""
        decoder = self._decoder
        size = self._page_size
        held = self._held
        limit: float | None = None
        read_any = False
        nbytes = 0
        for cpu, fd in list(self._raw_fds.items()):  # type: ignore[union-attr]
            mine = held.get(cpu)
            if mine:  # what this CPU has waiting is newer than its held records
                limit = mine[-1][0] if limit is None else min(limit, mine[-1][0])
                continue
            got: list[tuple] = []
            pages = 0
            while pages < max_pages:
                try:
                    page = os.read(fd, size)
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                except OSError as exc:
                    if exc.errno in (_errno.ENODEV, _errno.ENXIO):  # the CPU went offline
                        os.close(self._raw_fds.pop(cpu))  # type: ignore[union-attr]
                        break
                    raise
                if not page:
                    break
                pages += 1
                nbytes += len(page)
                try:
                    records, missed = decoder.decode_page(page)  # type: ignore[union-attr]
                except TraceRawError as exc:
                    self.bad_pages += 1
                    self.note = f"binary reader: {self.bad_pages} undecodable page(s) skipped, last: {exc}"
                    continue
                self._missed += missed
                got += records
            read_any = read_any or pages > 0
            if got:
                got.sort(key=_TS)  # in order already (one CPU's clock); sorted, the merge always advances
                held[cpu] = got
                if pages >= max_pages:  # more may wait, older than the other CPUs' newest
                    limit = got[-1][0] if limit is None else min(limit, got[-1][0])
        if not read_any and not held:
            return None
        self.batch_bytes_max = max(self.batch_bytes_max, nbytes)
        out: list[tuple] = []
        for cpu in list(held):
            records = held[cpu]
            cut = len(records) if limit is None else bisect.bisect_right(records, limit, key=_TS)
            out += records[:cut]
            if cut == len(records):
                del held[cpu]
            else:
                held[cpu] = records[cut:]
        out.sort(key=_TS)
        return out

    def read(self) -> list[Transition]:
        """Every transition waiting now, oldest first (all batches; prefer `batches()` under load)."""
        out: list[Transition] = []
        for batch in self.batches():
            out += batch
        return out

    def _parse(self, lines: list[str]) -> list[Transition]:
        """Transitions from trace_pipe lines, with dwell_ms when the socket's previous one is known."""
        records: list[tuple] = []
        append = records.append
        mark = _MARK
        skip = len(_MARK)
        fam_of = _FAMILY_TOKEN
        old_of = _OLD_TOKEN
        new_of = _NEW_TOKEN
        v4 = socket.AF_INET.value
        for line in lines:
            i = line.find(mark)
            if i < 0:
                continue
            try:
                head = line[:i]
                ts = float(head[head.rfind(" ") + 1:])
                f = line[i + skip:].split(" ")
                family = fam_of[f[0]]
                sport = int(f[2][6:])
                dport = int(f[3][6:])
                if family == v4:
                    src, dst = f[4][6:], f[5][6:]
                else:
                    src, dst = f[6][8:], f[7][8:]
                old = old_of[f[8]]
                nw = new_of[f[9]]
            except (IndexError, KeyError, ValueError):
                continue
            append((ts, family, src, sport, dst, dport, old, nw))
        return self._transitions(records)

    def _transitions(self, records: list[tuple]) -> list[Transition]:
        """`Transition`s from (ts, family, src, sport, dst, dport, old, new) records (either reader), with
        dwell_ms when the socket's previous transition is known."""
        out: list[Transition] = []
        append = out.append
        last = self._last
        make = Transition
        for ts, family, src, sport, dst, dport, old, nw in records:
            key = (family, src, sport, dst, dport)
            prev = last.pop(key, None)
            if prev is None and sport and old != 7:
                # connect() sets SYN_SENT before the kernel picks the source port
                prev = last.pop((family, src, 0, dst, dport), None)
            dwell = (ts - prev[0]) * 1000.0 if prev is not None and prev[1] == old else None
            if nw != 7:  # CLOSE ends the socket's story
                last[key] = (ts, nw)
            append(make(ts=ts, family=family, src=src, sport=sport, dst=dst, dport=dport, old=old, new=nw,
                        source="tracepoint", dwell_ms=dwell))
        if len(last) > MAX_OPEN:  # sockets whose CLOSE we never saw (lost, or filtered): drop the oldest
            for key in list(itertools.islice(last, len(last) - MAX_OPEN // 2)):
                del last[key]
        self.events += len(out)
        return out

    @property
    def overruns(self) -> int:
        """Events the kernel lost (sum over CPUs of overrun + dropped events) since the start."""
        total = 0
        base = os.path.join(self.path, "per_cpu")
        try:
            cpus = os.listdir(base)
        except OSError:
            return 0
        for cpu in cpus:
            try:
                with open(os.path.join(base, cpu, "stats"), encoding="ascii") as fh:
                    for line in fh:
                        k, _, v = line.partition(":")
                        if k in ("overrun", "dropped events"):
                            total += int(v.strip() or 0)
            except (OSError, ValueError):
                continue
        return max(total, self._missed)  # binary: the pages' missed-events counts agree, or say more

    def close(self) -> None:
        """Disable the event and remove the instance (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                _write(os.path.join(self.path, EVENT, "enable"), "0")
            except OSError:
                pass
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            for fd in (self._raw_fds or {}).values():
                os.close(fd)
            if self._raw_fds is not None:
                self._raw_fds = {}
            self._held = {}
            try:
                _remove_instance(self.path)
            finally:
                with _LIVE_LOCK:
                    _LIVE.discard(self)
