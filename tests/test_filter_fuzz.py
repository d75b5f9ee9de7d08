"""The filter language against random input (hypothesis): core/table/filter.py.

- any text, and random streams of the language's own tokens, either parse or raise BadInput — nothing else —
  and a parsed predicate never raises on any socket;
- generated well-formed ss expressions parse, and their predicate agrees with a straightforward reference
  evaluator written here from ss(8), iproute2's misc/ssfilter.y (and / or alike, from the left) and the
  kernel's inet_diag_bc_run (ipaddress networks);
- the printer round-trips: parse(to_text(ast)).node == ast.
"""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sockmon.core import states as S
from sockmon.core.errors import BadInput
from sockmon.core.records import Process, Socket
from sockmon.core.table.filter import GROUPS, parse, to_text

V4, V6 = socket.AF_INET, socket.AF_INET6
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

V4_ADDRS = ["127.0.0.1", "127.0.0.2", "0.0.0.0", "10.1.2.3", "10.1.200.9", "192.168.1.1", "255.255.255.255"]
V6_ADDRS = ["::1", "::", "::ffff:127.0.0.1", "::ffff:10.1.2.3", "fe80::1", "2001:db8::5", "7f00:1::1"]
PORTS = [0, 1, 22, 80, 1023, 1024, 6379, 8080, 32768, 65535]
STATES = [c for c in S.STATE_NAMES if c != S.NEW_SYN_RECV]
NAMES = ["nginx", "redis-server", "python3", "sshd"]


def owner_of(s: Socket) -> Process | None:
    return None if not s.inode else Process(pid=s.inode, name=NAMES[s.inode % len(NAMES)], user="u" + str(s.uid))


@st.composite
def sockets(draw) -> Socket:
    fam = draw(st.sampled_from([V4, V6]))
    addrs = V4_ADDRS if fam == V4 else V6_ADDRS
    return Socket(family=fam, state=draw(st.sampled_from(STATES + [S.NEW_SYN_RECV])),
                  src=draw(st.sampled_from(addrs)), sport=draw(st.sampled_from(PORTS)),
                  dst=draw(st.sampled_from(addrs)), dport=draw(st.sampled_from(PORTS)),
                  recv_q=0, send_q=0, timer=None, uid=draw(st.integers(0, 3)), inode=draw(st.integers(0, 5)),
                  cookie=draw(st.integers(1, 1 << 40)))


SAMPLE = [Socket(family=f, state=st_, src=a, sport=p, dst=b, dport=q, recv_q=0, send_q=0, timer=None,
                 uid=0, inode=i, cookie=i + 1)
          for i, (f, st_, a, p, b, q) in enumerate([
              (V4, S.LISTEN, "0.0.0.0", 22, "0.0.0.0", 0), (V6, S.LISTEN, "::", 22, "::", 0),
              (V4, S.ESTABLISHED, "127.0.0.1", 6379, "127.0.0.1", 40000),
              (V4, S.ESTABLISHED, "127.0.0.1", 40000, "127.0.0.1", 6379),
              (V6, S.ESTABLISHED, "::1", 8080, "::1", 50000), (V6, S.TIME_WAIT, "::ffff:127.0.0.1", 41000, "::ffff:127.0.0.1", 80),
              (V4, S.TIME_WAIT, "10.1.2.3", 33000, "192.168.1.1", 443), (V4, S.SYN_SENT, "10.1.200.9", 1024, "10.1.2.3", 1023),
              (V4, S.NEW_SYN_RECV, "127.0.0.1", 22, "127.0.0.2", 55555), (V6, S.CLOSE_WAIT, "fe80::1", 5, "2001:db8::5", 65535),
          ])]

# ------------------------------------------------------------------------- 1. only BadInput, never a crash
WORDS = ["(", ")", "\\(", "\\)", "!", "not", "and", "or", "&&", "||", "&", "|", "src", "dst", "sport", "dport",
         "state", "exclude", "excl", "=", "==", "!=", "<", "<=", ">", ">=", "eq", "ne", "lt", "le", "gt", "ge",
         "leq", "geq", "neq", "established", "time-wait", "TIME_WAIT", "listening", "all", "connected",
         "synchronized", "bucket", "big", "est", "fin", ":22", "22", "*", ":*", "*:22", "127.0.0.1",
         "127.0.0.0/8", "10.1/16", "[::1]", "[::1]:22", "[::1]/128", "::1/128", "::1", "inet:127.0.0.1",
         "inet6:[::1]", "0x16", "010", ":ssh", "-1", "99999", "proc:nginx", "pid:3", "user:u0", "v4", "v6",
         "port:1-100", "sport:22,80", "state:est,tw", "state:", "addr:10.", "-time_wait", "!est", "(dport",
         "22)", "foo", "[", "]", "/", ":", "\\", "dev", "fwmark", "autobound", "family:v5", "color:red", "1.2.3.4.5",
         "[::1", "default", "any", "0.0.0.0/0", "255.255.255.0", "10.0.0.0/255.255.0.0", "unix:/tmp", "\x00", "é"]


def check_total(text: str, socks) -> None:
    try:
        f = parse(text, services=lambda name: {"ssh": 22, "http": 80}.get(name))
    except BadInput as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, repr(msg)
        return
    pred = f.predicate(owner_of)
    if pred is not None:
        for s in socks:
            assert pred(s) in (True, False)
    if f.node is not None:  # whatever parsed prints back to the same tree
        assert parse(to_text(f.node), services=lambda name: None).node == f.node, to_text(f.node)


@SETTINGS
@given(st.lists(st.sampled_from(WORDS), max_size=14), st.lists(sockets(), max_size=5))
def test_token_streams_parse_or_raise_bad_input(words, socks):
    check_total(" ".join(words), SAMPLE + socks)


@SETTINGS
@given(st.text(max_size=60), st.lists(sockets(), max_size=3))
def test_any_text_parses_or_raises_bad_input(text, socks):
    check_total(text, SAMPLE + socks)


@SETTINGS
@given(st.lists(st.sampled_from(WORDS), max_size=8).map("".join))
def test_glued_tokens_parse_or_raise_bad_input(text):
    check_total(text, SAMPLE)


def test_deep_nesting_and_long_text_are_bad_input_not_recursion():
    for text in ["( " * 5000 + "est" + " )" * 5000, "not " * 3000 + "est", "est " * 3000, "x" * 20000]:
        try:
            parse(text)
        except BadInput as exc:
            assert "too" in str(exc)


# ------------------------------------------------------------------------- 2. agreement with a reference
def addr16(family: int, text: str) -> bytes:
    raw = socket.inet_pton(family, text)
    return raw + bytes(16 - len(raw))


def ref_prefix_match(sock_fam: int, sock_addr: str, pfam: int, paddr: str, bits: int, user: bool) -> bool:
    """ss evaluates a filter twice and lists what passes both. In the kernel (inet_diag_bc_run): same family
    and the first ``bits`` bits equal; an IPv4 network also takes a v4-mapped IPv6 socket by its embedded
    IPv4 address. In ss itself (run_ssfilter): the first ``bits`` of the 16 address bytes whatever the
    family (IPv4 in the first 4, zeros after), or a v4 network on a v4-mapped socket's IPv4 address."""
    net = ipaddress.ip_network(f"{paddr}/{bits}", strict=False)
    ip = ipaddress.ip_address(sock_addr)
    mapped = getattr(ip, "ipv4_mapped", None)
    if pfam == V4 and mapped is not None and mapped in net:
        return True
    if not user:
        return sock_fam == pfam and ip in net
    if bits == 0:
        return True
    a = int.from_bytes(addr16(sock_fam, sock_addr), "big")
    p = int.from_bytes(addr16(pfam, paddr), "big")
    return a >> (128 - bits) == p >> (128 - bits)


@st.composite
def ss_terms(draw, first: bool = False):
    """One ss term as (text, reference predicate). ``first``: not a ``state X`` term (at the very start it
    would join the leading state clauses: a union, as ss's ``state A state B``)."""
    kind = draw(st.sampled_from(["port", "host", "not", "paren"] + ([] if first else ["state"])))
    if kind == "port":
        side = draw(st.sampled_from(["sport", "dport"]))
        op_word, op = draw(st.sampled_from([("=", "eq"), ("==", "eq"), ("eq", "eq"), ("", "eq"), ("!=", "ne"),
                                            ("ne", "ne"), ("<", "lt"), ("lt", "lt"), ("<=", "le"), ("le", "le"),
                                            (">", "gt"), ("gt", "gt"), (">=", "ge"), ("ge", "ge")]))
        port = draw(st.sampled_from(PORTS + [40000, 50000, 70000, -1]))
        colon = draw(st.sampled_from([":", ""]))
        if port == -1:  # "*": any port
            text = f"{side} {op_word} *".replace("  ", " ")
        else:
            text = f"{side} {op_word} {colon}{port}".replace("  ", " ")

        def pred(s, user, side=side, op=op, port=port):
            v = s.sport if side == "sport" else s.dport
            if port == -1 and op in ("eq", "ne"):
                return op == "eq"
            port = port if op in ("eq", "ne") or user else port & 0xFFFF  # the kernel's 16 bits
            return {"eq": v == port, "ne": v != port, "lt": v < port, "le": v <= port, "gt": v > port,
                    "ge": v >= port}[op]

        return text, pred
    if kind == "host":
        side = draw(st.sampled_from(["src", "dst"]))
        fam = draw(st.sampled_from([V4, V6]))
        paddr = draw(st.sampled_from(V4_ADDRS if fam == V4 else V6_ADDRS))
        bits = draw(st.integers(0, 32 if fam == V4 else 128))
        with_bits = draw(st.booleans()) or bits == 0
        if not with_bits:
            bits = 32 if fam == V4 else 128
        port = draw(st.sampled_from([None, 22, 6379, 80]))
        if fam == V4:
            addr_text = paddr + (f"/{bits}" if with_bits else "")
        else:
            addr_text = f"[{paddr}]" if not with_bits else f"{paddr}/{bits}"
        text = f"{side} {addr_text}" + (f":{port}" if port is not None else "")

        def pred(s, user, side=side, fam=fam, paddr=paddr, bits=bits, port=port):
            sp, sa = (s.sport, s.src) if side == "src" else (s.dport, s.dst)
            if port is not None and sp != port:
                return False
            return ref_prefix_match(s.family, sa, fam, paddr, bits, user)

        return text, pred
    if kind == "state":  # sockmon's: "state X" as a term after the first
        name = draw(st.sampled_from(["established", "time-wait", "listening", "syn-recv", *GROUPS]))
        codes = set(GROUPS[name]) if name in GROUPS else {S.parse_state(name)}
        codes |= {S.NEW_SYN_RECV} if S.SYN_RECV in codes else set()
        return f"state {name}", (lambda s, user, codes=frozenset(codes): s.state in codes)
    if kind == "not":
        text, inner = draw(ss_terms())
        word = draw(st.sampled_from(["not", "!"]))
        return f"{word} {text}", (lambda s, user, inner=inner: not inner(s, user))
    text, inner = draw(ss_exprs())
    lp, rp = draw(st.sampled_from([("(", ")"), ("\\(", "\\)")]))
    return f"{lp} {text} {rp}", inner


@st.composite
def ss_exprs(draw, first: bool = False):
    """Terms joined by and / or / nothing: ss evaluates them left to right, and and or alike."""
    first_text, first = draw(ss_terms(first=first))
    rest = draw(st.lists(st.tuples(st.sampled_from(["and", "&&", "or", "||", ""]), ss_terms()), max_size=3))
    text = first_text
    preds = [("", first)]
    for joiner, (t, p) in rest:
        text += f" {joiner} {t}" if joiner else f" {t}"
        preds.append((joiner, p))

    def pred(s, user, preds=tuple(preds)):
        value = preds[0][1](s, user)
        for joiner, p in preds[1:]:
            value = (value or p(s, user)) if joiner in ("or", "||") else (value and p(s, user))
        return value

    return text, pred


@st.composite
def ss_filters(draw):
    """``state`` / ``exclude`` clauses (one state set, as ss builds it) then an expression."""
    clauses = draw(st.lists(st.tuples(st.sampled_from(["state", "exclude"]),
                                      st.sampled_from(["established", "time-wait", "listening", "syn-sent",
                                                       "closed", *[g for g in GROUPS if g != "none"]])),
                            max_size=3))
    mask: set | None = None
    for verb, name in clauses:
        codes = set(GROUPS[name]) if name in GROUPS else {S.parse_state(name)}
        if verb == "state":
            mask = (mask or set()) | codes
        else:
            mask = (set(GROUPS["all"]) if mask is None else mask) - codes
    text, expr = draw(ss_exprs(first=True))
    prefix = " ".join(f"{v} {n}" for v, n in clauses)
    if mask is not None and not mask:  # ss: nothing left is ss's default set
        mask = set(GROUPS["all"]) - {S.LISTEN, S.CLOSE, S.TIME_WAIT, S.SYN_RECV}
    if mask is not None and S.SYN_RECV in mask:
        mask.add(S.NEW_SYN_RECV)

    def pred(s, mask=None if mask is None else frozenset(mask)):  # what passes the kernel's and ss's test
        return (mask is None or s.state in mask) and expr(s, False) and expr(s, True)

    return (prefix + " " + text).strip(), pred, mask


@SETTINGS
@given(ss_filters(), st.lists(sockets(), min_size=1, max_size=8))
def test_generated_ss_expressions_agree_with_the_reference(case, socks):
    text, ref, mask = case
    f = parse(text)
    pred = f.predicate(owner_of)
    for s in SAMPLE + socks:
        assert pred(s) == ref(s), (text, s)
        if ref(s):  # the states hint never leaves out a socket that matches
            assert f.states is None or s.state in f.states or (s.state == S.NEW_SYN_RECV and S.SYN_RECV in f.states)
    assert parse(to_text(f.node)).node == f.node


# ------------------------------------------------------------------------- 3. printer round trip on trees
@SETTINGS
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=10))
def test_printer_round_trips_whatever_parses(words):
    try:
        f = parse(" ".join(words), services=lambda n: None)
    except BadInput:
        return
    text = to_text(f.node)
    again = parse(text, services=lambda n: None)
    assert again.node == f.node
    assert to_text(again.node) == text
