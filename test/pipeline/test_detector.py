"""MTCNN face detection: every face found, boxes in original pixels, bad input refused,
and the torchvision stand-ins that let facenet-pytorch import."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import data_path

from fer_ros.assets import AssetError
from fer_ros.pipeline.detection import detector as detector_module
from fer_ros.pipeline.detection import mtcnn, tv_compat, yunet
from fer_ros.pipeline.detection.detector import FaceDetector


def load_rgb(name: str) -> np.ndarray:
    image = cv2.imread(str(data_path("pyfeat", name)))
    assert image is not None, name
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def multi_rgb() -> np.ndarray:
    # 640 wide, like a camera frame; the photo's 5 faces are then 50-70 px wide.
    image = load_rgb("multi_face.jpg")
    return cv2.resize(image, (640, round(image.shape[0] * 640 / image.shape[1])),
                      interpolation=cv2.INTER_AREA)


def check_detections(dets: list, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    for det in dets:
        assert det.box.dtype == np.float32 and det.box.shape == (4,)
        x1, y1, x2, y2 = det.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert 0.9 <= det.score <= 1.0
        assert det.landmarks is not None and det.landmarks.shape == (5, 2)
        lx, ly = det.landmarks[:, 0], det.landmarks[:, 1]
        assert np.all((lx > x1) & (lx < x2) & (ly > y1) & (ly < y2)), (det.box, det.landmarks)
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)


def test_multi_face_finds_all_five(detector: FaceDetector, multi_rgb: np.ndarray) -> None:
    dets = detector.detect(multi_rgb)
    assert len(dets) == 5
    check_detections(dets, multi_rgb)
    # five different people: no two boxes overlap
    for i in range(5):
        for j in range(i + 1, 5):
            assert iou(dets[i].box, dets[j].box) < 0.1


def test_single_face_and_no_face(detector: FaceDetector) -> None:
    single = load_rgb("single_face.jpg")
    dets = detector.detect(single)
    assert len(dets) == 1
    check_detections(dets, single)
    # the face fills the middle of the portrait
    x1, y1, x2, y2 = dets[0].box
    assert 150 < (x1 + x2) / 2 < 420 and 120 < (y1 + y2) / 2 < 420 and x2 - x1 > 120
    assert detector.detect(load_rgb("free-mountain-vector-01.jpg")) == []
    # a plain frame and a non-contiguous view (BGR -> RGB by slicing) are fine too
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    bgr = cv2.imread(str(data_path("pyfeat", "single_face.jpg")))
    view = bgr[:, :, ::-1]
    np.testing.assert_allclose(detector.detect(view)[0].box, dets[0].box, atol=1e-3)


def test_downscale_maps_boxes_back(detector: FaceDetector, multi_rgb: np.ndarray) -> None:
    full = detector.detect(multi_rgb)
    half = FaceDetector(downscale=0.5).detect(multi_rgb)
    assert len(half) == 5
    check_detections(half, multi_rgb)
    for det in half:
        best = max(iou(det.box, f.box) for f in full)
        assert best > 0.5, (det.box, [f.box for f in full])


def test_min_face_size_drops_small_faces(multi_rgb: np.ndarray) -> None:
    # the faces in the 640-wide group photo are at most ~70 px wide
    assert FaceDetector(min_face_size=120).detect(multi_rgb) == []


@pytest.mark.parametrize("image", [
    np.zeros((480, 640), np.uint8),
    np.zeros((480, 640, 4), np.uint8),
    np.zeros((480, 640, 3), np.float32),
    np.zeros((0, 640, 3), np.uint8),
    [[0, 0, 0]],
], ids=["gray", "rgba", "float", "empty", "list"])
def test_bad_image_raises(detector: FaceDetector, image: object) -> None:
    with pytest.raises(ValueError, match="image"):
        detector.detect(image)  # type: ignore[arg-type]


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="downscale"):
        FaceDetector(downscale=0.0)
    with pytest.raises(ValueError, match="thresholds"):
        FaceDetector(thresholds=(0.6, 0.7))  # type: ignore[arg-type]


def test_prepare_weights_checks_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = detector_module.prepare_weights()
    assert sorted(p.name for p in folder.glob("*.pt")) == ["onet.pt", "pnet.pt", "rnet.pt"]
    bad = {**detector_module.MTCNN_WEIGHTS_SHA256, "rnet.pt": "0" * 64}
    monkeypatch.setattr(detector_module, "MTCNN_WEIGHTS_SHA256", bad)
    with pytest.raises(AssetError, match=r"rnet\.pt"):
        detector_module.prepare_weights()
    with pytest.raises(AssetError):
        FaceDetector()


def test_nms_matches_greedy_definition() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.5, 0.9, 0.8, 0.7])
    # box 1 (best) suppresses 0 (IoU 0.68); box 3 overlaps 1 by 0.62 -> dropped
    assert tv_compat.nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert tv_compat.nms(boxes, scores, 0.7).tolist() == [1, 2, 3]
    # per category: box 0 in its own category survives
    idxs = torch.tensor([1, 0, 0, 0])
    assert tv_compat.batched_nms(boxes, scores, idxs, 0.5).tolist() == [1, 2, 0]
    assert tv_compat.batched_nms(boxes[:0], scores[:0], idxs[:0], 0.5).numel() == 0
    # random boxes: no two kept boxes of one category overlap more than the threshold
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=gen) * 100
    rand_boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=gen) * 30], dim=1)
    rand_scores = torch.rand(300, generator=gen)
    keep = tv_compat.nms(rand_boxes, rand_scores, 0.3)
    kept = rand_boxes[keep].numpy()
    for i in range(len(kept)):
        for j in range(i + 1, len(kept)):
            assert iou(kept[i], kept[j]) <= 0.3 + 1e-9
    dropped = set(range(300)) - set(keep.tolist())
    for d in dropped:  # each dropped box is covered by a kept box with a higher score
        assert any(iou(rand_boxes[d].numpy(), rand_boxes[k].numpy()) > 0.3
                   and rand_scores[k] >= rand_scores[d] for k in keep.tolist())


def test_to_tensor_like_torchvision() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = tv_compat.to_tensor(image)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    assert torch.allclose(t[1, 0, 2], torch.tensor(7 / 255))
    f = tv_compat.to_tensor(image.astype(np.float32))  # floats are not rescaled
    assert f[1, 0, 2].item() == 7.0


def test_stand_ins_do_not_linger() -> None:
    module = tv_compat.import_facenet_pytorch()
    assert hasattr(module, "MTCNN")
    leftovers = [m for m in sys.modules
                 if m.startswith("torchvision") and getattr(sys.modules[m],
                                                            "__fer_ros_shim__", False)]
    assert leftovers == []


def test_channels_last_pools_change_nothing(multi_rgb: np.ndarray) -> None:
    det = FaceDetector()
    assert det.fast_pools == 1 + 2 + 3  # P-, R- and O-Net
    fast = det.detect(multi_rgb)
    for net in (det._mtcnn.pnet, det._mtcnn.rnet, det._mtcnn.onet):
        for name, child in list(net.named_children()):
            if isinstance(child, mtcnn.ChannelsLastMaxPool2d):
                setattr(net, name, child.pool)
    plain = det.detect(multi_rgb)
    assert len(plain) == len(fast) == 5
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_refine_follows_tracked_faces_without_a_full_search() -> None:
    """Between full detections only known boxes are refined: same faces, moved boxes."""
    from fer_ros.pipeline.tracking.tracker import iou_matrix

    detector = FaceDetector()
    image = cv2.cvtColor(cv2.imread(str(data_path("pyfeat", "multi_face.jpg"))),
                         cv2.COLOR_BGR2RGB)
    first = detector.detect(image)
    moved = np.ascontiguousarray(np.roll(image, 6, axis=1))
    refined = detector.refine(moved, np.stack([d.box for d in first]))
    assert len(refined) == len(first) == 5
    expected = np.stack([d.box for d in detector.detect(moved)])
    overlap = iou_matrix(np.stack([d.box for d in refined]), expected)
    assert (overlap.max(axis=1) > 0.7).all()
    for det in refined:
        assert det.score >= detector.min_score and det.landmarks.shape == (5, 2)
    # A box where no face is (the sky) gives nothing; no boxes give nothing.
    assert detector.refine(moved, np.array([[5.0, 5.0, 60.0, 60.0]])) == []
    assert detector.refine(moved, np.zeros((0, 4))) == []


def test_yunet_and_mtcnn_searches_find_the_same_faces(multi_rgb: np.ndarray) -> None:
    # Whichever search finds them, O-Net gives the boxes and landmarks: they agree.
    yunet_faces = FaceDetector(search="yunet").detect(multi_rgb)
    mtcnn_faces = FaceDetector(search="mtcnn").detect(multi_rgb)
    assert len(yunet_faces) == len(mtcnn_faces) == 5
    check_detections(yunet_faces, multi_rgb)
    for face in yunet_faces:
        twin = max(mtcnn_faces, key=lambda m: iou(face.box, m.box))
        assert iou(face.box, twin.box) > 0.8
        assert np.abs(face.landmarks - twin.landmarks).max() < 0.1 * face.width


def test_yunet_search_skips_known_faces(multi_rgb: np.ndarray) -> None:
    detector = FaceDetector(search="yunet")
    faces = detector.detect(multi_rgb)
    known = np.stack([d.box for d in faces[:3]])
    new = detector.detect(multi_rgb, known)
    assert len(new) == 2
    assert all(max(iou(d.box, k) for k in known) < 0.3 for d in new)


def test_yunet_weights_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(yunet, "SOURCE_SHA256", "0" * 64)
    with pytest.raises(AssetError, match=r"checksum mismatch.*fer-ros models fetch"):
        FaceDetector(search="yunet")
    FaceDetector(search="mtcnn")  # MTCNN's own search does not need YuNet
    monkeypatch.setattr(yunet, "model_path", lambda: tmp_path / "none.onnx")
    with pytest.raises(AssetError, match="missing; run `fer-ros models fetch`"):
        FaceDetector()


def test_yunet_enlarges_small_images_within_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    searched: list[tuple[int, int]] = []

    def recording(detector: FaceDetector) -> FaceDetector:
        boxes = detector._yunet.boxes
        monkeypatch.setattr(detector._yunet, "boxes",
                            lambda rgb: searched.append(rgb.shape[1::-1]) or boxes(rgb))
        return detector

    def blank(width: int, height: int) -> np.ndarray:
        return np.zeros((height, width, 3), np.uint8)

    detector = recording(FaceDetector())
    detector.detect(blank(640, 480), enlarge=True)
    detector.detect(blank(640, 480))  # as it is, unless asked
    detector.detect(blank(100, 400), enlarge=True)  # at most as many pixels as 800x600
    detector.detect(blank(1280, 720), enlarge=True)  # wide enough already
    recording(FaceDetector(max_width=640)).detect(blank(640, 480), enlarge=True)
    assert searched == [(800, 600), (640, 480), (346, 1386), (1280, 720), (640, 480)]


def test_an_opencv_that_cannot_run_yunet_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def too_old(*args: object) -> None:
        raise cv2.error("Unsupported DequantizeLinear with block_size")

    monkeypatch.setattr(yunet.cv2.FaceDetectorYN, "create", too_old)
    with pytest.raises(AssetError, match=r"does not run on OpenCV .*>=4\.11.*face_search to mtcnn"):
        FaceDetector()
    FaceDetector(search="mtcnn")

