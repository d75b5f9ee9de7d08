import os
import socket
import subprocess
import sys

import pytest
from sockmon.core.errors import BadInput, SockmonError
from sockmon.core.lab.foreign import borrowed_socket, duplicate_socket, find_socket_fd
from sockmon.core.lab.options import Keepalive, Linger, read_options, set_keepalive, set_linger

pytestmark = pytest.mark.root
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="pidfd_getfd on another process needs root")

CHILD = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.fileno(), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "ka":
        print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
              s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), flush=True)
    elif cmd == "send":
        s.sendall(b"still mine")
        print("sent", flush=True)
"""


@pytest.fixture
def child():
    lst = socket.create_server(("127.0.0.1", 0))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(lst.getsockname()[1])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    fd = int(proc.stdout.readline())
    peer, _ = lst.accept()
    inode = os.stat(f"/proc/{proc.pid}/fd/{fd}").st_ino
    yield proc, fd, inode, peer
    proc.stdin.close()
    proc.wait(5)
    peer.close()
    lst.close()


def ask(proc, cmd):
    proc.stdin.write(cmd + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


@needs_root
def test_duplicate_reads_and_changes_the_owners_socket(child):
    proc, fd, inode, peer = child
    assert find_socket_fd(proc.pid, inode) == fd
    dup = duplicate_socket(proc.pid, inode)
    assert dup.getpeername() == peer.getsockname()
    assert read_options(dup).keepalive.enabled is False
    assert ask(proc, "ka").startswith("0 ")
    assert set_keepalive(dup, Keepalive(True, 42, 5, 2)) == Keepalive(True, 42, 5, 2)
    assert ask(proc, "ka") == "1 42"  # the owner sees the change: same kernel socket
    assert set_linger(dup, Linger.after(2)) == Linger(True, 2)
    dup.close()
    # closing our duplicate left the owner's socket open and working
    assert ask(proc, "send") == "sent"
    peer.settimeout(3)
    assert peer.recv(100) == b"still mine"


@needs_root
def test_unknown_inode_and_pid(child):
    proc, fd, inode, peer = child
    with pytest.raises(SockmonError) as info:
        duplicate_socket(proc.pid, inode + 10_000_000)
    assert "holds no fd for socket inode" in str(info.value)
    with pytest.raises(SockmonError) as info:
        duplicate_socket(2**22 + 12345, inode)
    assert info.value.errno_name == "ESRCH"


def test_bad_arguments():
    with pytest.raises(BadInput):
        duplicate_socket(0, 1)
    with pytest.raises(BadInput):
        duplicate_socket(1, 0)


@needs_root
@pytest.mark.parametrize("known_fd", [False, True], ids=["fd-lookup", "pidfd_getfd"])
def test_without_privileges_explains_why(child, known_fd):
    """As nobody: listing /proc/PID/fd fails (EACCES), and pidfd_getfd itself fails (EPERM)."""
    proc, fd, inode, peer = child
    code = f"""
import os
from sockmon.core.lab import foreign
from sockmon.core.errors import SockmonError
if {known_fd}:
    foreign.find_socket_fd = lambda pid, inode, hint=None: {fd}
os.setgid(65534); os.setuid(65534)
try:
    foreign.duplicate_socket({proc.pid}, {inode})
    print("no error")
except SockmonError as exc:
    print(exc.errno_name, "|", exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.split(" |")[0] == ("EPERM" if known_fd else "EACCES"), line
    assert "root" in line and "\n" not in line


@needs_root
def test_borrowed_socket_acts_on_the_owners_socket_and_closes_only_the_copy(child):
    proc, fd, inode, peer = child
    with borrowed_socket(proc.pid, inode) as s:
        assert set_keepalive(s, Keepalive(True, 33, 4, 3)) == Keepalive(True, 33, 4, 3)
        copy_fd = s.fileno()
    assert ask(proc, "ka") == "1 33"
    assert not os.path.exists(f"/proc/self/fd/{copy_fd}") or os.readlink(f"/proc/self/fd/{copy_fd}") != f"socket:[{inode}]"
    assert ask(proc, "send") == "sent"


def test_borrowed_socket_of_our_own_process_needs_no_privileges():
    own = socket.create_server(("127.0.0.1", 0))
    try:
        inode = os.fstat(own.fileno()).st_ino
        with borrowed_socket(os.getpid(), inode) as s:
            assert s.fileno() != own.fileno()
            assert s.getsockname() == own.getsockname()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        assert own.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1  # same kernel socket
        assert own.fileno() >= 0 and own.getsockname()  # ours is still open
    finally:
        own.close()
