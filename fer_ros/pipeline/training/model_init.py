"""The model a training run starts from: its spec (from the options, or from the model
``--init`` names) and, with ``--init``, its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fer_ros.assets import FETCH_HINT
from fer_ros.pipeline.emotion import (
    ARCHITECTURES,
    EmotionModelSpec,
    default_model_path,
    head_keys,
    load_emotion_model,
)
from fer_ros.pipeline.training.config import TrainConfig, TrainError


def resolve_spec(config: TrainConfig, labels: tuple[str, ...]) -> EmotionModelSpec:
    """The spec of the model to train: the options, with defaults for what they leave open."""
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


def init_defaults(config: TrainConfig) -> None:
    """With --init, input size / channels / normalisation default to the source model's."""
    if config.init in ("", "none"):
        return
    _, src = load_emotion_model(_init_source(config.init))
    if src.architecture != config.architecture:
        raise TrainError(f"--init {config.init} is a {src.architecture!r} model; it cannot "
                         f"initialise {config.architecture!r}")
    config.input_size = config.input_size or src.input_size
    config.channels = config.channels or src.channels
    config.normalisation = config.normalisation or src.normalisation


def _init_source(source: str) -> Path:
    """The model file ``--init`` names (``fer2013`` = the shipped default)."""
    path = default_model_path() if source == "fer2013" else Path(source)
    if not path.is_file():
        hint = f"; run `{FETCH_HINT}` first" if source == "fer2013" else ""
        raise TrainError(f"--init {source}: {path} does not exist{hint}")
    return path


def init_from(model: nn.Module, spec: EmotionModelSpec, source: str) -> dict[str, Any]:
    """Copy weights from a saved model (``fer2013`` = the shipped default) into ``model``.

    All layers but the output layer (the architecture's ``head_keys``) must match.
    Output rows are carried over for the labels both models share (by name); other
    labels start from a fresh head.
    """
    path = _init_source(source)
    src_module, src_spec = load_emotion_model(path)
    for name in ("architecture", "channels", "input_size", "normalisation"):
        if getattr(src_spec, name) != getattr(spec, name):
            raise TrainError(f"--init {source}: its {name} is {getattr(src_spec, name)!r}, "
                             f"this run's is {getattr(spec, name)!r}")
    src_state = src_module.state_dict()
    state = model.state_dict()
    head = head_keys(spec.architecture)
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
