"""Face tracking across frames: stable track ids, name voting, emotion smoothing.

Detections are matched to live tracks by box overlap (IoU) with an optimal
assignment (Hungarian method, as hri_face_detect does). A track that goes unmatched
for longer than ``max_age`` seconds is dropped. Tracks let the pipeline skip the
expensive embedding on most frames (see engine/camera.py) and let names and emotions be
stable instead of flickering frame to frame.

A track also remembers its person's recent embeddings. Box overlap alone cannot tell one
person from another in the same place, nor follow someone whose face the detector lost
for a moment and found elsewhere; the embeddings can (engine/camera.py decides when to
look): a track whose face looks different is confirmed or restarted by them, and a new
track whose face matches a track that ended within ``reid_window`` seconds continues that
track (its id, votes and emotion) instead of starting a new person.
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
    # Unit-norm embeddings of the face's recent views (as many as votes).
    embeddings: deque = field(default_factory=lambda: deque(maxlen=5))
    suspect: bool = False  # the face looks different: confirm at its next embedding

    def resembles(self, embedding: np.ndarray) -> float:
        """Highest cosine similarity of ``embedding`` to the track's recent embeddings
        (-1 with none): the nearest recent view, so a turn or a hand does not count
        against a view taken before it."""
        if not self.embeddings:
            return -1.0
        unit = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
        return float(np.max(np.stack(self.embeddings) @ unit))

    def remember(self, embedding: np.ndarray) -> None:
        self.embeddings.append(
            (embedding / max(float(np.linalg.norm(embedding)), 1e-12)).astype(np.float32))

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
    def __init__(self, iou_threshold: float, max_age: float, vote_window: int,
                 reid_window: float) -> None:
        # No defaults: the pipeline's (PipelineConfig) are the only ones.
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.vote_window = vote_window
        self.reid_window = reid_window
        self.tracks: dict[int, Track] = {}
        self.ended: dict[int, Track] = {}  # ended within reid_window, by id
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()
        self.ended.clear()

    def restart(self, track: Track) -> None:
        """The face under this track is someone else now: give it a new id and history."""
        del self.tracks[track.track_id]
        track.track_id = self._next_id
        self._next_id += 1
        track.frames = 1
        track.votes.clear()
        track.embeddings.clear()
        track.emotion = None
        track.ref_thumb = None
        track.suspect = False
        self.tracks[track.track_id] = track

    def continue_identity(self, track: Track, embedding: np.ndarray, similarity: float) -> None:
        """Whose track this is, by its face's new embedding: a suspected track (its look
        changed) that resembles none of its recent views (``similarity``) restarts as a
        new person; a new track that resembles one ended or lost a moment ago continues
        that one (``reidentify``)."""
        if track.suspect:
            track.suspect = False
            if track.resembles(embedding) < similarity:
                self.restart(track)
        if track.frames == 1:
            self.reidentify(track, embedding, similarity)

    def reidentify(self, track: Track, embedding: np.ndarray, similarity: float) -> bool:
        """A new ``track`` whose face resembles (``similarity`` or more) a track that
        ended within ``reid_window`` or is unseen in this image continues the most similar
        of them: its id, votes, embeddings and emotion. True when it did."""
        if self.reid_window <= 0:
            return False
        candidates = [t for t in (*self.tracks.values(), *self.ended.values())
                      if t is not track and t.last_seen < track.last_seen and t.embeddings
                      and track.last_seen - t.last_seen <= self.reid_window]
        scored = [(t.resembles(embedding), t) for t in candidates]
        best = max(scored, key=lambda st: st[0], default=None)
        if best is None or best[0] < similarity:
            return False
        old = best[1]
        del self.tracks[track.track_id]
        self.tracks.pop(old.track_id, None)
        self.ended.pop(old.track_id, None)
        track.track_id, track.frames = old.track_id, old.frames + 1
        track.votes, track.embeddings, track.emotion = old.votes, old.embeddings, old.emotion
        self.tracks[track.track_id] = track
        return True

    def update(self, detections: list[Detection], stamp: float) -> list[Track]:
        """Assign each detection a track (new or continued); returns them in order."""
        # Time going backwards (a bag restarted, a new clip) starts afresh.
        if any(stamp < t.last_seen for t in (*self.tracks.values(), *self.ended.values())):
            self.reset()
        for tid in [tid for tid, t in self.tracks.items() if stamp - t.last_seen > self.max_age]:
            self.ended[tid] = self.tracks.pop(tid)
        for tid in [tid for tid, t in self.ended.items()
                    if stamp - t.last_seen > self.reid_window]:
            del self.ended[tid]
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
                              votes=deque(maxlen=self.vote_window),
                              embeddings=deque(maxlen=self.vote_window))
                self._next_id += 1
                self.tracks[track.track_id] = track
            else:
                track.box, track.last_seen = det.box.copy(), stamp
            track.frames += 1
            result.append(track)
        return result
