"""bench/memprobe.py runs end to end and prints its figures (none is checked: memory is noisy)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_memprobe_runs_and_prints_rss_and_the_breakdown(system_executable):
    for executable in ("redis-server", "node", "npm"):
        system_executable(executable)
    argv = [sys.executable, str(ROOT / "bench" / "memprobe.py"), "--clients", "40", "--idle", "0.2",
            "--top", "5"]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.terminate()  # it stops the servers it started
        out, err = process.communicate(timeout=60)
        pytest.fail(f"memprobe did not finish within 300s:\n{err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    assert "kB/conn" in out and "live greenlets" in out
    assert "tracemalloc:" in out
