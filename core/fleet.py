"""The fleet view's model: what `sockmon export` instances report, read back from a Prometheus server.

`query_fleet(url)` asks Prometheus's HTTP query API (``GET /api/v1/query``, urllib only) a handful of
instant queries over the series `sockmon.core.table.metrics` defines and returns one `FleetView`:

- every host (``instance`` label, plus ``netns`` when the exporter sets it): sockets per state;
- per host, rates over the last minute: ListenOverflows, ListenDrops, retransmitted segments and state
  transitions (``rate(...[1m])``, summed over the transition pairs; the top pairs kept per host);
- the listeners closest to a full accept queue over the whole fleet: ``topk`` of queue / backlog, with
  their queue and backlog read by ``and`` on the same series.

Everything coming back is another machine's text (instances, namespaces, process names): callers show
it inert. Failures (bad URL, Prometheus down, an error answer, a non-JSON body) raise `FleetError`, one
line. `parse_url` accepts only http(s) URLs; a loopback URL never goes through an environment proxy.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from sockmon.core.errors import BadInput, SockmonError

DEFAULT_TIMEOUT = 5.0
TOP_LISTENERS = 10
TOP_PAIRS = 5  # transition pairs kept per host (by rate)
RATE_WINDOW = "1m"

# PromQL, by what it answers. `max by (instance, netns, ...)`: one value per host even when two jobs scrape
# the same exporter (a sum would double it).
Q_SOCKETS = "max by (instance, netns, state) (sockmon_tcp_sockets)"
Q_OVERFLOWS = f"max by (instance, netns) (rate(sockmon_listen_overflows_total[{RATE_WINDOW}]))"
Q_DROPS = f"max by (instance, netns) (rate(sockmon_listen_drops_total[{RATE_WINDOW}]))"
Q_RETRANS = f"max by (instance, netns) (rate(sockmon_tcp_retransmits_total[{RATE_WINDOW}]))"
Q_TRANSITIONS = f"max by (instance, netns, old, new) (rate(sockmon_tcp_transitions_total[{RATE_WINDOW}]))"
Q_SOURCE = "max by (instance, transitions) (sockmon_exporter_info)"


def q_top_listeners(k: int) -> tuple[str, str]:
    """(queue query, backlog query) of the k listeners with the fullest accept queues."""
    top = f"topk({int(k)}, sockmon_listen_queue / clamp_min(sockmon_listen_backlog, 1))"
    return f"sockmon_listen_queue and {top}", f"sockmon_listen_backlog and {top}"


class FleetError(SockmonError):
    """Prometheus could not be asked, or did not answer as expected (one line)."""


@dataclass(frozen=True, slots=True)
class FleetHost:
    instance: str
    netns: str
    sockets: dict[str, int]  # state label → count
    overflows_per_s: float | None = None
    drops_per_s: float | None = None
    retransmits_per_s: float | None = None
    transitions_per_s: float | None = None
    top_transitions: tuple[tuple[str, str, float], ...] = ()  # (old, new, per second)
    transitions_source: str = ""

    @property
    def total(self) -> int:
        return sum(self.sockets.values())


@dataclass(frozen=True, slots=True)
class FleetListener:
    instance: str
    netns: str
    local: str
    process: str
    queue: int
    backlog: int

    @property
    def fill(self) -> float:
        return self.queue / self.backlog if self.backlog > 0 else float(self.queue > 0)


@dataclass(frozen=True, slots=True)
class FleetView:
    url: str
    hosts: tuple[FleetHost, ...]
    listeners: tuple[FleetListener, ...]
    taken_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return {
            "prometheus": self.url,
            "time": self.taken_at,
            "hosts": [{"instance": h.instance, "netns": h.netns, "total": h.total, "sockets": dict(h.sockets),
                       "overflows_per_s": h.overflows_per_s, "drops_per_s": h.drops_per_s,
                       "retransmits_per_s": h.retransmits_per_s, "transitions_per_s": h.transitions_per_s,
                       "top_transitions": [{"old": o, "new": n, "per_s": r} for o, n, r in h.top_transitions],
                       "transitions_source": h.transitions_source}
                      for h in self.hosts],
            "listeners": [{"instance": li.instance, "netns": li.netns, "local": li.local, "process": li.process,
                           "queue": li.queue, "backlog": li.backlog, "fill": li.fill} for li in self.listeners],
        }


def fmt_rate(v: float | None) -> str:
    """A per-second rate for a table cell: "-" when unknown, two decimals below 10 (0.03/s matters)."""
    if v is None:
        return "-"
    if v == 0:
        return "0"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_url(url: str) -> str:
    """The Prometheus base URL (``http://HOST:PORT`` with an optional path prefix), without a trailing /."""
    text = (url or "").strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"--prometheus {url!r}: give an http(s) URL, e.g. http://127.0.0.1:9090")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise BadInput(f"--prometheus {url!r}: bad port") from None
    if parts.query or parts.fragment:
        raise BadInput(f"--prometheus {url!r}: no query or fragment, just the server's base URL")
    return text.rstrip("/")


class PrometheusClient:
    """Instant queries against one Prometheus (``/api/v1/query``)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = parse_url(url)
        self.timeout = timeout
        host = urllib.parse.urlsplit(self.url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback_host(host) else []
        self._opener = urllib.request.build_opener(*handlers)

    def query(self, promql: str) -> list[dict]:
        """The ``result`` list of an instant vector query (each {"metric": {...}, "value": [ts, "v"]})."""
        target = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with self._opener.open(target, timeout=self.timeout) as resp:
                body = resp.read(64 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            detail = _error_of(exc.read(4096)) or exc.reason
            raise FleetError(f"Prometheus at {self.url} answered HTTP {exc.code}: {detail}") from None
        except urllib.error.URLError as exc:
            raise FleetError(f"cannot reach Prometheus at {self.url}: {exc.reason}") from None
        except (OSError, ValueError) as exc:  # timeouts, resets, bad URLs urllib only notices here
            raise FleetError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise FleetError(f"{self.url} did not answer with JSON: is it a Prometheus server?") from None
        if not isinstance(data, dict) or data.get("status") != "success":
            err = data.get("error") if isinstance(data, dict) else None
            raise FleetError(f"Prometheus at {self.url}: query failed: {err or 'unexpected answer'}")
        result = (data.get("data") or {}).get("result")
        if not isinstance(result, list):
            raise FleetError(f"Prometheus at {self.url}: query did not return a vector")
        return result


def _error_of(body: bytes) -> str:
    try:
        data = json.loads(body)
        return str(data.get("error") or "")
    except (ValueError, AttributeError):
        return ""


def _value(row: dict) -> float:
    try:
        v = float(row["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0
    return v if v == v else 0.0  # NaN (0/0 rates) → 0


def _key(row: dict) -> tuple[str, str]:
    m = row.get("metric") or {}
    return str(m.get("instance", "")), str(m.get("netns", ""))


def query_fleet(client: PrometheusClient | str, *, top: int = TOP_LISTENERS) -> FleetView:
    """One view of the fleet (raises FleetError)."""
    if isinstance(client, str):
        client = PrometheusClient(client)
    sockets: dict[tuple[str, str], dict[str, int]] = {}
    for row in client.query(Q_SOCKETS):
        state = str((row.get("metric") or {}).get("state", "?"))
        sockets.setdefault(_key(row), {})[state] = int(_value(row))
    rates = {}
    for name, q in (("overflows", Q_OVERFLOWS), ("drops", Q_DROPS), ("retrans", Q_RETRANS)):
        rates[name] = {_key(r): _value(r) for r in client.query(q)}
    pairs: dict[tuple[str, str], list[tuple[str, str, float]]] = {}
    for row in client.query(Q_TRANSITIONS):
        m = row.get("metric") or {}
        pairs.setdefault(_key(row), []).append((str(m.get("old", "?")), str(m.get("new", "?")), _value(row)))
    source = {str((r.get("metric") or {}).get("instance", "")): str((r.get("metric") or {}).get("transitions", ""))
              for r in client.query(Q_SOURCE)}
    hosts = []
    for key in sorted(sockets.keys() | rates["overflows"].keys()):
        trans = sorted(pairs.get(key, []), key=lambda p: (-p[2], p[0], p[1]))
        hosts.append(FleetHost(
            key[0], key[1], dict(sorted(sockets.get(key, {}).items())),
            rates["overflows"].get(key), rates["drops"].get(key), rates["retrans"].get(key),
            sum(p[2] for p in trans) if key in pairs else None, tuple(trans[:TOP_PAIRS]), source.get(key[0], "")))
    listeners = []
    if top > 0:
        q_queue, q_backlog = q_top_listeners(top)

        def lkey(row: dict) -> tuple[str, str, str, str]:
            m = row.get("metric") or {}
            return (str(m.get("instance", "")), str(m.get("netns", "")), str(m.get("local", "")),
                    str(m.get("process", "")))

        queues = {lkey(r): int(_value(r)) for r in client.query(q_queue)}
        backlogs = {lkey(r): int(_value(r)) for r in client.query(q_backlog)}
        for k, q in queues.items():
            listeners.append(FleetListener(*k, q, backlogs.get(k, 0)))
        listeners.sort(key=lambda li: (-li.fill, -li.queue, li.instance, li.netns, li.local))
    return FleetView(client.url, tuple(hosts), tuple(listeners[:top]))
