"""Face tracking across frames: stable track ids, name voting, emotion smoothing.

Detections are matched to live tracks by box overlap (IoU) with an optimal
assignment (Hungarian method, as hri_face_detect does). A track that goes unmatched
for longer than ``max_age`` seconds is dropped. Tracks let the pipeline skip the
expensive embedding on most frames (see engine/camera.py) and let names and emotions be
stable instead of flickering frame to frame.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from fer_ros.pipeline.types import UNKNOWN, Detection, iou_matrix


@dataclass
class Track:
    track_id: int
    box: np.ndarray
    last_seen: float
    frames: int = 0
    frames_since_embedding: int = 0
    embedded_area: float = 0.0
    ref_thumb: np.ndarray | None = None  # appearance reference (see engine/camera.py)
    votes: deque = field(default_factory=lambda: deque(maxlen=5))  # (name, similarity)
    emotion: np.ndarray | None = None  # smoothed probabilities

    def vote(self) -> tuple[str, float]:
        """Majority name over the recent embeddings, with its mean similarity."""
        if not self.votes:
            return UNKNOWN, 0.0
        counts = Counter(name for name, _ in self.votes)
        top = max(counts.values())
        # Ties go to the most recent of the tied names.
        name = next(n for n, _ in reversed(self.votes) if counts[n] == top)
        return name, float(np.mean([s for n, s in self.votes if n == name]))

    def smooth_emotion(self, probs: np.ndarray, alpha: float) -> np.ndarray:
        """Exponential moving average; alpha is the weight kept from the past (0 = none)."""
        if self.emotion is None or alpha <= 0 or self.emotion.shape != probs.shape:
            self.emotion = probs.astype(np.float32)
        else:
            self.emotion = (alpha * self.emotion + (1 - alpha) * probs).astype(np.float32)
        return self.emotion


class FaceTracker:
    def __init__(self, iou_threshold: float, max_age: float, vote_window: int) -> None:
        # No defaults: the pipeline's (PipelineConfig) are the only ones.
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.vote_window = vote_window
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()

    def restart(self, track: Track) -> None:
        """The face under this track is someone else now: give it a new id and history."""
        del self.tracks[track.track_id]
        track.track_id = self._next_id
        self._next_id += 1
        track.frames = 1
        track.votes.clear()
        track.emotion = None
        track.ref_thumb = None
        self.tracks[track.track_id] = track

    def update(self, detections: list[Detection], stamp: float) -> list[Track]:
        """Assign each detection a track (new or continued); returns them in order."""
        # Time going backwards (a bag restarted, a new clip) starts afresh.
        if any(stamp < t.last_seen for t in self.tracks.values()):
            self.tracks.clear()
        for tid in [tid for tid, t in self.tracks.items() if stamp - t.last_seen > self.max_age]:
            del self.tracks[tid]
        live = list(self.tracks.values())
        assigned: list[Track | None] = [None] * len(detections)
        if live and detections:
            ious = iou_matrix(np.stack([d.box for d in detections]),
                              np.stack([t.box for t in live]))
            rows, cols = linear_sum_assignment(-ious)
            for r, c in zip(rows, cols, strict=True):
                if ious[r, c] >= self.iou_threshold:
                    assigned[r] = live[c]
        result: list[Track] = []
        for det, track in zip(detections, assigned, strict=True):
            if track is None:
                track = Track(self._next_id, det.box.copy(), stamp,
                              votes=deque(maxlen=self.vote_window))
                self._next_id += 1
                self.tracks[track.track_id] = track
            else:
                track.box, track.last_seen = det.box.copy(), stamp
            track.frames += 1
            result.append(track)
        return result
