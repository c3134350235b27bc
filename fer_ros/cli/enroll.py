"""``fer-ros enroll --gallery G --name NAME PATH...``: add a person's face images.

Each image must hold exactly one face; images with none or several are refused by
name and nothing is written unless every image is good (or --skip-bad is given).
The gallery is a .json file (rewritten atomically, mode 0600), an SQLite file
(.db/.sqlite: one transaction) or a postgresql:// URL.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from fer_ros.assets import AssetError
from fer_ros.cli.common import add_pipeline_arguments, pipeline_from_args
from fer_ros.pipeline.images import expand_images, read_image_rgb
from fer_ros.pipeline.recognition.gallery import GalleryError, validate_name
from fer_ros.pipeline.recognition.storage import open_storage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images or folders of one person")
    parser.add_argument("--gallery", required=True,
                        help="gallery to create or update (.json, .db or postgresql:// URL)")
    parser.add_argument("--name", required=True, help="the person's label")
    parser.add_argument("--on-existing", choices=("append", "replace", "refuse"),
                        default="append", help="what to do if NAME is enrolled (default append)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="enrol the good images even if some are refused")
    add_pipeline_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"fer-ros enroll: {message}", file=sys.stderr)
        return 1

    try:
        name = validate_name(args.name)
        pipeline = pipeline_from_args(args, emotion=False)
        storage = open_storage(args.gallery, pipeline.model_name, pipeline.embedder.dim)
        if storage.exists():
            gallery = storage.load()
            gallery.check_model(pipeline.model_name)
            if args.on_existing == "refuse" and name in gallery.people:
                return fail(f"{name!r} is already enrolled in {storage.location}")
    except (AssetError, GalleryError, ValueError) as exc:
        return fail(str(exc))

    images = list(expand_images(args.paths))
    if not images:
        return fail("no images found in " + ", ".join(args.paths))
    embeddings, sources, refused = [], [], []
    for path in images:
        try:
            _, embedding = pipeline.embed_largest_face(read_image_rgb(path), require_single=True)
        except ValueError as exc:
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            refused.append(message)
            print(f"refused: {message}", file=sys.stderr)
            continue
        embeddings.append(embedding)
        sources.append(str(path))
    if refused and not args.skip_bad:
        return fail(f"{len(refused)} of {len(images)} image(s) refused; gallery left unchanged "
                    f"(fix them or pass --skip-bad)")
    if not embeddings:
        return fail("no usable face; gallery left unchanged")
    try:
        person = storage.add(name, np.stack(embeddings), sources, on_existing=args.on_existing)
        people = len(storage.load())
    except (GalleryError, OSError) as exc:
        return fail(str(exc))
    print(f"enrolled {name!r}: {len(embeddings)} image(s) added, {len(person.embeddings)} "
          f"embedding(s) in total; {people} people in {storage.location}")
    return 0
