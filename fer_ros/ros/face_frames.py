"""A TF frame per face: the transform from the image's frame to ``face_<id>`` (REP-155's
name), taken from the face's head pose in a FaceEmotionArray.

The head pose is already in REP-155's axes, in the camera's optical frame (the image's
``header.frame_id``), so the transform is the pose itself, stamped with the image's stamp.
Faces without a track id (tracking off) get no frame: a name that moved from person to
person between images would be worse than none.
"""

from __future__ import annotations

from geometry_msgs.msg import Transform, TransformStamped, Vector3
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSProfile

from fer_ros.msg import FaceEmotionArray

# tf2_ros's TransformBroadcaster publishes /tf reliable, volatile, keep last 100: the
# same here, so every TF listener matches.
TF_TOPIC = "/tf"
TF_QUEUE_DEPTH = 100


def face_frame(track_id: int, stream: str = "") -> str:
    """``face_<id>``; with several cameras the stream's name comes first (``face_cam1_7``),
    so ids of two cameras' trackers never name the same frame."""
    if stream:
        return f"face_{stream.replace('/', '_')}_{track_id}"
    return f"face_{track_id}"


def face_transforms(msg: FaceEmotionArray, stream: str = "") -> list[TransformStamped]:
    """One transform per tracked face with a valid head pose, in the message's order."""
    out = []
    for face in msg.faces:
        if not (face.head_pose_valid and face.track_id):
            continue
        p = face.head_pose.position
        out.append(TransformStamped(
            header=msg.header, child_frame_id=face_frame(face.track_id, stream),
            transform=Transform(translation=Vector3(x=p.x, y=p.y, z=p.z),
                                rotation=face.head_pose.orientation)))
    return out


def tf_message_type(logger) -> type | None:
    """tf2_msgs/msg/TFMessage; None where tf2_msgs is missing (the ROS 2 wheels on PyPI
    lack it), after saying so: the head poses stay in the messages, nothing else changes."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        logger.info("publish_tf: tf2_msgs is not installed here (a ROS 2 install has it; the "
                    "PyPI wheels do not): no face frames on /tf, head poses stay in "
                    "faces/emotions")
        return None
    return TFMessage


class FaceFrames:
    """The face frames of a lifecycle node's FaceEmotionArrays, on /tf (``message_type``:
    tf_message_type's)."""

    def __init__(self, node: LifecycleNode, message_type: type) -> None:
        self.node = node
        self._type = message_type
        self.publisher = node.create_lifecycle_publisher(
            message_type, TF_TOPIC, QoSProfile(depth=TF_QUEUE_DEPTH))
        self._unframed: set[str] = set()  # streams already warned about

    def publish(self, msg: FaceEmotionArray, stream: str, image_topic: str) -> int:
        """The frames of ``msg``'s faces; how many were published."""
        transforms = face_transforms(msg, stream)
        if not transforms:
            return 0
        if not msg.header.frame_id:  # TF has no name for the parent: said once per stream
            if stream not in self._unframed:
                self._unframed.add(stream)
                self.node.get_logger().warning(
                    f"images on {image_topic} have no header.frame_id: their faces get no "
                    f"TF frame (set the camera driver's frame_id)")
            return 0
        self.publisher.publish(self._type(transforms=transforms))
        return len(transforms)

    def close(self) -> None:
        self.node.destroy_lifecycle_publisher(self.publisher)
