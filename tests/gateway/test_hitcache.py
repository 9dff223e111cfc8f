"""HitCache: a pure structure, tested without I/O."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from findface_grpc.gateway.domain import Face
from findface_grpc.gateway.hitcache import MAX_AGE_S, HitCache

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def face(face_id: int, meta: str = "") -> Face:
    return Face(id=face_id, galleries=("default",), meta=meta or f"m{face_id}", bbox=(0.0, 0.0, 1.0, 1.0),
                photo_hash="", created_at=NOW, updated_at=NOW)


def test_only_the_version_stored_under_answers():
    cache = HitCache(100, 1.0)
    cache.put("g", "v1", [face(1), face(2)])
    assert set(cache.get("g", "v1", [1, 2, 3])) == {1, 2}
    assert cache.get("g", "v2", [1, 2]) == {}
    assert cache.get("other", "v1", [1, 2]) == {}


def test_a_new_version_replaces_the_gallery_and_no_other():
    cache = HitCache(100, 1.0)
    cache.put("g", "v1", [face(1, "old"), face(2)])
    cache.put("h", "w1", [face(1, "in h")])
    cache.put("g", "v2", [face(1, "new")])
    assert {i: f.meta for i, f in cache.get("g", "v2", [1, 2]).items()} == {1: "new"}
    assert cache.get("g", "v1", [1, 2]) == {}
    assert cache.get("h", "w1", [1])[1].meta == "in h"
    assert len(cache) == 2


@pytest.mark.parametrize("version, size", [("", 10), ("v1", 0)])
def test_nothing_is_kept_without_a_version_or_room(version, size):
    cache = HitCache(size, 1.0)
    cache.put("g", version, [face(1)])
    assert cache.get("g", version, [1]) == {} and len(cache) == 0


def test_the_bound_drops_the_least_recently_used():
    cache = HitCache(3, 1.0)
    cache.put("g", "v", [face(1), face(2), face(3)])
    cache.get("g", "v", [1])  # 2 is now the oldest
    cache.put("g", "v", [face(4)])
    assert set(cache.get("g", "v", [1, 2, 3, 4])) == {1, 3, 4}
    # Another gallery's faces push out those of the others first, then its own oldest.
    cache.put("h", "w", [face(5), face(6)])
    assert len(cache) == 3 and set(cache.get("h", "w", [5, 6])) == {5, 6} and set(cache.get("g", "v", [1, 3, 4])) == {4}
    cache.put("h", "w", [face(7), face(8)])
    assert set(cache.get("h", "w", [5, 6, 7, 8])) == {6, 7, 8} and cache.get("g", "v", [4]) == {}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_version_is_taken_as_current_within_the_ttl_and_until_this_gateway_changes_something():
    clock = Clock()
    cache = HitCache(10, 1.0, clock)
    assert cache.version("g", touches=0) is None
    began = cache.read_began()
    clock.now += 0.3  # the read took this long: the TTL runs from its start
    cache.remember("g", "v1", began, touches=0)
    assert cache.version("g", touches=0) == "v1"
    clock.now += 0.69
    assert cache.version("g", touches=0) == "v1"
    assert cache.version("g", touches=1) is None  # a change by this gateway since the read
    clock.now += 0.02
    assert cache.version("g", touches=0) is None


def test_without_a_ttl_no_version_is_remembered():
    cache = HitCache(10, 0.0)
    cache.remember("g", "v1", cache.read_began(), touches=0)
    assert cache.version("g", touches=0) is None


def test_entries_are_not_used_past_their_maximum_age():
    clock = Clock()
    cache = HitCache(10, 1.0, clock)
    cache.put("g", "v", [face(1)])
    clock.now += MAX_AGE_S / 2
    cache.put("g", "v", [face(2)])
    clock.now += MAX_AGE_S / 2 + 0.1
    assert set(cache.get("g", "v", [1, 2])) == {2}
