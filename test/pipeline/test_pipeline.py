"""FacePipeline and the face CLI on packaged images: detection, names, emotions, tracking.

Identity evidence: enrol five people from their training images, identify their
validation images, and call faces of people who are not enrolled "unknown". A real
model gets nearly all right; the same procedure with random weights fails.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from celebrities import PEOPLE, celebrity_gallery, rgb
from conftest import data_path
from rosutil import frame_bgr

from fer_ros.paths import fer_ros_command
from fer_ros.pipeline import FacePipeline, Gallery, GalleryError, PipelineConfig
from fer_ros.pipeline.recognition.facenet import FaceEmbedder, inception_resnet_v1_class

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline(PipelineConfig(device="cpu", tracking=False))


def stranger_images() -> list[Path]:
    return [data_path("astronaut", "astronaut.png"), data_path("insightface", "t1.jpg"),
            data_path("pyfeat", "multi_face.jpg"), data_path("pyfeat", "single_face.jpg")]


def identity_scores(pipe: FacePipeline, per_person: int = 5) -> tuple[float, float]:
    gallery = celebrity_gallery(pipe, per_person)
    pipe.set_gallery(gallery)
    correct = total = 0
    for person in PEOPLE:
        for image in sorted(data_path("celebrity", "val", person).glob("*.jpg")):
            faces = pipe.process(rgb(image))
            largest = max(faces, key=lambda f: f.detection.area)
            correct += largest.name == person
            total += 1
    unknown = strangers = 0
    for image in stranger_images():
        for face in pipe.process(rgb(image)):
            unknown += face.name == "unknown"
            strangers += 1
    return correct / total, unknown / strangers


def test_identity_accuracy_on_the_celebrity_set(pipeline: FacePipeline) -> None:
    top1, stranger_rejection = identity_scores(pipeline)
    print(f"celebrity val top-1 {top1:.3f}, strangers called unknown {stranger_rejection:.3f}")
    assert top1 >= 0.9
    assert stranger_rejection >= 0.8


def test_random_weights_fail_the_same_procedure(pipeline: FacePipeline,
                                                tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "random.pt"
    torch.save(inception_resnet_v1_class()().state_dict(), weights)
    random_pipe = FacePipeline(PipelineConfig(device="cpu", tracking=False, emotion=False),
                               models=(pipeline.detector, FaceEmbedder(weights), None))
    top1, stranger_rejection = identity_scores(random_pipe)
    assert top1 < 0.6 or stranger_rejection < 0.5, (top1, stranger_rejection)


def test_detects_every_face_and_classifies_each(pipeline: FacePipeline) -> None:
    pipeline.set_gallery(None)
    faces = pipeline.process(frame_bgr(data_path("pyfeat", "multi_face.jpg")), color="bgr")
    assert len(faces) == 5
    for face in faces:
        assert face.name == "unknown" and face.emotion in pipeline.emotion_labels
        assert abs(float(face.emotion_scores.sum()) - 1) < 1e-4
        assert face.detection.landmarks.shape == (5, 2)
    assert pipeline.process(rgb(data_path("pyfeat", "free-mountain-vector-01.jpg"))) == []
    with pytest.raises(ValueError):
        pipeline.process(np.zeros((10, 10), np.float32))


def test_tracking_reuses_embeddings_and_splits_on_a_cut(pipeline: FacePipeline) -> None:
    pipe = FacePipeline(PipelineConfig(device="cpu", reembed_interval=5),
                        models=(pipeline.detector, pipeline.embedder, pipeline.classifier))
    a = frame_bgr(sorted(data_path("celebrity", "val", "madonna").glob("*.jpg"))[0])
    b = frame_bgr(sorted(data_path("celebrity", "val", "elton_john").glob("*.jpg"))[0])
    ids, embedded = [], []
    for i in range(6):
        faces = pipe.process(a, "bgr", stamp=i / 30)
        ids.append(faces[0].track_id)
        embedded.append(pipe.last_times.embedded)
    assert len(set(ids)) == 1
    assert embedded == [1, 0, 0, 0, 0, 1]  # new track, then every reembed_interval frames
    faces = pipe.process(b, "bgr", stamp=6 / 30)  # a cut to someone else, same place
    assert faces[0].track_id != ids[0] and pipe.last_times.embedded == 1


def test_gallery_of_another_embedding_space_is_refused(pipeline: FacePipeline) -> None:
    with pytest.raises(GalleryError, match="similarities across two models mean nothing"):
        pipeline.set_gallery(Gallery("facenet-pytorch-vggface2", 512))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*fer_ros_command(), *args], capture_output=True, text=True,
                          check=False, timeout=300)


def test_enroll_and_identify_commands(tmp_path: Path) -> None:
    gallery = tmp_path / "people.json"
    train = sorted(data_path("celebrity", "train", "mindy_kaling").glob("*.jpg"))[:4]
    # Several faces, no face, not an image: refused by name, gallery not created.
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    result = run_cli("enroll", "--gallery", str(gallery), "--name", "mindy_kaling",
                     "--device", "cpu", str(train[0]), str(data_path("pyfeat", "multi_face.jpg")),
                     str(data_path("pyfeat", "free-mountain-vector-01.jpg")), str(bad))
    assert result.returncode == 1 and not gallery.exists()
    assert "5 faces found" in result.stderr and "no face found" in result.stderr
    assert "not a readable image" in result.stderr
    result = run_cli("enroll", "--gallery", str(gallery), "--name", "mindy_kaling",
                     "--device", "cpu", *map(str, train))
    assert result.returncode == 0, result.stderr
    assert oct(gallery.stat().st_mode & 0o777) == "0o600"
    listed = run_cli("gallery", "list", str(gallery))
    assert "mindy_kaling: 4 embedding(s)" in listed.stdout
    val = sorted(data_path("celebrity", "val", "mindy_kaling").glob("*.jpg"))[0]
    result = run_cli("identify", "--gallery", str(gallery), "--device", "cpu", str(val),
                     str(data_path("astronaut", "astronaut.png")))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["name"] for line in lines] == ["mindy_kaling", "unknown"]
    for line in lines:
        assert set(line) >= {"image", "box", "score", "name", "similarity", "emotion",
                             "emotion_score", "position_m", "yaw_pitch_roll_deg"}
        assert len(line["box"]) == 4
        assert line["position_m"][2] > 0  # in front of the camera
    result = run_cli("gallery", "remove", str(gallery), "nobody")
    assert result.returncode == 1 and "not in the gallery" in result.stderr


def test_full_detection_every_n_frames_and_refinement_between(pipeline: FacePipeline) -> None:
    pipe = FacePipeline(PipelineConfig(device="cpu", full_detection_interval=3),
                        models=(pipeline.detector, pipeline.embedder, pipeline.classifier))
    group = frame_bgr(data_path("pyfeat", "multi_face.jpg"))
    full, ids = [], []
    for i in range(7):
        faces = pipe.process(np.ascontiguousarray(np.roll(group, 2 * i, axis=1)), "bgr",
                             stamp=i / 30)
        full.append(pipe.last_times.full_detection)
        ids.append(sorted(f.track_id for f in faces))
    assert full == [True, False, False, True, False, False, True]
    assert all(len(frame_ids) == 5 for frame_ids in ids)
    assert all(frame_ids == ids[0] for frame_ids in ids)  # the same five tracks throughout
