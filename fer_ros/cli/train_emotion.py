"""``fer-ros train-emotion --data PATH --out MODEL.pt``: train your own emotion model.

The result is a fer_ros.emotion/1 file for the perception node's ``emotion_weights``
parameter or ``fer-ros identify --emotion-weights``; its labels decide what is published.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
data:
  a FER2013 CSV (emotion,pixels,Usage; Usage Training/PublicTest/PrivateTest = train/
  validation/test), or a folder with one sub-folder of face crops per class, optionally
  below train/, val/ and test/. Without given splits, --val-fraction (and --test-fraction)
  of each class are held out.

writes:
  OUT (the model), OUT.ckpt (checkpoint after every epoch, for --resume),
  <OUT stem>.report.json and <OUT stem>.confusion.png (next to OUT or in --report-dir),
  and --onnx PATH when given.

examples:
  fer-ros train-emotion --data fer2013.csv --out fer2013_mx.pt
  fer-ros train-emotion --data my_faces/ --out robot.pt --init fer2013 --epochs 20
  fer-ros train-emotion --data fer2013.csv --out fer2013_mx.pt --resume fer2013_mx.pt.ckpt
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fer_ros.pipeline.emotion import ARCHITECTURES, NORMALISATIONS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--data", required=True, help="FER2013 .csv file or image folder")
    parser.add_argument("--out", required=True, metavar="MODEL.pt", help="model file to write")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", dest="architecture", default="mini_xception",
                       choices=sorted(ARCHITECTURES),
                       help="mini_xception (default model's, ~66%% on FER2013) or resnet_fer "
                            "(narrow ResNet-18, stronger, still real-time on CPU)")
    model.add_argument("--labels", default="",
                       help="comma-separated class names in output order: names the CSV's "
                            "emotion codes 0..K-1 (default FER2013's seven) or orders the "
                            "class folders (default sorted)")
    model.add_argument("--input-size", type=int, default=None,
                       help="square input in pixels (default 64, or --init's)")
    model.add_argument("--channels", type=int, choices=(1, 3), default=None,
                       help="1 = grayscale, 3 = RGB (default 1, or --init's)")
    model.add_argument("--normalisation", choices=sorted(NORMALISATIONS), default=None,
                       help="pixel scaling (default minus_one_to_one, or --init's)")
    model.add_argument("--crop-margin", type=float, default=0.1,
                       help="margin the pipeline adds around a face box, as a fraction of its "
                            "side; match how your crops were made (default 0.1)")
    model.add_argument("--init", default="none", metavar="none|fer2013|MODEL.pt",
                       help="start from these weights: fer2013 = the shipped mini-Xception "
                            "(output rows kept for shared labels, new ones for the others)")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=50, help="most epochs (default 50)")
    train.add_argument("--batch-size", type=int, default=64, help="default 64")
    train.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (1e-3)")
    train.add_argument("--weight-decay", type=float, default=1e-4, help="default 1e-4")
    train.add_argument("--patience", type=int, default=8,
                       help="stop after this many epochs without a better validation loss")
    train.add_argument("--val-fraction", type=float, default=0.1,
                       help="held out for validation when the data give no split (0.1)")
    train.add_argument("--test-fraction", type=float, default=0.0,
                       help="held out for the final report when the data give no split (0)")
    train.add_argument("--class-weights", choices=("balanced", "none"), default="balanced",
                       help="weight the loss against class imbalance (default balanced)")
    train.add_argument("--no-augment", dest="augment", action="store_false",
                       help="no flips, small rotations/scales/shifts, brightness/contrast")
    train.add_argument("--seed", type=int, default=0, help="shuffling and splits (default 0)")
    train.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    train.add_argument("--threads", type=int, default=0,
                       help="CPU threads for torch (default: torch's choice)")
    out = parser.add_argument_group("output")
    out.add_argument("--checkpoint", default="", help="checkpoint path (default OUT.ckpt)")
    out.add_argument("--resume", default="", metavar="CHECKPOINT",
                     help="continue a run from its checkpoint (same --data; --epochs may grow)")
    out.add_argument("--onnx", default="", metavar="PATH", help="also export the model to ONNX")
    out.add_argument("--report-dir", default="", help="where the report files go (default: "
                                                      "next to OUT)")
    out.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from fer_ros.assets import AssetError
    from fer_ros.pipeline.training import TrainConfig, TrainError, train

    if args.threads:
        torch.set_num_threads(args.threads)
    labels = tuple(x.strip() for x in args.labels.split(",")) if args.labels else None
    config = TrainConfig(
        data=args.data, out=args.out, architecture=args.architecture, labels=labels,
        input_size=args.input_size, channels=args.channels, normalisation=args.normalisation,
        crop_margin=args.crop_margin, init=args.init, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        patience=args.patience, augment=args.augment, class_weights=args.class_weights,
        checkpoint=args.checkpoint, resume=args.resume, onnx=args.onnx,
        report_dir=args.report_dir, device=args.device, seed=args.seed)
    try:
        result = train(config, progress=args.progress)
    except (TrainError, AssetError, ValueError, OSError) as exc:
        print(f"fer-ros train-emotion: {exc}", file=sys.stderr)
        return 1
    print(f"model: {result.model_path} (labels {', '.join(result.spec.labels)}; best epoch "
          f"{result.best_epoch})")
    print(f"report: {result.report_json}, {result.confusion_png}")
    if result.onnx_path:
        print(f"onnx: {result.onnx_path}")
    return 0
