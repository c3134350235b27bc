"""The options of an emotion training run, its result, and the error for problems the
user has to fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_ros.pipeline.emotion import EmotionModelSpec


class TrainError(ValueError):
    """A problem with the data or options that the user has to fix."""


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
