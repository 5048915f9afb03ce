"""`python -m webhook [--host H] [--port P]`: run the placeholder receiver on Flask's server."""
from __future__ import annotations

import argparse
import os

from .app import create_app


def main() -> None:
    """Parse the address and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m webhook", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    default_port = int(os.environ.get("CLUSTER_WEBHOOK_PORT", "8090"))
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    # Threaded, single process: the in-memory event list is shared by every request.
    create_app().run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
