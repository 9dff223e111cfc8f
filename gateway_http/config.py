"""HTTP gateway configuration: `[http]` in the config file, or FINDFACE_HTTP_* variables."""
from __future__ import annotations

from dataclasses import dataclass

from findface_grpc.config import is_address
from findface_grpc.errors import ConfigError

ORIGINAL_SCALE = "original"
COSINE_SCALE = "cosine"


@dataclass(frozen=True)
class HttpConfig:
    listen: str = "127.0.0.1:8000"
    # The gateway's gRPC FaceService, host:port.
    gateway: str = "127.0.0.1:50051"
    # The license server, host:port, whose status /license.json shows; empty: the page answers 404.
    license_server: str = ""
    # Request bodies above this are answered 413 before they are read (the original's photo limit was 10 MB).
    max_body_mb: float = 10.0
    # Each FaceService call must answer within this.
    call_timeout_s: float = 60.0
    # Requests answered at once (worker threads); more wait, whole, for a free one. Connections, and requests
    # still arriving, take no thread (gateway_http.serving).
    threads: int = 32
    # Connections open at once; one more is answered 503 at once and closed. The open-file limit is raised to
    # fit (two descriptors per connection), up to the hard limit.
    max_connections: int = 1000
    # A client connection with nothing in progress (an idle keep-alive, or nothing sent yet) is closed after this.
    socket_timeout_s: float = 30.0
    # A request's headers must arrive within header_timeout_s of its first byte, the whole request (body
    # included) within request_timeout_s; a slower client is answered 408 and its connection closed.
    header_timeout_s: float = 10.0
    request_timeout_s: float = 120.0
    # The scale of confidences and of numeric thresholds: "original", FindFace's (its 0.75 or 0.6616 mean what
    # they meant there; docs/thresholds.md), or "cosine", the gateway's raw confidence, as gRPC clients see it.
    confidence_scale: str = ORIGINAL_SCALE
    # The status.json of the findface-cluster launcher that started this cluster (it sets this): GET /status then
    # shows which of its processes run, restart or were given up on. Empty: no launcher.
    launcher_status_file: str = ""
    # Prometheus metrics at http://<metrics_listen>/metrics ("host:port"; empty: none). The endpoint takes no
    # token: keep it on a private network.
    metrics_listen: str = ""
    # "text" (the default, for people) or "json" (one object a line: time, level, server, request id, message).
    log_format: str = "text"
    # OpenTelemetry: spans of every call served, to this OTLP/gRPC collector ("host:port"; empty: no tracing).
    # Needs the tracing extra: pip install -e .[tracing].
    otlp_endpoint: str = ""
    log_level: str = "INFO"

    @property
    def max_body_bytes(self) -> int:
        # MB as the extractor counts them (1e6 bytes), so that the two limits agree.
        return int(self.max_body_mb * 1_000_000)

    def validate(self) -> None:
        if not is_address(self.listen, any_port=True):
            raise ConfigError(f"[http].listen must be host:port, not {self.listen!r}")
        if not is_address(self.gateway):
            raise ConfigError(f"[http].gateway must be host:port, not {self.gateway!r}")
        if self.license_server and not is_address(self.license_server):
            raise ConfigError(f"[http].license_server must be host:port, not {self.license_server!r}")
        if self.max_body_mb <= 0:
            raise ConfigError("[http].max_body_mb must be > 0")
        if self.call_timeout_s <= 0 or self.socket_timeout_s <= 0:
            raise ConfigError("[http].call_timeout_s and socket_timeout_s must be > 0")
        if not 1 <= self.threads <= 1024:
            raise ConfigError("[http].threads must be in 1..1024")
        _check_connections("http", self.max_connections, self.header_timeout_s, self.request_timeout_s)
        if self.confidence_scale not in (ORIGINAL_SCALE, COSINE_SCALE):
            raise ConfigError(f"[http].confidence_scale must be {ORIGINAL_SCALE!r} or {COSINE_SCALE!r}")


def _check_connections(table: str, max_connections: int, header_timeout_s: float, request_timeout_s: float) -> None:
    if not 1 <= max_connections <= 1_000_000:
        raise ConfigError(f"[{table}].max_connections must be in 1..1000000")
    if not 0 < header_timeout_s <= request_timeout_s:
        raise ConfigError(f"[{table}].header_timeout_s must be > 0 and at most request_timeout_s")


SKIP = "skip"
ENROLL = "enroll"


@dataclass(frozen=True)
class UploadConfig:
    """`[upload]` in the config file, or FINDFACE_UPLOAD_* variables: the photo store and drop folder."""

    listen: str = "127.0.0.1:3333"
    # The folder served over WebDAV: photos/, faces/, dropbox/ (and a hidden .upload-state/ for bookkeeping).
    root: str = "var/upload"
    # The gateway's gRPC FaceService, host:port, and the API token the drop folder enrolls with.
    gateway: str = "127.0.0.1:50051"
    gateway_token: str = ""
    # Who may use WebDAV (HTTP basic auth): any user name with a live API token as the password, checked in the
    # gateway's metadata database (empty mongo_uri: no token check), and the users listed here as "name:password".
    mongo_uri: str = ""
    mongo_db: str = "findface"
    users: tuple[str, ...] = ()
    # The store's service identity, the only one that may write, delete or list photos/ and faces/ (ordinary
    # tokens and users keep the drop folder): the users of `users` named here, and whoever presents the live API
    # token `gateway_token` (the launcher gives the gateway that same token as its upload_password).
    service_users: tuple[str, ...] = ("gateway",)
    # GET and HEAD of stored photos, thumbnails and normalized crops (the URLs in face objects) without
    # credentials, as the original served them; everything else, the drop folder above all, needs credentials.
    public_reads: bool = True
    # Largest file accepted by PUT (MB of 1e6 bytes, as the extractor counts them).
    max_file_mb: float = 10.0
    # A photo dropped again into the same gallery whose faces are still enrolled: "skip" it or "enroll" it again.
    duplicates: str = SKIP
    # A drop into a folder whose gallery does not exist creates the gallery (else the drop is rejected).
    create_galleries: bool = True
    # Which faces of a dropped photo are enrolled: "all" or "biggest".
    multi_face: str = "all"
    call_timeout_s: float = 60.0
    # A drop the cluster could not take ("failed": gateway down, timeout, a file unreadable) is retried in the
    # background: retry_initial_s after the first attempt, the wait doubling up to retry_max_interval_s, until
    # retry_max_hours after the first attempt (0: never retried); then its result says it gave up.
    retry_initial_s: float = 5.0
    retry_max_interval_s: float = 300.0
    retry_max_hours: float = 24.0
    # Requests answered at once (worker threads; the drop folder's enrollments use half of them at most).
    threads: int = 16
    # As in [http]: connections open at once (more are answered 503), how long one with nothing in progress
    # stays open, and within how long a request's headers, then the whole request, must arrive (else 408).
    max_connections: int = 1000
    socket_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    request_timeout_s: float = 120.0
    # Prometheus metrics at http://<metrics_listen>/metrics ("host:port"; empty: none). The endpoint takes no
    # token: keep it on a private network.
    metrics_listen: str = ""
    # "text" (the default, for people) or "json" (one object a line: time, level, server, request id, message).
    log_format: str = "text"
    # OpenTelemetry: spans of every call served, to this OTLP/gRPC collector ("host:port"; empty: no tracing).
    # Needs the tracing extra: pip install -e .[tracing].
    otlp_endpoint: str = ""
    log_level: str = "INFO"

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1_000_000)

    def validate(self) -> None:
        if not is_address(self.listen, any_port=True):
            raise ConfigError(f"[upload].listen must be host:port, not {self.listen!r}")
        if not is_address(self.gateway):
            raise ConfigError(f"[upload].gateway must be host:port, not {self.gateway!r}")
        if not self.root:
            raise ConfigError("[upload].root must name a folder")
        for user in self.users:
            name, sep, password = user.partition(":")
            if not (sep and name and password):
                raise ConfigError("[upload].users entries must be \"name:password\"")
        for name in self.service_users:
            if not name or ":" in name:
                raise ConfigError("[upload].service_users must be user names of [upload].users (no \":\")")
        if self.max_file_mb <= 0:
            raise ConfigError("[upload].max_file_mb must be > 0")
        if self.duplicates not in (SKIP, ENROLL):
            raise ConfigError(f"[upload].duplicates must be {SKIP!r} or {ENROLL!r}")
        if self.multi_face not in ("all", "biggest"):
            raise ConfigError("[upload].multi_face must be \"all\" or \"biggest\"")
        if self.call_timeout_s <= 0 or self.socket_timeout_s <= 0:
            raise ConfigError("[upload].call_timeout_s and socket_timeout_s must be > 0")
        if not 2 <= self.threads <= 1024:
            raise ConfigError("[upload].threads must be in 2..1024")
        _check_connections("upload", self.max_connections, self.header_timeout_s, self.request_timeout_s)
        if not 0 < self.retry_initial_s <= self.retry_max_interval_s:
            raise ConfigError("[upload].retry_initial_s must be > 0 and at most retry_max_interval_s")
        if not 0 <= self.retry_max_hours <= 24 * 365:
            raise ConfigError("[upload].retry_max_hours must be in 0..8760")
