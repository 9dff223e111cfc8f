"""Embedders of 112x112 ArcFace-aligned crops: insightface's w600k models, OpenCV Zoo's SFace, users' own.

They differ only in input scaling: w600k_mbf wants (x - 127.5) / 127.5; SFace scales inside its graph and wants
raw 0..255 (OpenCV's FaceRecognizerSF feeds `blobFromImage(img, 1, (112, 112), 0, swapRB=true)`). Both take RGB.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from findface_grpc.extractor.models.base import ModelError

CROP_SIZE = 112


class ArcFaceEmbedder:
    def __init__(
        self,
        session: ort.InferenceSession,
        input_mean: float = 127.5,
        input_std: float = 127.5,
        max_batch: int = 32,
    ) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"an embedder takes one input, this one takes {len(inputs)}")
        shape = inputs[0].shape
        want = (3, CROP_SIZE, CROP_SIZE)
        if len(shape) != 4 or any(isinstance(d, int) and d != w for d, w in zip(shape[1:], want)):
            raise ModelError(f"embedder input must be N x 3 x {CROP_SIZE} x {CROP_SIZE}, this one is {shape}")
        self.session = session
        self.input_mean = input_mean
        self.input_std = input_std
        # A model exported with a fixed batch takes exactly that many crops per call.
        self.max_batch = min(max_batch, shape[0]) if isinstance(shape[0], int) else max_batch
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        dim = outputs[0].shape[-1] if outputs[0].shape else None
        if not isinstance(dim, int):
            # Exports with a symbolic descriptor size still have a fixed one in fact: ask the model.
            dim = self._run(np.zeros((1, CROP_SIZE, CROP_SIZE, 3), np.uint8)).shape[-1]
        self.dim: int = dim

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
            raise ValueError(f"crops must be N x {CROP_SIZE} x {CROP_SIZE} x 3, not {crops.shape}")
        out = np.empty((len(crops), self.dim), np.float32)
        for start in range(0, len(crops), self.max_batch):
            out[start : start + self.max_batch] = self._run(crops[start : start + self.max_batch])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _run(self, crops: np.ndarray) -> np.ndarray:
        blob = ((crops.astype(np.float32) - self.input_mean) / self.input_std).transpose(0, 3, 1, 2)
        return self.session.run([self._output_name], {self._input_name: np.ascontiguousarray(blob)})[0]
