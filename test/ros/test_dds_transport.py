"""Two processes over DDS (shared memory, as the tests run it) with reliable QoS:
100 640x480 bgr8 images at 30 Hz and their FaceEmotionArray all arrive, intact, in order."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from fer_ros.msg import FaceEmotionArray
from fer_ros.ros.image_codec import msg_to_image
from fer_ros.ros.qos import qos_profile

COUNT = 100
RATE_HZ = 30.0

# The other process: publishes COUNT images whose pixels are a function of the frame
# number, each followed by a FaceEmotionArray with the same header.
TALKER = '''
import sys
import time

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fer_ros.msg import FaceEmotion, FaceEmotionArray
from fer_ros.ros.image_codec import image_to_msg
from fer_ros.ros.qos import qos_profile

count, rate = int(sys.argv[1]), float(sys.argv[2])
rclpy.init()
node = Node("transport_talker")
images = node.create_publisher(Image, "transport_images", qos_profile("reliable"))
faces = node.create_publisher(FaceEmotionArray, "transport_faces", qos_profile("reliable"))
deadline = time.monotonic() + 30
while images.get_subscription_count() < 1 or faces.get_subscription_count() < 1:
    if time.monotonic() > deadline:
        sys.exit("no subscriber matched")
    time.sleep(0.05)
base = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
start = time.monotonic()
for i in range(count):
    header = Header(stamp=node.get_clock().now().to_msg(), frame_id=f"frame{i}")
    images.publish(image_to_msg(base + np.uint8(i % 256), "bgr8", header))
    array = FaceEmotionArray(header=header, image_width=640, image_height=480)
    array.faces = [FaceEmotion(track_id=i, name=f"person{i}", emotion="happy",
                               emotion_labels=["happy", "sad"], emotion_scores=[0.75, 0.25])]
    faces.publish(array)
    time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
for pub in (images, faces):
    pub.wait_for_all_acked(Duration(seconds=10))
print(f"sent {count}", flush=True)
node.destroy_node()
rclpy.shutdown()
'''


def test_reliable_images_and_faces_arrive_complete(spawn, tmp_path: Path, rclpy_context) -> None:
    node = Node("transport_listener", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    images: list[tuple[Image, float]] = []
    faces: list[FaceEmotionArray] = []
    node.create_subscription(Image, "transport_images",
                             lambda m: images.append((m, time.time())), qos_profile("reliable"))
    node.create_subscription(FaceEmotionArray, "transport_faces", faces.append,
                             qos_profile("reliable"))
    script = tmp_path / "talker.py"
    script.write_text(TALKER)
    proc = spawn([sys.executable, str(script), str(COUNT), str(RATE_HZ)], "talker")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                len(images) < COUNT or len(faces) < COUNT or proc.popen.poll() is None):
            executor.spin_once(timeout_sec=0.05)
        assert proc.popen.wait(10) == 0, proc.output()
        assert f"sent {COUNT}" in proc.output()
        executor.spin_once(timeout_sec=0.3)  # nothing more may come

        assert len(images) == COUNT and len(faces) == COUNT
        base = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        for i, (msg, _) in enumerate(images):
            assert msg.header.frame_id == f"frame{i}"
            assert (msg.width, msg.height, msg.encoding, msg.step) == (640, 480, "bgr8", 1920)
            assert np.array_equal(msg_to_image(msg, "bgr8"), base + np.uint8(i % 256)), i
        for i, array in enumerate(faces):
            assert array.header == images[i][0].header
            assert (array.image_width, array.image_height) == (640, 480)
            face = array.faces[0]
            assert (face.track_id, face.name, face.emotion) == (i, f"person{i}", "happy")
            assert list(face.emotion_scores) == [0.75, 0.25]
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m, _ in images]
        assert (np.diff(stamps) > 0).all()
        # Delivered as they are sent, not held back and handed over late in bulk (a stalled
        # transport): counted in frames, not seconds, so a busy machine that slows both
        # ends alike cannot break it. Both ends read the same clock: the frames the talker
        # had published by the time image i arrived, beyond image i itself.
        behind = [int(np.searchsorted(stamps, received, side="right")) - 1 - i
                  for i, (_, received) in enumerate(images)]
        assert min(behind) >= 0, behind  # none arrived before it was sent
        assert float(np.median(behind)) < COUNT / 5, behind
    finally:
        executor.shutdown()
        node.destroy_node()
