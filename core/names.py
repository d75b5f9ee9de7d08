"""Host and service names for addresses and ports (like ``ss -r``); numbers are the default everywhere.

- `ServiceNames`: /etc/services read once (at most `MAX_SERVICES_BYTES`, `MAX_SERVICES` entries), then
  (port, "tcp" / "udp") → name from a dict: no getservbyport per row.
- `HostNames`: reverse lookups (``socket.getnameinfo`` with NI_NAMEREQD) in ONE background thread.
  `HostNames.lookup` never blocks: it answers from the cache (the name, or None while unknown / when
  the address has no name) and queues the address; when an answer arrives ``on_resolved`` is called
  (from the resolver thread) so a view can redraw. The cache is a bounded LRU (`MAX_HOSTS`) with a TTL;
  failures are cached too (shorter TTL), so an address without a name is not asked again every
  refresh. The queue of addresses waiting is bounded (`MAX_PENDING`, oldest dropped: they are the
  ones most likely scrolled away). `resolve_now` is the blocking form for a one-shot command (``ls -r``).

Which lookups leave the host: getnameinfo consults the sources of /etc/nsswitch.conf in order —
normally /etc/hosts first, then DNS. A loopback address named in /etc/hosts (127.0.0.1 localhost) is
answered from the file; any other address may be sent to the DNS server as a PTR query. sockmon only
does this when the user turns names on (``ls -r`` / the TUI's ``n`` key); unspecified addresses
(0.0.0.0, ::) are never looked up. A name is whatever the resolver returned: outside text, shown inert.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

SERVICES_PATH = "/etc/services"
MAX_SERVICES_BYTES = 4 * 1024 * 1024  # read at most this much of the file
MAX_SERVICES = 50_000  # (port, protocol) entries kept at most
MAX_HOSTS = 4096  # cached reverse lookups (names and failures)
MAX_PENDING = 1024  # addresses waiting for the resolver thread
NAME_TTL = 300.0  # s a name is trusted
FAIL_TTL = 60.0  # s an address without a name (or a failed lookup) is not asked again
MAX_NAME = 253  # longer answers are cut (a DNS name is at most 253 characters)
UNSPECIFIED = frozenset({"0.0.0.0", "::", "*", ""})


def parse_services(text: str, limit: int = MAX_SERVICES) -> dict[tuple[int, str], str]:
    """/etc/services text → {(port, protocol): name}; the first name given for a port wins (as
    getservbyport answers). Lines that do not parse are skipped."""
    out: dict[tuple[int, str], str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        f = line.split()
        if len(f) < 2 or "/" not in f[1]:
            continue
        port_s, _, proto = f[1].partition("/")
        if not port_s.isdigit():
            continue
        port = int(port_s)
        if not 0 < port <= 65535:
            continue
        key = (port, proto.lower())
        if key not in out:
            if len(out) >= limit:
                break
            out[key] = f[0]
    return out


class ServiceNames:
    """Port → service name from /etc/services, parsed once on first use (thread-safe)."""

    def __init__(self, path: str = SERVICES_PATH) -> None:
        self.path = path
        self._table: dict[tuple[int, str], str] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[tuple[int, str], str]:
        with self._lock:
            if self._table is None:
                try:
                    with open(self.path, "rb") as fh:
                        data = fh.read(MAX_SERVICES_BYTES)
                    self._table = parse_services(data.decode("utf-8", "replace"))
                except OSError:
                    self._table = {}
            return self._table

    def name(self, port: int, protocol: str = "tcp") -> str | None:
        """The service name of a port (None when /etc/services has none, or port 0)."""
        table = self._table if self._table is not None else self._load()
        return table.get((port, protocol)) if port else None

    def __len__(self) -> int:
        return len(self._table if self._table is not None else self._load())


def default_resolve(addr: str) -> str | None:
    """The host name of a numeric address (None when it has none). Blocking: may ask DNS (see above)."""
    try:
        host, _port = socket.getnameinfo((addr, 0), socket.NI_NAMEREQD)
    except (OSError, UnicodeError, ValueError):
        return None
    return host[:MAX_NAME] or None


class HostNames:
    """Reverse lookups off the caller's thread, cached (bounded LRU + TTL, failures included)."""

    def __init__(self, resolve: Callable[[str], str | None] = default_resolve, *,
                 on_resolved: Callable[[str, str | None], None] | None = None, max_entries: int = MAX_HOSTS,
                 max_pending: int = MAX_PENDING, ttl: float = NAME_TTL, fail_ttl: float = FAIL_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._resolve = resolve
        self.on_resolved = on_resolved
        self.max_entries = max_entries
        self.max_pending = max_pending
        self.ttl = ttl
        self.fail_ttl = fail_ttl
        self._clock = clock
        self._cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()  # addr -> (name, expires)
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._inflight: str | None = None  # the address the thread is resolving now (not queued again)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0  # queued addresses dropped because the queue was full
        self.lookups = 0  # calls of the resolver

    # -- any thread ------------------------------------------------------------------------------
    def cached(self, addr: str) -> tuple[bool, str | None]:
        """(known, name): known is False when the address was never answered or its answer expired."""
        with self._cond:
            return self._cached(addr)

    def _cached(self, addr: str) -> tuple[bool, str | None]:
        hit = self._cache.get(addr)
        if hit is None:
            return False, None
        name, expires = hit
        if self._clock() >= expires:
            del self._cache[addr]
            return False, None
        self._cache.move_to_end(addr)
        return True, name

    def lookup(self, addr: str) -> str | None:
        """The cached name of ``addr``, or None (no name, or not known yet: then it is queued). Never
        blocks on the resolver."""
        if addr in UNSPECIFIED:
            return None
        with self._cond:
            known, name = self._cached(addr)
            if known or self._closed:
                return name
            if addr not in self._pending and addr != self._inflight:
                if len(self._pending) >= self.max_pending:
                    self._pending.popitem(last=False)
                    self.dropped += 1
                self._pending[addr] = None
                self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sockmon-names", daemon=True)
                self._thread.start()
        return None

    def resolve_now(self, addr: str) -> str | None:
        """Blocking lookup through the same cache (for one-shot commands)."""
        if addr in UNSPECIFIED:
            return None
        with self._cond:
            known, name = self._cached(addr)
        if known:
            return name
        name = self._call(addr)
        self._store(addr, name)
        return name

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def __len__(self) -> int:
        return len(self._cache)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread (a lookup in progress is abandoned: the thread is a daemon)."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout)

    # -- the resolver thread ---------------------------------------------------------------------
    def _call(self, addr: str) -> str | None:
        self.lookups += 1
        try:
            name = self._resolve(addr)
        except Exception:  # noqa: BLE001 - a failing resolver is a failed lookup, cached as such
            name = None
        return name[:MAX_NAME] if name else None

    def _store(self, addr: str, name: str | None) -> None:
        with self._cond:
            self._cache[addr] = (name, self._clock() + (self.ttl if name else self.fail_ttl))
            self._cache.move_to_end(addr)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                addr, _ = self._pending.popitem(last=False)
                self._inflight = addr
            name = self._call(addr)
            if self._closed:
                return
            self._store(addr, name)
            with self._cond:
                self._inflight = None
            cb = self.on_resolved
            if cb is not None:
                try:
                    cb(addr, name)
                except Exception:  # noqa: BLE001 - a view that went away must not kill the resolver
                    pass


class Names:
    """What a view asks when names are on: ``host(addr)`` (the name, or the address until it is known)
    and ``service(port, protocol)`` (the name, or the number). ``blocking`` resolves hosts at once
    (for ``ls -r``); otherwise lookups go to the `HostNames` thread."""

    def __init__(self, hosts: HostNames | None = None, services: ServiceNames | None = None, *,
                 blocking: bool = False) -> None:
        self.hosts = hosts if hosts is not None else HostNames()
        self.services = services if services is not None else ServiceNames()
        self.blocking = blocking

    def host(self, addr: str) -> str:
        name = self.hosts.resolve_now(addr) if self.blocking else self.hosts.lookup(addr)
        return name or addr

    def service(self, port: int, protocol: str = "tcp") -> str:
        if not port:
            return "*"
        return self.services.name(port, protocol) or str(port)

    def endpoint(self, addr: str, port: int, protocol: str = "tcp") -> str:
        """``host:service`` as ss -r shows it; a numeric IPv6 address keeps its brackets."""
        host = self.host(addr)
        if host == addr and ":" in addr:
            host = f"[{addr}]"
        return f"{host}:{self.service(port, protocol)}"

    def close(self, timeout: float = 1.0) -> None:
        self.hosts.close(timeout)
