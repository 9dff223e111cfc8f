"""The license status page, in the shape of the original's `license.json` (served by its NTLS)."""
from __future__ import annotations

import time

from findface_grpc.v1 import license_pb2

KIND_NAMES = {
    license_pb2.COMPONENT_KIND_EXTRACTOR: "findface-extractor",
    license_pb2.COMPONENT_KIND_SHARD: "findface-shard",
    license_pb2.COMPONENT_KIND_GATEWAY: "findface-gateway",
    license_pb2.COMPONENT_KIND_VIDEO: "findface-video",
}


def license_json(status: license_pb2.LicenseStatusResponse, now: float | None = None) -> dict:
    """Status -> the original's layout: limits as typed entries with their current use, services holding a lease.

    Unlimited counts (0 in our license) are shown as null, not as a made-up large number.
    """
    now = time.time() if now is None else now
    limits: list[dict] = []
    if status.HasField("expires_at"):
        limits.append({"type": "time", "name": "end", "value": status.expires_at.seconds})
    for name in ("faces", "shards", "extractors", "cameras"):
        limits.append({
            "type": "number",
            "name": name,
            "value": getattr(status.limits, name) or None,
            "current": getattr(status.usage, name),
        })
    limits.extend({"type": "boolean", "name": feature, "value": True} for feature in status.features)
    return {
        "name": "findface-grpc license server",
        "time": int(now),
        "type": "unlicensed" if status.unlicensed_mode else "offline",
        "license_id": status.license_id,
        "licensee": status.licensee,
        "generated": status.issued_at.seconds if status.HasField("issued_at") else None,
        # Seconds since the license file was last read and verified, as the original's last_updated.
        "last_updated": int(now - status.checked_at.seconds) if status.HasField("checked_at") else None,
        "valid": {"value": status.valid, "description": status.reason},
        "source": status.source,
        "limits": limits,
        "services": [{"name": KIND_NAMES.get(lease.kind, "unknown"), "ip": lease.instance_id} for lease in status.leases],
    }
