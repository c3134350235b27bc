"""perception_node end to end over DDS: outputs, names, bad input, services, parameters.

One node process serves the whole module (loading models takes seconds); each test
talks to it the way another ROS node would.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import Proc, data_path, wait_for
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, enroll, frame_bgr, handshake
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.ros.image_codec import image_to_msg
from fer_ros.srv import EnrollFace, ForgetPerson

PERSON = "madonna"
OTHER = "elton_john"


class Session:
    def __init__(self, proc: Proc, gallery: Path) -> None:
        self.proc = proc
        self.gallery = gallery
        self.client = TestNode("perception_test_client")
        node = self.client.node
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(Image, "/camera/image_raw", reliable)
        self.outputs: list[FaceEmotionArray] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.lock = threading.Lock()
        node.create_subscription(FaceEmotionArray, "/faces/emotions", self._on_out, 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.enroll = node.create_client(EnrollFace, "/perception/enroll")
        self.forget = node.create_client(ForgetPerson, "/perception/forget")
        self.reload = node.create_client(Trigger, "/perception/reload_gallery")
        self.set_params = node.create_client(SetParameters, "/perception/set_parameters")
        self.sent = 0

    def _on_out(self, msg: FaceEmotionArray) -> None:
        with self.lock:
            self.outputs.append(msg)

    def send(self, msg: Image, expect_reply: bool = True, timeout: float = 30.0):
        """Publish one image; wait for its FaceEmotionArray (matched by stamp)."""
        self.sent += 1
        msg.header.stamp.sec = 1000 + self.sent
        msg.header.stamp.nanosec = 1234
        msg.header.frame_id = msg.header.frame_id or "test_camera"
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.image_pub.publish(msg)
        if not expect_reply:
            return None

        def answered():
            with self.lock:
                return [o for o in self.outputs
                        if (o.header.stamp.sec, o.header.stamp.nanosec) == stamp]

        assert wait_for(lambda: bool(answered()), timeout), (
            f"no /faces/emotions for image {self.sent}; node log:\n{self.proc.output()[-3000:]}")
        return answered()[0]

    def set_param(self, name: str, value) -> tuple[bool, str]:
        pv = ParameterValue()
        if isinstance(value, float):
            pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
        elif isinstance(value, str):
            pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
        else:
            pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)])
        result = self.client.call(self.set_params, request).results[0]
        return result.successful, result.reason


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("perception")
    gallery = tmp / "gallery.json"
    train = data_path("celebrity", "train")
    enroll(gallery, PERSON, sorted((train / PERSON).glob("*.jpg"))[:4])
    log = tmp / "perception.log"
    exe = str(node_executable("perception_node"))
    proc = Proc([exe, "--ros-args", "-r", "image:=/camera/image_raw",
                 "-p", f"gallery_path:={gallery}", "-p", "qos:=reliable",
                 "-p", "device:=cpu", "-p", "gallery_watch_period:=0.2",
                 "-p", "diagnostics_period:=0.5"], log)
    sess = Session(proc, gallery)
    assert wait_for(lambda: "models loaded" in proc.output(), 120), proc.output()
    # Blank images stamped (0, n) until one is answered: only an answer proves both sides
    # have matched (rosutil.handshake). The tests' own images are stamped from 1001 s on.
    blank = image_to_msg(np.zeros((480, 640, 3), np.uint8), "bgr8")

    def probe(n: int) -> None:
        blank.header.stamp.nanosec = n
        sess.image_pub.publish(blank)

    handshake(probe, lambda: bool(sess.outputs))
    yield sess
    sess.client.close()
    code = proc.interrupt()
    sess.exit_code = code
    assert code == 0, proc.output()[-2000:]
    assert "Traceback" not in proc.output()


def face_msg(path: Path) -> Image:
    return image_to_msg(frame_bgr(path), "bgr8")


def test_header_copied_and_faces_named(session: Session) -> None:
    val = data_path("celebrity", "val", PERSON)
    image = sorted(val.glob("*.jpg"))[0]
    msg = face_msg(image)
    msg.header.frame_id = "front_camera"
    out = session.send(msg)
    assert out.header.frame_id == "front_camera"
    assert (out.image_width, out.image_height) == (640, 480)
    assert len(out.faces) == 1
    face = out.faces[0]
    assert face.name == PERSON, (face.name, face.name_similarity)
    assert face.track_id > 0 and len(face.landmarks) == 5
    assert face.box.width > 20 and face.box.height > 20
    assert list(face.emotion_labels) == ["angry", "disgust", "fear", "happy", "sad",
                                         "surprise", "neutral"]
    assert face.emotion in face.emotion_labels
    assert abs(sum(face.emotion_scores) - 1.0) < 1e-3
    assert abs(sum(face.emotion_scores_raw) - 1.0) < 1e-3
    # No camera_info was published: the pose uses the assumed 60-degree field of view.
    assert face.head_pose_valid and 0.1 < face.head_pose.position.z < 5.0
    centre_x = face.box.x_offset + face.box.width / 2
    assert (face.head_pose.position.x > 0) == (centre_x > 320)


def test_camera_info_of_the_image_s_size_sets_the_pose(session: Session) -> None:
    """A calibrated camera (camera_info) replaces the assumed 60-degree field of view.

    Images of a size no other test sends, so the camera_info left behind in the shared
    node describes no other test's images."""
    size = (800, 600)
    image = sorted(data_path("celebrity", "val", PERSON).glob("*.jpg"))[0]

    def pose():
        faces = session.send(image_to_msg(frame_bgr(image, size), "bgr8")).faces
        assert len(faces) == 1 and faces[0].head_pose_valid
        return faces[0].head_pose.position

    assumed = pose()
    assumed_f = (size[0] / 2) / np.tan(np.radians(30.0))  # written here, not imported
    fx, cx = 1.5 * assumed_f, size[0] / 2 - 100.0
    info = CameraInfo(width=size[0], height=size[1],
                      k=[fx, 0.0, cx, 0.0, fx, size[1] / 2, 0.0, 0.0, 1.0])
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    info_pub = session.client.node.create_publisher(CameraInfo, "/camera_info", reliable)
    assert wait_for(lambda: info_pub.get_subscription_count() > 0, 20)
    info_pub.publish(info)
    # camera_info and the images travel on different topics: send images until one is
    # answered with the new camera (the first normally is).
    for _ in range(10):
        calibrated = pose()
        if abs(calibrated.z - assumed.z) > 0.05 * assumed.z:
            break
    assert calibrated.z / assumed.z == pytest.approx(1.5, rel=0.05), (assumed, calibrated)
    # x = (u - cx) / fx * z: the same eyes (u) seen from a principal point 99.5 px
    # further left are 99.5 px further right, at the calibrated scale.
    assert calibrated.x - assumed.x == pytest.approx(99.5 / fx * calibrated.z, rel=0.1)


def test_stranger_is_unknown_and_empty_image_gives_empty_array(session: Session) -> None:
    stranger = session.send(face_msg(data_path("astronaut", "astronaut.png")))
    assert [f.name for f in stranger.faces] == ["unknown"]
    empty = session.send(face_msg(data_path("pyfeat", "free-mountain-vector-01.jpg")))
    assert empty.faces == []


def test_bad_images_are_rejected_and_the_node_keeps_going(session: Session) -> None:
    good = face_msg(data_path("celebrity", "val", PERSON,
                              sorted(os.listdir(data_path("celebrity", "val", PERSON)))[0]))
    bad: list[Image] = []
    m = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    m.encoding = "yuv422"
    bad.append(m)
    m = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    m.encoding = "BGR8"  # misspelt
    bad.append(m)
    m = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    m.data = m.data[:-5]  # truncated
    bad.append(m)
    m = image_to_msg(np.zeros((8, 8, 3), np.uint8))
    m.step = 8  # shorter than a row
    bad.append(m)
    m = Image(encoding="bgr8", width=0, height=0, step=0)
    bad.append(m)
    m = Image(encoding="bgr8", width=100000, height=100000, step=300000)
    bad.append(m)
    for _ in range(3):  # the same problem again must not log again
        for msg in bad:
            session.send(msg, expect_reply=False)
            time.sleep(0.05)
    out = session.send(good)
    assert len(out.faces) == 1
    log = session.proc.output()
    assert log.count("yuv422") == 1, log[-3000:]
    assert "dropping image" in log


def test_enroll_service(session: Session) -> None:
    def ask(name: str, append: bool = True):
        return session.client.call(session.enroll, EnrollFace.Request(name=name, append=append))

    for bad_name in ["", "   ", "unknown", "x" * 200]:
        response = ask(bad_name)
        assert not response.success and "refused" in response.message
    session.send(face_msg(data_path("pyfeat", "free-mountain-vector-01.jpg")))
    response = ask(OTHER)
    assert not response.success and "no face" in response.message
    before = session.gallery.read_bytes()
    # Enrol the other person from three of their images (one service call per image).
    other_val = sorted(data_path("celebrity", "val", OTHER).glob("*.jpg"))
    for count, image in enumerate(sorted(data_path("celebrity", "train", OTHER).glob("*.jpg"))[:3],
                                  start=1):
        assert len(session.send(face_msg(image)).faces) == 1
        response = ask(OTHER)
        assert response.success, response.message
        assert response.num_embeddings == count
    assert session.gallery.read_bytes() != before
    assert stat.S_IMODE(session.gallery.stat().st_mode) == 0o600
    assert len(json.loads(session.gallery.read_text())["people"][OTHER]["embeddings"]) == 3
    refused = ask(OTHER, append=False)
    assert not refused.success and "already enrolled" in refused.message
    names = [session.send(face_msg(p)).faces[0].name for p in other_val[:3]]
    assert names.count(OTHER) >= 2, names


def test_forget_service(session: Session) -> None:
    person = "ben_afflek"  # enrolled here, by no other test
    enrolled = 0
    for image in sorted(data_path("celebrity", "train", person).glob("*.jpg"))[:4]:
        if len(session.send(face_msg(image)).faces) == 1:
            response = session.client.call(session.enroll, EnrollFace.Request(name=person))
            assert response.success, response.message
            enrolled += 1
    assert enrolled >= 2
    val = sorted(data_path("celebrity", "val", person).glob("*.jpg"))[:3]

    def names() -> list[str]:
        return [face.name for path in val for face in session.send(face_msg(path)).faces]

    assert person in names()
    response = session.client.call(session.forget, ForgetPerson.Request(name=f" {person} "))
    assert response.success, response.message
    assert (response.embeddings_removed, response.storage) == (enrolled, str(session.gallery))
    assert response.message == (f"forgot {person!r}: {enrolled} embedding(s) erased from "
                                f"{session.gallery}; tombstone kept")
    assert person not in names()  # at once: the node's own gallery dropped them
    stored = json.loads(session.gallery.read_text())
    assert person not in stored["people"] and person in stored["forgotten"]
    assert PERSON in stored["people"]  # nobody else
    refused = session.client.call(session.forget, ForgetPerson.Request(name="  "))
    assert not refused.success and refused.message == "refused: name is empty"


def test_corrupt_gallery_keeps_the_previous_one(session: Session) -> None:
    good = session.gallery.read_text()
    errors = session.proc.output().count("not valid JSON")
    session.gallery.write_text(good[: len(good) // 2])  # truncated on disk
    try:
        assert wait_for(lambda: session.proc.output().count("not valid JSON") > errors, 10)
        response = session.client.call(session.reload, Trigger.Request())
        assert not response.success and "keeping the previous gallery" in response.message
        # A photo a 4-photo enrolment names (val[1] scores 0.33, under SFace's 0.42).
        image = sorted(data_path("celebrity", "val", PERSON).glob("*.jpg"))[0]
        assert session.send(face_msg(image)).faces[0].name == PERSON
    finally:  # whatever happens, the next test finds the good gallery
        session.gallery.write_text(good)
    response = session.client.call(session.reload, Trigger.Request())
    assert response.success


def test_parameters_are_validated_at_run_time(session: Session) -> None:
    ok, reason = session.set_param("recognition_threshold", 1.5)
    assert not ok and "recognition_threshold" in reason
    ok, reason = session.set_param("recognition_threshold", "high")
    assert not ok
    ok, reason = session.set_param("device", "cuda")
    assert not ok  # read-only: needs a restart
    try:
        ok, _ = session.set_param("recognition_threshold", 0.6)
        assert ok
    finally:  # back to config/perception.yaml's, so no later test matches at 0.6
        assert session.set_param("recognition_threshold", -1.0)[0]


def test_diagnostics(session: Session) -> None:
    assert wait_for(lambda: len(session.diagnostics) > 0, 5)
    status = session.diagnostics[-1].status[0]
    keys = {kv.key for kv in status.values}
    for key in ("images received", "images dropped", "output rate (Hz)", "latency p95 (ms)",
                "detect time (ms)", "embed time (ms)", "emotion time (ms)", "device",
                "embedding model", "model load time (s)"):
        assert key in keys
    # Where head poses come from (test_camera_info_of_the_image_s_size_sets_the_pose may
    # have sent a camera_info of these images' size).
    values = {kv.key: kv.value for kv in status.values}
    assert values["intrinsics"] in ("assumed fov 60", "camera_info"), values
    assert status.hardware_id == "cpu"


def test_deleting_the_gallery_unloads_it(session: Session) -> None:
    saved = session.gallery.read_bytes()
    image = sorted(data_path("celebrity", "val", PERSON).glob("*.jpg"))[0]
    session.gallery.unlink()
    try:
        assert wait_for(lambda: "does not exist" in session.proc.output(), 10)
        assert session.send(face_msg(image)).faces[0].name == "unknown"
    finally:
        session.gallery.write_bytes(saved)
    response = session.client.call(session.reload, Trigger.Request())
    assert response.success
    assert session.send(face_msg(image)).faces[0].name == PERSON


def _diagnostics(session: Session, published: int = 0) -> dict[str, str]:
    """The newest diagnostics values, once they count ``published`` messages; with 0, the
    newest generated after this call (the counters are exact when no image is in flight)."""
    seen = len(session.diagnostics)

    def newest() -> dict[str, str] | None:
        messages = list(session.diagnostics)
        if not published and len(messages) < seen + 2:
            return None
        values = {kv.key: kv.value for kv in messages[-1].status[0].values} if messages else {}
        return values if int(values.get("messages published", -1)) >= published else None

    assert wait_for(lambda: newest() is not None, 10), "no fresh diagnostics"
    return newest()


def test_idle_empty_stream_is_answered_and_a_face_is_found(session: Session) -> None:
    empty = frame_bgr(data_path("pyfeat", "free-mountain-vector-01.jpg"))
    rng = np.random.default_rng(7)

    def noisy_empty() -> Image:  # camera-like noise: no two images are equal
        noise = rng.normal(0.0, 6.0, empty.shape)
        return image_to_msg(np.clip(empty + noise, 0, 255).astype(np.uint8), "bgr8")

    ok, reason = session.set_param("idle_detection_rate", -1.0)
    assert not ok and "idle_detection_rate" in reason
    # This session's images are stamped 1 s apart: no periodic refresh in between.
    assert session.set_param("idle_refresh_period", 0.0)[0]
    person = sorted(data_path("celebrity", "val", PERSON).glob("*.jpg"))[0]
    try:
        # A tracked face first, whichever test ran before: the count below starts from it.
        assert len(session.send(face_msg(person)).faces) == 1
        start = _diagnostics(session)
        published, skipped = int(start["messages published"]), int(
            start["searches skipped (idle)"])
        outs = [session.send(noisy_empty()) for _ in range(12)]
        assert all(out.faces == [] for out in outs)
        with session.lock:  # one message per image, never more
            stamps = [(o.header.stamp.sec, o.header.stamp.nanosec) for o in session.outputs]
        assert all(stamps.count((o.header.stamp.sec, o.header.stamp.nanosec)) == 1
                   for o in outs)
        idle = _diagnostics(session, published + 12)
        # The last face's track ends after 1 s (two images), one image starts the idle
        # reference, and the other nine are not searched.
        assert int(idle["searches skipped (idle)"]) == skipped + 9, idle
        assert "images searched (%)" in idle
        faces = session.send(face_msg(person)).faces
        assert len(faces) == 1 and faces[0].box.width > 20 and faces[0].name == PERSON
        # A run-time change applies to the next image: 0 = every image searched.
        assert session.set_param("idle_detection_rate", 0.0)[0]
        assert all(session.send(noisy_empty()).faces == [] for _ in range(6))
        off = _diagnostics(session, published + 12 + 1 + 6)
        assert off["searches skipped (idle)"] == idle["searches skipped (idle)"]
    finally:
        session.set_param("idle_detection_rate", 2.0)
        session.set_param("idle_refresh_period", 5.0)


@pytest.mark.parametrize("args, message", [
    (["-p", "device:=cuda"], "device 'cuda' requested but CUDA is not available"),
    (["-p", "device:=cpu", "-p", "half_precision:=true"], "half precision needs a CUDA device"),
])
def test_cuda_asked_for_without_a_gpu_stops_at_start_up(spawn, args, message) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = spawn([str(node_executable("perception_node")), "--ros-args", *args], "perception")
    assert proc.popen.wait(120) == 2, proc.output()[-2000:]
    assert message in proc.output() and "Traceback" not in proc.output()
