"""``fer-ros identify --gallery G IMAGE...``: one JSON object per face per line."""

from __future__ import annotations

import argparse
import json
import sys

from fer_ros.assets import AssetError
from fer_ros.cli.common import add_pipeline_arguments, pipeline_from_args
from fer_ros.pipeline.head_pose import Intrinsics, estimate_head_pose
from fer_ros.pipeline.images import expand_images, read_image_rgb
from fer_ros.pipeline.recognition.gallery import GalleryError
from fer_ros.pipeline.recognition.storage import open_storage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--gallery", default="",
                        help="gallery (.json, .db or postgresql:// URL); none = all unknown")
    parser.add_argument("--no-emotion", action="store_true", help="skip emotion classification")
    parser.add_argument("--fov-deg", type=float, default=60.0,
                        help="the camera's horizontal field of view, for each face's position "
                             "and head pose (default 60)")
    add_pipeline_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        pipeline = pipeline_from_args(args, emotion=not args.no_emotion)
        if args.gallery:
            pipeline.set_gallery(open_storage(args.gallery).load())
    except (AssetError, GalleryError, ValueError) as exc:
        print(f"fer-ros identify: {exc}", file=sys.stderr)
        return 1
    failures = 0
    for path in expand_images(args.images):
        try:
            image = read_image_rgb(path)
            results = pipeline.process(image, color="rgb")
        except ValueError as exc:
            print(f"fer-ros identify: {exc}", file=sys.stderr)
            failures += 1
            continue
        height, width = image.shape[:2]
        camera = Intrinsics.from_fov(width, height, args.fov_deg)
        for face in results:
            print(json.dumps({"image": str(path), **face.to_json(), **_pose(face, camera)}),
                  flush=True)
    return 1 if failures else 0


def _pose(face, camera: Intrinsics) -> dict:
    """The face's position (metres, camera optical frame) and head angles, if known."""
    landmarks = face.detection.landmarks
    pose = estimate_head_pose(landmarks, camera) if landmarks is not None else None
    if pose is None:
        return {}
    return {"position_m": [round(float(v), 3) for v in pose.position],
            "yaw_pitch_roll_deg": [round(v, 1) for v in pose.yaw_pitch_roll()]}
