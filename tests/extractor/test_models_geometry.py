"""Unit tests of the models' shared geometry: no model files needed."""
from __future__ import annotations

import numpy as np
import pytest

from findface_grpc.extractor.models import scrfd
from findface_grpc.extractor.models.geometry import (
    ARCFACE_TEMPLATE,
    align_face,
    distance2bbox,
    distance2kps,
    estimate_similarity,
    letterbox,
    nms,
)


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_nms_keeps_best_of_overlapping_boxes_in_score_order():
    boxes = np.array(
        [
            [100, 100, 110, 110],  # 0: alone
            [0, 0, 10, 10],  # 1: best
            [1, 1, 11, 11],  # 2: IoU 81/119 = 0.68 with 1: dropped
            [5, 0, 15, 10],  # 3: IoU 50/150 = 0.33 with 1: kept
            [6, 0, 16, 10],  # 4: IoU 0.67 with 3, which outranks it: dropped
        ],
        dtype=np.float32,
    )
    scores = np.array([0.6, 0.9, 0.85, 0.7, 0.65])
    assert nms(boxes, scores, 0.4).tolist() == [1, 3, 0]
    assert nms(boxes, scores, 0.9).tolist() == [1, 2, 3, 4, 0]


def test_nms_of_nothing():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4).tolist() == []


def test_distance_decoding_around_an_anchor():
    anchor = np.array([[16.0, 8.0]])
    assert distance2bbox(anchor, np.array([[2.0, 3.0, 4.0, 5.0]])).tolist() == [[14.0, 5.0, 20.0, 13.0]]
    offsets = np.array([[1, 2, -1, -2, 0, 0, 3, 4, -3, -4]], dtype=np.float64)
    assert distance2kps(anchor, offsets).tolist() == [[[17, 10], [15, 6], [16, 8], [19, 12], [13, 4]]]


def test_scrfd_anchor_layout_is_row_major_with_anchors_innermost():
    centres = scrfd._anchor_centres(640, 8)
    assert centres.shape == (80 * 80 * scrfd.ANCHORS_PER_CELL, 2)
    row, col = 1, 2
    for anchor in range(scrfd.ANCHORS_PER_CELL):
        assert centres[(row * 80 + col) * scrfd.ANCHORS_PER_CELL + anchor].tolist() == [col * 8, row * 8]


def test_estimate_similarity_recovers_a_known_transform():
    src = np.random.default_rng(7).uniform(0, 200, size=(5, 2))
    truth = similarity(1.7, 23.0, 5.0, -3.0)
    np.testing.assert_allclose(estimate_similarity(src, apply(truth, src)), truth, atol=1e-9)


def test_estimate_similarity_never_mirrors():
    src = np.random.default_rng(8).uniform(0, 200, size=(5, 2))
    mirrored = src * [-1.0, 1.0]
    assert np.linalg.det(estimate_similarity(src, mirrored)[:, :2]) > 0


def test_estimate_similarity_rejects_coincident_points():
    with pytest.raises(ValueError):
        estimate_similarity(np.ones((5, 2)), ARCFACE_TEMPLATE)


def test_align_face_puts_the_landmarks_on_the_template():
    # Dots where a rotated, enlarged, shifted face would have its landmarks; after alignment each dot's
    # centroid must be where the template says.
    face_to_photo = similarity(2.5, 15.0, 60.0, 40.0)
    landmarks = apply(face_to_photo, ARCFACE_TEMPLATE.astype(np.float64))
    photo = np.zeros((400, 500, 3), np.uint8)
    ys, xs = np.mgrid[0:400, 0:500]
    for x, y in landmarks:
        photo[(xs - x) ** 2 + (ys - y) ** 2 <= 5**2] = 255
    crop = align_face(photo, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    weight = crop[..., 0].astype(np.float64)
    cys, cxs = np.mgrid[0:112, 0:112]
    for tx, ty in ARCFACE_TEMPLATE:
        near = (np.abs(cxs - tx) <= 6) & (np.abs(cys - ty) <= 6)
        w = weight * near
        assert w.sum() > 0, f"no dot near template point {(tx, ty)}"
        centroid = np.array([(w * cxs).sum(), (w * cys).sum()]) / w.sum()
        assert np.hypot(*(centroid - [tx, ty])) < 1.0


def test_align_face_with_landmarks_on_the_template_is_the_identity():
    crop = np.random.default_rng(9).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align_face(crop, ARCFACE_TEMPLATE), crop)


def test_align_face_outside_the_photo_is_black():
    photo = np.full((50, 50, 3), 200, np.uint8)
    far_away = ARCFACE_TEMPLATE + 1000
    assert not align_face(photo, far_away).any()


@pytest.mark.parametrize(
    ("height", "width", "scale", "content"), [(100, 200, 3.2, (320, 640)), (800, 400, 0.8, (640, 320))]
)
def test_letterbox_keeps_aspect_and_pads_bottom_right(height, width, scale, content):
    image = np.full((height, width, 3), 255, np.uint8)
    padded, got_scale = letterbox(image, 640)
    assert padded.shape == (640, 640, 3) and padded.dtype == np.uint8
    assert got_scale == pytest.approx(scale)
    content_h, content_w = content
    assert (padded[:content_h, :content_w] == 255).all()
    assert not padded[content_h:].any() and not padded[:, content_w:].any()
