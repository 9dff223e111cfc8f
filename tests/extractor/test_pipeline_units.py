"""Pure parts of the extractor pipeline: face selection and its reasons, and box overlap."""
from __future__ import annotations

import numpy as np
import pytest

from findface_grpc.errors import InvalidArgument, TooManyFaces
from findface_grpc.extractor.models.base import Detection
from findface_grpc.extractor.pipeline import MultiFace, PreparedFace, SkipReason, apply_selector, iou

LM = ((0.0, 0.0),) * 5
CROP = np.zeros((112, 112, 3), np.uint8)
MIN_SIZE = 40


def face(x1, y1, x2, y2, score=0.9, quality=0.8):
    return PreparedFace(Detection(bbox=(x1, y1, x2, y2), landmarks=LM, score=score), CROP, quality)


SMALL_SURE = face(0, 0, 60, 60, 0.99)
BIG_UNSURE = face(100, 100, 300, 300, 0.6)
TINY = face(400, 400, 425, 431)
POOR = face(500, 0, 600, 100, quality=0.2)


@pytest.mark.parametrize(
    "faces, selector, expected",
    [
        ([], MultiFace.BIGGEST, []),
        ([SMALL_SURE], MultiFace.BIGGEST, [SMALL_SURE]),
        ([SMALL_SURE, BIG_UNSURE], MultiFace.ALL, [SMALL_SURE, BIG_UNSURE]),
        ([SMALL_SURE], MultiFace.REJECT, [SMALL_SURE]),
        # A face too small to recognise is no second face for REJECT: it is reported as skipped.
        ([SMALL_SURE, TINY], MultiFace.REJECT, [SMALL_SURE]),
    ],
)
def test_selector_keeps_the_usable_faces(faces, selector, expected):
    usable, _ = apply_selector(faces, selector, MIN_SIZE, 0.0)
    assert usable == expected


def test_reject_lists_every_usable_box():
    with pytest.raises(TooManyFaces, match="Too many faces: 2") as err:
        apply_selector([SMALL_SURE, BIG_UNSURE, TINY], MultiFace.REJECT, MIN_SIZE, 0.0)
    assert err.value.details == {"faces": [[0, 0, 60, 60], [100, 100, 300, 300]]}


def test_faces_left_out_say_why_with_their_size_and_the_minimum():
    usable, skipped = apply_selector([BIG_UNSURE, TINY, POOR], MultiFace.ALL, MIN_SIZE, 0.5)
    assert usable == [BIG_UNSURE]
    assert [(s.face, s.reason) for s in skipped] == [(TINY, SkipReason.TOO_SMALL), (POOR, SkipReason.LOW_QUALITY)]
    assert "25x31 px" in skipped[0].message and "minimum of 40 px" in skipped[0].message
    assert "quality 0.20" in skipped[1].message and "min_quality 0.50" in skipped[1].message


@pytest.mark.parametrize("selector", list(MultiFace))
def test_a_photo_with_no_usable_face_is_refused_with_the_reason(selector):
    with pytest.raises(InvalidArgument, match=r"25x31 px, under the minimum of 40 px"):
        apply_selector([TINY], selector, MIN_SIZE, 0.0)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),
    ],
)
def test_iou(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)
