"""The gateway's protobuf <-> domain translation of detected and skipped faces, without servers."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from findface_grpc.gateway.clients import detected_from_pb, skipped_from_pb
from findface_grpc.gateway.domain import Face, SkippedFace, SkipReason
from findface_grpc.gateway.servicer import detected_to_pb, face_to_pb, skipped_to_pb
from findface_grpc.v1 import common_pb2

LANDMARKS = ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0))


def extractor_face(**fields) -> common_pb2.DetectedFace:
    return common_pb2.DetectedFace(
        bbox=common_pb2.BoundingBox(x1=10, y1=20, x2=41, y2=53),
        landmarks=common_pb2.Landmarks(points=[common_pb2.Point(x=x, y=y) for x, y in LANDMARKS]),
        det_score=0.875, **fields,
    )


def test_quality_and_orientation_pass_through_both_ways():
    face = detected_from_pb(extractor_face(quality=0.625, orientation=8))
    assert (face.quality, face.orientation) == (0.625, 8)
    assert face.bbox == (10, 20, 41, 53) and face.landmarks == LANDMARKS and face.descriptor is None
    out = detected_to_pb(face)
    assert (out.quality, out.orientation, out.det_score) == (0.625, 8, 0.875)
    assert out.bbox == extractor_face().bbox and not out.HasField("descriptor")


def test_an_older_extractor_leaves_them_unknown():
    face = detected_from_pb(extractor_face())
    assert (face.quality, face.orientation) == (0.0, 0)


@pytest.mark.parametrize("reason, domain", [
    (common_pb2.SKIP_REASON_TOO_SMALL, SkipReason.TOO_SMALL),
    (common_pb2.SKIP_REASON_LOW_QUALITY, SkipReason.LOW_QUALITY),
    (common_pb2.SKIP_REASON_UNSPECIFIED, SkipReason.UNSPECIFIED),
    (99, SkipReason.UNSPECIFIED),  # a reason from a newer extractor
])
def test_skipped_faces_keep_their_reason_and_message(reason, domain):
    message = "face is 31x33 px, under the minimum of 40 px for recognition"
    msg = common_pb2.SkippedFace(face=extractor_face(quality=0.125, orientation=1), reason=reason, message=message)
    skipped = skipped_from_pb(msg)
    assert skipped == SkippedFace(skipped.face, domain, message)
    assert skipped.face.quality == 0.125 and skipped.face.bbox == (10, 20, 41, 53)
    out = skipped_to_pb(skipped)
    assert out.message == message and out.face.quality == 0.125 and out.face.bbox == msg.face.bbox
    assert out.reason == (reason if domain is not SkipReason.UNSPECIFIED else common_pb2.SKIP_REASON_UNSPECIFIED)


def test_face_records_carry_quality_and_orientation():
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    face = Face(id=7, galleries=("default",), meta="m", bbox=(1, 2, 3, 4), photo_hash="h", created_at=now,
                updated_at=now, quality=0.75, orientation=3)
    record = face_to_pb(face)
    assert (record.quality, record.orientation) == (0.75, 3)
    unknown = face_to_pb(Face(id=8, galleries=("default",), meta="", bbox=(1, 2, 3, 4), photo_hash="",
                              created_at=now, updated_at=now))
    assert (unknown.quality, unknown.orientation) == (0.0, 0)

