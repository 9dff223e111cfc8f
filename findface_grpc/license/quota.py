"""Face quota at the license server, for gateways: reserved before faces become visible, given back when they are
deleted or an enrollment fails, and reconciled with the real count now and then (see `FaceQuota.reconcile`).
NO_QUOTA stands in when no license server is configured.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from findface_grpc.errors import FailedPrecondition, FindFaceError, ResourceExhausted, Unavailable
from findface_grpc.license.client import Connection
from findface_grpc.tasks import cancel_and_wait
from findface_grpc.v1 import license_pb2

__all__ = ["FaceQuota", "NO_QUOTA", "Reservation", "face_quota"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Reservation:
    key: str
    count: int


class FaceQuota:
    """Face quota at the license server, for one gateway.

    Usage drifts from the truth only when something fails between a reservation and its counterpart (a gateway
    crash mid-enrollment, a release that could not be delivered, faces enrolled before licensing was turned on).
    `reconcile` corrects it: read the server's revision of face usage, count the faces that hold quota (the
    gateway's `count_faces`: those its shards hold and those being enrolled), and send the count with that
    revision. The server applies it only if no reservation or release happened in between. Every enrollment
    writes its journal entry before it reserves, and every deletion hides its face before it releases, so a count
    taken after the revision was read includes everything reserved before it; anything later changes the revision
    and the round is retried. A count that cannot be taken (a shard down) skips the round.
    Any number of gateways of one cluster may reconcile; clusters must not share a license server.
    """

    def __init__(self, address: str, reconcile_interval_s: float = 60.0, call_timeout_s: float = 5.0) -> None:
        self.address = address
        self.reconcile_interval_s = reconcile_interval_s
        self._conn = Connection(address, call_timeout_s)
        self._task: asyncio.Task | None = None

    async def _call(self, method: str, request, retries: int = 1):
        for attempt in range(retries + 1):
            try:
                return await self._conn.call(method, request)
            except Unavailable:
                if attempt == retries:
                    raise
                await asyncio.sleep(0.2)

    async def reserve(self, key: str, count: int) -> Reservation:
        """Raises ResourceExhausted past the face limit, FailedPrecondition with an invalid license and
        Unavailable when the license server cannot be reached: in each case nothing may be stored."""
        try:
            await self._call("ReserveFaces", license_pb2.ReserveFacesRequest(count=count, idempotency_key=key))
        except ResourceExhausted as exc:
            raise ResourceExhausted(exc.message, details=exc.details) from None
        except FailedPrecondition as exc:
            raise FailedPrecondition(f"license: {exc.message}") from None
        except Unavailable as exc:
            raise Unavailable(f"{exc.message}: cannot reserve face quota, so faces cannot be enrolled now") from None
        return Reservation(key, count)

    async def cancel(self, reservation: Reservation | None) -> None:
        """Give back the quota of an enrollment that failed after reserving."""
        if reservation is not None:
            await self.release(f"cancel-{reservation.key}", reservation.count)

    async def release(self, key: str, count: int) -> None:
        """Give quota back; never raises (what cannot be given back now, the next reconcile corrects)."""
        if count <= 0:
            return
        try:
            await self._call("ReleaseFaces", license_pb2.ReleaseFacesRequest(count=count, idempotency_key=key), 2)
        except FindFaceError as exc:
            log.warning("face quota of %d not given back (%s); the next reconcile corrects it", count, exc.message)

    async def reconcile(self, count_faces: Callable[[], Awaitable[int]], attempts: int = 3) -> bool:
        for attempt in range(attempts):
            status = await self._conn.call("Status", license_pb2.LicenseStatusRequest())
            count = await count_faces()
            reply = await self._conn.call(
                "ReconcileFaces",
                license_pb2.ReconcileFacesRequest(count=count, revision=status.usage.faces_revision),
            )
            if reply.applied:
                if status.usage.faces != count:
                    log.info("face usage at the license server corrected from %d to %d", status.usage.faces, count)
                return True
            await asyncio.sleep(0.1 * (attempt + 1))
        log.info("face usage not reconciled this round: enrollments or deletions kept changing it")
        return False

    def start(self, count_faces: Callable[[], Awaitable[int]]) -> None:
        """Reconcile now and then every reconcile_interval_s, in the background."""
        self._task = asyncio.create_task(self._reconcile_loop(count_faces), name="license-reconcile")

    async def _reconcile_loop(self, count_faces: Callable[[], Awaitable[int]]) -> None:
        while True:
            try:
                await self.reconcile(count_faces)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried next round
                log.warning("face usage not reconciled: %s", getattr(exc, "message", exc))
            await asyncio.sleep(self.reconcile_interval_s)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        await self._conn.close()


class _NoQuota:
    """Stands in for FaceQuota when no license server is configured: everything is allowed."""

    async def reserve(self, key: str, count: int) -> None:
        return None

    async def cancel(self, reservation: Reservation | None) -> None:
        return None

    async def release(self, key: str, count: int) -> None:
        return None

    def start(self, count_faces: Callable[[], Awaitable[int]]) -> None:
        return None

    async def close(self) -> None:
        return None


NO_QUOTA = _NoQuota()


def face_quota(address: str, reconcile_interval_s: float = 60.0) -> FaceQuota | None:
    """A FaceQuota when a license server is configured, else None (the gateway then uses NO_QUOTA)."""
    return FaceQuota(address, reconcile_interval_s) if address else None
