"""perception_node's read-only parameters that shape the pipeline at configure time:
detection_thresholds and embedding_model (spawned nodes) and torch_threads (in this
process, with the pipeline's construction replaced, so no model is loaded)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch
from conftest import data_path, wait_for
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosutil import TestNode, frame_bgr, handshake
from sensor_msgs.msg import Image

import fer_ros.nodes.perception.node as perception_node
from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import node_executable
from fer_ros.pipeline import Gallery
from fer_ros.pipeline.recognition import facenet, gallery_file, spaces
from fer_ros.ros.image_codec import image_to_msg


def test_impossible_detection_thresholds_find_no_face(spawn) -> None:
    # O-Net keeps faces scored above its threshold: none is above 1.0. With the default
    # thresholds this image holds one face (test_perception_options, test_perception_node).
    proc = spawn([str(node_executable("perception_node")), "--ros-args",
                  "-r", "image:=/camera/image_raw", "-p", "qos:=reliable", "-p", "device:=cpu",
                  "-p", "detection_thresholds:=[1.0, 1.0, 1.0]"], "perception")
    client = TestNode("perception_thresholds_client")
    try:
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        images = client.node.create_publisher(Image, "/camera/image_raw", reliable)
        lock = threading.Lock()
        outputs: list[FaceEmotionArray] = []

        def on_faces(msg: FaceEmotionArray) -> None:
            with lock:
                outputs.append(msg)

        client.node.create_subscription(FaceEmotionArray, "/faces/emotions", on_faces, 10)
        assert wait_for(lambda: "models loaded" in proc.output(), 120), proc.output()
        # Blank images stamped 0 until one is answered: only an answer proves both sides
        # have matched (rosutil.handshake).
        blank = image_to_msg(np.zeros((480, 640, 3), np.uint8), "bgr8")
        handshake(lambda _: images.publish(blank), lambda: bool(outputs), 60)

        def ours() -> list[FaceEmotionArray]:
            with lock:
                return [o for o in outputs if o.header.stamp.sec]

        image = image_to_msg(frame_bgr(data_path("astronaut", "astronaut.png")), "bgr8")
        for second in (1, 2):  # the first image and a searched repeat
            image.header.stamp.sec = second
            images.publish(image)
            assert wait_for(lambda n=second: len(ours()) >= n, 30), proc.output()[-3000:]
        assert [(o.header.stamp.sec, list(o.faces)) for o in ours()] == [(1, []), (2, [])]
    finally:
        client.close()
    assert proc.interrupt() == 0, proc.output()[-2000:]
    assert "Traceback" not in proc.output()


def test_a_gallery_of_another_embedding_model_is_refused_in_one_line(spawn, tmp_path) -> None:
    """embedding_model:=facenet on an SFace gallery: the log names the model and threshold
    in effect, and one ERROR line says which embedding_model reads the gallery; the node
    runs on (every face unknown) and the file is left as it was."""
    gallery = Gallery(spaces.SFACE, 128)
    gallery.add("ada", np.random.default_rng(0).standard_normal((2, 128)))
    path = gallery_file.save(gallery, tmp_path / "people.json")
    before = path.read_bytes()
    proc = spawn([str(node_executable("perception_node")), "--ros-args",
                  "-p", "device:=cpu", "-p", "embedding_model:=facenet",
                  "-p", "enable_emotion:=false", "-p", f"gallery_path:={path}"], "perception")
    assert wait_for(lambda: "keeping the previous gallery" in proc.output(), 120), \
        proc.output()
    loaded = [line for line in proc.output().splitlines() if "models loaded" in line]
    assert len(loaded) == 1 and (
        f"embedder {facenet.MODEL_NAME} (names at similarity >= 0.59, margin 0.05)"
        in loaded[0]), loaded
    errors = [line for line in proc.output().splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    assert (f"gallery {path} holds embeddings of '{spaces.SFACE}'" in errors[0]
            and "set embedding_model to sface" in errors[0]), errors
    assert path.read_bytes() == before
    assert proc.interrupt() == 0, proc.output()[-2000:]
    assert "Traceback" not in proc.output()


class _Stop(Exception):
    """Raised in place of loading the models: configure stops there."""


@pytest.mark.parametrize(("torch_threads", "expected"), [(3, 3), (0, 2)])
def test_torch_threads_is_set_before_the_models_are_built(
        rclpy_context, monkeypatch, torch_threads: int, expected: int) -> None:
    """torch_threads sets PyTorch's (and so ONNX Runtime's) and OpenCV's thread counts
    before the pipeline is built; 0 leaves them as they were (2 here)."""
    seen: dict[str, int] = {}

    def build(*_args, **_kwargs):
        seen.update(torch=torch.get_num_threads(), cv2=cv2.getNumThreads())
        raise _Stop

    monkeypatch.setattr(perception_node, "FaceStreams", build)
    saved = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    node = perception_node.PerceptionNode(
        context=rclpy_context, parameter_overrides=[
            Parameter("autostart", value=False),
            Parameter("torch_threads", value=torch_threads)])
    try:
        node.trigger_configure()
        assert seen == {"torch": expected, "cv2": expected}
    finally:
        node.destroy_node()
        torch.set_num_threads(saved[0])
        cv2.setNumThreads(saved[1])
