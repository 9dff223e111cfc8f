"""HTTP gateway server: `python -m gateway_http.server [--config FILE] [--listen H:P] [--gateway H:P]`.

Serves the legacy facenapi JSON API (gateway_http.app) with waitress (gateway_http.serving: one I/O thread for
every connection, `threads` workers for requests that arrived whole, deadlines and a connection cap against slow
clients), translating each request into one call of the gateway's gRPC FaceService. Stops on SIGTERM or SIGINT,
letting requests in progress finish.

What the server answers by itself is in the legacy error shape too: a malformed request 400 `BAD_REQUEST`,
headers over 64 KB 431 `BAD_REQUEST`, a request too slow to arrive 408 `REQUEST_TIMEOUT`, a connection beyond
`max_connections` 503 `SERVICE_UNAVAILABLE`. A body over `max_body_mb` is answered by the application, as always
(413 `BODY_TOO_LARGE`), from its headers, without reading it.
"""
from __future__ import annotations

import argparse
import json
import logging

from findface_grpc.observability.wsgi import Observed
from findface_grpc.rpc import server_main
from gateway_http.app import LegacyApp
from gateway_http.config import HttpConfig
from gateway_http.errors import BAD_REQUEST, BODY_TOO_LARGE, INTERNAL_ERROR, REQUEST_TIMEOUT, SERVICE_UNAVAILABLE
from gateway_http.serving import Limits, Server, make_server as make_waitress, serve_until_signalled

log = logging.getLogger(__name__)


# The codes of the answers the server makes itself (gateway_http.serving), by status.
SERVER_CODES = {408: REQUEST_TIMEOUT, 413: BODY_TOO_LARGE, 500: INTERNAL_ERROR, 503: SERVICE_UNAVAILABLE}


def error_body(status: int, reason: str) -> tuple[str, bytes]:
    """The legacy error JSON for an answer the server makes itself."""
    body = {"code": SERVER_CODES.get(status, BAD_REQUEST), "reason": reason[:200]}
    return "application/json", json.dumps(body).encode()


def limits(config: HttpConfig) -> Limits:
    return Limits(threads=config.threads, max_connections=config.max_connections,
                  idle_timeout_s=config.socket_timeout_s, header_timeout_s=config.header_timeout_s,
                  request_timeout_s=config.request_timeout_s, max_body_bytes=config.max_body_bytes)


def make_server(config: HttpConfig, app: LegacyApp | None = None) -> Server:
    # Bodies over max_body_bytes reach the application empty, from their headers: it answers them with the
    # legacy error JSON (413 BODY_TOO_LARGE).
    return make_waitress(Observed(app or LegacyApp(config)), config.listen, "findface-http", limits(config),
                         error_body=error_body)


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
