"""The attribute models' wrappers: gender, age and emotions of aligned faces, in batches.

Gender and age take dlib face chips (geometry.face_chip: 32x32 and 64x64, from the photo itself, since
resampling the 112-px crop again shifts the ages); emotions take the 112x112 ArcFace crop the embedder sees.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from findface_grpc.extractor.models import attribute_packs, packs
from findface_grpc.extractor.models.base import Attributes, ModelError
from findface_grpc.extractor.models.tfjs import EMOTION_LABELS

__all__ = ["Attributes", "AttributeNets", "ChipNet", "GENDER_LABELS", "load_attributes", "interpret"]

GENDER_LABELS = ("female", "male")  # the gender net's outputs, in order
GENDER_CHIP = 32
AGE_CHIP = 64
# The age net's 81 classes are these ages in years; the estimate is their expectation.
AGE_YEARS = np.array([0.25, *range(1, 81)], np.float32)
# The gender and age nets take (RGB - mean) / 256, the normalisation dlib trained them with.
CHIP_MEAN = np.array([122.782, 117.001, 104.298], np.float32)
CHIP_SCALE = np.float32(1 / 256)


class ChipNet:
    """A dlib-chip classifier (gender or age): N x S x S x 3 uint8 RGB chips -> N x K probabilities."""

    def __init__(self, session: ort.InferenceSession, chip_size: int, classes: int, max_batch: int) -> None:
        shape = session.get_inputs()[0].shape
        if len(shape) != 4 or tuple(shape[1:]) != (3, chip_size, chip_size):
            raise ModelError(f"expected input N x 3 x {chip_size} x {chip_size}, this one is {shape}")
        out = session.get_outputs()[0].shape
        if out[-1] != classes:
            raise ModelError(f"expected {classes} outputs, this one has {out}")
        self.session = session
        self.chip_size = chip_size
        self.max_batch = max_batch
        self._input = session.get_inputs()[0].name

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(chips), self.max_batch):
            part = chips[start : start + self.max_batch].astype(np.float32)
            blob = ((part - CHIP_MEAN) * CHIP_SCALE).transpose(0, 3, 1, 2)
            out.append(self.session.run(None, {self._input: np.ascontiguousarray(blob)})[0])
        return np.concatenate(out)


class ExpressionNet:
    """face-api's expression net (converted by tfjs.py): N x 112 x 112 x 3 uint8 crops -> N x 7 probabilities.
    It normalises inside its graph and takes NHWC, as TF.js did."""

    def __init__(self, session: ort.InferenceSession, max_batch: int) -> None:
        shape = session.get_inputs()[0].shape
        if len(shape) != 4 or tuple(shape[1:]) != (112, 112, 3):
            raise ModelError(f"expected input N x 112 x 112 x 3, this one is {shape}")
        self.session = session
        self.max_batch = max_batch
        self._input = session.get_inputs()[0].name

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(crops), self.max_batch):
            blob = crops[start : start + self.max_batch].astype(np.float32)
            out.append(self.session.run(None, {self._input: blob})[0])
        return np.concatenate(out)


@dataclass(frozen=True)
class AttributeNets:
    """The loaded attribute models, by attribute; an attribute not configured is absent."""

    gender: ChipNet | None = None
    age: ChipNet | None = None
    emotions: ExpressionNet | None = None

    @property
    def available(self) -> frozenset[str]:
        return frozenset(name for name in attribute_packs.ATTRIBUTES if getattr(self, name) is not None)

    @property
    def model_ids(self) -> dict[str, str]:
        return {name: attribute_packs.ATTRIBUTE_MODELS[name].model_id for name in self.available}


def load_attributes(
    models_dir: Path, names: Sequence[str], providers: Sequence[str], intra_op_threads: int = 1, max_batch: int = 32
) -> AttributeNets:
    """The named attribute models, after checking their files (ModelFileError names what to fetch)."""
    paths = attribute_packs.verify_attributes(models_dir, names)
    threads = (intra_op_threads, 1)

    def session(name: str) -> ort.InferenceSession:
        return packs._session(paths[name], providers, threads)

    nets = {}
    try:
        if "gender" in paths:
            nets["gender"] = ChipNet(session("gender"), GENDER_CHIP, len(GENDER_LABELS), max_batch)
        if "age" in paths:
            nets["age"] = ChipNet(session("age"), AGE_CHIP, len(AGE_YEARS), max_batch)
        if "emotions" in paths:
            nets["emotions"] = ExpressionNet(session("emotions"), max_batch)
    except ModelError as exc:
        raise ModelError(f"attribute model: {exc}") from exc
    return AttributeNets(**nets)


def interpret(
    gender: np.ndarray | None = None, age: np.ndarray | None = None, emotions: np.ndarray | None = None
) -> Attributes:
    """One face's Attributes from the nets' probabilities (each None where not asked)."""
    fields: dict = {}
    if gender is not None:
        best = int(np.argmax(gender))
        fields["gender"], fields["gender_score"] = GENDER_LABELS[best], float(gender[best])
    if age is not None:
        fields["age"] = float(age @ AGE_YEARS)
    if emotions is not None:
        # Stable: equal probabilities keep the net's class order, so answers are reproducible.
        order = np.argsort(-emotions, kind="stable")
        fields["emotions"] = tuple((EMOTION_LABELS[k], float(emotions[k])) for k in order)
    return Attributes(**fields)
