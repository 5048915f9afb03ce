"""The benches run end to end, every stack delivers everything, and the tables come out.

Timing figures are printed by the benches, never checked here: the machine is shared and noisy.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration
COUNTS = ("lost", "duplicates", "failures", "disconnects", "unacked")


def run_bench(script: str, json_path: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run a bench with --smoke; on a timeout, SIGTERM it so it stops the servers it started."""
    argv = [sys.executable, str(ROOT / "bench" / script), "--smoke", "--json", str(json_path)]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        out, err = process.communicate(timeout=60)
        pytest.fail(f"{script} --smoke did not finish within {timeout}s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def test_compare_smoke_runs_all_three_stacks_and_loses_nothing(tmp_path, system_executable):
    for executable in ("redis-server", "nginx", "node", "npm"):
        system_executable(executable)
    # Generous: a fresh machine runs `npm ci` first, and other suites share the two cores.
    result = run_bench("compare.py", tmp_path / "compare.json", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deliveries/s" in result.stdout and "server µs/dlv" in result.stdout
    assert "vs node" in result.stdout and "vs plain" in result.stdout
    results = json.loads((tmp_path / "compare.json").read_text())
    cells = {(s["stack"], s["path"]) for s in results["summaries"]}
    assert cells == {(stack, path) for stack in ("realtime", "plain", "node")
                     for path in ("direct", "emitter", "nginx")}
    for summary in results["summaries"]:
        assert summary["expected"] > 0, summary
        assert {key: summary[key] for key in COUNTS} == dict.fromkeys(COUNTS, 0), summary
        assert math.isfinite(summary["rss_per_conn_kb"]), summary
    # realtime against both references, measured in the same run, for every path.
    assert sorted(r["path"] for r in results["ratios"]) == ["direct", "emitter", "nginx"]
    for entry in results["ratios"]:
        assert entry["node"]["server_us"] and entry["plain"]["server_us"], entry
    # The chat-shaped workloads (bench/chatload.py) ran for all four stacks.
    assert "many small rooms" in result.stdout and "connect-and-join storm" in result.stdout
    assert "failover storm" in result.stdout
    chat = results["chat"]["summaries"]
    stacks = {"realtime", "plain", "node", "node-streams"}
    for workload in ("rooms", "storm", "failover"):
        assert {s["stack"] for s in chat[workload]} == stacks, chat[workload]
    for summary in chat["rooms"]:
        assert summary["highest_msg_per_s"] > 0, summary  # a passing step lost nothing
    for summary in chat["storm"]:
        assert summary["failed"] == 0 and summary["conn_per_s"] > 0, summary
    # realtime recovers what its clients missed while their replica was down (join {since}).
    realtime = next(s for s in chat["failover"] if s["stack"] == "realtime")
    assert realtime["lost"] == 0 and realtime["recovered"] == realtime["victims"] > 0, realtime
    # The Redis-bound cell (bench/shards.py): one Redis and a 3-shard Redis Cluster.
    assert "Redis as the limit" in result.stdout
    assert_shards(results["shards"]["summaries"])


def assert_shards(summaries: dict[str, list[dict]]) -> None:
    """Both targets ran the drivers and realtime; every acknowledged message was stored (and, for
    realtime, delivered to every member); every shard served some."""
    for kind in ("redis", "product"):
        assert sorted(s["shards"] for s in summaries[kind]) == [1, 3], summaries
        for summary in summaries[kind]:
            assert summary["acked"] > 0 and summary["lost"] == summary["refused"] == 0, summary
            assert summary.get("errors", 0) == summary.get("unacked", 0) == 0, summary
    three = next(s for s in summaries["redis"] if s["shards"] == 3)
    assert len(three["shard_cpu_pct"]) == 3 and all(share > 0 for share in three["evalsha_share_pct"]), three


def test_shards_smoke_runs_one_redis_and_a_cluster(tmp_path, system_executable):
    """bench/shards.py alone (compare.py's smoke runs it too, after everything else)."""
    for executable in ("redis-server", "redis-cli"):
        system_executable(executable)
    result = run_bench("shards.py", tmp_path / "shards.json", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ceiling msg/s" in result.stdout and "3 shards / one Redis" in result.stdout
    assert "realtime itself on each" in result.stdout
    assert_shards(json.loads((tmp_path / "shards.json").read_text())["summaries"])


def test_rss_per_connection_is_the_least_squares_slope_over_the_readings():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from compare import rss_slope
    finally:
        sys.path.remove(str(ROOT / "bench"))
    assert rss_slope([(100, 1000), (200, 3000), (300, 5000), (400, 7000)]) == pytest.approx(20)
    # One growth step between two readings moves the fit less than a two-point slope over it.
    assert rss_slope([(100, 0), (200, 0), (300, 4096), (400, 4096)]) == pytest.approx(16.384)
    assert math.isnan(rss_slope([(5, 100), (5, 200)]))


def test_fanout_smoke_compares_both_broadcast_paths():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "fanout.py"), "--smoke"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stock python-socketio emit" in result.stdout and "direct broadcast" in result.stdout


def test_dispatchcost_smoke_prints_a_send_and_its_pieces():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "dispatchcost.py"), "--smoke"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "µs/event" in result.stdout and "Flask-SocketIO dispatch to a no-op handler" in result.stdout


def test_roombook_smoke_compares_both_managers():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "roombook.py"), "--smoke"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "disconnect stock" in result.stdout and "\n        200 " in result.stdout


def test_persistence_smoke_prints_the_table_and_loses_nothing(tmp_path, system_executable):
    system_executable("redis-server")
    result = run_bench("persistence.py", tmp_path / "bench.json", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deliveries/s" in result.stdout and "server us/dlv" in result.stdout
    assert "ours/plain" in result.stdout
    summaries = json.loads((tmp_path / "bench.json").read_text())["summaries"]
    assert sorted(s["stack"] for s in summaries) == ["ours", "plain"]
    for summary in summaries:
        assert summary["expected"] > 0, summary
        counts = {key: summary[key] for key in ("lost", "duplicates", "unacked", "errors")}
        assert counts == {"lost": 0, "duplicates": 0, "unacked": 0, "errors": 0}, summary


def test_authcache_smoke_runs_both_arms(tmp_path, system_executable):
    system_executable("redis-server")
    result = run_bench("authcache.py", tmp_path / "auth.json", timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on/off" in result.stdout
    summary = json.loads((tmp_path / "auth.json").read_text())["summary"]
    # The lookups the caches exist to save are gone with them on (counts, not timings).
    for phase in ("connect", "api"):
        assert summary[phase]["on"]["lookups"] < summary[phase]["off"]["lookups"], summary


def test_sendcost_smoke_measures_every_stack_and_loses_nothing(tmp_path, system_executable):
    for executable in ("redis-server", "node", "npm"):
        system_executable(executable)
    result = run_bench("sendcost.py", tmp_path / "sendcost.json", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sender vs node" in result.stdout
    results = json.loads((tmp_path / "sendcost.json").read_text())
    assert results["lost"] == {"realtime": 0, "plain": 0, "node": 0}
    assert all(row["messages"] > 0 and row["sender_us"] >= 0 for row in results["rows"])
