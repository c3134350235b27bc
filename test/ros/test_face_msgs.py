"""FaceResult -> FaceEmotion: the head pose comes from camera_info's K when it describes
the image, else from the assumed field of view; box, landmarks and labels are copied."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from fer_ros.pipeline.types import Detection, FaceResult
from fer_ros.ros.face_msgs import camera_for, face_to_msg

WIDTH, HEIGHT, FOV_DEG = 640, 480, 60.0
# The assumed camera for a 60-degree 640 px image has f = 320 / tan(30 deg) = 554.3 px
# and its principal point in the middle; the camera_info below differs in all four.
ASSUMED_F = 320.0 / math.tan(math.radians(30.0))
FX, FY, CX, CY = 900.0, 910.0, 280.0, 260.0
# Landmarks of a face about 1 m from the assumed camera, right of the image centre:
# eyes 35 px apart (63 mm at 554 px focal length is 35 px at 1 m).
LANDMARKS = np.array([[382.0, 220.0], [417.0, 220.0], [399.5, 240.0], [386.0, 258.0],
                      [413.0, 258.0]], np.float32)


def info(width: int = WIDTH, height: int = HEIGHT,
         k: tuple[float, ...] = (FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0)) -> CameraInfo:
    return CameraInfo(width=width, height=height, k=list(k))


def face() -> FaceResult:
    detection = Detection(box=np.array([370.0, 200.5, 430.0, 279.6], np.float32), score=0.99,
                          landmarks=LANDMARKS)
    return FaceResult(detection=detection, track_id=7, name="ada", similarity=0.8,
                      emotion="happy", emotion_score=0.6,
                      emotion_labels=("happy", "sad"),
                      emotion_scores=np.array([0.6, 0.4], np.float32),
                      emotion_scores_raw=np.array([0.7, 0.3], np.float32))


def test_camera_info_of_the_image_s_size_is_used() -> None:
    camera, calibrated = camera_for(info(), WIDTH, HEIGHT, FOV_DEG)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (FX, FY, CX, CY)
    assert calibrated


@pytest.mark.parametrize("described", [
    None,                                          # no camera_info yet
    info(width=1280, height=960),                  # another image size
    info(k=(0.0,) * 9),                            # K unset (an uncalibrated driver)
])
def test_assumed_field_of_view_otherwise(described: CameraInfo | None) -> None:
    camera, calibrated = camera_for(described, WIDTH, HEIGHT, FOV_DEG)
    assert not calibrated
    assert camera.fx == pytest.approx(ASSUMED_F) and camera.fy == pytest.approx(ASSUMED_F)
    assert (camera.cx, camera.cy) == pytest.approx(((WIDTH - 1) / 2, (HEIGHT - 1) / 2))


def test_camera_info_changes_the_published_pose() -> None:
    assumed = face_to_msg(face(), camera_for(None, WIDTH, HEIGHT, FOV_DEG)[0])
    calibrated = face_to_msg(face(), camera_for(info(), WIDTH, HEIGHT, FOV_DEG)[0])
    assert assumed.head_pose_valid and calibrated.head_pose_valid
    a, c = assumed.head_pose.position, calibrated.head_pose.position
    assert a.z == pytest.approx(1.0, rel=0.1)
    # Farther by the ratio of the focal lengths; sideways by where the eyes are from
    # each principal point (x = (u - cx) / fx * z).
    assert c.z / a.z == pytest.approx(FX / ASSUMED_F, rel=0.03)
    eyes_u = float(LANDMARKS[:2, 0].mean())
    assert a.x == pytest.approx((eyes_u - (WIDTH - 1) / 2) / ASSUMED_F * a.z, rel=0.05)
    assert c.x == pytest.approx((eyes_u - CX) / FX * c.z, rel=0.05)
    # No camera at all: no pose, but everything else.
    bare = face_to_msg(face())
    assert not bare.head_pose_valid


def test_everything_else_is_copied() -> None:
    msg = face_to_msg(face(), camera_for(None, WIDTH, HEIGHT, FOV_DEG)[0])
    assert (msg.box.x_offset, msg.box.y_offset, msg.box.width, msg.box.height) == (
        370, 200, 60, 79)
    assert [(p.x, p.y, p.z) for p in msg.landmarks] == [(x, y, 0.0) for x, y in LANDMARKS]
    assert (msg.track_id, msg.name, msg.emotion) == (7, "ada", "happy")
    assert msg.name_similarity == pytest.approx(0.8)
    assert msg.detection_score == pytest.approx(0.99)
    assert msg.emotion_score == pytest.approx(0.6)
    assert list(msg.emotion_labels) == ["happy", "sad"]
    assert list(msg.emotion_scores) == pytest.approx([0.6, 0.4])
    assert list(msg.emotion_scores_raw) == pytest.approx([0.7, 0.3])
