"""What operators see of every server: Prometheus metrics, request ids, traces and the log format.

- `metrics`: every metric, and the `/metrics` endpoint (`metrics_listen` in each server's table);
- `requestid`: the id a request gets at its first door and keeps across servers;
- `interceptors`: gRPC server and client interceptors carrying both; `wsgi`: the same for the HTTP servers;
- `tracing`: OpenTelemetry spans, when `otlp_endpoint` is set;
- `logs`: the human or JSON log lines; `gauges`: gauges read from a server's state when scraped; `mongo`:
  MongoDB command latency from the driver's own monitoring.

A server process calls `start(config, table)` once, where `config` has `log_level`, `log_format`,
`metrics_listen` and `otlp_endpoint` (rpc.server_main does it for every server of this package; another process,
such as a video detector, calls it likewise).
"""
from __future__ import annotations

from findface_grpc.config import is_address
from findface_grpc.errors import ConfigError
from findface_grpc.observability import logs, metrics, mongo, tracing


def start(config, table: str) -> metrics.Exposition | None:
    """Check the settings (ConfigError), set up logging, tracing when `otlp_endpoint` is set, and serve
    `/metrics` when `metrics_listen` is (OSError when its address is taken). Stop the returned exposition when
    the server stops (buffered spans are sent at exit)."""
    logs.check_format(table, config.log_format)
    metrics.check_listen(table, config.metrics_listen)
    if config.otlp_endpoint and not is_address(config.otlp_endpoint):
        raise ConfigError(f"[{table}].otlp_endpoint must be host:port (or empty: no tracing), "
                          f"not {config.otlp_endpoint!r}")
    logs.configure(config.log_level, config.log_format, table)
    mongo.watch()
    if config.otlp_endpoint:
        tracing.start(config.otlp_endpoint, table)
    return metrics.expose(config.metrics_listen, table) if config.metrics_listen else None
