"""perception_node as a managed (lifecycle) node: every transition through the standard
lifecycle services, and what the node does in each state; also on Humble's API."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO, data_path, wait_for
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, frame_bgr, handshake
from sensor_msgs.msg import Image

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.image_codec import image_to_msg

pytestmark = pytest.mark.slow
SHIM = str(REPO / "test" / "humble_api.py")


class Manager:
    """What a lifecycle manager does: change_state / get_state on the node."""

    def __init__(self) -> None:
        self.client = TestNode("lifecycle_test_manager")
        node = self.client.node
        self.change = node.create_client(ChangeState, "/perception/change_state")
        self.get = node.create_client(GetState, "/perception/get_state")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.images = node.create_publisher(Image, "/camera/image_raw", reliable)
        self.outputs: list[FaceEmotionArray] = []
        self.lock = threading.Lock()
        node.create_subscription(FaceEmotionArray, "/faces/emotions", self._on_faces, 10)
        self.stamp = 0

    def _on_faces(self, msg: FaceEmotionArray) -> None:
        with self.lock:
            self.outputs.append(msg)

    def state(self) -> int:
        return self.client.call(self.get, GetState.Request(), timeout=60).current_state.id

    def transition(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.client.call(self.change, request, timeout=120).success

    def _send(self, image: Path) -> int:
        self.stamp += 1
        msg = image_to_msg(frame_bgr(image), "bgr8")
        msg.header.stamp.sec = self.stamp
        self.images.publish(msg)
        return self.stamp

    def _back(self, first: int) -> bool:
        with self.lock:
            return any(o.header.stamp.sec >= first for o in self.outputs)

    def answered(self, image: Path, timeout: float) -> bool:
        """Send one image; True if its FaceEmotionArray comes back within ``timeout``."""
        stamp = self._send(image)
        return wait_for(lambda: self._back(stamp), timeout)

    def answers(self, image: Path, timeout: float) -> None:
        """Send the image until a FaceEmotionArray comes back: only an answer proves the
        node's new subscription and publisher have matched ours (rosutil.handshake)."""
        first = self.stamp + 1
        handshake(lambda _: self._send(image), lambda: self._back(first), timeout)

    def has_enroll_service(self) -> bool:
        names = dict(self.client.node.get_service_names_and_types())
        return "/perception/enroll" in names


@pytest.mark.parametrize("api", ["current", "humble"])
def test_every_transition(spawn, api: str) -> None:
    exe = [str(node_executable("perception_node"))] if api == "current" else \
        [sys.executable, SHIM, "fer_ros.nodes.perception.node"]
    proc = spawn([*exe, "--ros-args", "-r", "image:=/camera/image_raw", "-p", "autostart:=false",
                  "-p", "qos:=reliable", "-p", "device:=cpu"], "perception")
    manager = Manager()
    face = data_path("pyfeat", "single_face.jpg")
    try:
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert "models loaded" not in proc.output()
        assert not manager.has_enroll_service()

        assert manager.transition(Transition.TRANSITION_CONFIGURE)
        assert manager.state() == State.PRIMARY_STATE_INACTIVE
        assert "models loaded" in proc.output()
        assert wait_for(manager.has_enroll_service, 10)
        assert manager.images.get_subscription_count() == 0  # inactive: not listening

        assert manager.transition(Transition.TRANSITION_ACTIVATE)
        assert manager.state() == State.PRIMARY_STATE_ACTIVE
        assert wait_for(lambda: manager.images.get_subscription_count() > 0, 20)
        manager.answers(face, 60)

        assert manager.transition(Transition.TRANSITION_DEACTIVATE)
        assert manager.state() == State.PRIMARY_STATE_INACTIVE
        assert wait_for(lambda: manager.images.get_subscription_count() == 0, 20)
        assert not manager.answered(face, 3)

        assert manager.transition(Transition.TRANSITION_CLEANUP)
        assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert "models and gallery released" in proc.output()
        assert wait_for(lambda: not manager.has_enroll_service(), 10)

        # And back: configure and activate again after a cleanup.
        assert manager.transition(Transition.TRANSITION_CONFIGURE)
        assert manager.transition(Transition.TRANSITION_ACTIVATE)
        assert wait_for(lambda: manager.images.get_subscription_count() > 0, 20)
        manager.answers(face, 60)
        # No tf2_msgs in the venv: said once at start-up, not at each configure.
        assert proc.output().count("publish_tf: tf2_msgs is not installed here") == 1

        assert manager.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert manager.state() == State.PRIMARY_STATE_FINALIZED
    finally:
        manager.client.close()
    assert proc.interrupt() == 0, proc.output()[-3000:]
    assert "Traceback" not in proc.output(), proc.output()[-3000:]
