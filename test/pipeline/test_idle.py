"""IdleGate and the pipeline's idle mode on numpy images: behaviour, not speed.

No models and no ROS: the pipeline runs with a stand-in detector that "finds" a face
wherever a bright square is, and counts its whole-image searches.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import pytest

from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.detection.idle import IDLE_BURST, IdleDecision, IdleGate, scene_change
from fer_ros.pipeline.images import scene_thumbnail
from fer_ros.pipeline.types import Detection

RATE = 30.0  # camera Hz
FACE = 60  # pixels


@cache
def scene(seed: int = 0) -> np.ndarray:
    """A 640x480 cluttered but smooth scene (blurred random blobs, darker than a face)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 200, (24, 32, 3), np.uint8)
    image = cv2.GaussianBlur(cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC),
                             (0, 0), 3)
    image.flags.writeable = False  # shared between tests
    return image


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 10.0) -> np.ndarray:
    """Camera-like sensor noise, new in every image."""
    noise = rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def with_face(image: np.ndarray, x: int = 300, y: int = 200) -> np.ndarray:
    """A bright square with a fixed pattern (the pipeline follows a face by its looks)."""
    out = image.copy()
    out[y:y + FACE, x:x + FACE] = np.linspace(230, 255, FACE)[None, :, None].astype(np.uint8)
    return out


def make_gate(rate_hz: float, change_threshold: float = PipelineConfig.idle_change_threshold,
              refresh_period: float = PipelineConfig.idle_refresh_period, **kw) -> IdleGate:
    """An IdleGate with the pipeline's defaults for what the test does not set."""
    return IdleGate(rate_hz, change_threshold, refresh_period, **kw)


def decisions(gate: IdleGate, frames, start: float = 0.0, tracking: bool = False):
    return [gate.decide(f, start + i / RATE, tracking) for i, f in enumerate(frames)]


def test_off_searches_every_image() -> None:
    gate = make_gate(rate_hz=0.0)
    assert decisions(gate, [scene()] * 10) == [IdleDecision(True, "off")] * 10
    assert (gate.searched, gate.skipped) == (0, 0)  # counts only idle searches


def test_a_slow_rate_is_still_on() -> None:
    gate = make_gate(rate_hz=0.5)
    assert [d.reason for d in decisions(gate, [scene()] * 3)] == ["first", "unchanged",
                                                                   "unchanged"]


def test_scene_change_of_different_shapes_is_infinite() -> None:
    assert scene_change(np.zeros((2, 2)), np.zeros((2, 3))) == float("inf")
    assert scene_change(np.zeros((2, 2)), np.full((2, 2), 3.0)) == 3.0


def test_a_change_of_exactly_the_threshold_is_no_change() -> None:
    grey = np.full((480, 640), 100, np.uint8)
    gate = make_gate(rate_hz=2.0, change_threshold=12.0, refresh_period=0.0)
    assert gate.decide(grey, 0.0, False).reason == "first"
    assert gate.decide(grey + 12, 0.1, False) == IdleDecision(False, "unchanged")
    assert gate.decide(grey + 13, 0.2, False) == IdleDecision(True, "changed")


def test_the_same_stamp_twice_is_not_time_going_backwards() -> None:
    gate = make_gate(rate_hz=2.0, refresh_period=0.0)
    assert gate.decide(scene(), 1.0, False).reason == "first"
    assert gate.decide(scene(), 1.0, False) == IdleDecision(False, "unchanged")


def test_the_budget_allows_a_search_once_it_holds_exactly_one() -> None:
    """rate 1 Hz, burst 1, every image changed: searched at 0 s, refused at 0.5 s (half
    a search in the bucket), searched at 1.0 s (exactly one)."""
    gate = make_gate(rate_hz=1.0, change_threshold=0.0, refresh_period=0.0, burst=1)
    result = [gate.decide(scene(seed), t, False) for seed, t in enumerate((0.0, 0.5, 1.0))]
    assert result == [IdleDecision(True, "first"), IdleDecision(False, "rate"),
                      IdleDecision(True, "changed")]
    assert (gate.searched, gate.skipped) == (2, 1)


def test_static_noisy_scene_is_searched_once() -> None:
    rng = np.random.default_rng(1)
    gate = make_gate(rate_hz=2.0, refresh_period=0.0)
    frames = [noisy(scene(), rng, sigma=15) for _ in range(90)]
    result = decisions(gate, frames)
    assert result[0].search and result[0].reason == "first"
    assert [d.reason for d in result[1:]] == ["unchanged"] * 89
    assert (gate.searched, gate.skipped) == (1, 89)


def test_camera_shake_of_a_pixel_is_not_a_change() -> None:
    base = scene(3)
    shifted = np.roll(base, 1, axis=1)
    assert scene_change(scene_thumbnail(base, sampled=True),
                        scene_thumbnail(shifted, sampled=True)) < 12.0


def test_a_real_change_is_searched_at_once() -> None:
    rng = np.random.default_rng(2)
    gate = make_gate(rate_hz=2.0, refresh_period=0.0)
    empty = [noisy(scene(), rng) for _ in range(30)]
    decisions(gate, empty)
    # A face-sized object appears in the very next image: searched in that image.
    change = gate.decide(noisy(with_face(scene()), rng), 1.0, tracking=False)
    assert change.search and change.reason == "changed"
    # ...and the changed scene is the new reference: the same scene again is not.
    again = gate.decide(noisy(with_face(scene()), rng), 1.0 + 1 / RATE, tracking=False)
    assert not again.search


def test_a_changing_scene_costs_at_most_the_idle_rate() -> None:
    """Every image different (a moving camera): burst, then rate_hz on average."""
    gate = make_gate(rate_hz=2.0, refresh_period=0.0)
    frames = [scene(seed) for seed in range(300)]  # 10 s at 30 Hz
    result = decisions(gate, frames)
    searched = [i for i, d in enumerate(result) if d.search]
    assert len(searched) <= IDLE_BURST + 2.0 * 10 + 1
    assert (gate.searched, gate.skipped) == (len(searched), 300 - len(searched))
    # After the burst, searches are at least 1/rate apart (15 images at 30 Hz).
    late = searched[IDLE_BURST:]
    assert late and min(np.diff(late)) >= 14
    assert {d.reason for d in result if not d.search} == {"rate"}


def test_a_quiet_spell_refills_the_budget() -> None:
    gate = make_gate(rate_hz=2.0, refresh_period=0.0)
    decisions(gate, [scene(seed) for seed in range(60)])  # budget spent
    decisions(gate, [scene(60)] * 150, start=2.0)  # 5 s unchanged
    burst = decisions(gate, [scene(100 + i) for i in range(5)], start=7.0)
    assert all(d.search and d.reason == "changed" for d in burst)


def test_unchanged_scene_is_refreshed() -> None:
    gate = make_gate(rate_hz=2.0, refresh_period=1.0)
    result = decisions(gate, [scene()] * 91)  # 3 s
    assert [i for i, d in enumerate(result) if d.search] == [0, 30, 60, 90]
    assert {d.reason for d in result[1:] if d.search} == {"refresh"}


def test_tracking_searches_every_image_and_restarts_the_reference() -> None:
    gate = make_gate(rate_hz=2.0)
    assert all(d.reason == "tracking" for d in decisions(gate, [scene()] * 20, tracking=True))
    after = gate.decide(scene(), 1.0, tracking=False)
    assert after.search and after.reason == "first"


def test_new_size_and_time_going_backwards_are_searched() -> None:
    gate = make_gate(rate_hz=2.0, refresh_period=0.0)
    decisions(gate, [scene()] * 5)
    assert gate.decide(cv2.resize(scene(), (320, 240)), 1.0, False).reason == "changed"
    assert gate.decide(cv2.resize(scene(), (320, 240)), 0.5, False).reason == "first"


def test_threshold_zero_counts_every_image_as_changed() -> None:
    gate = make_gate(rate_hz=30.0, change_threshold=0.0, refresh_period=0.0)
    rng = np.random.default_rng(4)
    assert all(d.search for d in decisions(gate, [noisy(scene(), rng) for _ in range(20)]))


def test_grey_and_colour_images_both_work() -> None:
    grey = cv2.cvtColor(scene(), cv2.COLOR_BGR2GRAY)
    assert scene_thumbnail(grey, sampled=True).shape == scene_thumbnail(scene()).shape == (24, 32)


# ------------------------------------------------------------------ in the pipeline

class SquareDetector:
    """Stands in for MTCNN: a face wherever the image has a bright FACE x FACE square."""

    min_score = 0.9

    def __init__(self) -> None:
        self.searches = 0

    def _find(self, rgb: np.ndarray) -> list[Detection]:
        ys, xs = np.nonzero(cv2.blur(rgb, (5, 5)).mean(axis=2) >= 222)
        if len(xs) < FACE * FACE // 2:
            return []
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        return [Detection(box, 0.99)]

    def detect(self, rgb: np.ndarray, enlarge: bool = True) -> list[Detection]:
        self.searches += 1
        return self._find(rgb)

    def refine(self, rgb: np.ndarray, boxes: np.ndarray) -> list[Detection]:
        return self._find(rgb)


@pytest.fixture
def pipeline() -> FacePipeline:
    config = PipelineConfig(device="cpu", recognition=False, emotion=False,
                            full_detection_interval=5, track_max_age=0.5,
                            idle_detection_rate=2.0, idle_refresh_period=0.0)
    return FacePipeline(config, models=(SquareDetector(), None, None))


def stream(pipeline: FacePipeline, frames, start: float) -> list[list]:
    return [pipeline.process(f, "bgr", stamp=start + i / RATE) for i, f in enumerate(frames)]


def test_pipeline_idle_then_face_then_idle(pipeline: FacePipeline) -> None:
    detector = pipeline.detector
    rng = np.random.default_rng(5)
    base = scene()
    empty = stream(pipeline, [noisy(base, rng) for _ in range(60)], 0.0)
    assert all(r == [] for r in empty) and detector.searches == 1
    assert pipeline.last_times.searched is False
    # Someone appears: found in the first image that shows them, then followed on every
    # image (full rate: whole-image searches every full_detection_interval images).
    faces = stream(pipeline, [noisy(with_face(base), rng) for _ in range(30)], 2.0)
    assert all(len(r) == 1 for r in faces)
    assert faces[0][0].track_id == faces[-1][0].track_id > 0
    assert pipeline.last_times.searched is True
    assert 1 + 6 <= detector.searches <= 1 + 7
    # They leave: searched at full rate until the track ends (0.5 s), then idle again.
    before = detector.searches
    gone = stream(pipeline, [noisy(base, rng) for _ in range(60)], 3.0)
    assert all(r == [] for r in gone)
    assert 14 <= detector.searches - before <= 18


def test_pipeline_idle_settings_change_at_run_time(pipeline: FacePipeline) -> None:
    detector = pipeline.detector
    stream(pipeline, [scene()] * 10, 0.0)
    assert detector.searches == 1
    pipeline.configure(idle_detection_rate=0.0)
    stream(pipeline, [scene()] * 10, 1.0)
    assert detector.searches == 11
    pipeline.configure(idle_detection_rate=2.0, idle_refresh_period=0.1)
    stream(pipeline, [scene()] * 10, 2.0)  # refreshed every 3 images (0.1 s)
    assert 11 + 3 <= detector.searches <= 11 + 4


def test_pipeline_default_is_off() -> None:
    assert PipelineConfig().idle_detection_rate == 0.0  # library users see every image
