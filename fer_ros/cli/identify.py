"""``fer-ros identify --gallery G IMAGE...``: one JSON object per face per line."""

from __future__ import annotations

import argparse
import json
import sys

from fer_ros.cli.common import add_pipeline_arguments, pipeline_from_args
from fer_ros.pipeline.images import expand_images, read_image_rgb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument("--gallery", default="", help="gallery file (JSON); none = all unknown")
    parser.add_argument("--no-emotion", action="store_true", help="skip emotion classification")
    add_pipeline_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from fer_ros.assets import AssetError
    from fer_ros.pipeline import Gallery, GalleryError

    try:
        pipeline = pipeline_from_args(args, emotion=not args.no_emotion)
        if args.gallery:
            pipeline.set_gallery(Gallery.load(args.gallery))
    except (AssetError, GalleryError, ValueError) as exc:
        print(f"fer-ros identify: {exc}", file=sys.stderr)
        return 1
    failures = 0
    for path in expand_images(args.images):
        try:
            results = pipeline.process(read_image_rgb(path), color="rgb")
        except ValueError as exc:
            print(f"fer-ros identify: {exc}", file=sys.stderr)
            failures += 1
            continue
        for face in results:
            print(json.dumps({"image": str(path), **face.to_json()}), flush=True)
    return 1 if failures else 0
