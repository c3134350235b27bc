"""greeter_node: an example robot behaviour built on /faces/emotions.

Greets each recognised person once per appearance (a track that comes back after
``forget_after`` seconds away is a new appearance) and reacts when their emotion
changes, saying where the person stands (from the face's head pose: a robot would turn
towards them). Publishes what the robot would say on ``speech`` (std_msgs/String) and
logs it. Copy this file to start your own behaviour.
"""

from __future__ import annotations

import math
import time

from rclpy.node import Node
from std_msgs.msg import String

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.ros.params import ParamSpec, declare_parameters
from fer_ros.ros.run import run_node

REACTIONS = {
    "happy": "you look happy!", "sad": "is everything all right?",
    "angry": "let me know if I can help.", "surprise": "surprised?",
    "fear": "no need to worry, I am a friendly robot.", "disgust": "something wrong?",
}

# Degrees off the camera's axis within which a person is "in front of me".
AHEAD_DEG = 15.0


def where(face: FaceEmotion) -> str:
    """", on my left, 1.2 m away" from the head pose (camera frame: x right, z ahead)."""
    if not face.head_pose_valid:
        return ""
    p = face.head_pose.position
    bearing = math.degrees(math.atan2(p.x, p.z))
    side = ("in front of me" if abs(bearing) <= AHEAD_DEG
            else "on my left" if bearing < 0 else "on my right")
    return f", {side}, {math.hypot(p.x, p.z):.1f} m away"


PARAMS = (
    ParamSpec("forget_after", 10.0, "Seconds a person must be out of view before they are "
              "greeted again.", (0.0, 86400.0)),
    ParamSpec("min_emotion_score", 0.6, "React to an emotion only this confident.",
              (0.0, 1.0)),
)


class GreeterNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("greeter", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.last_seen: dict[str, float] = {}  # name -> monotonic time
        self.last_emotion: dict[str, str] = {}
        self.speech = self.create_publisher(String, "speech", 10)
        self.create_subscription(FaceEmotionArray, "faces/emotions", self.on_faces, 10)

    def on_faces(self, msg: FaceEmotionArray) -> None:
        now = time.monotonic()
        for face in msg.faces:
            if not face.name or face.name == "unknown":
                continue
            if now - self.last_seen.get(face.name, -1e9) > self.p["forget_after"]:
                self.say(f"Hello {face.name}{where(face)}!")
                self.last_emotion.pop(face.name, None)
            self.last_seen[face.name] = now
            if (face.emotion in REACTIONS and face.emotion_score >= self.p["min_emotion_score"]
                    and self.last_emotion.get(face.name) != face.emotion):
                self.say(f"{face.name}, {REACTIONS[face.emotion]}")
            if face.emotion_score >= self.p["min_emotion_score"]:
                self.last_emotion[face.name] = face.emotion

    def say(self, text: str) -> None:
        self.get_logger().info(text)
        self.speech.publish(String(data=text))


def main(args: list[str] | None = None) -> int:
    return run_node(GreeterNode, args, "greeter")
