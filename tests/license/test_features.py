"""The license's feature list gates the attribute estimates: a real extractor leased by a real license server."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from findface_grpc.errors import FailedPrecondition
from findface_grpc.extractor.models import attribute_packs
from findface_grpc.extractor.models.packs import ModelFileError, default_models_dir
from findface_grpc.license.client import Kind, LeaseKeeper
from findface_grpc.rpc import CHANNEL_OPTIONS, error_details
from findface_grpc.v1 import common_pb2, extractor_pb2, extractor_pb2_grpc
from tests.helpers import free_port, start_server
from tests.license.conftest import write_license


def test_the_keeper_knows_the_features_of_the_license(tmp_path, keys, license_server):
    licensed = license_server(write_license(tmp_path / "a.lic", keys[0], features=("age", "emotions")), keys[1])
    unlicensed = license_server()

    async def scenario():
        keeper = LeaseKeeper(licensed.address, Kind.EXTRACTOR, "e1")
        await keeper.start()
        keeper.require_feature("age")
        with pytest.raises(FailedPrecondition, match=r"does not include the feature 'gender' \(it has: age, emotions\)"):
            keeper.require_feature("gender")
        await keeper.stop()
        anything = LeaseKeeper(unlicensed.address, Kind.EXTRACTOR, "e2")
        await anything.start()
        anything.require_feature("gender")  # unlicensed mode allows every feature
        await anything.stop()

    asyncio.run(scenario())


def test_an_extractor_refuses_the_attributes_its_license_lacks(tmp_path, keys, license_server, faces):
    try:
        attribute_packs.verify_attributes(default_models_dir())
    except ModelFileError as exc:
        pytest.skip(f"attribute models not fetched ({exc})")
    server = license_server(write_license(tmp_path / "a.lic", keys[0], features=("age",)), keys[1])
    address = f"127.0.0.1:{free_port()}"
    extractor = start_server("findface_grpc.extractor.server", ["--listen", address, "--license-server",
                                                                 server.address], address, tmp_path / "e.log")
    try:
        with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = extractor_pb2_grpc.ExtractorStub(channel)
            photo = (faces / "deepface/img30.jpg").read_bytes()
            aged = stub.Detect(extractor_pb2.DetectRequest(image=photo, attributes=[common_pb2.ATTRIBUTE_AGE]))
            assert aged.faces[0].age.years > 0
            for attribute in (common_pb2.ATTRIBUTE_GENDER, common_pb2.ATTRIBUTE_EMOTIONS):
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Extract(extractor_pb2.ExtractRequest(image=photo, attributes=[attribute]))
                name = common_pb2.Attribute.Name(attribute).removeprefix("ATTRIBUTE_").lower()
                assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert f"does not include the feature '{name}'" in caught.value.details()
                assert error_details(caught.value) == {"feature": name}
            assert stub.Extract(extractor_pb2.ExtractRequest(image=photo)).faces[0].descriptor.vector
    finally:
        extractor.stop()
