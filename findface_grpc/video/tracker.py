"""Following faces from one detected frame to the next of one camera, so that one person walking through is one
track. Pure: frames come in with their time and faces, tracks go out.

At 5 detections a second a walking face moves a good part of its own width between two frames, so each track's
box is first moved on by its velocity; a face then continues the track whose predicted box it overlaps most
(IoU), or, where the overlap is small, whose predicted landmarks its own landmarks are nearest (in face widths),
provided the sizes agree. Pairs are taken greedily, best first; faces left over start tracks.
"""
from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

import numpy as np

from findface_grpc.video.domain import Box, Face, iou, long_side, shift

MIN_IOU = 0.2
# Landmarks of the same face in two frames: mean distance, in face widths, after the predicted motion, plus what
# a change of pace may add over the time between them (a detector that falls behind sees frames further apart).
MAX_LANDMARK_SHIFT = 0.6
MAX_SURPRISE_PER_S = 1.5
MAX_SIZE_RATIO = 1.5
# Velocity is smoothed over detections so that one jittery box does not throw the prediction off.
VELOCITY_SMOOTHING = 0.5


@dataclass
class Track:
    id: str
    box: Box
    landmarks: np.ndarray  # 5 x 2
    started: float
    last_seen: float
    velocity: tuple[float, float] = (0.0, 0.0)  # px per second
    hits: int = 1

    def predicted(self, time: float) -> tuple[Box, np.ndarray]:
        dt = time - self.last_seen
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        return shift(self.box, dx, dy), self.landmarks + (dx, dy)

    def follow(self, face: Face, time: float) -> None:
        dt = time - self.last_seen
        if dt > 0:
            cx = (face.box[0] + face.box[2] - self.box[0] - self.box[2]) / 2 / dt
            cy = (face.box[1] + face.box[3] - self.box[1] - self.box[3]) / 2 / dt
            a = VELOCITY_SMOOTHING if self.hits > 1 else 1.0
            self.velocity = (a * cx + (1 - a) * self.velocity[0], a * cy + (1 - a) * self.velocity[1])
        self.box, self.landmarks = face.box, _points(face)
        self.last_seen = time
        self.hits += 1


@dataclass(frozen=True)
class Update:
    faces: list[tuple[Track, Face]]  # every tracked face of the frame with its track
    ended: list[Track]  # tracks whose face has gone


def _points(face: Face) -> np.ndarray:
    return np.asarray(face.landmarks, dtype=np.float64).reshape(-1, 2)


def pair_cost(track: Track, face: Face, time: float) -> float | None:
    """How well `face` continues `track` (lower is better), or None when it cannot."""
    box, landmarks = track.predicted(time)
    ratio = long_side(face.box) / max(long_side(box), 1e-6)
    if not 1 / MAX_SIZE_RATIO <= ratio <= MAX_SIZE_RATIO:
        return None
    overlap = iou(box, face.box)
    points = _points(face)
    moved = float(np.linalg.norm(points - landmarks, axis=1).mean()) / max(long_side(face.box), 1e-6)
    if overlap < MIN_IOU and moved > MAX_LANDMARK_SHIFT + MAX_SURPRISE_PER_S * (time - track.last_seen):
        return None
    return moved - overlap


class Tracker:
    def __init__(self, timeout_s: float, max_persons: int) -> None:
        self.timeout_s = timeout_s
        self.max_persons = max_persons
        self.tracks: list[Track] = []
        self._prefix = uuid.uuid4().hex[:8]
        self._numbers = itertools.count(1)

    def update(self, time: float, faces: list[Face]) -> Update:
        ended = [t for t in self.tracks if time - t.last_seen > self.timeout_s]
        live = [t for t in self.tracks if t not in ended]
        # The largest faces are the nearest and the best to recognise: extra small ones are the ones left out.
        faces = sorted(faces, key=lambda f: -long_side(f.box))[: self.max_persons]
        pairs = sorted(
            (cost, ti, fi)
            for ti, track in enumerate(live)
            for fi, face in enumerate(faces)
            if (cost := pair_cost(track, face, time)) is not None
        )
        taken_tracks: set[int] = set()
        taken_faces: dict[int, Track] = {}
        for _, ti, fi in pairs:
            if ti in taken_tracks or fi in taken_faces:
                continue
            taken_tracks.add(ti)
            taken_faces[fi] = live[ti]
            live[ti].follow(faces[fi], time)
        for fi, face in enumerate(faces):
            if fi not in taken_faces:
                track = Track(f"{self._prefix}-{next(self._numbers)}", face.box, _points(face), time, time)
                live.append(track)
                taken_faces[fi] = track
        self.tracks = live
        return Update([(taken_faces[fi], face) for fi, face in enumerate(faces)], ended)

    def end_all(self) -> list[Track]:
        ended, self.tracks = self.tracks, []
        return ended

    @property
    def active(self) -> bool:
        return bool(self.tracks)
