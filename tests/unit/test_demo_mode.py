"""Demo login with Redis: a loud warning, no demo admins unless acknowledged, no weak secret."""
import logging

import jwt
import pytest

from realtime.settings import load_settings


def demo_roles(app, name):
    """The roles in the demo token issued for `name`."""
    answer = app.test_client().post("/api/auth/token", json={"username": name}).get_json()
    claims = jwt.decode(answer["access_token"], app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
    return claims.get("roles", [])


def test_demo_admins_default_to_admin_only_when_embedded(tmp_path):
    environ = {"REALTIME_ENV_FILE": str(tmp_path / "none")}
    assert load_settings(environ=environ)["DEMO_ADMINS"] == "admin"
    clustered = load_settings({"REDIS_URL": "redis://127.0.0.1:1/0", "DEMO_LOGIN": True}, environ)
    assert clustered["DEMO_ADMINS"] == ""


def test_demo_login_with_redis_warns_and_gives_nobody_admin(app_factory_with, redis_url, caplog):
    with caplog.at_level(logging.WARNING, logger="realtime.demomode"):
        app = app_factory_with(REDIS_URL=redis_url, DEMO_LOGIN=True)
    assert any("DEMO LOGIN IS ON" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    assert demo_roles(app, "Admin") == []


def test_demo_admins_with_redis_are_refused_without_the_acknowledgement(app_factory_with, redis_url):
    with pytest.raises(RuntimeError, match="REALTIME_DEMO_ADMINS_UNSAFE=acknowledged"):
        app_factory_with(REDIS_URL=redis_url, DEMO_LOGIN=True, DEMO_ADMINS="admin")


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_only_the_exact_acknowledgement_counts(app_factory_with, redis_url, value):
    with pytest.raises(RuntimeError, match="must be empty or 'acknowledged'"):
        app_factory_with(REDIS_URL=redis_url, DEMO_LOGIN=True, DEMO_ADMINS="admin", DEMO_ADMINS_UNSAFE=value)


def test_acknowledged_demo_admins_start_and_get_the_role(app_factory_with, redis_url, caplog):
    with caplog.at_level(logging.WARNING, logger="realtime.demomode"):
        app = app_factory_with(REDIS_URL=redis_url, DEMO_LOGIN=True, DEMO_ADMINS="admin",
                               DEMO_ADMINS_UNSAFE="acknowledged")
    assert any("admin role to ['admin']" in r.getMessage() for r in caplog.records)
    assert demo_roles(app, "Admin") == ["admin"] and demo_roles(app, "ana") == []


def test_no_warning_without_demo_login(app_factory_with, redis_url, caplog):
    with caplog.at_level(logging.WARNING, logger="realtime.demomode"):
        app_factory_with(REDIS_URL=redis_url)
    assert not [r for r in caplog.records if r.name == "realtime.demomode"]


def test_weak_secret_is_refused_with_redis_even_in_demo_mode(app_factory_with):
    with pytest.raises(RuntimeError, match="at least 32"):
        app_factory_with(REDIS_URL="redis://127.0.0.1:1/0", DEMO_LOGIN=True, JWT_SECRET_KEY="short")


def test_the_embedded_demo_may_keep_a_short_secret(app_factory_with):
    app = app_factory_with(JWT_SECRET_KEY="short")
    assert app.config["REALTIME"]["DEMO_LOGIN"] is True
