"""FaceResult (the pipeline's answer for one face) -> fer_ros/msg/FaceEmotion."""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point, Point32, Pose, Quaternion
from sensor_msgs.msg import CameraInfo

from fer_ros.msg import FaceEmotion
from fer_ros.pipeline.head_pose import Intrinsics, estimate_head_pose
from fer_ros.pipeline.types import FaceResult


def camera_for(info: CameraInfo | None, width: int, height: int,
               fov_deg: float) -> tuple[Intrinsics, bool]:
    """camera_info's K when it describes images of this size (True: calibrated), else an
    ideal camera with the assumed horizontal field of view (False)."""
    if info is not None and (info.width, info.height) == (width, height):
        camera = Intrinsics.from_k(info.k)
        if camera is not None:
            return camera, True
    return Intrinsics.from_fov(width, height, fov_deg), False


def face_to_msg(face: FaceResult, camera: Intrinsics | None = None) -> FaceEmotion:
    m = FaceEmotion()
    x1, y1, x2, y2 = (float(v) for v in face.box)
    m.track_id = int(face.track_id)
    m.box.x_offset, m.box.y_offset = max(round(x1), 0), max(round(y1), 0)
    m.box.width = max(round(x2 - x1), 0)
    m.box.height = max(round(y2 - y1), 0)
    m.detection_score = float(face.score)
    landmarks = face.detection.landmarks
    if landmarks is not None:
        m.landmarks = [Point32(x=float(x), y=float(y), z=0.0)
                       for x, y in np.asarray(landmarks).reshape(-1, 2)]
        pose = estimate_head_pose(landmarks, camera) if camera is not None else None
        if pose is not None:
            x, y, z = (float(v) for v in pose.position)
            qx, qy, qz, qw = (float(v) for v in pose.quaternion())
            m.head_pose = Pose(position=Point(x=x, y=y, z=z),
                               orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))
            m.head_pose_valid = True
    m.name = face.name
    m.name_similarity = float(face.similarity)
    m.emotion = face.emotion
    m.emotion_score = float(face.emotion_score)
    m.emotion_labels = list(face.emotion_labels)
    m.emotion_scores = [float(v) for v in face.emotion_scores]
    m.emotion_scores_raw = [float(v) for v in face.emotion_scores_raw]
    return m
