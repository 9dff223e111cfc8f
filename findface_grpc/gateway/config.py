"""Gateway configuration: `[gateway]` in the config file, or FINDFACE_GATEWAY_* variables."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from findface_grpc.config import is_address
from findface_grpc.errors import ConfigError
from findface_grpc.gateway.cells import CellMap

PARTIAL = "partial"
UNAVAILABLE = "unavailable"



@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "127.0.0.1:50051"
    extractor: str = "127.0.0.1:50052"
    # Shard servers, "host:port", in shard-index order. No default: the cell map sends every face id to a
    # position in this list, so a list that silently defaulted to the wrong length would misroute faces.
    shards: tuple[str, ...] = ()
    # Face id -> cell (id % cells) -> shard. Fixed for the life of a cluster: changing it moves faces.
    cells: int = 1024
    # Explicit cell -> shard map, as entries "FIRST-LAST:SHARD" or "CELL:SHARD" that cover every cell once,
    # e.g. ["0-511:0", "512-1023:1"]. Empty: contiguous equal ranges of cells per shard.
    cell_map: tuple[str, ...] = ()
    mongo_uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongo_db: str = "findface"
    # How long a metadata call may wait for a reachable MongoDB before it is answered UNAVAILABLE; while MongoDB
    # is known down, calls fail at once and one call a second tries again.
    mongo_timeout_s: float = 2.0
    # Each shard's Search must answer within this; a slower shard counts as not answering.
    shard_deadline_s: float = 2.0
    # Writes and reads on one shard (Add, Remove, Get, UpdateGalleries, ListIds): what a slow shard is given, a big
    # import's Add for one.
    shard_timeout_s: float = 30.0
    # A shard that answers no health check for this long while writes wait on it is taken as hung: they are
    # abandoned (enrollment moves their faces to the other shards) and it gets no new faces until it answers.
    shard_hang_s: float = 5.0
    # Most calls in flight on one shard's channel: grpc.aio cancels calls beyond about a thousand.
    shard_max_in_flight: int = 256
    # Search calls in flight on one shard before further searches wait and go together in one call when one of
    # those returns (gateway/coalesce.py): under load the calls, not the searches, are most of the shards' work.
    shard_searches_at_once: int = 2
    extractor_timeout_s: float = 30.0
    # With a shard down, Identify answers from the others flagged partial ("partial"), or fails UNAVAILABLE.
    partial_results: str = PARTIAL
    max_n: int = 1000
    # Default threshold preset when a request gives none: "strict", "medium", "low" or "none".
    default_threshold: str = "medium"
    # Repair (finishing or rolling back what a crash left half done) runs at start and this often.
    repair_interval_s: float = 60.0
    # A face still "pending" after this long belongs to an enrollment that died; repair rolls it back. Must
    # exceed the longest enrollment (extraction is done before, so: Mongo insert + shard Add + Mongo update).
    pending_grace_s: float = 120.0
    # The sweep for shard ids without metadata reads every shard's id list, so it runs less often than repair.
    orphan_sweep_interval_s: float = 3600.0
    # Every FaceService call must carry `authorization: Token <key>` (see findface_grpc.auth). False turns the
    # check off: only for a gateway that nothing but trusted hosts can reach.
    require_tokens: bool = True
    # How long a gateway trusts its cached answer about a token: a revocation takes effect within this.
    token_cache_ttl_s: float = 5.0
    # Faces whose metadata the gateway keeps for the searches that hit them again (gateway/hitcache.py: valid
    # while their gallery's faces_version is unchanged, which every change to one of its faces replaces); about
    # 0.5-0.6 kB each (measured with photo store URLs). 0: every search reads its hits' metadata.
    hit_cache_faces: int = 20000
    # How long a gateway takes a gallery's faces_version, once read, as current: a change made through another
    # gateway sharing the MongoDB shows in this one's searches within this (one made through this one, at once).
    # 0: every search reads it, and changes through any gateway show at once (one MongoDB round trip a search).
    hit_cache_ttl_s: float = 1.0
    # Photos given by URL (ImageSource.url) are fetched by the gateway: at most this large (as the extractor's
    # limit), within this time, redirects refused. Hosts resolving to addresses that are not public (loopback,
    # private, link-local, ...) are refused unless allow_private_urls, or the address is in url_allow_networks
    # (CIDR, e.g. ["10.1.2.0/24"]).
    max_image_mb: float = 10.0
    url_fetch_timeout_s: float = 10.0
    allow_private_urls: bool = False
    url_allow_networks: tuple[str, ...] = ()
    # The license server (host:port) whose face quota enrollments must fit in; empty: no licensing. Face usage
    # there is reconciled with the faces in the metadata this often (see license.quota.FaceQuota).
    license_server: str = ""
    license_reconcile_interval_s: float = 60.0
    # The photo store (findface-upload), its base URL, e.g. "http://127.0.0.1:3333"; empty: no store. With one,
    # enrollment keeps the original photo (once, by hash), each face's thumbnail and normalized crop there and
    # fills the faces' photo, thumbnail and normalized URLs; deleting a face deletes its thumbnail and crop.
    # The store takes HTTP basic auth: upload_user and upload_password, which must be the store's service identity
    # (its [upload] gateway_token, or a user of its [upload] users named in service_users): no one else may write
    # photos/ and faces/ there.
    upload_url: str = ""
    upload_user: str = "gateway"
    upload_password: str = ""
    upload_timeout_s: float = 10.0
    # Dynamic person creation (persons.py): a face a camera posts through CreateFace takes the person_id of the
    # most similar face with one above person_identify_threshold (on the original product's scale, as the legacy
    # API's thresholds: docs/thresholds.md), among that camera's faces, or every face with person_identify_global;
    # else a new person_id.
    person_identify: bool = False
    person_identify_global: bool = False
    person_identify_threshold: float = 0.75
    # Tokens (by name) that see every camera's url; other tokens see only the urls of cameras they created. A
    # findface-video detector needs its cameras' urls: its token must be here, unless it created the cameras.
    admin_tokens: tuple[str, ...] = ("admin",)
    # WatchEvents: events waiting for one subscriber, at most; beyond, its oldest are dropped (and counted).
    watch_queue_size: int = 256
    # History events (sightings, with their screenshots: about 10 kB each) are deleted this many days after they
    # were recorded; 0 keeps them all.
    history_retention_days: float = 30.0
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
        # Port 0 to listen on lets the system pick one (the server logs which).
        if not is_address(self.listen, any_port=True):
            raise ConfigError(f"[gateway].listen must be host:port, not {self.listen!r}")
        if not is_address(self.extractor):
            raise ConfigError(f"[gateway].extractor must be host:port, not {self.extractor!r}")
        if not self.shards:
            raise ConfigError("[gateway].shards must list at least one shard address (host:port)")
        bad = [s for s in self.shards if not is_address(s)]
        if bad:
            raise ConfigError(f"[gateway].shards: not host:port: {bad}")
        if len(set(self.shards)) != len(self.shards):
            raise ConfigError("[gateway].shards lists an address twice")
        if not 1 <= self.cells <= 1 << 20:
            raise ConfigError("[gateway].cells must be in 1..1048576")
        if self.cells < len(self.shards):
            raise ConfigError(f"[gateway].cells ({self.cells}) must be at least the number of shards")
        if self.partial_results not in (PARTIAL, UNAVAILABLE):
            raise ConfigError(f"[gateway].partial_results must be {PARTIAL!r} or {UNAVAILABLE!r}")
        if not 1 <= self.max_n <= 10000:
            raise ConfigError("[gateway].max_n must be in 1..10000 (a shard returns at most 10000 hits)")
        if self.default_threshold not in ("strict", "medium", "low", "none"):
            raise ConfigError("[gateway].default_threshold must be strict, medium, low or none")
        for name in ("mongo_timeout_s", "shard_deadline_s", "shard_timeout_s", "shard_hang_s", "extractor_timeout_s",
                     "repair_interval_s", "orphan_sweep_interval_s", "license_reconcile_interval_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[gateway].{name} must be > 0")
        if self.token_cache_ttl_s < 0:
            raise ConfigError("[gateway].token_cache_ttl_s must be >= 0")
        if self.hit_cache_faces < 0:
            raise ConfigError("[gateway].hit_cache_faces must be >= 0")
        if not 0 <= self.hit_cache_ttl_s <= 3600:  # NaN fails this too
            raise ConfigError("[gateway].hit_cache_ttl_s must be within 0..3600")
        if self.pending_grace_s < 0:
            raise ConfigError("[gateway].pending_grace_s must be >= 0")
        if self.shard_max_in_flight < 1:
            raise ConfigError("[gateway].shard_max_in_flight must be >= 1")
        if self.shard_searches_at_once < 1:
            raise ConfigError("[gateway].shard_searches_at_once must be >= 1")
        if self.max_image_mb <= 0 or self.url_fetch_timeout_s <= 0:
            raise ConfigError("[gateway].max_image_mb and url_fetch_timeout_s must be > 0")
        for network in self.url_allow_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"[gateway].url_allow_networks: {network!r} is not an address or CIDR network") from None
        if self.upload_url and not self.upload_url.startswith(("http://", "https://")):
            raise ConfigError(f"[gateway].upload_url must be an http(s) URL, not {self.upload_url!r}")
        if not 0.0 <= self.person_identify_threshold <= 1.0:  # NaN fails this too
            raise ConfigError("[gateway].person_identify_threshold must be within [0, 1]")
        if not 1 <= self.watch_queue_size <= 100_000:
            raise ConfigError("[gateway].watch_queue_size must be within 1..100000")
        if not 0 <= self.history_retention_days <= 36_500:  # NaN fails this too
            raise ConfigError("[gateway].history_retention_days must be within 0..36500")
        if self.upload_timeout_s <= 0:
            raise ConfigError("[gateway].upload_timeout_s must be > 0")
        if not self.mongo_db or not self.mongo_uri:
            raise ConfigError("[gateway].mongo_uri and mongo_db must be set")
        # Parsing the cell map here refuses a bad one at start-up, with the entry named.
        CellMap.from_config(self.cells, len(self.shards), self.cell_map)
