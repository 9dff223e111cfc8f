"""Every Prometheus metric the servers export, in one place, and the `/metrics` endpoint that serves them.

Names follow Prometheus conventions (`findface_<part>_<what>_<unit>`, counters ending in `_total`, seconds and
bytes). Label values are bounded: RPC and route names come from the registered services and routes, peers from
the configuration (`shard-<i>`), results from fixed sets; never a face id, token, gallery or path.

Metrics are process-wide, as prometheus_client keeps them: one server per process. Every server exposes the RPC,
HTTP and process metrics; the others only the kind of server they belong to (`SERVER_METRICS`, `LEASE_METRICS`):
an extractor has no license to report, and a gauge it never set would read 0 there. The per-request ones (the
interceptors' and the WSGI middleware's) are recorded only while the process serves `/metrics` (`recording()`),
so that a server without `metrics_listen` does none of that work; the rest cost a counter increment each and are
always kept.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from findface_grpc.config import is_address
from findface_grpc.errors import ConfigError

# 1 ms to 10 s, about three buckets a decade: an identify's ~50 ms and a shard search's ~1 ms both resolve.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

# ---- every RPC served and made (observability.interceptors) ----
GRPC_REQUESTS = Counter("findface_grpc_requests_total", "gRPC calls served, by final status code",
                        ["service", "method", "code"])
GRPC_SECONDS = Histogram("findface_grpc_request_duration_seconds", "Time to serve a gRPC call, token check included",
                         ["service", "method"], buckets=LATENCY_BUCKETS)
GRPC_CLIENT_REQUESTS = Counter("findface_grpc_client_requests_total", "gRPC calls made to another server, by status",
                               ["peer", "method", "code"])
GRPC_CLIENT_SECONDS = Histogram("findface_grpc_client_request_duration_seconds",
                                "Time until another server answered a gRPC call (the gateway's per-shard fan-out)",
                                ["peer", "method"], buckets=LATENCY_BUCKETS)

# ---- every HTTP request (observability.wsgi) ----
HTTP_REQUESTS = Counter("findface_http_requests_total", "HTTP requests answered, by route and status",
                        ["route", "method", "status"])
HTTP_SECONDS = Histogram("findface_http_request_duration_seconds", "Time to answer an HTTP request",
                         ["route", "method"], buckets=LATENCY_BUCKETS)

# ---- extractor ----
EXTRACTOR_PHOTOS = Counter("findface_extractor_photos_total", "Photos processed", ["call"])
EXTRACTOR_FACES = Counter("findface_extractor_faces_total", "Faces found (detect) or embedded (extract)", ["call"])
EXTRACTOR_IN_PROGRESS = Gauge("findface_extractor_photos_in_progress", "Photos being decoded, detected or embedded")
EXTRACTOR_WORKERS = Gauge("findface_extractor_workers", "Photos the extractor processes in parallel (config)")
MODEL_BATCH = Histogram("findface_extractor_batch_size", "Inputs in one model call", ["model"],
                        buckets=BATCH_BUCKETS)
MODEL_SECONDS = Histogram("findface_extractor_model_seconds",
                          "Time of one model call (detector: a photo's decoding, detection and alignment)",
                          ["model"], buckets=LATENCY_BUCKETS)
MODEL_QUEUE = Gauge("findface_extractor_queue_depth", "Requests waiting for a model call", ["model"])

# ---- shard (the gauges are read from the index at each scrape: gauges.watch_shard) ----
SHARD_FACES = Gauge("findface_shard_faces", "Faces in this shard's index")
SHARD_GALLERIES = Gauge("findface_shard_galleries", "Galleries holding faces of this shard")
SHARD_INDEX_BYTES = Gauge("findface_shard_index_bytes", "Memory held by this shard's index")
SHARD_FAST_INDEXES = Gauge("findface_shard_fast_indexes", "Galleries' fast indexes, by state", ["state"])
SHARD_ROWS_SCANNED = Counter("findface_shard_search_rows_scanned_total",
                             "Index rows scored by searches (through a fast index: the probed lists' expected rows)")
SHARD_SEARCHES = Counter("findface_shard_search_queries_total",
                         "Query descriptors searched, by full scan or fast index", ["path"])
TARANTOOL_SECONDS = Histogram("findface_shard_tarantool_call_duration_seconds",
                              "Round trip of one Tarantool stored procedure call", ["procedure"],
                              buckets=LATENCY_BUCKETS)
TARANTOOL_FAILURES = Counter("findface_shard_tarantool_failures_total", "Tarantool calls that failed", ["procedure"])

# ---- gateway ----
PARTIAL_RESULTS = Counter("findface_gateway_partial_results_total",
                          "Searches that some shard did not answer (flagged partial, or refused with "
                          "partial_results = unavailable)")
SHARD_QUERIES_COALESCED = Counter("findface_gateway_shard_search_queries_coalesced_total",
                                  "Queries that waited for a shard's Search calls in flight and went together in one",
                                  ["peer"])
SHARDS_MISSING = Counter("findface_gateway_shard_search_failures_total",
                         "Shard answers missing from a search (down, too slow or failed)", ["shard"])
REPAIR_ACTIONS = Counter("findface_gateway_repair_actions_total", "Faces and galleries repaired", ["action"])
REPAIR_ERRORS = Counter("findface_gateway_repair_errors_total", "Repair steps that failed", ["step"])
REPAIR_BACKLOG = Gauge("findface_gateway_repair_backlog",
                       "What the last repair round found to repair (0: nothing was left half done)")
MONGO_SECONDS = Histogram("findface_mongo_command_duration_seconds", "MongoDB command round trips", ["command"],
                          buckets=LATENCY_BUCKETS)
MONGO_FAILURES = Counter("findface_mongo_command_failures_total", "MongoDB commands that failed", ["command"])
TOKEN_CACHE = Counter("findface_gateway_token_cache_total", "Token checks answered from the cache or the store",
                      ["result"])
SIGHTINGS = Counter("findface_gateway_sightings_total", "Faces from cameras recorded in the history", ["call"])
WATCH_SUBSCRIBERS = Gauge("findface_gateway_watch_subscribers", "WatchEvents streams open")
WATCH_DROPPED = Counter("findface_gateway_watch_events_dropped_total",
                        "Events a WatchEvents subscriber lost to its full queue (it read too slowly)")

# ---- license server (read at each scrape: gauges.watch_license) and its clients (gauges.watch_lease) ----
LICENSE_VALID = Gauge("findface_license_valid", "1 while the license in force is valid (or in unlicensed mode)")
LICENSE_UNLICENSED = Gauge("findface_license_unlicensed_mode", "1 in unlicensed mode (no license, no limits)")
LICENSE_EXPIRY = Gauge("findface_license_expiry_seconds", "Seconds until the license expires (NaN: no license)")
LICENSE_LEASES = Gauge("findface_license_leases", "Component leases held", ["kind"])
LICENSE_LEASE_LIMIT = Gauge("findface_license_leases_limit", "Component leases allowed (0: no limit)", ["kind"])
LICENSE_FACES_USED = Gauge("findface_license_faces_used", "Faces counted against the license")
LICENSE_FACES_LIMIT = Gauge("findface_license_faces_limit", "Faces the license allows (0: no limit)")
LICENSE_STATE = Gauge("findface_license_client_serving",
                      "1 while the license lets this server serve (leased, or within the grace period)")
LICENSE_SILENT = Gauge("findface_license_client_unanswered_seconds",
                       "Seconds since the license server last answered this server")
LICENSE_GRACE = Gauge("findface_license_client_grace_period_seconds", "The grace period the license server grants")

# ---- video detector (read from its cameras at each scrape: gauges.watch_video) ----
# Per camera (label "camera": ids, as many as [video].detectors_max), exported as findface_video_<key>_total.
VIDEO_CAMERA_COUNTERS = {
    "frames": "Frames decoded",
    "sampled": "Frames taken at detect_fps",
    "still": "Sampled frames skipped by the motion gate (nothing moved, no face followed)",
    "detected": "Sampled frames whose faces came back from the extractor",
    "dropped": "Sampled frames replaced by a newer one before detection could take them (detection behind)",
    "detect_errors": "Detect calls that failed",
    "stream_errors": "Stream opens, reads and packets that failed",
    "reopens": "Times the stream was reopened",
    "tracks": "Faces followed (tracks started)",
    "posts": "Snapshots chosen for posting",
}
# The detector's post queue, as findface_video_posts_<key>_total.
VIDEO_POST_COUNTERS = {
    "sent": "Faces the gateway took",
    "dropped": "Faces dropped, oldest first, while the queue was full (the gateway down or slow)",
    "rejected": "Faces the gateway refused (camera deleted, no face in the crop, bad token)",
    "retries": "Posts retried after the gateway did not answer",
    "duplicates": "Faces left out by post-uniq: the same person posted often enough already",
}

# ---- photo store and drop folder ----
DROPS = Counter("findface_dropbox_drops_total", "Photos dropped into the drop folder, by result", ["result"])
DROP_RETRIES = Gauge("findface_dropbox_retries_pending", "Failed drops waiting to be tried again")


def _threads() -> float:
    """The process's threads, gRPC's and onnxruntime's native ones too (prometheus_client's process collector
    has memory, CPU and file descriptors, not threads)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(threading.active_count())


PROCESS_THREADS = Gauge("findface_process_threads", "Threads of this process")
PROCESS_THREADS.set_function(_threads)

# The metrics only one kind of server exposes, by its config table. They leave the default registry here, and
# `expose` puts back those of its server's table.
SERVER_METRICS = {
    "extractor": (EXTRACTOR_PHOTOS, EXTRACTOR_FACES, EXTRACTOR_IN_PROGRESS, EXTRACTOR_WORKERS, MODEL_BATCH,
                  MODEL_SECONDS, MODEL_QUEUE),
    "shard": (SHARD_FACES, SHARD_GALLERIES, SHARD_INDEX_BYTES, SHARD_FAST_INDEXES, SHARD_ROWS_SCANNED, SHARD_SEARCHES,
              TARANTOOL_SECONDS, TARANTOOL_FAILURES),
    "gateway": (PARTIAL_RESULTS, SHARDS_MISSING, SHARD_QUERIES_COALESCED, REPAIR_ACTIONS, REPAIR_ERRORS,
                REPAIR_BACKLOG, MONGO_SECONDS, MONGO_FAILURES, TOKEN_CACHE, SIGHTINGS, WATCH_SUBSCRIBERS, WATCH_DROPPED),
    "license": (LICENSE_VALID, LICENSE_UNLICENSED, LICENSE_EXPIRY, LICENSE_LEASES, LICENSE_LEASE_LIMIT,
                LICENSE_FACES_USED, LICENSE_FACES_LIMIT),
    "upload": (DROPS, DROP_RETRIES, MONGO_SECONDS, MONGO_FAILURES),
}
# A server that holds a license lease (gauges.watch_lease puts them back).
LEASE_METRICS = (LICENSE_STATE, LICENSE_SILENT, LICENSE_GRACE)
_exposed: set[int] = set()
for _metric in {id(m): m for group in (*SERVER_METRICS.values(), LEASE_METRICS) for m in group}.values():
    REGISTRY.unregister(_metric)


def expose_too(*metrics) -> None:
    """Put `metrics` (of SERVER_METRICS or LEASE_METRICS) on this process's /metrics, once."""
    for metric in metrics:
        if id(metric) not in _exposed:
            REGISTRY.register(metric)
            _exposed.add(id(metric))

_recording = threading.Event()


def recording() -> bool:
    return _recording.is_set()


def check_listen(table: str, metrics_listen: str) -> None:
    if metrics_listen and not is_address(metrics_listen, any_port=True):
        raise ConfigError(f"[{table}].metrics_listen must be host:port (or empty: no /metrics), not {metrics_listen!r}")


@dataclass
class Exposition:
    """The `/metrics` endpoint of this process, a small HTTP server on its own thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        _recording.clear()


def expose(listen: str, table: str) -> Exposition:
    """Serve `/metrics` on `listen` (host:port; port 0 picks one), with the metrics of the server of config table
    `table`, and start recording per-request metrics. Raises OSError when the address is taken, as the servers'
    own ports do."""
    expose_too(*SERVER_METRICS.get(table, ()))
    host, _, port = listen.rpartition(":")
    server, thread = start_http_server(int(port), host.strip("[]"))
    _recording.set()
    return Exposition(server, thread)
