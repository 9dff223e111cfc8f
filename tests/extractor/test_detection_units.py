"""Pure parts of the detection passes and the quality score: turning coordinates back, tiling, merging, factors."""
from __future__ import annotations

import numpy as np
import pytest

from findface_grpc.extractor import detection, quality
from findface_grpc.extractor.models.base import Detection
from findface_grpc.extractor.models.geometry import ARCFACE_TEMPLATE, roll_degrees, unturn_points

FRONTAL = tuple(map(tuple, ARCFACE_TEMPLATE.tolist()))


def det(x1, y1, x2, y2, score=0.9, landmarks=FRONTAL):
    return Detection(bbox=(x1, y1, x2, y2), landmarks=landmarks, score=score)


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_points_in_a_turned_photo_map_back_to_the_same_pixels(turns):
    height, width = 7, 11
    image = np.arange(height * width).reshape(height, width)
    turned = np.rot90(image, turns)
    for y in range(turned.shape[0]):
        for x in range(turned.shape[1]):
            bx, by = unturn_points(np.array([x, y]), turns, width, height)
            assert image[int(round(by)), int(round(bx))] == turned[y, x]


@pytest.mark.parametrize("turns, orientation", [(1, 8), (2, 3), (3, 6)])
def test_a_face_found_in_a_turned_photo_is_reported_in_the_photo_with_its_exif_orientation(turns, orientation):
    width, height = 200, 100
    # A face upright in np.rot90(photo, turns); its eye line then runs left to right there.
    found = det(10, 20, 50, 70, landmarks=((20, 40), (40, 40), (30, 50), (22, 60), (38, 60)))
    back = detection.unturn(found, turns, width, height)
    assert back.orientation == orientation
    x1, y1, x2, y2 = back.bbox
    assert x1 < x2 and y1 < y2 and (x2 - x1) * (y2 - y1) == pytest.approx(40 * 50)
    # In the photo as sent the face is turned the other way (y grows downwards: +90 degrees is clockwise).
    assert abs(roll_degrees(back.landmarks)) == pytest.approx({1: 90.0, 2: 180.0, 3: 90.0}[turns], abs=1e-6)
    assert np.sign(roll_degrees(back.landmarks)) == {1: 1, 2: np.sign(roll_degrees(back.landmarks)), 3: -1}[turns]
    # Turning forward again gives the detection back.
    again = unturn_points(np.array(back.landmarks), 4 - turns, *((height, width) if turns % 2 else (width, height)))
    assert np.allclose(again, np.array(found.landmarks))


@pytest.mark.parametrize("length, tile, overlap", [(500, 640, 96), (640, 640, 96), (1000, 640, 96), (2500, 640, 96)])
def test_tiles_cover_the_photo_and_overlap_enough(length, tile, overlap):
    origins = detection.tile_origins(length, tile, overlap)
    assert origins[0] == 0
    assert min(origins[-1] + tile, length) == length if length > tile else origins == [0]
    for a, b in zip(origins, origins[1:]):
        assert a + tile - b >= overlap


def test_the_fine_pass_never_needs_more_than_its_tile_budget():
    for width, height in [(800, 600), (1600, 1200), (4000, 3000), (7000, 7000)]:
        scale = detection.fine_scale(width, height, 20, 640)
        tiles = len(detection.tile_origins(round(width * scale), 640, detection.TILE_OVERLAP)) * len(
            detection.tile_origins(round(height * scale), 640, detection.TILE_OVERLAP)
        )
        assert 0 < scale <= 1.0 and tiles <= detection.MAX_TILES
    # A 20-px face becomes FINE_FACE_PX wide when the budget allows it.
    assert detection.fine_scale(1000, 800, 20, 640) == pytest.approx(detection.FINE_FACE_PX / 20)


def test_a_face_already_found_keeps_its_first_detection():
    kept = [det(0, 0, 100, 100, 0.7)]
    merged = detection.add_new(kept, [det(5, 5, 100, 100, 0.95), det(300, 300, 400, 400, 0.6)])
    assert merged == [kept[0], det(300, 300, 400, 400, 0.6)]


def test_merge_by_score_keeps_the_best_of_each_face():
    merged = detection.merge_by_score([det(0, 0, 100, 100, 0.7), det(5, 5, 100, 100, 0.95), det(300, 300, 400, 400)])
    assert [d.score for d in merged] == [0.95, 0.9]


def test_quality_factors_rank_faces_as_recognition_does():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    flat = np.full((112, 112, 3), 128, np.uint8)
    assert quality.sharpness_factor(sharp) > 0.9 > 0.1 > quality.sharpness_factor(flat)
    assert quality.size_factor((0, 0, 200, 220)) == 1.0
    assert quality.size_factor((0, 0, 10, 10)) == 0.0
    assert quality.pose_error(FRONTAL) == pytest.approx(0.0, abs=1e-6)
    # Roll does not count: alignment removes it.
    angle = np.radians(40)
    rotated = ARCFACE_TEMPLATE @ np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    assert quality.pose_error(rotated) == pytest.approx(0.0, abs=1e-6)
    # A head turned aside: the nose and mouth move towards one eye.
    turned = ARCFACE_TEMPLATE.copy()
    turned[2:, 0] -= 14
    assert quality.pose_error(turned) > 0.1
    assert quality.pose_factor(turned) < quality.pose_factor(FRONTAL) == 1.0
    good = quality.face_quality(det(0, 0, 120, 140, 0.9), sharp)
    assert 0.9 <= good <= 1.0
    assert quality.face_quality(det(0, 0, 120, 140, 0.9), flat) < 0.3
    assert quality.face_quality(det(0, 0, 120, 140, 0.9, turned), sharp) < good


class _Model:
    upright_score = 0.8


def test_a_turned_photo_keeps_only_the_faces_that_lie_its_way_or_are_sure():
    finder = detection.FaceFinder(_Model())
    turned_face = Detection((0, 0, 100, 100), FRONTAL, 0.9, orientation=6)
    doubtful_upright = det(300, 300, 340, 350, score=0.65)
    sure_upright = det(500, 0, 600, 100, score=0.85)
    assert finder.one_way_up([turned_face, doubtful_upright, sure_upright]) == [turned_face, sure_upright]
    # An upright photo keeps its doubtful faces: blurred people in the background are faces too. So does a photo
    # whose only turned face is itself in doubt.
    assert finder.one_way_up([sure_upright, doubtful_upright]) == [sure_upright, doubtful_upright]
    doubtful_turned = Detection((0, 0, 100, 100), FRONTAL, 0.7, orientation=3)
    assert finder.one_way_up([doubtful_turned, doubtful_upright]) == [doubtful_turned, doubtful_upright]
