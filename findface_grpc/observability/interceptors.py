"""gRPC interceptors: request ids in and out of every server, the per-RPC metrics, and spans when tracing is on.

`ServerInterceptor` is the outermost interceptor of every server (rpc.GrpcServer puts it first): it takes the
caller's `x-request-id` or makes one, keeps it in `requestid.current` for the call (so every log line about it
carries it), returns it in the trailing metadata, and counts and times the call, token check included. The
client interceptors send the current id (and span) on with every call a server makes to another, and the async
one times those calls per peer. The gateway's calls to its shards, its hot path, do the same without an
interceptor (`outgoing`, `client_call_ended`): grpc.aio runs each intercepted call as a task of its own.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import namedtuple

import grpc

from findface_grpc.observability import metrics, requestid, tracing

log = logging.getLogger(__name__)


def _names(method: str | bytes) -> tuple[str, str]:
    """("FaceService", "Identify") for "/findface_grpc.v1.FaceService/Identify"."""
    if isinstance(method, bytes):
        method = method.decode()
    service, _, name = method.lstrip("/").rpartition("/")
    return service.rpartition(".")[2], name


def _code_name(context: grpc.aio.ServicerContext, fallback: str) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return fallback


class _Call:
    """One served call: its request id, its labels, when it began and its caller's metadata."""

    __slots__ = ("rid", "service", "method", "started", "metadata")

    def __init__(self, rid: str, service: str, method: str, started: float, metadata) -> None:
        self.rid, self.service, self.method, self.started, self.metadata = rid, service, method, started, metadata

    def traced(self):
        if not tracing.enabled():
            return tracing.served("", {}, self.rid)
        carrier = {key: value for key, value in self.metadata or () if isinstance(value, str)}
        return tracing.served(f"{self.service}/{self.method}", carrier, self.rid)

    def begin(self, context: grpc.aio.ServicerContext) -> None:
        requestid.current.set(self.rid)
        context.set_trailing_metadata(((requestid.METADATA_KEY, self.rid),))

    def end(self, code: str) -> None:
        seconds = time.perf_counter() - self.started
        if metrics.recording():
            metrics.GRPC_REQUESTS.labels(self.service, self.method, code).inc()
            metrics.GRPC_SECONDS.labels(self.service, self.method).observe(seconds)
        # An access log for when one request must be followed through the servers (log_level = "DEBUG").
        log.debug("%s.%s -> %s (%.1f ms)", self.service, self.method, code, seconds * 1000)


def _unary(behavior, call: _Call):
    async def wrapper(request_or_iterator, context):
        call.begin(context)
        code = "UNKNOWN"
        with call.traced() as span:
            try:
                response = await behavior(request_or_iterator, context)
                code = _code_name(context, "OK")
                return response
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            finally:
                tracing.finish(span, code)
                call.end(code)

    return wrapper


def _streaming(behavior, call: _Call):
    async def wrapper(request_or_iterator, context):
        call.begin(context)
        code = "UNKNOWN"
        with call.traced() as span:
            try:
                async for item in behavior(request_or_iterator, context):
                    yield item
                code = _code_name(context, "OK")
            except (asyncio.CancelledError, GeneratorExit):
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = _code_name(context, "UNKNOWN")
                raise
            finally:
                tracing.finish(span, code)
                call.end(code)

    return wrapper


class ServerInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        started = time.perf_counter()
        rid = requestid.accept(requestid.from_metadata(handler_call_details.invocation_metadata))
        # Set while the inner interceptors run too: the token check's log lines are about this request.
        token = requestid.current.set(rid)
        try:
            handler = await continuation(handler_call_details)
        finally:
            requestid.current.reset(token)
        if handler is None:  # an unknown method: not counted, its name is the caller's to choose
            return None
        call = _Call(rid, *_names(handler_call_details.method), started, handler_call_details.invocation_metadata)
        deserializer, serializer = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, call), deserializer, serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, call), deserializer, serializer)
        behavior = handler.unary_stream or handler.stream_stream
        if not inspect.isasyncgenfunction(behavior):
            return handler
        factory = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                   else grpc.stream_stream_rpc_method_handler)
        return factory(_streaming(behavior, call), deserializer, serializer)


def outgoing(metadata=None):
    """The call's metadata plus the current request id and span, when there are."""
    rid = requestid.current.get()
    if not rid and not tracing.enabled():
        return metadata
    metadata = tuple(metadata) if metadata else ()
    return tracing.outgoing((*metadata, (requestid.METADATA_KEY, rid)) if rid else metadata)


def client_call_ended(peer: str, method: str, code: str, started: float) -> None:
    """Counts and times one call made to `peer` (started at perf_counter() `started`), ended with status `code`."""
    if metrics.recording():
        metrics.GRPC_CLIENT_REQUESTS.labels(peer, method, code).inc()
        metrics.GRPC_CLIENT_SECONDS.labels(peer, method).observe(time.perf_counter() - started)


class AioClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor,
                           grpc.aio.StreamUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor):
    """For the async servers' channels to `peer` (a name bounded by configuration: extractor, shard-3)."""

    def __init__(self, peer: str) -> None:
        self.peer = peer

    @staticmethod
    def _details(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(details.method, details.timeout, outgoing(details.metadata),
                                          details.credentials, details.wait_for_ready)

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        details = self._details(client_call_details)
        if not metrics.recording():
            return await continuation(details, request)
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            call = await continuation(details, request)
            code = (await call.code()).name
            return call
        except asyncio.CancelledError:  # the caller gave up waiting (the fan-out's deadline)
            code = "CANCELLED"
            raise
        finally:
            client_call_ended(self.peer, _names(client_call_details.method)[1], code, started)

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)

    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(self._details(client_call_details), request_iterator)


class _SyncDetails(namedtuple("_SyncDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                                               "compression")), grpc.ClientCallDetails):
    pass


class SyncClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                            grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """For the HTTP servers' blocking channels: the request id of the HTTP request being answered travels on."""

    @staticmethod
    def _details(details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _SyncDetails(details.method, details.timeout, outgoing(details.metadata), details.credentials,
                            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def sync_channel(channel: grpc.Channel) -> grpc.Channel:
    """`channel` with the current request id sent along on every call."""
    return grpc.intercept_channel(channel, SyncClientInterceptor())
