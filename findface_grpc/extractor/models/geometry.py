"""Geometry shared by the detectors and the alignment: box decoding, NMS, letterboxing, similarity warps.

Coordinates follow OpenCV's convention, as the models were trained with it: pixel (x, y) has its centre at
(x, y), not at (x + 0.5, y + 0.5).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from findface_grpc.extractor.models.base import Detection

# Where the 5 landmarks of a 112x112 ArcFace crop lie (insightface's `arcface_dst`); both packs' embedders were
# trained on crops aligned to it.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression over Nx4 x1,y1,x2,y2 boxes: indices of the kept boxes, best score first.

    A box is dropped when its IoU with an already kept, better box is above `iou_threshold`.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    # Stable, so that equal scores keep their input order and results are reproducible.
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iw = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = iw * ih
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def distance2bbox(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Anchor points Nx2 and distances to the left, top, right and bottom edges Nx4 -> Nx4 x1,y1,x2,y2."""
    return np.concatenate([points - distance[:, 0:2], points + distance[:, 2:4]], axis=1)


def distance2kps(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Anchor points Nx2 and keypoint offsets Nx(2K) as dx0,dy0,dx1,dy1,... -> NxKx2 keypoints."""
    return points[:, None, :] + distance.reshape(len(distance), -1, 2)


def candidates_to_detections(
    boxes: list[np.ndarray], points: list[np.ndarray], scores: list[np.ndarray], scale: float, iou_threshold: float
) -> list[Detection]:
    """A detector's candidates (per level: Nx4 boxes, Nx5x2 landmarks, N scores) in letterbox pixels -> the
    detections in source pixels that survive NMS, best first."""
    if not scores:
        return []
    all_boxes = np.concatenate(boxes) / scale
    all_points = np.concatenate(points) / scale
    all_scores = np.concatenate(scores)
    return [
        Detection(
            bbox=tuple(float(v) for v in all_boxes[k]),
            landmarks=tuple((float(x), float(y)) for x, y in all_points[k]),
            score=float(all_scores[k]),
        )
        for k in nms(all_boxes, all_scores, iou_threshold)
    ]


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize to fit a size x size square keeping the aspect ratio, pad bottom and right with black.

    Returns the padded image and the scale: a point in it divided by the scale is the point in `image`.
    """
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    new_w, new_h = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    resized = image
    if (new_w, new_h) != (w, h):
        resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    padded = np.zeros((size, size, 3), dtype=np.uint8)
    padded[:new_h, :new_w] = resized
    return padded, scale


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + translation that best maps points `src` onto `dst` (least squares).

    Umeyama's method, as skimage's SimilarityTransform that insightface aligns with; never a mirroring, since a
    mirrored face is another face to the embedder.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("cannot align to points that all coincide")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    signs = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) > 0 else -1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (s * signs).sum() / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def warp_affine(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """Output pixel p = matrix @ (source point, 1), bilinear, black outside the source, as cv2.warpAffine.

    Only the output pixels are computed, so the cost does not grow with the photo.
    """
    ys, xs = np.mgrid[0:height, 0:width]
    out_points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    src = (out_points - matrix[:, 2]) @ np.linalg.inv(matrix[:, :2]).T
    x0, y0 = np.floor(src[:, 0]), np.floor(src[:, 1])
    fx, fy = src[:, 0] - x0, src[:, 1] - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    h, w, channels = image.shape
    pixels = image.reshape(-1, channels)
    out = np.zeros((width * height, channels), dtype=np.float32)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        # Neighbours outside the photo count as black: their weight goes, their (clipped) index is harmless.
        weight = (weight * ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))).astype(np.float32)
        out += weight[:, None] * pixels[np.clip(yi, 0, h - 1) * w + np.clip(xi, 0, w - 1)]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(height, width, channels)


def align_face(image: np.ndarray, landmarks, size: int = 112) -> np.ndarray:
    """The face with these 5 landmarks, warped so that they fall on the ArcFace template: size x size x 3 uint8."""
    matrix = estimate_similarity(np.asarray(landmarks), ARCFACE_TEMPLATE * (size / 112.0))
    return warp_affine(image, matrix, size, size)


# Where the same 5 landmarks lie in dlib's face chips, as fractions of the chip before padding: the eye centres,
# nose tip and mouth corners of the mean face that dlib's get_face_chip_details aligns to (its 68-point mean
# shape; its 5-point layout, eye corners and the base of the nose, is the same face). The gender and age nets
# were trained on such chips.
DLIB_CHIP_TEMPLATE = np.array(
    [
        [0.225492, 0.215990],
        [0.754761, 0.215990],
        [0.490127, 0.515625],
        [0.254149, 0.780233],
        [0.726104, 0.780233],
    ],
    dtype=np.float64,
)


def face_chip(image: np.ndarray, landmarks, size: int, padding: float = 0.2) -> np.ndarray:
    """The face with these 5 landmarks as a size x size dlib face chip (get_face_chip_details with `padding`).

    As dlib does, a chip much smaller than the face is not sampled straight from the photo, which would alias
    (a 32-px chip of a 300-px face): the region is first halved as often as keeps it at least the chip's size,
    then warped bilinearly. dlib spreads the template over size - 1 pixel steps, so do we.
    """
    target = (padding + DLIB_CHIP_TEMPLATE) / (1 + 2 * padding) * (size - 1)
    matrix = estimate_similarity(np.asarray(landmarks), target)
    chip_px_per_photo_px = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = 1
    while chip_px_per_photo_px * factor * 2 < 1.0:
        factor *= 2
    if factor == 1:
        return warp_affine(image, matrix, size, size)
    # Only the region the chip covers (plus a margin for the filter) is reduced, aligned to whole blocks.
    corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], np.float64)
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    region = corners @ inverse[:, :2].T + inverse[:, 2]
    h, w = image.shape[:2]
    x0 = max(0, (int(np.floor(region[:, 0].min())) // factor - 1) * factor)
    y0 = max(0, (int(np.floor(region[:, 1].min())) // factor - 1) * factor)
    x1 = min(w, (int(np.ceil(region[:, 0].max())) // factor + 2) * factor)
    y1 = min(h, (int(np.ceil(region[:, 1].max())) // factor + 2) * factor)
    if x1 - x0 < factor or y1 - y0 < factor:  # the chip lies outside the photo: all black, as dlib gives
        return np.zeros((size, size, image.shape[2]), np.uint8)
    small = np.asarray(Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1])).reduce(factor))
    # Pixel j of the reduced region is the mean of region pixels j*f .. j*f+f-1, centred at j*f + (f-1)/2.
    reduced = matrix.copy()
    reduced[:, :2] = matrix[:, :2] * factor
    reduced[:, 2] = matrix[:, 2] + matrix[:, :2] @ np.array([x0 + (factor - 1) / 2, y0 + (factor - 1) / 2])
    return warp_affine(small, reduced, size, size)


# np.rot90(image, k) turns a photo k quarter turns counter-clockwise; a face upright after that turn lies in the
# photo as this EXIF orientation says (8: the photo needs a quarter turn counter-clockwise to show it upright).
QUARTER_TURNS_TO_ORIENTATION = {0: 1, 1: 8, 2: 3, 3: 6}


def unturn_points(points: np.ndarray, quarter_turns: int, width: int, height: int) -> np.ndarray:
    """Points (..., 2) in np.rot90(image, quarter_turns) -> the same points in `image`, which is width x height.

    Exact under the pixel-centre convention above, for boxes' edges as for landmarks.
    """
    points = np.asarray(points, dtype=np.float64)
    x, y = points[..., 0], points[..., 1]
    k = quarter_turns % 4
    if k == 0:
        back = (x, y)
    elif k == 1:
        back = (width - 1 - y, x)
    elif k == 2:
        back = (width - 1 - x, height - 1 - y)
    else:
        back = (y, height - 1 - x)
    return np.stack(back, axis=-1)


def roll_degrees(landmarks) -> float:
    """Angle of the line from the left eye to the right eye against the horizontal: about 0 for an upright face,
    about +-90 for one lying on its side, about 180 for one upside down."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return float(np.degrees(np.arctan2(ry - ly, rx - lx)))
