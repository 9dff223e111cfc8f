"""Hard cases of detection and identification (issue 10): the reduced set of scripts/eval_faces.py against the real
models and photos, with the issue's targets as assertions, and the generator itself on synthetic photos.

The model-backed tests are the test_target_* ones: `pytest tests/extractor/test_hard_cases.py -k target`.
"""
from __future__ import annotations

import importlib.util
import io
import sys

import numpy as np
import pytest
from PIL import Image

from tests.extractor.conftest import PACKS, require_pack
from tests.helpers import ROOT


def load_script():
    spec = importlib.util.spec_from_file_location("eval_faces", ROOT / "scripts" / "eval_faces.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


eval_faces = load_script()

# ---- the targets, on the real models --------------------------------------------------------------------------

TARGET = 0.98
# Cases without a target of their own must not get worse than today's figures (>= 0.92 on the reduced set, where
# one face is 0.04).
FLOOR = 0.9
TARGETS = [
    ("tight", "recall", TARGET), ("tight", "rank1", TARGET),
    ("rotations", "recall", TARGET), ("rotations", "rank1", TARGET),
    ("group 24-64", "recall", TARGET), ("group 24-64", "rank1", FLOOR),
    *[(case, "precision", TARGET) for case in eval_faces.CASES],
    *[(case, metric, FLOOR) for case in ("jpeg20", "blur", "dark", "overexposed") for metric in ("recall", "rank1")],
]


@pytest.fixture(scope="module")
def measured(faces):
    for pack in PACKS:
        require_pack(pack)
    summaries, _ = eval_faces.measure(faces, PACKS, reduced_set=True)
    return summaries


# Targets a pack misses, and why (docs/accuracy.md): strict, so that the day one is met the entry must go.
KNOWN_MISSES = {
    ("yunet-sface", "overexposed", "precision"): "YuNet finds a false face on the shirt of img2 brightened x2.2 "
    "(1 of 27 detections), as it did before issue 10",
}


@pytest.mark.parametrize("pack", PACKS)
@pytest.mark.parametrize("case, metric, minimum", TARGETS)
def test_target(request, measured, pack, case, metric, minimum):
    if (pack, case, metric) in KNOWN_MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[pack, case, metric]))
    figures = (measured[pack]["group_sizes"]["24-64"] if case == "group 24-64"
               else measured[pack]["cases"][case])
    value = figures[metric]
    # No detection at all leaves precision undefined; recall says what went wrong there.
    if value is None and metric == "precision":
        return
    assert value >= minimum, f"{pack} {case} {metric} {value:.3f} < {minimum}: {figures}"


# ---- the generator, on synthetic photos whose one bright rectangle is the face ----------------------------------

DARK, BRIGHT = 30, 230
# A box edge between pixels is found to the nearest whole pixel (0.5), and resampling, blur or JPEG move it a
# little more; a box off by a pixel is caught.
EDGE_TOLERANCE = 0.75
# (identity, upright size, face box, stored turned with an EXIF orientation tag)
SYNTHETIC = [
    ("p1", (400, 500), (120, 150, 260, 330), False),
    ("p1", (1600, 1200), (700, 300, 1000, 700), False),
    ("p2", (600, 400), (20, 30, 160, 210), False),  # near the corner: tight crops are moved inside
    ("p2", (500, 700), (200, 250, 330, 420), True),
    ("p3", (800, 600), (300, 100, 500, 360), False),
    ("p3", (240, 300), (40, 30, 200, 280), False),  # the face fills the photo: tight crops are padded
    ("p4", (1200, 900), (100, 500, 260, 700), True),
    ("p4", (700, 900), (250, 200, 450, 470), False),
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    references = []
    for number, (identity, size, box, turned) in enumerate(SYNTHETIC):
        pixels = np.full((size[1], size[0], 3), DARK, np.uint8)
        pixels[box[1]:box[3], box[0]:box[2]] = BRIGHT
        image = Image.fromarray(pixels)
        name = f"photo{number}.png"
        if turned:
            # Orientation 6: viewers turn it a quarter clockwise, which undoes this.
            exif = Image.Exif()
            exif[0x0112] = 6
            image.transpose(Image.Transpose.ROTATE_90).save(folder / name, exif=exif)
        else:
            image.save(folder / name)
        x1, y1, x2, y2 = map(float, box)
        w, h = x2 - x1, y2 - y1
        landmarks = ((x1 + 0.3 * w, y1 + 0.4 * h), (x1 + 0.7 * w, y1 + 0.4 * h), (x1 + 0.5 * w, y1 + 0.6 * h),
                     (x1 + 0.35 * w, y1 + 0.8 * h), (x1 + 0.65 * w, y1 + 0.8 * h))
        references.append(eval_faces.Reference(name, identity, (x1, y1, x2, y2), landmarks, ()))
    return folder, references


@pytest.fixture(scope="module")
def generated(synthetic):
    folder, references = synthetic
    return eval_faces.generate(folder, references)


def bright_box(photo: bytes, around: tuple[float, float, float, float] | None = None):
    """The box of the pixels brighter than halfway between the darkest and brightest, in `around` (whole pixels
    of the photo) or the whole photo."""
    gray = np.asarray(Image.open(io.BytesIO(photo)).convert("L"), dtype=np.float64)
    left, top = 0, 0
    if around is not None:
        left, top = max(0, int(around[0])), max(0, int(around[1]))
        gray = gray[top:int(np.ceil(around[3])), left:int(np.ceil(around[2]))]
    ys, xs = np.nonzero(gray > (gray.min() + gray.max()) / 2)
    return left + xs.min(), top + ys.min(), left + xs.max() + 1, top + ys.max() + 1


def clipped(box, width, height):
    return max(0.0, box[0]), max(0.0, box[1]), min(width, box[2]), min(height, box[3])


def test_generation_is_deterministic(synthetic, generated):
    folder, references = synthetic
    again = eval_faces.generate(folder, references)
    assert [(c.case, c.name, c.photo, c.faces) for c in again] == [(c.case, c.name, c.photo, c.faces)
                                                                  for c in generated]


def test_every_case_is_generated(generated):
    counts = {case: sum(c.case == case for c in generated) for case in eval_faces.CASES}
    assert counts == {"tight": 8, "group": eval_faces.GROUP_CANVASES, "rotations": 24, "jpeg20": 8, "blur": 8,
                      "dark": 8, "overexposed": 8}


def test_reduced_set_has_one_turn_per_photo_and_fewer_canvases(synthetic):
    folder, references = synthetic
    cases = eval_faces.generate(folder, eval_faces.reduced(references), ("rotations", "group"), reduced_set=True)
    turns = [c.name.rsplit("@", 1)[1] for c in cases if c.case == "rotations"]
    assert turns == ["90", "180", "270"] * 2 + ["90", "180"]
    assert sum(c.case == "group" for c in cases) == eval_faces.REDUCED_GROUP_CANVASES


@pytest.mark.parametrize("case", ["tight", "rotations", "jpeg20", "blur", "dark", "overexposed"])
def test_reference_box_follows_the_face(generated, case):
    for hard in (c for c in generated if c.case == case):
        (face,) = hard.faces
        expected = clipped(face.bbox, hard.width, hard.height)
        assert np.allclose(bright_box(hard.photo), expected, atol=EDGE_TOLERANCE), (hard.name, expected)


def test_photos_are_plain_jpeg_without_orientation(generated):
    for hard in generated:
        with Image.open(io.BytesIO(hard.photo)) as image:
            assert image.format == "JPEG"
            assert image.size == (hard.width, hard.height)
            assert image.getexif().get(0x0112) is None


def test_tight_crops_are_squares_just_around_the_face(generated):
    for hard in (c for c in generated if c.case == "tight"):
        (face,) = hard.faces
        assert hard.width == hard.height and 100 <= hard.width <= 200
        side = max(face.bbox[2] - face.bbox[0], face.bbox[3] - face.bbox[1])
        assert 0.9 <= hard.width / side <= 1.3 + 1e-6, hard.name


def test_turns_are_undone_by_the_opposite_turn():
    box = (10.0, 20.0, 110.0, 220.0)
    for degrees, back in ((90, 270), (180, 180), (270, 90)):
        there = eval_faces.quarter_turn(degrees, 640, 480)
        size = (640, 480) if degrees == 180 else (480, 640)
        assert np.allclose(eval_faces.map_box(eval_faces.quarter_turn(back, *size) @ there, box), box)
    assert np.allclose(eval_faces.map_box(eval_faces.quarter_turn(90, 640, 480), box), (20, 530, 220, 630))


def test_group_canvases_hold_separate_faces_of_the_stated_sizes(generated):
    canvases = [c for c in generated if c.case == "group"]
    widths = []
    for canvas in canvases:
        assert 800 <= canvas.width <= 1200
        assert 2 <= len(canvas.faces) <= 12
        assert len({f.identity for f in canvas.faces}) == len(canvas.faces)
        for i, face in enumerate(canvas.faces):
            x1, y1, x2, y2 = face.bbox
            assert 0 <= x1 and 0 <= y1 and x2 <= canvas.width and y2 <= canvas.height
            assert all(eval_faces.iou(face.bbox, other.bbox) == 0 for other in canvas.faces[i + 1:])
            widths.append(face.width)
            # The face is pasted where its box says: look just around it, where its own dark surroundings are.
            found = bright_box(canvas.photo, (x1 - 2, y1 - 2, x2 + 2, y2 + 2))
            assert np.allclose(found, face.bbox, atol=EDGE_TOLERANCE), (canvas.name, face.bbox, found)
    assert min(widths) >= 16 and max(widths) < 65
    for low, high in eval_faces.SIZE_BUCKETS:
        assert any(low <= w < high for w in widths), (low, high)


def test_unlabelled_faces_that_show_are_kept_whole():
    shift = eval_faces.translation(-100, 0)
    bystanders = ((120, 10, 160, 50), (80, 120, 120, 160), (50, 0, 90, 40))  # inside, half in, outside
    assert eval_faces.in_frame(bystanders, shift, (0, 0, 200, 200)) == ((20, 10, 60, 50), (-20, 120, 20, 160))


def test_a_detection_mostly_on_an_unlabelled_face_is_not_counted():
    unlabelled = ((-20, 120, 20, 160),)
    assert eval_faces.on_unlabelled((0, 125, 20, 150), unlabelled)  # the part that shows
    assert eval_faces.on_unlabelled((-25, 115, 25, 165), unlabelled)  # the whole face, loosely
    assert not eval_faces.on_unlabelled((10, 100, 50, 140), unlabelled)


@pytest.mark.parametrize(
    "truth, found, expected",
    [
        ([], [(0, 0, 10, 10)], {}),
        ([(0, 0, 10, 10)], [], {}),
        ([(0, 0, 10, 10)], [(0, 0, 10, 11), (0, 0, 10, 10)], {0: 1}),
        ([(0, 0, 10, 10)], [(0, 0, 10, 25)], {}),  # IoU 0.4
        # One to one: the second box's best detection went to the first, its next best is taken.
        ([(0, 0, 10, 10), (0, 0, 10, 12)], [(0, 0, 10, 10), (0, 0, 10, 14)], {0: 0, 1: 1}),
    ],
)
def test_match_pairs_boxes_one_to_one_by_iou(truth, found, expected):
    assert eval_faces.match(truth, found) == expected
