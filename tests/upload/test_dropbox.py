"""findface-upload against a real cluster: the drop folder, the photo store's artifacts, and the fences."""
from __future__ import annotations

import io
import re
import time
from urllib.parse import urlsplit

import grpc
import pytest
from PIL import Image
from pillow_heif import register_heif_opener

from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import STRICT_MIN_FACE_SIZE

GALLERY = "dropped"
SIZE = re.compile(r"\d+x\d+ px")  # how the extractor names a face's size in its reasons


def identities(photos) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, (identity, _) in sorted(photos.items()):
        out.setdefault(identity, []).append(name)
    return out


def result(dav, gallery: str, stem: str) -> dict:
    reply = dav.get(f"/dropbox/{gallery}/{stem}.result.json")
    assert reply.status == 200, reply.raw
    return reply.json


def identify(cluster, image: bytes, gallery: str) -> gateway_pb2.IdentifyResponse:
    request = gateway_pb2.IdentifyRequest(image=common_pb2.ImageSource(content=image), gallery=gallery, n=1)
    return cluster.stub.Identify(request, timeout=60)


@pytest.fixture(scope="module")
def dropped(cluster, photos) -> dict[str, dict]:
    """One photo of each of five people dropped into GALLERY (meta = the person); person -> its result."""
    dav = cluster.dav()
    out = {}
    for identity, names in list(identities(photos).items())[:5]:
        reply = dav.put(f"/dropbox/{GALLERY}/{identity}.jpg", photos[names[0]][1])
        assert reply.status == 201, (reply.status, reply.raw, cluster.log())
        out[identity] = result(dav, GALLERY, identity)
    return out


def test_dropped_photos_are_enrolled_and_identified(cluster, photos, dropped):
    for identity, res in dropped.items():
        assert res["status"] == "enrolled", res
        assert res["face_ids"] and res["gallery"] == GALLERY and res["meta"] == identity
        assert res["skipped"] == [], res
        for face in res["faces"]:
            assert 0 < face["quality"] <= 1 and face["orientation"] == 1, face
    listing = cluster.dav().propfind(f"/dropbox/{GALLERY}/")
    assert listing.status == 207
    for identity in dropped:
        assert f"{identity}.jpg" in listing.raw.decode() and f"{identity}.result.json" in listing.raw.decode()
    # Another photo of each person finds the dropped one, by its meta.
    for identity, names in list(identities(photos).items())[:5]:
        reply = identify(cluster, photos[names[1]][1], GALLERY)
        matches = reply.results[0].matches
        assert matches and matches[0].face.meta == identity, (identity, names[1], matches)


def test_artifacts_reachable_at_face_urls_and_deleted_with_face(cluster, photos, dropped):
    identity = next(iter(dropped))
    face = dropped[identity]["faces"][0]
    original = photos[identities(photos)[identity][0]][1]
    assert re.fullmatch(rf"{cluster.store_url}/photos/[0-9a-f]{{2}}/[0-9a-f]{{64}}\.jpg", face["photo"])
    key = re.fullmatch(rf"{cluster.store_url}/faces/{face['id']}/([A-Za-z0-9_-]{{22}})-thumbnail\.jpg",
                       face["thumbnail"])[1]
    assert face["normalized"] == f"{cluster.store_url}/faces/{face['id']}/{key}-normalized.png"
    record = cluster.stub.GetFace(gateway_pb2.GetFaceRequest(id=face["id"]), timeout=10)
    assert (record.photo, record.thumbnail, record.normalized) == (face["photo"], face["thumbnail"], face["normalized"])
    dav = cluster.dav()
    # Public reads, as the face objects' URLs are meant to be followed by any client.
    assert dav.get(face["photo"], auth=False).raw == original
    assert dav.get(face["thumbnail"], auth=False).raw[:2] == b"\xff\xd8"
    assert dav.get(face["normalized"], auth=False).raw[:8] == b"\x89PNG\r\n\x1a\n"

    cluster.stub.DeleteFace(gateway_pb2.DeleteFaceRequest(id=face["id"]), timeout=10)
    assert dav.get(face["thumbnail"]).status == 404
    assert dav.get(face["normalized"]).status == 404
    assert cluster.service_dav().get(f"/faces/{face['id']}/").status == 404
    # The original is kept (other faces may come from the same photo).
    assert dav.get(face["photo"]).status == 200


def test_an_iphone_photo_dropped_as_the_phone_names_it_is_enrolled_upright_and_kept_as_heic(cluster, photos):
    """IMG_0001.HEIC, stored turned with the phone's orientation: enrolled upright, and the original is kept as
    it came, under .heic, with its media type."""
    register_heif_opener()
    identity, names = list(identities(photos).items())[6]
    upright = Image.open(io.BytesIO(photos[names[0]][1])).convert("RGB")
    orientation = Image.Exif()
    orientation[0x0112] = 6
    out = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(out, "HEIF", quality=90, exif=orientation.tobytes())
    heic = out.getvalue()
    dav = cluster.dav()
    assert dav.put("/dropbox/phone/IMG_0001.HEIC", heic).status == 201
    res = result(dav, "phone", "IMG_0001")
    assert res["status"] == "enrolled" and res["meta"] == "IMG_0001", res
    (face,) = res["faces"]
    assert face["orientation"] == 1
    assert re.fullmatch(rf"{cluster.store_url}/photos/[0-9a-f]{{2}}/[0-9a-f]{{64}}\.heic", face["photo"])
    stored = dav.get(face["photo"], auth=False)
    assert stored.raw == heic and stored.headers["content-type"] == "image/heic"
    matches = identify(cluster, photos[names[1]][1], "phone").results[0].matches
    assert matches and matches[0].face.meta == "IMG_0001", (identity, names[1], matches)


def test_same_photo_twice_is_skipped_and_says_so(cluster, photos, dropped):
    identity = list(dropped)[1]
    again = cluster.dav().put(f"/dropbox/{GALLERY}/{identity}-again.jpg", photos[identities(photos)[identity][0]][1])
    assert again.status == 201
    res = result(cluster.dav(), GALLERY, f"{identity}-again")
    assert res["status"] == "skipped" and "duplicate" in res["reason"]
    assert res["duplicate_of"] == f"{identity}.jpg" and res["face_ids"] == dropped[identity]["face_ids"]
    faces = cluster.stub.ListFaces(gateway_pb2.ListFacesRequest(gallery=GALLERY, meta=f"{identity}-again"), timeout=10)
    assert not faces.faces


def test_same_photo_twice_enrolled_again_when_configured(cluster, photos, tmp_path):
    from findface_grpc import launch
    from tests.gateway.harness import HOST, START_TIMEOUT, address
    from tests.upload.harness import DavClient

    listen = address(launch.free_port())
    proc = cluster.upload_process("upload-again", listen, tmp_path / "store", duplicates="enroll").start()
    try:
        launch.wait_tcp(HOST, int(listen.rpartition(":")[2]), START_TIMEOUT, proc)
        dav = DavClient(listen, "any", cluster.user_token)
        photo = photos[identities(photos)["person09"][0]][1]
        assert dav.put("/dropbox/again/first.jpg", photo).status == 201
        first = result(dav, "again", "first")
        assert dav.put("/dropbox/again/second.jpg", photo).status == 201
        second = result(dav, "again", "second")
        assert first["status"] == second["status"] == "enrolled"
        assert second["duplicate_of"] == "first.jpg" and "enrolled again" in second["reason"]
        assert set(first["face_ids"]).isdisjoint(second["face_ids"])
    finally:
        proc.stop()


def test_faces_left_out_are_listed_beside_those_enrolled(strict_cluster, collage):
    dav = strict_cluster.dav()
    assert dav.put("/dropbox/small/both.jpg", collage(160, 26)).status == 201
    res = result(dav, "small", "both")
    assert res["status"] == "enrolled", res
    (face,) = res["faces"]
    assert face["bbox"][2] - face["bbox"][0] > 100 and 0 < face["quality"] <= 1 and face["orientation"] == 1
    # The HTTP API's "skipped", item for item.
    (skipped,) = res["skipped"]
    assert set(skipped) == {"bbox", "quality", "reason", "message"} and set(skipped["bbox"]) == {"x1", "y1", "x2", "y2"}
    assert skipped["reason"] == "too_small" and 0 <= skipped["quality"] <= 1
    assert skipped["bbox"]["x2"] - skipped["bbox"]["x1"] < STRICT_MIN_FACE_SIZE
    assert SIZE.search(skipped["message"]) and f"minimum of {STRICT_MIN_FACE_SIZE} px" in skipped["message"]
    listed = strict_cluster.stub.ListFaces(gateway_pb2.ListFacesRequest(gallery="small"), timeout=10).faces
    assert [f.id for f in listed] == res["face_ids"]


def test_photo_with_only_faces_too_small_is_rejected_with_the_size(strict_cluster, collage):
    dav = strict_cluster.dav()
    assert dav.put("/dropbox/tiny/alone.jpg", collage(26)).status == 201
    res = result(dav, "tiny", "alone")
    assert res["status"] == "rejected" and res["error"]["code"] == "INVALID_ARGUMENT", res
    reason = res["error"]["reason"]
    assert SIZE.search(reason) and f"under the minimum of {STRICT_MIN_FACE_SIZE} px" in reason, reason
    assert "face_ids" not in res and "skipped" not in res and "retry" not in res


def test_corrupt_photo_is_rejected_with_its_reason(cluster):
    dav = cluster.dav()
    assert dav.put("/dropbox/broken/corrupt.jpg", b"\xff\xd8\xff\xe0 this is not a JPEG at all").status == 201
    res = result(dav, "broken", "corrupt")
    assert res["status"] == "rejected" and res["error"]["code"] == "INVALID_ARGUMENT"
    assert res["error"]["reason"]
    assert "face_ids" not in res


def test_photo_moved_into_the_drop_folder_is_enrolled(cluster, photos):
    dav = cluster.dav()
    identity, names = list(identities(photos).items())[6]
    assert dav.request("MKCOL", "/dropbox/staging").status == 201
    assert dav.put("/dropbox/staging/later.jpg", photos[names[0]][1]).status == 201
    assert result(dav, "staging", "later")["status"] == "enrolled"
    assert dav.move("/dropbox/staging/later.jpg", "/dropbox/moved/later.jpg").status == 201
    res = result(dav, "moved", "later")
    assert res["status"] == "enrolled"
    matches = identify(cluster, photos[names[1]][1], "moved").results[0].matches
    assert matches and matches[0].face.meta == "later"


def test_interrupted_upload_is_not_enrolled(cluster, photos):
    dav = cluster.dav()
    body = photos[identities(photos)["person08"][0]][1]
    dav.interrupted_put("/dropbox/interrupted/half.jpg", body, len(body) // 2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "incomplete upload" not in cluster.log():
        time.sleep(0.1)
    assert "incomplete upload of /dropbox/interrupted/half.jpg discarded" in cluster.log()
    assert dav.get("/dropbox/interrupted/half.jpg").status == 404
    assert dav.get("/dropbox/interrupted/half.result.json").status == 404
    assert not list((cluster.root / ".upload-state" / "partial").iterdir())
    with pytest.raises(grpc.RpcError) as err:  # never enrolled, so its gallery was never even created
        cluster.stub.ListFaces(gateway_pb2.ListFacesRequest(gallery="interrupted"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("path", [
    "/dropbox/../escape.jpg",
    "/dropbox/g/../../escape.jpg",
    "/dropbox/g/..%2F..%2Fescape.jpg",
    "/dropbox/g/%2E%2E/escape.jpg",
    "//etc/escape.jpg",
    "/dropbox/g/.hidden.jpg",
    "/.upload-state/partial/x.jpg",
    "/dropbox/bad%20name/x.jpg",
    "/dropbox/" + "g" * 49 + "/x.jpg",
    "/dropbox/g/x.exe",
    "/dropbox/g/x.jpg.sh",
    "/dropbox/g/sub/x.jpg",
    "/dropbox/g/x.result.json",
    "/elsewhere/x.jpg",
    "/photos/ab/not-a-hash.jpg",
])
def test_paths_outside_the_layout_are_refused(cluster, photos, path):
    reply = cluster.dav().put(path, b"\xff\xd8 whatever")
    assert reply.status in (400, 403), (path, reply.status, reply.raw)
    assert not (cluster.root.parent / "escape.jpg").exists() and not (cluster.root / "escape.jpg").exists()


def test_moves_out_of_the_layout_and_symlinks_are_refused(cluster, photos, tmp_path):
    dav = cluster.dav()
    assert dav.put("/dropbox/fences/a.jpg", b"\xff\xd8 not a photo").status == 201
    assert dav.move("/dropbox/fences/a.jpg", "/dropbox/../a.jpg").status == 403
    assert dav.move("/dropbox/fences/a.jpg", "/dropbox/fences/a.result.json").status == 403
    assert dav.move("/dropbox/fences/a.jpg", "/photos/aa/" + "a" * 64 + ".jpg").status == 403
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    (cluster.root / "dropbox" / "linked").symlink_to(tmp_path)
    assert dav.get("/dropbox/linked/secret.jpg").status == 403
    assert dav.put("/dropbox/linked/new.jpg", b"\xff\xd8").status == 403
    assert not (tmp_path / "new.jpg").exists()


def test_credentials_and_size_limit(cluster):
    path = "/dropbox/auth/x.jpg"
    assert cluster.dav().request("PROPFIND", "/", auth=False).status == 401
    assert cluster.dav(password="not-a-token").propfind("/").status == 401
    assert cluster.dav("operator", "op-secret").propfind("/dropbox/").status == 207
    assert cluster.dav("operator", "wrong").propfind("/dropbox/").status == 401
    # Reads of the drop folder need credentials too; only stored photos and crops are public.
    assert cluster.dav().request("GET", "/dropbox/", auth=False).status == 401
    assert cluster.dav().announce_put(path, 10_000_001) == 413
    assert cluster.dav().put(path, b"").status == 201  # within the limit: taken (and rejected as no photo)
    assert result(cluster.dav(), "auth", "x")["status"] == "rejected"
    assert cluster.dav().announce_put("/dropbox/auth/y.jpg", 10_000_001) == 413
    assert cluster.dav().get("/dropbox/auth/y.jpg").status == 404
    hidden = cluster.service_dav().propfind("/")
    assert hidden.status == 207 and b".upload-state" not in hidden.raw


LOCKINFO = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            b'<D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>')


def test_lock_then_put_as_desktop_clients_do(cluster, photos):
    dav = cluster.dav()
    photo = photos[identities(photos)["person02"][1]][1]
    assert dav.request("MKCOL", "/dropbox/locked").status == 201
    lock = dav.request("LOCK", "/dropbox/locked/held.jpg", LOCKINFO, {"Content-Type": "text/xml"})
    assert lock.status == 201, lock.raw
    token = lock.headers["lock-token"]
    # The empty placeholder the LOCK made is not a drop: nothing is enrolled until the PUT.
    assert dav.get("/dropbox/locked/held.result.json").status == 404
    assert dav.put("/dropbox/locked/held.jpg", photo).status == 423
    assert dav.put("/dropbox/locked/held.jpg", photo, headers={"If": f"({token})"}).status == 204
    assert dav.request("UNLOCK", "/dropbox/locked/held.jpg", headers={"Lock-Token": token}).status == 204
    assert result(dav, "locked", "held")["status"] == "enrolled"


def test_deleting_a_gallery_deletes_its_faces_artifacts(cluster, photos):
    dav = cluster.dav()
    name = next(iter(photos))
    assert dav.put("/dropbox/doomed/one.jpg", photos[name][1]).status == 201
    res = result(dav, "doomed", "one")
    assert res["status"] == "enrolled", res
    face_id, thumbnail = res["face_ids"][0], res["faces"][0]["thumbnail"]
    assert dav.get(thumbnail).status == 200
    cluster.stub.DeleteGallery(gateway_pb2.DeleteGalleryRequest(name="doomed"), timeout=30)
    assert dav.get(thumbnail).status == 404
    assert cluster.service_dav().get(f"/faces/{face_id}/").status == 404


def test_face_artifacts_cannot_be_found_by_counting_ids(cluster, photos, dropped):
    faces = [face for res in dropped.values() for face in res["faces"]]
    keys = set()
    for face in faces:
        folder = f"{cluster.store_url}/faces/{face['id']}/"
        thumb_key = face["thumbnail"].removeprefix(folder).removesuffix("-thumbnail.jpg")
        crop_key = face["normalized"].removeprefix(folder).removesuffix("-normalized.png")
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", thumb_key) and thumb_key == crop_key, face
        keys.add(thumb_key)
    assert len(keys) == len(faces) >= 5  # every face its own key
    anonymous = cluster.dav()
    face = next(f for f in faces if anonymous.get(f["thumbnail"], auth=False).status == 200)  # not deleted
    # The face's own URLs work without credentials...
    assert anonymous.get(face["thumbnail"], auth=False).raw[:2] == b"\xff\xd8"
    assert anonymous.get(face["normalized"], auth=False).raw[:8] == b"\x89PNG\r\n\x1a\n"
    # ... but nothing that can be made up from a face id: the unkeyed names, another key, a listing.
    for path in (f"/faces/{face['id']}/thumbnail.jpg", f"/faces/{face['id']}/normalized.png",
                 f"/faces/{face['id']}/{'A' * 22}-thumbnail.jpg", f"/faces/{face['id']}/thumbnail"):
        reply = anonymous.get(path, auth=False)
        assert reply.status in (401, 403, 404), (path, reply.status)
        assert reply.raw[:2] != b"\xff\xd8"
    for method, path in (("PROPFIND", "/faces/"), ("PROPFIND", f"/faces/{face['id']}/"),
                         ("GET", f"/faces/{face['id']}/"), ("GET", "/faces/")):
        reply = anonymous.request(method, path, headers={"Depth": "1"}, auth=False)
        assert reply.status == 401, (method, path, reply.status)
    # Only the service identity lists them: a listing shows the keyed names.
    listing = cluster.service_dav().propfind(f"/faces/{face['id']}/").raw.decode()
    assert face["thumbnail"].rpartition("/")[2] in listing
    # New unkeyed files cannot be written, by PUT or MOVE/COPY, not even by the service identity.
    service = cluster.service_dav()
    assert service.put(f"/faces/{face['id']}/thumbnail.jpg", b"\xff\xd8 x").status == 403
    copy = service.request("COPY", urlsplit(face["thumbnail"]).path, headers={
        "Destination": f"{cluster.store_url}/faces/{face['id']}/thumbnail.jpg"})
    assert copy.status == 403


def test_unkeyed_artifacts_of_earlier_versions_need_credentials(cluster):
    folder = cluster.root / "faces" / "999999"
    folder.mkdir()
    (folder / "thumbnail.jpg").write_bytes(b"\xff\xd8 old thumbnail")
    assert cluster.dav().get("/faces/999999/thumbnail.jpg", auth=False).status == 401
    assert cluster.dav().get("/faces/999999/thumbnail.jpg").raw == b"\xff\xd8 old thumbnail"
    assert cluster.dav().delete("/faces/999999/").status == 403  # reading is all an ordinary token may do
    assert cluster.service_dav().delete("/faces/999999/").status == 204
    assert not folder.exists()
