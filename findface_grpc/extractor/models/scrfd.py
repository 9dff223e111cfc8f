"""SCRFD face detector (insightface) with 5 keypoints, decoded as insightface's `SCRFD.detect` does."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from findface_grpc.extractor.models.base import Detection, ModelError
from findface_grpc.extractor.models.geometry import (
    candidates_to_detections,
    distance2bbox,
    distance2kps,
    letterbox,
)

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


class ScrfdDetector:
    # Under this a face may be a turned one and is checked: on the labelled photos upright faces score 0.71-0.90
    # (one in twenty under 0.77), upside-down ones 0.52-0.76. Faces lying on their side score up to 0.81, but
    # their landmarks say so (see detection.is_sideways).
    upright_score = 0.77

    def __init__(
        self,
        session: ort.InferenceSession,
        input_size: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
    ) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        # Outputs come as scores, boxes, keypoints, each for strides 8, 16, 32; custom exports name them freely,
        # so the order is what counts, and the last dimensions tell a 5-keypoint SCRFD from anything else.
        widths = [o.shape[-1] if o.shape else None for o in outputs]
        if len(inputs) != 1 or len(outputs) != 9 or widths != [1] * 3 + [4] * 3 + [10] * 3:
            raise ModelError(
                "not an SCRFD detector with 5 keypoints: expected 1 input and 9 outputs of widths "
                f"1,1,1,4,4,4,10,10,10, got {len(inputs)} inputs and outputs of widths {widths}"
            )
        # An export with a fixed input size decides the size itself.
        fixed = [d for d in inputs[0].shape[2:] if isinstance(d, int)]
        if fixed:
            if len(fixed) != 2 or fixed[0] != fixed[1] or fixed[0] % STRIDES[-1]:
                raise ModelError(f"SCRFD input {inputs[0].shape} is not a square multiple of {STRIDES[-1]}")
            input_size = fixed[0]
        self.session = session
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        # An export with a free input size runs at any square multiple of the largest stride: small inputs are
        # how faces larger than the largest anchors are found, at a fraction of the cost.
        self.resizable = not fixed
        self._input_name = inputs[0].name
        self._output_names = [o.name for o in outputs]
        self._centres: dict[int, list[np.ndarray]] = {}

    def _anchor_centres(self, input_size: int) -> list[np.ndarray]:
        if input_size not in self._centres:
            self._centres[input_size] = [_anchor_centres(input_size, stride) for stride in STRIDES]
        return self._centres[input_size]

    def detect(self, image: np.ndarray, input_size: int | None = None) -> list[Detection]:
        size = input_size or self.input_size
        if size != self.input_size and (not self.resizable or size % STRIDES[-1]):
            raise ModelError(f"this SCRFD export runs only at {self.input_size} px, not {size}")
        padded, scale = letterbox(image, size)
        blob = ((padded.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outputs = self.session.run(self._output_names, {self._input_name: np.ascontiguousarray(blob)})
        boxes, points, scores = [], [], []
        for i, (stride, centres) in enumerate(zip(STRIDES, self._anchor_centres(size))):
            # Batched exports give 1 x anchors x k, others anchors x k: the same once flattened.
            level_scores = outputs[i].reshape(-1)
            if len(level_scores) != len(centres):
                raise ModelError(
                    f"SCRFD stride {stride} gave {len(level_scores)} anchors, expected {len(centres)} "
                    f"({ANCHORS_PER_CELL} per cell)"
                )
            keep = level_scores >= self.score_threshold
            if not keep.any():
                continue
            scores.append(level_scores[keep])
            boxes.append(distance2bbox(centres[keep], outputs[i + 3].reshape(-1, 4)[keep] * stride))
            points.append(distance2kps(centres[keep], outputs[i + 6].reshape(-1, 10)[keep] * stride))
        return candidates_to_detections(boxes, points, scores, scale, self.nms_threshold)


def _anchor_centres(input_size: int, stride: int) -> np.ndarray:
    """Anchor points (col, row) * stride in row-major order, each repeated per anchor, as the outputs are laid out."""
    cells = input_size // stride
    rows, cols = np.mgrid[:cells, :cells]
    centres = np.stack([cols, rows], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_CELL, axis=0)
