"""`bench/persistence.py --smoke` runs end to end and both stacks deliver everything.

Timing figures are printed by the bench, never checked here: the machine is shared and noisy.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_smoke(json_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the smoke bench; on a timeout, SIGTERM it so it stops the servers it started."""
    argv = [sys.executable, str(ROOT / "bench" / "persistence.py"), "--smoke", "--json", str(json_path)]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        out, err = process.communicate(timeout=60)
        pytest.fail(f"bench --smoke did not finish within {timeout}s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def test_bench_smoke_prints_the_table_and_loses_nothing(tmp_path, system_executable):
    system_executable("redis-server")
    result = run_smoke(tmp_path / "bench.json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deliveries/s" in result.stdout and "server us/dlv" in result.stdout
    assert "ours/plain" in result.stdout
    summaries = json.loads((tmp_path / "bench.json").read_text())["summaries"]
    assert sorted(s["stack"] for s in summaries) == ["ours", "plain"]
    for summary in summaries:
        assert summary["expected"] > 0, summary
        counts = {key: summary[key] for key in ("lost", "duplicates", "unacked", "errors")}
        assert counts == {"lost": 0, "duplicates": 0, "unacked": 0, "errors": 0}, summary
