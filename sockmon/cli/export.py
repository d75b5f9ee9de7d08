"""`sockmon export`: serve the socket table as Prometheus metrics until SIGTERM / SIGINT / SIGHUP.

The model and its collection thread are `sockmon.core.table.metrics` (plain records, no client library);
this command wraps each `Family` into prometheus_client's metric families (prometheus_client owns the
text format: escaping of label values, ``_total`` suffixes, OpenMetrics negotiation) and serves them
with prometheus_client's HTTP server on a private registry. A scrape reads the newest sample collected
by the background thread: it never starts a dump, so scrapes cost milliseconds and never overlap a
collection of their own. Bound to 127.0.0.1:9464 unless ``--listen`` says otherwise; a non-loopback
address prints a one-line warning (the metrics name local ports and processes). Never imports Textual.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys

from sockmon.core.errors import BadInput
from sockmon.core.text import inert

DEFAULT_LISTEN = "127.0.0.1:9464"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="serve TCP socket metrics for Prometheus (/metrics)",
        description="Serve sockmon's view of the TCP socket table as Prometheus metrics: sockets per state, "
        "per-listener accept queue and backlog, ListenOverflows / ListenDrops, retransmitted segments and state "
        "transitions. Collected every --interval seconds on a background thread; a scrape returns the newest "
        "collection.")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to serve /metrics on (default {DEFAULT_LISTEN}; port 0 picks a free one)")
    p.add_argument("--interval", dest="export_interval", type=float, default=5.0, metavar="S",
                   help="seconds between collections (default 5)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--netns", dest="export_netns", metavar="NAME", default=None,
                       help="collect from this network namespace (/run/netns/NAME or pid:PID); adds a netns label")
    where.add_argument("--all-netns", action="store_true",
                       help="collect from every network namespace; every series gets a netns label")
    p.add_argument("--max-listeners", type=int, default=100, metavar="N",
                   help="export at most N listener series, those with the fullest accept queues (default 100)")
    p.add_argument("--inferred", action="store_true", help="never use the tracepoint; infer transitions")
    p.set_defaults(run=run)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` / ``[V6]:PORT`` / ``:PORT`` (loopback) → (host, port); BadInput when malformed."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise BadInput(f"--listen {text!r}: use [ADDR]:PORT for IPv6")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise BadInput(f"--listen {text!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BadInput(f"--listen {text!r}: port must be 0-65535")
    return host or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


class _Bridge:
    """A prometheus_client collector over `MetricsCollector.latest` (registered on a private registry)."""

    def __init__(self, collector, version: str) -> None:
        self.collector = collector
        self.version = version

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from sockmon.core.table.metrics import families

        sample = self.collector.latest
        if sample is None:
            return
        for fam in families(sample, version=self.version, interval=self.collector.interval):
            cls = CounterMetricFamily if fam.type == "counter" else GaugeMetricFamily
            mf = cls(fam.name, fam.help, labels=fam.labels)
            for values, value in fam.samples:
                mf.add_metric(list(values), value)
            yield mf


def serve(collector, host: str, port: int, version: str):
    """Start prometheus_client's HTTP server for ``collector``; returns (httpd, thread)."""
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Bridge(collector, version))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes...
    return start_http_server(port, addr=host, registry=registry)


def run(args) -> int:
    from sockmon.cli import version as sockmon_version
    from sockmon.cli.output import Stop
    from sockmon.core.errors import SockmonError
    from sockmon.core.table.metrics import MetricsCollector

    interval = args.export_interval
    if not 0 < interval <= 3600:
        raise BadInput(f"--interval must be between 0 and 3600 seconds, got {interval}")
    if args.max_listeners < 0:
        raise BadInput(f"--max-listeners must be >= 0, got {args.max_listeners}")
    host, port = parse_listen(args.listen)
    netns = args.export_netns if args.export_netns is not None else getattr(args, "netns", None)
    if netns is not None and args.all_netns:
        raise BadInput("--netns and --all-netns exclude each other")
    if netns is not None:
        from sockmon.core.netns import open_netns

        os.close(open_netns(netns))  # a missing namespace: one line, before anything starts
    stop = Stop()
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    old = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in signals}
    if not is_loopback(host):
        print(f"sockmon export: warning: serving on {inert(host)}:{port}, not loopback: anyone who reaches it "
              "reads your ports and process names", file=sys.stderr, flush=True)
    last_error: list[str] = []

    def on_error(line: str) -> None:
        if not last_error or last_error[-1] != line:  # each new error once, not every round
            last_error[:] = [line]
            print(f"sockmon export: {inert(line)}", file=sys.stderr, flush=True)

    collector = None
    httpd = None
    try:
        collector = MetricsCollector(interval=interval, netns=netns, all_netns=args.all_netns,
                                     max_listeners=args.max_listeners,
                                     use_tracepoint=False if args.inferred else None, on_error=on_error)
        if collector.tracer_note:
            print(f"sockmon export: transitions inferred ({inert(collector.tracer_note)})", file=sys.stderr)
        collector.collect_once()  # the first scrape already has data
        collector.start()
        try:
            httpd, _thread = serve(collector, host, port, sockmon_version())
        except OSError as exc:
            raise SockmonError.from_os_error(exc, f"listen on {host}:{port}") from None
        bound = httpd.server_address
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"sockmon export: serving http://{shown}:{bound[1]}/metrics every {interval:g} s "
              f"(transitions: {collector.transitions_source})", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if collector is not None:
            collector.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        stop.close()
    return 0
