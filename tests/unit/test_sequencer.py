"""Per-room delivery order on one replica: gaps filled from the store, repeats dropped."""
from realtime.sequencer import Sequencer


def messages(room, *ids):
    return [{"room": room, "id": i, "body": f"m{i}"} for i in ids]


class Stored:
    """A stand-in store that records what was fetched."""

    def __init__(self, *ids, room="r"):
        self.rows = messages(room, *ids)
        self.calls = []

    def after(self, room, after, limit):
        self.calls.append((room, after, limit))
        return [m for m in self.rows if m["room"] == room and m["id"] > after][:limit]


def ids(batch):
    return [m["id"] for m in batch]


def test_in_order_messages_pass_straight_through():
    store = Stored(1, 2, 3)
    seq = Sequencer(store.after)
    assert [ids(seq.admit(m)) for m in messages("r", 1, 2, 3)] == [[1], [2], [3]]
    assert store.calls == []


def test_a_gap_is_filled_from_the_store_then_the_late_one_is_dropped():
    store = Stored(1, 2, 3, 4)
    seq = Sequencer(store.after)
    seq.admit(messages("r", 1)[0])
    assert ids(seq.admit(messages("r", 4)[0])) == [2, 3, 4]
    assert seq.admit(messages("r", 3)[0]) == []
    assert ids(seq.admit(messages("r", 5)[0])) == [5]


def test_rooms_are_independent_and_first_sight_needs_no_fetch():
    store = Stored(7, 8, room="other")
    seq = Sequencer(store.after)
    assert ids(seq.admit(messages("other", 8)[0])) == [8]
    assert ids(seq.admit(messages("r", 3)[0])) == [3]
    assert store.calls == []


def test_store_failure_still_delivers_the_live_message():
    def broken(*_):
        raise ConnectionError("down")
    seq = Sequencer(broken)
    seq.admit(messages("r", 1)[0])
    assert ids(seq.admit(messages("r", 5)[0])) == [5]


def test_pending_lists_what_was_stored_after_the_last_delivered():
    store = Stored(1, 2, 3)
    seq = Sequencer(store.after)
    seq.admit(messages("r", 1)[0])
    assert ids(seq.pending()) == [2, 3]


def test_a_noted_room_fills_even_its_first_gap():
    store = Stored(1, 2, 3)
    seq = Sequencer(store.after)
    seq.note("r", 0)
    assert ids(seq.admit(messages("r", 3)[0])) == [1, 2, 3]
    seq.note("r", 0)  # a later join does not move it back
    assert seq.admit(messages("r", 2)[0]) == []


def test_a_later_message_waits_while_a_gap_is_being_filled():
    import threading
    release = threading.Event()
    store = Stored(1, 2, 3, 4)

    def slow_after(room, after, limit):
        release.wait(2)
        return store.after(room, after, limit)
    seq = Sequencer(slow_after)
    seq.admit(messages("r", 1)[0])
    delivered = []

    def deliver(message):
        with seq.ordered("r"):
            delivered.extend(m["id"] for m in seq.admit(message))
    filler = threading.Thread(target=deliver, args=(messages("r", 3)[0],))
    filler.start()
    later = threading.Thread(target=deliver, args=(messages("r", 4)[0],))
    later.start()
    release.set()
    filler.join()
    later.join()
    assert delivered == [2, 3, 4]


def test_a_store_that_lost_its_data_is_followed_back_down():
    store = Stored(1, 2)
    seq = Sequencer(store.after, newest=lambda room: 2)
    seq.admit(messages("r", 90)[0])  # before the loss, ids had reached 90
    assert seq.pending() == []
    assert ids(seq.admit(messages("r", 3)[0])) == [3]
