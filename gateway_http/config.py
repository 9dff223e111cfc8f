"""HTTP gateway configuration: `[http]` in the config file, or FINDFACE_HTTP_* variables."""
from __future__ import annotations

from dataclasses import dataclass

from findface_grpc.errors import ConfigError


def _is_address(value: str, any_port: bool = False) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and (0 if any_port else 1) <= int(port) < 65536)


@dataclass(frozen=True)
class HttpConfig:
    listen: str = "127.0.0.1:8000"
    # The gateway's gRPC FaceService, host:port.
    gateway: str = "127.0.0.1:50051"
    # Request bodies above this are answered 413 before they are read (the original's photo limit was 10 MB).
    max_body_mb: float = 10.0
    # Each FaceService call must answer within this.
    call_timeout_s: float = 60.0
    # Requests served at once; more wait in the listen queue.
    threads: int = 32
    # A client connection idle for this long is closed.
    socket_timeout_s: float = 30.0
    log_level: str = "INFO"

    @property
    def max_body_bytes(self) -> int:
        # MB as the extractor counts them (1e6 bytes), so that the two limits agree.
        return int(self.max_body_mb * 1_000_000)

    def validate(self) -> None:
        if not _is_address(self.listen, any_port=True):
            raise ConfigError(f"[http].listen must be host:port, not {self.listen!r}")
        if not _is_address(self.gateway):
            raise ConfigError(f"[http].gateway must be host:port, not {self.gateway!r}")
        if self.max_body_mb <= 0:
            raise ConfigError("[http].max_body_mb must be > 0")
        if self.call_timeout_s <= 0 or self.socket_timeout_s <= 0:
            raise ConfigError("[http].call_timeout_s and socket_timeout_s must be > 0")
        if not 1 <= self.threads <= 1024:
            raise ConfigError("[http].threads must be in 1..1024")
