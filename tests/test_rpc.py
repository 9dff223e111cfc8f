"""The gRPC plumbing every server shares, on a real server on loopback: errors in both detail forms, reflection
v1 and v1alpha."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from findface_grpc.errors import InvalidArgument, TooManyFaces
from findface_grpc.launch import free_port
from findface_grpc.rpc import CHANNEL_OPTIONS, GrpcServer, error_details

RAISE = "/findface_test.Errors/Raise"
# What the test service raises, by request body.
ERRORS = {
    b"faces": TooManyFaces("image: more than one face", details={"faces": [[1.5, 2, 30, 40], [50, 60, 70, 80]]}),
    b"limit": InvalidArgument("limit must be within 1..1000, got 0"),
}


async def _raise(request: bytes, context) -> bytes:
    raise ERRORS[request]


def _add_errors_service(_servicer, server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(_raise)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("findface_test.Errors",
                                                                          {"Raise": handler}),))


@pytest.fixture(scope="module")
def server_address():
    """A GrpcServer, as every findface server builds it, serving a service that raises ERRORS, on its own loop."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    port = []

    async def serve():
        server = GrpcServer("127.0.0.1:0")
        server.add(_add_errors_service, None, "findface_test.Errors")
        port.append(await server.start())
        started.set()
        await stop.wait()
        await server.stop(0)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(30)
    yield f"127.0.0.1:{port[0]}"
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    loop.close()


def _fail(address: str, which: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary(RAISE)(which, timeout=10)
    return caught.value


def _details(status, kind):
    found = []
    for detail in status.details:
        message = kind()
        if detail.Unpack(message):
            found.append(message)
    return found


def test_error_details_travel_in_both_forms(server_address):
    error = _fail(server_address, b"faces")
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(error) == {"faces": [[1.5, 2, 30, 40], [50, 60, 70, 80]]}
    status = rpc_status.from_call(error)
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert status.message == "image: more than one face"
    [info] = _details(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("TOO_MANY_FACES", "findface-grpc")
    assert json.loads(info.metadata["faces"]) == [[1.5, 2, 30, 40], [50, 60, 70, 80]]
    assert _details(status, error_details_pb2.BadRequest) == []


def test_invalid_argument_names_its_field(server_address):
    error = _fail(server_address, b"limit")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(error) == {}
    status = rpc_status.from_call(error)
    [info] = _details(status, error_details_pb2.ErrorInfo)
    assert info.reason == "INVALID_ARGUMENT" and not info.metadata
    [bad] = _details(status, error_details_pb2.BadRequest)
    [violation] = bad.field_violations
    assert violation.field == "limit"
    assert violation.description == "limit must be within 1..1000, got 0"


def _reflect(address: str, version: str, request: reflection_pb2.ServerReflectionRequest):
    # v1 and v1alpha messages are the same on the wire; only the service's name tells them apart.
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        [answer] = list(call(iter([request]), timeout=10))
    return answer


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_answers_both_versions(server_address, version):
    answer = _reflect(server_address, version, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in answer.list_services_response.service}
    assert {"findface_test.Errors", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    answer = _reflect(server_address, version, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.reflection.v1.ServerReflection"))
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in answer.file_descriptor_response.file_descriptor_proto]
    [v1] = [f for f in files if f.package == "grpc.reflection.v1"]
    assert v1.name == "grpc/reflection/v1/reflection.proto"
    [method] = v1.service[0].method
    assert (method.input_type, method.output_type) == (".grpc.reflection.v1.ServerReflectionRequest",
                                                       ".grpc.reflection.v1.ServerReflectionResponse")


def test_a_peer_that_comes_back_is_reached_within_seconds_however_long_it_was_away():
    """gRPC's default reconnect backoff grows to two minutes while a peer is down; every channel caps it."""
    port = free_port()
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        away_until = time.monotonic() + 6.0
        while time.monotonic() < away_until:  # long enough for the default backoff to reach many seconds
            with pytest.raises(grpc.RpcError):
                stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            time.sleep(0.2)
        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        try:
            back = time.monotonic()
            while True:
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    break
                except grpc.RpcError:
                    assert time.monotonic() - back < 3.0, "the channel did not reconnect within 3 s"
                    time.sleep(0.1)
        finally:
            server.stop(None)
