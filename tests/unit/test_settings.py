"""Settings precedence: defaults < .env < environment < overrides; the README table matches."""
import re

import pytest

from realtime.settings import DEFAULTS, PROJECT_ROOT, load_settings


def test_defaults_are_the_embedded_mode(tmp_path):
    settings = load_settings(environ={"REALTIME_ENV_FILE": str(tmp_path / "missing")})
    assert settings["REDIS_URL"] is None
    assert settings["EMBEDDED"] is True
    assert settings["DEMO_LOGIN"] is True
    assert settings["CORS_ORIGINS"] == "*"
    assert settings["PORT"] == DEFAULTS["PORT"]


def test_dotenv_then_environment_then_overrides(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nREALTIME_PORT=9001\nexport REALTIME_ROOMS='a,b'\n"
                      "REALTIME_INSTANCE_TTL=7\nOTHER=1\n")
    environ = {"REALTIME_ENV_FILE": str(dotenv), "REALTIME_PORT": "9002"}
    settings = load_settings({"INSTANCE_TTL": 3}, environ=environ)
    assert settings["PORT"] == 9002            # environment beats .env
    assert settings["ROOMS"] == "a,b"          # .env beats defaults
    assert settings["INSTANCE_TTL"] == 3       # overrides beat everything


def test_cluster_mode_turns_demo_login_off_and_cors_closed(tmp_path):
    environ = {"REALTIME_ENV_FILE": str(tmp_path / "x"), "REALTIME_REDIS_URL": "redis://h:1/0"}
    settings = load_settings(environ=environ)
    assert settings["EMBEDDED"] is False
    assert settings["DEMO_LOGIN"] is False
    assert settings["CORS_ORIGINS"] == ""


@pytest.mark.parametrize("raw, expected", [("1", True), ("on", True), ("false", False), ("0", False)])
def test_booleans_are_parsed(tmp_path, raw, expected):
    environ = {"REALTIME_ENV_FILE": str(tmp_path / "x"), "REALTIME_DEMO_LOGIN": raw}
    assert load_settings(environ=environ)["DEMO_LOGIN"] is expected


def test_bad_boolean_is_refused(tmp_path):
    with pytest.raises(ValueError, match="REALTIME_BACKGROUND_TASKS"):
        load_settings(environ={"REALTIME_ENV_FILE": str(tmp_path / "x"),
                               "REALTIME_BACKGROUND_TASKS": "maybe"})


def test_instance_id_is_generated_from_host_port_pid(tmp_path):
    settings = load_settings({"PORT": 8123}, environ={"REALTIME_ENV_FILE": str(tmp_path / "x")})
    assert "-8123-" in settings["INSTANCE_ID"]


def test_settings_are_read_when_called_not_at_import(tmp_path):
    first = load_settings(environ={"REALTIME_ENV_FILE": str(tmp_path / "x"), "REALTIME_PORT": "1"})
    second = load_settings(environ={"REALTIME_ENV_FILE": str(tmp_path / "x"), "REALTIME_PORT": "2"})
    assert (first["PORT"], second["PORT"]) == (1, 2)


@pytest.mark.parametrize("overrides", [{"REDIS_WAIT_REPLICAS": -1}, {"REDIS_WAIT_TIMEOUT": 0},
                                       {"REDIS_WAIT_TIMEOUT": 5.0}])
def test_replica_wait_settings_are_checked(tmp_path, overrides):
    with pytest.raises(ValueError):
        load_settings(overrides, environ={"REALTIME_ENV_FILE": str(tmp_path / "missing")})


# --- the README's settings table against DEFAULTS ------------------------------------------------

# Read by config/gunicorn.conf.py, not by realtime/settings.py, but documented in the same table.
GUNICORN_CONF = PROJECT_ROOT / "config" / "gunicorn.conf.py"
_UNITS = {"KiB": 1024, "MiB": 1024 * 1024}
_WORDS = {"on": True, "true": True, "off": False, "false": False}


def readme_settings_rows() -> list[tuple[list[str], str]]:
    """The README settings table as (keys, default cell) rows."""
    lines = (PROJECT_ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| key (`REALTIME_`"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((re.findall(r"`([A-Z0-9_]+)`", cells[0]), cells[1]))
    return rows


def gunicorn_defaults() -> dict[str, str]:
    """The REALTIME_* variables config/gunicorn.conf.py reads, with their defaults."""
    text = GUNICORN_CONF.read_text()
    return dict(re.findall(r'environ\.get\("REALTIME_([A-Z0-9_]+)",\s*"([^"]*)"\)', text))


def documented_defaults() -> dict[str, str]:
    """Every documented key with its default as written (a shared row: one value each, or one for all)."""
    documented = {}
    for keys, cell in readme_settings_rows():
        values = [value.strip() for value in cell.split(",")] if len(keys) > 1 else [cell]
        values = values * len(keys) if len(values) == 1 else values  # one default for all of them
        assert len(values) == len(keys), f"README row {keys}: {len(keys)} keys, defaults {cell!r}"
        documented.update(zip(keys, values))
    return documented


def is_simple(value) -> bool:
    """A default the table can show literally: a number, a boolean or a one-word string."""
    if isinstance(value, (bool, int, float)):
        return True
    return isinstance(value, str) and value != "" and not re.search(r"[\s,]", value) \
        and not value.startswith(str(PROJECT_ROOT))


def parse_documented(text: str, like):
    """Read a documented default as the type of the code's default (None: not a literal value)."""
    text = re.sub(r"\(.*?\)", "", text).replace("`", "").strip()
    if isinstance(like, bool):
        return _WORDS.get(text.lower())
    if isinstance(like, (int, float)):
        match = re.fullmatch(r"([0-9.]+)\s*(KiB|MiB)?", text)
        return float(match.group(1)) * _UNITS.get(match.group(2), 1) if match else None
    return text


def test_every_setting_has_a_readme_row():
    missing = sorted(set(DEFAULTS) - set(documented_defaults()))
    assert not missing, f"settings without a row in README.md's table: {missing}"


def test_every_readme_row_names_a_real_setting():
    unknown = sorted(set(documented_defaults()) - set(DEFAULTS) - set(gunicorn_defaults()))
    assert not unknown, f"README.md's settings table names keys nothing reads: {unknown}"


def test_gunicorn_settings_are_documented_with_their_defaults():
    documented = documented_defaults()
    for key, default in gunicorn_defaults().items():
        assert documented.get(key) == default, f"{key}: README {documented.get(key)!r}, code {default!r}"


def test_readme_defaults_match_the_code():
    wrong = {}
    for key, shown in documented_defaults().items():
        if key not in DEFAULTS or not is_simple(DEFAULTS[key]):
            continue
        parsed = parse_documented(shown, DEFAULTS[key])
        if parsed != DEFAULTS[key]:
            wrong[key] = (shown, DEFAULTS[key])
    assert not wrong, f"README.md defaults that differ from realtime/settings.py (shown, code): {wrong}"
