"""Pages of the history read by windows (history_pages.py) on SecantusDB: the same pages, filters and links as one
sorted query would give, at the cost of the windows read rather than of every matching event."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from findface_grpc.gateway.history import History, HistoryQuery, HistoryStore, Sighting, new_event

EVENTS = 3000
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


class CountingCollection:
    """The history collection, counting the documents its finds return (what a page costs)."""

    def __init__(self, collection) -> None:
        self.collection, self.read = collection, 0

    def find(self, *args, **kwargs):
        docs = list(self.collection.find(*args, **kwargs))
        self.read += len(docs)
        return docs

    def __getattr__(self, name):
        return getattr(self.collection, name)


@pytest.fixture
def history(store, loop):
    """EVENTS events from 5 cameras and 40 persons (a rare one among them), frames out of id order."""
    rng = random.Random(7)
    hs = HistoryStore(store)
    loop.run(hs.ensure_schema())
    events = []
    for i in range(EVENTS):
        # Mostly in arrival order, some frames minutes late or early, as cameras' clocks and queues make them.
        frame = T0 + timedelta(seconds=10 * i + rng.choice([0, 0, 0, -600, 900]), milliseconds=rng.randrange(1000))
        person = "rare" if i % 500 == 17 else f"p{rng.randrange(40)}"
        events.append(new_event(Sighting(f"cam{rng.randrange(5)}", frame), (0, 0, 1, 1), b"\xff\xd8", None, person,
                                ["default"]))
    stored = []
    for first in range(0, EVENTS, 500):
        stored += loop.run(hs.insert(events[first:first + 500]))
    counting = CountingCollection(hs.collection)
    hs.collection = counting
    return History(hs), stored, counting


def expected(stored, query: HistoryQuery) -> list[int]:
    def ok(e):
        return ((not query.person_id or e.person_id == query.person_id)
                and (not query.camera_ids or e.camera_id in query.camera_ids)
                and (query.start is None or e.frame_time >= query.start)
                and (query.end is None or e.frame_time < query.end))
    return [e.id for e in sorted(stored, key=lambda e: -e.id) if ok(e)]


QUERIES = [
    HistoryQuery(),
    HistoryQuery(person_id="p3"),
    HistoryQuery(person_id="rare"),
    HistoryQuery(person_id="nobody"),
    HistoryQuery(camera_ids=("cam1",)),
    HistoryQuery(camera_ids=("cam0", "cam4", "cam-gone")),
    HistoryQuery(person_id="p5", camera_ids=("cam2", "cam3")),
    HistoryQuery(start=T0 + timedelta(hours=2), end=T0 + timedelta(hours=3)),
    HistoryQuery(start=T0 + timedelta(hours=7, microseconds=1500)),
    HistoryQuery(end=T0 + timedelta(minutes=30)),
    HistoryQuery(camera_ids=("cam3",), start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=6)),
    HistoryQuery(person_id="p9", end=T0 + timedelta(hours=4)),
]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_pages_and_links_equal_one_sorted_query(history, loop, query):
    hist, stored, _ = history
    want = expected(stored, query)
    limit = 97
    got, max_id, pages = [], 0, []
    while True:
        page = loop.run(hist.search(query, max_id, limit, thumbnails=False))
        pages.append(page)
        got += [e.id for e in page.events]
        assert all(not e.thumbnail for e in page.events)
        if not page.next_max_id:
            break
        max_id = page.next_max_id
    assert got == want
    # A page's link back gives the page before it, as ListFaces' do.
    assert not pages[0].has_prev
    for before, page in list(zip(pages, pages[1:]))[:3]:
        assert page.has_prev
        again = loop.run(hist.search(query, page.prev_max_id, limit, thumbnails=False))
        assert [e.id for e in again.events] == [e.id for e in before.events]


def test_replay_after_an_id_is_oldest_first(history, loop):
    hist, stored, _ = history
    after = stored[1234].id
    got = loop.run(hist.after(["cam2"], after, 50))
    assert [e.id for e in got] == [e.id for e in stored if e.id > after and e.camera_id == "cam2"][:50]
    assert got[0].thumbnail == b"\xff\xd8"
    assert [e.id for e in loop.run(hist.after([], after, 10))] == list(range(after + 1, after + 11))


@pytest.mark.parametrize("query, most", [
    # The newest page of all: the ids of the page (and the one past it).
    (HistoryQuery(), 101 + 1),
    # A person with 1 event in 40: the person's windows, not every event of theirs.
    (HistoryQuery(person_id="p3"), 4 * 101 + 40),
    # 6 events among 3000: the person's index holds 6.
    (HistoryQuery(person_id="rare"), 6),
    # An hour long ago: the events of about that hour (the frame index), not the 2,600 newer ones.
    (HistoryQuery(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2)), 2 * 2 * 360 + 101),
])
def test_a_page_reads_about_its_windows(history, loop, query, most):
    hist, stored, counting = history
    counting.read = 0
    page = loop.run(hist.search(query, 0, 101, thumbnails=False))
    assert [e.id for e in page.events] == expected(stored, query)[:101]
    assert counting.read <= most, (counting.read, most)
