"""`realtime smoke` against a real cluster behind real nginx: every check passes, and a broken
deployment (a replica that is down, a token the cluster does not accept) exits 1 with one FAIL
line per failing check."""
from __future__ import annotations

import jwt
import pytest

from realtime import cli
from realtime.devcluster import free_port

pytestmark = [pytest.mark.integration, pytest.mark.nginx]


def run_smoke(capsys, *argv: str) -> tuple[int, dict[str, str]]:
    """The exit status and each check's line, by check name."""
    status = cli.main(["smoke", *argv])
    lines = capsys.readouterr().out.splitlines()
    checks = {}
    for line in lines:
        outcome, _, rest = line.partition(" ")
        name, _, detail = rest.strip().partition(": ")
        checks[name] = f"{outcome} {detail}"
    return status, checks


def test_every_check_passes_on_a_healthy_cluster(nginx_cluster, capsys):
    replicas = [arg for r in nginx_cluster.replicas for arg in ("--replica", r.url)]
    status, checks = run_smoke(capsys, nginx_cluster.url, *replicas, "--demo-login")
    print(checks)
    assert status == 0, checks
    for replica in nginx_cluster.replicas:
        assert checks[f"replica {replica.url} /readyz"].startswith("ok ready")
    assert checks["load balancer /healthz"].startswith("ok version ")
    # The test nginx answers /readyz to internal addresses only, loopback excluded: said, not failed.
    assert checks["load balancer /readyz"].startswith(("skip 403", "ok"))
    assert checks["client B connects (another replica)"].startswith("ok welcome from")
    assert checks["message across replicas"].startswith("ok message ")
    assert checks["recovery join {since}"].startswith("ok message ")
    assert checks["server API message"] == "skip no --api-key"
    assert not [c for c in checks.values() if c.startswith("FAIL")]


def test_a_replica_down_and_a_wrong_token_fail_with_one_line_each(nginx_cluster, capsys):
    down = f"http://127.0.0.1:{free_port()}"
    forged = jwt.encode({"sub": "intruder", "exp": 4102444800}, "not-the-cluster-secret" * 2,
                        algorithm="HS256")
    status, checks = run_smoke(capsys, nginx_cluster.url, "--replica", nginx_cluster.replicas[0].url,
                               "--replica", down, "--token", forged, "--timeout", "5")
    print(checks)
    assert status == 1
    assert checks[f"replica {nginx_cluster.replicas[0].url} /readyz"].startswith("ok ")
    assert checks[f"replica {down} /readyz"].startswith("FAIL ConnectionError")
    assert checks["client A connects"].startswith("FAIL connect refused")
    assert "bad_signature" in checks["client A connects"]
    assert [c for c in checks.values() if c.startswith("FAIL")] == [checks[f"replica {down} /readyz"],
                                                                  checks["client A connects"]]
