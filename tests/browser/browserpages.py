"""The demo chat and the dashboard as a user sees them: locators by role, label and test id."""
from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Locator, Page, expect


class ChatPage:
    """One user's tab on the demo (static/index.html)."""

    def __init__(self, name: str, context: BrowserContext, page: Page):
        self.name, self.context, self.page = name, context, page

    @property
    def replica(self) -> Locator:
        """The replica id this browser is connected to, from `welcome`."""
        return self.page.get_by_test_id("replica")

    @property
    def status(self) -> Locator:
        """connected / reconnecting / offline."""
        return self.page.get_by_test_id("connection-status")

    @property
    def messages(self) -> Locator:
        """Every message shown in the selected room, oldest first."""
        return self.page.get_by_role("list", name="Messages").get_by_role("listitem")

    @property
    def typing(self) -> Locator:
        """The "… is typing" line."""
        return self.page.get_by_test_id("typing")

    def message(self, text: str) -> Locator:
        """The shown messages containing `text`."""
        return self.messages.filter(has_text=text)

    def login(self) -> None:
        """Open the demo and log in with the demo login."""
        self.page.goto("/")
        self.page.get_by_label("Name").fill(self.name)
        self.page.get_by_role("button", name="Continue").click()
        expect(self.status).to_have_text("connected")

    def join(self, room: str) -> None:
        """Join `room` and wait until the server confirmed it (this user is listed online there)."""
        self.page.get_by_label("Join a room").fill(room)
        self.page.get_by_role("button", name="join", exact=True).click()
        expect(self.page.get_by_role("heading", name=f"#{room}", exact=True)).to_be_visible()
        expect(self.online(room).filter(has_text=self.name)).to_be_visible()

    def online(self, room: str) -> Locator:
        """Who the page lists as online in `room` (the selected one)."""
        return self.page.get_by_role("list", name=f"Online in #{room}").get_by_role("listitem")

    @property
    def composer(self) -> Locator:
        """The message box."""
        return self.page.get_by_label("Message", exact=True)

    def send_text(self, text: str) -> None:
        """Type `text` and press Enter (sent, or queued until the connection is back)."""
        self.composer.fill(text)
        self.composer.press("Enter")

    def attach(self, name: str, mime: str, data: bytes) -> None:
        """Pick a file through the attach button's file chooser (uploaded, then sent)."""
        with self.page.expect_file_chooser() as chooser:
            self.page.get_by_role("button", name="Attach a file").click()
        chooser.value.set_files(files=[{"name": name, "mimeType": mime, "buffer": data}])

    def share_location(self) -> None:
        """Share the browser's position (the context grants geolocation and sets one)."""
        self.page.get_by_role("button", name="Share a location").click()

    def room_button(self, label: str) -> Locator:
        """A room in the sidebar, "#lobby" or "@alice" (private), named with its unread count."""
        rooms = self.page.get_by_role("navigation", name="Rooms")
        return rooms.get_by_role("button", name=re.compile("^" + re.escape(label) + "(, |$)"))


class DashboardPage:
    """The monitoring dashboard (static/dashboard.html)."""

    def __init__(self, page: Page):
        self.page = page

    @property
    def instance(self) -> Locator:
        """The replica serving this dashboard's feed."""
        return self.page.get_by_test_id("dashboard-replica")

    @property
    def live_count(self) -> Locator:
        """How many replicas report."""
        return self.page.get_by_test_id("dashboard-replica-count")

    @property
    def gone_count(self) -> Locator:
        """The "N gone" line under the count."""
        return self.page.get_by_test_id("dashboard-gone-count")

    @property
    def redis_state(self) -> Locator:
        """OK or DOWN."""
        return self.page.get_by_test_id("dashboard-redis-state")

    def login(self, name: str) -> None:
        """Open /dashboard and sign in with the demo login."""
        self.page.goto("/dashboard")
        self.page.get_by_label("Name").fill(name)
        self.page.get_by_role("button", name="Sign in").click()

    def replica_row(self, instance_id: str) -> Locator:
        """The table row of one replica (live or gone)."""
        table = self.page.get_by_role("table", name="Replicas")
        return table.get_by_role("row").filter(has=self.page.get_by_role("cell", name=instance_id,
                                                                          exact=True))
