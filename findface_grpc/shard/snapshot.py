"""Snapshots of the shard's index on disk, so that a restart reads the codes back instead of every descriptor.

A snapshot holds the index at one version of its Tarantool (every write stamps a version, storage.lua): the ids,
each row's galleries and the int8 codes (with their residuals, when the index keeps them). At start the shard
server loads it and then applies only what Tarantool changed after that version; the result is checked against
Tarantool's face count, and anything that does not fit (another model, another code scale, residuals kept or not,
a damaged file, a count that disagrees) falls back to the full rebuild.

Layout: MAGIC, an 8-byte little-endian header length, the header as JSON, then the ids (uint64), each row's
gallery set (uint32) and the codes (count x dim bytes; with residuals, per block of rows its codes then its
residuals, as rows.CompactRows.blocks gives them), each raw. Written to a temporary file, flushed to disk
and renamed over the previous snapshot (durable.py), so that a crash while writing leaves the previous one whole.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from findface_grpc.durable import replaced_atomically
from findface_grpc.shard.ann import Layout
from findface_grpc.shard.index import FaceIndex, IndexImage

log = logging.getLogger(__name__)

MAGIC = b"FFSHARD1"
FILE_NAME = "index.snapshot"


@dataclass(frozen=True)
class Loaded:
    index: FaceIndex
    version: int


def write(path: Path, image: IndexImage, codes: Iterator[np.ndarray], model_id: str, dim: int, version: int) -> None:
    header = json.dumps({
        "model_id": model_id, "dim": dim, "scale": image.scale, "residuals": image.residuals, "version": version,
        "count": image.count, "gallery_sets": image.gallery_sets,
    }).encode()
    with replaced_atomically(path) as out:
        out.write(MAGIC + struct.pack("<Q", len(header)) + header)
        out.write(np.ascontiguousarray(image.ids, "<u8").data)
        out.write(np.ascontiguousarray(image.set_of_row, "<u4").data)
        for block in codes:
            out.write(block.data)


def read(path: Path, model_id: str, dim: int, scale: float, residuals: bool) -> Loaded | None:
    """The snapshot at `path` as an index, or None (logged) when there is none or it does not fit."""
    try:
        with open(path, "rb") as source:
            return _read(source, model_id, dim, scale, residuals, path.stat().st_size)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, struct.error) as exc:
        log.warning("snapshot %s not used: %s", path, exc)
        return None


def _read(source: BinaryIO, model_id: str, dim: int, scale: float, residuals: bool, size: int) -> Loaded | None:
    if source.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a shard snapshot")
    (length,) = struct.unpack("<Q", source.read(8))
    header = json.loads(source.read(length))
    if (header["model_id"], header["dim"], header["scale"]) != (model_id, dim, scale):
        raise ValueError(
            f"taken for {header['model_id']}/{header['dim']} at code scale {header['scale']}, "
            f"not {model_id}/{dim} at {scale}"
        )
    if header.get("residuals", False) != residuals:
        raise ValueError(f"taken {'with' if header.get('residuals') else 'without'} residuals, "
                         f"{'with' if residuals else 'without'} needed")
    count = int(header["count"])
    expected = len(MAGIC) + 8 + length + count * (8 + 4 + dim * (2 if residuals else 1))
    if size != expected:
        raise ValueError(f"{size} bytes where {count} faces take {expected}: truncated or damaged")
    ids = np.frombuffer(_exactly(source, count * 8), "<u8")
    set_of_row = np.frombuffer(_exactly(source, count * 4), "<u4")
    sets = header["gallery_sets"]
    if count and int(set_of_row.max()) >= len(sets):
        raise ValueError("a row names a gallery set the header does not have")
    image = IndexImage(ids, set_of_row, sets, count, scale, residuals)

    def fill(block: np.ndarray) -> None:
        if source.readinto(memoryview(block).cast("B")) != block.nbytes:
            raise ValueError("the codes end early")

    return Loaded(FaceIndex.restore(dim, image, fill), int(header["version"]))


def _exactly(source: BinaryIO, size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise ValueError("the file ends early")
    return data


# Fast indexes (ann.py) are saved beside the snapshot, a file per gallery: the centroids and the lists by face id,
# at the Tarantool version they were taken at. Layout: FAST_MAGIC, an 8-byte header length, the header as JSON,
# the centroids (float32), the list offsets (int64) and the ids (uint64).
FAST_MAGIC = b"FFFAST01"
FAST_DIR = "fast"


@dataclass(frozen=True)
class SavedFastIndex:
    gallery: str
    layout: Layout
    nprobe: int
    version: int
    built_at: float


def fast_path(directory: Path, gallery: str) -> Path:
    # Gallery names may hold any character; the file is named by a digest and the header holds the name.
    return directory / FAST_DIR / f"{hashlib.sha256(gallery.encode()).hexdigest()[:32]}.fast"


def write_fast(directory: Path, saved: SavedFastIndex, model_id: str, dim: int) -> None:
    layout = saved.layout
    header = json.dumps({
        "gallery": saved.gallery, "model_id": model_id, "dim": dim, "version": saved.version,
        "nprobe": saved.nprobe, "built_at": saved.built_at, "lists": len(layout.centroids), "count": len(layout.ids),
    }).encode()
    path = fast_path(directory, saved.gallery)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as out:
        out.write(FAST_MAGIC + struct.pack("<Q", len(header)) + header)
        out.write(np.ascontiguousarray(layout.centroids, "<f4").data)
        out.write(np.ascontiguousarray(layout.offsets, "<i8").data)
        out.write(np.ascontiguousarray(layout.ids, "<u8").data)


def remove_fast(directory: Path, gallery: str) -> None:
    fast_path(directory, gallery).unlink(missing_ok=True)


def read_fast_all(directory: Path, model_id: str, dim: int) -> list[SavedFastIndex]:
    """Every saved fast index that fits the model (others are logged and left out)."""
    found = []
    for path in sorted((directory / FAST_DIR).glob("*.fast")):
        try:
            found.append(_read_fast(path, model_id, dim))
        except (OSError, ValueError, KeyError, struct.error) as exc:
            log.warning("fast index %s not used: %s", path, exc)
    return found


def _read_fast(path: Path, model_id: str, dim: int) -> SavedFastIndex:
    with open(path, "rb") as source:
        if source.read(len(FAST_MAGIC)) != FAST_MAGIC:
            raise ValueError("not a fast index file")
        (length,) = struct.unpack("<Q", source.read(8))
        header = json.loads(source.read(length))
        if (header["model_id"], header["dim"]) != (model_id, dim):
            raise ValueError(f"built for {header['model_id']}/{header['dim']}, not {model_id}/{dim}")
        lists, count = int(header["lists"]), int(header["count"])
        expected = len(FAST_MAGIC) + 8 + length + lists * dim * 4 + (lists + 1) * 8 + count * 8
        if path.stat().st_size != expected:
            raise ValueError("truncated or damaged")
        centroids = np.frombuffer(_exactly(source, lists * dim * 4), "<f4").reshape(lists, dim).copy()
        offsets = np.frombuffer(_exactly(source, (lists + 1) * 8), "<i8").copy()
        ids = np.frombuffer(_exactly(source, count * 8), "<u8").copy()
    if offsets[0] != 0 or offsets[-1] != count or np.any(np.diff(offsets) < 0):
        raise ValueError("list offsets do not fit the ids")
    return SavedFastIndex(header["gallery"], Layout(centroids, offsets, ids), int(header["nprobe"]),
                          int(header["version"]), float(header["built_at"]))
