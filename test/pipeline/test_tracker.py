"""Tracking: stable ids, id changes, ageing, name votes, emotion smoothing."""

from __future__ import annotations

import numpy as np

from fer_ros.pipeline import PipelineConfig
from fer_ros.pipeline.tracking.tracker import FaceTracker, Track, iou_matrix
from fer_ros.pipeline.types import UNKNOWN, Detection


def make(iou_threshold: float = PipelineConfig.iou_threshold,
         max_age: float = PipelineConfig.track_max_age,
         vote_window: int = PipelineConfig.vote_window) -> FaceTracker:
    """A FaceTracker with the pipeline's defaults for what the test does not set."""
    return FaceTracker(iou_threshold, max_age, vote_window, PipelineConfig.track_reid_window)


def det(x: float, y: float, size: float = 50) -> Detection:
    return Detection(np.array([x, y, x + size, y + size], np.float32), 0.99)


def test_iou() -> None:
    m = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10],
                                                         [20, 20, 30, 30]]))
    assert np.allclose(m, [[1.0, 1 / 3, 0.0]])


def test_ids_follow_moving_faces_and_new_faces_get_new_ids() -> None:
    tracker = make(iou_threshold=0.3, max_age=1.0)
    first = [t.track_id for t in tracker.update([det(0, 0), det(200, 0)], 0.0)]
    # Both move a little, listed in the other order: ids follow the boxes.
    second = [t.track_id for t in tracker.update([det(205, 3), det(4, 2)], 0.1)]
    assert second == first[::-1]
    third = [t.track_id for t in tracker.update([det(6, 3), det(400, 0)], 0.2)]
    assert third[0] == first[0] and third[1] not in first


def test_tracks_expire_after_max_age_and_on_time_reset() -> None:
    tracker = make(max_age=0.5)
    a = tracker.update([det(0, 0)], 0.0)[0].track_id
    assert tracker.update([det(0, 0)], 0.4)[0].track_id == a
    assert tracker.update([det(0, 0)], 1.0)[0].track_id != a
    b = tracker.update([det(0, 0)], 1.1)[0].track_id
    assert tracker.update([det(0, 0)], 0.0)[0].track_id != b  # time went backwards


def test_name_vote_and_emotion_smoothing() -> None:
    track = make(vote_window=3).update([det(0, 0)], 0.0)[0]
    for name, sim in [("ada", 0.7), ("unknown", 0.3), ("ada", 0.8)]:
        track.votes.append((name, sim))
    assert track.vote() == ("ada", 0.75)
    p1 = np.array([1.0, 0.0], np.float32)
    p2 = np.array([0.0, 1.0], np.float32)
    assert np.allclose(track.smooth_emotion(p1, 0.5), p1)
    assert np.allclose(track.smooth_emotion(p2, 0.5), [0.5, 0.5])
    assert np.allclose(track.smooth_emotion(p2, 0.0), p2)


def test_ids_start_at_1_and_count_up_one_by_one() -> None:
    tracker = make()
    first = tracker.update([det(0, 0), det(200, 0)], 0.0)
    assert [t.track_id for t in first] == [1, 2]
    assert [t.track_id for t in tracker.update([det(400, 0)], 0.1)] == [3]
    first[0].ref_thumb = np.zeros((2, 2), np.float32)
    tracker.restart(first[0])
    assert first[0].track_id == 4 and sorted(tracker.tracks) == [2, 3, 4]
    assert tracker.tracks[4] is first[0] and first[0].ref_thumb is None
    assert first[0].frames == 1 and first[0].emotion is None and not first[0].votes
    assert [t.track_id for t in tracker.update([det(600, 0)], 0.2)] == [5]


def test_a_new_track_starts_where_its_face_is() -> None:
    face = det(10, 20)
    track = make(vote_window=4).update([face], 3.5)[0]
    assert np.array_equal(track.box, face.box) and track.box is not face.box
    assert track.last_seen == 3.5 and track.frames == 1 and track.votes.maxlen == 4
    moved = det(12, 21)
    again = make(vote_window=4)
    first = again.update([face], 0.0)[0]
    assert again.update([moved], 0.1)[0] is first
    assert np.array_equal(first.box, moved.box) and first.box is not moved.box
    assert first.last_seen == 0.1 and first.frames == 2
    assert again.update([moved], 0.2)[0].frames == 3


def test_the_same_stamp_twice_keeps_the_tracks() -> None:
    tracker = make()
    a = tracker.update([det(0, 0)], 1.0)[0]
    assert tracker.update([det(0, 0)], 1.0)[0] is a


def test_max_age_and_iou_threshold_are_inclusive() -> None:
    tracker = make(max_age=1.0)
    a = tracker.update([det(0, 0)], 0.0)[0]
    assert tracker.update([det(0, 0)], 1.0)[0] is a  # exactly max_age later: still alive
    assert tracker.update([det(0, 0)], 2.25)[0] is not a
    box, shifted = det(0, 0), det(25, 0)
    overlap = float(iou_matrix(box.box[None], shifted.box[None])[0, 0])
    tracker = make(iou_threshold=overlap)
    b = tracker.update([box], 0.0)[0]
    assert tracker.update([shifted], 0.1)[0] is b  # IoU exactly the threshold: the same face


def test_vote_of_no_votes_and_ties() -> None:
    track = Track(1, det(0, 0).box, 0.0)
    assert track.vote() == (UNKNOWN, 0.0)
    track.votes.extend([("ada", 0.6), ("bob", 0.9)])
    assert track.vote() == ("bob", 0.9)  # a tie: the latest name


def test_emotion_is_float32_and_restarts_when_the_labels_change() -> None:
    track = Track(1, det(0, 0).box, 0.0)
    seven = np.full(7, 1 / 7)  # float64 in
    assert track.smooth_emotion(seven, 0.5).dtype == np.float32
    assert track.smooth_emotion(seven, 0.5).dtype == np.float32
    three = np.array([0.2, 0.3, 0.5])
    out = track.smooth_emotion(three, 0.5)  # another model: no blending with the old
    assert out.dtype == np.float32 and np.allclose(out, three)


def test_a_new_track_like_a_recently_ended_one_continues_it() -> None:
    tracker = FaceTracker(0.3, max_age=0.5, vote_window=5, reid_window=2.0)
    rng = np.random.default_rng(0)
    alice, bob = rng.normal(size=(2, 128)).astype(np.float32)
    old = tracker.update([det(0, 0)], 0.0)[0]
    old.votes.append(("alice", 0.8))
    old.remember(alice)
    assert tracker.update([], 1.0) == [] and list(tracker.ended) == [old.track_id]
    new = tracker.update([det(300, 0)], 1.2)[0]  # elsewhere, after the track ended
    assert new.track_id != old.track_id
    assert not tracker.reidentify(new, bob, 0.5)  # someone else
    assert tracker.reidentify(new, alice + 0.1 * bob, 0.5)
    assert new.track_id == old.track_id and new.vote()[0] == "alice"
    assert list(tracker.tracks) == [old.track_id] and not tracker.ended
    # Ended longer ago than reid_window: forgotten.
    assert tracker.update([], 2.0) == [] and list(tracker.ended) == [old.track_id]
    later = tracker.update([det(0, 200)], 3.3)[0]
    assert not tracker.ended and not tracker.reidentify(later, alice, 0.5)
    # Time going backwards forgets ended tracks too.
    tracker.update([], 4.0)
    assert tracker.ended
    tracker.update([], 0.0)
    assert not tracker.ended and not tracker.tracks
