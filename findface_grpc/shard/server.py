"""Shard server: `python -m findface_grpc.shard.server --listen H:P --tarantool H:P --shard-id ID [--snapshot-dir D]`.

Start its Tarantool first (`tarantool findface_grpc/shard/storage.lua`, see launch.tarantool_process); the server
waits up to tarantool_connect_timeout_s for it, rebuilds the index from it and only then reports SERVING.
"""
from __future__ import annotations

import argparse
import logging

from findface_grpc.license import client as license_client
from findface_grpc.observability import gauges
from findface_grpc.rpc import GrpcServer, run_until_signalled, server_main
from findface_grpc.shard.config import ShardConfig
from findface_grpc.shard.service import ShardService
from findface_grpc.shard.servicer import ShardServicer
from findface_grpc.shard.store import TarantoolStore
from findface_grpc.v1 import shard_pb2, shard_pb2_grpc

log = logging.getLogger(__name__)


async def start(
    config: ShardConfig, keeper: license_client.LeaseKeeper | None = None
) -> tuple[GrpcServer, ShardService]:
    """Reach Tarantool, rebuild the index and start serving; returns once the port is open and healthy.
    With a license lease keeper, calls are refused while the license does not allow serving."""
    host, port = config.tarantool_address
    service = ShardService(config, TarantoolStore(host, port, config.tarantool_timeout_s))
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    server = GrpcServer(config.listen, license_client.interceptors(keeper))
    server.add(
        shard_pb2_grpc.add_ShardServicer_to_server,
        ShardServicer(service),
        shard_pb2.DESCRIPTOR.services_by_name["Shard"].full_name,
    )
    port = await server.start()
    license_client.follow_health(keeper, server.health, shard_pb2.DESCRIPTOR.services_by_name["Shard"].full_name)
    gauges.watch_shard(service)
    log.info("shard %s serving on port %d with Tarantool at %s", config.shard_id, port, config.tarantool)
    return server, service


async def serve(config: ShardConfig) -> None:
    # The lease comes first: a shard past the licensed count exits before it rebuilds its index.
    keeper = await license_client.start_keeper(config.license_server, license_client.Kind.SHARD, config.shard_id,
                                               config.listen)
    server, service = await start(config, keeper)
    await run_until_signalled(server, license_client.stopping(service.stop, keeper))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="findface-grpc shard server")
    parser.add_argument("--config", help="TOML config file (its [shard] table)")
    parser.add_argument("--listen", help="host:port to listen on")
    parser.add_argument("--tarantool", help="host:port of this shard's Tarantool")
    parser.add_argument("--shard-id", help="name of this shard")
    parser.add_argument("--license-server", help="license server address, host:port")
    parser.add_argument("--snapshot-dir", help="folder for the index snapshot that makes restarts fast")
    args = parser.parse_args(argv)
    overrides = {"listen": args.listen, "tarantool": args.tarantool, "shard_id": args.shard_id,
        "license_server": args.license_server, "snapshot_dir": args.snapshot_dir}
    return server_main(ShardConfig, "shard", args.config, overrides, serve)


if __name__ == "__main__":
    raise SystemExit(main())
