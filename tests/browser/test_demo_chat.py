"""The demo in a real browser: two users on two replicas behind nginx chat in every message type."""
from __future__ import annotations

import re
import struct
import zlib

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.integration, pytest.mark.nginx, pytest.mark.browser]

PARIS = {"latitude": 48.85837, "longitude": 2.29448, "accuracy": 25}


def png(width: int, height: int) -> bytes:
    """A valid red RGB PNG of that size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@pytest.fixture
def pair(open_user, room):
    """alice on replica 0 and bob on replica 1, both in this test's room."""
    alice = open_user("alice", 0, geolocation=PARIS, permissions=["geolocation"])
    bob = open_user("bob", 1)
    for user in (alice, bob):
        user.join(room)
    return alice, bob


def test_each_user_sees_their_replica_and_the_cluster_counts(open_user, nginx_cluster):
    alice, bob = open_user("alice", 0), open_user("bob", 1)
    ids = [r.instance_id for r in nginx_cluster.replicas]
    for user, mine in ((alice, ids[0]), (bob, ids[1])):
        expect(user.page.get_by_test_id("replica-count")).to_have_text("3")
        expect(user.page.get_by_test_id("clients-total")).to_have_text("2")
        replicas = user.page.get_by_role("list", name="Replicas").get_by_role("listitem")
        expect(replicas).to_have_count(3)
        # Each replica's own count of clients, and "you" on the one this browser uses.
        expect(replicas.filter(has_text=mine)).to_contain_text("you")
        expect(replicas.filter(has_text="you")).to_have_count(1)
    expect(alice.page.get_by_role("list", name="Replicas").get_by_role("listitem")
           .filter(has_text=ids[2])).to_contain_text("0 clients")


def test_text_image_file_and_location_render_on_the_other_replica(pair):
    alice, bob = pair
    alice.send_text("hello from replica 0")
    expect(bob.message("hello from replica 0")).to_contain_text("alice")

    alice.attach("red.png", "image/png", png(3, 2))
    image = bob.messages.get_by_role("img", name="red.png")
    expect(image).to_be_visible()
    expect(image).to_have_js_property("naturalWidth", 3)  # the picture itself was served

    alice.attach("notes.txt", "text/plain", b"meeting at noon\n")
    link = bob.messages.get_by_role("link", name="notes.txt")
    expect(link).to_have_attribute("download", "notes.txt")
    download = bob.page.request.get(link.get_attribute("href"))
    assert download.ok and download.body() == b"meeting at noon\n"

    alice.share_location()
    place = bob.messages.filter(has_text="48.85837, 2.29448")
    expect(place).to_contain_text("±25 m")
    expect(place.get_by_role("link", name="open map")).to_have_attribute(
        "href", re.compile(r"mlat=48\.85837&mlon=2\.29448"))

    expect(bob.messages).to_have_count(4)
    expect(alice.messages).to_have_count(4)  # the sender sees each once too


def test_an_image_and_a_file_in_a_private_conversation_are_shown_to_the_other_user(pair):
    alice, bob = pair
    alice.page.get_by_role("button", name="Message bob privately").click()
    expect(alice.page.get_by_role("heading", name="@bob", exact=True)).to_be_visible()
    alice.attach("secret.png", "image/png", png(4, 2))
    alice.attach("plan.txt", "text/plain", b"meet at the back door\n")
    mine = alice.messages.get_by_role("img", name="secret.png")
    expect(mine).to_have_js_property("naturalWidth", 4)

    bob.room_button("@alice").click()
    image = bob.messages.get_by_role("img", name="secret.png")
    expect(image).to_have_js_property("naturalWidth", 4)  # fetched with bob's token
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    link = bob.messages.get_by_role("link", name="plan.txt")
    upload_url = link.get_attribute("href")
    # The upload's own URL is refused without a member's token (a bare request has none).
    assert bob.page.request.get(upload_url).status == 401
    with bob.page.expect_download() as download:
        link.click()
    with open(download.value.path(), "rb") as saved:
        assert saved.read() == b"meet at the back door\n"


def test_typing_indicator_and_read_receipt(pair):
    alice, bob = pair
    alice.composer.fill("are you th")
    expect(bob.typing).to_have_text("alice is typing…")
    alice.composer.press("Enter")
    expect(bob.message("are you th")).to_be_visible()
    expect(bob.typing).to_be_hidden()
    # Bob has the room on screen: his page reports it read, and alice sees it under her message.
    expect(alice.message("are you th")).to_contain_text("seen by bob")


def test_private_message_reaches_only_the_other_user(pair, room):
    alice, bob = pair
    alice.page.get_by_role("button", name="Message bob privately").click()
    expect(alice.page.get_by_role("heading", name="@bob", exact=True)).to_be_visible()
    alice.send_text("just between us")

    # Bob is still looking at the room: the conversation appears with one unread message.
    conversation = bob.room_button("@alice")
    expect(conversation).to_have_accessible_name("@alice, 1 unread")
    expect(bob.message("just between us")).to_have_count(0)
    conversation.click()
    expect(bob.message("just between us")).to_contain_text("alice")
    bob.send_text("noted")
    expect(alice.message("noted")).to_contain_text("bob")

    # Nothing of it in the shared room.
    alice.room_button(f"#{room}").click()
    expect(alice.page.get_by_role("heading", name=f"#{room}", exact=True)).to_be_visible()
    expect(alice.message("just between us")).to_have_count(0)
