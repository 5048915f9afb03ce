"""gunicorn settings for one realtime replica: one gevent-websocket worker, never preloaded."""
import os

from realtime.ops.logs import gunicorn_logconfig
from realtime.settings import load_settings

settings = load_settings()

bind = f"{os.environ.get('REALTIME_HOST', '127.0.0.1')}:{os.environ.get('REALTIME_PORT', '8000')}"
# One process per replica; scale by adding replicas behind nginx, not workers.
workers = 1
# gevent-websocket's worker (plain `-k gevent` breaks engine.io's websocket handshakes), with its
# request lines sent to gunicorn's access log (realtime/transport/worker.py).
worker_class = "realtime.transport.worker.Worker"
# gunicorn caps a gevent worker at 1000 connections by default.
worker_connections = int(os.environ.get("REALTIME_WORKER_CONNECTIONS", "10000"))
# Preloading would import the app before gevent patches sockets (the Redis queue refuses that).
preload_app = False
# Several replicas on one host would clobber one control socket in $HOME.
control_socket_disable = True
graceful_timeout = int(os.environ.get("REALTIME_GRACEFUL_TIMEOUT", "20"))
timeout = 30
keepalive = 5
# gunicorn's own error and access lines in the replica's JSON format, with the same handlers.
logconfig_dict = gunicorn_logconfig(settings)
access_log_format = "%(m)s %(U)s %(s)s"
loglevel = settings["LOG_LEVEL"].lower()
proc_name = f"realtime-{os.environ.get('REALTIME_PORT', '8000')}"


def post_worker_init(worker):
    """SIGTERM drains: clients are sent to other replicas, in-flight work finishes (realtime.ops.drain)."""
    from realtime.ops.drain import install
    install(worker)


def worker_exit(server, worker):
    """Leave the cluster registry at once instead of waiting for the heartbeat to expire."""
    services = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("realtime")
    if services is not None:
        services.cluster.deregister()
