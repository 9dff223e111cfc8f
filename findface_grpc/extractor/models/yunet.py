"""YuNet face detector (OpenCV Zoo, 2023mar), decoded as OpenCV's `FaceDetectorYN` does."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from findface_grpc.extractor.models.base import Detection, ModelError
from findface_grpc.extractor.models.geometry import candidates_to_detections, letterbox

STRIDES = (8, 16, 32)
DEFAULT_INPUT_SIZE = 640


class YunetDetector:
    # Under this a face may be a turned one and is checked: on the labelled photos upright faces score 0.92-0.96
    # (blurred or dark ones 0.91 and up), turned ones up to 0.91. YuNet's landmarks of a turned face look upright.
    upright_score = 0.915

    def __init__(self, session: ort.InferenceSession, score_threshold: float = 0.6, nms_threshold: float = 0.3) -> None:
        inputs = session.get_inputs()
        names = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES]
        missing = sorted(set(names) - {o.name for o in session.get_outputs()})
        if len(inputs) != 1 or missing:
            raise ModelError(
                f"not a YuNet 2023mar-style detector: it takes {len(inputs)} inputs, not 1, and lacks outputs {missing}"
            )
        fixed = [d for d in inputs[0].shape[2:] if isinstance(d, int)]
        if fixed and (len(fixed) != 2 or fixed[0] != fixed[1] or fixed[0] % STRIDES[-1]):
            raise ModelError(f"YuNet input {inputs[0].shape} is not a square multiple of {STRIDES[-1]}")
        self.session = session
        self.input_size = fixed[0] if fixed else DEFAULT_INPUT_SIZE
        # Its decoding assumes one input size; a smaller view of a photo is padded to it instead.
        self.resizable = False
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._input_name = inputs[0].name
        self._output_names = names

    def detect(self, image: np.ndarray, input_size: int | None = None) -> list[Detection]:
        if input_size not in (None, self.input_size):
            raise ModelError(f"YuNet runs only at {self.input_size} px, not {input_size}")
        padded, scale = letterbox(image, self.input_size)
        # FaceDetectorYN feeds the BGR image as it is: 0..255, no mean, no scale.
        blob = np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        outputs = dict(zip(self._output_names, self.session.run(self._output_names, {self._input_name: blob})))
        boxes, points, scores = [], [], []
        for stride in STRIDES:
            cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
            obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
            level_scores = np.sqrt(cls * obj)
            keep = np.flatnonzero(level_scores >= self.score_threshold)
            if not keep.size:
                continue
            cols = self.input_size // stride
            cells = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)
            box = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
            centre = (cells + box[:, 0:2]) * stride
            half = np.exp(box[:, 2:4]) * stride / 2
            boxes.append(np.concatenate([centre - half, centre + half], axis=1))
            points.append((cells[:, None, :] + outputs[f"kps_{stride}"].reshape(-1, 5, 2)[keep]) * stride)
            scores.append(level_scores[keep])
        return candidates_to_detections(boxes, points, scores, scale, self.nms_threshold)
