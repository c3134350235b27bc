"""Tracking: stable ids, id changes, ageing, name votes, emotion smoothing."""

from __future__ import annotations

import numpy as np

from fer_ros.pipeline.tracking.tracker import FaceTracker, iou_matrix
from fer_ros.pipeline.types import Detection


def det(x: float, y: float, size: float = 50) -> Detection:
    return Detection(np.array([x, y, x + size, y + size], np.float32), 0.99)


def test_iou() -> None:
    m = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10],
                                                         [20, 20, 30, 30]]))
    assert np.allclose(m, [[1.0, 1 / 3, 0.0]])


def test_ids_follow_moving_faces_and_new_faces_get_new_ids() -> None:
    tracker = FaceTracker(iou_threshold=0.3, max_age=1.0)
    first = [t.track_id for t in tracker.update([det(0, 0), det(200, 0)], 0.0)]
    # Both move a little, listed in the other order: ids follow the boxes.
    second = [t.track_id for t in tracker.update([det(205, 3), det(4, 2)], 0.1)]
    assert second == first[::-1]
    third = [t.track_id for t in tracker.update([det(6, 3), det(400, 0)], 0.2)]
    assert third[0] == first[0] and third[1] not in first


def test_tracks_expire_after_max_age_and_on_time_reset() -> None:
    tracker = FaceTracker(max_age=0.5)
    a = tracker.update([det(0, 0)], 0.0)[0].track_id
    assert tracker.update([det(0, 0)], 0.4)[0].track_id == a
    assert tracker.update([det(0, 0)], 1.0)[0].track_id != a
    b = tracker.update([det(0, 0)], 1.1)[0].track_id
    assert tracker.update([det(0, 0)], 0.0)[0].track_id != b  # time went backwards


def test_name_vote_and_emotion_smoothing() -> None:
    track = FaceTracker(vote_window=3).update([det(0, 0)], 0.0)[0]
    for name, sim in [("ada", 0.7), ("unknown", 0.3), ("ada", 0.8)]:
        track.votes.append((name, sim))
    assert track.vote() == ("ada", 0.75)
    p1 = np.array([1.0, 0.0], np.float32)
    p2 = np.array([0.0, 1.0], np.float32)
    assert np.allclose(track.smooth_emotion(p1, 0.5), p1)
    assert np.allclose(track.smooth_emotion(p2, 0.5), [0.5, 0.5])
    assert np.allclose(track.smooth_emotion(p2, 0.0), p2)
