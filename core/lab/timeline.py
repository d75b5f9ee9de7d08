"""`ConnectionTimeline`: the life of one connection, as data (no Textual, no I/O).

It follows either the built-in client's connection or one socket selected in a table, and is fed from
three places, each exactly once, on one thread (the UI's):

- ``add_event(ev)``: engine events (calls, results, bytes, errors, TCP_INFO state samples);
- ``add_transitions(trs)``: kernel state transitions (tracepoint or inferred), for every socket on the
  host; only the followed 4-tuple's become lines, the rest go to a bounded replay buffer;
- ``observe(snapshot)``: each socket-table snapshot. That is how the model sees what has no fd and no
  tracepoint: after the client's fd is closed the kernel may keep the 4-tuple as a *timewait* socket
  (state FIN_WAIT2 or TIME_WAIT, inode 0, maybe another cookie), so it is matched by 4-tuple.

The client's own connection is tracked whatever the view follows (``client_state``), so the Client pane
can show the kernel's state after close even while the timeline shows another socket.

Byte counters belong to what is followed: the client's are the engine's own counts of this connection
(BYTES_IN / BYTES_OUT events since it started); a selected socket's are the kernel's ``tcp_info``
``bytes_received`` / ``bytes_acked`` of that very socket (none when the kernel gave no tcp_info, e.g.
TIME_WAIT). Nothing is summed twice: counts are never rebuilt from a replay.

Each snapshot in which the followed connection has a row adds one `Sample` (rtt, cwnd, receive / send
rate, retransmissions; ``observe(snapshot, rates)``) to ``samples``, the last `SAMPLES` refreshes of that
connection for sparklines (the Timeline view and the Detail screen); they start again when the model
follows another connection.

Bounded: at most `MAX_LINES` lines (oldest dropped), `MAX_EVENTS` events and `MAX_TRANSITIONS`
transitions kept for replay (deques), `SAMPLES` samples of the one followed connection. Nothing is
keyed by socket.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from sockmon.core.lab.events import Event, EventKind
from sockmon.core.records import Snapshot, Socket, Transition
from sockmon.core.series import SAMPLES, Rates, SampleRing, sample_of

MAX_LINES = 600  # lines shown for the followed connection (oldest dropped first)
MAX_EVENTS = 1200  # engine events kept to replay when the followed connection changes
MAX_TRANSITIONS = 4000  # host-wide transitions kept to replay (a bounded window, newest kept)

FourTuple = tuple[str, int, str, int]


def norm_host(host: str) -> str:
    """IPv4-mapped IPv6 (``::ffff:127.0.0.1``) folded to IPv4, so both views of one socket meet."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def norm_tuple(t: Iterable) -> FourTuple:
    src, sport, dst, dport = t
    return (norm_host(str(src)), int(sport), norm_host(str(dst)), int(dport))


def as_endpoint(value) -> tuple[str, int] | None:
    """(host, port) from what an engine reports: an Endpoint, a sockaddr tuple, or "host:port" text."""
    if value is None:
        return None
    host = getattr(value, "host", None)
    port = getattr(value, "port", None)
    if host is not None and port is not None:
        return str(host), int(port)
    if isinstance(value, tuple | list) and len(value) >= 2:
        return str(value[0]), int(value[1])
    if isinstance(value, str) and ":" in value:
        host, _, port_text = value.rpartition(":")
        if port_text.isdigit():
            return host.strip("[]"), int(port_text)
    return None


def connect_dropped_socket(ev: Event) -> bool:
    """A client FAILED/RESET event after which the engine has no socket any more (the connect failed, timed
    out, or was reset during the handshake: core/lab/client.py drops the socket; no CLOSED follows)."""
    return (ev.kind in (EventKind.FAILED, EventKind.RESET) and ev.errno_name != "EISCONN"
            and ev.detail.startswith(("connect(", "getaddrinfo(")))


@dataclass(order=True, slots=True)
class Line:
    """One timeline line. ``kind``: "event", "transition", "row" (a socket-table observation) or
    "selected" (the record a selection started from)."""

    ts: float
    seq: int
    kind: str = field(compare=False)
    event: Event | None = field(default=None, compare=False)
    transition: Transition | None = field(default=None, compare=False)
    socket: Socket | None = field(default=None, compare=False)
    state: str | None = field(default=None, compare=False)  # kernel state entered at ts, if any
    gone: bool = field(default=False, compare=False)  # the row left the socket table
    dwell: bool = field(default=False, compare=False)  # show "(PREVIOUS for …)"
    sample: bool = field(default=False, compare=False)  # an engine TCP_INFO sample


class ConnectionTimeline:
    """What the Timeline pane shows and what the Client pane asks (``client_state``)."""

    def __init__(self, *, max_lines: int = MAX_LINES, max_events: int = MAX_EVENTS,
                 max_transitions: int = MAX_TRANSITIONS, max_samples: int = SAMPLES) -> None:
        self.max_lines = max_lines
        self.samples = SampleRing(max_samples)  # the followed connection's last refreshes
        self.lines: list[Line] = []  # sorted by (ts, seq)
        self._seq = 0
        self.t0: float | None = None
        self.epoch = 0  # bumped whenever lines change other than by appending at the end
        self._events: deque[Event] = deque(maxlen=max_events)
        self._recent: deque[Transition] = deque(maxlen=max_transitions)
        self._exact = False  # tracepoint transitions seen for what we follow: engine samples dropped
        # the built-in client's connection (tracked whatever the view follows)
        self.client_tuple: FourTuple | None = None
        self.client_closed = False  # our fd is closed (CLOSED event, or the connect failed)
        self.client_failed = False  # the connect failed: the engine dropped its socket
        self.client_state: str | None = None  # the kernel's state of that 4-tuple, as last learnt
        self.client_gone = False  # the kernel has no row for it any more
        self._client_state_ts = float("-inf")
        self._client_closed_at = float("-inf")  # ts of the CLOSED event: older snapshots predate the close
        self.client_bytes_in = 0
        self.client_bytes_out = 0
        # what the view follows
        self.following_client = True
        self.socket: Socket | None = None  # the selected socket's newest record
        self.kernel_state: str | None = None  # of the followed connection

    # ------------------------------------------------------------------ what we follow
    @property
    def followed_tuple(self) -> FourTuple | None:
        if self.following_client:
            return self.client_tuple
        return norm_tuple(self.socket.four_tuple) if self.socket is not None else None

    @property
    def bytes_in(self) -> int | None:
        if self.following_client:
            return self.client_bytes_in
        info = self.socket.tcp_info if self.socket is not None else None
        return None if info is None else info.bytes_received

    @property
    def bytes_out(self) -> int | None:
        if self.following_client:
            return self.client_bytes_out
        info = self.socket.tcp_info if self.socket is not None else None
        return None if info is None else info.bytes_acked

    def follow_client_connecting(self) -> None:
        """A new connection of the built-in client starts: follow it (forgets the previous one)."""
        self.client_tuple = None
        self.client_closed = self.client_failed = self.client_gone = False
        self.client_state = None
        self._client_state_ts = float("-inf")
        self._client_closed_at = float("-inf")
        self.client_bytes_in = self.client_bytes_out = 0
        self.following_client = True
        self.socket = None
        self.samples.clear()
        self._reset_lines()

    def client_endpoints(self, local, peer) -> None:
        """The client's 4-tuple is known (connect returned)."""
        loc, per = as_endpoint(local), as_endpoint(peer)
        if not (loc and per):
            return
        tup = norm_tuple((loc[0], loc[1], per[0], per[1]))
        if tup == self.client_tuple:
            return
        self.client_tuple = tup
        if self.following_client:
            self.samples.clear()
        for tr in sorted(self._recent, key=lambda t: t.ts):  # what the kernel said before we knew the tuple
            if norm_tuple((tr.src, tr.sport, tr.dst, tr.dport)) == tup:
                self._client_transition(tr)
                if self.following_client:
                    self._show_transition(tr)

    def client_fd_closed(self) -> None:
        """Our fd is gone: the kernel may keep the 4-tuple (FIN_WAIT2, TIME_WAIT); snapshots tell."""
        self.client_closed = True

    def follow_client(self) -> None:
        """The view goes back to the client (the ``f`` key), rebuilt from the replay buffers."""
        self.following_client = True
        self.socket = None
        self.samples.clear()
        self._reset_lines()
        self._replay()

    def follow_socket(self, sock: Socket | None) -> None:
        """Follow a socket of the table (None: back to the client). The same 4-tuple again only refreshes
        the record: its lines stay, nothing is replayed twice."""
        if sock is None:
            if not self.following_client:
                self.follow_client()
            return
        if (not self.following_client and self.socket is not None
                and norm_tuple(self.socket.four_tuple) == norm_tuple(sock.four_tuple)):
            self.socket = sock
            return
        self.following_client = False
        self.socket = sock
        self.samples.clear()
        self._reset_lines()
        self._replay()
        if not self.lines:
            self._add(Line(0.0, 0, "selected", socket=sock, state=sock.state_name), ts=None)
        self.kernel_state = self._latest_state()

    def clear(self) -> None:
        """Forget the lines shown (the ``e`` key); what is followed stays."""
        self._reset_lines()
        self.kernel_state = self._fallback_state()

    # ------------------------------------------------------------------ feeds
    def add_event(self, ev: Event) -> None:
        self._events.append(ev)
        if ev.conn == "client":
            self._client_event(ev)
        if self._event_matches(ev):
            self._show_event(ev)

    def add_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.add_event(ev)

    def add_transitions(self, transitions: Iterable[Transition]) -> None:
        client = self.client_tuple
        followed = self.followed_tuple
        for tr in transitions:
            self._recent.append(tr)
            if client is None and followed is None:
                continue
            tup = norm_tuple((tr.src, tr.sport, tr.dst, tr.dport))
            if tup == client:
                self._client_transition(tr)
            if tup == followed:
                self._show_transition(tr)

    def observe(self, snapshot: Snapshot, rates: Rates | None = None) -> None:
        """A socket-table snapshot: the followed 4-tuple's row (or its absence) and the client's; a sample
        of the followed connection's row (``rates``: the collector's rates of this snapshot)."""
        client = self.client_tuple if (self.client_closed and not self.client_gone) else None
        if client is not None and snapshot.taken_at < self._client_closed_at:
            # a collection that started before the close but was handed over after it: its rows were
            # read at some point during the close (taken_at is when it began), so the next one tells
            client = None
        followed = None if self.following_client else self.followed_tuple
        sampled = self.followed_tuple  # the client's connection too, while it is open
        if client is None and followed is None and sampled is None:
            return
        wanted = {t for t in (client, followed, sampled) if t is not None}
        found: dict[FourTuple, Socket] = {}
        ports = {t[1] for t in wanted}
        for sock in snapshot.sockets:
            if sock.sport in ports:
                tup = norm_tuple(sock.four_tuple)
                if tup in wanted:
                    found[tup] = sock
        ts = snapshot.taken_at
        if sampled is not None:
            row = found.get(sampled)
            if row is not None:
                self.samples.add(sample_of(row, rates, ts))
        if client is not None:
            row = found.get(client)
            if ts >= self._client_state_ts:
                self._client_state_ts = ts
                self.client_state = row.state_name if row is not None else None
                self.client_gone = row is None
            if self.following_client:
                self._show_row(row, ts)
        if followed is not None:
            row = found.get(followed)
            if row is not None:
                self.socket = row  # fresher record (after close: the timewait socket of the same 4-tuple)
            self._show_row(row, ts)

    # ------------------------------------------------------------------ the client's own state
    def _client_event(self, ev: Event) -> None:
        if ev.kind is EventKind.BYTES_IN and ev.nbytes:
            self.client_bytes_in += ev.nbytes
        elif ev.kind is EventKind.BYTES_OUT and ev.nbytes:
            self.client_bytes_out += ev.nbytes
        elif ev.kind is EventKind.CLOSED:
            self.client_closed = True
            self._client_closed_at = ev.ts
        elif connect_dropped_socket(ev):
            # the engine closed the socket it was connecting: SYN_SENT is over, there is no connection
            self.client_closed = self.client_failed = True
            self.client_state = None
            self._client_state_ts = ev.ts
            if self.client_tuple is None:
                self.client_gone = True
        if ev.kind is EventKind.STATE and ev.state and ev.ts >= self._client_state_ts and not self.client_closed:
            self.client_state = ev.state
            self._client_state_ts = ev.ts

    def _client_transition(self, tr: Transition) -> None:
        if tr.ts >= self._client_state_ts:
            self.client_state = tr.new_name
            self._client_state_ts = tr.ts
            self.client_gone = False

    # ------------------------------------------------------------------ matching
    def _event_matches(self, ev: Event) -> bool:
        if self.following_client:
            return ev.conn == "client"
        if self.socket is None:
            return False
        tup = norm_tuple(self.socket.four_tuple)
        if ev.conn == "client":
            return self.client_tuple is not None and self.client_tuple == tup
        if ev.conn:  # server events name the peer; the accepted socket's dst is that peer
            peer = as_endpoint(ev.conn)
            return peer is not None and (norm_host(peer[0]), peer[1]) == (tup[2], tup[3])
        return False

    # ------------------------------------------------------------------ lines
    def _show_event(self, ev: Event) -> None:
        if ev.kind is EventKind.STATE:
            if self._exact:
                return  # the tracepoint already reports every state change of this connection
            before = self.state_before(ev.ts)
            if before is not None and before[0] == ev.state:
                return  # periodic sample, nothing new
            self._add(Line(ev.ts, 0, "event", event=ev, state=ev.state, dwell=True, sample=True))
            return
        gone = self.following_client and connect_dropped_socket(ev)
        self._add(Line(ev.ts, 0, "event", event=ev, state=ev.state, gone=gone))

    def _show_transition(self, tr: Transition) -> None:
        self._add(Line(tr.ts, 0, "transition", transition=tr, state=tr.new_name))
        if tr.source == "tracepoint" and not self._exact:
            # Exact kernel transitions from here on: the engine's periodic TCP_INFO samples only add noise
            # (a sample read a moment before a transition arrives stamped after it: "FIN_WAIT1" after CLOSE).
            self._exact = True
            if any(line.sample for line in self.lines):
                self.lines = [line for line in self.lines if not line.sample]
                self.epoch += 1
                self.kernel_state = self._latest_state()

    def _show_row(self, row: Socket | None, ts: float) -> None:
        before = self.state_before(ts)
        if row is None:
            if before is None:
                return  # never seen, or already gone
            self._add(Line(ts, 0, "row", gone=True))
            return
        if before is not None and before[0] == row.state_name:
            return  # already known (a transition or an engine sample said so)
        self._add(Line(ts, 0, "row", socket=row, state=row.state_name, dwell=True))

    def _add(self, line: Line, ts: float | None = 0.0) -> None:
        if ts is None:  # "now" in the followed socket's terms: after everything shown
            line.ts = self.lines[-1].ts if self.lines else (self.t0 or 0.0)
        self._seq += 1
        line.seq = self._seq
        if self.t0 is None or line.ts < self.t0:
            if self.t0 is not None:
                self.epoch += 1  # every relative time changes
            self.t0 = line.ts
        if self.lines and line < self.lines[-1]:
            bisect.insort(self.lines, line)
            self.epoch += 1
        else:
            self.lines.append(line)
        if len(self.lines) > self.max_lines:
            del self.lines[: len(self.lines) - self.max_lines]
            self.epoch += 1
        if line.state is not None or line.gone:
            self.kernel_state = self._latest_state()

    def state_before(self, ts: float) -> tuple[str, float] | None:
        """The kernel state in force at ``ts`` and since when, from the lines."""
        best: tuple[str, float] | None = None
        for line in self.lines:
            if line.ts > ts:
                break
            if line.gone:
                best = None
            elif line.state and (best is None or best[0] != line.state):
                best = (line.state, line.ts)
        return best

    def _latest_state(self) -> str | None:
        for line in reversed(self.lines):
            if line.gone:
                return None
            if line.state:
                return line.state
        return self._fallback_state()

    def _fallback_state(self) -> str | None:
        return self.socket.state_name if (not self.following_client and self.socket is not None) else None

    def rendered(self) -> list[tuple[Line, tuple[str, float] | None]]:
        """Every line in time order with the state it ends (for the dwell), samples of a known state left out."""
        out = []
        current: tuple[str, float] | None = None
        for line in self.lines:
            if line.sample and current is not None and current[0] == line.state:
                continue
            out.append((line, current))
            if line.gone:
                current = None
            elif line.state and (current is None or current[0] != line.state):
                current = (line.state, line.ts)
        return out

    @property
    def gone(self) -> bool:
        """The followed connection has no row in the kernel any more (after it had one)."""
        for line in reversed(self.lines):
            if line.gone:
                return True
            if line.state:
                return False
        return False

    def _reset_lines(self) -> None:
        self._exact = False
        self.lines = []
        self.t0 = None
        self.epoch += 1
        self.kernel_state = None

    def _replay(self) -> None:
        for ev in list(self._events):
            if self._event_matches(ev):
                self._show_event(ev)
        tup = self.followed_tuple
        if tup is None:
            return
        for tr in sorted(self._recent, key=lambda t: t.ts):
            if norm_tuple((tr.src, tr.sport, tr.dst, tr.dport)) == tup:
                self._show_transition(tr)

    def samples_for(self, sock: Socket | None) -> SampleRing | None:
        """``samples`` when ``sock`` is the connection followed (same 4-tuple), else None."""
        if sock is None or self.followed_tuple != norm_tuple(sock.four_tuple):
            return None
        return self.samples

    def sizes(self) -> dict[str, int]:
        """How full each bounded structure is (for tests and the bounds table in ARCHITECTURE.md)."""
        return {"lines": len(self.lines), "events": len(self._events), "transitions": len(self._recent),
                "samples": len(self.samples)}
