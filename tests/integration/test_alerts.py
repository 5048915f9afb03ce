"""config/alerts.yml: every rule is complete, names only metrics a running replica exports (or a
listed exporter's), and has a runbook entry in docs/deployment.md. promtool checks the file too
(Debian's prometheus package, which scripts/install-system-deps.sh installs)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

import realtime.version

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "alerts.yml"
# Metrics other processes export: Prometheus itself and redis_exporter (oliver006/redis_exporter).
EXPORTED_ELSEWHERE = {"up", "redis_memory_used_bytes", "redis_memory_max_bytes"}
# Replica metrics that need a setting the test cluster leaves off (no webhook endpoints there).
NEEDS_WEBHOOKS = {"realtime_webhook_dead_letters", "realtime_webhook_breaker_open"}
PROMQL_WORDS = {"sum", "max", "min", "count", "rate", "delta", "histogram_quantile", "by", "and",
                "or", "unless", "offset", "le", "instance", "endpoint", "event", "outcome", "job",
                "version"}


def rules() -> list[dict]:
    """Every rule of every group."""
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression reads (label values and functions left out)."""
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in PROMQL_WORDS}


def test_every_rule_is_complete_and_has_a_runbook():
    runbooks = (ROOT / "docs" / "deployment.md").read_text()
    section = runbooks.split("## Alerts and runbooks", 1)[1].split("\n## ", 1)[0]
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["expr"].strip() and rule["for"], rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["runbook"] == "docs/deployment.md#alerts-and-runbooks", rule["alert"]
        assert f"- **{rule['alert']}**" in section, f"no runbook line for {rule['alert']}"


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (bash scripts/install-system-deps.sh)")
        pytest.skip("promtool is not installed (Debian: the prometheus package)")
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_read_metrics_a_replica_exports(cluster, connect):
    client = connect(0, "alerts")
    assert client.call("join", {"room": "alerts"})["ok"] is True  # an event: its histogram exists
    text = requests.get(cluster.replicas[0].url + "/metrics", timeout=10).text
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
    # A labelled counter or histogram nothing has touched yet has only its TYPE line.
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        exported |= {name, f"{name}_bucket"} if kind == "histogram" else {name}
    source = (ROOT / "realtime" / "ops" / "metrics.py").read_text()
    for rule in rules():
        for name in metric_names(rule["expr"]):
            if name in EXPORTED_ELSEWHERE:
                continue
            if name in NEEDS_WEBHOOKS:
                assert f'"{name}"' in source, name
                continue
            assert name in exported, f"{rule['alert']} reads {name}, which a replica does not export"
    for gauge in ("realtime_ready 1.0", "realtime_queue_listener_up 1.0"):
        assert gauge in text
    version = re.escape(realtime.version.VERSION)
    assert re.search(r'realtime_build_info\{python="[^"]+",version="' + version + r'"\} 1\.0', text), text[:400]
