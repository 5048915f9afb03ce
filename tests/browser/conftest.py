"""Browser tests: fixtures in browserfixtures.py (chromium, users on chosen replicas, artifacts on
failure) on top of the cluster fixtures of tests/clusterfixtures.py."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

# Imported fixtures are registered for this directory, as if they were defined here.
from browserfixtures import (REPORTS, browser, new_context, open_dashboard, open_user,  # noqa: F401
                             room, routes)
from clusterfixtures import _healed_cluster, cluster, nginx_cluster  # noqa: F401

# Generous for a loaded 2-core machine; every wait ends as soon as its condition holds.
expect.set_options(timeout=20_000)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, so fixtures know at teardown whether it failed."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report
