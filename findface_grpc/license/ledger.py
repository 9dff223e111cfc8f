"""What the license server counts: component leases (a video detector's with the cameras it runs) and face
usage, kept in a small state file.

Every change is written to the state file before it is acknowledged (write to a temporary file, fsync, rename),
so a restarted license server knows which components hold slots and how many faces are in use. Lease expiry is
wall-clock time, so that it survives the restart too. Idempotency keys of face reservations and releases are
kept for a short window (a client's retries come within seconds), which keeps the file small.

Should the file be lost, nothing is stuck: components whose lease is unknown get NOT_FOUND on their next
heartbeat and acquire again, and face usage is set back to the real count by the next reconcile.
No grpc here.
"""
from __future__ import annotations

import enum
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from findface_grpc.durable import replaced_atomically
from findface_grpc.errors import InvalidArgument, NotFound, ResourceExhausted

log = logging.getLogger(__name__)

STATE_VERSION = 1


class Kind(enum.Enum):
    EXTRACTOR = "extractor"
    SHARD = "shard"
    GATEWAY = "gateway"
    VIDEO = "video"


@dataclass(frozen=True)
class Lease:
    lease_id: str
    kind: Kind
    instance_id: str
    acquired_at: float  # seconds since the epoch
    expires_at: float
    cameras: int = 0  # a video detector's: the cameras granted to it

    def to_json(self) -> dict:
        return {**asdict(self), "kind": self.kind.value}

    @classmethod
    def from_json(cls, value: dict) -> "Lease":
        # State files written before cameras were counted lack the key: those leases held none.
        return cls(str(value["lease_id"]), Kind(value["kind"]), str(value["instance_id"]),
                   float(value["acquired_at"]), float(value["expires_at"]), int(value.get("cameras", 0)))


@dataclass(frozen=True)
class Reconciled:
    applied: bool
    used: int
    revision: int


def write_atomically(path: Path, data: bytes) -> None:
    with replaced_atomically(path) as out:
        out.write(data)


class Ledger:
    """Leases and face usage. Thread-safe; every method that changes something has saved it when it returns."""

    def __init__(
        self,
        path: Path | None,
        clock: Callable[[], float] = time.time,
        idempotency_window_s: float = 300.0,
        max_keys: int = 1000,
    ) -> None:
        self.path = path
        self.clock = clock
        self.idempotency_window_s = idempotency_window_s
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self.faces_used = 0
        self.faces_revision = 0
        self._leases: dict[str, Lease] = {}
        # key -> [count, when]: a retried call with a key seen within the window changes nothing.
        self._reserved: dict[str, list] = {}
        self._released: dict[str, list] = {}
        if path is not None:
            self._load()

    # ---- persistence ----

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            log.info("no license state at %s yet; starting with no leases and no faces", self.path)
            return
        try:
            state = json.loads(raw)
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}")
            faces_used = int(state["faces_used"])
            revision = int(state["faces_revision"])
            leases = [Lease.from_json(v) for v in state["leases"]]
            reserved = {str(k): [int(v[0]), float(v[1])] for k, v in state.get("reserved", {}).items()}
            released = {str(k): [int(v[0]), float(v[1])] for k, v in state.get("released", {}).items()}
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            log.error("license state %s is unreadable (%s); moved to %s and starting afresh: components acquire "
                      "their leases again and the next reconcile restores face usage", self.path, exc, aside)
            return
        self.faces_used, self.faces_revision = faces_used, revision
        self._leases = {lease.lease_id: lease for lease in leases}
        self._reserved, self._released = reserved, released
        log.info("license state from %s: %d faces in use, %d leases", self.path, faces_used, len(leases))

    def _save(self) -> None:
        if self.path is None:
            return
        state = {
            "version": STATE_VERSION,
            "faces_used": self.faces_used,
            "faces_revision": self.faces_revision,
            "leases": [lease.to_json() for lease in self._leases.values()],
            "reserved": self._reserved,
            "released": self._released,
        }
        write_atomically(self.path, json.dumps(state, separators=(",", ":")).encode())

    # ---- leases ----

    def _prune_leases(self, now: float) -> bool:
        expired = [lease for lease in self._leases.values() if lease.expires_at <= now]
        for lease in expired:
            del self._leases[lease.lease_id]
            log.warning("lease of %s %s expired (no heartbeat); its slot is free", lease.kind.value, lease.instance_id)
        return bool(expired)

    def leases(self) -> list[Lease]:
        with self._lock:
            if self._prune_leases(self.clock()):
                self._save()
            return sorted(self._leases.values(), key=lambda lease: (lease.kind.value, lease.instance_id))

    def count(self, kind: Kind) -> int:
        return sum(1 for lease in self.leases() if lease.kind is kind)

    def _cameras_granted(self, lease_id: str, instance_id: str, wanted: int, camera_limit: int) -> int:
        """How many of the `wanted` cameras the camera limit (0 = unlimited) leaves to this lease: what the other
        leases hold comes first, so a detector never takes cameras another one is running."""
        if not camera_limit:
            return wanted
        others = sum(lease.cameras for lease in self._leases.values()
                     if lease.lease_id != lease_id and lease.instance_id != instance_id)
        return max(0, min(wanted, camera_limit - others))

    def acquire(self, kind: Kind, instance_id: str, ttl_s: float, limit: int, cameras: int = 0,
                camera_limit: int = 0) -> Lease:
        """A lease for one component; limit 0 = unlimited. A video detector asks for `cameras` and gets as many
        as `camera_limit` (0 = unlimited) leaves free, possibly none.

        A component that acquires again under the same instance id (it restarted before its old lease ran out)
        takes over its old slot instead of needing a second one.
        """
        if not instance_id:
            raise InvalidArgument("instance_id must name the component, e.g. extractor@host:port")
        with self._lock:
            now = self.clock()
            pruned = self._prune_leases(now)
            same_kind = [lease for lease in self._leases.values() if lease.kind is kind]
            previous = [lease for lease in same_kind if lease.instance_id == instance_id]
            others = [lease for lease in same_kind if lease.instance_id != instance_id]
            if limit and len(others) >= limit:
                if pruned:
                    self._save()
                holders = sorted(lease.instance_id for lease in others)
                raise ResourceExhausted(
                    f"the license allows {limit} {kind.value}(s) and all are in use ({', '.join(holders)}); "
                    f"{instance_id} may not serve. A slot frees when one of them stops, or {ttl_s:g}s after it stops "
                    f"sending heartbeats",
                    details={"kind": kind.value, "limit": limit, "holders": holders},
                )
            for lease in previous:
                del self._leases[lease.lease_id]
            granted = self._cameras_granted("", instance_id, cameras, camera_limit) if kind is Kind.VIDEO else 0
            lease = Lease(uuid.uuid4().hex, kind, instance_id, now, now + ttl_s, granted)
            self._leases[lease.lease_id] = lease
            self._save()
        log.info("lease for %s %s (%d of %s)%s", kind.value, instance_id, len(others) + 1, limit or "unlimited",
                 f" with {granted} of the {cameras} camera(s) it asked for" if kind is Kind.VIDEO else "")
        return lease

    def renew(self, lease_id: str, ttl_s: float, cameras: int = 0, camera_limit: int = 0) -> Lease:
        """The lease extended; a video detector's holds the cameras it asks for now, as far as the limit allows
        (fewer than before when the limit went down, or more once another detector freed some)."""
        with self._lock:
            now = self.clock()
            pruned = self._prune_leases(now)
            lease = self._leases.get(lease_id)
            if lease is None:
                if pruned:
                    self._save()
                raise NotFound(f"lease {lease_id!r} is unknown or expired; acquire a new one")
            granted = (self._cameras_granted(lease_id, lease.instance_id, cameras, camera_limit)
                       if lease.kind is Kind.VIDEO else 0)
            if granted != lease.cameras:
                log.info("%s %s now holds %d camera(s) (asked for %d)", lease.kind.value, lease.instance_id, granted,
                         cameras)
            lease = Lease(lease.lease_id, lease.kind, lease.instance_id, lease.acquired_at, now + ttl_s, granted)
            self._leases[lease_id] = lease
            self._save()
            return lease

    def release_lease(self, lease_id: str) -> bool:
        with self._lock:
            lease = self._leases.pop(lease_id, None)
            if lease is None:
                return False
            self._save()
        log.info("%s %s gave its lease back", lease.kind.value, lease.instance_id)
        return True

    # ---- faces ----

    def _prune_keys(self, now: float) -> None:
        for keys in (self._reserved, self._released):
            cutoff = now - self.idempotency_window_s
            for key in [k for k, (_, when) in keys.items() if when < cutoff]:
                del keys[key]
            while len(keys) > self.max_keys:
                del keys[next(iter(keys))]

    def reserve_faces(self, count: int, key: str, limit: int) -> int:
        """Count `count` more faces in use; limit 0 = unlimited. Returns the usage after it."""
        if count <= 0:
            raise InvalidArgument("count must be > 0")
        with self._lock:
            now = self.clock()
            self._prune_keys(now)
            if key and key in self._reserved:
                return self.faces_used
            # A refused attempt changes the revision too: the caller may have written metadata that a count
            # taken meanwhile included, so a reconcile racing it must not apply.
            self.faces_revision += 1
            if limit and self.faces_used + count > limit:
                self._save()
                raise ResourceExhausted(
                    f"face limit reached: the license allows {limit} faces, {self.faces_used} are in use and "
                    f"{count} more were asked for",
                    details={"limit": limit, "used": self.faces_used, "requested": count},
                )
            self.faces_used += count
            if key:
                self._reserved[key] = [count, now]
            self._save()
            return self.faces_used

    def release_faces(self, count: int, key: str) -> int:
        if count <= 0:
            raise InvalidArgument("count must be > 0")
        with self._lock:
            now = self.clock()
            self._prune_keys(now)
            if key and key in self._released:
                return self.faces_used
            if count > self.faces_used:
                log.warning("release of %d faces with only %d counted; usage set to 0", count, self.faces_used)
            self.faces_used = max(0, self.faces_used - count)
            self.faces_revision += 1
            if key:
                self._released[key] = [count, now]
            self._save()
            return self.faces_used

    def reconcile_faces(self, count: int, revision: int) -> Reconciled:
        with self._lock:
            if revision != self.faces_revision:
                return Reconciled(False, self.faces_used, self.faces_revision)
            if count != self.faces_used:
                log.info("face usage reconciled with the cluster's count: %d -> %d", self.faces_used, count)
                self.faces_used = count
                self.faces_revision += 1
                self._save()
            return Reconciled(True, self.faces_used, self.faces_revision)
