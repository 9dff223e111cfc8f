"""Leases and face usage, on a clock the tests move, kept in a real state file."""
from __future__ import annotations

import json

import pytest

from findface_grpc.errors import InvalidArgument, NotFound, ResourceExhausted
from findface_grpc.license.ledger import Kind, Ledger

TTL = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ledger(tmp_path, clock):
    return Ledger(tmp_path / "state.json", clock, idempotency_window_s=60)


def test_past_the_licensed_count_is_refused_with_the_holders_named(ledger):
    ledger.acquire(Kind.EXTRACTOR, "e1", TTL, 2)
    ledger.acquire(Kind.EXTRACTOR, "e2", TTL, 2)
    with pytest.raises(ResourceExhausted, match=r"allows 2 extractor\(s\) and all are in use \(e1, e2\); e3"):
        ledger.acquire(Kind.EXTRACTOR, "e3", TTL, 2)
    # Other kinds have their own count.
    ledger.acquire(Kind.SHARD, "s1", TTL, 1)
    assert ledger.count(Kind.EXTRACTOR) == 2 and ledger.count(Kind.SHARD) == 1


def test_expired_lease_frees_its_slot_and_cannot_be_renewed(ledger, clock):
    first = ledger.acquire(Kind.EXTRACTOR, "e1", TTL, 1)
    clock.now += TTL - 1
    ledger.renew(first.lease_id, TTL)
    clock.now += TTL - 1
    with pytest.raises(ResourceExhausted):
        ledger.acquire(Kind.EXTRACTOR, "e2", TTL, 1)
    clock.now += 2
    with pytest.raises(NotFound):
        ledger.renew(first.lease_id, TTL)
    ledger.acquire(Kind.EXTRACTOR, "e2", TTL, 1)


def test_same_instance_takes_back_its_own_slot(ledger):
    old = ledger.acquire(Kind.SHARD, "shard-0@h:1", TTL, 1)
    new = ledger.acquire(Kind.SHARD, "shard-0@h:1", TTL, 1)
    assert new.lease_id != old.lease_id and ledger.count(Kind.SHARD) == 1
    with pytest.raises(NotFound):
        ledger.renew(old.lease_id, TTL)


def test_release_frees_at_once(ledger):
    lease = ledger.acquire(Kind.EXTRACTOR, "e1", TTL, 1)
    assert ledger.release_lease(lease.lease_id)
    assert not ledger.release_lease(lease.lease_id)
    ledger.acquire(Kind.EXTRACTOR, "e2", TTL, 1)


def test_unlimited_and_unnamed(ledger):
    for i in range(20):
        ledger.acquire(Kind.EXTRACTOR, f"e{i}", TTL, 0)
    with pytest.raises(InvalidArgument):
        ledger.acquire(Kind.EXTRACTOR, "", TTL, 0)


def test_cameras_are_granted_up_to_the_limit_the_holders_first(ledger, clock):
    first = ledger.acquire(Kind.VIDEO, "v1", TTL, 0, cameras=3, camera_limit=5)
    second = ledger.acquire(Kind.VIDEO, "v2", TTL, 0, cameras=4, camera_limit=5)
    assert (first.cameras, second.cameras) == (3, 2)
    # A detector that needs fewer frees them; the other gets them at its next renewal, not before.
    assert ledger.renew(first.lease_id, TTL, cameras=1, camera_limit=5).cameras == 1
    assert ledger.renew(second.lease_id, TTL, cameras=4, camera_limit=5).cameras == 4
    assert ledger.renew(first.lease_id, TTL, cameras=3, camera_limit=5).cameras == 1
    # A lower limit (a renewed license) takes cameras back from whoever renews first past it.
    assert ledger.renew(second.lease_id, TTL, cameras=4, camera_limit=2).cameras == 1
    # Unlimited: every camera asked for; other kinds hold none.
    assert ledger.renew(first.lease_id, TTL, cameras=9, camera_limit=0).cameras == 9
    assert ledger.acquire(Kind.EXTRACTOR, "e1", TTL, 0, cameras=3, camera_limit=5).cameras == 0
    # A detector that stops sending heartbeats frees its cameras when its lease runs out.
    clock.now += TTL + 1
    assert ledger.acquire(Kind.VIDEO, "v3", TTL, 0, cameras=5, camera_limit=5).cameras == 5


def test_cameras_survive_a_restart_and_old_state_files_load(tmp_path, clock, ledger):
    lease = ledger.acquire(Kind.VIDEO, "v1", TTL, 0, cameras=2, camera_limit=3)
    again = Ledger(tmp_path / "state.json", clock)
    assert [(held.instance_id, held.cameras) for held in again.leases()] == [("v1", 2)]
    assert again.acquire(Kind.VIDEO, "v2", TTL, 0, cameras=2, camera_limit=3).cameras == 1
    state = json.loads((tmp_path / "state.json").read_text())
    for held in state["leases"]:
        del held["cameras"]  # as written before cameras were counted
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert {held.lease_id: held.cameras for held in Ledger(tmp_path / "state.json", clock).leases()}[
        lease.lease_id] == 0


def test_faces_up_to_the_limit_and_not_one_more(ledger):
    assert ledger.reserve_faces(2, "a", 3) == 2
    assert ledger.reserve_faces(1, "b", 3) == 3
    with pytest.raises(ResourceExhausted, match="allows 3 faces, 3 are in use and 1 more") as caught:
        ledger.reserve_faces(1, "c", 3)
    assert caught.value.details == {"limit": 3, "used": 3, "requested": 1}
    assert ledger.release_faces(1, "d") == 2
    assert ledger.reserve_faces(1, "c", 3) == 3


def test_retries_with_the_same_key_count_once(ledger, clock):
    ledger.reserve_faces(2, "a", 0)
    ledger.reserve_faces(2, "a", 0)
    ledger.release_faces(1, "r")
    ledger.release_faces(1, "r")
    assert ledger.faces_used == 1
    clock.now += 61  # past the window, a key is new again
    ledger.reserve_faces(2, "a", 0)
    assert ledger.faces_used == 3


def test_release_never_goes_below_zero(ledger):
    ledger.reserve_faces(1, "", 0)
    assert ledger.release_faces(5, "") == 0
    with pytest.raises(InvalidArgument):
        ledger.release_faces(0, "")


def test_reconcile_applies_only_when_nothing_changed_since_the_revision(ledger):
    ledger.reserve_faces(5, "a", 0)
    revision = ledger.faces_revision
    ledger.reserve_faces(1, "b", 0)  # an enrollment the count may or may not have seen
    result = ledger.reconcile_faces(3, revision)
    assert not result.applied and ledger.faces_used == 6
    result = ledger.reconcile_faces(4, result.revision)
    assert result.applied and result.used == 4 and ledger.faces_used == 4
    assert result.revision != revision


def test_refused_reservation_changes_the_revision(ledger):
    ledger.reserve_faces(1, "a", 1)
    revision = ledger.faces_revision
    with pytest.raises(ResourceExhausted):
        ledger.reserve_faces(1, "b", 1)
    assert not ledger.reconcile_faces(2, revision).applied


def test_state_survives_a_restart(tmp_path, clock):
    path = tmp_path / "state.json"
    first = Ledger(path, clock)
    lease = first.acquire(Kind.EXTRACTOR, "e1", TTL, 1)
    first.reserve_faces(7, "a", 0)
    again = Ledger(path, clock)
    assert again.faces_used == 7 and again.faces_revision == first.faces_revision
    assert [lease.instance_id for lease in again.leases()] == ["e1"]
    again.renew(lease.lease_id, TTL)
    again.reserve_faces(7, "a", 0)  # still the same reservation
    assert again.faces_used == 7
    assert not list(tmp_path.glob(".*.tmp"))


def test_unreadable_state_is_moved_aside(tmp_path, clock):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    ledger = Ledger(path, clock)
    assert ledger.faces_used == 0
    assert (tmp_path / "state.json.corrupt").read_text() == "{not json"
    ledger.reserve_faces(1, "", 0)
    assert json.loads(path.read_text())["faces_used"] == 1
