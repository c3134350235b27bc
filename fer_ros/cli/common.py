"""Options shared by the face commands (identify, enroll): the models to run."""

from __future__ import annotations

import argparse
import sys

from fer_ros.pipeline import FacePipeline, PipelineConfig

STILLS = PipelineConfig.stills()


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    group.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"),
                       help="runtime of FaceNet and the emotion model (default auto: ONNX "
                            "Runtime on a CPU when `fer-ros models fetch` made its files; "
                            "SFace always runs on ONNX Runtime)")
    group.add_argument("--min-face-size", type=int, default=STILLS.min_face_size,
                       help=f"smallest face searched for, in pixels "
                            f"(default {STILLS.min_face_size})")
    group.add_argument("--downscale", type=float, default=STILLS.downscale,
                       help=f"run detection on the image scaled by this factor "
                            f"(default {STILLS.downscale})")
    group.add_argument("--embedding-model", default=STILLS.embedding_model,
                       choices=("sface", "facenet"),
                       help=f"face embedding model; a gallery holds one model's embeddings "
                            f"(default {STILLS.embedding_model})")
    group.add_argument("--threshold", type=float, default=None,
                       help="cosine similarity below which a face is 'unknown' (default: "
                            "the embedding model's calibrated value, sface 0.42, facenet 0.59)")
    group.add_argument("--facenet-weights", default="",
                       help="FaceNet weights (.pt) for --embedding-model facenet; default: the "
                            "converted CASIA-WebFace model")
    group.add_argument("--emotion-weights", default="",
                       help="emotion model (.pt from train-emotion); default: FER2013 model")


def pipeline_from_args(args: argparse.Namespace, emotion: bool = True, tracking: bool = False):
    # Photos: the stills preset (each image searched in full in this thread); a video
    # (tracking) gets the plain config, which also searches every image.
    preset = PipelineConfig if tracking else PipelineConfig.stills
    config = preset(device=args.device, backend=args.backend,
                    min_face_size=args.min_face_size, downscale=args.downscale,
                    emotion=emotion, tracking=tracking, facenet_weights=args.facenet_weights,
                    embedding_model=args.embedding_model,
                    emotion_weights=args.emotion_weights)
    if getattr(args, "threshold", None) is not None:
        config.recognition_threshold = args.threshold
    pipeline = FacePipeline(config)
    for model in (pipeline.embedder, pipeline.classifier):
        if getattr(model, "backend_warning", None):  # auto fell back to PyTorch: say why
            print(f"warning: {model.backend_warning}", file=sys.stderr)
    return pipeline
