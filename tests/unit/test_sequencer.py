"""Per-room delivery order on one replica: gaps filled from the store, repeats dropped."""
from realtime.mq.sequencer import Sequencer


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
    seq = Sequencer(store.after, head=lambda room: (2, None))
    seq.admit(messages("r", 90)[0])  # before the loss, ids had reached 90 (a store without epochs)
    assert seq.pending() == []
    assert ids(seq.admit(messages("r", 3)[0])) == [3]


def test_lost_last_writes_of_the_same_epoch_are_followed_back_down():
    store = StoredEpoch("e", 1, 2)
    seq = Sequencer(store.after, head=lambda room: (2, "e"))
    seq.admit(in_epoch("e", "r", 4)[0])  # a failover lost ids 3 and 4; 1 and 2 were delivered
    assert seq.pending() == []
    assert ids(seq.admit(in_epoch("e", "r", 3)[0])) == [3]  # the reused id goes out live


def in_epoch(epoch, room, *numbers):
    """Messages of one epoch."""
    return [{**m, "epoch": epoch} for m in messages(room, *numbers)]


class StoredEpoch(Stored):
    """A store whose rows carry an epoch."""

    def __init__(self, epoch, *numbers, room="r"):
        super().__init__(room=room)
        self.rows = in_epoch(epoch, room, *numbers)


def test_a_new_epoch_restarts_the_room_instead_of_dropping_small_ids():
    store = StoredEpoch("new", 1, 2, 3)
    seq = Sequencer(store.after)
    assert ids(seq.admit(in_epoch("old", "r", 57)[0])) == [57]
    assert ids(seq.admit(in_epoch("new", "r", 1)[0])) == [1]  # not a repeat of the old id 1
    assert ids(seq.admit(in_epoch("new", "r", 2)[0])) == [2]
    assert seq.admit(in_epoch("new", "r", 1)[0]) == []  # a real repeat in the new epoch
    assert store.calls == []


def test_a_new_epoch_fills_its_first_ids_from_the_store():
    store = StoredEpoch("new", 1, 2, 3)
    seq = Sequencer(store.after)
    seq.note("r", 57, "old")
    assert ids(seq.admit(in_epoch("new", "r", 3)[0])) == [1, 2, 3]
    assert store.calls == [("r", 0, 2)]


def test_a_gap_keeps_only_messages_of_the_live_ones_epoch():
    store = StoredEpoch("newer", 1, 2, 3)  # the history was lost once more meanwhile
    seq = Sequencer(store.after)
    seq.admit(in_epoch("new", "r", 1)[0])
    assert ids(seq.admit(in_epoch("new", "r", 4)[0])) == [4]


def test_pending_after_a_loss_delivers_the_new_epoch_from_its_start():
    store = StoredEpoch("new", 1, 2)
    seq = Sequencer(store.after, head=lambda room: (2, "new"))
    seq.admit(in_epoch("old", "r", 5)[0])  # more ids than the new history: the epoch tells it
    assert ids(seq.pending()) == [1, 2]
    assert [ids(seq.admit(m)) for m in seq.pending()] == [[1], [2]]
    assert seq.admit(in_epoch("new", "r", 2)[0]) == []


def test_a_room_without_an_epoch_takes_its_first_one_when_ids_go_on():
    store = StoredEpoch("first", 58, 59)
    seq = Sequencer(store.after)
    seq.note("r", 57)  # written before epochs existed: the join saw no epoch
    assert ids(seq.admit(in_epoch("first", "r", 58)[0])) == [58]
    assert store.calls == []
    assert seq.admit(in_epoch("first", "r", 58)[0]) == []
    seq.forget("r")
    seq.note("r", 57)
    assert ids(seq.admit(in_epoch("first", "r", 1)[0])) == [1]  # ids went back: a new history


def test_messages_without_an_epoch_keep_the_old_rules():
    store = Stored(1, 2, 3)
    seq = Sequencer(store.after)
    seq.note("r", 2, "e")
    assert seq.admit(messages("r", 2)[0]) == []
    assert ids(seq.admit(messages("r", 3)[0])) == [3]


def test_pending_names_the_rooms_it_could_not_read():
    def fetch(room, after, limit):
        if room == "down":
            raise ConnectionError("shard failing over")
        return []
    seq = Sequencer(fetch)
    seq.note("down", 3)
    seq.note("up", 1)
    assert seq.pending() == [] and seq.unsettled == {"down"}
    seq.fetch_after = lambda room, after, limit: []
    seq.pending()
    assert seq.unsettled == set()
