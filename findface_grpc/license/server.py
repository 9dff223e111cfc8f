"""License server: `python -m findface_grpc.license.server --listen H:P --public-key PUB --license FILE` or
`serve(config)`. Without --license/--public-key (and none in the config) it runs in unlicensed mode.
"""
from __future__ import annotations

import argparse
import asyncio
import logging

from findface_grpc.license.config import LicenseConfig
from findface_grpc.license.service import LicenseService
from findface_grpc.license.servicer import LicenseServicer
from findface_grpc.observability import gauges
from findface_grpc.rpc import GrpcServer, run_until_signalled, server_main
from findface_grpc.v1 import license_pb2, license_pb2_grpc

log = logging.getLogger(__name__)


async def start(config: LicenseConfig) -> tuple[GrpcServer, LicenseService, asyncio.Task]:
    service = LicenseService(config)
    server = GrpcServer(config.listen)
    server.add(
        license_pb2_grpc.add_LicenseServicer_to_server,
        LicenseServicer(service),
        license_pb2.DESCRIPTOR.services_by_name["License"].full_name,
    )
    port = await server.start()
    recheck = asyncio.create_task(service.recheck_loop(), name="license-recheck")
    gauges.watch_license(service)
    log.info("license server on port %d (%s), state in %s, leases of %gs", port,
             "unlicensed mode" if config.unlicensed else f"license {service.source}", config.state_file,
             config.lease_ttl_s)
    return server, service, recheck


async def serve(config: LicenseConfig) -> None:
    server, service, recheck = await start(config)

    async def on_stop() -> None:
        recheck.cancel()
        service.close()

    await run_until_signalled(server, on_stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="findface-grpc license server")
    parser.add_argument("--config", help="TOML config file (its [license] table)")
    parser.add_argument("--listen", help="host:port to listen on")
    parser.add_argument("--license", dest="license_file", help="the signed license file")
    parser.add_argument("--public-key", help="the vendor's public key (PEM) that signed it")
    parser.add_argument("--state-file", help="where leases and face usage are kept")
    args = parser.parse_args(argv)
    overrides = {"listen": args.listen, "license_file": args.license_file, "public_key": args.public_key,
        "state_file": args.state_file}
    return server_main(LicenseConfig, "license", args.config, overrides, serve)


if __name__ == "__main__":
    raise SystemExit(main())
