"""The one filter language of ``sockmon ls``, ``sockmon kill`` and every socket list in the TUI.

Sans-IO: text → tokens → recursive-descent parser → AST (frozen dataclasses) → a compiled predicate over
`Socket` records. Nothing here reads a file or a socket (a service name such as ``:ssh`` is looked up
through the ``services`` function handed in, by default ``socket.getservbyname`` of /etc/services).

``parse_filter(text, owner_of)`` is the stable entry point (None for empty text, ``BadInput`` with a one-line
reason naming the bad token and its column). ``parse(text) -> Filter`` gives the AST, a ``states`` hint
(the only states that can match: ``sockmon ls`` asks the kernel for just those) and ``predicate(owner_of)``.
``to_text(node)`` prints an AST back as filter text that parses to the same AST.

ss's language (ss(8), iproute2 misc/ssfilter.y and misc/ss.c), giving the sockets ``ss -tan EXPR`` gives:
  ``state NAME`` / ``exclude NAME`` (also ``excl``) before the expression: a run of them makes one state set
      (``state`` adds, ``exclude`` removes from all; a set left empty, ``exclude all``, is ss's default:
      connected without bucket). NAME is a state (``established``, ``syn-sent``,
      ``syn-recv``, ``fin-wait-1``, ``fin-wait-2``, ``time-wait``, ``closed``, ``close-wait``, ``last-ack``,
      ``listening``, ``closing``) or a group: ``all``; ``connected`` (all but listening and closed);
      ``synchronized`` (connected but syn-sent); ``bucket`` (syn-recv, time-wait); ``big`` (all but bucket).
  ``src ADDR`` / ``dst ADDR`` (optionally ``=``, or ``!=``): ADDR is ``127.0.0.1``, ``127.0.0.0/8`` (also a
      partial ``10.1/16`` and a dotted mask), ``[::1]``, ``::1/128`` (an IPv6 address is bracketed unless
      it has a prefix length: ``dst ::1`` means address ``:`` port 1 to ss, so it is an error),
      ``:PORT``, ``ADDR:PORT``, ``[V6]:PORT``, ``*``, ``*:PORT``; ``inet:`` / ``inet6:`` in front limit
      the whole listing to that family (as ss does). Host names are never resolved (numeric only).
      Matching is the kernel's (ss sends the expression to sock_diag as bytecode): the socket's family must
      be the address's, except that an IPv4 address or network also matches a v4-mapped IPv6 socket
      (``::ffff:127.0.0.1``) by its embedded address: ``src 127.0.0.0/8`` lists those too, ``src 0.0.0.0``
      does not list ``[::]``.
  ``sport OP PORT`` / ``dport OP PORT``: OP is ``= == eq != ne neq < lt <= le leq > gt >= ge geq`` (``=`` may be
      left out), PORT is ``:N``, ``N``, a service name (``:https``) or ``*`` (any port). As in the kernel's
      bytecode, ``<`` ``<=`` ``>`` ``>=`` compare the port's low 16 bits (``*`` is 65535 there).
  ``and`` ``&&`` ``&`` / ``or`` ``||`` ``|`` / ``not`` ``!`` / ``(`` ``)``: and/or have EQUAL precedence and
      group from the left, as in ss: ``a or b and c`` is ``(a or b) and c``; writing two terms side by side
      means ``and``. ``not`` / ``!`` binds to the one term after it. ``\\(`` is ``(`` (a backslash escapes
      any character, as in ss), so a shell's leftover escapes work.
  ss's ``dev``, ``fwmark``, ``cgroup`` and ``autobound`` are refused with a reason (sockmon has no such fields).

sockmon's shorthand (each is one word; words ss has no meaning for):
  ``established`` / ``time_wait`` / ``TIME-WAIT``   a state (also the groups above, bare)
  ``state:est`` / ``state:established,time_wait``  states by name, prefix or group, comma-separated
  ``est`` / ``fin`` (a state-name prefix)          those states, or that text in an address / process name
  ``8080`` / ``:8080`` / ``port:8080``             local or peer port; ``port:6000-7000``, ``port:22,80``
  ``sport:N`` / ``dport:N``                        one side (also ranges and lists)
  ``127.0.0.1:6379`` / ``[::1]:6379`` / ``*:6379`` what the table shows: that endpoint on either side;
  ``127.0.0.1`` / ``10.0.0.0/8`` / ``::1``         that address / network on either side (family as written;
                                                   a v4 pattern also matches v4-mapped IPv6 sockets)
  ``addr:X`` / ``src:X`` / ``dst:X``               X a full address, CIDR or endpoint: as above on either /
                                                   one side; other X: a substring of the address text
  ``proc:nginx`` / ``pid:1234`` / ``user:www``     owner process (name substring, pid, user name or uid)
  ``v4`` / ``v6`` (``family:v4``)                  family
  ``-X`` / ``!X``                                  not X
  anything else (or ``text:X``)                    substring of either address or the process name

Where the two overlap, ss wins: its keywords (``and or not src dst sport dport state exclude eq ne lt le gt
ge …``) are never shorthand text; ``!`` alone is ss's ``not``. Everything ss rejects and sockmon accepts is an
extension (bare words, ``key:value``, ``[::1]/128``, ``state X`` after the first term — there it is a term
like any other — and parentheses stuck to a word: ``(dport``).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from sockmon.core.errors import BadInput
from sockmon.core.records import Process, Socket
from sockmon.core.states import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    NEW_SYN_RECV,
    STATE_NAMES,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
)

Pred = Callable[[Socket], bool]
OwnerOf = Callable[[Socket], Process | None]
Services = Callable[[str], int | None]
KEYS = ("state", "port", "sport", "dport", "addr", "src", "dst", "proc", "pid", "user", "family", "text")
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6

# ---------------------------------------------------------------------------------------------- states
ALL_STATES = frozenset(STATE_NAMES) - {NEW_SYN_RECV}  # request sockets count as SYN_RECV (ss: SYN-RECV)
GROUPS: dict[str, frozenset[int]] = {
    "all": ALL_STATES,
    "connected": ALL_STATES - {CLOSE, LISTEN},
    "synchronized": ALL_STATES - {CLOSE, LISTEN, SYN_SENT},
    "bucket": frozenset({SYN_RECV, TIME_WAIT}),
    "big": ALL_STATES - {SYN_RECV, TIME_WAIT},
    "none": frozenset(),  # sockmon's: prints an empty set (ss has no name for it)
}
SS_CONN = ALL_STATES - {LISTEN, CLOSE, TIME_WAIT, SYN_RECV}  # ss's default set (ss without -a)
# every spelling a state takes: ss's names (scan_state) and the kernel's, -/_ alike, case-insensitive
_STATE_WORDS: dict[str, int] = {}
for _code, _name in STATE_NAMES.items():
    if _code != NEW_SYN_RECV:
        _STATE_WORDS[_name.lower()] = _code
_STATE_WORDS.update({
    "syn_rcv": SYN_RECV, "syn_rcvd": SYN_RECV, "fin_wait_1": FIN_WAIT1, "fin_wait_2": FIN_WAIT2,
    "timewait": TIME_WAIT, "closed": CLOSE, "unconnected": CLOSE, "listening": LISTEN,
})
# ss prints these, the table too: each state's one canonical word (printer)
_CANON = {ESTABLISHED: "established", SYN_SENT: "syn-sent", SYN_RECV: "syn-recv", FIN_WAIT1: "fin-wait-1",
          FIN_WAIT2: "fin-wait-2", TIME_WAIT: "time-wait", CLOSE: "closed", CLOSE_WAIT: "close-wait",
          LAST_ACK: "last-ack", LISTEN: "listening", CLOSING: "closing"}


def _state_word(word: str) -> frozenset[int] | None:
    """A state or group by its exact name (any case, ``-`` or ``_``, ``tcp_`` prefix), else None."""
    key = word.lower().replace("-", "_").removeprefix("tcp_")
    if key in GROUPS:
        return GROUPS[key]
    code = _STATE_WORDS.get(key)
    return None if code is None else frozenset({code})


def _state_prefix(word: str) -> frozenset[int]:
    key = word.upper().replace("-", "_").removeprefix("TCP_")
    if len(key) < 2:
        return frozenset()
    return frozenset(c for c, n in STATE_NAMES.items() if n.startswith(key) and c != NEW_SYN_RECV)


# ---------------------------------------------------------------------------------------------- AST
class Node:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class States(Node):
    codes: frozenset[int]


@dataclass(frozen=True, slots=True)
class StateOrText(Node):
    """``est``: a state-name prefix typed as a word — those states, or the text (addresses, process)."""
    codes: frozenset[int]
    text: str


@dataclass(frozen=True, slots=True)
class Host(Node):
    """An address prefix and / or a port on one side (``s`` local, ``d`` peer) or ``any``.

    ``family`` 0: no address given (any); ``bits`` the prefix length; ``port`` -1: any port. Matching is
    the kernel's for ss's bytecode (``_addr_pred``). ``ss``: written as ss's ``src X`` / ``dst X`` (True) or
    as sockmon's shorthand (printing only). ``only_family``: an ``inet:`` / ``inet6:`` prefix."""
    side: str
    family: int
    addr: int  # the address as 128 bits: an IPv4 address in the top 32 (ss's inet_prefix.data)
    bits: int
    port: int
    ss: bool
    only_family: int = 0


@dataclass(frozen=True, slots=True)
class PortCmp(Node):
    side: str  # "s" / "d"
    op: str  # = != < <= > >=
    port: int  # -1: ``*``


@dataclass(frozen=True, slots=True)
class PortRange(Node):
    side: str  # "s" / "d" / "any"
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Family(Node):
    family: int


@dataclass(frozen=True, slots=True)
class Owner(Node):
    kind: str  # proc / pid / user
    value: str


@dataclass(frozen=True, slots=True)
class Text(Node):
    where: str  # any (addresses and process name) / addr / src / dst
    text: str


@dataclass(frozen=True, slots=True)
class Not(Node):
    node: Node


@dataclass(frozen=True, slots=True)
class And(Node):
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or(Node):
    left: Node
    right: Node


# ---------------------------------------------------------------------------------------------- tokens
@dataclass(frozen=True, slots=True)
class Token:
    text: str  # unescaped
    pos: int  # 0-based offset in the text
    kind: str  # "(" ")" "!" "and" "or" "op" "key" "word"


_OPS = {"=": "=", "==": "=", "eq": "=", "!=": "!=", "ne": "!=", "neq": "!=", "<": "<", "lt": "<",
        "<=": "<=", "le": "<=", "leq": "<=", ">": ">", "gt": ">", ">=": ">=", "ge": ">=", "geq": ">="}
_KEYWORDS = {"src", "dst", "sport", "dport", "state", "exclude", "excl", "dev", "fwmark", "cgroup", "autobound"}
_AND = {"and", "&&", "&"}
_OR = {"or", "||", "|"}
_NOT = {"not", "!"}
MAX_TOKENS = 400  # bounds the parser's and the predicate's depth (one closure per term)
MAX_DEPTH = 60  # nested parentheses and nots


def _classify(text: str) -> str:
    if text in ("(", ")"):
        return text
    low = text.lower()
    if low in _NOT:
        return "!"
    if low in _AND:
        return "and"
    if low in _OR:
        return "or"
    if low in _OPS:
        return "op"
    if low in _KEYWORDS:
        return "key"
    return "word"


def _where(tok: Token) -> str:
    return f"{tok.text!r} at column {tok.pos + 1}"


def tokenize(text: str) -> list[Token]:
    """Whitespace separates words; a backslash escapes the next character (ss); ``(`` / ``!`` in front of
    a word and ``)`` after it are split off (sockmon's: ``(dport`` / ``!est`` / ``:22)``)."""
    raw: list[tuple[list[tuple[str, bool, int]], int]] = []  # (chars: (char, escaped, offset), start)
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        chars: list[tuple[str, bool, int]] = []
        while i < n and not text[i].isspace():
            if text[i] == "\\":
                if i + 1 < n:
                    chars.append((text[i + 1], True, i))
                    i += 2
                    continue
                i += 1  # a trailing backslash escapes nothing
                continue
            chars.append((text[i], False, i))
            i += 1
        if chars:
            raw.append((chars, start))
    out: list[Token] = []
    for chars, start in raw:
        word = "".join(c[0] for c in chars)
        if word in ("(", ")", "!", "!="):  # also escaped: ss reads \\( as (
            out.append(Token(word, start, _classify(word)))
            continue
        # split off unescaped leading '(' / '!' (not the operator '!=') and trailing unmatched ')'
        head = 0
        while (head < len(chars) - 1 and chars[head][0] in "(!" and not chars[head][1]
               and not word.startswith("!=", head)):
            out.append(Token(chars[head][0], chars[head][2], chars[head][0]))
            head += 1
        tail = len(chars)
        tail_tokens: list[Token] = []
        while tail - 1 > head and chars[tail - 1][0] == ")" and not chars[tail - 1][1]:
            inner = word[head:tail - 1]
            if inner.count("(") > inner.count(")"):  # it closes a "(" inside the word: keep it
                break
            tail -= 1
            tail_tokens.append(Token(")", chars[tail][2], ")"))
        body = word[head:tail]
        if body:
            out.append(Token(body, chars[head][2], _classify(body)))
        out.extend(reversed(tail_tokens))
    if len(out) > MAX_TOKENS:
        raise BadInput(f"filter too long: {len(out)} words and parentheses (at most {MAX_TOKENS})")
    return out


# ---------------------------------------------------------------------------------------------- values
_C_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
_C_UINT = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes ``²`` and other digits ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _c_int(text: str) -> int | None:
    """strtol(text, base 0) with nothing left over (iproute2's get_long / get_unsigned), else None."""
    if not _C_INT.match(text):
        return None
    sign = -1 if text[0] == "-" else 1
    digits = text.lstrip("+-")
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    value *= sign
    return value if -(2 ** 63) <= value < 2 ** 63 else None


def default_services(name: str) -> int | None:
    """Port of a TCP service name from /etc/services (the only lookup the filter makes, at parse time)."""
    try:
        return socket.getservbyname(name, "tcp")
    except (OSError, UnicodeError, ValueError):
        return None


def _ss_port(text: str, tok: Token, services: Services) -> int:
    """ss's port: ``*`` (any: -1), a C integer (any value: ``dport > :70000`` matches nothing, as in ss) or
    a service name."""
    if text in ("*", ""):  # ss: "dport = :" is any port too
        return -1
    value = _c_int(text)
    if value is not None:
        return value
    port = services(text) if text and "\x00" not in text else None
    if port is None:
        raise BadInput(f"{text!r} does not look like a port (a number, :N or a service name), {_where(tok)}")
    return port


def _ipv4_partial(text: str) -> int | None:
    """iproute2's get_addr_ipv4: 1-4 dot-separated parts, each a C integer 0-255 (``10.1`` is 10.1.0.0)."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    value = 0
    for k, p in enumerate(parts):
        if not _C_UINT.match(p):
            return None
        n = _c_int(p)
        if n is None or n > 255:
            return None
        value |= n << (24 - 8 * k)
    return value


def _netmask(text: str, family: int) -> int | None:
    """iproute2's get_netmask: a number, or (IPv4) a dotted mask with contiguous ones."""
    if _C_UINT.match(text):
        return _c_int(text)
    if family == AF_INET:
        try:
            m = int.from_bytes(socket.inet_pton(AF_INET, text), "big")
        except OSError:
            return None
        ones = bin(m).count("1")
        if m == ((1 << 32) - 1) ^ ((1 << (32 - ones)) - 1):
            return ones
    return None


def _prefix(text: str, family: int) -> tuple[int, int, int] | None:
    """iproute2's get_prefix_1: (family, 128-bit address, bits) or None. ``default`` / ``any`` / ``all``:
    any address (bits 0)."""
    base, slash, mask = text.partition("/")
    if base in ("default", "any", "all"):
        if slash and base != "default":
            return None
        return (family, 0, 0) if not slash else None
    if ":" in base:
        if family not in (0, AF_INET6):
            return None
        try:
            addr = int.from_bytes(socket.inet_pton(AF_INET6, base), "big")
        except (OSError, ValueError):
            return None
        fam, maxbits = AF_INET6, 128
    else:
        if family not in (0, AF_INET):
            return None
        v4 = _ipv4_partial(base)
        if v4 is None:
            return None
        fam, maxbits, addr = AF_INET, 32, v4 << 96
    bits = maxbits
    if slash:
        plen = _netmask(mask, fam)
        if plen is None or plen > maxbits:
            return None
        bits = plen
    return fam, addr, bits


def _hostcond(text: str, tok: Token, side: str, services: Services, *, ss: bool) -> Host:
    """ss's parse_hostcond for an inet address (``src`` / ``dst``), plus ``[v6]/len`` (ss refuses it)."""
    addr = text
    only = 0
    if addr.startswith("inet:"):
        only, addr = AF_INET, addr[5:]
    elif addr.startswith("inet6:"):
        only, addr = AF_INET6, addr[6:]
    elif addr.split(":", 1)[0] in ("unix", "link", "netlink", "vsock"):
        raise BadInput(f"sockmon lists TCP sockets only: {_where(tok)}")
    port_text: str | None
    suffix = ""
    if addr.startswith("["):
        inner, close, rest = addr[1:].partition("]")
        if not close:
            raise BadInput(f"missing ']' in {_where(tok)}")
        if rest.startswith("/"):  # sockmon's: [::1]/128 and [::1]/128:22
            mask, colon, port_rest = rest[1:].partition(":")
            suffix, rest = "/" + mask, (":" + port_rest if colon else "")
        addr, port_text = inner + suffix, rest
    elif addr.startswith("*"):
        addr, port_text = "*", addr[1:]
    else:
        slash = addr.find("/")
        colon = addr.rfind(":", slash if slash >= 0 else 0)
        if colon >= 0:
            addr, port_text = addr[:colon], addr[colon:]
        else:
            port_text = None
    port = -1
    if port_text:
        p = port_text[1:] if port_text.startswith(":") else port_text
        if p and p != "*":
            port = _ss_port(p, tok, services)
    family, value, bits = only, 0, 0
    if addr and addr != "*":
        parsed = _prefix(addr, only)
        if parsed is None:
            hint = " (write an IPv6 address in brackets: [::1], [::1]:22, or ::1/128)" if ":" in text else ""
            raise BadInput(f"an address or network is expected (host names are not resolved), "
                           f"{_where(tok)}{hint}")
        family, value, bits = parsed
    return Host(side, family, value, bits, port, ss, only)


def _strict_endpoint(word: str, side: str) -> Host | None:
    """What the table shows, as sockmon's shorthand: ``127.0.0.1``, ``10.0.0.0/8``, ``::1``, ``[::1]``,
    ``127.0.0.1:6379``, ``[::1]:6379``, ``*:6379``, ``127.0.0.1:*``; None if the word is none of these."""
    addr, port_text = word, ""
    if word.startswith("["):
        inner, close, rest = word[1:].partition("]")
        if not close:
            return None
        if rest.startswith("/"):
            mask, colon, port_rest = rest[1:].partition(":")
            inner, rest = inner + "/" + mask, (":" + port_rest if colon else "")
        if rest and not rest.startswith(":"):
            return None
        addr, port_text = inner, rest[1:]
        if ":" not in addr.partition("/")[0]:
            return None
    elif word.startswith("*:"):
        addr, port_text = "*", word[2:]
    elif word.count(":") == 1:  # a.b.c.d:port (an unbracketed IPv6 address has two or more)
        addr, port_text = word.split(":")
        if not addr:
            return None
    port = -1
    if port_text and port_text != "*":
        if not _digits(port_text) or int(port_text) > 65535:
            return None
        port = int(port_text)
    elif addr == "*" or (word.endswith(":") and not word.startswith("[")):
        if not port_text:
            return None
    if addr == "*":
        return Host(side, 0, 0, 0, port, False)
    base, slash, mask = addr.partition("/")
    try:
        fam = AF_INET6 if ":" in base else AF_INET
        value = int.from_bytes(socket.inet_pton(fam, base), "big")
    except (OSError, ValueError):
        return None
    maxbits = 128 if fam == AF_INET6 else 32
    if fam == AF_INET:
        value <<= 96
    bits = maxbits
    if slash:
        if not _digits(mask) or int(mask) > maxbits:
            return None
        bits = int(mask)
    return Host(side, fam, value, bits, port, False)


# ---------------------------------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, text: str, services: Services) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0
        self.services = services

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def end_pos(self) -> int:
        return len(self.text.rstrip())

    def need(self, what: str, after: Token) -> Token:
        tok = self.peek()
        if tok is None:
            raise BadInput(f"{what} expected after {_where(after)}")
        return self.take()

    # filter := (state X | exclude X)* exprlist?
    def parse(self) -> Node | None:
        states: frozenset[int] | None = None
        while (tok := self.peek()) is not None and tok.kind == "key" and tok.text.lower() in (
                "state", "exclude", "excl"):
            self.take()
            codes = self.state_arg(tok)
            if tok.text.lower() == "state":
                states = (states or frozenset()) | codes
            else:
                states = (ALL_STATES if states is None else states) - codes
        expr = self.exprlist() if self.peek() is not None else None
        if (tok := self.peek()) is not None:
            raise BadInput(f"unexpected {_where(tok)}" + (": no '(' before it" if tok.kind == ")" else ""))
        if states is None:
            return expr
        if not states:  # ss: an empty state set leaves ss's default, the connected states without bucket
            states = SS_CONN
        return States(states) if expr is None else And(States(states), expr)

    def state_arg(self, key: Token) -> frozenset[int]:
        tok = self.need("a state name", key)
        codes = _state_word(tok.text)
        if codes is None or tok.kind != "word":
            raise BadInput(f"unknown TCP state {_where(tok)}: use a state such as established, time-wait, "
                           f"listening, or a group: {', '.join(g for g in GROUPS if g != 'none')}")
        return codes

    # exprlist := expr ((and | or)? expr)*   — equal precedence, from the left (ss)
    def exprlist(self) -> Node:
        left = self.expr()
        while (tok := self.peek()) is not None and tok.kind != ")":
            if tok.kind in ("and", "or"):
                self.take()
                if self.peek() is None or self.peek().kind == ")":
                    raise BadInput(f"a term expected after {_where(tok)}")
                right = self.expr()
                left = And(left, right) if tok.kind == "and" else Or(left, right)
            else:
                left = And(left, self.expr())
        return left

    def expr(self) -> Node:
        self.depth += 1
        try:
            return self._expr()
        finally:
            self.depth -= 1

    def _expr(self) -> Node:
        tok = self.take()
        if self.depth > MAX_DEPTH and tok.kind in ("(", "!"):
            raise BadInput(f"nested too deep at column {tok.pos + 1} (at most {MAX_DEPTH} parentheses and nots)")
        if tok.kind == "(":
            if self.peek() is None:
                raise BadInput(f"{_where(tok)} is never closed")
            if self.peek().kind == ")":
                raise BadInput(f"empty parentheses at column {tok.pos + 1}")
            inner = self.exprlist()
            if self.peek() is None:
                raise BadInput(f"{_where(tok)} is never closed: add ')'")
            self.take()
            return inner
        if tok.kind == "!":
            nxt = self.peek()
            if nxt is None or nxt.kind in (")", "and", "or"):
                raise BadInput(f"a term expected after {_where(tok)}")
            return Not(self.expr())
        if tok.kind == "key":
            return self.keyword(tok)
        if tok.kind == "word":
            return self.word(tok)
        raise BadInput(f"unexpected {_where(tok)}: a term (state, src, dst, sport, dport, a port…) expected"
                       + (" before it" if tok.kind in ("and", "or", ")") else ""))

    def keyword(self, tok: Token) -> Node:
        key = tok.text.lower()
        if key in ("state", "exclude", "excl"):
            codes = States(self.state_arg(tok))
            return codes if key == "state" else Not(codes)
        if key in ("dev", "fwmark", "cgroup", "autobound"):
            raise BadInput(f"ss's {key!r} is not supported by sockmon, {_where(tok)}")
        side = "s" if key in ("src", "sport") else "d"
        op_tok = self.peek()
        op = "="
        if op_tok is not None and op_tok.kind == "op":
            self.take()
            op = _OPS[op_tok.text.lower()]
        after = op_tok if op_tok is not None and op_tok.kind == "op" else tok
        val = self.need("a port" if key.endswith("port") else "an address", after)
        if val.kind != "word":
            raise BadInput(f"{'a port' if key.endswith('port') else 'an address'} expected after "
                           f"{_where(after)}, not {_where(val)}")
        if key in ("src", "dst"):
            if op not in ("=", "!="):
                raise BadInput(f"{key} takes = or != only, not {_where(op_tok)}")
            host = _hostcond(val.text, val, side, self.services, ss=True)
            return Not(host) if op == "!=" else host
        text = val.text[1:] if val.text.startswith(":") else val.text
        port = _ss_port(text, val, self.services)
        return PortCmp(side, op, port)

    def word(self, tok: Token) -> Node:
        w = tok.text
        if len(w) > 1 and w[0] in "-!" and not w.startswith("!="):
            return Not(self.word(Token(w[1:], tok.pos + 1, "word")))
        host = _strict_endpoint(w, "any")
        if host is not None:
            return host
        key, sep, value = w.partition(":")
        if sep and key:
            low = key.lower()
            if low in KEYS:
                if not value:
                    raise BadInput(f"{low}: needs a value, {_where(tok)}")
                return self.keyed(low, value, tok)
            if key.isalpha() or "_" in key:
                raise BadInput(f"unknown filter key {key!r} at column {tok.pos + 1}: use one of "
                               f"{', '.join(KEYS)}")
        if sep and not key and _digits(value):  # ":8080"
            return self.ports("any", value, tok)
        if _digits(w):
            return self.ports("any", w, tok)
        codes = _state_word(w)
        if codes is not None:
            return States(codes)
        low = w.lower()
        if low in ("v4", "v6", "inet", "inet6", "ipv4", "ipv6"):
            return Family(AF_INET6 if "6" in low else AF_INET)
        if not _digits(w) and (prefixed := _state_prefix(w)):
            return StateOrText(prefixed, low)
        return Text("any", low)

    def keyed(self, key: str, value: str, tok: Token) -> Node:
        if key == "state":
            nodes = []
            for part in value.split(","):
                codes = _state_word(part) if part else None
                if codes is None and part:
                    codes = _state_prefix(part) or None
                if codes is None:
                    raise BadInput(f"unknown TCP state {part!r} in {_where(tok)}: use a state name, a prefix "
                                   f"(est) or a group (connected, synchronized, bucket, big, all)")
                nodes.append(codes)
            return States(frozenset().union(*nodes))
        if key in ("port", "sport", "dport"):
            return self.ports({"port": "any", "sport": "s", "dport": "d"}[key], value, tok)
        if key == "family":
            v = value.lower()
            if v in ("v4", "4", "inet", "ipv4"):
                return Family(AF_INET)
            if v in ("v6", "6", "inet6", "ipv6"):
                return Family(AF_INET6)
            raise BadInput(f"bad family {value!r} at column {tok.pos + 1}: v4 or v6")
        if key in ("addr", "src", "dst"):
            side = {"addr": "any", "src": "s", "dst": "d"}[key]
            host = _strict_endpoint(value, side)
            return host if host is not None else Text(key, value.lower())
        if key == "text":  # the plain substring, whatever the text looks like
            return Text("any", value.lower())
        if key == "pid":
            if not _digits(value):
                raise BadInput(f"bad pid {value!r} at column {tok.pos + 1}: a number")
            return Owner("pid", str(int(value)))
        return Owner(key, value if key == "user" else value.lower())

    def ports(self, side: str, value: str, tok: Token) -> Node:
        """``N``, ``N-M`` or a comma list of them (sockmon's shorthand): 0-65535."""
        node: Node | None = None
        for part in value.split(","):
            lo_s, dash, hi_s = part.partition("-")
            lo, hi = _port16(lo_s, tok), _port16(hi_s if dash else lo_s, tok)
            if lo > hi:
                raise BadInput(f"bad port range {part!r} at column {tok.pos + 1}: low-high")
            one = PortRange(side, lo, hi)
            node = one if node is None else Or(node, one)
        assert node is not None
        return node


def _port16(text: str, tok: Token) -> int:
    if not _digits(text) or not 0 <= int(text) <= 65535:
        raise BadInput(f"bad port {text!r} at column {tok.pos + 1}: a port is a number 0-65535")
    return int(text)


# ---------------------------------------------------------------------------------------------- compile
@lru_cache(maxsize=65536)  # bounded: distinct address texts of the live table
def _addr128(family: int, text: str) -> int:
    """A socket's address as ss holds it: 16 bytes, an IPv4 address in the first 4 (rest zero); -1 if bad."""
    try:
        if family == AF_INET:
            return int.from_bytes(socket.inet_pton(AF_INET, text), "big") << 96
        return int.from_bytes(socket.inet_pton(AF_INET6, text), "big")
    except (OSError, ValueError):
        return -1


_MAPPED = 0xFFFF  # ::ffff:a.b.c.d >> 32
ADDR_CACHE_MAX = 65536  # per address term of a compiled predicate
_LOW32 = (1 << 32) - 1


def _addr_pred(h: Host, src: bool, user: bool = False) -> Callable[[Socket], bool]:
    """A host condition. Kernel (``user`` False; net/ipv4/inet_diag.c inet_diag_bc_run, what ``ss`` sends as
    bytecode): the port, if given, must be equal; a pattern with an address needs the socket's family,
    except that an IPv4 pattern also matches a v4-mapped IPv6 socket by its embedded address; then the
    first ``bits`` bits. ss's own (``user`` True; misc/ss.c run_ssfilter, inet2_addr_match): the first
    ``bits`` of the 16 address bytes whatever the family (IPv4 in the first four), or a v4 pattern on the
    embedded address of a v4-mapped socket; no address check at all when ``bits`` is 0."""
    shift = 128 - h.bits
    want = h.addr >> shift
    want_v4 = (h.addr >> 96) >> (32 - h.bits) if h.family == AF_INET else 0
    fam, port = h.family, h.port
    if fam == 0:  # no address (``:22``, ``*``, ``default``): the port only
        if port == -1:
            return lambda s: True
        if src:
            return lambda s: s.sport == port
        return lambda s: s.dport == port

    bits = h.bits

    def addr_ok(family: int, text: str) -> bool:
        a = _addr128(family, text)
        if a < 0:
            return False
        mapped_ok = (fam == AF_INET and family == AF_INET6 and a >> 32 == _MAPPED
                     and (a & _LOW32) >> (32 - bits) == want_v4)
        if user:  # ss's own test
            return bits == 0 or a >> shift == want or mapped_ok
        if family != fam:  # the kernel's
            return mapped_ok
        return bits == 0 or a >> shift == want

    # The answer depends on the address text only (its family shows in it): one dict lookup per socket.
    # Bounded: cleared when it holds ADDR_CACHE_MAX texts (a table's distinct addresses are far fewer).
    cache: dict[str, bool] = {}

    def ok(family: int, text: str) -> bool:
        r = cache.get(text)
        if r is None:
            if len(cache) >= ADDR_CACHE_MAX:
                cache.clear()
            r = cache[text] = addr_ok(family, text)
        return r

    if src:
        if port == -1:
            return lambda s: ok(s.family, s.src)
        return lambda s: s.sport == port and ok(s.family, s.src)
    if port == -1:
        return lambda s: ok(s.family, s.dst)
    return lambda s: s.dport == port and ok(s.family, s.dst)


def compile_node(node: Node, owner_of: OwnerOf, user: bool = False) -> Pred:
    """The predicate of one AST node (closures; ``owner_of`` is asked only by owner / text terms).
    ``user``: ss's own evaluation of its address and port terms instead of the kernel's (`Filter.predicate`)."""
    if isinstance(node, And):
        a, b = compile_node(node.left, owner_of, user), compile_node(node.right, owner_of, user)
        return lambda s: a(s) and b(s)
    if isinstance(node, Or):
        a, b = compile_node(node.left, owner_of, user), compile_node(node.right, owner_of, user)
        return lambda s: a(s) or b(s)
    if isinstance(node, Not):
        a = compile_node(node.node, owner_of, user)
        return lambda s: not a(s)
    if isinstance(node, States):
        codes = node.codes | ({NEW_SYN_RECV} if SYN_RECV in node.codes else set())
        return lambda s: s.state in codes
    if isinstance(node, StateOrText):
        codes, low = node.codes, node.text

        def state_or_text(s: Socket) -> bool:
            if s.state in codes or low in s.src.lower() or low in s.dst.lower():
                return True
            p = owner_of(s)
            return p is not None and low in p.name.lower()

        return state_or_text
    if isinstance(node, Host):
        user = user and node.ss  # sockmon's shorthand means the kernel's matching only
        if node.side == "s":
            return _addr_pred(node, True, user)
        if node.side == "d":
            return _addr_pred(node, False, user)
        a, b = _addr_pred(node, True, user), _addr_pred(node, False, user)
        return lambda s: a(s) or b(s)
    if isinstance(node, PortCmp):
        port, src = node.port, node.side == "s"
        if node.op in ("<", "<=", ">", ">=") and not user:
            port &= 0xFFFF  # the kernel's bytecode holds it in 16 bits: ss sends "*" (-1) as 65535
        get = (lambda s: s.sport) if src else (lambda s: s.dport)
        op = node.op
        if op == "=":
            return (lambda s: True) if port == -1 else (lambda s: get(s) == port)
        if op == "!=":
            return (lambda s: False) if port == -1 else (lambda s: get(s) != port)
        if op == "<=":
            return lambda s: get(s) <= port
        if op == ">=":
            return lambda s: get(s) >= port
        if op == "<":
            return lambda s: get(s) < port
        return lambda s: get(s) > port
    if isinstance(node, PortRange):
        lo, hi = node.lo, node.hi
        if lo == hi:
            if node.side == "s":
                return lambda s: s.sport == lo
            if node.side == "d":
                return lambda s: s.dport == lo
            return lambda s: s.sport == lo or s.dport == lo
        if node.side == "s":
            return lambda s: lo <= s.sport <= hi
        if node.side == "d":
            return lambda s: lo <= s.dport <= hi
        return lambda s: lo <= s.sport <= hi or lo <= s.dport <= hi
    if isinstance(node, Family):
        fam = node.family
        return lambda s: s.family == fam
    if isinstance(node, Owner):
        value = node.value
        if node.kind == "pid":
            pid = int(value)
            return lambda s: (p := owner_of(s)) is not None and p.pid == pid
        if node.kind == "proc":
            return lambda s: (p := owner_of(s)) is not None and value in p.name.lower()
        low = value.lower()
        return lambda s: ((p := owner_of(s)) is not None and low in p.user.lower()) or value == str(s.uid)
    if isinstance(node, Text):
        low = node.text
        if node.where == "src":
            return lambda s: low in s.src.lower()
        if node.where == "dst":
            return lambda s: low in s.dst.lower()
        if node.where == "addr":
            return lambda s: low in s.src.lower() or low in s.dst.lower()

        def anywhere(s: Socket) -> bool:
            if low in s.src.lower() or low in s.dst.lower():
                return True
            p = owner_of(s)
            return p is not None and low in p.name.lower()

        return anywhere
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------- analysis
def states_of(node: Node | None) -> frozenset[int] | None:
    """The states a socket must be in to match (None: any may) — what ``ls`` asks the kernel for."""
    if node is None:
        return None
    if isinstance(node, States):
        return node.codes
    if isinstance(node, And):
        a, b = states_of(node.left), states_of(node.right)
        return b if a is None else a if b is None else a & b
    if isinstance(node, Or):
        a, b = states_of(node.left), states_of(node.right)
        return None if a is None or b is None else a | b
    if isinstance(node, Not) and isinstance(node.node, States):
        return ALL_STATES - node.node.codes
    return None


def only_family(node: Node | None) -> int:
    """ss's ``inet:`` / ``inet6:`` in a src / dst limits the whole listing to that family (the last one
    written wins, as in ss); 0 when none does."""
    fam = 0
    stack = [node] if node is not None else []
    order: list[Host] = []
    while stack:
        n = stack.pop()
        if isinstance(n, (And, Or)):
            stack.extend((n.right, n.left))
        elif isinstance(n, Not):
            stack.append(n.node)
        elif isinstance(n, Host) and n.only_family:
            order.append(n)
    for h in order:
        fam = h.only_family
    return fam


def _both_ways(node: Node) -> tuple[bool, set[int] | None]:
    """Whether ss's kernel and user-space evaluations of ``node`` can disagree on some socket, and the
    families of its addresses (None: a port term differs whatever the family). They differ only on a socket
    of another family than an address's (the user-space test then also compares raw bytes) and on a
    ``<`` / ``>`` port outside 0-65535."""
    stack = [node]
    families: set[int] = set()
    while stack:
        n = stack.pop()
        if isinstance(n, (And, Or)):
            stack.extend((n.left, n.right))
        elif isinstance(n, Not):
            stack.append(n.node)
        elif isinstance(n, Host) and n.ss and n.family:
            families.add(n.family)
        elif isinstance(n, PortCmp) and n.op in ("<", "<=", ">", ">=") and not 0 <= n.port <= 0xFFFF:
            return True, None
    return bool(families), families


# ---------------------------------------------------------------------------------------------- printer
def _host_text(h: Host) -> str:
    """A Host as text that parses back to it: ss's form for src / dst, the table's for the shorthand."""
    prefix = {AF_INET: "inet:", AF_INET6: "inet6:"}.get(h.only_family, "")
    if h.family == AF_INET:
        addr = socket.inet_ntop(AF_INET, (h.addr >> 96).to_bytes(4, "big"))
        addr += "" if h.bits == 32 and not h.ss else f"/{h.bits}"
    elif h.family == AF_INET6:
        addr = "[" + socket.inet_ntop(AF_INET6, h.addr.to_bytes(16, "big")) + "]"
        addr += "" if h.bits == 128 and not h.ss else f"/{h.bits}"
    else:
        addr = "*"
    if h.port == -1:
        return prefix + (addr if addr != "*" or h.ss else "*:*")
    return f"{prefix}{addr}:{h.port}"


def to_text(node: Node | None) -> str:
    """Filter text for an AST; ``parse(to_text(n)).node == n`` (binary nodes are parenthesised)."""
    if node is None:
        return ""
    if isinstance(node, And):
        return f"( {to_text(node.left)} and {to_text(node.right)} )"
    if isinstance(node, Or):
        return f"( {to_text(node.left)} or {to_text(node.right)} )"
    if isinstance(node, Not):
        return f"not {to_text(node.node)}"
    if isinstance(node, States):
        if not node.codes:
            return "state:none"
        return "state:" + ",".join(_CANON[c] for c in sorted(node.codes))
    if isinstance(node, StateOrText):
        return node.text
    if isinstance(node, Host):
        if node.ss:
            return f"{'src' if node.side == 's' else 'dst'} {_host_text(node)}"
        key = {"any": "addr", "s": "src", "d": "dst"}[node.side]
        return f"{key}:{_host_text(node)}"
    if isinstance(node, PortCmp):
        port = "*" if node.port == -1 else f":{node.port}"
        return f"{'sport' if node.side == 's' else 'dport'} {node.op} {port}"
    if isinstance(node, PortRange):
        key = {"any": "port", "s": "sport", "d": "dport"}[node.side]
        return f"{key}:{node.lo}" if node.lo == node.hi else f"{key}:{node.lo}-{node.hi}"
    if isinstance(node, Family):
        return "v4" if node.family == AF_INET else "v6"
    if isinstance(node, Owner):
        return f"{node.kind}:{_escape(node.value)}"
    if isinstance(node, Text):
        return f"{'text' if node.where == 'any' else node.where}:{_escape(node.text)}"
    raise TypeError(f"not a filter node: {node!r}")  # pragma: no cover


def _escape(text: str) -> str:
    return "".join("\\" + c if c.isspace() or c in "\\()!" else c for c in text)


# ---------------------------------------------------------------------------------------------- API
@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter: the AST, the states that can match (None: any) and ss's family limit (0: none)."""
    node: Node | None
    states: frozenset[int] | None
    family: int

    def predicate(self, owner_of: OwnerOf = lambda s: None) -> Pred | None:
        """The compiled predicate. ss evaluates its expression twice — in the kernel (bytecode) and again
        on each socket it receives (misc/ss.c show_one_inet_sock → run_ssfilter) — and lists what passes
        both; the two differ only for an address of the other family and a ``<`` / ``>`` port outside
        0-65535 (``*``), so only such filters are evaluated both ways here."""
        if self.node is None:
            return None
        pred = compile_node(self.node, owner_of)
        both, families = _both_ways(self.node)
        if both:
            kernel, user = pred, compile_node(self.node, owner_of, user=True)
            if families is not None and len(families) == 1:
                # a socket of the addresses' family gets the same answer both ways: one evaluation
                (same,) = families
                pred = lambda s: kernel(s) and (s.family == same or user(s))  # noqa: E731
            else:
                pred = lambda s: kernel(s) and user(s)  # noqa: E731
        if self.family:
            fam = self.family
            return lambda s: s.family == fam and pred(s)
        return pred


def parse(text: str, services: Services = default_services) -> Filter:
    """Parse filter text (``BadInput`` with a one-line reason naming the bad token and its column)."""
    if len(text) > 10_000:
        raise BadInput(f"filter too long ({len(text)} characters; at most 10000)")
    node = _Parser(text, services).parse()
    return Filter(node, states_of(node), only_family(node))


def parse_filter(text: str, owner_of: OwnerOf = lambda s: None) -> Pred | None:
    """None for empty text; raises BadInput with a one-line reason for bad text."""
    return parse(text).predicate(owner_of)
