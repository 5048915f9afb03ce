"""Logging: JSON lines (or text for a terminal), rotation, context on every line, no secrets."""
from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import uuid
from typing import Any, Mapping

from flask import Flask, g, has_request_context, request, session
from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
TEXT = "%(asctime)s %(levelname)s %(name)s [%(instance)s %(request_id)s %(sid)s %(user)s] %(message)s"
SECRETS = [
    (re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*"), "[jwt]"),                  # any JWT
    (re.compile(r"(?i)(bearer\s+)[^\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)((?:token|api[_-]?key|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"),
     r"\1[redacted]"),
    (re.compile(r"rtk_[\w-]{8,}"), "rtk_[redacted]"),                          # our API keys
]
# Something every pattern above needs: most text has none, and one search is cheaper than the subs.
MAY_HOLD_SECRET = re.compile(r"(?i)eyJ|bearer|token|api[_-]?key|secret|password|rtk_")


def redact(text: str) -> str:
    """The text with tokens, keys and secrets masked."""
    if not MAY_HOLD_SECRET.search(text):
        return text
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Adds instance, request id, connection id and user to every record; masks secrets."""

    def __init__(self, instance: str):
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate (never drop) a record."""
        record.instance = self.instance
        for field in ("request_id", "sid", "user"):  # keep what an earlier filter set
            setattr(record, field, getattr(record, field, None))
        if has_request_context():
            record.request_id = g.get("request_id", record.request_id)
            record.sid = getattr(request, "sid", None)
            principal = session.get("principal") if record.sid else None
            record.user = getattr(principal, "id", None)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, Mapping):  # gunicorn's access atoms
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in
                                (record.args if isinstance(record.args, tuple) else (record.args,)))
        return True


class AccessFields(logging.Filter):
    """Turns gunicorn's access-log atoms into fields of the JSON line."""

    FIELDS = {"h": "remote_addr", "m": "method", "U": "path", "q": "query", "s": "status",
              "B": "bytes", "a": "user_agent", "{x-request-id}o": "request_id"}

    def filter(self, record: logging.LogRecord) -> bool:
        """Copy the atoms worth keeping onto the record (never drop it)."""
        atoms = record.args if isinstance(record.args, Mapping) else {}
        for atom, field in self.FIELDS.items():
            value = atoms.get(atom)
            if value not in (None, "-", ""):
                setattr(record, field, redact(value) if isinstance(value, str) else value)
        if "D" in atoms:
            record.duration_ms = round(int(atoms["D"]) / 1000, 3)
        return True


class SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler that formats a record once and stats the file once per open.

    CPython 3.11's formats every record twice (once only to measure it) and stats the path twice
    per record: at one log line per event that was most of the line's cost.
    """

    def _open(self):
        """Open the file; rotation applies to regular files only (bpo-45401), checked here."""
        stream = super()._open()
        self.regular = os.path.isfile(self.baseFilename)
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        """Write one line, first rotating if it would take the file past maxBytes."""
        try:
            line = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            # seek, not a count of our own: another process may append to the same file.
            if self.maxBytes > 0 and self.regular and self.stream.seek(0, 2) + len(line) >= self.maxBytes:
                self.doRollover()
                if self.stream is None:
                    self.stream = self._open()
            self.stream.write(line)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def formatter(kind: str) -> logging.Formatter:
    """JSON lines by default; plain text when asked (a terminal)."""
    if kind == "text":
        return logging.Formatter(TEXT)
    return JsonFormatter(FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})


def handler(settings: Mapping[str, Any]) -> logging.Handler:
    """stdout, or a file rotated by size or by time with a number of backups kept."""
    path = settings["LOG_FILE"]
    if not path:
        return logging.StreamHandler(sys.stdout)
    if settings["LOG_ROTATE"] == "time":
        return logging.handlers.TimedRotatingFileHandler(path, when=settings["LOG_WHEN"],
                                                         backupCount=settings["LOG_BACKUPS"])
    return SizeRotatingFileHandler(path, maxBytes=settings["LOG_MAX_BYTES"],
                                   backupCount=settings["LOG_BACKUPS"])


def configure(settings: Mapping[str, Any]) -> logging.Handler:
    """Install our one handler on the root logger (replacing a previous one of ours)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "realtime", False)]:
        root.removeHandler(old)
        old.close()
    new = handler(settings)
    new.realtime = True
    new.setFormatter(formatter(settings["LOG_FORMAT"]))
    new.addFilter(ContextFilter(settings["INSTANCE_ID"]))
    root.addHandler(new)
    root.setLevel(settings["LOG_LEVEL"])
    skip_unused_record_fields()
    return new


def skip_unused_record_fields() -> None:
    """Stop filling record fields no line of ours shows (the logging HOWTO's "Optimization").

    Per record these cost a stack walk (caller's file and line), a getpid syscall and a lookup of
    the current thread, which under gevent is a per-greenlet object: a tenth of a log line's cost.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def stderr_handler(fmt: str, instance: str) -> logging.Handler:
    """Our stderr handler for gunicorn's master (logconfig_dict factory); a replica replaces it."""
    new = logging.StreamHandler(sys.stderr)
    new.realtime = True
    new.setFormatter(formatter(fmt))
    new.addFilter(ContextFilter(instance))
    return new


def gunicorn_logconfig(settings: Mapping[str, Any]) -> dict[str, Any]:
    """gunicorn's logconfig_dict: its error and access logs in our format, through our handlers.

    The master process writes JSON to stderr; in the worker, `configure` replaces that handler by
    the replica's own (stdout or the rotated file), so gunicorn's lines and ours land together.
    """
    return {
        "version": 1, "disable_existing_loggers": False,
        "root": {"level": settings["LOG_LEVEL"], "handlers": ["realtime"]},
        "handlers": {"realtime": {"()": stderr_handler, "level": settings["LOG_LEVEL"],
                                  "fmt": settings["LOG_FORMAT"],
                                  "instance": settings["INSTANCE_ID"]}},
        "filters": {"access": {"()": AccessFields}},
        "loggers": {
            "gunicorn.error": {"level": settings["LOG_LEVEL"], "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO" if settings["ACCESS_LOG"] else "WARNING",
                                "handlers": [], "propagate": True, "filters": ["access"]},
        },
    }


LIBRARY_LOGGERS = ("engineio.server", "socketio.server", "engineio.client", "socketio.client")


def adopt_library_loggers() -> None:
    """Drop the plain-text stderr handlers engine.io and python-socketio add to their loggers.

    Without a handler configured on their logger they add one of their own, and their errors
    then come out twice: once through ours (they propagate to the root) and once as plain text,
    a line that breaks the JSON log stream.
    """
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for stray in [h for h in library.handlers if type(h) is logging.StreamHandler]:
            library.removeHandler(stray)


def init_app(app: Flask) -> None:
    """A request id on every HTTP request (from X-Request-ID when sane), echoed in the answer."""
    adopt_library_loggers()
    def assign_request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if re.fullmatch(r"[\w.:-]{1,64}", given) else uuid.uuid4().hex

    # First of all before_request hooks: flask-limiter's, registered earlier, may answer 429 and
    # stop the chain, and that answer needs its id too.
    app.before_request_funcs.setdefault(None, []).insert(0, assign_request_id)

    @app.after_request
    def echo_request_id(response):
        if g.get("request_id"):
            response.headers["X-Request-ID"] = g.request_id
        return response
