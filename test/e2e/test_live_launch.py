"""webcam.launch.py end to end, as a user sees it: camera -> perception -> overlay,
the viewer page in a real headless Chromium, and Ctrl-C stopping everything cleanly."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import data_path, wait_for
from rosutil import TestNode, enroll, frame_bgr

from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import fer_ros_command, node_executable, share_dir

PERSON = "mindy_kaling"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1000,800"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is needed to test the viewer page: run `make setup` as root "
                    "(scripts/setup_system.sh installs it) or `apt-get install chromium`")
    return path


def browse(url: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               *args, url], capture_output=True, text=True, timeout=90,
                              check=False)


def test_webcam_launch_viewer_in_chromium_and_ctrl_c(tmp_path: Path, spawn) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(sorted(data_path("celebrity", "val", PERSON).glob("*.jpg"))[:3]):
        cv2.imwrite(str(frames / f"{i:03d}.png"), frame_bgr(image))
    gallery = tmp_path / "gallery.json"
    enroll(gallery, PERSON, sorted(data_path("celebrity", "train", PERSON).glob("*.jpg"))[:5])
    port = free_port()
    launch_file = share_dir() / "launch" / "webcam.launch.py"
    launch = spawn([*fer_ros_command(), "launch", str(launch_file), f"source:={frames}",
                   "loop:=true", "fps:=4", f"gallery:={gallery}", "device:=cpu",
                   f"viewer_port:={port}", "greeter:=true"], "launch")
    url = f"http://127.0.0.1:{port}/"

    def stats() -> str:
        try:
            with urllib.request.urlopen(url + "stats.json", timeout=2) as response:
                return response.read().decode()
        except OSError:
            return ""

    assert wait_for(lambda: PERSON in stats(), 120), launch.output()[-3000:]

    # The page, rendered by a real browser: the stream shows, the stats line fills in.
    shot = tmp_path / "viewer.png"
    result = browse(url, "--timeout=5000", f"--screenshot={shot}")
    assert shot.exists(), result.stderr[-2000:]
    screenshot = cv2.imread(str(shot))
    stream_area = screenshot[100:700, 20:980]
    assert stream_area.std() > 20, "the stream area of the page is blank"
    dom = browse(url, "--virtual-time-budget=4000", "--dump-dom").stdout
    assert 'src="/stream.mjpg"' in dom
    assert re.search(r"frames \d+ \| faces 1 \| " + PERSON, dom), dom[-1500:]
    # Beside the video: the face's emotion probabilities as bars, and the perception
    # node's rate and latency from its diagnostics.
    bars = re.findall(r'<div class="bar" data-emotion="\w+" style="width: \d+%;">', dom)
    assert len(bars) >= 7, dom[-3000:]
    assert re.search(r"perception: [\d.]+ fps, latency [\d.]+ ms", dom), dom[-3000:]

    # The overlay draws on the frames: the snapshot differs from the raw frame.
    with urllib.request.urlopen(url + "snapshot.jpg", timeout=5) as response:
        snapshot = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.shape == (480, 640, 3)

    # The example behaviour greeted the enrolled person.
    assert wait_for(lambda: f"Hello {PERSON}" in launch.output(), 20), launch.output()[-2000:]

    time.sleep(0.5)
    code = launch.interrupt(timeout=30)
    log = launch.output()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[log.find("Traceback") - 300:][:4000]
    for node in ("camera", "perception", "overlay", "greeter"):
        assert re.search(rf"\[{node}-\d+\]: process has finished cleanly", log), node


@pytest.mark.parametrize("node, args", [("overlay_node", ["-p", "port:=0"]),
                                        ("greeter_node", [])])
def test_idle_nodes_stop_on_ctrl_c(spawn, node: str, args: list[str]) -> None:
    """A node with no timers that receives nothing still notices Ctrl-C: one is enough."""
    proc = spawn([str(node_executable(node)), "--ros-args", *args], node)
    time.sleep(2.0)
    assert proc.popen.poll() is None, proc.output()
    proc.popen.send_signal(signal.SIGINT)  # once; nothing else is sent
    try:
        code = proc.popen.wait(30)  # the harness's patience, not a speed requirement
    except subprocess.TimeoutExpired:
        pytest.fail(f"{node} did not stop on Ctrl-C within 30 s:\n{proc.output()}")
    # Exited by itself, cleanly: not killed by the signal (-2), no KeyboardInterrupt
    # traceback (exit code 1).
    out = proc.output()
    assert code == 0, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out


def test_multicam_launch_two_cameras_one_perception(tmp_path: Path, spawn) -> None:
    """multicam.launch.py: a camera node per camera, one perception node serving both;
    each camera's results on its own topic, with its own person's name."""
    people = {"front": PERSON, "back": "jerry_seinfeld"}
    gallery = tmp_path / "gallery.json"
    folders = []
    for camera, person in people.items():
        enroll(gallery, person, sorted(data_path("celebrity", "train", person).glob("*.jpg"))[:4])
        folder = tmp_path / camera
        folder.mkdir()
        for i, image in enumerate(sorted(data_path("celebrity", "val", person).glob("*.jpg"))[:2]):
            cv2.imwrite(str(folder / f"{i:03d}.png"), frame_bgr(image))
        folders.append(str(folder))
    launch_file = share_dir() / "launch" / "multicam.launch.py"
    launch = spawn([*fer_ros_command(), "launch", str(launch_file), "cameras:=front,back",
                    f"sources:={','.join(folders)}", "loop:=true", f"gallery:={gallery}",
                    "device:=cpu"], "launch")
    node = TestNode("multicam_listener")
    names: dict[str, set[str]] = {camera: set() for camera in people}
    try:
        for camera in people:
            node.node.create_subscription(
                FaceEmotionArray, f"/{camera}/faces/emotions",
                lambda msg, c=camera: names[c].update(f.name for f in msg.faces), 10)
        assert wait_for(lambda: all(p in names[c] for c, p in people.items()), 120), (
            names, launch.output()[-3000:])
    finally:
        node.close()
    for camera, person in people.items():  # never the other camera's person
        assert names[camera] - {"unknown"} == {person}, names
    log = launch.output()
    assert log.count("models loaded") == 1  # one perception node, one copy of the models
    assert launch.interrupt(timeout=30) == 0, log[-3000:]
    log = launch.output()
    assert "Traceback" not in log, log[log.find("Traceback") - 300:][:4000]
    assert len(re.findall(r"\[camera(-\d+)+\]: process has finished cleanly", log)) == 2, log
    assert re.search(r"\[perception-\d+\]: process has finished cleanly", log), log
