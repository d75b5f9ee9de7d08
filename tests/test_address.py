import socket

import pytest
from sockhelp import OfflineResolver
from sockmon.core.errors import BadInput
from sockmon.core.lab import address
from sockmon.core.lab.address import Endpoint, format_endpoint, parse_endpoint, parse_port, resolve


@pytest.mark.parametrize("text, host, port", [
    ("127.0.0.1:8080", "127.0.0.1", 8080),
    ("localhost:0", "localhost", 0),
    ("[::1]:65535", "::1", 65535),
    ("[fe80::1%lo]:22", "fe80::1%lo", 22),
    (" example.test:80 ", "example.test", 80),
])
def test_parse_endpoint(text, host, port):
    assert parse_endpoint(text) == Endpoint(host, port)


@pytest.mark.parametrize("text, fragment", [
    ("127.0.0.1:65536", "out of range"),
    ("127.0.0.1:-1", "not a number"),
    ("127.0.0.1:http", "not a number"),
    ("127.0.0.1:", "empty port"),
    (":8080", "empty host"),
    ("[]:8080", "empty host"),
    ("127.0.0.1", "expected HOST:PORT"),
    ("::1:80", "brackets"),
    ("[::1:80", "missing ']'"),
    ("[::1]80", "expected [IPV6]:PORT"),
    ("", "empty address"),
    ("127.0.0.1:८०", "not a number"),  # non-ASCII digits are not a port
])
def test_bad_endpoints_raise_one_clear_line(text, fragment):
    with pytest.raises(BadInput) as info:
        parse_endpoint(text)
    msg = str(info.value)
    assert fragment in msg and "\n" not in msg
    assert info.value.exit_status == 2


def test_parse_port_bounds():
    assert parse_port("0") == 0 and parse_port("65535") == 65535 and parse_port(443) == 443
    for bad in ("65536", "1e3", "0x50", " ", True, 70000):
        with pytest.raises(BadInput):
            parse_port(bad)


def test_format_endpoint_brackets_ipv6():
    assert format_endpoint("::1", 80) == "[::1]:80"
    assert format_endpoint("127.0.0.1", 80) == "127.0.0.1:80"
    assert str(parse_endpoint("[::1]:80")) == "[::1]:80"


def test_resolve_numeric_v4_and_v6():
    assert resolve("127.0.0.1", 8080) == [(socket.AF_INET, ("127.0.0.1", 8080))]
    fam, sockaddr = resolve("::1", "8080")[0]
    assert fam == socket.AF_INET6 and sockaddr[:2] == ("::1", 8080)


def test_resolve_name_gives_loopback():
    families = {fam for fam, _ in resolve("localhost", 80)}
    assert families and families <= {socket.AF_INET, socket.AF_INET6}


def test_resolve_passive_wildcard():
    fam, sockaddr = resolve("127.0.0.1", 0, passive=True)[0]
    assert sockaddr == ("127.0.0.1", 0)


def test_unresolvable_name_is_bad_input(monkeypatch):
    """The lookup fails in the injected resolver: no DNS query leaves the machine."""
    offline = OfflineResolver()
    monkeypatch.setattr(address, "getaddrinfo", offline)
    with pytest.raises(BadInput) as info:
        resolve("no-such-host.invalid", 80)
    assert "cannot resolve 'no-such-host.invalid'" in str(info.value)
    assert info.value.gai_name == "EAI_NONAME" and offline.calls == ["no-such-host.invalid"]
    monkeypatch.undo()
    other = OfflineResolver({})
    with pytest.raises(BadInput):
        resolve("db.internal", 80, resolver=other)  # per call, too
    assert other.calls == ["db.internal"]


def test_resolve_rejects_empty_host_and_bad_port():
    with pytest.raises(BadInput):
        resolve("", 80)
    with pytest.raises(BadInput):
        resolve("127.0.0.1", 99999)
