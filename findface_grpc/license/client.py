"""What licensed components use of the license server: a lease keeper for extractors, shards and video detectors
(face quota, for gateways, is in quota.py).

LeaseKeeper: a licensed component acquires a lease at start (refused: the process does not start, and says
why), then renews it in the background every renew interval the server names. It knows whether the component
may serve:
- the server answered the last heartbeat: yes;
- the server cannot be reached: yes for the grace period the server named, counted from the last answer; after
  that new calls are refused with UNAVAILABLE ("license server ... unreachable") and health says NOT_SERVING,
  until it answers again;
- the server refuses (license invalid or expired, or the lease lapsed and the slot went to another component):
  no, at once, with FAILED_PRECONDITION and the server's reason; the keeper goes on asking and serves again
  when it gets a lease.
LicenseInterceptor turns that into refusals of every call but health checks and reflection.
A video detector's lease also holds cameras: it says how many it would run (`want`), and `cameras` is how many the
license lets it run, as of the last grant or renewal.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2

from findface_grpc.errors import (
    FailedPrecondition,
    FindFaceError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from findface_grpc.license.ledger import Kind
from findface_grpc.observability import gauges
from findface_grpc.rpc import channel, error_details
from findface_grpc.tasks import cancel_and_wait
from findface_grpc.v1 import license_pb2, license_pb2_grpc

__all__ = ["Kind", "LeaseKeeper", "LicenseInterceptor", "Connection", "start_keeper", "interceptors",
           "follow_health", "stop_keeper", "instance_id"]

log = logging.getLogger(__name__)

KIND_PB = {
    Kind.EXTRACTOR: license_pb2.COMPONENT_KIND_EXTRACTOR,
    Kind.SHARD: license_pb2.COMPONENT_KIND_SHARD,
    Kind.GATEWAY: license_pb2.COMPONENT_KIND_GATEWAY,
    Kind.VIDEO: license_pb2.COMPONENT_KIND_VIDEO,
}
EXEMPT_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _error(address: str, exc: grpc.aio.AioRpcError) -> FindFaceError:
    code, text = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(text, details=error_details(exc))
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(text)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(text)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(text)
    return Unavailable(f"license server {address} unreachable ({code.name}: {text})",
                       details={"cause": f"{code.name}: {text}"})


class Connection:
    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.channel = channel(address, "license")
        self.stub = license_pb2_grpc.LicenseStub(self.channel)

    async def call(self, method: str, request):
        try:
            return await getattr(self.stub, method)(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _error(self.address, exc) from None

    async def close(self) -> None:
        await self.channel.close()


def instance_id(name: str, listen: str) -> str:
    """A component's stable name for its lease: the same after a restart (so it takes back its own slot), and
    different for every process that serves at the same time."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = socket.gethostname()
    if port in ("", "0"):
        # The port is picked at start, so nothing stable names this process; its pid tells it apart.
        return f"{name}@{host}#{os.getpid()}"
    return f"{name}@{host}:{port}"


class LeaseKeeper:
    def __init__(
        self,
        address: str,
        kind: Kind,
        instance: str,
        connect_timeout_s: float = 30.0,
        call_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.kind = kind
        self.instance = instance
        self.connect_timeout_s = connect_timeout_s
        self.clock = clock
        self._conn = Connection(address, call_timeout_s)
        self._lease_id = ""
        self._interval = 10.0
        self._grace = 0.0
        self._last_ok = -float("inf")
        self._refusal: FindFaceError | None = None
        self._outage: str = ""
        self._serving = False
        self._features: frozenset[str] | None = frozenset()  # None: every feature (unlicensed mode)
        self._cameras_wanted = 0
        self._cameras = 0
        self._watchers: list[Callable[[bool], Awaitable[None] | None]] = []
        self._task: asyncio.Task | None = None

    # ---- state ----

    def refusal(self) -> FindFaceError | None:
        """Why this component must not take new work now, or None when it may."""
        if self._refusal is not None:
            return FailedPrecondition(f"license: {self._refusal.message}")
        silent = self.clock() - self._last_ok
        if silent > self._grace:
            return Unavailable(
                f"license server {self.address} unreachable for {silent:.0f}s and the grace period of "
                f"{self._grace:.0f}s is over; not taking new work until it answers (last error {self._outage})"
            )
        return None

    @property
    def serving(self) -> bool:
        """What health last said (may lag `refusal()` until `sync`)."""
        return self._serving

    @property
    def may_serve(self) -> bool:
        return self.refusal() is None

    def unanswered_s(self) -> float:
        """Seconds since the license server last answered."""
        return self.clock() - self._last_ok

    @property
    def grace_period_s(self) -> float:
        return self._grace

    def check(self) -> None:
        error = self.refusal()
        if error is not None:
            raise error

    def require_feature(self, feature: str) -> None:
        """FailedPrecondition naming the feature when the license (as of the last grant or renewal) lacks it."""
        if self._features is not None and feature not in self._features:
            raise FailedPrecondition(
                f"license: the license does not include the feature {feature!r}"
                f" (it has: {', '.join(sorted(self._features)) or 'none'})",
                details={"feature": feature},
            )

    @property
    def cameras(self) -> int:
        """The cameras this (video detector's) lease holds, as of the last grant or renewal."""
        return self._cameras

    async def want(self, cameras: int) -> int:
        """Ask for `cameras` now (a renewal, when the number changed) and return how many the lease holds; when
        the server cannot be reached, what it last granted stands."""
        if cameras != self._cameras_wanted:
            self._cameras_wanted = cameras
            await self.heartbeat()
        return self._cameras

    def watch(self, callback: Callable[[bool], Awaitable[None] | None]) -> None:
        """callback(may_serve) whenever that changes."""
        self._watchers.append(callback)

    # ---- life cycle ----

    async def start(self) -> None:
        """Acquire the lease, waiting up to connect_timeout_s for the server; raises when refused."""
        deadline = self.clock() + self.connect_timeout_s
        while True:
            try:
                self._accept(await self._acquire())
                break
            except Unavailable as exc:
                if self.clock() >= deadline:
                    await self._conn.close()
                    raise Unavailable(f"license: {exc.message}; gave up after {self.connect_timeout_s:.0f}s") from None
                log.info("waiting for the license server at %s", self.address)
                await asyncio.sleep(0.5)
            except (ResourceExhausted, FailedPrecondition, InvalidArgument) as exc:
                await self._conn.close()
                raise type(exc)(f"license: {exc.message}", details=exc.details) from None
        self._serving = True
        log.info("license lease for %s %s; renewed every %.0fs, grace period %.0fs", self.kind.value, self.instance,
                 self._interval, self._grace)
        self._task = asyncio.create_task(self._loop(), name="license-lease")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._lease_id:
            try:
                await self._conn.call("ReleaseLease", license_pb2.ReleaseLeaseRequest(lease_id=self._lease_id))
            except FindFaceError as exc:
                log.warning("could not give the license lease back (%s); it runs out by itself", exc.message)
        await self._conn.close()

    # ---- heartbeat ----

    async def _acquire(self) -> license_pb2.Lease:
        return await self._conn.call(
            "AcquireLease", license_pb2.AcquireLeaseRequest(kind=KIND_PB[self.kind], instance_id=self.instance,
                                                            cameras=self._cameras_wanted)
        )

    def _accept(self, lease: license_pb2.Lease) -> None:
        self._lease_id = lease.lease_id
        self._interval = float(max(1, lease.renew_interval_s))
        self._grace = float(lease.grace_period_s)
        self._features = None if lease.all_features else frozenset(lease.features)
        self._cameras = lease.cameras
        self._last_ok = self.clock()
        self._refusal = None
        self._outage = ""

    async def heartbeat(self) -> None:
        """One renewal (or acquisition, when the lease is gone), then tell watchers if serving changed."""
        try:
            if not self._lease_id:
                raise NotFound("no lease")
            self._accept(await self._conn.call(
                "RenewLease", license_pb2.RenewLeaseRequest(lease_id=self._lease_id, cameras=self._cameras_wanted)))
        except NotFound:
            self._lease_id = ""
            try:
                self._accept(await self._acquire())
            except (ResourceExhausted, FailedPrecondition, InvalidArgument) as exc:
                self._refusal = exc
                self._last_ok = self.clock()
            except Unavailable as exc:
                self._outage = exc.details.get("cause", exc.message)
        except (FailedPrecondition, InvalidArgument) as exc:
            self._refusal = exc
            self._last_ok = self.clock()
        except Unavailable as exc:
            self._outage = exc.details.get("cause", exc.message)
        await self._notify()

    async def sync(self) -> None:
        """Bring health (the watchers) in line with `refusal()` now, e.g. the moment a call is refused because
        the grace period ran out between two heartbeats."""
        await self._notify()

    async def _notify(self) -> None:
        error = self.refusal()
        serving = error is None
        if serving == self._serving:
            return
        self._serving = serving
        if serving:
            log.info("license: %s %s may serve again", self.kind.value, self.instance)
        else:
            log.error("license: %s %s stops taking new work: %s", self.kind.value, self.instance, error.message)
        for callback in self._watchers:
            result = callback(serving)
            if inspect.isawaitable(result):
                await result

    async def _loop(self) -> None:
        """Heartbeat every interval; in between, wake up when the grace period runs out, so that health says
        NOT_SERVING then and not at the next heartbeat."""
        next_beat = self.clock() + self._interval
        while True:
            now = self.clock()
            wake = next_beat
            grace_end = self._last_ok + self._grace
            if self._serving and now < grace_end < wake:
                wake = grace_end + 0.001
            await asyncio.sleep(max(0.0, wake - now))
            if self.clock() < next_beat:
                await self._notify()
                continue
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the heartbeat must outlive one unexpected failure
                log.exception("license heartbeat failed")
            next_beat = self.clock() + self._interval


class LicenseInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call (but health checks and reflection) while the keeper says the component may not serve."""

    def __init__(self, keeper: LeaseKeeper) -> None:
        self.keeper = keeper

    async def _refuse(self, context: grpc.aio.ServicerContext) -> None:
        error = self.keeper.refusal()
        if (error is None) != self.keeper.serving:
            await self.keeper.sync()  # health changes before this call is answered, not at the next heartbeat
        if error is not None:
            await context.abort(grpc.StatusCode[error.code], error.message)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(EXEMPT_METHODS):
            return handler
        refuse = self._refuse

        def unary(behavior):
            async def wrapper(request, context):
                await refuse(context)
                return await behavior(request, context)

            return wrapper

        def streaming(behavior):
            if not inspect.isasyncgenfunction(behavior):
                return unary(behavior)

            async def wrapper(request, context):
                await refuse(context)
                async for item in behavior(request, context):
                    yield item

            return wrapper

        ser, deser = handler.response_serializer, handler.request_deserializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), deser, ser)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), deser, ser)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), deser, ser)
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), deser, ser)


# ---- what the extractor and shard servers call (each a no-op without a license server) ----

async def start_keeper(address: str, kind: Kind, name: str, listen: str) -> LeaseKeeper | None:
    """The started lease keeper of a component, or None when no license server is configured."""
    if not address:
        return None
    keeper = LeaseKeeper(address, kind, instance_id(name, listen))
    await keeper.start()
    gauges.watch_lease(keeper)
    return keeper


def interceptors(keeper: LeaseKeeper | None) -> list[grpc.aio.ServerInterceptor]:
    return [LicenseInterceptor(keeper)] if keeper is not None else []


def follow_health(keeper: LeaseKeeper | None, health, *service_names: str) -> None:
    """Health checks of these services (and the server's overall one) say NOT_SERVING while refused."""
    if keeper is None:
        return

    async def set_health(serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *service_names):
            await health.set(name, status)

    keeper.watch(set_health)


def stopping(stop: Callable[[], Awaitable[None]], keeper: LeaseKeeper | None) -> Callable[[], Awaitable[None]]:
    """`stop`, then the lease given back."""

    async def both() -> None:
        await stop()
        await stop_keeper(keeper)

    return both


async def stop_keeper(keeper: LeaseKeeper | None) -> None:
    if keeper is not None:
        await keeper.stop()
