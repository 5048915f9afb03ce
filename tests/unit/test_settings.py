"""Settings precedence: defaults < .env < environment < overrides."""
import pytest

from realtime.settings import DEFAULTS, load_settings


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
