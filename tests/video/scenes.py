"""Test videos made deterministically from the labelled photos: people (their photo's face and surroundings)
walking across a still background, entering and leaving, two at once, and stretches with no one; encoded as
H.264 or MJPEG with PyAV's own encoders, or as HLS.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

WIDTH, HEIGHT, FPS = 640, 480, 15


@dataclass(frozen=True)
class Walk:
    """One person crossing: the sprite's top-left corner goes from `start` to `end` (linearly) between the two
    frames, its face growing from `face_from` to `face_to` px wide."""

    who: str  # identity
    sprite: Image.Image  # the face's photo crop, face box at its centre, 2x the face's width
    first: int
    last: int
    start: tuple[float, float]
    end: tuple[float, float]
    face_from: float
    face_to: float

    def at(self, index: int) -> tuple[Image.Image, tuple[int, int]] | None:
        if not self.first <= index <= self.last:
            return None
        t = (index - self.first) / max(1, self.last - self.first)
        face = self.face_from + t * (self.face_to - self.face_from)
        size = max(2, round(face * 2))
        x = self.start[0] + t * (self.end[0] - self.start[0])
        y = self.start[1] + t * (self.end[1] - self.start[1])
        return self.sprite.resize((size, size), Image.BILINEAR), (round(x), round(y))

    def face_box(self, index: int) -> tuple[float, float, float, float] | None:
        """Where the face is in frame `index` (the sprite's middle half)."""
        placed = self.at(index)
        if placed is None:
            return None
        sprite, (x, y) = placed
        quarter = sprite.width / 4
        return (x + quarter, y + quarter, x + 3 * quarter, y + 3 * quarter)


def sprite(photo: bytes, box: tuple[float, float, float, float]) -> Image.Image:
    """The face of `photo` in `box` with as much around it again: a square twice the face's size, face centred."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(photo))).convert("RGB")
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1])
    return image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))


def background() -> np.ndarray:
    """A still, textured scene (a wall of soft patches), the same every time."""
    rng = np.random.default_rng(16)
    patches = rng.integers(70, 190, (HEIGHT // 40, WIDTH // 40, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(patches).resize((WIDTH, HEIGHT), Image.BILINEAR))


def render(walks: list[Walk], frames: int) -> list[np.ndarray]:
    wall = background()
    out = []
    for index in range(frames):
        canvas = Image.fromarray(wall)
        for walk in walks:
            placed = walk.at(index)
            if placed is not None:
                canvas.paste(*placed)
        out.append(np.asarray(canvas))
    return out


def encode(frames: list[np.ndarray], path: Path, codec: str = "h264") -> Path:
    """H.264 in MP4 (a keyframe a second, so a stream can be joined), MJPEG in Matroska, or `hls` (H.264 in
    MPEG-TS segments of a second with an .m3u8 playlist at `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod"} if codec == "hls" else {}
    with av.open(str(path), "w", format="hls" if codec == "hls" else None, options=options) as out:
        if codec == "mjpeg":
            stream = out.add_stream("mjpeg", rate=FPS)
            stream.pix_fmt = "yuvj420p"
            stream.options = {"q:v": "3"}
        else:
            stream = out.add_stream("libx264", rate=FPS)
            stream.pix_fmt = "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "20", "g": str(FPS), "bf": "0"}
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
