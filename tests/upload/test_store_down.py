"""The photo store is optional: with it gone, enrollment and deletion go on without stored copies."""
from __future__ import annotations

from findface_grpc.v1 import common_pb2, gateway_pb2


def test_enroll_and_delete_without_a_reachable_store(cluster, photos):
    photo = next(iter(photos.values()))[1]
    cluster.upload.stop()
    created = cluster.stub.CreateFace(
        gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=photo), meta="no-store"), timeout=60)
    face = created.faces[0]
    assert face.id and (face.photo, face.thumbnail, face.normalized) == ("", "", "")
    assert cluster.stub.GetFace(gateway_pb2.GetFaceRequest(id=face.id), timeout=10).meta == "no-store"
    cluster.stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face.id), timeout=10)
    gateway_log = (cluster.base / f"gateway-{cluster.name}.log").read_text()
    assert "could not store photo" in gateway_log
