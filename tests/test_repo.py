"""Repository hygiene: README's test command is the one CI runs, and ruff is clean."""

import pathlib
import re
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README must open with a ```sh block of set-up commands"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_exactly_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert cmds[0].endswith("sockmon")
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in [line.strip() for line in ci]


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    assert ruff, "ruff is a test extra; install with .[test]"
    out = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_code_and_docs_cite_only_files_in_the_repository():
    """Comments and docs point at files a reader of this repository has: never the team's shared folder."""
    outside = re.compile(r"\.\./shared|shared/(DESIGN|reviews)|\bDESIGN\.md")
    offenders = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".git",) or "__snapshots__" in rel.parts or not path.is_file():
            continue
        if path.suffix not in (".py", ".md", ".toml", ".tcss", ".sh") and rel != pathlib.Path(".ci/run"):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if outside.search(line) and path.name != "test_repo.py":
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
