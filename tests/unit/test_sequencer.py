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
