"""Keepalive notices a dead peer: two private network namespaces joined by a veth pair, then the
peer's link goes down. Root only; touches nothing outside the namespaces it creates and removes."""

import os
import shutil
import subprocess
import sys
import time

import pytest
from sockhelp import veth_netns_pair

pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                 reason="needs root and iproute2 to create network namespaces")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def two_netns():
    with veth_netns_pair("k", "10.213.0") as names:
        yield names


def test_keepalive_detects_dead_peer(two_netns):
    a, b, vb = two_netns
    server = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-m", "sockmon", "serve",
                               "10.213.0.2:7000", "--mode", "hold"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        while "listening on" not in (line := server.stdout.readline()):
            assert line, server.stderr.read()
        client = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-m", "sockmon", "connect",
                                   "10.213.0.2:7000", "--keepalive", "1,1,2", "--hold", "15"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                  stdin=subprocess.DEVNULL)  # no input: connect streams a piped stdin
        time.sleep(1.0)  # connected, keepalive probes answered
        ip("-n", b, "link", "set", vb, "down")  # the peer vanishes without a FIN or RST
        t0 = time.monotonic()
        out, err = client.communicate(timeout=15)
        took = time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(10)
    print(out, err, f"detected after {took:.2f} s", sep="\n")
    assert "keepalive on idle=1s intvl=1s cnt=2 (dead peer after 3s)" in out
    assert client.returncode == 1
    assert "ETIMEDOUT" in err and "Traceback" not in err
    assert "ENOTCONN" not in out  # the CLI does not try to close a connection that already ended
    assert took < 8, took  # idle + intvl * cnt = 3 s (plus the first probe's idle from the last ack)
