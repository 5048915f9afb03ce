"""JSON log lines with context, rotation, and no secrets."""
import json
import os
import subprocess
import sys
import logging

from realtime.ops import logs


def settings(tmp_path, **overrides):
    base = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "LOG_FILE": str(tmp_path / "rt.log"),
            "LOG_ROTATE": "size", "LOG_MAX_BYTES": 2000, "LOG_WHEN": "midnight", "LOG_BACKUPS": 2,
            "INSTANCE_ID": "r-1"}
    return {**base, **overrides}


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_lines_carry_the_context(tmp_path):
    handler = logs.configure(settings(tmp_path))
    try:
        logging.getLogger("realtime.test").info("hello %s", "world")
        handler.flush()
        entry = lines(tmp_path / "rt.log")[-1]
        assert entry["message"] == "hello world" and entry["level"] == "INFO"
        assert entry["logger"] == "realtime.test" and entry["instance"] == "r-1"
        assert {"time", "request_id", "sid", "user"} <= set(entry)
    finally:
        logging.getLogger().removeHandler(handler)


def test_secrets_never_reach_the_log(tmp_path):
    handler = logs.configure(settings(tmp_path))
    try:
        token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
        logging.getLogger("realtime.test").warning("auth %s then Bearer abc.def and token=%s api_key: rtk_secretsecret",
                                                  token, "zzz-123")
        handler.flush()
        text = (tmp_path / "rt.log").read_text()
        assert "eyJ" not in text and "abc.def" not in text and "zzz-123" not in text and "rtk_secret" not in text
    finally:
        logging.getLogger().removeHandler(handler)


def test_files_rotate_by_size_and_keep_the_backups(tmp_path):
    handler = logs.configure(settings(tmp_path))
    try:
        for n in range(200):
            logging.getLogger("realtime.test").info("line %d %s", n, "x" * 50)
        handler.flush()
        rotated = sorted(p.name for p in tmp_path.iterdir())
        assert rotated == ["rt.log", "rt.log.1", "rt.log.2"]
    finally:
        logging.getLogger().removeHandler(handler)


def test_size_rotation_formats_each_line_once_and_counts_other_writers(tmp_path, monkeypatch):
    handler = logs.configure(settings(tmp_path, LOG_BACKUPS=50))
    formatted = []
    real_format = handler.format
    monkeypatch.setattr(handler, "format", lambda record: formatted.append(1) or real_format(record))
    try:
        log = logging.getLogger("realtime.test")
        log.info("first")
        with open(tmp_path / "rt.log", "a") as other:  # another process appending to the same file
            other.write("x" * 1700 + "\n")
        for n in range(100):
            log.info("line %d %s", n, "x" * 50)
        assert len(formatted) == 101, "each record is formatted once"
        files = sorted(tmp_path.iterdir(), key=lambda p: int(p.name.removeprefix("rt.log").lstrip(".") or 0),
                       reverse=True)  # oldest first
        assert all(p.stat().st_size < 2000 for p in files), "no file passes maxBytes"
        numbered = [json.loads(line)["message"] for p in files for line in p.read_text().splitlines()
                    if '"line ' in line]
        assert numbered == [f"line {n} {'x' * 50}" for n in range(100)], "every line whole, in order"
        # The other writer's line made the first file full: it was rotated before line 0.
        assert "line 0" not in files[0].read_text() and "x" * 1700 in files[0].read_text()
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_log_file_that_is_not_a_regular_file_is_never_rotated(tmp_path):
    handler = logs.configure(settings(tmp_path, LOG_FILE=os.devnull, LOG_MAX_BYTES=10))
    try:
        for n in range(20):
            logging.getLogger("realtime.test").info("line %d", n)
        assert os.path.exists(os.devnull) and not os.path.exists(os.devnull + ".1")
    finally:
        logging.getLogger().removeHandler(handler)


def test_text_format_for_a_terminal(tmp_path):
    handler = logs.configure(settings(tmp_path, LOG_FORMAT="text"))
    try:
        logging.getLogger("realtime.test").info("plain")
        handler.flush()
        assert "INFO realtime.test [r-1" in (tmp_path / "rt.log").read_text()
    finally:
        logging.getLogger().removeHandler(handler)


def test_http_answers_carry_a_request_id(client):
    assert len(client.get("/healthz").headers["X-Request-ID"]) == 32
    assert client.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == "abc-1"
    assert client.get("/healthz", headers={"X-Request-ID": "bad id!"}).headers["X-Request-ID"] != "bad id!"


def test_every_event_is_logged_once_with_its_outcome(chat, caplog):
    from test_chat import call
    sio = chat("Ana")
    with caplog.at_level(logging.DEBUG, logger="realtime.events"):
        call(sio, "join", {"room": "r"})
        call(sio, "send", {"room": "nowhere", "body": "x"})
        call(sio, "typing", {"room": "r", "typing": True})
    records = [r for r in caplog.records if r.name == "realtime.events"]
    assert [(r.event, r.outcome, r.room, r.levelname) for r in records] == [
        ("join", "ok", "r", "INFO"), ("send", "not_joined", "nowhere", "INFO"), ("typing", "ok", "r", "DEBUG")]
    assert all(r.namespace == "/chat" and r.duration_ms >= 0 for r in records)


def test_gunicorn_access_atoms_become_redacted_fields(tmp_path):
    handler = logs.configure(settings(tmp_path))
    access = logging.getLogger("gunicorn.access.test")
    access.addFilter(logs.AccessFields())
    try:
        atoms = {"h": "127.0.0.1", "m": "GET", "U": "/healthz", "q": "token=abc.def.ghi", "s": "200",
                 "B": 12, "a": "curl", "D": 1500, "{x-request-id}o": "req-1"}
        access.info("%(m)s %(U)s %(s)s", atoms)
        handler.flush()
        entry = lines(tmp_path / "rt.log")[-1]
        assert entry["message"] == "GET /healthz 200" and entry["status"] == "200"
        assert entry["duration_ms"] == 1.5 and entry["request_id"] == "req-1"
        assert entry["query"] == "token=[redacted]" and entry["remote_addr"] == "127.0.0.1"
    finally:
        logging.getLogger().removeHandler(handler)


def test_gunicorn_logconfig_is_a_valid_dict_config(tmp_path):
    import logging.config
    config = logs.gunicorn_logconfig({**settings(tmp_path), "ACCESS_LOG": False})
    logging.config.dictConfig(config)
    try:
        assert logging.getLogger("gunicorn.access").level == logging.WARNING
        assert logging.getLogger("gunicorn.error").propagate
    finally:
        logs.configure(settings(tmp_path))  # leaves only our handler, as a replica would
        logging.getLogger().removeHandler(logging.getLogger().handlers[-1])


def test_a_rate_limited_answer_carries_a_request_id_too(tmp_path):
    # A process of its own: flask-limiter keeps the first app's default limits for later apps.
    script = (
        "from realtime import create_app\n"
        "app = create_app({'ASYNC_MODE': 'threading', 'BACKGROUND_TASKS': False,\n"
        "                  'JWT_SECRET_KEY': 'x' * 48, 'HTTP_RATE_LIMIT': '1/minute'})\n"
        "client = app.test_client()\n"
        "for n in range(2):\n"
        "    answer = client.get('/api/stats', headers={'X-Request-ID': f'r{n}'})\n"
        "    print(answer.status_code, answer.headers.get('X-Request-ID'))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    env.update(REALTIME_ENV_FILE=str(tmp_path / "none.env"), REALTIME_LOG_FILE=str(tmp_path / "rt.log"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split("\n")[:2] == ["200 r0", "429 r1"], result.stdout


def test_engineio_errors_come_out_once_and_as_json(app):
    # engine.io and python-socketio give their loggers a plain-text stderr handler when the
    # first server is created; their errors must only go through ours (they propagate).
    for name in logs.LIBRARY_LOGGERS:
        assert not [h for h in logging.getLogger(name).handlers if type(h) is logging.StreamHandler]


def test_the_quick_check_never_lets_a_secret_through():
    """redact skips the substitutions only for text that none of them could change."""
    from hypothesis import given, settings as hsettings, strategies as st

    words = st.sampled_from(["eyJhbGciOi.eyJzdWIi.sig", "Bearer abc", "BEARER x", "token=zz", "Api-Key: k",
                             "apikey=v", "SECRET:s", "password = p", "rtk_abcdefgh12", "hello", " ", "=",
                             "eyj", "tok", "rtk", "bearer"])

    @hsettings(max_examples=300, deadline=None)
    @given(st.lists(words | st.text(max_size=8), max_size=6).map("".join))
    def check(text):
        full = text
        for pattern, replacement in logs.SECRETS:
            full = pattern.sub(replacement, full)
        assert logs.redact(text) == full
    check()
