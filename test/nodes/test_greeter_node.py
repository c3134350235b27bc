"""The installed greeter_node over DDS: what it says on ``speech`` for the faces it is sent
(greetings with where the person stands, one reaction per new confident emotion) and
when ``forget_after`` lets a person be greeted again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from conftest import Proc, wait_for
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, handshake
from std_msgs.msg import String

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.paths import node_executable

# What the greeter says for each emotion (neutral has no reaction): written out here, not
# imported, so a reaction mapped to the wrong emotion fails.
REACTIONS = {
    "happy": "you look happy!", "sad": "is everything all right?",
    "angry": "let me know if I can help.", "surprise": "surprised?",
    "fear": "no need to worry, I am a friendly robot.", "disgust": "something wrong?",
}
PROBE = "handshake"


def face(name: str, emotion: str = "neutral", score: float = 0.9,
         position: tuple[float, float] | None = None) -> FaceEmotion:
    """A face as perception would send it; ``position`` (x, z) in metres makes its head
    pose valid."""
    msg = FaceEmotion(name=name, emotion=emotion, emotion_score=score)
    if position is not None:
        msg.head_pose_valid = True
        msg.head_pose.position.x, msg.head_pose.position.z = position
    return msg


class Greeter:
    """A spawned greeter_node, a /faces/emotions publisher and the /speech it says."""

    def __init__(self, spawn: Callable[..., Proc], forget_after: float) -> None:
        self.proc = spawn([str(node_executable("greeter_node")), "--ros-args",
                           "-p", f"forget_after:={forget_after}"], "greeter")
        self.client = TestNode("greeter_test_client")
        node = self.client.node
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.faces_pub = node.create_publisher(FaceEmotionArray, "/faces/emotions", reliable)
        self.lock = threading.Lock()
        self.speech: list[str] = []
        self.speech_sub = node.create_subscription(String, "/speech", self._on_speech,
                                                   reliable)
        self.set_params = node.create_client(SetParameters, "/greeter/set_parameters")
        # A person of its own until the greeting comes back: only an answer proves both
        # sides have matched (rosutil.handshake). Greeted once, so a late probe says nothing.
        handshake(lambda _: self.faces_pub.publish(FaceEmotionArray(faces=[face(PROBE)])),
                  lambda: f"Hello {PROBE}!" in self.said())
        self.expected: list[str] = [f"Hello {PROBE}!"]

    def _on_speech(self, msg: String) -> None:
        with self.lock:
            self.speech.append(msg.data)

    def said(self) -> list[str]:
        with self.lock:
            return list(self.speech)

    def send(self, faces: list[FaceEmotion], expect: list[str]) -> None:
        """Publish one FaceEmotionArray and wait until the greeter has said ``expect``.

        A message that should say nothing is checked by the next one that says something:
        messages are handled in order, so anything extra shifts everything after it.
        """
        self.faces_pub.publish(FaceEmotionArray(faces=faces, image_width=640,
                                                image_height=480))
        self.expected += expect
        assert wait_for(lambda: len(self.said()) >= len(self.expected), 10), (
            self.said(), self.expected, self.proc.output()[-2000:])
        assert self.said() == self.expected

    def set_forget_after(self, seconds: float) -> None:
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=seconds)
        request = SetParameters.Request(parameters=[ParameterMsg(name="forget_after",
                                                                 value=value)])
        result = self.client.call(self.set_params, request).results[0]
        assert result.successful, result.reason

    def close(self) -> None:
        self.client.close()
        assert self.proc.interrupt() == 0, self.proc.output()[-2000:]
        assert "Traceback" not in self.proc.output()


@pytest.fixture
def greeter(spawn) -> Callable[[float], Greeter]:
    made: list[Greeter] = []

    def make(forget_after: float) -> Greeter:
        made.append(Greeter(spawn, forget_after))
        return made[-1]

    yield make
    for item in made:
        item.close()


def test_greets_each_person_once_and_reacts_to_each_new_confident_emotion(greeter) -> None:
    # forget_after far longer than the test: nobody is forgotten along the way.
    node = greeter(3600.0)
    node.send([face("alice", "neutral")], ["Hello alice!"])  # neutral: no reaction
    node.send([face("alice", "happy")], [f"alice, {REACTIONS['happy']}"])
    node.send([face("alice", "happy", 0.95)], [])  # the same emotion again: said once
    node.send([face("alice", "sad", 0.5)], [])  # below min_emotion_score (0.6)
    node.send([face("alice", "sad", 0.8)], [f"alice, {REACTIONS['sad']}"])
    node.send([face("unknown", "angry"), face("", "angry")], [])  # nobody to greet
    # Several faces in one message: each greeted with where they stand, in message order.
    node.send([face("bob", "surprise", 0.7, position=(-0.5, 1.0)),
               face("carol", "fear", position=(0.05, 2.0))],
              ["Hello bob, on my left, 1.1 m away!", f"bob, {REACTIONS['surprise']}",
               "Hello carol, in front of me, 2.0 m away!", f"carol, {REACTIONS['fear']}"])
    node.send([face("dave", "angry", position=(0.8, 1.0))],
              ["Hello dave, on my right, 1.3 m away!", f"dave, {REACTIONS['angry']}"])
    node.send([face("dave", "disgust")], [f"dave, {REACTIONS['disgust']}"])
    # A confident neutral ends the happy mood: happy again is a change, said again.
    node.send([face("alice", "neutral")], [])
    node.send([face("alice", "happy")], [f"alice, {REACTIONS['happy']}"])
    node.send([face("zed")], ["Hello zed!"])  # nothing said after the last step
    # Each line is also logged.
    assert wait_for(lambda: "dave, something wrong?" in node.proc.output(), 10)


def test_forget_after_decides_when_a_person_is_greeted_again(greeter) -> None:
    away = 0.5  # the forget_after set later, and less than each absence below
    node = greeter(3600.0)
    node.send([face("alice", "happy")], ["Hello alice!", f"alice, {REACTIONS['happy']}"])
    for _ in range(3):
        node.send([face("alice", "happy")], [])
    node.send([face("zed")], ["Hello zed!"])
    # Away longer than ``away`` but not than forget_after (3600 s): still remembered.
    time.sleep(away + 0.2)  # the absence under test: time must pass
    node.send([face("alice", "happy")], [])
    node.send([face("yan")], ["Hello yan!"])
    node.set_forget_after(away)
    time.sleep(away + 0.2)  # away again, now longer than forget_after
    # A new appearance: greeted again, and the mood is news again.
    node.send([face("alice", "happy")], ["Hello alice!", f"alice, {REACTIONS['happy']}"])
