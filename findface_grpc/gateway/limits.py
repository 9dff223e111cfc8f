"""How much text a face may hold, the same on every door (gRPC CreateFace, ImportFaces, UpdateFace and the HTTP
gateway), and what a read shows of a face stored before these limits existed.

A page of 1,000 faces at these limits stays far below the message size limit (findface_grpc.rpc), so no face can
break a listing for everybody; and ids beyond MongoDB's int64 cannot exist.
"""
from __future__ import annotations

from findface_grpc.errors import InvalidArgument

MAX_META_CHARS = 4096
MAX_LABEL_CHARS = 256  # person_id, cam_id, an imported photo_hash
# Face ids are MongoDB int64 keys: a larger id names no face, and asking MongoDB for it overflows.
MAX_FACE_ID = (1 << 63) - 1
# What an error message repeats of a value the client sent.
ECHO_CHARS = 64


def echo(value: object) -> str:
    """`value` as an error message may repeat it: cut short, so that no client input makes an error unbounded."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."


def check_text(field: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"{field}: longer than {limit} characters ({len(value)})")
    return value


def check_face_text(prefix: str, meta: str | None, person_id: str = "", cam_id: str = "", photo_hash: str = "") -> None:
    """Refuse a face's text fields over their limits; `prefix` names the face in the message ("" or "faces[3].")."""
    if meta is not None:
        check_text(f"{prefix}meta", meta, MAX_META_CHARS)
    check_text(f"{prefix}person_id", person_id, MAX_LABEL_CHARS)
    check_text(f"{prefix}cam_id", cam_id, MAX_LABEL_CHARS)
    check_text(f"{prefix}photo_hash", photo_hash, MAX_LABEL_CHARS)


def clip(value: str, limit: int) -> str:
    """A stored value as reads show it: within its limit, which only faces stored before the limit can exceed."""
    return value[:limit] if isinstance(value, str) and len(value) > limit else value


def can_exist(face_id: int) -> bool:
    return 0 < face_id <= MAX_FACE_ID
