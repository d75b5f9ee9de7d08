"""sockmon.core and the headless commands never import Textual (harlequin-style enforced layering)."""

import subprocess
import sys

import pytest

CORE_MODULES = ["records", "states", "tcpinfo", "errors", "events"]


def _imports_textual(code: str) -> bool:
    probe = code + "\nimport sys\nprint(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def test_probe_detects_textual():
    # the probe itself must be able to fail
    assert _imports_textual("import textual")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_does_not_import_textual(module):
    assert not _imports_textual(f"import sockmon.core.{module}")


def test_whole_core_package_does_not_import_textual():
    import pathlib

    import sockmon.core

    pkg = pathlib.Path(sockmon.core.__file__).parent
    mods = sorted(p.stem for p in pkg.glob("*.py") if p.stem != "__init__")
    code = "\n".join(f"import sockmon.core.{m}" for m in mods)
    assert not _imports_textual(code)


def test_cli_parser_does_not_import_textual():
    assert not _imports_textual("from sockmon.cli import build_parser\nbuild_parser()")


