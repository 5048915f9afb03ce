"""One version, from the package metadata, reported by the CLI, /healthz, welcome and /metrics."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from realtime import cli
from realtime.version import VERSION

SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"


def test_the_version_is_setup_cfgs():
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    assert VERSION == config["metadata"]["version"]


def test_cli_says_it(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"realtime {VERSION}"


def test_healthz_and_metrics_say_it(client):
    assert client.get("/healthz").get_json()["version"] == VERSION
    text = client.get("/metrics").get_data(as_text=True)
    assert f'version="{VERSION}"' in text and "realtime_build_info{" in text
    assert "realtime_ready 1.0" in text


def test_welcome_says_it(chat):
    sio = chat("Ana")
    welcome = [e["args"][0] for e in sio.get_received("/chat") if e["name"] == "welcome"][0]
    assert welcome["server"] == {"version": VERSION}
