"""Browser fixtures: Debian's chromium driven by Playwright against `nginx_cluster`.

`open_user(name, replica)` opens a browser context that nginx routes to that replica (through the
`realtime_sticky` cookie, see nginx/nginx.conf), logs in on the demo and checks where it landed.
`open_dashboard(replica)` does the same for /dashboard as the admin. When the test failed, each
page's screenshot, HTML and console log are left in test-artifacts/<test>/ at the project root.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from browserpages import ChatPage, DashboardPage
from realtime.devcluster import wait_until

STICKY_COOKIE = "realtime_sticky"
REPORTS = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def browser(system_executable):
    """Headless Debian chromium (never a browser downloaded by `playwright install`)."""
    executable = system_executable("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        yield browser
        browser.close()


def sticky_keys(url: str, replica_ids: set[str]) -> dict[str, str]:
    """A cookie value per replica id that nginx hashes to it, read while every replica is up."""
    def sweep() -> dict[str, str]:
        found: dict[str, str] = {}
        for n in range(64):
            key = f"browser-{n}"
            answer = requests.get(url + "/healthz", cookies={STICKY_COOKIE: key}, timeout=5)
            found.setdefault(answer.json()["instance"], key)
        return found

    # A replica restarted by the previous test may still be marked failed by nginx (its keys go
    # elsewhere for a while): only a complete mapping seen twice in a row is the stable one.
    keys: dict[str, str] = {}

    def stable() -> bool:
        keys.clear()
        keys.update(sweep())
        return set(keys) == replica_ids and sweep() == keys
    if not wait_until(stable, timeout=30, interval=0.5):
        pytest.fail(f"nginx never routed to every replica of {sorted(replica_ids)}", pytrace=False)
    return keys


@pytest.fixture
def routes(nginx_cluster):
    """`routes[i]`: the sticky cookie value that lands on replica i."""
    keys = sticky_keys(nginx_cluster.url, {r.instance_id for r in nginx_cluster.replicas})
    return [keys[r.instance_id] for r in nginx_cluster.replicas]


@pytest.fixture
def new_context(browser, nginx_cluster, routes, request):
    """`new_context(label, replica, **options)`: a fresh browser profile routed to that replica."""
    opened = []

    def open_context(label: str, replica: int, **options):
        context = browser.new_context(base_url=nginx_cluster.url, **options)
        context.add_cookies([{"name": STICKY_COOKIE, "value": routes[replica],
                              "url": nginx_cluster.url}])
        page = context.new_page()
        log: list[str] = []
        page.on("console", lambda message: log.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
        opened.append((label, context, page, log))
        return context, page
    yield open_context
    failed = any(report.failed for report in request.node.stash.get(REPORTS, {}).values())
    crashed = []
    for label, context, page, log in opened:
        if failed:
            save_artifacts(request, label, page, log)
        crashed += [f"{label}: {line}" for line in log if line.startswith("pageerror:")]
        context.close()
    if crashed and not failed:
        pytest.fail("uncaught errors in the page:\n" + "\n".join(crashed), pytrace=False)


def save_artifacts(request, label: str, page, log: list[str]) -> None:
    """Screenshot, HTML and console log of one page, under test-artifacts/<test>/."""
    folder = artifacts_dir(request)
    (folder / f"{label}.console.log").write_text("\n".join(log) + "\n")
    try:
        page.screenshot(path=str(folder / f"{label}.png"), full_page=True)
        (folder / f"{label}.html").write_text(page.content())
    except Exception as error:  # a crashed page: keep what we have, report the rest
        (folder / f"{label}.error.txt").write_text(f"{type(error).__name__}: {error}\n")


def artifacts_dir(request) -> Path:
    """test-artifacts/<test id> in the project root (git-ignored), created on demand."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")
    folder = Path(request.config.rootpath) / "test-artifacts" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def open_user(new_context, nginx_cluster):
    """`open_user(name, replica, **options)`: a logged-in ChatPage on that replica."""
    def open_page(name: str, replica: int, **options) -> ChatPage:
        context, page = new_context(name, replica, **options)
        user = ChatPage(name, context, page)
        user.login()
        expect(user.replica).to_have_text(nginx_cluster.replicas[replica].instance_id)
        return user
    return open_page


@pytest.fixture
def open_dashboard(new_context, nginx_cluster):
    """`open_dashboard(replica)`: /dashboard signed in as the demo admin, fed by that replica."""
    def open_page(replica: int) -> DashboardPage:
        context, page = new_context("dashboard", replica)
        dashboard = DashboardPage(page)
        dashboard.login("admin")  # a demo admin in the cluster fixtures (clusterfixtures.replica_env)
        expect(dashboard.instance).to_have_text(nginx_cluster.replicas[replica].instance_id)
        return dashboard
    return open_page


@pytest.fixture
def room(request) -> str:
    """A room of this test's own (rooms and their history outlive a test in the module's Redis)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name.removeprefix("test_"))[:32]
