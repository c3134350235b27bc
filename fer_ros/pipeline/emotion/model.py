"""The emotion model contract and the network architectures.

The contract lives in one place, :class:`EmotionModelSpec`: which architecture (a key of
:data:`ARCHITECTURES`), the class labels in output order, the input size and channels,
how pixels are normalised and how much margin is added around a face box. Modules
output logits; :class:`~fer_ros.pipeline.emotion.classifier.EmotionClassifier` applies
the softmax.

Adding an architecture touches only this file: write an :class:`EmotionNet` subclass
(built as ``cls(num_classes, in_channels)``, with its ``head_keys``) and register it
in :data:`ARCHITECTURES`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODEL_FORMAT = "fer_ros.emotion/1"
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


# --------------------------------------------------------------------- the contract
NORMALISATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # fer: x / 255, then (x - 0.5) * 2 (fer.FER._FER__preprocess_input with v2=True)
    "minus_one_to_one": lambda x: (x / 255.0 - 0.5) * 2.0,
    "zero_to_one": lambda x: x / 255.0,
}


@dataclass(frozen=True)
class EmotionModelSpec:
    """What a classifier expects and what its outputs mean."""

    architecture: str  # key of ARCHITECTURES
    labels: tuple[str, ...]  # one per output unit, in output order
    input_size: int  # square input, pixels
    channels: int  # 1 = grayscale (cv2 RGB2GRAY weights), 3 = RGB
    normalisation: str  # key of NORMALISATIONS, applied to uint8 pixels
    # The crop is the square around the box centre with side max(w, h) * (1 + 2 * margin);
    # parts outside the image repeat the edge pixels.
    crop_margin: float = 0.1

    def validate(self) -> None:
        """Raise ValueError when the spec is not usable."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown emotion architecture {self.architecture!r}; "
                             f"known: {sorted(ARCHITECTURES)}")
        if (not self.labels or not all(isinstance(x, str) and x for x in self.labels)
                or len(set(self.labels)) != len(self.labels)):
            raise ValueError(f"labels must be distinct non-empty strings, got {self.labels!r}")
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= 1024:
            raise ValueError(f"input_size must be an int in [8, 1024], got {self.input_size!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalisation!r}; "
                             f"known: {sorted(NORMALISATIONS)}")
        if not isinstance(self.crop_margin, (int, float)) or not 0.0 <= self.crop_margin <= 1.0:
            raise ValueError(f"crop_margin must be in [0, 1], got {self.crop_margin!r}")

    @classmethod
    def from_dict(cls, data: Any) -> EmotionModelSpec:
        if not isinstance(data, dict):
            raise ValueError(f"model spec must be a dict, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.name != "crop_margin"}
        missing = required - set(data)
        unknown = set(data) - names
        if missing or unknown:
            raise ValueError(f"model spec: missing {sorted(missing)}, unknown {sorted(unknown)}")
        values = dict(data)
        values["labels"] = tuple(values["labels"]) if isinstance(
            values["labels"], (list, tuple)) else values["labels"]
        spec = cls(**values)
        spec.validate()
        return spec


FER2013_SPEC = EmotionModelSpec(architecture="mini_xception", labels=FER2013_LABELS,
                                input_size=64, channels=1, normalisation="minus_one_to_one",
                                crop_margin=0.1)


# ------------------------------------------------------------------ architectures
class EmotionNet(nn.Module):
    """Base of every entry of :data:`ARCHITECTURES`.

    Subclasses are built as ``cls(num_classes, in_channels)`` and return logits
    (N, num_classes). ``head_keys`` names the state-dict entries of the output layer,
    whose first dimension has one row per label: ``fer-ros train-emotion --init``
    carries those rows over by label name and copies every other weight as is.
    """

    head_keys: ClassVar[tuple[str, ...]]


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad NCHW ``x`` as TensorFlow's padding='same' does: any odd pixel goes after."""
    pads: list[int] = []
    for size in (x.shape[3], x.shape[2]):  # F.pad order: last dim first
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias, stride 1, padding 'same')."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel, groups=in_channels,
                                   bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(tf_same_pad(x, self.kernel, 1)))


class XceptionBlock(nn.Module):
    """Two separable convs + 3x3/2 max pool, plus a strided 1x1 conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, eps: float) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_channels, eps=eps)
        self.sep1 = SeparableConv2d(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=eps)
        self.sep2 = SeparableConv2d(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut_bn(self.shortcut(tf_same_pad(x, 1, 2)))
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        y = F.max_pool2d(tf_same_pad(y, 3, 2, value=-math.inf), 3, 2)
        return y + shortcut


class MiniXception(EmotionNet):
    """Arriaga et al.'s mini-Xception (as in fer): returns logits (N, num_classes)."""

    head_keys = ("head.weight", "head.bias")

    def __init__(self, num_classes: int = 7, in_channels: int = 1, stem: int = 8,
                 widths: tuple[int, ...] = (16, 32, 64, 128), eps: float = 1e-3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, bias=False), nn.BatchNorm2d(stem, eps=eps),
            nn.ReLU(),
            nn.Conv2d(stem, stem, 3, bias=False), nn.BatchNorm2d(stem, eps=eps), nn.ReLU())
        chans = (stem, *widths)
        self.blocks = nn.ModuleList(XceptionBlock(a, b, eps) for a, b in itertools.pairwise(chans))
        self.head = nn.Conv2d(widths[-1], num_classes, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(tf_same_pad(x, 3, 1)).mean(dim=(2, 3))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and an identity/1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetFER(EmotionNet):
    """A narrow ResNet-18 layout for small face crops: returns logits (N, num_classes).

    A full-resolution 3x3 stem, then four stages of two basic blocks at widths
    32-64-128-256, each stage halving the resolution (64 -> 32 -> 16 -> 8 -> 4 px),
    global average pooling, dropout and a linear head. ResNet-18's 7x7/2 stem and max
    pool would throw away the fine detail of eyes and mouth on 48-64 px crops. About
    2.8 M parameters (mini-Xception: 57 k), yet on one CPU core a 64x64 face takes
    only about 1-2x mini-Xception's time (5-10 ms here), as few layers run at full size.
    This family of models reaches ~72-73% on FER2013 in the literature (e.g.
    Pramerdorfer & Kampel 2016; Khaireddin & Chen 2021), against mini-Xception's ~66%.
    """

    head_keys = ("fc.weight", "fc.bias")

    def __init__(self, num_classes: int = 7, in_channels: int = 1,
                 widths: tuple[int, ...] = (32, 64, 128, 256), dropout: float = 0.3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages: list[nn.Module] = []
        previous = widths[0]
        for width in widths:
            stages.append(nn.Sequential(BasicBlock(previous, width, 2),
                                        BasicBlock(width, width, 1)))
            previous = width
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x)).mean(dim=(2, 3))
        return self.fc(self.dropout(x))


# The architecture names a model file's spec may use (EmotionModelSpec.architecture).
ARCHITECTURES: dict[str, type[EmotionNet]] = {
    "mini_xception": MiniXception,
    "resnet_fer": ResNetFER,
}


def build_model(spec: EmotionModelSpec) -> EmotionNet:
    """A freshly initialised module of the spec's architecture, labels and channels."""
    spec.validate()
    return ARCHITECTURES[spec.architecture](len(spec.labels), spec.channels)


def head_keys(architecture: str) -> tuple[str, ...]:
    """The state-dict keys of ``architecture``'s output layer (one row per label)."""
    return ARCHITECTURES[architecture].head_keys
