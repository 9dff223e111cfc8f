"""Gender, age and emotions: the attribute models as fetched, the expression net's conversion, and the models on
the labelled photos, through the extractor's service and its gRPC server."""
from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import statistics
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from findface_grpc.extractor.config import ExtractorConfig
from findface_grpc.extractor.models import attribute_packs, tfjs
from findface_grpc.extractor.models.geometry import face_chip
from findface_grpc.extractor.models.packs import ModelFileError, default_models_dir
from findface_grpc.extractor.server import build_service
from findface_grpc.rpc import CHANNEL_OPTIONS
from findface_grpc.v1 import common_pb2, extractor_pb2, extractor_pb2_grpc
from tests.helpers import free_port, labelled_photos, start_server

DATA = Path(__file__).resolve().parents[1] / "data"
ALL = frozenset(attribute_packs.ATTRIBUTES)

# The expression net in the npm package's own TF.js build (dist/face-api.esm.js, CPU backend, in Node 20) on the
# two fixed inputs below: scripts/expression_golden.mjs printed these. The converted ONNX must give the same.
TFJS_GOLDEN = [
    [0.1245189681649208, 0.08349969983100891, 0.763168454170227, 0.007418343797326088, 0.005187271162867546,
     0.011081353761255741, 0.005125933326780796],
    [0.11420883983373642, 0.0855395495891571, 0.6823234558105469, 0.02534504421055317, 0.03153964877128601,
     0.0019142621895298362, 0.05912919342517853],
]


def golden_inputs() -> np.ndarray:
    """Two 112x112 RGB float images made by formula (no randomness): a gradient and a folded pattern."""
    yy, xx = np.mgrid[0:112, 0:112]
    gradient = np.stack([xx * 2.2, yy * 2.2, (xx + yy) * 1.1], -1)
    folded = np.stack([(xx * 37 + yy * 11) % 256, (xx * 5 + yy * 29) % 256, (xx * yy) % 256], -1)
    return np.stack([gradient, folded]).astype(np.float32)


def require_attributes() -> Path:
    models_dir = default_models_dir()
    try:
        attribute_packs.verify_attributes(models_dir)
    except ModelFileError as exc:
        pytest.skip(f"attribute models not fetched ({exc})")
    return models_dir


def test_expression_net_conversion_is_deterministic_and_gives_what_tfjs_gives():
    models_dir = require_attributes()
    spec = attribute_packs.ATTRIBUTE_MODELS["emotions"]
    sources = [p.read_bytes() for p in attribute_packs.source_paths(spec, models_dir)]
    for data, (_, sha256) in zip(sources, spec.members):
        assert hashlib.sha256(data).hexdigest() == sha256
    converted = tfjs.convert_expression_net(*sources)
    assert hashlib.sha256(converted).hexdigest() == spec.sha256
    assert tfjs.convert_expression_net(*sources) == converted
    session = ort.InferenceSession(converted, providers=["CPUExecutionProvider"])
    out = session.run(None, {"images": golden_inputs()})[0]
    np.testing.assert_allclose(out, np.array(TFJS_GOLDEN, np.float32), atol=3e-6)
    # The converted file on disk is that conversion.
    assert (models_dir / spec.file_name).read_bytes() == converted


def manifest(weights: list[dict]) -> bytes:
    return json.dumps([{"paths": ["w.bin"], "weights": weights}]).encode()


def test_read_weights_dequantizes_as_tfjs_and_refuses_what_does_not_fit():
    quantized = {"name": "q", "shape": [3], "dtype": "float32",
                 "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}
    plain = {"name": "f", "shape": [2], "dtype": "float32"}
    data = bytes([0, 255, 128]) + np.array([1.5, -2.0], "<f4").tobytes()
    weights = tfjs.read_weights(manifest([quantized, plain]), data)
    np.testing.assert_array_equal(weights["q"], [-1.0, 126.5, 63.0])
    np.testing.assert_array_equal(weights["f"], [1.5, -2.0])
    with pytest.raises(tfjs.ConversionError, match="beyond its weights"):
        tfjs.read_weights(manifest([quantized, plain]), data + b"\0")
    with pytest.raises(tfjs.ConversionError, match="ends early"):
        tfjs.read_weights(manifest([quantized, plain]), data[:-1])
    with pytest.raises(tfjs.ConversionError, match="weight dense0/conv0/filters is missing"):
        tfjs.expression_net(weights)


def test_verify_names_every_missing_attribute_model_and_the_fetch_command(tmp_path):
    with pytest.raises(ModelFileError) as caught:
        attribute_packs.verify_attributes(tmp_path)
    for f in attribute_packs.ATTRIBUTE_MODELS.values():
        assert f"{tmp_path / f.file_name}: missing" in str(caught.value)
    assert "fetch attributes" in str(caught.value)


def test_an_altered_attribute_model_stops_the_extractor_from_starting(tmp_path):
    models_dir = require_attributes()
    for f in attribute_packs.ATTRIBUTE_MODELS.values():
        (tmp_path / f.file_name).write_bytes((models_dir / f.file_name).read_bytes())
    gender = tmp_path / attribute_packs.ATTRIBUTE_MODELS["gender"].file_name
    gender.write_bytes(gender.read_bytes() + b"\0")
    for name in ("scrfd_500m_bnkps.onnx", "w600k_mbf_dynbatch.onnx"):
        (tmp_path / name).symlink_to(models_dir / name)
    with pytest.raises(ModelFileError, match=f"{gender}: sha256 is"):
        build_service(ExtractorConfig(models_dir=str(tmp_path), workers=1))
    service, _ = build_service(ExtractorConfig(models_dir=str(tmp_path), workers=1, attributes=("age",)))
    assert service.attributes.available == {"age"}


def test_face_chip_is_the_dlib_layout_and_does_not_alias():
    """A synthetic face: the chip puts the landmarks where dlib's template says, and a 32-px chip of a large,
    finely striped face is the stripes' mean grey, not a moire of them."""
    image = np.zeros((800, 800, 3), np.uint8)
    image[:, ::2] = 255
    landmarks = [(300.0, 300.0), (500.0, 300.0), (400.0, 410.0), (310.0, 510.0), (490.0, 510.0)]
    chip = face_chip(image, landmarks, 32)
    assert chip.shape == (32, 32, 3)
    assert abs(float(chip[8:24, 8:24].mean()) - 127.5) < 4
    assert float(chip[8:24, 8:24].std()) < 4


@pytest.fixture(scope="module")
def service_loop():
    require_attributes()
    loop = asyncio.new_event_loop()
    service, _ = build_service(ExtractorConfig(model_pack="scrfd-mbf", workers=2))
    loop.run_until_complete(service.start())
    yield service, loop
    loop.run_until_complete(service.stop())
    loop.close()


def read_csv(name: str) -> list[dict]:
    with open(DATA / name, newline="") as f:
        return list(csv.DictReader(f))


def test_gender_age_and_emotions_on_the_labelled_photos(service_loop, faces):
    service, loop = service_loop
    genders = {row["identity"]: row["gender"] for row in read_csv("identities.csv")}
    expressions = {row["file"]: row["expression"] for row in read_csv("expressions.csv")}
    wrong_gender, agree, ages = [], 0, {}
    for name, identity in labelled_photos(faces):
        extraction = loop.run_until_complete(service.extract((faces / name).read_bytes(), attributes=ALL))
        attributes = extraction.faces[0].attributes
        if attributes.gender != genders[identity]:
            wrong_gender.append(name)
        assert 0.5 <= attributes.gender_score <= 1.0
        ages.setdefault(identity, []).append(attributes.age)
        scores = [p for _, p in attributes.emotions]
        assert len(scores) == 7 and scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4
        agree += attributes.emotions[0][0] == expressions.get(name)
    # 61 of 61 when measured (docs/accuracy.md); one miss is allowed for another platform's rounding.
    assert len(wrong_gender) <= 1, wrong_gender
    assert agree >= 46, f"emotions agree on {agree} of {len(expressions)} photos"
    assert all(15 <= a <= 80 for values in ages.values() for a in values), ages
    # The oldest identity (born 1961) is estimated well above the youngest (born 1984).
    assert statistics.median(ages["person09"]) > statistics.median(ages["person03"]) + 15


def test_nothing_is_computed_unless_asked_and_concurrent_faces_share_batches(service_loop, faces):
    service, loop = service_loop
    photos = [(faces / name).read_bytes() for name, _ in labelled_photos(faces)[:8]]
    batchers = service.attributes.batchers
    before = {name: b.batches for name, b in batchers.items()}
    plain = loop.run_until_complete(service.extract(photos[0]))
    assert plain.faces[0].attributes is None
    assert {name: b.batches for name, b in batchers.items()} == before

    async def together():
        return await asyncio.gather(*(service.extract(p, attributes={"gender", "emotions"}) for p in photos))

    results = loop.run_until_complete(together())
    assert all(r.faces[0].attributes.age is None and r.faces[0].attributes.gender for r in results)
    assert batchers["age"].batches == before["age"]
    for name in ("gender", "emotions"):
        calls = batchers[name].batches - before[name]
        assert 1 <= calls < len(photos), f"{name}: {calls} model calls for {len(photos)} concurrent photos"


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    require_attributes()
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("extractor") / "attributes.log"
    server = start_server("findface_grpc.extractor.server", ["--listen", address], address, log)
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    yield extractor_pb2_grpc.ExtractorStub(channel)
    channel.close()
    server.stop()


def test_grpc_detect_and_extract_carry_the_attributes_asked_for(stub, faces):
    info = stub.Info(extractor_pb2.InfoRequest())
    assert {(m.attribute, m.model_id) for m in info.attribute_models} == {
        (common_pb2.ATTRIBUTE_GENDER, "dlib_gender_v1"), (common_pb2.ATTRIBUTE_AGE, "dlib_age_v1"),
        (common_pb2.ATTRIBUTE_EMOTIONS, "faceapi_expression"),
    }
    couple = (faces / "deepface/couple.jpg").read_bytes()
    everything = [common_pb2.ATTRIBUTE_GENDER, common_pb2.ATTRIBUTE_AGE, common_pb2.ATTRIBUTE_EMOTIONS]
    detected = stub.Detect(extractor_pb2.DetectRequest(image=couple, attributes=everything))
    assert len(detected.faces) == 2
    assert {f.gender.gender for f in detected.faces} == {common_pb2.GENDER_FEMALE, common_pb2.GENDER_MALE}
    for face in detected.faces:
        assert 10 < face.age.years < 80 and len(face.emotions) == 7
    plain = stub.Detect(extractor_pb2.DetectRequest(image=couple))
    assert not plain.faces[0].HasField("gender") and not plain.faces[0].HasField("age")
    assert not plain.faces[0].emotions
    one = (faces / "deepface/img30.jpg").read_bytes()  # a man, not smiling
    extracted = stub.Extract(extractor_pb2.ExtractRequest(image=one, attributes=[common_pb2.ATTRIBUTE_EMOTIONS]))
    (face,) = extracted.faces
    assert face.descriptor.vector and not face.HasField("gender")
    assert face.emotions[0].emotion == common_pb2.EMOTION_NEUTRAL


def test_grpc_unknown_attribute_is_invalid_argument(stub, faces):
    one = (faces / "deepface/img30.jpg").read_bytes()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Detect(extractor_pb2.DetectRequest(image=one, attributes=[17]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
