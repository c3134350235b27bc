"""The messages: fields, defaults and round trips through rclpy serialization."""

from __future__ import annotations

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.srv import EnrollFace


def sample_array() -> FaceEmotionArray:
    msg = FaceEmotionArray()
    msg.header.stamp.sec = 1700000000
    msg.header.stamp.nanosec = 123456789
    msg.header.frame_id = "camera_optical_frame"
    msg.image_width, msg.image_height = 640, 480
    face = FaceEmotion()
    face.track_id = 7
    face.box.x_offset, face.box.y_offset, face.box.width, face.box.height = 10, 20, 100, 120
    face.detection_score = 0.99
    face.name = "ada"
    face.name_similarity = 0.8
    face.emotion = "happy"
    face.emotion_score = 0.9
    face.emotion_labels = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    face.emotion_scores = [0.01, 0.01, 0.02, 0.9, 0.02, 0.02, 0.02]
    face.emotion_scores_raw = list(face.emotion_scores)
    msg.faces = [face, FaceEmotion()]
    return msg


def test_round_trip_through_serialization() -> None:
    msg = sample_array()
    back = deserialize_message(serialize_message(msg), FaceEmotionArray)
    # float32 fields come back as float32 arrays: compare the wire form instead
    assert serialize_message(back) == serialize_message(msg)
    assert back.faces[0].name == "ada"
    assert np.allclose(back.faces[0].emotion_scores, msg.faces[0].emotion_scores)
    assert back.faces[1].track_id == 0 and back.faces[1].landmarks == []


def test_empty_array_is_a_valid_message() -> None:
    msg = FaceEmotionArray()
    msg.header.frame_id = "cam"
    back = deserialize_message(serialize_message(msg), FaceEmotionArray)
    assert back.faces == [] and back.header.frame_id == "cam"


def test_enroll_service_defaults() -> None:
    request = EnrollFace.Request(name="ada")
    assert request.append is True
    assert EnrollFace.Response().success is False
