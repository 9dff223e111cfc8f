"""Shard configuration: `[shard]` in the config file, or FINDFACE_SHARD_* variables."""
from __future__ import annotations

import re
from dataclasses import dataclass

from findface_grpc.errors import ConfigError

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$")


def split_host_port(value: str, what: str) -> tuple[str, int]:
    match = _HOST_PORT.match(value)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ConfigError(f"{what} must be host:port, not {value!r}")
    return match.group(1).strip("[]"), int(match.group(2))


@dataclass(frozen=True)
class ShardConfig:
    listen: str = "127.0.0.1:50061"
    # Names this shard in Stats and logs; the gateway's shard list decides which cells it owns.
    shard_id: str = "shard-0"
    # The shard's own Tarantool (running findface_grpc/shard/storage.lua), host:port.
    tarantool: str = "127.0.0.1:3301"
    # The model whose descriptors this shard holds. Both empty: the shard adopts the model of its first Add and
    # keeps it in Tarantool. Set: a Tarantool that already holds another model is refused at start.
    model_id: str = ""
    dim: int = 0
    # Most queries (from all concurrent Search calls of one gallery) scored in one pass over the index.
    search_batch_max: int = 64
    # Search passes that may run at once; each uses the BLAS threads, so more than one helps only on big machines.
    search_workers: int = 1
    # One Tarantool call (a 10000-face Add, a page of the rebuild scan) may take this long before it is abandoned.
    tarantool_timeout_s: float = 30.0
    # How long start-up waits for Tarantool to answer before giving up.
    tarantool_connect_timeout_s: float = 60.0
    # Faces per page when the index is rebuilt from Tarantool at start. Pages of a few MB stay in the CPU caches
    # while they are copied along; much bigger pages rebuild slower, not faster.
    rebuild_page: int = 4000
    # Where the index's snapshot is kept (snapshot.py); empty: no snapshots, every start rebuilds from Tarantool.
    snapshot_dir: str = ""
    # A snapshot is taken this often when faces changed since the last one, and at every clean stop.
    snapshot_interval_s: float = 300.0
    # A gallery with at least this many faces on this shard gets a fast index (ann.py), built in the background.
    # Counted per shard: a gallery of N faces over S shards holds about N / S on each. Operators can build or
    # drop one for any gallery at any size (findface-index).
    fast_index_min_faces: int = 1_000_000
    # Lists a fast-index search reads per query: more finds more of the true top k, and costs more.
    fast_index_nprobe: int = 32
    # How often faces enrolled since a fast index was built are merged into its lists (and new builds are due),
    # and at most how many per merge.
    fast_index_check_s: float = 5.0
    fast_index_merge_batch: int = 20000
    # Where a search's best candidates are re-scored exactly from. "memory": each face keeps the residuals of its
    # codes beside them (another byte a component: 512 bytes a 512-d face), and a search reads nothing from
    # Tarantool; "tarantool": the candidates' stored descriptors are read from Tarantool on every search, which
    # keeps the index half the size and costs each search a Tarantool call (about 0.5-1 ms of CPU).
    rescore: str = "memory"
    # The license server (host:port) that must lease this shard a slot; empty: no licensing.
    license_server: str = ""
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
        split_host_port(self.listen, "[shard].listen")
        split_host_port(self.tarantool, "[shard].tarantool")
        if not self.shard_id:
            raise ConfigError("[shard].shard_id must not be empty")
        if bool(self.model_id) != (self.dim > 0):
            raise ConfigError("[shard].model_id and dim are set together (or both left empty to adopt the first Add's)")
        if self.dim < 0 or self.dim > 65536:
            raise ConfigError("[shard].dim must be in 0..65536")
        for name in ("search_batch_max", "search_workers", "rebuild_page", "fast_index_min_faces",
                     "fast_index_nprobe", "fast_index_merge_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[shard].{name} must be >= 1")
        if self.rescore not in ("memory", "tarantool"):
            raise ConfigError(f"[shard].rescore must be memory or tarantool, not {self.rescore!r}")
        if self.snapshot_interval_s <= 0:
            raise ConfigError("[shard].snapshot_interval_s must be > 0")
        if self.fast_index_check_s <= 0:
            raise ConfigError("[shard].fast_index_check_s must be > 0")
        if self.tarantool_timeout_s <= 0 or self.tarantool_connect_timeout_s < 0:
            raise ConfigError("[shard] Tarantool timeouts must be > 0")

    @property
    def tarantool_address(self) -> tuple[str, int]:
        return split_host_port(self.tarantool, "[shard].tarantool")
