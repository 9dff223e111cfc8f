"""The metadata store's face documents (metadata.py): their states, how a face is written and read back, and
the `_id` filters and id runs its queries and import journal use. Pure functions, no I/O."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from findface_grpc.gateway.domain import Face, NewFace
from findface_grpc.gateway.limits import MAX_LABEL_CHARS, MAX_META_CHARS, clip

PENDING = "pending"
ACTIVE = "active"
DELETING = "deleting"
ABORTED = "aborted"  # an import journal entry whose enrollment is being (or was) rolled back
# Large `$in` lists are slow on some MongoDB-protocol servers (and bloat the query); ask in chunks instead.
IN_CHUNK = 200


def id_filters(ids: Sequence[int]) -> list[dict]:
    """Filters on `_id` that together select exactly `ids`: `$in` lists of at most IN_CHUNK ids, ascending.

    Never a range, even for the contiguous ids of a bulk enrollment: SecantusDB serves `_id` only by point
    lookups, so `{"_id": {"$gte": a, "$lte": b}, "state": ...}` reads every document of the other field's index
    (30 s at a million faces, on every search whose hits are one person's consecutive photos). MongoDB serves an
    `$in` on `_id` from its index just as well.
    """
    ordered = sorted(set(ids))
    return [{"_id": {"$in": ordered[i:i + IN_CHUNK]}} for i in range(0, len(ordered), IN_CHUNK)]


def id_runs(ids: Iterable[int]) -> list[list[int]]:
    """`ids` as [first, last] runs of consecutive ids, ascending: how the import journal keeps them."""
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


def ids_of_runs(runs: Iterable[Sequence[int]]) -> list[int]:
    return sorted({i for first, last in runs for i in range(int(first), int(last) + 1)})


def face_from_doc(doc: dict) -> Face:
    # Text is clipped to today's limits: a face stored before them must not make every page holding it too large.
    return Face(
        id=doc["_id"],
        galleries=tuple(doc.get("galleries", ())),
        meta=clip(doc.get("meta", ""), MAX_META_CHARS),
        bbox=tuple(doc.get("bbox") or (0.0, 0.0, 0.0, 0.0)),
        photo_hash=clip(doc.get("photo_hash", ""), MAX_LABEL_CHARS),
        created_at=doc["created"],
        updated_at=doc.get("updated", doc["created"]),
        person_id=clip(doc.get("person_id", ""), MAX_LABEL_CHARS),
        cam_id=clip(doc.get("cam_id", ""), MAX_LABEL_CHARS),
        photo=doc.get("photo", ""),
        thumbnail=doc.get("thumbnail", ""),
        normalized=doc.get("normalized", ""),
        model_id=doc.get("model_id", ""),
        # Faces enrolled before quality was measured, and imported ones, have neither: 0 says "not known".
        quality=doc.get("quality", 0.0),
        orientation=doc.get("orientation", 0),
    )


def new_face_doc(face_id: int, face: NewFace, now: datetime, state: str = PENDING) -> dict:
    return {
        "_id": face_id,
        "state": state,
        "rev": 0,
        "galleries": list(face.galleries),
        "meta": face.meta,
        "bbox": [float(v) for v in face.bbox],
        "photo_hash": face.photo_hash,
        "person_id": face.person_id,
        "cam_id": face.cam_id,
        # The photo's source URL when it came by URL; stored copies (thumbnail, normalized) need a photo store.
        "photo": face.photo,
        "thumbnail": "",
        "normalized": "",
        "model_id": face.descriptor.model_id,
        "quality": float(face.quality),
        "orientation": int(face.orientation),
        "created": now,
        "updated": now,
    }
