"""Training data for the emotion trainer: the FER2013 CSV and image-folder readers,
and the train / validation / test split.

Data come as the FER2013 CSV (``emotion,pixels[,Usage]``: a class index and a
space-separated square grayscale image per row; Usage Training / PublicTest /
PrivateTest become the train / validation / test splits) or as an image folder with
one sub-folder per class (optionally below ``train/``, ``val/`` and ``test/``).
Images are face crops; they are stored once, resized to the model's input size.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_ros.pipeline.emotion import FER2013_LABELS
from fer_ros.pipeline.training.config import TrainError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm"}
SPLITS = ("train", "val", "test")
# FER2013's Usage column and the usual folder names -> our split names.
SPLIT_ALIASES = {"training": "train", "train": "train",
                 "publictest": "val", "val": "val", "valid": "val", "validation": "val",
                 "privatetest": "test", "test": "test"}


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

