"""The binary tracepoint reader: per-CPU ``trace_pipe_raw`` pages decoded by core/table/traceraw.py.

Against the kernel (root, real tracefs): the binary and the text reader, on two private instances at
once, see the same transitions of the same traffic; a tiny buffer's losses are counted and reported
by the collector; no instance is left behind. Without the kernel: the page decoder on built pages
(every event kind) and, fuzzed, on random / truncated / mutated pages.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sockmon.core.table import tracepoint, traceraw
from sockmon.core.table.tracepoint import TransitionTracer, list_instances, tracing_available
from sockmon.core.table.traceraw import (
    EventHeader,
    TraceRawError,
    TransitionDecoder,
    parse_format,
    parse_header_event,
    parse_header_page,
)

OK, WHY = tracing_available()
needs_tracing = pytest.mark.skipif(not OK, reason=f"tracepoint unavailable: {WHY}")

# the files as this kernel (6.18, x86_64) writes them; the decoder only learns the layout from them
FORMAT = """name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: "family=%s ..."
"""
HEADER_PAGE = """\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;
"""
HEADER_EVENT = """# compressed entry header
\ttype_len    :    5 bits
\ttime_delta  :   27 bits
\tarray       :   32 bits

\tpadding     : type == 29
\ttime_extend : type == 30
\ttime_stamp : type == 31
\tdata max type_len  == 28
"""
EVENT_ID = 2287


def decoder() -> TransitionDecoder:
    return TransitionDecoder(parse_format(FORMAT), parse_header_page(HEADER_PAGE), parse_header_event(HEADER_EVENT))


def entry(family=2, src="127.0.0.1", sport=1000, dst="127.0.0.2", dport=80, old=2, new=1, ident=EVENT_ID) -> bytes:
    sa4 = da4 = b"\0" * 4
    sa6 = da6 = b"\0" * 16
    if family == socket.AF_INET:
        sa4, da4 = socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst)
    else:
        sa6, da6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    return struct.pack("=HBBiQiiHHHH4s4s16s16s", ident, 0, 0, 1234, 0xFFFF888812345678, old, new, sport, dport,
                       family, 6, sa4, da4, sa6, da6)


def ev_data(delta: int, data: bytes, long_form: bool = False) -> bytes:
    data = data + b"\0" * (-len(data) % 4)
    if long_form:  # type_len 0: the length word (itself included) follows the header
        return struct.pack("=II", delta << 5, len(data) + 4) + data
    return struct.pack("=I", (delta << 5) | (len(data) // 4)) + data


def ev_extend(delta: int) -> bytes:
    return struct.pack("=II", ((delta & ((1 << 27) - 1)) << 5) | 30, delta >> 27)


def ev_stamp(ts: int) -> bytes:
    return struct.pack("=II", ((ts & ((1 << 27) - 1)) << 5) | 31, (ts >> 27) & 0xFFFFFFFF)


def ev_padding(length: int) -> bytes:
    return struct.pack("=II", (1 << 5) | 29, length) + b"\0" * (length - 4)


def page(ts: int, body: bytes, flags: int = 0, missed: int | None = None) -> bytes:
    tail = struct.pack("=q", missed) if missed is not None else b""
    out = struct.pack("=QQ", ts, len(body) | flags) + body + tail
    return out + b"\0" * (4096 - len(out))


# -- the format files ------------------------------------------------------------------------------

def test_the_format_files_are_parsed_not_assumed():
    fmt = parse_format(FORMAT)
    assert fmt.id == EVENT_ID and fmt.fields["daddr_v6"].offset == 56 and fmt.fields["saddr"].array
    lay = parse_header_page(HEADER_PAGE)
    assert (lay.ts_offset, lay.commit_offset, lay.commit_size, lay.data_offset, lay.page_size) == (0, 8, 8, 16, 4096)
    assert parse_header_event(HEADER_EVENT) == EventHeader()
    # fields moved: the decoder follows the file (sport and dport swapped places)
    moved = FORMAT.replace("__u16 sport;\toffset:24", "__u16 sport;\toffset:26").replace(
        "__u16 dport;\toffset:26", "__u16 dport;\toffset:24")
    d = TransitionDecoder(parse_format(moved), lay)
    recs, _ = d.decode_page(page(10**9, ev_data(0, entry(sport=1000, dport=80))))
    assert recs[0][3] == 80 and recs[0][5] == 1000
    for bad in ("", "name: x\n", FORMAT.replace("field:int oldstate", "field:int oldstat"),
                FORMAT.replace("size:4;\tsigned:1;\n\tfield:int newstate", "size:3;\tsigned:1;\n\tfield:int newstate")):
        with pytest.raises(TraceRawError):
            TransitionDecoder(parse_format(bad), lay)
    with pytest.raises(TraceRawError):
        parse_header_page(HEADER_PAGE.replace("commit", "comit"))
    with pytest.raises(TraceRawError):
        parse_header_event(HEADER_EVENT.replace("== 30", "== 28"))


def test_every_event_kind_of_a_page_is_decoded():
    base = 5_000_000_000  # 5 s
    body = (ev_data(100, entry(sport=1, old=7, new=2))  # +100 ns
            + ev_extend(3 << 27)  # a delta larger than 27 bits
            + ev_data(7, entry(family=10, src="::1", dst="fe80::2", sport=2, old=2, new=1), long_form=True)
            + ev_padding(80)  # a discarded event
            + ev_data(0, entry(ident=EVENT_ID + 1))  # another event type: skipped
            + ev_data(1, entry(old=99))  # an unknown state: skipped (as the text reader does)
            + ev_stamp(9_000_000_000)  # absolute time stamp
            + ev_data(5, entry(sport=3, old=1, new=4)))
    recs, missed = decoder().decode_page(page(base, body))
    assert missed == 0
    assert recs == [
        ((base + 100) / 1e9, 2, "127.0.0.1", 1, "127.0.0.2", 80, 7, 2),
        ((base + 100 + (3 << 27) + 7) / 1e9, 10, "::1", 2, "fe80::2", 80, 2, 1),
        (9_000_000_005 / 1e9, 2, "127.0.0.1", 3, "127.0.0.2", 80, 1, 4),
    ]
    # a commit smaller than the body: only the committed part counts
    one = ev_data(100, entry(sport=1))
    raw = bytearray(page(base, one + ev_data(1, entry(sport=2))))
    struct.pack_into("=Q", raw, 8, len(one))
    assert [r[3] for r in decoder().decode_page(bytes(raw))[0]] == [1]
    # padding with time_delta 0: the rest of the page is unused
    assert decoder().decode_page(page(base, one + struct.pack("=I", 29) + ev_data(1, entry(sport=2))))[0][-1][3] == 1


def test_missed_events_flag_and_count():
    body = ev_data(1, entry())
    d = decoder()
    assert d.decode_page(page(1, body, traceraw.MISSED_EVENTS))[1] == 1  # flagged, count not stored
    assert d.decode_page(page(1, body, traceraw.MISSED_EVENTS | traceraw.MISSED_STORED, missed=4321))[1] == 4321


def test_bad_pages_raise_one_clear_error():
    d = decoder()
    good = page(1, ev_data(1, entry()))
    for bad in (good[:10], struct.pack("=QQ", 1, 5000) + b"\0" * 4080,  # commit beyond the page
                page(1, ev_data(1, entry())[:40]),  # our event cut short
                page(1, struct.pack("=II", 0, 2)),  # type_len 0 with a length < 4
                page(1, struct.pack("=I", 30))):  # a time extend without its second word
        with pytest.raises(TraceRawError):
            d.decode_page(bad)


_KINDS = st.sampled_from(["data", "long", "extend", "stamp", "pad", "other", "junk"])


@st.composite
def pages(draw):
    """Pages built from valid events, then maybe truncated, with bytes flipped, or a commit lied about."""
    body = b""
    for kind in draw(st.lists(_KINDS, max_size=40)):
        delta = draw(st.integers(0, (1 << 27) - 1))
        if kind in ("data", "long"):
            family = draw(st.sampled_from([2, 10]))
            src, dst = ("127.0.0.1", "127.0.0.2") if family == 2 else ("::1", "fe80::1")
            ev = bytearray(entry(family=family, src=src, dst=dst, sport=draw(st.integers(0, 65535)),
                                 old=draw(st.integers(-2, 14)), new=draw(st.integers(-2, 14))))
            if draw(st.booleans()):
                struct.pack_into("=H", ev, 28, draw(st.integers(0, 65535)))  # any family
            body += ev_data(delta, bytes(ev), long_form=kind == "long")
        elif kind == "extend":
            body += ev_extend(draw(st.integers(0, (1 << 59) - 1)))
        elif kind == "stamp":
            body += ev_stamp(draw(st.integers(0, (1 << 64) - 1)))
        elif kind == "pad":
            body += ev_padding(4 * draw(st.integers(1, 20)))
        elif kind == "other":
            body += ev_data(delta, entry(ident=draw(st.integers(0, 65535))))
        else:
            body += draw(st.binary(max_size=64))
    body = body[:4080]
    raw = bytearray(page(draw(st.integers(0, (1 << 64) - 1)), b"", 0) if not body else
                    struct.pack("=QQ", draw(st.integers(0, (1 << 64) - 1)), len(body)) + body)
    raw += b"\0" * (4096 - len(raw))
    for _ in range(draw(st.integers(0, 8))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        struct.pack_into("=Q", raw, 8, draw(st.integers(0, (1 << 64) - 1)))
    return bytes(raw[:draw(st.integers(0, len(raw)))]) if draw(st.booleans()) else bytes(raw)


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(pages())
def test_fuzzed_pages_decode_or_raise_trace_raw_error(raw):
    d = decoder()
    t0 = time.perf_counter()
    try:
        recs, missed = d.decode_page(raw)
    except TraceRawError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert missed >= 0 and len(recs) <= len(raw) // 8
        assert all(len(r) == 8 and r[1] in (2, 10) and isinstance(r[2], str) for r in recs)
    assert time.perf_counter() - t0 < 0.5  # every step advances: no page makes it loop


@settings(max_examples=300, deadline=1000)
@given(st.binary(max_size=5000))
def test_random_bytes_decode_or_raise_trace_raw_error(raw):
    try:
        decoder().decode_page(raw)
    except TraceRawError:
        pass


@settings(max_examples=200, deadline=1000)
@given(st.text(max_size=400))
def test_random_format_text_parses_or_raises_trace_raw_error(text):
    for parse in (parse_format, parse_header_page, parse_header_event):
        try:
            parse(text)
        except TraceRawError:
            pass


# -- against the kernel ----------------------------------------------------------------------------

def _pair_listeners() -> tuple[socket.socket, socket.socket, int]:
    """Listeners on 127.0.0.1 and ::1 with one port number (one kernel port filter for both)."""
    for _ in range(50):
        six = socket.socket(socket.AF_INET6)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        six.bind(("::1", 0))
        port = six.getsockname()[1]
        four = socket.socket()
        try:
            four.bind(("127.0.0.1", port))
        except OSError:
            four.close()
            six.close()
            continue
        four.listen(512)
        six.listen(512)
        return four, six, port
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


_LINGER0 = struct.pack("ii", 1, 0)


def _traffic(four: socket.socket, six: socket.socket, n: int) -> None:
    """n connections, half IPv4 half IPv6: connect, send both ways, close; every third one RST (linger 0)."""
    for i in range(n):
        lst = four if i % 2 else six
        c = socket.create_connection(lst.getsockname()[:2])
        s, _ = lst.accept()
        c.sendall(b"x" * 100)
        s.recv(100)
        s.sendall(b"y" * 10)
        c.recv(10)
        if i % 3 == 0:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
        c.close()
        s.close()


def _key(t):
    return (t.family, t.src, t.sport, t.dst, t.dport, t.old, t.new)


@needs_tracing
def test_binary_reader_decodes_the_same_transitions_as_the_text_reader():
    four, six, port = _pair_listeners()
    n = 200
    try:
        with TransitionTracer(port=port, reader="binary") as binary, TransitionTracer(port=port, reader="text") as text:
            assert (binary.source, text.source) == ("binary", "text")
            assert "trace_pipe_raw" in binary.note and not os.path.exists(os.path.join(binary.path, "x"))
            got_b: list = []
            got_t: list = []
            for _half in range(2):  # read while traffic goes on and after it
                _traffic(four, six, n // 2)
                time.sleep(0.05)
                for batch in binary.batches():
                    got_b += batch
                for batch in text.batches():
                    got_t += batch
            assert binary.overruns == 0 and text.overruns == 0 and binary.bad_pages == 0
    finally:
        four.close()
        six.close()
    assert Counter(map(_key, got_b)) == Counter(map(_key, got_t))
    rst = len(range(0, n // 2, 3)) * 2
    # 10 per connection (5 per side); an RST one: CLOSE → SYN_SENT → ESTABLISHED → CLOSE on each side
    assert len(got_b) == 10 * (n - rst) + 6 * rst, Counter((t.old_name, t.new_name) for t in got_b)
    assert {t.family for t in got_b} == {socket.AF_INET, socket.AF_INET6}
    assert {t.src for t in got_b} >= {"127.0.0.1", "::1"}
    assert Counter(t.new for t in got_b)[7] >= 2 * n  # both ends of each connection reach CLOSE
    # oldest first, and the same moments: each 4-tuple's transitions pair up in order
    assert all(a.ts <= b.ts for a, b in zip(got_b, got_b[1:], strict=False))
    by_b: dict = {}
    by_t: dict = {}
    for t in got_b:
        by_b.setdefault(_key(t), []).append(t.ts)
    for t in got_t:
        by_t.setdefault(_key(t), []).append(t.ts)
    diffs = sorted(abs(a - b) for k in by_b for a, b in zip(by_b[k], by_t[k], strict=True))
    # the text shows µs (truncated); each instance reads the clock for its own copy of the event
    assert diffs[len(diffs) // 2] < 5e-6 and diffs[int(len(diffs) * 0.99)] < 50e-6, diffs[-5:]
    # dwell times come out the same way (same bookkeeping over the same order)
    dwell_b = sorted(round(t.dwell_ms, 1) for t in got_b if t.dwell_ms is not None and t.dwell_ms > 1)
    dwell_t = sorted(round(t.dwell_ms, 1) for t in got_t if t.dwell_ms is not None and t.dwell_ms > 1)
    assert len(dwell_b) == len(dwell_t)


@needs_tracing
@pytest.mark.parametrize("reader", ["binary", "text"])
def test_a_backlog_is_read_in_bounded_batches_by_either_reader(reader):
    """3,000 connections (30,000 transitions) wait in the kernel; batches stay bounded and none is lost."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
    port = lst.getsockname()[1]
    with TransitionTracer(port=port, reader=reader) as tr:
        addr = lst.getsockname()
        for _ in range(3000):
            c = socket.create_connection(addr)
            s, _ = lst.accept()
            c.close()
            s.close()
        time.sleep(0.1)
        sizes = [len(b) for b in tr.batches()]
        assert tr.overruns == 0
    lst.close()
    cpus = len(tracepoint._online_cpus())
    cap = tracepoint.PAGES_PER_BATCH * cpus * (4096 // 76) if reader == "binary" else 2000
    assert sum(sizes) >= 30000 and len(sizes) > 10 and max(sizes) <= cap, (max(sizes), cap)
    assert tr.batch_bytes_max <= tracepoint.BATCH_BYTES


@needs_tracing
@pytest.mark.parametrize("skew", ["interleaved", "one CPU behind"])
def test_the_cpus_pages_are_merged_in_time_order_with_bounded_holding(skew):
    """Two CPUs' backlogs (pipes standing in for trace_pipe_raw, fed with built pages): every record comes
    out once, in time order, and no batch holds more than PAGES_PER_BATCH pages of each CPU — also when
    one CPU's whole backlog is older than the other's (the held records must not pile up)."""
    import fcntl

    per_page, pages_each = 50, 60
    with TransitionTracer(port=1) as tr:
        assert tr.source == "binary"
        for fd in tr._raw_fds.values():
            os.close(fd)
        ident = tr._decoder.fmt.id
        pipes = {}
        try:
            for cpu in (0, 1):
                r, w = os.pipe2(os.O_NONBLOCK)
                fcntl.fcntl(w, 1031, 1 << 20)  # F_SETPIPE_SZ: the whole backlog (240 KiB) fits
                pipes[cpu] = (r, w)
                step = 2 if skew == "interleaved" else 1  # ns between a CPU's events
                for p in range(pages_each):
                    k = p * per_page
                    first = 2 * k + cpu if skew == "interleaved" else k + cpu * pages_each * per_page
                    # the page's timestamp is its first event's; each event `step` ns after the previous
                    body = b"".join(ev_data(0 if i == 0 else step, entry(sport=(first + step * i) % 65536,
                                                                          ident=ident)) for i in range(per_page))
                    os.write(w, page(10**9 + first, body))
            tr._raw_fds = {cpu: r for cpu, (r, _w) in pipes.items()}
            sizes, out = [], []
            for batch in tr.batches():
                sizes.append(len(batch))
                out += batch
                assert all(len(v) <= tracepoint.PAGES_PER_BATCH * per_page for v in tr._held.values())
        finally:
            for _r, w in pipes.values():
                os.close(w)
            tr._raw_fds = {}
            for r, _w in pipes.values():
                os.close(r)
    assert len(out) == 2 * pages_each * per_page
    assert all(a.ts <= b.ts for a, b in zip(out, out[1:], strict=False))
    assert max(sizes) <= 2 * tracepoint.PAGES_PER_BATCH * per_page


def _burst(lst: socket.socket, n: int) -> None:
    addr = lst.getsockname()
    for _ in range(n):
        c = socket.create_connection(addr)
        s, _ = lst.accept()
        c.close()
        s.close()


@needs_tracing
def test_a_tiny_buffer_loses_events_and_counts_them_exactly():
    """buffer_size_kb = 4 and 3,000 connections while nobody reads: what is read plus what is counted
    lost is every event (the per-CPU stats and the pages' missed-events counts)."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
    port = lst.getsockname()[1]
    with TransitionTracer(port=port, buffer_kb=4) as tr:
        assert tr.source == "binary"
        _burst(lst, 3000)
        time.sleep(0.05)
        got = tr.read()
        lost = tr.overruns
        missed = tr._missed
    lst.close()
    assert lost > 10_000 and missed > 0
    assert len(got) + lost == 30_000  # 10 per connection (the listener's CLOSE → LISTEN came before)
    assert not os.path.exists(tr.path)


@needs_tracing
def test_lost_events_reach_the_collector_as_a_resync_note(monkeypatch):
    from sockmon.core.table.collector import Collector

    monkeypatch.setattr(tracepoint, "TransitionTracer", functools.partial(TransitionTracer, buffer_kb=4))
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1024)
    port = lst.getsockname()[1]
    updates = []
    c = Collector(interval=3600, on_update=updates.append, use_tracepoint=True, port=port, with_owners=False,
                  start=False)
    try:
        assert c.transition_source == "tracepoint" and c._tracer.source == "binary" and c.tracer_note == ""
        first = c.collect_once()
        assert first.overruns == 0 and "lost" not in first.note
        _burst(lst, 3000)  # the collector's thread is not running: nothing drains the 4 KiB buffer
        second = c.collect_once()
        third = c.collect_once()
    finally:
        c.stop()
        lst.close()
    assert second.overruns > 10_000 and second.transition_source == "tracepoint"
    assert f"tracepoint lost {second.overruns} events" in second.note and "resynced" in second.note
    assert third.overruns == second.overruns and "lost" not in third.note  # said once
    assert not [x for x in list_instances() if x == c._tracer.name]


@needs_tracing
def test_the_text_reader_is_the_fallback_and_says_why(monkeypatch):
    def broken(text):
        raise TraceRawError("no such field")

    monkeypatch.setattr(tracepoint, "parse_format", broken)
    with TransitionTracer(port=1) as tr:
        assert tr.source == "text" and tr._raw_fds is None and tr._fd is not None
        assert "binary reader unavailable: TraceRawError: no such field" in tr.note
    with pytest.raises(tracepoint.TracingUnavailable, match="binary tracepoint reader unavailable"):
        TransitionTracer(port=1, reader="binary")
    with pytest.raises(ValueError):
        TransitionTracer(port=1, reader="fast")
    assert not [n for n in list_instances() if n.startswith(f"sockmon-{os.getpid()}-")]
    from sockmon.core.table.collector import Collector

    c = Collector(interval=3600, on_update=lambda u: None, use_tracepoint=True, start=False, with_owners=False)
    try:
        assert c.transition_source == "tracepoint" and "binary reader unavailable" in c.tracer_note
        assert "binary reader unavailable" in c.collect_once().note
    finally:
        c.stop()


@needs_tracing
def test_no_instance_is_left_after_close():
    with TransitionTracer() as tr:
        assert tr.source == "binary"
        fds = dict(tr._raw_fds)
    assert not os.path.exists(tr.path) and tr._raw_fds == {}
    for fd in fds.values():
        with pytest.raises(OSError):
            os.fstat(fd)


@needs_tracing
@pytest.mark.parametrize("flag", [None, "--text-reader"])
def test_watch_reads_binary_pages_by_default_and_leaves_nothing_on_sigterm(flag):
    proc = subprocess.Popen([sys.executable, "-m", "sockmon", "watch", "--json", *([flag] if flag else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 15
        mine: list = []
        while not mine and time.monotonic() < end:
            mine = [n for n in list_instances() if n.startswith(f"sockmon-{proc.pid}-")]
            time.sleep(0.05)
        assert mine, "watch did not make its instance"
        time.sleep(0.2)
        links = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")]
        raw = [link for link in links if link.endswith("/trace_pipe_raw")]
        text = [link for link in links if link.endswith("/trace_pipe")]
        if flag:
            assert len(text) == 1 and not raw, links
        else:  # one per online CPU, trace_pipe not open
            assert len(raw) == len(tracepoint._online_cpus()) and not text, links
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert err == ""  # nothing to say: no fall back, no loss
    assert not [n for n in list_instances() if n.startswith(f"sockmon-{proc.pid}-")]
