"""The shard's durable store: its Tarantool instance, reached only through the stored procedures of storage.lua.

The client is synchronous and one connection carries one request at a time, so every call holds a lock; the
async server runs these calls in a thread. A lost connection (Tarantool restarted, killed, not yet up) is dropped
and opened again on the next call, so the shard follows Tarantool's restarts without being restarted itself.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tarantool
from tarantool.error import DatabaseError, NetworkError

from findface_grpc.errors import FindFaceError, ResourceExhausted, Unavailable
from findface_grpc.observability import metrics

log = logging.getLogger(__name__)

# Tarantool's ER_MEMORY_ISSUE: the memtx arena (FINDFACE_TT_MEMTX_MB) is full.
_ER_MEMORY_ISSUE = 2


# How a descriptor is stored: little-endian float16. Shards written before float16 hold float32, told apart by
# length.
STORED_DTYPE = np.dtype("<f2")
_LEGACY_DTYPE = np.dtype("<f4")


def stored_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=STORED_DTYPE).tobytes()


def as_stored(vectors: np.ndarray) -> np.ndarray:
    """The float32 values the stored copy of `vectors` reads back as: the index is made of these, so that it ranks
    and scores faces alike before and after a restart rebuilds it from Tarantool."""
    return np.asarray(vectors, dtype=STORED_DTYPE).astype(np.float32)


def _stored_dtype(size: int, count: int, dim: int) -> np.dtype:
    for dtype in (STORED_DTYPE, _LEGACY_DTYPE):
        if size == count * dim * dtype.itemsize:
            return dtype
    raise StoreError(f"Tarantool holds {size} bytes for {count} vectors of {dim} values: neither float16 nor float32")


def decode_vectors(raw: bytes, count: int, dim: int) -> np.ndarray:
    """`count` stored vectors joined in `raw`, as a count x dim float32 array."""
    return np.frombuffer(raw, dtype=_stored_dtype(len(raw), count, dim)).astype(np.float32).reshape(count, dim)


@dataclass(frozen=True)
class StoredFace:
    face_id: int
    galleries: tuple[str, ...]
    vector: bytes  # as stored (see decode_vectors); empty when not asked for


@dataclass(frozen=True)
class FacePage:
    """A page of the packed scan: ids ascending, their galleries, and their vectors as one len(ids) x dim array.
    `legacy`: stored as float32 by an older version (to be rewritten as float16)."""

    ids: np.ndarray
    galleries: list[tuple[str, ...]]
    vectors: np.ndarray
    legacy: bool = False


@dataclass(frozen=True)
class StoreStats:
    face_count: int
    arena_used: int
    arena_size: int


@dataclass(frozen=True)
class Model:
    model_id: str
    dim: int

    @property
    def known(self) -> bool:
        return bool(self.model_id) and self.dim > 0


class StoreError(FindFaceError):
    """Tarantool answered with an error: a bug in storage.lua or its caller, not a client's mistake."""


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _names(values: Sequence[bytes | str]) -> tuple[str, ...]:
    return tuple(_text(v) for v in values)


class TarantoolStore:
    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self.address = f"{host}:{port}"
        self._host = host
        self._port = port
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._conn: tarantool.Connection | None = None

    def _connect(self) -> tarantool.Connection:
        # encoding=None: vectors come back from Lua as msgpack strings of raw float32 bytes, which the default
        # utf-8 decoding would refuse; gallery names are decoded here instead.
        # No schema fetch: only functions are called, and it saves a round trip per (re)connect.
        conn = tarantool.Connection(
            self._host,
            self._port,
            encoding=None,
            fetch_schema=False,
            connect_now=False,
            socket_timeout=self._timeout,
            connection_timeout=min(self._timeout, 3.0),
            reconnect_max_attempts=1,
            reconnect_delay=0.1,
        )
        conn.connect()
        log.info("connected to Tarantool at %s", self.address)
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - the connection is already broken; closing is best effort
                pass
            self._conn = None

    def _call(self, name: str, *args):
        with self._lock:
            started = time.perf_counter()
            try:
                if self._conn is None:
                    self._conn = self._connect()
                answer = self._conn.call(name, list(args)).data[0]
                metrics.TARANTOOL_SECONDS.labels(name).observe(time.perf_counter() - started)
                return answer
            except (NetworkError, OSError) as exc:
                metrics.TARANTOOL_FAILURES.labels(name).inc()
                # A timed-out or broken call leaves the stream at an unknown point: start over next time.
                self._drop()
                raise Unavailable(f"shard storage (Tarantool at {self.address}) is unreachable: {exc}") from None
            except DatabaseError as exc:
                metrics.TARANTOOL_FAILURES.labels(name).inc()
                message = _text(exc.message)
                if exc.code == _ER_MEMORY_ISSUE:
                    raise ResourceExhausted(
                        f"shard storage (Tarantool at {self.address}) is out of memory: {message}"
                    ) from None
                raise StoreError(f"Tarantool {name} failed: {message}") from None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def ping(self) -> None:
        self._call("shard_get_model")

    def add(self, faces: Sequence[tuple[int, Sequence[str], bytes]]) -> tuple[int, int]:
        """Insert or replace faces (id, galleries, stored_bytes(vector)) in one transaction; returns (added,
        replaced)."""
        added, replaced = self._call("shard_add", [[int(i), list(g), v] for i, g, v in faces])
        return added, replaced

    def remove(self, ids: Sequence[int]) -> int:
        return self._call("shard_remove", [int(i) for i in ids])

    def get(self, ids: Sequence[int], with_vectors: bool) -> list[StoredFace]:
        rows = self._call("shard_get", [int(i) for i in ids], with_vectors)
        return [StoredFace(face_id, _names(galleries), vector) for face_id, galleries, vector in rows]

    def update_galleries(
        self, ids: Sequence[int], add: Sequence[str], remove: Sequence[str], replace: bool
    ) -> list[tuple[int, tuple[str, ...]]]:
        """Change memberships; returns (id, galleries now) of the faces that existed and changed."""
        changed = self._call("shard_update_galleries", [int(i) for i in ids], list(add), list(remove), replace)
        return [(face_id, _names(galleries)) for face_id, galleries in changed]

    def list_ids(self, after_id: int, limit: int) -> list[int]:
        return self._call("shard_list_ids", int(after_id), int(limit))

    def vectors(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        """The stored vectors of the faces that exist among `ids`, as float32."""
        found, raw = self._call("shard_vectors", [int(i) for i in ids])
        return {face_id: decode_vectors(vector, 1, dim)[0] for face_id, vector in zip(found, raw)}

    def scan(self, after_id: int, limit: int, dim: int) -> FacePage:
        """Faces with ids above `after_id`, ascending."""
        return self._page(self._call("shard_scan_packed", int(after_id), int(limit)), dim)[0]

    def changes_since(self, version: int, limit: int, dim: int) -> tuple[FacePage, int]:
        """Faces written after `version`, in the order written, and the version of the last one."""
        return self._page(self._call("shard_changes_since", int(version), int(limit)), dim)

    def removed_since(self, version: int, limit: int) -> list[tuple[int, int]]:
        """(version, face id) of deletes after `version`, in order; those a snapshot covered may be forgotten."""
        return [(v, face_id) for v, face_id in self._call("shard_removed_since", int(version), int(limit))]

    def version(self) -> int:
        """The version of the latest write."""
        return self._call("shard_version")

    def forget_removed(self, version: int) -> int:
        return self._call("shard_forget_removed", int(version))

    @staticmethod
    def _page(packed, dim: int) -> tuple[FacePage, int]:
        ids, sets, set_of_face, blob, last_key = packed
        if not ids:
            return FacePage(np.empty(0, np.uint64), [], np.empty((0, dim), np.float32)), int(last_key)
        legacy = _stored_dtype(len(blob), len(ids), dim) == _LEGACY_DTYPE
        names = [_names(s) for s in sets]
        page = FacePage(
            np.asarray(ids, dtype=np.uint64), [names[i] for i in set_of_face], decode_vectors(blob, len(ids), dim),
            legacy,
        )
        return page, int(last_key)

    def stats(self) -> StoreStats:
        count, used, size = self._call("shard_stats")
        return StoreStats(count, used, size)

    def get_model(self) -> Model:
        model_id, dim = self._call("shard_get_model")
        return Model(_text(model_id), dim)

    def set_model(self, model: Model) -> Model:
        """Record the shard's model unless one is recorded already; returns the model that holds now."""
        model_id, dim = self._call("shard_set_model", model.model_id, model.dim)
        return Model(_text(model_id), dim)
