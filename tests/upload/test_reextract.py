"""findface-reextract: faces enrolled with scrfd-mbf re-extracted with yunet-sface into new shards from the photo store.

Then a gateway on the new extractor and shards with the same MongoDB finds each person; a second run (resume)
adds nothing; target shards holding another model are refused.
"""
from __future__ import annotations

import grpc
import pymongo
import pytest

from findface_grpc import launch, reextract
from findface_grpc.v1 import common_pb2, gateway_pb2, shard_pb2, shard_pb2_grpc
from tests.gateway.harness import ShardSet, address, face_stub, gateway_process, start_healthy
from tests.upload.harness import CELLS

NEW_MODEL = "sface_2021dec"


def test_photo_url_checks():
    for url, reason in (("", "no photo URL"), ("file:///etc/passwd", r"not http\(s\)")):
        with pytest.raises(reextract.FaceFailed, match=reason):
            reextract.fetch_photo(url, 1.0)


def test_reextract_into_new_shards(cluster, photos, tmp_path, capsys):
    by_person: dict[str, list[bytes]] = {}
    for name, (identity, data) in sorted(photos.items()):
        by_person.setdefault(identity, []).append(data)
    people = [p for p in sorted(by_person) if len(by_person[p]) >= 3][:4]
    assert len(people) == 4
    cluster.stub.CreateGallery(gateway_pb2.CreateGalleryRequest(name="alpha"), timeout=10)
    enrolled: dict[int, tuple[str, ...]] = {}
    for i, person in enumerate(people):
        for data in by_person[person][:2]:
            galleries = ["alpha"] if i < 2 else []
            reply = cluster.stub.CreateFace(gateway_pb2.CreateFaceRequest(
                image=common_pb2.ImageSource(content=data), meta=person, galleries=galleries), timeout=60)
            for f in reply.faces:
                assert f.photo.startswith(cluster.store_url), f.photo  # the stored original
                enrolled[f.id] = tuple(sorted(f.galleries))
    assert len(enrolled) == 8

    # The new model pack's extractor and two fresh shards, side by side.
    base = tmp_path / "new"
    new_extractor = address(launch.free_port())
    extractor_proc = launch.python_server("extractor-sface", "findface_grpc.extractor.server",
                                          ["--listen", new_extractor, "--model-pack", "yunet-sface"],
                                          base / "extractor.log")
    shards = ShardSet(base, 2)
    gateway = None
    try:
        shards.start_tarantools()
        start_healthy([(extractor_proc, new_extractor), *shards.server_items()])
        state = tmp_path / "state.json"
        argv = ["--mongo-uri", cluster.mongo_uri, "--mongo-db", cluster.mongo_db, "--extractor", new_extractor,
                "--shards", ",".join(shards.addresses), "--cells", str(CELLS), "--state", str(state)]

        assert reextract.main(argv) == 0
        out = capsys.readouterr()
        assert "8 active faces: 8 re-extracted, 0 skipped (done before), 0 failed" in out.out, out
        assert "done 8" in out.err  # the progress line

        found: dict[int, tuple[str, ...]] = {}
        for i in range(2):
            ids = shards.ids(i)
            found.update(shards.get(i, ids))
        assert found == enrolled
        for addr in shards.addresses:
            with grpc.insecure_channel(addr) as ch:
                stub = shard_pb2_grpc.ShardStub(ch)
                ids = shards.ids(shards.addresses.index(addr))
                reply = stub.Get(shard_pb2.GetRequest(ids=ids, include_descriptors=True), timeout=10)
                for f in reply.faces:
                    assert (f.descriptor.model_id, f.descriptor.dim, len(f.descriptor.vector)) == \
                        (NEW_MODEL, 128, 512)

        # MongoDB and the old shards untouched.
        client = pymongo.MongoClient(cluster.mongo_uri)
        try:
            docs = list(client[cluster.mongo_db]["faces"].find({"state": "active"}))
        finally:
            client.close()
        assert {d["_id"] for d in docs} == set(enrolled)
        assert {d.get("model_id") for d in docs} == {"w600k_mbf"}

        # A second run resumes after the last face: nothing to do, exit 0.
        assert reextract.main(argv) == 0
        out = capsys.readouterr()
        assert "8 active faces: 0 re-extracted, 8 skipped (done before), 0 failed" in out.out, out

        # Target shards holding another model (the cluster's own) are refused before anything is written.
        old_argv = [*argv[:6], "--shards", ",".join(cluster.shards.addresses), "--cells", str(CELLS),
                    "--state", str(tmp_path / "other.json")]
        assert reextract.main(old_argv) == 2
        err = capsys.readouterr().err
        assert "refused" in err and "w600k_mbf" in err, err

        # The gateway pointed at the new extractor and shards with the same MongoDB finds every person.
        gw_addr = address(launch.free_port())
        gateway = gateway_process("gateway-sface", base, gw_addr, shards.addresses, new_extractor,
                                  cluster.mongo_uri, cluster.mongo_db, cells=CELLS)
        start_healthy([(gateway, gw_addr)])
        channel, stub = face_stub(gw_addr, cluster.token)
        try:
            for person in people:
                reply = stub.Identify(gateway_pb2.IdentifyRequest(
                    image=common_pb2.ImageSource(content=by_person[person][2]), n=3), timeout=60)
                assert reply.results[0].matches[0].face.meta == person
            alpha = stub.Identify(gateway_pb2.IdentifyRequest(
                image=common_pb2.ImageSource(content=by_person[people[3]][2]), gallery="alpha", n=5), timeout=60)
            assert all(m.face.meta in people[:2] for m in alpha.results[0].matches)
        finally:
            channel.close()

        # Faces that cannot be re-extracted are listed with reasons, exit code 1 (a fresh state: all redone).
        gone = {"state": "active", "galleries": ["default"], "bbox": [1.0, 1.0, 50.0, 50.0], "model_id": "w600k_mbf"}
        client = pymongo.MongoClient(cluster.mongo_uri)
        faces = client[cluster.mongo_db]["faces"]
        try:
            faces.insert_many([{**gone, "_id": 10_001, "photo": ""},
                               {**gone, "_id": 10_002, "photo": f"{cluster.store_url}/photos/00/{'0' * 64}.jpg"}])
            assert reextract.main([*argv[:-1], str(tmp_path / "fresh.json")]) == 1
            out = capsys.readouterr().out
            assert "10 active faces: 8 re-extracted, 0 skipped (done before), 2 failed" in out, out
            assert "failed  face 10001: no photo URL" in out
            assert "failed  face 10002: photo " in out and "HTTP 404" in out, out
        finally:
            faces.delete_many({"_id": {"$in": [10_001, 10_002]}})
            client.close()
    finally:
        for proc in (gateway, extractor_proc):
            if proc is not None:
                proc.stop()
        shards.stop()
