"""gRPC plumbing shared by every server and client: error mapping, health, reflection, graceful shutdown."""
from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from findface_grpc import observability
from findface_grpc.errors import FindFaceError, InvalidArgument
from findface_grpc.observability import interceptors as observed, requestid

log = logging.getLogger(__name__)

# Photos of up to 10 MB (and descriptor batches) must fit in one message, with room for the envelope.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A peer that comes back is reached again within about a second, however long it was away: gRPC's default
    # backoff grows to two minutes, and every call in that wait fails although the peer serves again.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Metadata between 8 and 16 KB (gRPC's soft and hard default limits) is refused at random; one fixed limit,
    # well above any token, lets an over-long token reach the token check and be refused as UNAUTHENTICATED.
    ("grpc.max_metadata_size", 64 * 1024),
    ("grpc.absolute_max_metadata_size", 64 * 1024),
]
# Metadata key that carries FindFaceError.details as JSON.
DETAILS_KEY = "findface-error-details"
# gRPC's standard rich error model: a serialized google.rpc.Status, which clients in every language can decode.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "findface-grpc"
# The request field an INVALID_ARGUMENT message names first: messages start with it ("image2: ...",
# "limit must be ..."), the convention the HTTP gateway also reads them by.
_FIELD_AT_START = re.compile(r"([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*)[: ]")
# An error message travels in trailers (grpc-message, and twice in the rich status), which peers cap at 8 KB by
# default: one that echoes a huge client value would end the call as "Stream removed" instead of its status.
MAX_ERROR_MESSAGE_BYTES = 1000


def status_code(exc: FindFaceError) -> grpc.StatusCode:
    return grpc.StatusCode[exc.code]


def rich_status(exc: FindFaceError) -> status_pb2.Status:
    """`exc` in the standard rich error model: an ErrorInfo whose reason is the error's kind (TOO_MANY_FACES,
    INVALID_IMAGE, ...) and whose metadata holds each of `exc.details` as JSON text, plus a BadRequest naming the
    field for INVALID_ARGUMENT."""
    code = status_code(exc)
    reason = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", type(exc).__name__).upper()
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN,
                                       metadata={k: json.dumps(v) for k, v in exc.details.items()})
    details = [info]
    field = _FIELD_AT_START.match(exc.message) if code == grpc.StatusCode.INVALID_ARGUMENT else None
    if field:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field.group(1), description=exc.message)]))
    packed = []
    for message in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(message)
        packed.append(any_detail)
    return status_pb2.Status(code=code.value[0], message=exc.message, details=packed)


def bounded_message(message: str) -> str:
    data = message.encode("utf-8", "replace")
    if len(data) <= MAX_ERROR_MESSAGE_BYTES:
        return message
    return data[:MAX_ERROR_MESSAGE_BYTES].decode("utf-8", "ignore") + "..."


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    # Trailers given to abort replace those set before: the request id goes again with them.
    rid = requestid.current.get()
    trailer = [(requestid.METADATA_KEY, rid)] if rid else []
    if isinstance(exc, FindFaceError):
        exc.message = bounded_message(exc.message)
        # Both forms: the JSON trailer for this project's own clients, the rich status for everyone else.
        trailer.append((STATUS_DETAILS_KEY, rich_status(exc).SerializeToString()))
        if exc.details:
            trailer.append((DETAILS_KEY, json.dumps(exc.details)))
        await context.abort(status_code(exc), exc.message, tuple(trailer))
    log.exception("unhandled error in %s", method)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}", tuple(trailer))


class _Undecodable:
    """A request whose bytes are not its message (strings that are not UTF-8, say): gRPC would answer UNKNOWN
    from its deserializer, so it is handed on as this and refused as INVALID_ARGUMENT where errors are mapped."""

    def __init__(self, error: DecodeError) -> None:
        self.error = InvalidArgument(f"request: cannot be decoded: {error}")


def _tolerant(deserializer: Callable | None) -> Callable | None:
    if deserializer is None:
        return None

    def parse(data: bytes):
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(exc)

    return parse


def _decoded(request_or_iterator):
    if isinstance(request_or_iterator, _Undecodable):
        raise request_or_iterator.error
    if hasattr(request_or_iterator, "__aiter__"):
        return _decoded_stream(request_or_iterator)
    return request_or_iterator


async def _decoded_stream(iterator):
    async for request in iterator:
        if isinstance(request, _Undecodable):
            raise request.error
        yield request


def _wrap_unary(behavior: Callable, method: str) -> Callable:
    async def wrapper(request_or_iterator, context):
        try:
            return await behavior(_decoded(request_or_iterator), context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # noqa: BLE001 - this is the one place errors become statuses
            await _abort(context, exc, method)

    return wrapper


def _wrap_stream(behavior: Callable, method: str) -> Callable:
    async def wrapper(request_or_iterator, context):
        try:
            async for item in behavior(_decoded(request_or_iterator), context):
                yield item
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort(context, exc, method)

    return wrapper


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps FindFaceError subclasses to their status codes and anything else to a logged INTERNAL."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                _tolerant(handler.request_deserializer),
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                _tolerant(handler.request_deserializer),
                handler.response_serializer,
            )
        behavior = handler.unary_stream or handler.stream_stream
        if not inspect.isasyncgenfunction(behavior):
            return handler
        factory = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        return factory(_wrap_stream(behavior, method), _tolerant(handler.request_deserializer),
                       handler.response_serializer)


REFLECTION_V1_SERVICE = "grpc.reflection.v1.ServerReflection"


def _register_reflection_v1_proto(pool: descriptor_pool.DescriptorPool) -> None:
    """Put grpc/reflection/v1/reflection.proto in `pool`, so that reflection can describe its own v1 service.

    grpcio-reflection ships only v1alpha. The v1 file is the same messages and service under the package
    grpc.reflection.v1 (the wire format is identical), so it is built from the v1alpha file by renaming."""
    name = "grpc/reflection/v1/reflection.proto"
    try:
        pool.FindFileByName(name)
        return
    except KeyError:
        pass
    old, new = reflection_pb2.DESCRIPTOR.package, "grpc.reflection.v1"
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = name, new
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(f".{old}.", f".{new}.")
    for method in proto.service[0].method:
        method.input_type = method.input_type.replace(f".{old}.", f".{new}.")
        method.output_type = method.output_type.replace(f".{old}.", f".{new}.")
    pool.AddSerializedFile(proto.SerializeToString())


def enable_reflection(service_names: list[str], server: grpc.aio.Server) -> None:
    """Server reflection as both grpc.reflection.v1 (what current grpcurl and Postman ask first) and v1alpha,
    answered by grpcio-reflection's v1alpha servicer: the two protocols differ only in the service's name."""
    _register_reflection_v1_proto(descriptor_pool.Default())
    names = [*service_names, reflection.SERVICE_NAME, REFLECTION_V1_SERVICE]
    servicer = reflection.aio.ReflectionServicer(names)
    handlers = {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )}
    for service in (reflection.SERVICE_NAME, REFLECTION_V1_SERVICE):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))


class GrpcServer:
    """An aio server with the house defaults: request ids and metrics, error mapping, health checking,
    reflection, SIGTERM handling."""

    def __init__(self, listen: str, interceptors: Iterable[grpc.aio.ServerInterceptor] = ()) -> None:
        self.listen = listen
        # Outermost first: refusals by the token or license check are counted and carry the request id too.
        self.server = grpc.aio.server(
            interceptors=[observed.ServerInterceptor(), *interceptors, ErrorInterceptor()], options=CHANNEL_OPTIONS
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        self.port = 0

    def add(self, add_fn: Callable, servicer: object, service_full_name: str) -> None:
        add_fn(servicer, self.server)
        self._service_names.append(service_full_name)

    async def start(self) -> int:
        enable_reflection(self._service_names, self.server)
        self.port = self.server.add_insecure_port(self.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.listen}")
        await self.server.start()
        for name in self._service_names:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def run_until_signalled(
    server: GrpcServer, on_stop: Callable[[], Awaitable[None]] | None = None, grace: float = 5.0
) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking calls, let running ones finish and clean up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down %s", server.listen)
    await server.stop(grace)
    if on_stop is not None:
        await on_stop()


def channel(address: str, peer: str) -> grpc.aio.Channel:
    """A channel to another server, named `peer` in the metrics (a name bounded by configuration: "extractor",
    "shard-3"), that sends the current request id along."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS,
                                     interceptors=[observed.AioClientInterceptor(peer)])


def plain_channel(address: str) -> grpc.aio.Channel:
    """A channel to another server whose caller sends the request id along and times its calls itself
    (observed.outgoing, observed.client_call_ended): the interceptor of `channel` costs each call a task."""
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def error_details(error: grpc.aio.AioRpcError) -> dict:
    """The FindFaceError.details a server attached to a failed call ({} when none)."""
    for key, value in error.trailing_metadata() or ():
        if key == DETAILS_KEY:
            return json.loads(value)
    return {}


def server_main(config_cls: type, section: str, config_path: str | None, overrides: dict,
                serve: Callable[[object], Awaitable[None] | None]) -> int:
    """The body of every server's `main`: load the config (file, environment, then the command line's non-empty
    `overrides`), set up logging and serve until signalled; `serve` may be a coroutine function or a plain one.
    Returns the exit code: 2 for a bad config, 1 when the server cannot start (models, licence, storage, a port
    in use), 0 after a clean stop."""
    from findface_grpc import config as config_mod  # config imports errors only; kept local to stay acyclic

    config = None
    exposition = None
    try:
        config = config_mod.load(config_cls, section, config_path, overrides={k: v for k, v in overrides.items() if v})
        try:
            exposition = observability.start(config, section)
        except OSError as exc:
            log.error("cannot serve /metrics on %s: %s", config.metrics_listen, exc)
            return 1
        running = serve(config)
        if inspect.isawaitable(running):
            asyncio.run(running)
    except config_mod.ConfigError as exc:
        log.error("%s", exc)
        return 2
    except FindFaceError as exc:
        log.error("cannot start: %s", exc.message)
        return 1
    except OSError as exc:
        log.error("cannot serve on %s: %s", getattr(config, "listen", "?"), exc)
        return 1
    finally:
        if exposition is not None:
            exposition.stop()
    return 0
