"""Training checkpoints: written after every epoch, read back by ``--resume``.

A checkpoint is ``torch.save`` of a dict with ``"format": CHECKPOINT_FORMAT``, the
spec, the options, a fingerprint of the data, and the model, optimiser, scheduler and
random-number states (see ``loop._checkpoint``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fer_ros.pipeline.emotion import MODEL_FORMAT
from fer_ros.pipeline.training.config import TrainConfig, TrainError

CHECKPOINT_FORMAT = "fer_ros.emotion_checkpoint/1"
# What a resumed run takes from its checkpoint: the model's contract and all that
# decides the data split, so that the data fingerprint can be compared.
RESUMED_FIELDS = ("architecture", "input_size", "channels", "normalisation", "init",
                  "class_weights", "seed", "val_fraction", "test_fraction")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous epoch's checkpoint


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict; TrainError for a missing, unreadable or foreign file."""
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


def resume_config(config: TrainConfig) -> dict[str, Any]:
    """Load ``config.resume`` and take the model's contract and the split from it."""
    resumed = load_checkpoint(config.resume)
    saved = resumed["config"]
    for name in RESUMED_FIELDS:
        setattr(config, name, saved[name])
    config.labels = tuple(resumed["spec"]["labels"])
    return resumed
