"""License gRPC servicer: protobuf <-> the domain service, nothing else."""
from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from findface_grpc.errors import InvalidArgument
from findface_grpc.license.ledger import Kind, Lease
from findface_grpc.license.service import LeaseTerms, LicenseService
from findface_grpc.v1 import license_pb2, license_pb2_grpc

KIND_TO_PB = {
    Kind.EXTRACTOR: license_pb2.COMPONENT_KIND_EXTRACTOR,
    Kind.SHARD: license_pb2.COMPONENT_KIND_SHARD,
    Kind.GATEWAY: license_pb2.COMPONENT_KIND_GATEWAY,
    Kind.VIDEO: license_pb2.COMPONENT_KIND_VIDEO,
}
KIND_FROM_PB = {v: k for k, v in KIND_TO_PB.items()}


def timestamp(moment: datetime | float | None) -> Timestamp | None:
    if moment is None:
        return None
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(timezone.utc))
    return ts


def lease_pb(
    lease: Lease, renew_interval_s: int = 0, grace_period_s: int = 0, with_id: bool = True
) -> license_pb2.Lease:
    return license_pb2.Lease(
        lease_id=lease.lease_id if with_id else "",
        kind=KIND_TO_PB[lease.kind],
        instance_id=lease.instance_id,
        expires_at=timestamp(lease.expires_at),
        renew_interval_s=renew_interval_s,
        grace_period_s=grace_period_s,
        cameras=lease.cameras,
    )


def terms_pb(terms: LeaseTerms) -> license_pb2.Lease:
    lease = lease_pb(terms.lease, terms.renew_interval_s, terms.grace_period_s)
    lease.features.extend(terms.features or ())
    lease.all_features = terms.features is None
    return lease


class LicenseServicer(license_pb2_grpc.LicenseServicer):
    def __init__(self, service: LicenseService) -> None:
        self.service = service

    async def Status(self, request, context):
        status = await self.service.status()
        lic = status.license
        return license_pb2.LicenseStatusResponse(
            valid=status.valid,
            unlicensed_mode=status.unlicensed,
            reason=status.reason,
            licensee=lic.licensee if lic else "",
            issued_at=timestamp(lic.issued_at) if lic else None,
            expires_at=timestamp(lic.expires_at) if lic else None,
            limits=license_pb2.Limits(
                faces=status.limits.faces, shards=status.limits.shards, extractors=status.limits.extractors,
                cameras=status.limits.cameras,
            ),
            usage=license_pb2.Usage(
                faces=status.usage.faces,
                shards=status.usage.shards,
                extractors=status.usage.extractors,
                faces_revision=status.usage.faces_revision,
                cameras=status.usage.cameras,
            ),
            features=list(lic.features) if lic else [],
            license_id=lic.license_id if lic else "",
            source=status.source,
            checked_at=timestamp(status.checked_at),
            leases=[lease_pb(lease, with_id=False) for lease in status.leases],
        )

    async def AcquireLease(self, request, context):
        kind = KIND_FROM_PB.get(request.kind)
        if kind is None:
            raise InvalidArgument("kind must be given")
        return terms_pb(await self.service.acquire(kind, request.instance_id, request.cameras))

    async def RenewLease(self, request, context):
        return terms_pb(await self.service.renew(request.lease_id, request.cameras))

    async def ReleaseLease(self, request, context):
        await self.service.release_lease(request.lease_id)
        return license_pb2.ReleaseLeaseResponse()

    async def ReserveFaces(self, request, context):
        used, limit = await self.service.reserve_faces(request.count, request.idempotency_key)
        return license_pb2.ReserveFacesResponse(used=used, limit=limit)

    async def ReleaseFaces(self, request, context):
        used = await self.service.release_faces(request.count, request.idempotency_key)
        return license_pb2.ReleaseFacesResponse(used=used)

    async def ReconcileFaces(self, request, context):
        result = await self.service.reconcile_faces(request.count, request.revision)
        return license_pb2.ReconcileFacesResponse(applied=result.applied, used=result.used, revision=result.revision)
