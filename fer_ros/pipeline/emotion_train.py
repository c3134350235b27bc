"""Train an emotion classifier on your own faces and save it as a fer_ros.emotion/1 model.

Data come as the FER2013 CSV (``emotion,pixels[,Usage]``: a class index and a
space-separated square grayscale image per row; Usage Training / PublicTest /
PrivateTest become the train / validation / test splits) or as an image folder with
one sub-folder per class (optionally below ``train/``, ``val/`` and ``test/``).
Images are face crops; they are stored once, resized to the model's input size, and
augmented on the fly on the training device (flip, small rotation / scale /
translation, brightness / contrast), so a batch costs no Python per image.

Training is plain supervised cross-entropy with optional class weighting against
imbalance, AdamW, learning rate halved on a validation-loss plateau, and early
stopping on the validation loss. A checkpoint (model, optimiser, scheduler, RNG
states, history) is written after every epoch and can be resumed; the best epoch's
weights are what is saved. This module does not import rclpy.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_ros.pipeline.emotion import (
    ARCHITECTURES,
    DEFAULT_MODEL_FILE,
    FER2013_LABELS,
    MODEL_FORMAT,
    NORMALISATIONS,
    EmotionModelSpec,
    build_model,
    export_onnx,
    load_emotion_model,
    save_emotion_model,
)

CHECKPOINT_FORMAT = "fer_ros.emotion_checkpoint/1"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm"}
SPLITS = ("train", "val", "test")
# FER2013's Usage column and the usual folder names -> our split names.
SPLIT_ALIASES = {"training": "train", "train": "train",
                 "publictest": "val", "val": "val", "valid": "val", "validation": "val",
                 "privatetest": "test", "test": "test"}
# The parameters of each architecture's output layer (one row per label).
HEAD_KEYS = {"mini_xception": ("head.weight", "head.bias"),
             "resnet_fer": ("fc.weight", "fc.bias")}


class TrainError(ValueError):
    """A problem with the data or options that the user has to fix."""


# ------------------------------------------------------------------------- data
@dataclass
class FaceDataset:
    """All images in memory, already at the model's input size."""

    images: np.ndarray  # (N, S, S, C) uint8
    targets: np.ndarray  # (N,) int64, index into labels
    labels: tuple[str, ...]
    split: np.ndarray  # (N,) "train" | "val" | "test" | "" (not assigned by the data)
    kind: str  # "fer2013_csv" | "image_folder"
    source: str
    skipped: list[str] = field(default_factory=list)  # unreadable files

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            mask = self.split == name
            if mask.any():
                per_class = np.bincount(self.targets[mask], minlength=len(self.labels))
                out[name] = {label: int(n) for label, n in zip(self.labels, per_class,
                                                                strict=True)}
        return out

    def fingerprint(self) -> str:
        """sha256 over images, targets, labels and split, to tie a checkpoint to its data."""
        digest = hashlib.sha256()
        for array in (self.images, self.targets, self.split.astype("U5")):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\0".join(self.labels).encode())
        return digest.hexdigest()


def _fit(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """(H, W) gray or (H, W, 3) RGB uint8 -> (size, size, channels), resized as
    EmotionClassifier.crop_boxes resizes (area when shrinking, bilinear when growing)."""
    if channels == 1 and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif channels == 3 and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[:2] != (size, size):
        shrink = max(image.shape[:2]) > size
        image = cv2.resize(image, (size, size),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image.reshape(size, size, channels)


def read_fer2013_csv(path: Path, input_size: int, channels: int,
                     labels: tuple[str, ...] | None = None) -> FaceDataset:
    """The FER2013 CSV; ``labels`` names the class indices (default: FER2013's seven)."""
    images: list[np.ndarray] = []
    targets: list[int] = []
    split: list[str] = []
    side = 0
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip() for c in reader.fieldnames or ()}
        if not {"emotion", "pixels"} <= columns:
            raise TrainError(f"{path}: a FER2013 CSV needs the columns emotion,pixels[,Usage]; "
                             f"found {sorted(columns)}")
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): v for k, v in row.items() if k is not None}
            try:
                target = int(row["emotion"])
                pixels = np.array(row["pixels"].split(), dtype=np.int64)
            except (ValueError, AttributeError) as exc:
                raise TrainError(f"{path}:{line}: bad emotion or pixels ({exc})") from exc
            n = math.isqrt(pixels.size)
            if pixels.size == 0 or n * n != pixels.size:
                raise TrainError(f"{path}:{line}: {pixels.size} pixels is not a square image")
            if side and n != side:
                raise TrainError(f"{path}:{line}: {n}x{n} image, earlier rows are {side}x{side}")
            if pixels.min() < 0 or pixels.max() > 255:
                raise TrainError(f"{path}:{line}: pixel values must lie in 0..255")
            side = n
            usage = (row.get("Usage") or "").strip()
            if usage and usage.lower() not in SPLIT_ALIASES:
                raise TrainError(f"{path}:{line}: unknown Usage {usage!r} (expected Training, "
                                 f"PublicTest or PrivateTest)")
            images.append(_fit(pixels.astype(np.uint8).reshape(n, n), input_size, channels))
            targets.append(target)
            split.append(SPLIT_ALIASES[usage.lower()] if usage else "")
    if not images:
        raise TrainError(f"{path}: no rows")
    target_array = np.asarray(targets, np.int64)
    if labels is None:
        if target_array.min() < 0 or target_array.max() >= len(FER2013_LABELS):
            raise TrainError(f"{path}: emotion codes {target_array.min()}..{target_array.max()} "
                             f"are not FER2013's 0..6; name the classes with --labels")
        labels = FER2013_LABELS
    elif target_array.min() < 0 or target_array.max() >= len(labels):
        raise TrainError(f"{path}: emotion codes {target_array.min()}..{target_array.max()} do "
                         f"not fit the {len(labels)} labels {list(labels)}")
    return FaceDataset(np.stack(images), target_array, tuple(labels),
                       np.asarray(split, dtype="U5"), "fer2013_csv", str(path))


def _class_dirs(root: Path) -> dict[str, Path]:
    return {d.name: d for d in sorted(root.iterdir())
            if d.is_dir() and not d.name.startswith(".")}


def read_image_folder(path: Path, input_size: int, channels: int,
                      labels: tuple[str, ...] | None = None) -> FaceDataset:
    """``path/<class>/*.png`` or ``path/{train,val,test}/<class>/*.png``.

    The class order is ``labels`` when given (it must name exactly the sub-folders),
    else the sorted sub-folder names. Unreadable image files are skipped and listed.
    """
    top = _class_dirs(path)
    split_dirs = {SPLIT_ALIASES[name.lower()]: d for name, d in top.items()
                  if name.lower() in SPLIT_ALIASES}
    if "train" in split_dirs:
        extra = set(top) - {d.name for d in split_dirs.values()}
        if extra:
            raise TrainError(f"{path}: beside train/ only val/ and test/ may stand, "
                             f"found {sorted(extra)}")
        sources = {name: _class_dirs(d) for name, d in split_dirs.items()}
    else:
        sources = {"": top}
    names = sorted({c for dirs in sources.values() for c in dirs})
    if labels is None:
        labels = tuple(names)
    elif sorted(labels) != names:
        raise TrainError(f"{path}: --labels {list(labels)} must name exactly the class "
                         f"folders {names}")
    if len(labels) < 2:
        raise TrainError(f"{path}: need at least two class folders, found {names}")
    index = {label: i for i, label in enumerate(labels)}
    images: list[np.ndarray] = []
    targets: list[int] = []
    split: list[str] = []
    skipped: list[str] = []
    for split_name, dirs in sources.items():
        for label, folder in dirs.items():
            for file in sorted(folder.rglob("*")):
                if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
                if bgr is None:
                    skipped.append(str(file))
                    continue
                # The pipeline converts RGB frames, so convert the same way.
                images.append(_fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), input_size, channels))
                targets.append(index[label])
                split.append(split_name)
    if not images:
        raise TrainError(f"{path}: no readable images in the class folders {names}")
    return FaceDataset(np.stack(images), np.asarray(targets, np.int64), tuple(labels),
                       np.asarray(split, dtype="U5"), "image_folder", str(path), skipped)


def load_dataset(path: str | Path, input_size: int, channels: int,
                 labels: tuple[str, ...] | None = None) -> FaceDataset:
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path, input_size, channels, labels)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise TrainError(f"{path}: expected a FER2013 .csv file or an image folder")
        return read_fer2013_csv(path, input_size, channels, labels)
    raise TrainError(f"{path}: no such file or folder")


def assign_splits(data: FaceDataset, val_fraction: float, test_fraction: float,
                  seed: int) -> None:
    """Fill in the splits the data did not give, stratified by class.

    No split in the data: train / val / test by the fractions. Given splits but no
    validation set: ``val_fraction`` of the training images becomes one.
    """
    if not 0.0 < val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0 - val_fraction:
        raise TrainError(f"need 0 < val fraction ({val_fraction}) < 1 and 0 <= test fraction "
                         f"({test_fraction}) < 1 - val fraction")
    rng = np.random.default_rng(seed)
    unassigned = data.split == ""
    if unassigned.any():
        if not unassigned.all():
            raise TrainError(f"{data.source}: some samples have a split and some do not")
        fractions = (("val", val_fraction), ("test", test_fraction))
        pool = "train"
        data.split[:] = "train"
    elif not (data.split == "val").any():
        fractions, pool = (("val", val_fraction),), "train"
    else:
        fractions, pool = (), "train"
    for k in range(len(data.labels)):
        members = np.flatnonzero((data.split == pool) & (data.targets == k))
        rng.shuffle(members)
        start = 0
        for name, fraction in fractions:
            take = round(len(members) * fraction)
            if fraction > 0 and take == 0 and len(members) - start >= 2:
                take = 1  # every class is seen in validation when it can be
            data.split[members[start:start + take]] = name
            start += take
    train_counts = np.bincount(data.targets[data.split == "train"], minlength=len(data.labels))
    missing = [label for label, n in zip(data.labels, train_counts, strict=True) if n == 0]
    if missing:
        raise TrainError(f"{data.source}: no training images for {missing}; name only the "
                         f"classes present with --labels")
    if not (data.split == "val").any():
        raise TrainError(f"{data.source}: too few images for a validation split")


# ---------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class FaceAugment:
    """Random label-preserving changes for face crops, applied to a whole batch."""

    flip: bool = True  # expressions are left-right symmetric
    rotation: float = 10.0  # degrees, +-
    scale: float = 0.1  # +- fraction
    translate: float = 0.08  # +- fraction of the side
    brightness: float = 0.2  # +- fraction of full scale
    contrast: float = 0.2  # +- fraction

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: (N, C, S, S) float in 0..255 on any device; random numbers from the CPU
        ``generator`` (so a resumed run draws the same ones)."""
        n = x.shape[0]

        def uniform(amount: float) -> torch.Tensor:
            return (torch.rand(n, generator=generator) * 2.0 - 1.0) * amount

        angle = uniform(math.radians(self.rotation))
        zoom = 1.0 + uniform(self.scale)
        shift = torch.stack([uniform(2.0 * self.translate), uniform(2.0 * self.translate)], 1)
        sign = (torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
                if self.flip else torch.ones(n))
        bright = uniform(self.brightness * 255.0)
        contrast = 1.0 + uniform(self.contrast)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # Output pixel p samples the input at A p + t; zoom > 1 enlarges the face.
        theta = torch.stack([torch.stack([cos * sign, -sin, shift[:, 0]], 1),
                             torch.stack([sin * sign, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        # Border padding repeats edge pixels, as the pipeline's crops do.
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * contrast.view(-1, 1, 1, 1).to(x.device) + mean
        y = y + bright.view(-1, 1, 1, 1).to(x.device)
        return y.clamp(0.0, 255.0)


# ----------------------------------------------------------------- the options
@dataclass
class TrainConfig:
    data: str
    out: str
    architecture: str = "mini_xception"
    labels: tuple[str, ...] | None = None  # None: from the data
    input_size: int | None = None  # None: from --init, else 64
    channels: int | None = None  # None: from --init, else 1
    normalisation: str | None = None  # None: from --init, else minus_one_to_one
    crop_margin: float = 0.1
    init: str = "none"  # none | fer2013 | path of a fer_ros.emotion/1 model
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    test_fraction: float = 0.0
    patience: int = 8  # epochs without a better validation loss before stopping
    augment: bool = True
    class_weights: str = "balanced"  # balanced | none
    checkpoint: str = ""  # "" = OUT + ".ckpt"
    resume: str = ""
    onnx: str = ""
    report_dir: str = ""  # "" = next to OUT
    device: str = "auto"
    seed: int = 0

    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint) if self.checkpoint else Path(self.out + ".ckpt")


@dataclass
class TrainResult:
    model_path: Path
    spec: EmotionModelSpec
    history: list[dict[str, float]]
    report: dict[str, Any]
    report_json: Path
    confusion_png: Path
    onnx_path: Path | None
    best_epoch: int
    stopped_early: bool


# ------------------------------------------------------------------ the model
def init_from(model: nn.Module, spec: EmotionModelSpec, source: str) -> dict[str, Any]:
    """Copy weights from a saved model (``fer2013`` = the shipped default) into ``model``.

    All layers but the output layer must match. Output rows are carried over for the
    labels both models share (by name); other labels start from a fresh head.
    """
    from fer_ros.paths import models_dir

    path = models_dir() / DEFAULT_MODEL_FILE if source == "fer2013" else Path(source)
    if not path.is_file():
        hint = "; run `fer-ros models fetch` first" if source == "fer2013" else ""
        raise TrainError(f"--init {source}: {path} does not exist{hint}")
    src_module, src_spec = load_emotion_model(path)
    for name in ("architecture", "channels", "input_size", "normalisation"):
        if getattr(src_spec, name) != getattr(spec, name):
            raise TrainError(f"--init {source}: its {name} is {getattr(src_spec, name)!r}, "
                             f"this run's is {getattr(spec, name)!r}")
    src_state = src_module.state_dict()
    state = model.state_dict()
    head = HEAD_KEYS.get(spec.architecture, ())
    shared = [label for label in spec.labels if label in src_spec.labels]
    for key, value in state.items():
        if key in head:
            rows = torch.tensor([src_spec.labels.index(x) for x in shared], dtype=torch.long)
            mine = torch.tensor([spec.labels.index(x) for x in shared], dtype=torch.long)
            value[mine] = src_state[key][rows].to(value.dtype)
        else:
            value.copy_(src_state[key])
    model.load_state_dict(state)
    return {"init": source, "init_path": str(path),
            "head": "kept" if spec.labels == src_spec.labels else "new",
            "head_rows_carried": shared}


def class_weight_vector(targets: np.ndarray, n_classes: int, mode: str) -> torch.Tensor:
    """'balanced': n / (k * n_c), as scikit-learn's; 'none': ones."""
    if mode == "none":
        return torch.ones(n_classes)
    if mode != "balanced":
        raise TrainError(f"class weights must be 'balanced' or 'none', not {mode!r}")
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    return torch.tensor(len(targets) / (n_classes * np.maximum(counts, 1.0)), dtype=torch.float32)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def evaluate(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
             normalise: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
             batch_size: int = 256) -> tuple[float, np.ndarray]:
    """Mean (unweighted) cross-entropy and the (N, K) probabilities."""
    model.eval()
    total, probs = 0.0, []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = normalise(images[start:start + batch_size].to(device).float())
            logits = model(x)
            y = targets[start:start + batch_size].to(device)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            probs.append(torch.softmax(logits, 1).float().cpu())
    return total / max(len(images), 1), torch.cat(probs).numpy()


def classification_report(targets: np.ndarray, predictions: np.ndarray,
                          labels: tuple[str, ...]) -> dict[str, Any]:
    k = len(labels)
    confusion = np.zeros((k, k), np.int64)  # rows: true class, columns: predicted
    np.add.at(confusion, (targets, predictions), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(0), confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k),
                   where=precision + recall > 0)
    return {
        "labels": list(labels),
        "samples": len(targets),
        "accuracy": float(tp.sum() / max(len(targets), 1)),
        "balanced_accuracy": float(recall[actual > 0].mean()) if (actual > 0).any() else 0.0,
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]),
                              "f1": float(f1[i]), "support": int(actual[i])}
                      for i, label in enumerate(labels)},
        "confusion": confusion.tolist(),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['split']} set: {report['samples']} images, accuracy "
             f"{report['accuracy']:.1%}, balanced accuracy {report['balanced_accuracy']:.1%}",
             f"{'class':>14} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for label, m in report["per_class"].items():
        lines.append(f"{label:>14} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} "
                     f"{m['support']:8d}")
    return "\n".join(lines)


def save_confusion_png(report: dict[str, Any], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, via the Agg canvas (no display, and no
    change to pyplot's global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = report["labels"]
    counts = np.asarray(report["confusion"], dtype=np.float64)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    side = 2.0 + 0.7 * len(labels)
    figure = Figure(figsize=(side + 1.5, side))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, label="fraction of the true class")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(j, i, f"{int(counts[i, j])}\n{rates[i, j]:.0%}", ha="center",
                      va="center", fontsize=8, color="white" if rates[i, j] > 0.5 else "black")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------- checkpoints
def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous epoch's checkpoint


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"--resume {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # foreign or damaged file
        raise TrainError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = " (that is a finished model, not a checkpoint)" if found == MODEL_FORMAT else ""
        raise TrainError(f"{path}: format {found!r} is not {CHECKPOINT_FORMAT!r}{hint}")
    return payload


# ------------------------------------------------------------------- training
def _resolve_spec(config: TrainConfig, labels: tuple[str, ...]) -> EmotionModelSpec:
    if config.architecture not in ARCHITECTURES:
        raise TrainError(f"unknown architecture {config.architecture!r}; "
                         f"known: {sorted(ARCHITECTURES)}")
    spec = EmotionModelSpec(architecture=config.architecture, labels=labels,
                            input_size=config.input_size or 64, channels=config.channels or 1,
                            normalisation=config.normalisation or "minus_one_to_one",
                            crop_margin=config.crop_margin)
    try:
        spec.validate()
    except ValueError as exc:
        raise TrainError(str(exc)) from exc
    return spec


def _init_defaults(config: TrainConfig) -> None:
    """With --init, input size / channels / normalisation default to the source model's."""
    if config.init in ("", "none"):
        return
    from fer_ros.paths import models_dir

    path = models_dir() / DEFAULT_MODEL_FILE if config.init == "fer2013" else Path(config.init)
    if not path.is_file():
        hint = "; run `fer-ros models fetch` first" if config.init == "fer2013" else ""
        raise TrainError(f"--init {config.init}: {path} does not exist{hint}")
    _, src = load_emotion_model(path)
    if src.architecture != config.architecture:
        raise TrainError(f"--init {config.init} is a {src.architecture!r} model; it cannot "
                         f"initialise {config.architecture!r}")
    config.input_size = config.input_size or src.input_size
    config.channels = config.channels or src.channels
    config.normalisation = config.normalisation or src.normalisation


def train(config: TrainConfig, progress: bool = True,
          log: Callable[[str], None] = print) -> TrainResult:
    """Run a whole training as configured; TrainError for problems the user must fix."""
    from tqdm import tqdm

    from fer_ros.pipeline.pipeline import resolve_device

    if config.epochs < 1 or config.batch_size < 2 or config.patience < 1:
        raise TrainError("epochs and patience must be >= 1, batch size >= 2")
    resumed = load_checkpoint(config.resume) if config.resume else None
    if resumed is not None:
        # The model's contract comes from the checkpoint; the data must be the same.
        saved = resumed["config"]
        for name in ("architecture", "input_size", "channels", "normalisation", "init",
                     "class_weights", "seed", "val_fraction", "test_fraction"):
            setattr(config, name, saved[name])
        config.labels = tuple(resumed["spec"]["labels"])
    else:
        _init_defaults(config)
    spec = _resolve_spec(config, config.labels or ("_",))  # validates size and channels early
    data = load_dataset(config.data, spec.input_size, spec.channels, config.labels)
    if data.skipped:
        log(f"skipped {len(data.skipped)} unreadable image(s), e.g. {data.skipped[0]}")
    assign_splits(data, config.val_fraction, config.test_fraction, config.seed)
    spec = _resolve_spec(config, data.labels)
    fingerprint = data.fingerprint()
    device = torch.device(resolve_device(config.device))

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(spec).to(device)
    init_info: dict[str, Any] = {"init": "none"}
    if config.init not in ("", "none") and resumed is None:
        init_info = init_from(model, spec, config.init)
        log(f"initialised from {init_info['init_path']} (output layer {init_info['head']}; "
            f"rows carried for {init_info['head_rows_carried']})")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=max(1, config.patience // 3))

    split = {name: np.flatnonzero(data.split == name) for name in SPLITS}
    images = {name: _to_tensor(data.images[idx]) for name, idx in split.items()}
    targets = {name: torch.from_numpy(data.targets[idx]) for name, idx in split.items()}
    weights = class_weight_vector(data.targets[split["train"]], len(spec.labels),
                                  config.class_weights)
    criterion = nn.CrossEntropyLoss(weight=weights.to(device))
    normalise = NORMALISATIONS[spec.normalisation]
    augment = FaceAugment() if config.augment else None

    history: list[dict[str, float]] = []
    best_loss, best_epoch, bad_epochs = math.inf, 0, 0
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    start_epoch = 1
    if resumed is not None:
        if (EmotionModelSpec.from_dict(resumed["spec"]) != spec
                or resumed["data_fingerprint"] != fingerprint):
            raise TrainError(f"{config.resume}: checkpoint was made with other data or another "
                             f"model spec; resume with the same --data")
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        generator.set_state(resumed["generator"])
        torch.set_rng_state(resumed["torch_rng"])
        history = list(resumed["history"])
        best_loss, best_epoch = resumed["best_loss"], resumed["best_epoch"]
        bad_epochs, best_state = resumed["bad_epochs"], resumed["best_state"]
        init_info = resumed["init_info"]
        start_epoch = resumed["epoch"] + 1
        log(f"resumed {config.resume} after epoch {resumed['epoch']}")

    n_train = len(images["train"])
    log(f"{spec.architecture}: {len(spec.labels)} classes {list(spec.labels)}, "
        f"{spec.input_size}x{spec.input_size}x{spec.channels}; "
        + ", ".join(f"{name} {len(split[name])}" for name in SPLITS if len(split[name]))
        + f" images; device {device}")
    stopped_early = bad_epochs >= config.patience
    for epoch in range(start_epoch, config.epochs + 1):
        if stopped_early:
            break
        model.train()
        order = torch.randperm(n_train, generator=generator)
        batches = [order[i:i + config.batch_size] for i in range(0, n_train, config.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # batch norm cannot train on a single image
        seen, loss_sum, correct = 0, 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                   disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
        for batch in bar:
            x = images["train"][batch].to(device).float()
            if augment is not None:
                x = augment(x, generator)
            y = targets["train"][batch].to(device)
            logits = model(normalise(x))
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(batch)
            loss_sum += float(loss.detach()) * len(batch)
            correct += int((logits.argmax(1) == y).sum())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.1%}")
        bar.close()
        val_loss, val_probs = evaluate(model, images["val"], targets["val"], normalise, device)
        val_acc = float((val_probs.argmax(1) == targets["val"].numpy()).mean())
        scheduler.step(val_loss)
        improved = val_loss < best_loss - 1e-4
        if improved:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        history.append({"epoch": epoch, "train_loss": loss_sum / max(seen, 1),
                        "train_acc": correct / max(seen, 1), "val_loss": val_loss,
                        "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"]})
        log(f"epoch {epoch}/{config.epochs}: train loss {history[-1]['train_loss']:.4f} "
            f"acc {history[-1]['train_acc']:.1%} | val loss {val_loss:.4f} acc {val_acc:.1%}"
            f" | lr {history[-1]['lr']:.2g}" + (" *best*" if improved else ""))
        stopped_early = bad_epochs >= config.patience
        _save_checkpoint(config.checkpoint_path(), {
            "format": CHECKPOINT_FORMAT, "epoch": epoch, "spec": asdict(spec),
            "config": asdict(config), "data_fingerprint": fingerprint,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": history, "best_loss": best_loss, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "best_state": best_state, "init_info": init_info})
        if stopped_early:
            log(f"early stop: no better validation loss for {config.patience} epochs")

    # The saved model is the best epoch's, evaluated on the test set when there is one.
    model.load_state_dict(best_state)
    model.eval()
    eval_split = "test" if len(split["test"]) else "val"
    _, probs = evaluate(model, images[eval_split], targets[eval_split], normalise, device)
    report = classification_report(targets[eval_split].numpy(), probs.argmax(1), spec.labels)
    report["split"] = eval_split
    if eval_split == "val":
        report["note"] = ("no test split: these numbers are on the validation set that "
                          "chose the best epoch, so they are optimistic")
    out = Path(config.out)
    report_dir = Path(config.report_dir) if config.report_dir else out.parent
    stem = out.name[:-len(out.suffix)] if out.suffix else out.name
    confusion_png = save_confusion_png(report, report_dir / f"{stem}.confusion.png",
                                       f"{spec.architecture}, {eval_split} set: "
                                       f"accuracy {report['accuracy']:.1%}")
    training = {
        "trained_by": "fer-ros train-emotion",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": {"source": data.source, "kind": data.kind, "counts": data.counts(),
                 "skipped_files": len(data.skipped), "fingerprint_sha256": fingerprint},
        "init": init_info, "augment": asdict(augment) if augment else None,
        "class_weights": {"mode": config.class_weights,
                          "values": [round(float(w), 4) for w in weights]},
        "hyperparameters": {k: getattr(config, k) for k in (
            "epochs", "batch_size", "lr", "weight_decay", "patience", "seed",
            "val_fraction", "test_fraction")},
        "epochs_run": len(history), "best_epoch": best_epoch, "stopped_early": stopped_early,
        "best_val_loss": best_loss,
        "best_val_acc": next((h["val_acc"] for h in history if h["epoch"] == best_epoch), None),
        "evaluation": {k: report[k] for k in ("split", "samples", "accuracy",
                                              "balanced_accuracy")},
        "torch": str(torch.__version__),
    }
    model_path = save_emotion_model(out, model, spec, training)
    report_json = report_dir / f"{stem}.report.json"
    report_json.write_text(json.dumps({"model": str(model_path), **report,
                                       "history": history, "training": training}, indent=1))
    log(format_report(report))
    if "note" in report:
        log(f"note: {report['note']}")
    onnx_path = None
    if config.onnx:
        onnx_path = export_onnx(model, spec, config.onnx, training)
    return TrainResult(model_path, spec, history, report, report_json, confusion_png,
                       onnx_path, best_epoch, stopped_early)
