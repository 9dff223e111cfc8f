"""Gateway server: `python -m findface_grpc.gateway.server [--config FILE] ...` or `serve(config)`."""
from __future__ import annotations

import argparse
import logging

from findface_grpc.auth import AuthInterceptor, TokenStore
from findface_grpc.gateway.cells import CellMap
from findface_grpc.gateway.clients import ExtractorClient, ShardClient
from findface_grpc.gateway.cluster import Cluster
from findface_grpc.gateway.config import GatewayConfig
from findface_grpc.gateway.metadata import MetadataStore, redact
from findface_grpc.gateway.service import GatewayService
from findface_grpc.gateway.servicer import FaceServicer
from findface_grpc.gateway.video_servicer import VideoServicer
from findface_grpc.license.quota import face_quota
from findface_grpc.rpc import GrpcServer, run_until_signalled, server_main
from findface_grpc.v1 import gateway_pb2, gateway_pb2_grpc, video_pb2, video_pb2_grpc

log = logging.getLogger(__name__)


def build_service(config: GatewayConfig) -> GatewayService:
    """The domain service with its clients, nothing started. Call it on the event loop that will run it: the
    grpc.aio channels it opens belong to the loop they are made on."""
    return GatewayService(Cluster(
        config,
        MetadataStore(config.mongo_uri, config.mongo_db, config.mongo_timeout_s),
        ExtractorClient(config.extractor, config.extractor_timeout_s),
        [ShardClient(i, address, config.shard_timeout_s, config.shard_max_in_flight, config.shard_searches_at_once)
         for i, address in enumerate(config.shards)],
        CellMap.from_config(config.cells, len(config.shards), config.cell_map),
        quota=face_quota(config.license_server, config.license_reconcile_interval_s),
    ))


async def start(config: GatewayConfig, service: GatewayService | None = None) -> tuple[GrpcServer, GatewayService]:
    """Prepare the metadata store, repair what a previous run left, and start serving."""
    service = service or build_service(config)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    interceptors = []
    tokens = None
    if config.require_tokens:
        # Tokens live beside the metadata, on the same client; verification runs off the event loop.
        tokens = TokenStore(service.cluster.metadata.db, config.token_cache_ttl_s,
                            outage=service.cluster.metadata.outage)
        interceptors.append(AuthInterceptor(tokens))
    else:
        log.warning("require_tokens is off: every caller is trusted; only for a gateway on a trusted network")
    server = GrpcServer(config.listen, interceptors)
    server.add(
        gateway_pb2_grpc.add_FaceServiceServicer_to_server,
        FaceServicer(service, tokens),
        gateway_pb2.DESCRIPTOR.services_by_name["FaceService"].full_name,
    )
    server.add(
        video_pb2_grpc.add_VideoServiceServicer_to_server,
        VideoServicer(service, tokens),
        video_pb2.DESCRIPTOR.services_by_name["VideoService"].full_name,
    )
    port = await server.start()
    log.info("gateway serving on port %d: %d shards, %d cells, extractor %s, metadata database %r at %s",
             port, len(config.shards), config.cells, config.extractor, config.mongo_db, redact(config.mongo_uri))
    return server, service


async def serve(config: GatewayConfig) -> None:
    server, service = await start(config)
    await run_until_signalled(server, service.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="findface-grpc gateway server (FaceService)")
    parser.add_argument("--config", help="TOML config file (its [gateway] table)")
    parser.add_argument("--listen", help="host:port to listen on")
    parser.add_argument("--extractor", help="extractor address, host:port")
    parser.add_argument("--shards", help="shard addresses in shard order, comma separated")
    parser.add_argument("--mongo-uri", help="MongoDB URI of the metadata store")
    parser.add_argument("--license-server", help="license server address, host:port (face quota)")
    args = parser.parse_args(argv)
    overrides = {"listen": args.listen, "extractor": args.extractor, "shards": args.shards, "mongo_uri": args.mongo_uri,
        "license_server": args.license_server}
    return server_main(GatewayConfig, "gateway", args.config, overrides, serve)


if __name__ == "__main__":
    raise SystemExit(main())
