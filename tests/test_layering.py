"""sockmon.core and the headless commands never import Textual (harlequin-style enforced layering)."""

import subprocess
import sys

import pytest

CORE_MODULES = ["records", "states", "tcpinfo", "errors", "lab.events", "table.collector", "lab.scenarios", "scenarios.runner"]


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
    mods = sorted(".".join(p.relative_to(pkg).with_suffix("").parts) for p in pkg.rglob("*.py")
                  if p.stem != "__init__")
    code = "\n".join(f"import sockmon.core.{m}" for m in mods)
    assert not _imports_textual(code)


def test_cli_parser_does_not_import_textual():
    assert not _imports_textual("from sockmon.cli import build_parser\nbuild_parser()")




# -- import contracts (pyproject.toml [tool.importlinter]) -------------------------------------------
# sockmon.core and sockmon.tui are installed from the top-level core/ and tui/ through package-dir, so
# the package is assembled in a temporary folder the way it is installed, and lint-imports reads it.

import pathlib  # noqa: E402
import shutil  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _assemble(dest: pathlib.Path) -> pathlib.Path:
    pkg = dest / "sockmon"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "sockmon", pkg, ignore=ignore)
    shutil.copytree(ROOT / "core", pkg / "core", ignore=ignore)
    shutil.copytree(ROOT / "tui", pkg / "tui", ignore=ignore)
    return pkg


def _lint_imports(tree: pathlib.Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is a test extra; install with .[test]"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}
    return subprocess.run([exe, "--no-cache", str(ROOT / "pyproject.toml")], cwd=tree,
                          capture_output=True, text=True, env=env)


def test_import_contracts_are_kept(tmp_path):
    _assemble(tmp_path)
    out = _lint_imports(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 kept, 0 broken" in out.stdout


@pytest.mark.parametrize("where,line", [
    ("core/table/diff.py", "import sockmon.core.lab.options"),
    ("core/lab/options.py", "import textual"),
    ("tui/table/listening.py", "import sockmon.tui.lab.client"),
    ("tui/lab/client.py", "import sockmon.tui.lab.timeline"),
    ("sockmon/cli/ls.py", "import sockmon.tui.fmt"),
    ("core/lab/scenarios/time_wait.py", "import sockmon.core.scenarios.runner"),
    ("core/table/snapshot.py", "import sockmon.core.scenarios.runner"),
    ("core/lab/scenarios/base.py", "import sockmon.core.table.snapshot"),
    ("tui/scenarios/__init__.py", "import sockmon.tui.table.listening"),
])
def test_import_contracts_catch_a_violation(tmp_path, where, line):
    pkg = _assemble(tmp_path)
    target = pkg / where.removeprefix("sockmon/")
    target.write_text(target.read_text() + f"\n{line}\n")
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and " 0 broken" not in out.stdout
