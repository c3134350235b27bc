"""FaceStreams: several cameras through one copy of the models, on the CPU.

Three streams see three different people. Each keeps its own tracks and names, the
batched embeddings and emotions equal those of each frame alone, a malformed frame on one
stream does not touch the others, and streams can be added and removed with their tracks
kept. Timings are the benchmark's (`fer-ros bench --streams N`)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import data_path
from rosutil import frame_bgr

from fer_ros.pipeline import FacePipeline, FaceStreams, PipelineConfig

torch.set_num_threads(1)

PEOPLE = {"a": "ben_afflek", "b": "elton_john", "c": "jerry_seinfeld"}


def photo(person: str, index: int = 0, split: str = "val") -> np.ndarray:
    path = sorted(data_path("celebrity", split, person).glob("*.jpg"))[index]
    return cv2.cvtColor(frame_bgr(path), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def streams() -> FaceStreams:
    config = PipelineConfig(device="cpu", backend="torch")
    faces = FaceStreams(config, names=list(PEOPLE))
    gallery = faces.new_gallery()
    for person in PEOPLE.values():
        for k in range(3):
            image = photo(person, k, "train")
            gallery.add(person, faces.embed_largest_face(image)[1])
    faces.set_gallery(gallery)
    return faces


def test_each_stream_sees_only_its_own_faces(streams: FaceStreams) -> None:
    images = {name: photo(person) for name, person in PEOPLE.items()}
    ids: dict[str, set[int]] = {name: set() for name in PEOPLE}
    for k in range(4):
        out = streams.process({n: (img, "rgb", 10.0 + k / 30) for n, img in images.items()})
        assert set(out) == set(PEOPLE)
        for name, faces in out.items():
            assert not isinstance(faces, Exception), faces
            assert [f.name for f in faces] == [PEOPLE[name]], (name, faces)
            assert faces[0].emotion and faces[0].emotion_scores.shape == (7,)
            ids[name] |= {f.track_id for f in faces}
    # One track per stream across the frames, numbered per stream.
    assert all(len(v) == 1 for v in ids.values()), ids
    for name in PEOPLE:
        assert len(streams[name].tracker.tracks) == 1
    # A frame of only one stream touches only that stream.
    before = {n: streams[n].last_times for n in PEOPLE}
    out = streams.process({"b": (images["b"], "rgb", 11.0)})
    assert list(out) == ["b"] and out["b"][0].name == PEOPLE["b"]
    assert streams["a"].last_times is before["a"] and streams["b"].last_times is not before["b"]


def test_batched_outputs_equal_each_frame_alone(streams: FaceStreams) -> None:
    """Embeddings and raw emotion probabilities of a cross-stream batch are those of
    each frame through its own pipeline (no tracking, so every face is embedded)."""
    config = PipelineConfig(device="cpu", backend="torch", tracking=False)
    batched = FaceStreams(config, names=list(PEOPLE), models=streams.models)
    alone = FacePipeline(config, models=streams.models)
    images = {name: photo(person, 1) for name, person in PEOPLE.items()}
    out = batched.process({n: (img, "rgb", 1.0) for n, img in images.items()})
    for name, image in images.items():
        single = alone.process(image, stamp=1.0)
        assert len(out[name]) == len(single) == 1
        assert np.allclose(out[name][0].embedding, single[0].embedding, atol=1e-5)
        assert np.allclose(out[name][0].emotion_scores_raw, single[0].emotion_scores_raw,
                           atol=1e-5)
    assert batched["a"].last_times.embedded == 1  # each stream counts its own faces


def test_a_bad_frame_stays_on_its_stream(streams: FaceStreams) -> None:
    good = photo(PEOPLE["a"])
    out = streams.process({"a": (good, "rgb", 20.0),
                           "b": (np.zeros((10, 10, 4), np.uint8), "rgb", 20.0),
                           "c": (good.astype(np.float32), "rgb", 20.0)})
    assert [f.name for f in out["a"]] == [PEOPLE["a"]]
    assert isinstance(out["b"], ValueError) and "(H, W, 3)" in str(out["b"])
    assert isinstance(out["c"], ValueError) and "uint8" in str(out["c"])


def test_streams_can_be_added_and_removed(streams: FaceStreams) -> None:
    config = PipelineConfig(device="cpu", backend="torch")
    faces = FaceStreams(config, names=["a"], models=streams.models)
    faces.set_gallery(streams.gallery)
    first = faces.process({"a": (photo(PEOPLE["a"]), "rgb", 1.0)})["a"]
    kept = faces["a"]
    faces.set_streams(["a", "d"])
    assert faces["a"] is kept and faces["d"].gallery is streams.gallery
    out = faces.process({"a": (photo(PEOPLE["a"]), "rgb", 1.03),
                         "d": (photo(PEOPLE["c"]), "rgb", 1.03)})
    assert out["a"][0].track_id == first[0].track_id  # its track lives on
    assert out["d"][0].name == PEOPLE["c"]
    faces.set_streams(["d"])
    assert list(faces.streams) == ["d"]
    faces.set_streams(["d", "a"])  # a camera that comes back starts afresh
    assert faces["a"] is not kept and not faces["a"].tracker.tracks
    assert faces["a"].gallery is streams.gallery
    with pytest.raises(ValueError, match="at least one"):
        faces.set_streams([])
    faces.configure(recognition_threshold=0.9)
    assert faces["d"].config.recognition_threshold == 0.9
    faces.close()


def test_tracks_end_when_the_face_leaves_and_idle_resumes(streams: FaceStreams) -> None:
    """Frames searched with nobody in them still reach the tracker: the track ends after
    track_max_age, and the idle gate then skips unchanged empty images again."""
    config = PipelineConfig(device="cpu", backend="torch", idle_detection_rate=2.0,
                            track_max_age=0.5)
    faces = FaceStreams(config, names=["a", "b"], models=streams.models)
    face, empty = photo(PEOPLE["a"]), np.full((480, 640, 3), 90, np.uint8)
    stamp = 50.0
    assert len(faces.process({"a": (face, "rgb", stamp), "b": (empty, "rgb", stamp)})["a"]) == 1
    assert len(faces["a"].tracker.tracks) == 1 and not faces["b"].tracker.tracks
    searched = []
    for _ in range(40):  # 1.3 s of the empty scene on both cameras
        stamp += 1 / 30
        out = faces.process({"a": (empty, "rgb", stamp), "b": (empty, "rgb", stamp)})
        assert out["a"] == [] and out["b"] == []
        searched.append(faces["a"].last_times.searched)
    assert not faces["a"].tracker.tracks  # ended after track_max_age
    assert not any(searched[-10:]), searched  # idle again: unchanged, nobody tracked
    faces.close()
