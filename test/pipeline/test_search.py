"""The whole-image search off the frame path (async_detection): tracked faces are
published in every frame, a face that comes into view joins the tracks (embedded, with its
emotion) when the background search is done, a lost face is searched for at once, and the
search told the tracked faces finds only the others. Behaviour only; timings are the
benchmark's (`fer-ros bench`: time to name, latency)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch
from conftest import data_path

from fer_ros.bench.data import three_faces_frames
from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.detection.detector import FaceDetector
from fer_ros.pipeline.detection.search import BackgroundSearch
from fer_ros.pipeline.tracking.tracker import iou_matrix
from fer_ros.pipeline.types import Detection

torch.set_num_threads(1)


def rgb_frames(shown: int, count: int) -> list[np.ndarray]:
    data_path("celebrity", "val")  # fail with the fetch command when missing
    return [np.ascontiguousarray(f[:, :, ::-1]) for f in three_faces_frames(count, shown)]


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(PipelineConfig(device="cpu", full_detection_interval=3,
                                       async_detection=True))


def wait_idle(pipeline: FacePipeline, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while pipeline.search.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pipeline.search.busy, "the background search did not finish"


def test_known_faces_are_not_searched_again() -> None:
    detector = FaceDetector()
    image = cv2.cvtColor(cv2.imread(str(data_path("pyfeat", "multi_face.jpg"))),
                         cv2.COLOR_BGR2RGB)
    everyone = detector.detect(image)
    assert len(everyone) == 5
    boxes = np.stack([d.box for d in everyone])
    assert detector.detect(image, known=boxes) == []
    new = detector.detect(image, known=boxes[1:])
    assert len(new) == 1 and iou_matrix(new[0].box, boxes[:1])[0, 0] > 0.9


def test_a_face_joins_from_the_background_and_tracked_faces_never_wait(
        pipeline: FacePipeline) -> None:
    two, three = rgb_frames(2, 40), rgb_frames(3, 40)
    stamp = 100.0
    first = pipeline.process(two[0], stamp=stamp)
    assert len(first) == 2 and pipeline.last_times.full_detection  # nobody tracked
    ids = {r.track_id for r in first}
    for frame in two[1:8]:  # searches run in the background, find nobody new
        stamp += 1 / 30
        results = pipeline.process(frame, stamp=stamp)
        assert {r.track_id for r in results} == ids
        assert not pipeline.last_times.full_detection
        wait_idle(pipeline)
    joined = None
    for k, frame in enumerate(three):
        stamp += 1 / 30
        results = pipeline.process(frame, stamp=stamp)
        assert ids <= {r.track_id for r in results}  # the tracked two, in every frame
        assert all(r.emotion for r in results)
        assert not pipeline.last_times.full_detection
        if len(results) == 3:
            joined = k
            newcomer = next(r for r in results if r.track_id not in ids)
            assert newcomer.embedding is not None  # embedded in the frame it joined
            break
        wait_idle(pipeline)
    # Searched at most every 3rd frame, merged at the frame after it finished.
    assert joined is not None and joined <= 4, joined
    assert pipeline.search.merged >= 1 and pipeline.search.errors == 0


def test_a_lost_face_is_searched_for_at_once(pipeline: FacePipeline) -> None:
    pipeline.tracker.reset()
    three, two = rgb_frames(3, 3), rgb_frames(2, 1)
    assert len(pipeline.process(three[0], stamp=200.0)) == 3
    assert len(pipeline.process(three[1], stamp=200.033)) == 3
    results = pipeline.process(two[0], stamp=200.066)  # the third leaves
    assert len(results) == 2 and pipeline.last_times.full_detection


def test_change_outside_tracked_faces_is_seen_and_drift_is_not() -> None:
    search = BackgroundSearch(FaceDetector(), 40.0)
    rng = np.random.default_rng(0)
    grey = cv2.resize(rng.integers(40, 200, (14, 18), dtype=np.uint8), (720, 560),
                      interpolation=cv2.INTER_NEAREST)  # 40-pixel blocks of 40-200 grey
    world = np.repeat(grey[:, :, None], 3, axis=2)
    scene = world[40:520, 40:680]
    face = Detection(np.array([200, 150, 280, 250], np.float32), 0.99)
    assert not search.changed(scene, [face])  # nothing searched yet: nothing to compare
    search.start(scene, [face])
    search.close()
    assert not search.changed(scene, [face])
    assert not search.changed(world[48:528, 30:670], [face])  # the camera moved 8, 10 px
    inside = scene.copy()
    inside[160:240, 210:270] = 255  # the tracked face turns, or its box moves a bit
    assert not search.changed(inside, [face])
    outside = scene.copy()
    outside[300:400, 450:530] = 255  # someone stepping in
    assert search.changed(outside, [face])
    search.change_threshold = 0.0
    assert not search.changed(outside, [face])  # off


@pytest.mark.parametrize("threshold", [40.0, 0.0])
def test_a_newcomer_is_searched_for_at_once_when_the_scene_changes(threshold: float) -> None:
    pipeline = FacePipeline(PipelineConfig(device="cpu", full_detection_interval=30,
                                           async_detection=True,
                                           search_change_threshold=threshold))
    two, three = rgb_frames(2, 20), rgb_frames(3, 20)
    stamp = 300.0
    ids = {r.track_id for r in pipeline.process(two[0], stamp=stamp)}
    assert len(ids) == 2
    for frame in two[1:12]:  # drifting by up to 12 pixels: no reason to search early
        stamp += 1 / 30
        assert {r.track_id for r in pipeline.process(frame, stamp=stamp)} == ids
        wait_idle(pipeline)
    assert pipeline.search.early == 0
    joined = None
    for k, frame in enumerate(three[12:], start=0):
        stamp += 1 / 30
        if len(pipeline.process(frame, stamp=stamp)) == 3:
            joined = k
            break
        wait_idle(pipeline)
    if threshold:  # searched in the first image that shows them, merged in the next
        assert joined is not None and joined <= 2 and pipeline.search.early == 1, joined
    else:  # only at the interval: 30 images after the first search
        assert joined is None and pipeline.search.early == 0
    pipeline.close()


def wide(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The frames at 1280x720 (wider than blocking_search_max_width's 640)."""
    return [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_LINEAR) for f in frames]


@pytest.mark.parametrize("blocking_width", [640, 2000])
def test_wide_images_at_camera_rate_never_wait_for_a_search(blocking_width: int) -> None:
    """At 1280x720, images 1 ms apart (closer than any search takes): with nobody tracked
    the image is answered at once and the faces join from the background; a lost face does
    not make the image wait either. A wide image long after the previous one (photos sent
    one by one) waits and is answered with its faces, as the control
    (blocking_search_max_width 2000) and 640x480 images always are."""
    pipeline = FacePipeline(PipelineConfig(device="cpu", full_detection_interval=30,
                                           async_detection=True,
                                           blocking_search_max_width=blocking_width))
    waits = blocking_width >= 1280
    three, two = wide(rgb_frames(3, 4)), wide(rgb_frames(2, 1))
    nobody = np.full_like(three[0], 30)
    assert pipeline.process(nobody, stamp=400.0) == []  # the first image always waits
    first = pipeline.process(three[0], stamp=400.001)
    assert len(first) == (3 if waits else 0)
    assert pipeline.last_times.full_detection == waits
    wait_idle(pipeline)
    second = pipeline.process(three[1], stamp=400.002)  # joined from the search
    assert len(second) == 3 and not pipeline.last_times.full_detection
    ids = {r.track_id for r in second}
    assert ids == {r.track_id for r in pipeline.process(three[2], stamp=400.003)}
    results = pipeline.process(two[0], stamp=400.004)  # the third leaves
    assert len(results) == 2 and {r.track_id for r in results} < ids
    assert pipeline.last_times.full_detection == waits
    if not waits:
        wait_idle(pipeline)
        assert pipeline.search.early >= 1  # the loss started a search at once
    later = pipeline.process(three[3], stamp=410.0)  # a photo, 10 s on: waits
    assert len(later) == 3 and pipeline.last_times.full_detection
    pipeline.close()
