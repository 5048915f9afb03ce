"""bench/rooms.py runs end to end in both modes and loses nothing; its figures are never checked."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_rooms_smoke_runs_both_modes_and_loses_nothing(tmp_path, system_executable):
    system_executable("redis-server")
    argv = [sys.executable, str(ROOT / "bench" / "rooms.py"), "--smoke", "--json", str(tmp_path / "r.json")]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the bench stops the servers it started
        out, err = process.communicate(timeout=60)
        pytest.fail(f"rooms.py --smoke did not finish in time:\n{err[-3000:]}")
    assert process.returncode == 0, err[-3000:]
    assert "server µs/dlv" in out and "on / off" in out
    summaries = json.loads((tmp_path / "r.json").read_text())["summaries"]
    assert {(s["layout"], s["mode"]) for s in summaries} == {
        (layout, mode) for layout in ("local", "remote") for mode in ("on", "off")}
    for summary in summaries:
        assert summary["expected"] > 0 and summary["lost"] == 0 and summary["duplicates"] == 0, summary
        # Room channels exist only when on (rooms and the members' own user rooms).
        assert (summary["room_channels"] > 0) == (summary["mode"] == "on"), summary
