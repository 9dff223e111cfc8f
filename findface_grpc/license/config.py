"""License server configuration: `[license]` in the config file, or FINDFACE_LICENSE_* variables."""
from __future__ import annotations

from dataclasses import dataclass

from findface_grpc.errors import ConfigError


@dataclass(frozen=True)
class LicenseConfig:
    listen: str = "127.0.0.1:50070"
    # The signed license file and the vendor's public key that must have signed it. Both empty: unlicensed
    # mode, with no limits (for trying the system out); Status says so.
    license_file: str = ""
    public_key: str = ""
    # Leases and face usage, so that a restart keeps them (see ledger.py).
    state_file: str = "var/license/state.json"
    # A component's lease runs out this long after its last heartbeat; components renew every third of it.
    lease_ttl_s: float = 30.0
    # How long components go on serving while they cannot reach this server (told to them in every lease).
    grace_period_s: float = 300.0
    # How often the license file is checked for changes (a renewed license is picked up without a restart)
    # and the clock against its expiry.
    recheck_interval_s: float = 5.0
    # A retried ReserveFaces/ReleaseFaces with the same idempotency key within this long is counted once.
    idempotency_window_s: float = 300.0
    # Prometheus metrics at http://<metrics_listen>/metrics ("host:port"; empty: none). The endpoint takes no
    # token: keep it on a private network.
    metrics_listen: str = ""
    # "text" (the default, for people) or "json" (one object a line: time, level, server, request id, message).
    log_format: str = "text"
    # OpenTelemetry: spans of every call served, to this OTLP/gRPC collector ("host:port"; empty: no tracing).
    # Needs the tracing extra: pip install -e .[tracing].
    otlp_endpoint: str = ""
    log_level: str = "INFO"

    def validate(self) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not (sep and host and port.isdigit() and int(port) < 65536):
            raise ConfigError(f"[license].listen must be host:port, not {self.listen!r}")
        if bool(self.license_file) != bool(self.public_key):
            raise ConfigError("[license].license_file and public_key are set together (or both left empty for "
                              "unlicensed mode)")
        if not self.state_file:
            raise ConfigError("[license].state_file must be set")
        if self.lease_ttl_s < 3:
            raise ConfigError("[license].lease_ttl_s must be >= 3 (components renew every third of it, in whole "
                              "seconds)")
        if self.grace_period_s < 0 or self.recheck_interval_s <= 0 or self.idempotency_window_s <= 0:
            raise ConfigError("[license] grace_period_s must be >= 0, recheck_interval_s and idempotency_window_s > 0")

    @property
    def unlicensed(self) -> bool:
        return not self.license_file

    @property
    def renew_interval_s(self) -> int:
        return max(1, int(self.lease_ttl_s // 3))
