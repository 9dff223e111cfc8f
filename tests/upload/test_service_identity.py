"""Only the store's service identity (the gateway's token) writes, deletes and lists photos/ and faces/; a
photo's name is its content's sha256; ordinary tokens keep the drop folder and the public reads."""
from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import grpc
import pytest

from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.upload.test_dropbox import result

LOCKINFO = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            b'<D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>')
PROPPATCH = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x"><D:set><D:prop><Z:note>x'
             b'</Z:note></D:prop></D:set></D:propertyupdate>')


def photo_path(data: bytes, ext: str = "jpg") -> str:
    sha = hashlib.sha256(data).hexdigest()
    return f"/photos/{sha[:2]}/{sha}.{ext}"


@pytest.fixture(scope="module")
def enrolled(cluster, photos):
    """A face enrolled through the gateway (gRPC), which stores its photo, thumbnail and crop in the store."""
    data = next(iter(photos.values()))[1]
    created = cluster.stub.CreateFace(
        gateway_pb2.CreateFaceRequest(image=common_pb2.ImageSource(content=data), meta="stored"), timeout=60)
    return data, created.faces[0]


def others(cluster):
    """Credentials that are not the service identity: an ordinary token (also under the user name "gateway",
    which means nothing with a token) and a config user not named in service_users."""
    return [cluster.dav(), cluster.dav("gateway"), cluster.dav("operator", "op-secret")]


def test_the_gateways_enrollment_stores_photo_thumbnail_and_crop(cluster, enrolled):
    data, face = enrolled
    assert urlsplit(face.photo).path == photo_path(data)
    anonymous = cluster.dav()
    assert anonymous.get(face.photo, auth=False).raw == data
    assert anonymous.get(face.thumbnail, auth=False).raw[:2] == b"\xff\xd8"
    assert anonymous.get(face.normalized, auth=False).raw[:8] == b"\x89PNG\r\n\x1a\n"


def test_ordinary_credentials_cannot_put_photos(cluster, photos):
    data = list(photos.values())[1][1]
    right, wrong = photo_path(data), photo_path(b"something else")
    for dav in others(cluster):
        for path in (right, wrong):
            reply = dav.put(path, data)
            assert reply.status == 403, (path, reply.status, reply.raw)
            assert b"service identity" in reply.raw
    assert not (cluster.root / right.lstrip("/")).exists() and not (cluster.root / wrong.lstrip("/")).exists()


def test_a_photos_name_must_be_its_contents_sha256(cluster, photos):
    data = list(photos.values())[2][1]
    service = cluster.service_dav()
    wrong = photo_path(b"another photo")
    reply = service.put(wrong, data)
    assert reply.status == 400 and b"sha256" in reply.raw, (reply.status, reply.raw)
    assert not (cluster.root / wrong.lstrip("/")).exists()
    assert not list((cluster.root / ".upload-state" / "partial").glob("*.part"))  # nothing left behind
    sha = hashlib.sha256(data).hexdigest()
    other_prefix = "00" if not sha.startswith("00") else "01"
    assert service.put(f"/photos/{other_prefix}/{sha}.jpg", data).status == 403  # <aa> is the hash's start
    assert service.put(photo_path(data), data).status == 201
    assert cluster.dav().get(photo_path(data), auth=False).raw == data
    # No name can be given to a photo by MOVE, COPY or LOCK (an empty file): PUT checks the content.
    assert service.request("COPY", photo_path(data), headers={
        "Destination": f"{cluster.store_url}{wrong}"}).status == 403
    lock = service.request("LOCK", wrong, LOCKINFO, {"Content-Type": "text/xml"})
    assert lock.status == 403, (lock.status, lock.raw)
    assert not (cluster.root / wrong.lstrip("/")).exists()


def test_ordinary_credentials_cannot_touch_face_artifacts(cluster, enrolled):
    _, face = enrolled
    thumbnail, folder = urlsplit(face.thumbnail).path, f"/faces/{face.id}/"
    before = cluster.dav().get(thumbnail, auth=False).raw
    key = thumbnail.rpartition("/")[2].removesuffix("-thumbnail.jpg")
    for dav in others(cluster):
        for method, path, body, headers in (
            ("PUT", thumbnail, b"\xff\xd8 replaced", {}),
            ("PUT", f"/faces/987654321/{key}-thumbnail.jpg", b"\xff\xd8 made up", {}),  # no such face
            ("DELETE", thumbnail, None, {}),
            ("DELETE", folder, None, {}),
            ("MOVE", thumbnail, None, {"Destination": f"{cluster.store_url}/faces/{face.id}/{'B' * 22}-thumbnail.jpg"}),
            ("COPY", thumbnail, None, {"Destination": f"{cluster.store_url}/dropbox/stolen/x.jpg"}),
            ("MKCOL", "/faces/987654322", None, {}),
            ("PROPPATCH", thumbnail, PROPPATCH, {"Content-Type": "text/xml"}),
            ("LOCK", thumbnail, LOCKINFO, {"Content-Type": "text/xml"}),
        ):
            reply = dav.request(method, path, body, headers)
            assert reply.status == 403, (dav.auth, method, path, reply.status, reply.raw)
    assert cluster.dav().get(thumbnail, auth=False).raw == before
    assert not (cluster.root / "faces" / "987654321").exists() and not (cluster.root / "faces" / "987654322").exists()
    # Nor can a drop be moved or copied into photos/ or faces/.
    dav = cluster.dav()
    assert dav.put("/dropbox/fenced/a.jpg", b"\xff\xd8 not a photo").status == 201
    for method, dest in (("MOVE", f"/faces/{face.id}/{'C' * 22}-thumbnail.jpg"), ("COPY", "/faces/987654323"),
                         ("MOVE", "/photos/zz"), ("COPY", f"/faces/{face.id}/{key}-thumbnail.jpg")):
        source = "/dropbox/fenced/a.jpg" if dest.endswith(".jpg") else "/dropbox/fenced"
        reply = dav.request(method, source, headers={"Destination": f"{cluster.store_url}{dest}"})
        assert reply.status == 403, (method, dest, reply.status, reply.raw)
    assert cluster.dav().get(thumbnail, auth=False).raw == before


def test_listings_of_the_store_are_for_the_service_identity(cluster, enrolled):
    data, face = enrolled
    prefix = photo_path(data).split("/")[2]
    paths = ("/", "/photos/", f"/photos/{prefix}/", "/faces/", f"/faces/{face.id}/")
    for dav in others(cluster):
        for path in paths:
            for depth in ("0", "1"):
                reply = dav.propfind(path, depth)
                assert reply.status == 403, (path, depth, reply.status)
                assert face.thumbnail.rpartition("/")[2].encode() not in reply.raw
            assert dav.get(path).status == 403
    service = cluster.service_dav()
    assert face.thumbnail.rpartition("/")[2] in service.propfind(f"/faces/{face.id}/").raw.decode()
    assert photo_path(data).rpartition("/")[2] in service.propfind(f"/photos/{prefix}/").raw.decode()
    assert service.propfind("/").status == 207
    # Files are still read as before: public_reads, and the unkeyed ones with any credentials.
    assert cluster.dav().get(face.thumbnail).status == 200


def test_the_drop_folder_stays_open_to_ordinary_tokens(cluster, photos):
    dav = cluster.dav()
    data = list(photos.values())[3][1]
    assert dav.request("MKCOL", "/dropbox/open").status == 201
    assert dav.put("/dropbox/open/one.jpg", data).status == 201
    res = result(dav, "open", "one")
    assert res["status"] == "enrolled", res
    face = res["faces"][0]
    assert dav.get(face["photo"], auth=False).raw == data
    assert dav.get(face["thumbnail"], auth=False).status == dav.get(face["normalized"], auth=False).status == 200
    assert dav.propfind("/dropbox/open/").status == 207
    assert dav.move("/dropbox/open/one.jpg", "/dropbox/open/two.jpg").status == 201
    assert dav.delete("/dropbox/open/two.jpg").status == 204
    # The service identity may delete a face's artifacts, as the gateway does with the face.
    assert cluster.service_dav().delete(f"/faces/{face['id']}/").status == 204


def test_a_face_photo_url_from_the_store_can_be_sent_back(cluster, enrolled):
    """The store is on a private address (here loopback) like any local cluster's; the URLs the face objects carry
    are still taken back as photos (they used to be refused as not public), while other private URLs stay refused."""
    _, face = enrolled
    assert face.photo.startswith(cluster.store_url + "/photos/")
    found = cluster.stub.Identify(gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(url=face.photo),
                                                              n=1), timeout=60)
    assert found.results[0].matches[0].face.id == face.id
    with pytest.raises(grpc.RpcError) as refused:
        other_port = cluster.upload_address.rpartition(":")[0] + ":9"
        cluster.stub.Detect(gateway_pb2.FaceDetectRequest(
            image=common_pb2.ImageSource(url=f"http://{other_port}/photos/a.jpg")), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a public address" in refused.value.details()
