"""Deprecated alias of realtime.devcluster (kept for one release): import from there instead."""
import sys

from . import devcluster

if __name__ == "__main__":
    sys.exit(devcluster.main())
else:
    # The same module object under both names, so patched attributes and `is` checks agree.
    sys.modules[__name__] = devcluster
