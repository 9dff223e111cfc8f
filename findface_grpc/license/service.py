"""The license server's domain: the license in force, and the leases and face quota it allows.

The license file is read at start and again whenever it changes (checked every recheck_interval_s), so a
renewed license is taken without a restart. An invalid license (unreadable, altered, signed by another key,
expired) does not stop the server: it keeps answering Status with the reason, refuses new leases, renewals and
face reservations with FAILED_PRECONDITION, and still takes releases. Without a license configured the server
runs in unlicensed mode: every limit is unlimited and Status says so.
No grpc here.
"""
from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from findface_grpc.errors import FailedPrecondition
from findface_grpc.license import licensing
from findface_grpc.license.config import LicenseConfig
from findface_grpc.license.ledger import Kind, Lease, Ledger, Reconciled
from findface_grpc.license.licensing import InvalidLicense, License, LicenseLimits

log = logging.getLogger(__name__)

UNLICENSED_REASON = "unlicensed mode: no license configured, so no limits apply"


@dataclass(frozen=True)
class Usage:
    faces: int
    faces_revision: int
    shards: int
    extractors: int
    cameras: int  # held by the video detectors' leases


@dataclass(frozen=True)
class Status:
    valid: bool
    unlicensed: bool
    reason: str
    license: License | None  # also when it is invalid for expiry, so its terms can still be shown
    limits: LicenseLimits
    usage: Usage
    source: str
    checked_at: datetime | None
    leases: tuple[Lease, ...]


@dataclass(frozen=True)
class LeaseTerms:
    lease: Lease
    renew_interval_s: int
    grace_period_s: int
    features: tuple[str, ...] | None = None  # the license's features; None: every feature (unlicensed mode)


class LicenseService:
    def __init__(self, config: LicenseConfig, ledger: Ledger | None = None) -> None:
        self.config = config
        self.public_key = licensing.load_public_key(Path(config.public_key)) if not config.unlicensed else None
        self.ledger = ledger or Ledger(
            Path(config.state_file), idempotency_window_s=config.idempotency_window_s
        )
        self.source = str(Path(config.license_file).resolve()) if config.license_file else ""
        self._license: License | None = None
        self._read_error = ""
        self._file_stamp: tuple | None = None
        self._checked_at: datetime | None = None
        self._last_reason: str | None = None
        # Ledger calls write the state file with fsync: they run here, one at a time, off the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="license")
        self.recheck()

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # ---- the license in force ----

    def recheck(self) -> None:
        """Read the license file again if it changed, and log when validity changes (expiry included)."""
        if self.config.unlicensed:
            self._checked_at = licensing.utcnow()
            self._log_validity()
            return
        path = Path(self.config.license_file)
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError as exc:
            stamp = None
            self._license, self._read_error = None, f"cannot read the license file {path}: {exc.strerror}"
        if stamp is not None and stamp != self._file_stamp:
            try:
                self._license = licensing.verify(path.read_bytes(), self.public_key)
                self._read_error = ""
            except OSError as exc:
                self._license, self._read_error = None, f"cannot read the license file {path}: {exc.strerror}"
            except InvalidLicense as exc:
                self._license, self._read_error = None, exc.message
        self._file_stamp = stamp
        self._checked_at = licensing.utcnow()
        self._log_validity()

    def _validity(self) -> tuple[bool, str]:
        if self.config.unlicensed:
            return True, UNLICENSED_REASON
        if self._license is None:
            return False, self._read_error
        if self._license.expired(licensing.utcnow()):
            return False, licensing.expiry_reason(self._license)
        return True, ""

    def _log_validity(self) -> None:
        valid, reason = self._validity()
        if reason == self._last_reason:
            return
        self._last_reason = reason
        if self.config.unlicensed:
            log.warning("%s", UNLICENSED_REASON)
        elif valid:
            lic = self._license
            log.info(
                "license %s of %r valid until %s: faces %s, shards %s, extractors %s, cameras %s, features %s",
                lic.license_id, lic.licensee, licensing.iso(lic.expires_at), lic.limits.faces or "unlimited",
                lic.limits.shards or "unlimited", lic.limits.extractors or "unlimited",
                lic.limits.cameras or "unlimited", list(lic.features) or "none",
            )
        else:
            log.error("license invalid: %s; components will not be given leases nor faces enrolled", reason)

    def _require_valid(self) -> None:
        valid, reason = self._validity()
        if not valid:
            raise FailedPrecondition(f"license invalid: {reason}")

    def _limits(self) -> LicenseLimits:
        return self._license.limits if self._license is not None and not self.config.unlicensed else LicenseLimits()

    def _limit_of(self, kind: Kind) -> int:
        limits = self._limits()
        return {Kind.EXTRACTOR: limits.extractors, Kind.SHARD: limits.shards}.get(kind, 0)

    # ---- calls ----

    def _status(self) -> Status:
        valid, reason = self._validity()
        leases = tuple(self.ledger.leases())
        return Status(
            valid=valid,
            unlicensed=self.config.unlicensed,
            reason=reason,
            license=self._license,
            limits=self._limits(),
            usage=Usage(
                faces=self.ledger.faces_used,
                faces_revision=self.ledger.faces_revision,
                shards=sum(1 for lease in leases if lease.kind is Kind.SHARD),
                extractors=sum(1 for lease in leases if lease.kind is Kind.EXTRACTOR),
                cameras=sum(lease.cameras for lease in leases),
            ),
            source=self.source,
            checked_at=self._checked_at,
            leases=leases,
        )

    async def status(self) -> Status:
        return await self._run(self._status)

    def current_status(self) -> Status:
        """What `status` answers, from any thread (the metrics read it on the scrape's)."""
        return self._status()

    def _terms(self, lease: Lease) -> LeaseTerms:
        features = None if self.config.unlicensed or self._license is None else self._license.features
        return LeaseTerms(lease, self.config.renew_interval_s, int(self.config.grace_period_s), features)

    async def acquire(self, kind: Kind, instance_id: str, cameras: int = 0) -> LeaseTerms:
        """`cameras`: what a video detector would run; its lease holds as many as the camera limit leaves."""
        self._require_valid()
        lease = await self._run(self.ledger.acquire, kind, instance_id, self.config.lease_ttl_s, self._limit_of(kind),
                                cameras, self._limits().cameras)
        return self._terms(lease)

    async def renew(self, lease_id: str, cameras: int = 0) -> LeaseTerms:
        self._require_valid()
        return self._terms(await self._run(self.ledger.renew, lease_id, self.config.lease_ttl_s, cameras,
                                           self._limits().cameras))

    async def release_lease(self, lease_id: str) -> None:
        await self._run(self.ledger.release_lease, lease_id)

    async def reserve_faces(self, count: int, key: str) -> tuple[int, int]:
        """(usage after, limit) once `count` faces are reserved."""
        self._require_valid()
        limit = self._limits().faces
        return await self._run(self.ledger.reserve_faces, count, key, limit), limit

    async def release_faces(self, count: int, key: str) -> int:
        # Taken even with an invalid license: deleting faces must always be possible.
        return await self._run(self.ledger.release_faces, count, key)

    async def reconcile_faces(self, count: int, revision: int) -> Reconciled:
        return await self._run(self.ledger.reconcile_faces, count, revision)

    async def recheck_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.recheck_interval_s)
            try:
                await self._run(self.recheck)
            except Exception:  # noqa: BLE001 - the loop must outlive one failed check
                log.exception("license recheck failed")
