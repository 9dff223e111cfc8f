"""An extractor call that outlasts the gateway's extractor_timeout_s is said to be that, not an extractor that is
down (it used to read "extractor ... unavailable: DEADLINE_EXCEEDED", sending operators after a dead server)."""
from __future__ import annotations

import grpc
import pytest

from findface_grpc import launch
from findface_grpc.v1 import common_pb2, gateway_pb2
from tests.gateway.harness import ShardSet, address, face_stub, gateway_process, make_token, start_healthy


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, extractor, mongo):
    base = tmp_path_factory.mktemp("deadline")
    shards = ShardSet(base, 1)
    listen = address(launch.free_port())
    # Far below what decoding and detecting a 2000-px photo takes, so that every photo call outlasts it.
    proc = gateway_process("gateway-deadline", base, listen, shards.addresses, extractor, mongo, "deadline",
                           extractor_timeout_s=0.01)
    try:
        shards.start_tarantools()
        start_healthy(shards.server_items())
        start_healthy([(proc, listen)])
        channel, stub = face_stub(listen, make_token(mongo, "deadline"))
        with channel:
            yield stub
    finally:
        proc.stop()
        shards.stop()


def test_a_call_that_outlasts_the_extractor_timeout_says_so(gateway, faces):
    photo = (faces / "deepface/couple.jpg").read_bytes()
    with pytest.raises(grpc.RpcError) as slow:
        gateway.Detect(gateway_pb2.FaceDetectRequest(image=common_pb2.ImageSource(content=photo)), timeout=60)
    assert slow.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "gave no answer within 0.01 s (extractor_timeout_s)" in slow.value.details(), slow.value.details()
