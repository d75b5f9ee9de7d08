"""The socket filter language (core/table/filter.py)."""

import pytest
from sockmon.core import states as S
from sockmon.core.errors import BadInput
from sockmon.core.table.filter import parse_filter
from test_tui_fixtures import PROCS, sockets


def owner_of(s):
    return PROCS.get(s.inode)


def run(text):
    pred = parse_filter(text, owner_of)
    socks = sockets()
    return socks if pred is None else [s for s in socks if pred(s)]


def test_empty_is_no_filter():
    assert parse_filter("  ") is None


@pytest.mark.parametrize("text", ["established", "ESTABLISHED", "state:established", "tcp_established", "est"])
def test_state_terms(text):
    got = run(text)
    assert got and all(s.state == S.ESTABLISHED for s in got)


def test_state_prefix_covers_several_states():
    assert {s.state for s in run("fin")} == {S.FIN_WAIT1, S.FIN_WAIT2}


@pytest.mark.parametrize("text", ["8080", ":8080", "port:8080"])
def test_port_either_side(text):
    got = run(text)
    assert got and all(8080 in (s.sport, s.dport) for s in got)
    assert any(s.sport == 8080 for s in got) and any(s.dport == 8080 for s in got)


def test_sides_family_process_user_negation_and_conjunction():
    assert all(s.sport == 22 for s in run("sport:22"))
    assert all(s.dport == 22 for s in run("dport:22"))
    assert all(s.family == 10 for s in run("v6"))
    assert {owner_of(s).name for s in run("proc:ngin")} == {"nginx"}
    assert {owner_of(s).pid for s in run("pid:7001")} == {7001}
    assert {owner_of(s).user for s in run("user:alice")} == {"alice"}
    assert not any(s.state == S.TIME_WAIT for s in run("-time_wait"))
    both = run("established 8080")
    assert both and all(s.state == S.ESTABLISHED and 8080 in (s.sport, s.dport) for s in both)
    assert run("addr:::1") == [s for s in sockets() if "::1" in (s.src, s.dst)]
    assert {owner_of(s).name for s in run("redis")} == {"redis-cli"}  # free text: process name


@pytest.mark.parametrize("text, msg", [
    ("port:http", "bad port"), ("port:70000", "bad port"), ("state:nope", "unknown TCP state"),
    ("color:red", "unknown filter key"), ("pid:x", "bad pid"), ("port:", "needs a value"), ("family:v5", "bad family"),
])
def test_bad_terms_raise_a_clear_error(text, msg):
    with pytest.raises(BadInput, match=msg):
        parse_filter(text, owner_of)
