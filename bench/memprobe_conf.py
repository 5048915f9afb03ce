"""gunicorn settings for bench/memprobe.py: the replica's own config plus a tracemalloc hook.

Everything in config/gunicorn.conf.py (of the tree the replica runs from: gunicorn's cwd) applies
unchanged. With REALTIME_MEMPROBE_DIR set, the worker also starts tracemalloc
(REALTIME_MEMPROBE_FRAMES frames per trace, 0 = off) and answers requests the probe drops in that
directory: `<name>.request` -> `<name>.snapshot` (a tracemalloc snapshot, if on) and `<name>.json`
(object counts by type, live greenlets).
"""
import os
from pathlib import Path

_main = Path.cwd() / "config" / "gunicorn.conf.py"
exec(compile(_main.read_text(), str(_main), "exec"))  # noqa: S102 - our own deployment file

_post_worker_init = post_worker_init  # noqa: F821 - defined by the config above


def post_worker_init(worker):  # noqa: F811 - wraps the deployment's hook
    """The deployment's hook, then the probe's snapshot loop when asked for."""
    _post_worker_init(worker)
    folder = os.environ.get("REALTIME_MEMPROBE_DIR")
    if folder:
        import gevent
        frames = int(os.environ.get("REALTIME_MEMPROBE_FRAMES", "0"))
        if frames:
            import tracemalloc
            tracemalloc.start(frames)
        gevent.spawn(_answer_requests, Path(folder), frames)


def _answer_requests(folder, frames):
    """Write a snapshot for every `<name>.request` file that appears, then delete the request."""
    import gevent
    while True:
        for request in sorted(folder.glob("*.request")):
            _snapshot(folder / request.stem, frames)
            request.unlink()
        gevent.sleep(0.2)


def _snapshot(base, frames):
    """`base`.json: live objects by type and greenlets; `base`.snapshot: tracemalloc's."""
    import collections
    import gc
    import json
    import greenlet
    gc.collect()
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    greenlets = sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and o)
    base.with_suffix(".json").write_text(json.dumps({"greenlets": greenlets, "types": dict(counts)}))
    if frames:
        import tracemalloc
        tracemalloc.take_snapshot().dump(str(base.with_suffix(".snapshot")))
