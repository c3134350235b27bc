"""fer_ros/ros/face_frames.py in-process: which faces get a frame, its name and pose, and
what FaceFrames publishes or says (tf2_msgs present, missing, an image without frame_id).
Over DDS: test/nodes/test_face_frames.py."""

from __future__ import annotations

import builtins
import sys
from types import SimpleNamespace

import pytest
from geometry_msgs.msg import Point, Pose, Quaternion
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.ros.face_frames import (
    TF_QUEUE_DEPTH,
    TF_TOPIC,
    FaceFrames,
    face_frame,
    face_transforms,
    tf_message_type,
)


def face(track_id: int, valid: bool = True, z: float = 1.5) -> FaceEmotion:
    return FaceEmotion(track_id=track_id, head_pose_valid=valid, head_pose=Pose(
        position=Point(x=0.1 * track_id, y=-0.2, z=z),
        orientation=Quaternion(x=0.1, y=0.2, z=0.3, w=0.927)))


def faces(*members: FaceEmotion, frame_id: str = "cam_optical") -> FaceEmotionArray:
    msg = FaceEmotionArray(faces=list(members))
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    return msg


def test_frame_names_follow_rep155_and_carry_the_stream() -> None:
    assert face_frame(7) == "face_7"
    assert face_frame(7, "cam1") == "face_cam1_7"
    # A stream name may hold '/', which TF frame names must not.
    assert face_frame(12, "front/left") == "face_front_left_12"


def test_a_transform_per_tracked_face_with_a_pose_in_order() -> None:
    msg = faces(face(3), face(5, valid=False), face(0), face(9, z=2.5))
    out = face_transforms(msg, "cam1")
    assert [t.child_frame_id for t in out] == ["face_cam1_3", "face_cam1_9"]
    for transform, source in zip(out, (msg.faces[0], msg.faces[3]), strict=True):
        assert transform.header == msg.header
        t, p = transform.transform.translation, source.head_pose.position
        assert (t.x, t.y, t.z) == (p.x, p.y, p.z)
        assert transform.transform.rotation == source.head_pose.orientation
    assert face_transforms(faces()) == []
    # The default stream ("") adds nothing to the name.
    assert [t.child_frame_id for t in face_transforms(faces(face(2)))] == ["face_2"]


class FakeNode:
    """What FaceFrames uses of a lifecycle node, recording what it is asked."""

    def __init__(self) -> None:
        self.published: list = []
        self.logged: list[tuple[str, str]] = []
        self.publishers: list[tuple] = []
        self.destroyed: list = []

    def create_lifecycle_publisher(self, message_type, topic, qos):
        publisher = SimpleNamespace(publish=self.published.append)
        self.publishers.append((message_type, topic, qos, publisher))
        return publisher

    def destroy_lifecycle_publisher(self, publisher) -> None:
        self.destroyed.append(publisher)

    def get_logger(self):
        return SimpleNamespace(info=lambda m: self.logged.append(("info", m)),
                               warning=lambda m: self.logged.append(("warning", m)))


class TFMessage(SimpleNamespace):
    pass


def test_face_frames_publish_one_message_per_image_on_tf_with_tf2_ros_qos() -> None:
    node = FakeNode()
    frames = FaceFrames(node, TFMessage)
    ((message_type, topic, qos, publisher),) = node.publishers
    assert (message_type, topic, qos.depth) == (TFMessage, TF_TOPIC, TF_QUEUE_DEPTH) == (
        TFMessage, "/tf", 100)
    assert qos.reliability == ReliabilityPolicy.RELIABLE
    assert qos.durability == DurabilityPolicy.VOLATILE
    assert frames.publish(faces(face(1), face(2)), "", "/cam/image") == 2
    assert frames.publish(faces(face(4, valid=False)), "", "/cam/image") == 0
    assert frames.publish(faces(face(3)), "cam1", "/cam1/image") == 1
    message, named = node.published
    assert [t.child_frame_id for t in message.transforms] == ["face_1", "face_2"]
    assert [t.child_frame_id for t in named.transforms] == ["face_cam1_3"]
    frames.close()
    assert node.destroyed == [publisher] and node.logged == []


def test_an_image_without_frame_id_is_said_once_per_stream() -> None:
    node = FakeNode()
    frames = FaceFrames(node, TFMessage)
    for stream in ("a", "a", "b", "a"):
        assert frames.publish(faces(face(1), frame_id=""), stream, f"/{stream}/image") == 0
    assert node.published == []
    assert [level for level, _ in node.logged] == ["warning", "warning"]
    assert node.logged[0][1] == ("images on /a/image have no header.frame_id: their faces "
                                 "get no TF frame (set the camera driver's frame_id)")
    assert node.logged[1][1].startswith("images on /b/image have")
    # Framed images of the same stream still get their frames.
    assert frames.publish(faces(face(1)), "a", "/a/image") == 1
    # No face, no frame: nothing to say about frame_id either.
    assert frames.publish(faces(frame_id=""), "c", "/c/image") == 0 and len(node.logged) == 2


def test_without_tf2_msgs_it_is_said_and_there_is_no_type(monkeypatch) -> None:
    real_import = builtins.__import__

    def no_tf2_msgs(name, *args, **kwargs):
        if name.startswith("tf2_msgs"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tf2_msgs)
    node = FakeNode()
    assert tf_message_type(node.get_logger()) is None
    assert node.logged == [("info", "publish_tf: tf2_msgs is not installed here (a ROS 2 "
                            "install has it; the PyPI wheels do not): no face frames on "
                            "/tf, head poses stay in faces/emotions")]


def test_with_tf2_msgs_its_tfmessage_is_used(monkeypatch) -> None:
    module = SimpleNamespace(TFMessage=TFMessage)
    monkeypatch.setitem(sys.modules, "tf2_msgs", SimpleNamespace(msg=module))
    monkeypatch.setitem(sys.modules, "tf2_msgs.msg", module)
    node = FakeNode()
    assert tf_message_type(node.get_logger()) is TFMessage
    assert node.logged == []


@pytest.mark.parametrize("name, stream", [
    ("perception: perception", ""), ("left: perception cam1", "cam1"),
    ("perception: perception a/b", "a/b"), ("camera: driver", None), ("perception", None),
    (": perception", None), ("x: perceptions", None),
    ("camera: driver: perception", None)])
def test_status_names_give_their_stream(name: str, stream: str | None) -> None:
    from fer_ros.ros.status_names import status_name, stream_of

    assert stream_of(name) == stream
    assert status_name("perception") == "perception: perception"
    if stream is not None:
        assert status_name(name.partition(":")[0], stream) == name
