"""Bad input against a real cluster's HTTP gateway and gRPC gateway (issue 12, items 9 to 15, and generated cases).

Every answer must be a refusal the client can act on: a 4xx in the legacy error shape (or a documented 503), a gRPC
status other than INTERNAL or UNKNOWN; and the servers must still answer a normal request afterwards. At the end,
the HTTP gateway must be the process it was at the start, its RSS bounded (the last case). Slow clients are in
test_slow_clients.py; scripts/fuzz_soak.py runs both modules' cases over and over against one cluster.
"""
from __future__ import annotations

import json
import random
import socket
import struct

import grpc
import numpy as np
import pymongo
import pytest

from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.fuzz.slow import rss_kb
from tests.http.harness import Reply

BEYOND_UINT63 = 1 << 63
MAX_UINT64 = (1 << 64) - 1
DEEP = 1100
RNG_SEED = 12


def assert_refused(reply: Reply, status: int | None = None, code: str | None = None, param: str | None = None):
    """A clean refusal: no 5xx but 503, and the legacy error JSON; optionally the exact status, code and param."""
    assert reply.status < 500 or reply.status == 503, (reply.status, reply.raw[:300])
    if reply.status >= 400:
        body = reply.json
        assert body["code"] and body["reason"], body
        if code is not None:
            assert body["code"] == code, body
        if param is not None:
            assert body["param"] == param, body
        assert len(reply.raw) < 4096, "an error must not echo unbounded input"
    if status is not None:
        assert reply.status == status, (reply.status, reply.raw[:300])
    return reply


def rpc_code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a gRPC call that must fail cleanly."""
    try:
        call(*args, timeout=60, **kwargs)
    except grpc.RpcError as exc:
        assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (exc.code(), exc.details())
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture(scope="module")
def photo(photos) -> bytes:
    return photos["deepface/img1.jpg"][1]


@pytest.fixture(scope="module")
def model(stub) -> tuple[str, int]:
    info = stub.ClusterStatus(gateway_pb2.ClusterStatusRequest(), timeout=30).extractor
    return info.embedder_model_id, info.descriptor_dim


def descriptor(model: tuple[str, int], seed: int, model_id: str | None = None) -> common_pb2.Descriptor:
    vector = np.random.default_rng(seed).standard_normal(model[1]).astype("<f4")
    vector /= np.linalg.norm(vector)
    return common_pb2.Descriptor(model_id=model_id or model[0], dim=model[1], vector=vector.tobytes())


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture(scope="module", autouse=True)
def http_memory(cluster, api, photos) -> dict:
    """The HTTP gateway's pid and its RSS (kB) before the first case, once warm (a photo detected)."""
    photo_ = photos["deepface/img1.jpg"][1]
    for _ in range(3):
        assert api.post("/v1/detect", files={"photo": ("a.jpg", photo_)}).status == 200
    return {"pid": cluster.http.proc.pid, "rss": rss_kb(cluster.http.proc.pid)}


@pytest.fixture(autouse=True)
def still_serving(api, stub):
    """After every case, both doors still answer a normal request."""
    yield
    assert api.get("/v1/faces", query={"limit": 1}).status == 200
    stub.ListGalleries(gateway_pb2.ListGalleriesRequest(), timeout=30)


# ---- item 9: deep JSON ----

def test_deep_json_body_is_malformed_json(api):
    body = ('{"photo": ' + deep(DEEP) + "}").encode()
    assert_refused(api.post("/v1/face", body=body, headers={"Content-Type": "application/json"}), 400,
                   "MALFORMED_JSON")


def test_deep_json_within_the_recursion_limit_is_refused_too(api):
    body = ('{"photo": "http://127.0.0.1:9/a.jpg", "bbox": ' + deep(500) + "}").encode()
    assert_refused(api.post("/v1/face", body=body, headers={"Content-Type": "application/json"}), 400,
                   "MALFORMED_JSON")


def test_deep_json_in_a_multipart_field_and_the_query(api, photo):
    assert_refused(api.post("/v1/face", form={"bbox": deep(DEEP)}, files={"photo": ("a.jpg", photo)}), 400,
                   "BAD_PARAM", "bbox")
    assert_refused(api.post("/v1/face", query={"bbox": deep(DEEP)}, files={"photo": ("a.jpg", photo)}), 400,
                   "BAD_PARAM", "bbox")


# ---- item 10: lone surrogates ----

def test_a_lone_surrogate_in_meta_is_bad_param(api, photo):
    body = b'{"photo": "http://127.0.0.1:9/a.jpg", "meta": "x\\ud800y"}'
    assert_refused(api.post("/v1/face", body=body, headers={"Content-Type": "application/json"}), 400,
                   "BAD_PARAM", "meta")
    assert_refused(api.post("/v1/face", form={"galleries": '["\\udc00"]'}, files={"photo": ("a.jpg", photo)}),
                   400, "BAD_PARAM", "galleries")
    body = b'{"\\ud800": 1}'
    assert_refused(api.post("/v1/face", body=body, headers={"Content-Type": "application/json"}), 400, "BAD_PARAM")


# ---- item 11: ids no face can have ----

@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_face_id_beyond_int64_is_not_found_over_http(api, method):
    kw = {"json_body": {"meta": "x"}} if method == "PUT" else {}
    assert_refused(api.request(method, f"/v1/face/id/{MAX_UINT64}", **kw), 404, "NOT_FOUND")
    assert_refused(api.request(method, f"/v1/face/id/{BEYOND_UINT63}", **kw), 404, "NOT_FOUND")


def test_max_id_beyond_int64_is_bad_param_over_http(api):
    assert_refused(api.get("/v1/faces", query={"max_id": BEYOND_UINT63}), 400, "BAD_PARAM", "max_id")
    assert_refused(api.get("/v1/faces/meta/x", query={"max_id": BEYOND_UINT63}), 400, "BAD_PARAM", "max_id")


def test_ids_beyond_int64_over_grpc(stub, photo):
    for face_id in (BEYOND_UINT63, MAX_UINT64):
        assert rpc_code(stub.GetFace, gateway_pb2.GetFaceRequest(id=face_id))[0] == grpc.StatusCode.NOT_FOUND
        assert rpc_code(stub.DeleteFace, gateway_pb2.DeleteFaceRequest(id=face_id))[0] == grpc.StatusCode.NOT_FOUND
        assert rpc_code(stub.UpdateFace, gateway_pb2.UpdateFaceRequest(id=face_id, meta="x"))[0] == \
            grpc.StatusCode.NOT_FOUND
        verify = gateway_pb2.VerifyRequest(image1=common_pb2.ImageSource(content=photo), face_id=face_id)
        assert rpc_code(stub.Verify, verify)[0] == grpc.StatusCode.NOT_FOUND
    code, message = rpc_code(stub.ListFaces, gateway_pb2.ListFacesRequest(max_id=BEYOND_UINT63))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("max_id"), message


# ---- item 12: a negative Content-Length ----

def test_a_negative_content_length_is_400(cluster):
    host, _, port = cluster.http_address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /v1/face HTTP/1.1\r\nHost: x\r\nAuthorization: Token {cluster.token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: -5\r\n\r\n{}".encode())
        head = sock.recv(65536).split(b"\r\n", 1)[0]
    assert head.split()[1] == b"400", head


# ---- item 14: the same text limits on every door; listings survive what stored faces hold ----

def test_huge_text_fields_are_refused_over_grpc(stub, photo, model):
    image = common_pb2.ImageSource(content=photo)
    for request in (gateway_pb2.CreateFaceRequest(image=image, meta="m" * 10_000_000),
                    gateway_pb2.CreateFaceRequest(image=image, person_id="p" * 1_000_000),
                    gateway_pb2.CreateFaceRequest(image=image, cam_id="c" * 300)):
        code, message = rpc_code(stub.CreateFace, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and len(message) < 200, message
    batch = gateway_pb2.ImportFacesRequest(faces=[gateway_pb2.ImportFace(descriptor=descriptor(model, 1),
                                                                         meta="m" * 10_000_000)])
    code, message = rpc_code(lambda r, **kw: list(stub.ImportFaces(iter([r]), **kw)), batch)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("faces[0].meta"), message
    ids = list(stub.ImportFaces(iter([gateway_pb2.ImportFacesRequest(
        faces=[gateway_pb2.ImportFace(descriptor=descriptor(model, 2))])]), timeout=60))[0].ids
    code, _ = rpc_code(stub.UpdateFace, gateway_pb2.UpdateFaceRequest(id=ids[0], meta="m" * 4097))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # A gallery name is echoed back in its error, cut short.
    code, message = rpc_code(stub.CreateGallery, gateway_pb2.CreateGalleryRequest(name="g" * 100_000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(message) < 200, message


def test_a_listing_survives_faces_stored_with_huge_text(cluster, stub, api, model):
    request = gateway_pb2.ImportFacesRequest(
        faces=[gateway_pb2.ImportFace(descriptor=descriptor(model, 100 + i), meta=f"big-{i}") for i in range(4)])
    ids = list(stub.ImportFaces(iter([request]), timeout=60))[0].ids
    # As faces enrolled before the limits existed would hold them.
    client = pymongo.MongoClient(cluster.mongo_uri)
    try:
        for i, face_id in enumerate(ids):
            client[cluster.mongo_db]["faces"].update_one(
                {"_id": face_id}, {"$set": {"meta": f"big-{i}-" + "m" * 3_000_000, "person_id": "p" * 1_000_000}})
    finally:
        client.close()
    page = stub.ListFaces(gateway_pb2.ListFacesRequest(limit=1000), timeout=60)
    listed = {f.id: f for f in page.faces}
    assert all(len(listed[i].meta) == 4096 and len(listed[i].person_id) == 256 for i in ids)
    assert all(len(r.meta) <= 4096 for r in stub.ListMeta(gateway_pb2.ListMetaRequest(), timeout=60).results)
    assert assert_refused(api.get("/v1/faces", query={"limit": 1000}), 200)
    assert assert_refused(api.get("/v1/meta"), 200)


# ---- item 15: over-long tokens and echoed values ----

def test_an_over_long_token_is_401_every_time(api, stub):
    for _ in range(5):
        assert_refused(api.get("/v1/faces", token="Token " + "a" * 10_000), 401, "AUTH_FAILED")
    for _ in range(5):
        code, _ = rpc_code(stub.ListGalleries, gateway_pb2.ListGalleriesRequest(),
                           metadata=(("authorization", "Token " + "a" * 10_000),))
        assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_huge_model_id_is_refused_without_echoing_it(stub, model):
    batch = gateway_pb2.ImportFacesRequest(
        faces=[gateway_pb2.ImportFace(descriptor=descriptor(model, 3, model_id="x" * 10_000))])
    code, message = rpc_code(lambda r, **kw: list(stub.ImportFaces(iter([r]), **kw)), batch)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(message) < 300, message
    code, message = rpc_code(stub.CreateGallery, gateway_pb2.CreateGalleryRequest(name="g" * 100_000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(message) < 1100, (code, len(message))


# ---- generated cases ----

VALID = json.dumps({"photo": "http://127.0.0.1:9/a.jpg", "meta": "ü" * 5, "galleries": ["default"],
                    "bbox": [[1, 2, 30, 40]], "mf_selector": "all"}).encode()


def test_truncated_json_bodies(api):
    for cut in range(1, len(VALID), 3):
        assert_refused(api.post("/v1/face", body=VALID[:cut], headers={"Content-Type": "application/json"}), 400)


def test_random_bytes_as_json_bodies(api):
    rng = random.Random(RNG_SEED)
    for _ in range(40):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        assert_refused(api.post("/v1/identify", body=body, headers={"Content-Type": "application/json"}))
        assert_refused(api.post("/v1/detect", body=body, headers={"Content-Type": "multipart/form-data; boundary=x"}))


def test_bit_flipped_jpegs(api, stub, photo):
    rng = random.Random(RNG_SEED)
    for _ in range(12):
        data = bytearray(photo)
        for _ in range(rng.randrange(1, 40)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        assert_refused(api.post("/v1/detect", files={"photo": ("a.jpg", bytes(data))}))
        rpc_code(stub.Detect, gateway_pb2.FaceDetectRequest(image=common_pb2.ImageSource(content=bytes(data))))
    header_cut = photo[:rng.randrange(2, 600)]
    assert_refused(api.post("/v1/detect", files={"photo": ("a.jpg", header_cut)}))


def test_huge_fields(api, photo):
    files = {"photo": ("a.jpg", photo)}
    cases = [
        {"meta": "m" * 100_000},
        {"galleries": json.dumps(["g"] * 20_000)},
        {"bbox": json.dumps([[1, 2, 30, 40]] * 20_000)},
        {"mf_selector": "s" * 100_000},
    ]
    for form in cases:
        reply = assert_refused(api.post("/v1/face", form=form, files=files))
        assert reply.status == 400, (list(form), reply.raw[:200])
    for form in ({"threshold": "9" * 100_000}, {"n": "9" * 5000}, {"n": "1" + "0" * 100_000}):
        reply = assert_refused(api.post("/v1/identify", form=form, files=files))
        assert reply.status == 400, (list(form), reply.raw[:200])
    assert_refused(api.post("/v1/face", json_body={"photo": "http://127.0.0.1:9/" + "a" * 200_000}), 400)
    assert_refused(api.get("/v1/faces/meta/" + "m" * 8000))
    assert_refused(api.post("/v1/identify", body=struct.pack("<d", float("nan")),
                            headers={"Content-Type": "application/json"}), 400)


def test_invalid_utf8_on_the_grpc_wire(cluster, stub):
    """Protobuf strings must be UTF-8; bytes that are not cannot even be decoded into a request."""
    channel = grpc.insecure_channel(cluster.gateway_address)
    try:
        call = channel.unary_unary("/findface_grpc.v1.FaceService/ListFaces", request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        meta = b"\xed\xa0\x80"  # a surrogate, as UTF-8 can't carry it
        code, _ = rpc_code(call, b"\x22" + bytes([len(meta)]) + meta,
                           metadata=(("authorization", f"Token {cluster.token}"),))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        channel.close()


# ---- last: what all of the above cost ----

def test_the_http_gateway_was_never_restarted_and_its_memory_is_bounded(cluster, http_memory):
    """After every case above: the same process, its RSS under twice its warm figure plus 64 MB of slack."""
    pid = http_memory["pid"]
    assert cluster.http.alive and cluster.http.proc.pid == pid
    before, after = http_memory["rss"], rss_kb(pid)
    print(f"\nHTTP gateway RSS: {before / 1024:.0f} MB warm, {after / 1024:.0f} MB after the cases "
          f"({after / before:.2f}x)")
    assert after < 2 * before + 64 * 1024, (before, after)
