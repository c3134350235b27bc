"""``fer-ros demo``: the whole pipeline on a webcam, or on a sample clip of real faces.

Without a webcam (or with --clip): builds a 640x480 clip from packaged images (the
5-celebrity validation faces, then a packaged video of a stranger), enrols the five
people from their *separate* training images, runs launch/webcam.launch.py on the
clip through the same launcher, prints the viewer URL, and at the end a summary
(frames, faces, names, emotions, fps); the annotated video is written to out/demo/.
With a webcam (/dev/video0), runs on it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from fer_ros.pipeline.images import FRAME_SIZE, letterbox


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    parser.add_argument("--clip", action="store_true", help="use the sample clip even if a "
                        "webcam is present")
    parser.add_argument("--source", default="", help="camera source to use instead "
                        "(device, video file, image folder)")
    parser.add_argument("--port", type=int, default=8080, help="viewer port (default 8080)")
    parser.add_argument("--fps", type=float, default=10.0,
                        help="clip frame rate (default 10, what a 2-core CPU keeps up with)")
    parser.add_argument("--per-person", type=int, default=5,
                        help="training images enrolled per person (default 5)")
    parser.add_argument("--device", default="auto")


def build_clip(path: Path, fps: float, hold_seconds: float = 1.5,
               stranger_seconds: float = 6.0, lead_in_seconds: float = 4.0) -> int:
    """Write the sample clip; returns its frame count.

    It opens with a few seconds of title card: the camera starts publishing while the
    perception node is still loading its models, and those frames go unprocessed.
    """
    from fer_ros.assets.datasets import dataset_dir

    val = dataset_dir("celebrity") / "val"
    stranger = dataset_dir("pyfeat") / "WolfgangLanger_Pexels.mp4"
    people = sorted(p for p in val.iterdir() if p.is_dir()) if val.is_dir() else []
    if not people or not stranger.exists():
        raise FileNotFoundError("sample faces are missing: run `fer-ros data fetch`")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, FRAME_SIZE)
    title = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), 30, np.uint8)
    cv2.putText(title, "fer_ros demo", (170, 230), cv2.FONT_HERSHEY_SIMPLEX, 1.4,
                (220, 220, 220), 2, cv2.LINE_AA)
    cv2.putText(title, "5 enrolled people, then a stranger", (130, 280),
                cv2.FONT_HERSHEY_SIMPLEX, 0.8, (180, 180, 180), 1, cv2.LINE_AA)
    frames = 0
    for _ in range(int(lead_in_seconds * fps)):
        writer.write(title)
        frames += 1
    for person in people:
        for image_path in sorted(person.glob("*.jpg"))[:2]:
            image = cv2.imread(str(image_path))
            if image is None:
                continue
            frame = letterbox(image)
            for _ in range(int(hold_seconds * fps)):
                writer.write(frame)
                frames += 1
    capture = cv2.VideoCapture(str(stranger))
    src_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(src_fps / fps))
    index = 0
    while frames < 10_000:
        ok, image = capture.read()
        if not ok or index / src_fps > stranger_seconds:
            break
        if index % step == 0:
            writer.write(letterbox(image))
            frames += 1
        index += 1
    capture.release()
    writer.release()
    return frames


def enrol_people(gallery: Path, per_person: int, device: str) -> list[str]:
    from fer_ros.assets.datasets import dataset_dir
    from fer_ros.paths import fer_ros_command

    train = dataset_dir("celebrity") / "train"
    names = []
    for person in sorted(p for p in train.iterdir() if p.is_dir()):
        images = [str(p) for p in sorted(person.glob("*.jpg"))[:per_person]]
        cmd = [*fer_ros_command(), "enroll", "--gallery", str(gallery),
               "--name", person.name, "--on-existing", "replace", "--skip-bad",
               "--device", device, *images]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        print("  " + (result.stdout.strip() or result.stderr.strip().splitlines()[-1]))
        if result.returncode == 0:
            names.append(person.name)
    return names


def set_aside_other_model(gallery: Path) -> None:
    """A demo gallery of another embedding model (an earlier demo, before the default model
    changed) is renamed, not overwritten or refused: the demo then enrols anew."""
    from fer_ros.pipeline import GalleryError, PipelineConfig
    from fer_ros.pipeline.recognition import gallery_file
    from fer_ros.pipeline.recognition.spaces import BY_CHOICE

    if not gallery.is_file():
        return
    try:
        model = gallery_file.load(gallery).model
    except GalleryError:
        model = ""
    wanted = BY_CHOICE[PipelineConfig().embedding_model]
    if model != wanted:
        aside = gallery.with_name(f"{gallery.stem}.{model or 'unreadable'}{gallery.suffix}")
        gallery.rename(aside)
        print(f"demo: {gallery} holds embeddings of {model or 'an unreadable file'!r}, not "
              f"of {wanted!r}; kept as {aside}, enrolling anew")


class Summary:
    """Counts what arrives on /faces/emotions while the launch runs."""

    def __init__(self) -> None:
        from fer_ros.msg import FaceEmotionArray
        from fer_ros.ros.background import BackgroundNode

        self.ros = BackgroundNode("demo_summary")
        self.messages = 0
        self.faces = 0
        self.names: Counter = Counter()
        self.emotions: Counter = Counter()
        self.first = self.last = None
        self.ros.node.create_subscription(FaceEmotionArray, "/faces/emotions", self._on_msg, 50)

    def _on_msg(self, msg) -> None:
        now = time.monotonic()
        self.first = self.first or now
        self.last = now
        self.messages += 1
        self.faces += len(msg.faces)
        for face in msg.faces:
            self.names[face.name] += 1
            self.emotions[face.emotion] += 1

    def report(self) -> dict:
        span = (self.last - self.first) if self.first and self.last else 0.0
        return {"frames": self.messages, "faces": self.faces,
                "fps": round((self.messages - 1) / span, 2) if span > 0 else 0.0,
                "names": dict(self.names.most_common()),
                "emotions": dict(self.emotions.most_common())}

    def close(self) -> None:
        self.ros.close()


def run(args: argparse.Namespace) -> int:
    from fer_ros.paths import fer_ros_command, share_dir

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    gallery = out / "gallery.json"
    webcam = not args.clip and not args.source and Path("/dev/video0").exists()
    if args.source:
        source = args.source
    elif webcam:
        source = "/dev/video0"
    else:
        source = str(out / "clip.mp4")
        print(f"demo: building the sample clip {source}")
        frames = build_clip(Path(source), args.fps)
        print(f"demo: {frames} frames at {args.fps:g} fps")
    set_aside_other_model(gallery)
    if not gallery.exists() or not webcam:
        print("demo: enrolling the five sample people from their training images")
        names = enrol_people(gallery, args.per_person, args.device)
        if not names:
            print("demo: enrolment failed (the lines above say why)")
            return 1
    launch_file = share_dir() / "launch" / "webcam.launch.py"
    video = out / "annotated.mp4"
    cmd = [*fer_ros_command(), "launch", str(launch_file),
           f"source:={source}", f"gallery:={gallery}", f"device:={args.device}",
           f"viewer_port:={args.port}", f"loop:={'false'}", f"fps:={args.fps:g}",
           f"video_path:={video}"]
    print(f"demo: starting the nodes; watch at http://127.0.0.1:{args.port}/ "
          f"{'(Ctrl-C to stop)' if webcam else '(until the clip ends)'}")
    summary = Summary()
    proc = subprocess.Popen(cmd, env={**os.environ})
    try:
        proc.wait()
    except KeyboardInterrupt:  # the launcher got the Ctrl-C too and stops the nodes
        proc.wait(30)
    finally:
        report = summary.report()
        summary.close()
    report["annotated_video"] = str(video)
    (out / "summary.json").write_text(json.dumps(report, indent=1))
    print("demo: summary")
    print(f"  frames processed: {report['frames']} at {report['fps']} fps, "
          f"faces: {report['faces']}")
    print(f"  names:    {report['names']}")
    print(f"  emotions: {report['emotions']}")
    print(f"  annotated video: {video}")
    return 0 if proc.returncode in (0, None) and report["frames"] > 0 else 1
