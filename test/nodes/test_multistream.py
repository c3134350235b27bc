"""One perception_node serving three cameras over DDS (``streams: [a, b, c]``), on the CPU.

Each camera's faces come back only on its own topic, stamped with its own images'
headers; a camera that sends malformed images or stops sending does not stop the
others; each stream has its own diagnostics status; and ``streams`` changes only while
the node is inactive (deactivate, set, activate), with the models kept loaded.

The node is shared by the whole module, but no test relies on what another left behind:
each starts with ``cameras.serve(...)``, which puts the node in the state the test needs
(active, serving exactly those streams).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import Proc, data_path, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, enroll, frame_bgr, handshake
from sensor_msgs.msg import Image

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.image_codec import image_to_msg
from fer_ros.srv import EnrollFace

PEOPLE = {"a": "ben_afflek", "b": "elton_john", "c": "jerry_seinfeld", "d": "madonna"}
STRANGER = "mindy_kaling"  # in the data set but never enrolled in this module's gallery
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)


class Cameras:
    """Publishers on <stream>/image and listeners on <stream>/faces/emotions."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.client = TestNode("multistream_test_client")
        self.lock = threading.Lock()
        self.pubs: dict[str, object] = {}
        self.outputs: dict[str, list[FaceEmotionArray]] = {}
        self.diagnostics: list[DiagnosticArray] = []
        node = self.client.node
        for name in PEOPLE:
            self.pubs[name] = node.create_publisher(Image, f"/{name}/image", RELIABLE)
            self.outputs[name] = []
            node.create_subscription(FaceEmotionArray, f"/{name}/faces/emotions",
                                     lambda msg, n=name: self._on_out(n, msg), 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.set_params = node.create_client(SetParameters, "/perception/set_parameters")
        self.get_params = node.create_client(GetParameters, "/perception/get_parameters")
        self.change = node.create_client(ChangeState, "/perception/change_state")
        self.get_state = node.create_client(GetState, "/perception/get_state")
        self.enroll = node.create_client(EnrollFace, "/perception/enroll")
        self.images = {n: face_msg(p) for n, p in PEOPLE.items()}
        self.stamp = 5000

    def _on_out(self, name: str, msg: FaceEmotionArray) -> None:
        with self.lock:
            self.outputs[name].append(msg)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics.append(msg)

    def send(self, name: str, msg: Image | None = None) -> tuple[int, int]:
        """Publish one image on ``name``/image with a stamp no other image has."""
        self.stamp += 1
        msg = msg or self.images[name]
        msg.header.stamp.sec, msg.header.stamp.nanosec = self.stamp, 77
        msg.header.frame_id = f"{name}_camera"
        self.pubs[name].publish(msg)
        return (self.stamp, 77)

    def answer(self, name: str, stamp: tuple[int, int]) -> FaceEmotionArray | None:
        with self.lock:
            for out in self.outputs[name]:
                if (out.header.stamp.sec, out.header.stamp.nanosec) == stamp:
                    return out
        return None

    def wait_answer(self, name: str, stamp: tuple[int, int],
                    timeout: float = 30.0) -> FaceEmotionArray:
        assert wait_for(lambda: self.answer(name, stamp) is not None, timeout), (
            f"no answer on {name}/faces/emotions; node log:\n{self.proc.output()[-3000:]}")
        return self.answer(name, stamp)

    def set_streams(self, names: list[str]) -> tuple[bool, str]:
        value = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                               string_array_value=names)
        request = SetParameters.Request(parameters=[ParameterMsg(name="streams", value=value)])
        result = self.client.call(self.set_params, request).results[0]
        return result.successful, result.reason

    def transition(self, transition: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return self.client.call(self.change, request).success

    def streams(self) -> list[str]:
        request = GetParameters.Request(names=["streams"])
        return list(self.client.call(self.get_params, request).values[0].string_array_value)

    def state(self) -> int:
        return self.client.call(self.get_state, GetState.Request()).current_state.id

    def serve(self, names: list[str]) -> None:
        """Whatever earlier tests did: active, serving exactly ``names``, each stream's
        subscription matched and every other camera's gone."""
        active = self.state() == State.PRIMARY_STATE_ACTIVE
        if not active or self.streams() != names:
            if active:
                assert self.transition(Transition.TRANSITION_DEACTIVATE)
            ok, reason = self.set_streams(names)
            assert ok, reason
            assert self.transition(Transition.TRANSITION_ACTIVATE)
            self.connect(names)
        assert (self.state(), self.streams()) == (State.PRIMARY_STATE_ACTIVE, names)
        for name in PEOPLE:
            want = (lambda n=name: self.pubs[n].get_subscription_count() > 0) if name in names \
                else (lambda n=name: self.pubs[n].get_subscription_count() == 0)
            assert wait_for(want, 20), (name, names)

    def connect(self, names: list[str]) -> None:
        """Blank images stamped (1, n) on each stream until one is answered: only an answer
        proves the node's new subscription and publisher have matched ours
        (rosutil.handshake). Tests look only at their own stamps (from 5001 s)."""
        for name in names:
            before = len(self.outputs[name])
            blank = image_to_msg(np.zeros((240, 320, 3), np.uint8), "bgr8")
            blank.header.frame_id = f"{name}_camera"

            def probe(n: int, pub=self.pubs[name], msg=blank) -> None:
                msg.header.stamp.sec, msg.header.stamp.nanosec = 1, n
                pub.publish(msg)

            handshake(probe, lambda n=name, b=before: len(self.outputs[n]) > b)


def face_msg(person: str) -> Image:
    path = sorted(data_path("celebrity", "val", person).glob("*.jpg"))[0]
    return image_to_msg(frame_bgr(path), "bgr8")


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multistream")
    gallery = tmp / "gallery.json"
    train = data_path("celebrity", "train")
    for person in PEOPLE.values():
        enroll(gallery, person, sorted((train / person).glob("*.jpg"))[:3])
    params = tmp / "params.yaml"
    params.write_text("/**/perception:\n  ros__parameters:\n    streams: [a, b, c]\n")
    exe = str(node_executable("perception_node"))
    proc = Proc([exe, "--ros-args", "--params-file", str(params),
                 "-p", f"gallery_path:={gallery}", "-p", "qos:=reliable",
                 "-p", "device:=cpu", "-p", "diagnostics_period:=0.5"], tmp / "node.log")
    cams = Cameras(proc)
    assert wait_for(lambda: "models loaded" in proc.output(), 120), proc.output()
    cams.connect(["a", "b", "c"])
    yield cams
    cams.client.close()
    code = proc.interrupt()
    assert code == 0, proc.output()[-2000:]
    assert "Traceback" not in proc.output()


def test_each_camera_gets_only_its_own_faces(cameras: Cameras) -> None:
    cameras.serve(["a", "b", "c"])
    for _ in range(3):
        stamps = {name: cameras.send(name) for name in "abc"}
        for name, stamp in stamps.items():
            out = cameras.wait_answer(name, stamp)
            assert out.header.frame_id == f"{name}_camera"
            assert [f.name for f in out.faces] == [PEOPLE[name]], (name, out.faces)
            assert out.faces[0].emotion
            for other in "abc".replace(name, ""):  # never on another camera's topic
                assert cameras.answer(other, stamp) is None


def test_bad_and_silent_cameras_do_not_stop_the_others(cameras: Cameras) -> None:
    cameras.serve(["a", "b", "c"])
    logged = cameras.proc.output().count("dropping image on /c/image: ")
    bad = face_msg(PEOPLE["c"])
    bad.data = bytes(bad.data[:-7])  # truncated: not height * step bytes
    answered = 0
    for _ in range(10):  # b says nothing; c sends only broken images
        cameras.send("c", bad)
        answered += cameras.wait_answer("a", cameras.send("a")) is not None
    assert answered == 10
    log = cameras.proc.output()
    assert log.count("dropping image on /c/image: ") == logged + 1, log[-3000:]  # one kind

    def statuses() -> dict[str, dict[str, str]]:
        with cameras.lock:
            last = cameras.diagnostics[-1] if cameras.diagnostics else None
        return {s.name: {kv.key: kv.value for kv in s.values} for s in last.status} if last \
            else {}

    assert wait_for(lambda: int(statuses().get("perception: perception c", {})
                                .get("images rejected", 0)) >= 10, 10), statuses()
    names = set(statuses())
    assert {"perception: perception a", "perception: perception b",
            "perception: perception c"} <= names
    assert statuses()["perception: perception a"]["image topic"] == "/a/image"
    assert int(statuses()["perception: perception a"]["images rejected"]) == 0


def test_enrol_from_one_camera(cameras: Cameras) -> None:
    """The face enrolled is the requested camera's, not the last image's (camera a's)."""
    cameras.serve(["a", "b", "c"])
    stranger = face_msg(STRANGER)
    no_face = image_to_msg(frame_bgr(data_path("pyfeat", "free-mountain-vector-01.jpg")),
                           "bgr8")

    def names(name: str, msg: Image | None = None) -> list[str]:
        return [f.name for f in cameras.wait_answer(name, cameras.send(name, msg)).faces]

    assert names("b", stranger) == ["unknown"]  # nobody knows b's face yet
    assert names("a") == [PEOPLE["a"]]  # the last image processed is a's
    reply = cameras.client.call(cameras.enroll, EnrollFace.Request(
        name="newcomer", append=False, stream="b"))
    assert reply.success and reply.num_embeddings == 1, reply.message
    # Faces seen anew (a face-free image first ends every track): b's face is the one
    # enrolled as "newcomer", and a's is still who it was.
    for name in "ab":
        assert names(name, no_face) == []
    assert names("b", stranger) == ["newcomer"]
    assert names("a") == [PEOPLE["a"]]
    missing = cameras.client.call(cameras.enroll, EnrollFace.Request(
        name="x", append=True, stream="nope"))
    assert not missing.success and "no stream 'nope'" in missing.message


def test_streams_change_only_while_inactive(cameras: Cameras) -> None:
    cameras.serve(["a", "b", "c"])
    ok, reason = cameras.set_streams(["a", "d"])
    assert not ok and "inactive" in reason
    assert cameras.transition(Transition.TRANSITION_DEACTIVATE)
    ok, reason = cameras.set_streams(["a", "a"])
    assert not ok and "repeat" in reason
    ok, reason = cameras.set_streams(["a", "d"])
    assert ok, reason
    assert cameras.transition(Transition.TRANSITION_ACTIVATE)
    cameras.connect(["a", "d"])
    assert wait_for(lambda: cameras.pubs["b"].get_subscription_count() == 0, 20)
    out = cameras.wait_answer("d", cameras.send("d"))
    assert [f.name for f in out.faces] == [PEOPLE["d"]]
    assert cameras.wait_answer("a", cameras.send("a")).faces[0].name == PEOPLE["a"]
    assert cameras.proc.output().count("models loaded") == 1  # not reloaded


def test_removed_camera_is_not_answered(cameras: Cameras) -> None:
    cameras.serve(["a", "b", "c"])
    assert cameras.wait_answer("b", cameras.send("b")).faces[0].name == PEOPLE["b"]
    cameras.serve(["a", "d"])  # b is no longer served: its image waits for nothing
    stamp = cameras.send("b")
    cameras.wait_answer("a", cameras.send("a"))
    assert cameras.answer("b", stamp) is None

