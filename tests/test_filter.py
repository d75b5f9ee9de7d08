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


# ------------------------------------------------------------------ ss's language (core/table/filter.py)
from sockmon.core.table.filter import GROUPS, parse, to_text  # noqa: E402


def ss(text):
    pred = parse(text).predicate(owner_of)
    return {s.cookie for s in sockets() if pred is None or pred(s)}


def want(pred):
    return {s.cookie for s in sockets() if pred(s)}


@pytest.mark.parametrize("text, pred", [
    ("state established", lambda s: s.state == S.ESTABLISHED),
    ("state time-wait state fin-wait-2", lambda s: s.state in (S.TIME_WAIT, S.FIN_WAIT2)),
    ("exclude listening exclude time-wait", lambda s: s.state not in (S.LISTEN, S.TIME_WAIT)),
    ("state connected", lambda s: s.state not in (S.LISTEN, S.CLOSE)),
    ("state synchronized", lambda s: s.state not in (S.LISTEN, S.CLOSE, S.SYN_SENT)),
    ("state bucket", lambda s: s.state in (S.SYN_RECV, S.TIME_WAIT)),
    ("state big", lambda s: s.state not in (S.SYN_RECV, S.TIME_WAIT)),
    ("state all", lambda s: True),
    ("dport = :8080", lambda s: s.dport == 8080),
    ("dport == 8080", lambda s: s.dport == 8080),
    ("dport eq :8080", lambda s: s.dport == 8080),
    ("dport :8080", lambda s: s.dport == 8080),
    ("sport != :8080", lambda s: s.sport != 8080),
    ("sport ne :8080", lambda s: s.sport != 8080),
    ("sport < :1024", lambda s: s.sport < 1024),
    ("sport lt :1024", lambda s: s.sport < 1024),
    ("sport <= :22", lambda s: s.sport <= 22),
    ("sport le :22", lambda s: s.sport <= 22),
    ("dport > :51000", lambda s: s.dport > 51000),
    ("dport gt :51000", lambda s: s.dport > 51000),
    ("dport >= :51000", lambda s: s.dport >= 51000),
    ("dport ge :51000", lambda s: s.dport >= 51000),
    ("dport = :0x1f90", lambda s: s.dport == 8080),  # a C number, as ss reads it
    ("src 127.0.0.1", lambda s: s.src == "127.0.0.1"),
    ("dst 127.0.0.0/8", lambda s: s.dst.startswith("127.")),
    ("dst 127.0.0.2/32", lambda s: s.dst == "127.0.0.2"),
    ("dst 127.0.0.0/255.255.255.254", lambda s: s.dst in ("127.0.0.1", "127.0.0.0")),
    ("src 127/8", lambda s: s.src.startswith("127.")),
    ("src [::1]", lambda s: s.src == "::1"),
    ("src ::1/128", lambda s: s.src == "::1"),
    ("dst [::1]/128", lambda s: s.dst == "::1"),
    ("src [::1]:5432", lambda s: (s.src, s.sport) == ("::1", 5432)),
    ("src 127.0.0.1:8080", lambda s: (s.src, s.sport) == ("127.0.0.1", 8080)),
    ("src :22", lambda s: s.sport == 22),
    ("src *:22", lambda s: s.sport == 22),
    ("dst *", lambda s: True),
    ("sport = :22 or dport = :22", lambda s: 22 in (s.sport, s.dport)),
    ("sport = :22 || dport = :22", lambda s: 22 in (s.sport, s.dport)),
    ("state established sport = :22 or dport = :22", lambda s: s.state == S.ESTABLISHED and 22 in (s.sport, s.dport)),
    ("sport = :22 or dport = :22 and state established",  # equal precedence, from the left
     lambda s: 22 in (s.sport, s.dport) and s.state == S.ESTABLISHED),
    ("sport = :22 or ( dport = :22 and src 10.0.0.0/8 )", lambda s: s.sport == 22),
    ("( sport = :22 ) dport = :51012", lambda s: s.sport == 22 and s.dport == 51012),
    ("\\( sport = :22 \\) && dport = :51012", lambda s: s.sport == 22 and s.dport == 51012),
    ("(sport = :22) & dport = :51012", lambda s: s.sport == 22 and s.dport == 51012),
    ("not sport = :22", lambda s: s.sport != 22),
    ("! sport = :22", lambda s: s.sport != 22),
    ("!( sport = :22 | sport = :8080 )", lambda s: s.sport not in (22, 8080)),
    ("src inet:0.0.0.0/0", lambda s: s.family == 2),
    ("src inet6:* or sport = :22", lambda s: s.family == 10),  # inet6: limits everything to IPv6, as in ss
    ("exclude all", lambda s: s.state not in (S.LISTEN, S.CLOSE, S.TIME_WAIT, S.SYN_RECV)),  # ss's default
    ("127.0.0.1:8080", lambda s: ("127.0.0.1", 8080) in ((s.src, s.sport), (s.dst, s.dport))),
    ("[::1]:5432", lambda s: ("::1", 5432) in ((s.src, s.sport), (s.dst, s.dport))),
    ("*:22", lambda s: 22 in (s.sport, s.dport)),
    ("::1", lambda s: "::1" in (s.src, s.dst)),
    ("127.0.0.2", lambda s: "127.0.0.2" in (s.src, s.dst)),
    ("0.0.0.0", lambda s: "0.0.0.0" in (s.src, s.dst)),  # either side: a v4 listener's peer too
    ("port:50000-51005", lambda s: 50000 <= s.sport <= 51005 or 50000 <= s.dport <= 51005),
    ("sport:22,5432", lambda s: s.sport in (22, 5432)),
    ("state:est,tim", lambda s: s.state in (S.ESTABLISHED, S.TIME_WAIT)),
    ("state:connected", lambda s: s.state not in (S.LISTEN, S.CLOSE)),
    ("state:est or 8080", lambda s: s.state == S.ESTABLISHED or 8080 in (s.sport, s.dport)),
    ("est 8080 and v4", lambda s: s.state == S.ESTABLISHED and 8080 in (s.sport, s.dport) and s.family == 2),
    ("proc:nginx or proc:sshd", lambda s: (p := owner_of(s)) is not None and p.name in ("nginx", "sshd")),
    ("ESTABLISHED AND NOT V6", lambda s: s.state == S.ESTABLISHED and s.family == 2),
])
def test_ss_expressions_and_shorthand(text, pred):
    expected = want(pred)
    assert expected and expected != want(lambda s: True) or text in ("state all", "dst *")
    assert ss(text) == expected


@pytest.mark.parametrize("text, reason, column", [
    ("dport = :http-nope", "does not look like a port", 9),
    ("sport >", "a port expected after '>'", 7),
    ("src", "an address expected", 1),
    ("src nosuchhost", "host names are not resolved", 5),
    ("dst ::1", "brackets", 5),
    ("dst 300.1.1.1", "an address or network is expected", 5),
    ("dst 10.0.0.0/33", "an address or network is expected", 5),
    ("( sport = :22", "never closed", 1),
    ("sport = :22 )", "no '(' before it", 13),
    ("( )", "empty parentheses", 1),
    ("sport = :22 or", "a term expected after 'or'", 13),
    ("and est", "unexpected 'and'", 1),
    ("!", "a term expected after '!'", 1),
    ("state", "a state name expected", 1),
    ("state nope", "unknown TCP state 'nope'", 7),
    ("est state:xyz", "unknown TCP state 'xyz'", 5),
    ("src < 1.2.3.4", "src takes = or != only", 5),
    ("dev eth0", "not supported", 1),
    ("fwmark 0x1", "not supported", 1),
    ("  color:red", "unknown filter key 'color'", 3),
    ("port:99999", "bad port", 1),
    ("port:9-1", "bad port range", 1),
    ("dport = and", "a port expected", 7),
    ("src unix:/tmp/x", "TCP sockets only", 5),
])
def test_bad_text_names_the_token_and_its_column(text, reason, column):
    with pytest.raises(BadInput) as err:
        parse(text)
    msg = str(err.value)
    assert reason in msg and "\n" not in msg, msg
    assert f"column {column}" in msg, msg


def test_states_hint_is_what_ls_asks_the_kernel_for():
    assert parse("state established ( dport = :22 or sport = :22 )").states == {S.ESTABLISHED}
    assert parse("state time-wait state fin-wait-2").states == {S.TIME_WAIT, S.FIN_WAIT2}
    assert parse("est or listening").states is None  # "est" may also be text
    assert parse("established or listening").states == {S.ESTABLISHED, S.LISTEN}
    assert parse("-time_wait").states == GROUPS["all"] - {S.TIME_WAIT}
    assert parse("state bucket sport = :22").states == {S.SYN_RECV, S.TIME_WAIT}
    assert parse("sport = :22").states is None
    assert parse("").node is None and parse_filter("") is None


def test_printer_round_trips_the_examples():
    for text in ["state established ( dport = :6379 or sport = :6379 )", "src 127.0.0.0/8 and not dst [::1]/128",
                 "127.0.0.1:6379 [::1]:6379 *:6379 port:1-9 sport:22,80", "proc:x\\ y user:root pid:7 v6 -est",
                 "sport < * or dport >= :0x10", "src inet6:[::1]:22", "exclude all"]:
        node = parse(text).node
        assert parse(to_text(node)).node == node, text


def test_service_names_come_from_the_function_handed_in():
    f = parse("dport = :redis", services=lambda name: {"redis": 6379}.get(name))
    assert f.node is not None and "6379" in to_text(f.node)
    with pytest.raises(BadInput, match="does not look like a port"):
        parse("dport = :redis", services=lambda name: None)


def test_address_answer_cache_is_bounded_under_churn(monkeypatch):
    """A compiled address term remembers answers per address text, at most ADDR_CACHE_MAX of them."""
    import sockmon.core.table.filter as F
    from sockmon.core.records import Socket

    monkeypatch.setattr(F, "ADDR_CACHE_MAX", 64)
    pred = parse("src 10.0.0.0/8").predicate()

    def caches(fn, seen=None):
        seen = seen if seen is not None else set()
        for cell in getattr(fn, "__closure__", None) or ():
            v = cell.cell_contents
            if isinstance(v, dict) and id(v) not in seen:
                seen.add(id(v))
                yield v
            elif callable(v) and id(v) not in seen:
                seen.add(id(v))
                yield from caches(v, seen)

    for i in range(5000):  # churn: every socket a new address
        addr = f"10.{i // 256 % 256}.{i % 256}.1" if i % 2 else f"11.0.{i // 256 % 256}.{i % 256}"
        s = Socket(family=2, state=1, src=addr, sport=1, dst="1.1.1.1", dport=2, recv_q=0, send_q=0, timer=None,
                   uid=0, inode=0, cookie=i + 1)
        assert pred(s) == addr.startswith("10.")
    found = list(caches(pred))
    assert found and all(len(c) <= 64 for c in found)
