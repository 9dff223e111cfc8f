"""Which snapshots of a track are posted: the original's two modes, on the extractor's quality score. Pure.

- Offline: the best snapshot of each track is kept, and posted once when the track ends (if it reaches
  min_quality).
- Real-time: a snapshot is posted as soon as its quality reaches the track's threshold (min_quality at first);
  each post raises the threshold to that quality plus rt_score_step, so later posts only come for better faces,
  at least rt_delay_s apart. A new track (the face left and came back) starts from min_quality again, and so
  does a track rt_refresh_s after its last post (the original's rt-refresh; 0: never), so that a face that stays
  in view without getting better is still posted now and then.

`offer` takes the snapshot as a function, so that a crop is only cut and encoded when it may be posted.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from findface_grpc.video.domain import Snapshot


class OfflineSelector:
    def __init__(self, min_quality: float) -> None:
        self.min_quality = min_quality
        self._best: dict[str, Snapshot] = {}

    def offer(self, track_id: str, quality: float, time: float, snapshot: Callable[[], Snapshot]) -> list[Snapshot]:
        best = self._best.get(track_id)
        if quality >= self.min_quality and (best is None or quality > best.quality):
            self._best[track_id] = snapshot()
        return []

    def end(self, track_id: str) -> list[Snapshot]:
        best = self._best.pop(track_id, None)
        return [best] if best is not None else []


@dataclass
class _Rising:
    threshold: float
    last_post: float = float("-inf")


class RealtimeSelector:
    def __init__(self, min_quality: float, step: float, delay_s: float, refresh_s: float = 0.0) -> None:
        self.min_quality = min_quality
        self.step = step
        self.delay_s = delay_s
        self.refresh_s = refresh_s
        self._tracks: dict[str, _Rising] = {}

    def offer(self, track_id: str, quality: float, time: float, snapshot: Callable[[], Snapshot]) -> list[Snapshot]:
        state = self._tracks.setdefault(track_id, _Rising(self.min_quality))
        if self.refresh_s and time - state.last_post >= self.refresh_s:
            state.threshold = self.min_quality
        if quality < state.threshold or time - state.last_post < self.delay_s:
            return []
        # Strictly above what was posted: with a step of 0 an equal snapshot is not posted again.
        state.threshold = quality + self.step if self.step > 0 else quality + 1e-6
        state.last_post = time
        return [snapshot()]

    def end(self, track_id: str) -> list[Snapshot]:
        self._tracks.pop(track_id, None)
        return []
