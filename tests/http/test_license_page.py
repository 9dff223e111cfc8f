"""/license.json: the license server's Status in the original's layout."""
from google.protobuf.timestamp_pb2 import Timestamp

from findface_grpc.v1 import license_pb2
from gateway_http.license_page import license_json


def test_licensed_status_in_the_original_layout():
    status = license_pb2.LicenseStatusResponse(
        valid=True, licensee="ACME", license_id="lic-1", source="/etc/ff/acme.lic",
        issued_at=Timestamp(seconds=1_000), expires_at=Timestamp(seconds=9_000), checked_at=Timestamp(seconds=1_990),
        limits=license_pb2.Limits(faces=100, shards=2, extractors=0, cameras=4),
        usage=license_pb2.Usage(faces=7, shards=2, extractors=1, cameras=3),
        features=["age"],
        leases=[license_pb2.Lease(kind=license_pb2.COMPONENT_KIND_SHARD, instance_id="shard-0@10.0.0.2:50061"),
                license_pb2.Lease(kind=license_pb2.COMPONENT_KIND_VIDEO, instance_id="video@10.0.0.3:50090",
                                  cameras=3)],
    )
    page = license_json(status, now=2_000)
    assert page["type"] == "offline" and page["valid"] == {"value": True, "description": ""}
    assert (page["license_id"], page["generated"], page["last_updated"]) == ("lic-1", 1_000, 10)
    assert page["limits"] == [
        {"type": "time", "name": "end", "value": 9_000},
        {"type": "number", "name": "faces", "value": 100, "current": 7},
        {"type": "number", "name": "shards", "value": 2, "current": 2},
        {"type": "number", "name": "extractors", "value": None, "current": 1},
        {"type": "number", "name": "cameras", "value": 4, "current": 3},
        {"type": "boolean", "name": "age", "value": True},
    ]
    assert page["services"] == [{"name": "findface-shard", "ip": "shard-0@10.0.0.2:50061"},
                                {"name": "findface-video", "ip": "video@10.0.0.3:50090"}]


def test_invalid_license_says_why():
    page = license_json(license_pb2.LicenseStatusResponse(valid=False, reason="signature does not match"), now=5)
    assert page["valid"] == {"value": False, "description": "signature does not match"}
    assert page["last_updated"] is None and page["generated"] is None
