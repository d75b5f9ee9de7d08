"""The top-level `sockmon` command: bad options are refused in one line before any screen opens."""

import errno
import subprocess
import sys

import pytest


def test_ui_refuses_a_missing_namespace_before_starting():
    out = subprocess.run([sys.executable, "-m", "sockmon", "--netns", "no-such-ns-sockmon"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "no network namespace 'no-such-ns-sockmon'" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf", "3601"])
def test_ui_refuses_a_bad_interval(value):
    out = subprocess.run([sys.executable, "-m", "sockmon", f"--interval={value}"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert "--interval must be between 0 and 3600 seconds" in out.stderr and "Traceback" not in out.stderr
    # one line besides the usage (which argparse may wrap: its continuation lines start with spaces)
    assert [x for x in out.stderr.splitlines() if not x.startswith(("usage:", " "))] == [
        x for x in out.stderr.splitlines() if "--interval must be" in x]


def test_ui_refuses_an_empty_namespace_name():
    out = subprocess.run([sys.executable, "-m", "sockmon", "--netns", ""],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and out.stderr.strip() == "sockmon: empty network namespace name"


def test_namespace_permission_errors_do_not_advise_about_ports(tmp_path):
    """EACCES opening a namespace file (as nobody, or a file that is no namespace) talks about permission,
    not ports; bind's EACCES still does."""
    # as nobody (setuid in the child: the venv's interpreter is not nobody's to execute)
    code = ("import os, sys\nfrom sockmon.cli import build_parser, main\nbuild_parser()\n"
            "import sockmon.core.table.snapshot, sockmon.core.table.owners, sockmon.core.states, json\n"
            "os.setgid(65534); os.setuid(65534); sys.exit(main())")
    out = subprocess.run([sys.executable, "-c", code, "ls", "--netns", "pid:1"], capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 1, out
    line = out.stderr.strip()
    assert "\n" not in line and "EACCES" in line and "/proc/1/ns/net" in line and "port" not in line, line
    from sockmon.core.errors import SockmonError

    bind = SockmonError.from_os_error(PermissionError(errno.EACCES, "x"), "bind/listen 127.0.0.1:80")
    assert "port >= 1024" in str(bind)
    ns = SockmonError.from_os_error(PermissionError(errno.EACCES, "x"), "open network namespace /proc/1/ns/net")
    assert "port" not in str(ns) and "EACCES" in str(ns)
