"""`python -m webhook [--host H] [--port P]`: run the webhook testing service on a threaded server.

Settings come from WEBHOOK_* variables (see webhook/settings.py); WEBHOOK_SECRET is required
unless WEBHOOK_INSECURE_NO_SECRET=1. Without WEBHOOK_UI_TOKEN the UI's token is made up and
printed at start (as a URL fragment, which the browser never sends to the server).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from werkzeug.serving import make_server

from .app import create_app
from .settings import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Parse the address, build the app and serve until interrupted or terminated."""
    parser = argparse.ArgumentParser(prog="python -m webhook", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    default_port = int(os.environ.get("CLUSTER_WEBHOOK_PORT", "8090"))
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app()
    except ConfigError as problem:
        print(f"webhook: {problem}", file=sys.stderr)
        return 2
    # Threaded: a `hang` answer sleeps in its own thread; one process, so one in-memory store.
    server = make_server(args.host, args.port, app, threaded=True)
    # SIGTERM (how the local cluster stops us) ends serve_forever cleanly, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    base = f"http://{args.host}:{server.server_port}/"
    print(f"webhook tester on {base} (deliveries: POST /webhook)", flush=True)
    state = app.extensions["webhook"]
    if state.token_made_up:
        print(f"UI (token made up for this process; WEBHOOK_UI_TOKEN sets one): "
              f"{base}#token={state.ui_token}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["webhook"].redis.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
