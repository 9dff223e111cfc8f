"""Conversions between protobuf messages and domain values shared by several services."""
from __future__ import annotations

import numpy as np

from findface_grpc.errors import InvalidArgument
from findface_grpc.v1 import common_pb2

Box = tuple[float, float, float, float]


def box_to_pb(box: Box) -> common_pb2.BoundingBox:
    return common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3])


def box_from_pb(msg: common_pb2.BoundingBox) -> Box:
    return (msg.x1, msg.y1, msg.x2, msg.y2)


def landmarks_to_pb(points) -> common_pb2.Landmarks:
    return common_pb2.Landmarks(points=[common_pb2.Point(x=x, y=y) for x, y in points])


def descriptor_to_pb(vector: np.ndarray, model_id: str) -> common_pb2.Descriptor:
    vector = np.ascontiguousarray(vector, dtype="<f4")
    return common_pb2.Descriptor(model_id=model_id, dim=vector.shape[-1], vector=vector.tobytes())


def descriptor_from_pb(msg: common_pb2.Descriptor, model_id: str | None = None, dim: int | None = None) -> np.ndarray:
    """The float32 vector of a Descriptor, checked against the expected model and dimension when given."""
    if model_id is not None and msg.model_id != model_id:
        raise InvalidArgument(f"descriptor is from model {msg.model_id!r}, this cluster indexes {model_id!r}")
    if dim is not None and msg.dim != dim:
        raise InvalidArgument(f"descriptor has dimension {msg.dim}, this cluster indexes {dim}")
    if len(msg.vector) != 4 * msg.dim or msg.dim == 0:
        raise InvalidArgument(f"descriptor vector has {len(msg.vector)} bytes, expected 4*dim = {4 * msg.dim}")
    return np.frombuffer(msg.vector, dtype="<f4")
