"""SFace: the folded ONNX file against OpenCV's own reading of the original, the alignment,
the cache's checks, and the open-set targets of issue 22 on the packaged faces (every
validation photo named right, every stranger unknown, a positive genuine-stranger gap)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from celebrities import PEOPLE, rgb
from conftest import data_path

from fer_ros.assets import AssetError
from fer_ros.assets import sface as sface_assets
from fer_ros.assets.datasets import stranger_photos
from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.recognition import facenet, sface
from fer_ros.pipeline.recognition.sface import SFaceEmbedder

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def pipelines() -> dict[str, FacePipeline]:
    return {model: FacePipeline(PipelineConfig.stills(device="cpu", emotion=False,
                                                       embedding_model=model))
            for model in ("sface", "facenet")}


def faces_of(pipe: FacePipeline, path: Path) -> tuple[np.ndarray, list]:
    image = rgb(path)
    return image, pipe.detector.detect(image)


def test_our_embedding_is_opencv_s_face_recognizer_sf_on_the_original_file(
        pipelines: dict[str, FacePipeline]) -> None:
    """Same aligned faces, two runtimes: the folded file on ONNX Runtime (RGB input) and
    OpenCV's FaceRecognizerSF on the untouched int8 file (BGR input, swapped inside)."""
    pipe = pipelines["sface"]
    reference = cv2.FaceRecognizerSF.create(str(sface_assets.source_model(fetch=False)), "")
    image, detections = faces_of(pipe, data_path("pyfeat", "multi_face.jpg"))
    assert len(detections) == 5
    boxes = np.stack([d.box for d in detections])
    crops = pipe.embedder.align(image, boxes, np.stack([d.landmarks for d in detections]))
    ours = pipe.embedder.embed_crops(crops)
    for crop, row in zip(crops, ours, strict=True):
        theirs = reference.feature(np.ascontiguousarray(crop[:, :, ::-1]))[0]
        theirs = theirs / np.linalg.norm(theirs)
        assert np.abs(row - theirs).max() < 1e-4
    assert ours.shape == (5, sface.EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_alignment_puts_the_landmarks_on_the_template(pipelines: dict[str, FacePipeline],
                                                      ) -> None:
    """Dots drawn at five landmark positions land on the 112x112 template's points."""
    embedder = pipelines["sface"].embedder
    angle = np.deg2rad(15)  # a tilted, shifted, scaled copy of the template
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ((sface.TEMPLATE - 56) @ rotation.T * 1.7 + np.array([300, 220]))
    box = np.array([[230, 140, 370, 320]], np.float32)
    for k, ((x, y), (tx, ty)) in enumerate(zip(landmarks, sface.TEMPLATE, strict=True)):
        image = np.zeros((480, 640, 3), np.uint8)
        cv2.circle(image, (round(x), round(y)), 3, (255, 255, 255), -1)
        crop = embedder.align(image, box, landmarks[None].astype(np.float32))[0, :, :, 0]
        ys, xs = np.nonzero(crop)
        assert len(xs), f"landmark {k} is not in the crop"
        weights = crop[ys, xs].astype(float)
        cx, cy = np.average(xs, weights=weights), np.average(ys, weights=weights)
        assert abs(cx - tx) < 1.0 and abs(cy - ty) < 1.0, (k, cx, cy, tx, ty)


def test_the_similarity_fit_uses_every_landmark() -> None:
    """Exact points give the transform back; noisy ones the least squared error over all
    five (LMEDS, which may drop a point, does no better)."""
    angle, scale, shift = np.deg2rad(-20), 0.6, np.array([12.0, -7.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.random.default_rng(2).uniform(0, 200, (5, 2))
    target = source @ (scale * rotation).T + shift
    matrix = sface.similarity_transform(source, target)
    np.testing.assert_allclose(matrix, np.hstack([scale * rotation, shift[:, None]]),
                               atol=1e-5)
    noisy = target + np.random.default_rng(3).normal(0, 2.0, target.shape)

    def error(m: np.ndarray) -> float:
        return float(((source @ m[:, :2].T + m[:, 2] - noisy) ** 2).sum())

    lmeds, _ = cv2.estimateAffinePartial2D(source.astype(np.float32),
                                           noisy.astype(np.float32), method=cv2.LMEDS)
    assert error(sface.similarity_transform(source, noisy)) <= error(lmeds) + 1e-6
    assert sface.similarity_transform(np.ones((5, 2)), target) is None


def test_a_face_without_landmarks_is_aligned_by_its_box(pipelines: dict[str, FacePipeline],
                                                        ) -> None:
    pipe = pipelines["sface"]
    image, detections = faces_of(pipe, data_path("pyfeat", "single_face.jpg"))
    box, points = detections[0].box[None], detections[0].landmarks[None]
    with_landmarks = pipe.embedder.embed(image, box, points)[0]
    by_box = pipe.embedder.embed(image, box)[0]
    unusable = pipe.embedder.embed(image, box, np.full((1, 5, 2), np.nan, np.float32))[0]
    np.testing.assert_array_equal(by_box, unusable)
    assert float(with_landmarks @ by_box) > 0.8  # the same person, a looser crop
    assert not np.array_equal(with_landmarks, by_box)


def test_bad_boxes_and_images_are_refused(pipelines: dict[str, FacePipeline]) -> None:
    embedder = pipelines["sface"].embedder
    image = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="invalid face box"):
        embedder.align(image, np.array([[50, 50, 40, 60]]))
    with pytest.raises(ValueError, match="HxWx3"):
        embedder.align(image[:, :, 0], np.array([[10, 10, 40, 40]]))
    with pytest.raises(ValueError, match="112, 112, 3"):
        embedder.embed_crops(np.zeros((1, 160, 160, 3), np.uint8))
    assert embedder.embed_crops(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 128)


def test_a_damaged_cached_file_is_refused_naming_the_fetch(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    for name in (sface.ONNX_FILE, sface.ONNX_FILE + ".sha256"):
        shutil.copy(sface.onnx_model_path().parent / name, cache / "models" / name)
    monkeypatch.setenv("FER_ROS_CACHE", str(cache))
    assert SFaceEmbedder().embed_crops(np.zeros((1, 112, 112, 3), np.uint8)).shape == (1, 128)
    target = cache / "models" / sface.ONNX_FILE
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(AssetError, match="fer-ros models fetch"):
        SFaceEmbedder()
    target.unlink()
    with pytest.raises(AssetError, match="missing; run `fer-ros models fetch`"):
        SFaceEmbedder()


def test_folding_keeps_the_original_s_output() -> None:
    """The folded graph holds no DequantizeLinear and gives the original's output."""
    import onnx

    original = sface_assets.runnable(onnx.load(str(sface_assets.source_model(fetch=False))))
    folded = sface_assets.fold(original)
    assert not [n for n in folded.graph.node if n.op_type == "DequantizeLinear"]
    assert [i.name for i in folded.graph.input] == [sface.INPUT_NAME]
    x = np.random.default_rng(1).uniform(0, 255, (2, 3, 112, 112)).astype(np.float32)
    a = sface_assets._session(original).run(None, {sface.INPUT_NAME: x[:1]})[0]
    b = sface_assets._session(folded).run(None, {sface.INPUT_NAME: x})[0]
    assert b.shape == (2, 128)  # the batch axis is free now
    assert np.abs(a[0] - b[0]).max() < 1e-4
    assert sface_assets.reference_error(sface_assets._session(folded)) <= 1e-4


@pytest.fixture(scope="module")
def faces() -> dict[Path, tuple[np.ndarray, list]]:
    """Every packaged photo's faces, found once for both models (the detector is the same)."""
    detector = FacePipeline(PipelineConfig.stills(device="cpu", emotion=False,
                                                  recognition=False)).detector
    paths = [p for person in PEOPLE for part in ("train", "val")
             for p in sorted(data_path("celebrity", part, person).glob("*.jpg"))]
    out = {}
    for path in paths + stranger_photos():
        image = rgb(path)
        out[path] = (image, detector.detect(image))
    return out


def open_set(pipe: FacePipeline, faces: dict[Path, tuple[np.ndarray, list]],
             ) -> tuple[int, int, list[float], list[float], list[str]]:
    """Enrol every training photo's largest face; (named right, genuine attempts, each
    genuine attempt's score (-1 when another person scores best), stranger scores, the
    names strangers are given) with the model's calibrated decision."""
    def embed(path: Path, largest: bool) -> np.ndarray:
        image, detections = faces[path]
        chosen = [max(detections, key=lambda d: d.area)] if largest else detections
        return pipe.embedder.embed(image, np.stack([d.box for d in chosen]).reshape(-1, 4),
                                   np.stack([d.landmarks for d in chosen]).reshape(-1, 5, 2))

    gallery = pipe.new_gallery()
    for person in PEOPLE:
        paths = sorted(data_path("celebrity", "train", person).glob("*.jpg"))
        gallery.add(person, np.concatenate([embed(p, True) for p in paths if faces[p][1]]))
    threshold, margin = pipe.decision
    named = total = 0
    genuine: list[float] = []
    for person in PEOPLE:
        for path in sorted(data_path("celebrity", "val", person).glob("*.jpg")):
            match = gallery.match(embed(path, True), threshold, margin)[0]
            named += match.name == person
            total += 1
            genuine.append(match.similarity if match.best == person else -1.0)
    strangers, names = [], []
    for path in stranger_photos():
        for match in gallery.match(embed(path, False), threshold, margin):
            strangers.append(match.similarity)
            names.append(match.name)
    return named, total, genuine, strangers, names


def test_sface_names_every_enrolled_person_and_no_stranger(
        pipelines: dict[str, FacePipeline], faces: dict[Path, tuple[np.ndarray, list]]) -> None:
    named, total, genuine, strangers, names = open_set(pipelines["sface"], faces)
    print(f"sface: named {named}/{total}, lowest genuine {min(genuine):.3f}, "
          f"highest stranger {max(strangers):.3f} of {len(strangers)}")
    assert (named, total) == (25, 25)
    assert len(strangers) == 18 and set(names) == {"unknown"}
    assert min(genuine) - max(strangers) > 0.1  # one threshold separates them, with room
    assert max(strangers) < sface.THRESHOLD < min(genuine)


def test_facenet_s_calibrated_threshold_calls_no_stranger_by_name(
        pipelines: dict[str, FacePipeline], faces: dict[Path, tuple[np.ndarray, list]]) -> None:
    """FaceNet's scores overlap (no threshold separates them); its calibrated threshold
    keeps strangers unknown at the cost of one validation photo."""
    pipe = pipelines["facenet"]
    assert pipe.decision == (facenet.THRESHOLD, facenet.MARGIN)
    named, total, genuine, strangers, names = open_set(pipe, faces)
    print(f"facenet: named {named}/{total}, lowest genuine {min(genuine):.3f}, "
          f"highest stranger {max(strangers):.3f}")
    assert set(names) == {"unknown"}
    assert named >= 24 and total == 25
    assert min(genuine) < max(strangers)  # the overlap SFace is the default for


def test_a_configured_threshold_wins_over_the_calibrated_one(
        pipelines: dict[str, FacePipeline]) -> None:
    pipe = pipelines["sface"]
    assert pipe.decision == (sface.THRESHOLD, sface.MARGIN)
    other = FacePipeline(PipelineConfig.stills(device="cpu", emotion=False,
                                               recognition_threshold=0.3,
                                               recognition_margin=0.0),
                         models=pipe.models)
    assert other.decision == (0.3, 0.0)
    other.configure(recognition_threshold=-1.0)
    assert other.decision == (sface.THRESHOLD, 0.0)


def test_facenet_weights_with_sface_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="embedding_model is sface"):
        FacePipeline(PipelineConfig.stills(device="cpu", emotion=False,
                                           facenet_weights="/some/weights.pt"))
