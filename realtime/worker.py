"""Old import path of realtime.transport.worker (`worker_class` in older gunicorn configs); kept for v1.23 only."""
import sys

from .transport import worker as _worker

sys.modules[__name__] = _worker
