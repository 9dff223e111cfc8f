"""What operators see of every server: Prometheus metrics, request ids and the log format.

- `metrics`: every metric, and the `/metrics` endpoint (`metrics_listen` in each server's table);
- `requestid`: the id a request gets at its first door and keeps across servers;
- `interceptors`: gRPC server and client interceptors carrying both; `wsgi`: the same for the HTTP servers;
- `logs`: the human or JSON log lines; `gauges`: gauges read from a server's state when scraped; `mongo`:
  MongoDB command latency from the driver's own monitoring.

A server process calls `start(config, table)` once, where `config` has `log_level`, `log_format` and
`metrics_listen` (rpc.server_main does it for every server of this package; another process, such as a video
detector, calls it likewise).
"""
from __future__ import annotations

from findface_grpc.observability import logs, metrics, mongo


def start(config, table: str) -> metrics.Exposition | None:
    """Check the settings (ConfigError), set up logging, and serve `/metrics` when `metrics_listen` is set
    (OSError when its address is taken). Stop the returned exposition when the server stops."""
    logs.check_format(table, config.log_format)
    metrics.check_listen(table, config.metrics_listen)
    logs.configure(config.log_level, config.log_format, table)
    mongo.watch()
    return metrics.expose(config.metrics_listen) if config.metrics_listen else None
