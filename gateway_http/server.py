"""HTTP gateway server: `python -m gateway_http.server [--config FILE] [--listen H:P] [--gateway H:P]`.

Serves the legacy facenapi JSON API (gateway_http.app) with cheroot's threaded WSGI server, translating each
request into one call of the gateway's gRPC FaceService. Stops on SIGTERM or SIGINT, letting requests in
progress finish.
"""
from __future__ import annotations

import argparse
import logging

from cheroot import wsgi

from findface_grpc.rpc import server_main
from gateway_http.app import LegacyApp
from gateway_http.config import HttpConfig
from gateway_http.serving import serve_until_signalled

log = logging.getLogger(__name__)


def make_server(config: HttpConfig, app: LegacyApp | None = None) -> wsgi.Server:
    host, _, port = config.listen.rpartition(":")
    server = wsgi.Server(
        (host.strip("[]"), int(port)),
        app or LegacyApp(config),
        numthreads=config.threads,
        server_name="findface-http",
        request_queue_size=128,
        timeout=int(max(1, config.socket_timeout_s)),
        shutdown_timeout=5,
    )
    # The application answers oversized bodies itself, with the legacy error JSON; cheroot's own check would
    # answer first, in plain text.
    server.max_request_body_size = 0
    return server


def serve(config: HttpConfig) -> None:
    app = LegacyApp(config)
    server = make_server(config, app)
    try:
        serve_until_signalled(server, "http", config.listen,
                              f"HTTP gateway serving on %s:%d, gateway {config.gateway}")
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="findface-grpc HTTP gateway: the legacy facenapi JSON API")
    parser.add_argument("--config", help="TOML config file (its [http] table)")
    parser.add_argument("--listen", help="host:port to listen on (default 127.0.0.1:8000)")
    parser.add_argument("--gateway", help="the gateway's gRPC address, host:port (default 127.0.0.1:50051)")
    parser.add_argument("--license-server", help="the license server's address, for /license.json")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in {"listen": args.listen, "gateway": args.gateway,
                                   "license_server": args.license_server}.items() if v}
    return server_main(HttpConfig, "http", args.config, overrides, serve)


if __name__ == "__main__":
    raise SystemExit(main())
