"""The top-level `sockmon` command: bad options are refused in one line before any screen opens."""

import subprocess
import sys


def test_ui_refuses_a_missing_namespace_before_starting():
    out = subprocess.run([sys.executable, "-m", "sockmon", "--netns", "no-such-ns-sockmon"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "no network namespace 'no-such-ns-sockmon'" in out.stderr
    assert "Traceback" not in out.stderr


def test_ui_refuses_a_bad_interval():
    out = subprocess.run([sys.executable, "-m", "sockmon", "--interval", "-1"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert "--interval must be between 0 and 3600 seconds" in out.stderr and "Traceback" not in out.stderr
