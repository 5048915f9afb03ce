"""Integration fixtures: real redis-server, real `realtime serve` replicas, real nginx.

`cluster`, `nginx_cluster`, `connect` and the autouse `_healed_cluster` live in
tests/clusterfixtures.py, shared with the browser tests; see its docstring.
"""
# Imported fixtures are registered for this directory, as if they were defined here.
from clusterfixtures import _healed_cluster, cluster, connect, nginx_cluster  # noqa: F401
