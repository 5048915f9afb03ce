"""The one version number of the server (setup.cfg `version`), read once from the package metadata."""
from __future__ import annotations

import configparser
import platform
from importlib import metadata
from pathlib import Path


def read_version() -> str:
    """The installed package's version; setup.cfg's in a source checkout that was never installed."""
    try:
        return metadata.version("realtime")
    except metadata.PackageNotFoundError:
        config = configparser.ConfigParser()
        config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
        return config.get("metadata", "version", fallback="0+unknown")


VERSION = read_version()
PYTHON = platform.python_version()
