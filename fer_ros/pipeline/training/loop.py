"""Train an emotion classifier on your own faces and save it as a fer_ros.emotion/1 model.

Training is plain supervised cross-entropy with optional class weighting against
imbalance, AdamW, learning rate halved on a validation-loss plateau, and early
stopping on the validation loss. A checkpoint (model, optimiser, scheduler, RNG
states, history) is written after every epoch and can be resumed; the best epoch's
weights are what is saved. This module does not import rclpy.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from fer_ros.pipeline.device import resolve_device
from fer_ros.pipeline.emotion import (
    NORMALISATIONS,
    EmotionModelSpec,
    build_model,
    export_onnx,
    save_emotion_model,
)
from fer_ros.pipeline.training.augment import FaceAugment
from fer_ros.pipeline.training.checkpoint import (
    CHECKPOINT_FORMAT,
    resume_config,
    save_checkpoint,
)
from fer_ros.pipeline.training.config import TrainConfig, TrainError, TrainResult
from fer_ros.pipeline.training.data import SPLITS, FaceDataset, assign_splits, load_dataset
from fer_ros.pipeline.training.model_init import init_defaults, init_from, resolve_spec
from fer_ros.pipeline.training.report import (
    classification_report,
    format_report,
    save_confusion_png,
)


# ------------------------------------------------------------ loss and evaluation
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


# ------------------------------------------------------------------ one run
@dataclass
class _Run:
    """What one training run works with, built once by :func:`_prepare`."""

    config: TrainConfig
    spec: EmotionModelSpec
    data: FaceDataset
    fingerprint: str
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    generator: torch.Generator  # CPU: shuffling and augmentation, restored on resume
    images: dict[str, torch.Tensor]  # split -> (N, C, S, S) uint8
    targets: dict[str, torch.Tensor]  # split -> (N,) int64
    class_weights: torch.Tensor
    augment: FaceAugment | None
    init_info: dict[str, Any]

    @property
    def normalise(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return NORMALISATIONS[self.spec.normalisation]


@dataclass
class _Progress:
    """What changes from epoch to epoch and a checkpoint carries over."""

    best_state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one
    next_epoch: int = 1


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _prepare(config: TrainConfig, fresh: bool, log: Callable[[str], None]) -> _Run:
    """Data, spec, model (seeded, maybe --init), optimiser and scheduler of a run."""
    if fresh:
        init_defaults(config)
    spec = resolve_spec(config, config.labels or ("_",))  # validates size and channels early
    data = load_dataset(config.data, spec.input_size, spec.channels, config.labels)
    if data.skipped:
        log(f"skipped {len(data.skipped)} unreadable image(s), e.g. {data.skipped[0]}")
    assign_splits(data, config.val_fraction, config.test_fraction, config.seed)
    spec = resolve_spec(config, data.labels)
    device = torch.device(resolve_device(config.device))
    torch.manual_seed(config.seed)  # before build_model: the initial weights
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(spec).to(device)
    init_info: dict[str, Any] = {"init": "none"}
    if config.init not in ("", "none") and fresh:
        init_info = init_from(model, spec, config.init)
        log(f"initialised from {init_info['init_path']} (output layer {init_info['head']}; "
            f"rows carried for {init_info['head_rows_carried']})")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=max(1, config.patience // 3))
    split = {name: np.flatnonzero(data.split == name) for name in SPLITS}
    return _Run(
        config, spec, data, data.fingerprint(), device, model, optimizer, scheduler, generator,
        images={name: _to_tensor(data.images[idx]) for name, idx in split.items()},
        targets={name: torch.from_numpy(data.targets[idx]) for name, idx in split.items()},
        class_weights=class_weight_vector(data.targets[split["train"]], len(spec.labels),
                                          config.class_weights),
        augment=FaceAugment() if config.augment else None, init_info=init_info)


def _restore(run: _Run, resumed: dict[str, Any], log: Callable[[str], None]) -> _Progress:
    """Model, optimiser, scheduler, random streams and progress from a checkpoint."""
    if (EmotionModelSpec.from_dict(resumed["spec"]) != run.spec
            or resumed["data_fingerprint"] != run.fingerprint):
        raise TrainError(f"{run.config.resume}: checkpoint was made with other data or another "
                         f"model spec; resume with the same --data")
    run.model.load_state_dict(resumed["model"])
    run.optimizer.load_state_dict(resumed["optimizer"])
    run.scheduler.load_state_dict(resumed["scheduler"])
    run.generator.set_state(resumed["generator"])
    torch.set_rng_state(resumed["torch_rng"])
    run.init_info = resumed["init_info"]
    log(f"resumed {run.config.resume} after epoch {resumed['epoch']}")
    return _Progress(best_state=resumed["best_state"], history=list(resumed["history"]),
                     best_loss=resumed["best_loss"], best_epoch=resumed["best_epoch"],
                     bad_epochs=resumed["bad_epochs"], next_epoch=resumed["epoch"] + 1)


# ------------------------------------------------------------------- the epochs
def _train_epoch(run: _Run, epoch: int, progress: bool) -> tuple[float, float]:
    """One pass over the shuffled training set; returns its loss and accuracy."""
    run.model.train()
    criterion = nn.CrossEntropyLoss(weight=run.class_weights.to(run.device))
    n_train, batch_size = len(run.images["train"]), run.config.batch_size
    order = torch.randperm(n_train, generator=run.generator)
    batches = [order[i:i + batch_size] for i in range(0, n_train, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()  # batch norm cannot train on a single image
    seen, loss_sum, correct = 0, 0.0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}/{run.config.epochs}", unit="batch",
               disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
    for batch in bar:
        x = run.images["train"][batch].to(run.device).float()
        if run.augment is not None:
            x = run.augment(x, run.generator)
        y = run.targets["train"][batch].to(run.device)
        logits = run.model(run.normalise(x))
        loss = criterion(logits, y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        seen += len(batch)
        loss_sum += float(loss.detach()) * len(batch)
        correct += int((logits.argmax(1) == y).sum())
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.1%}")
    bar.close()
    return loss_sum / max(seen, 1), correct / max(seen, 1)


def _validate(run: _Run, state: _Progress, epoch: int, train_loss: float, train_acc: float,
              log: Callable[[str], None]) -> None:
    """Validation loss and accuracy, the scheduler step, the best epoch and the history."""
    val_loss, val_probs = evaluate(run.model, run.images["val"], run.targets["val"],
                                   run.normalise, run.device)
    val_acc = float((val_probs.argmax(1) == run.targets["val"].numpy()).mean())
    run.scheduler.step(val_loss)
    improved = val_loss < state.best_loss - 1e-4
    if improved:
        state.best_loss, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
        state.best_state = _state_copy(run.model)
    else:
        state.bad_epochs += 1
    lr = run.optimizer.param_groups[0]["lr"]
    state.history.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                          "val_loss": val_loss, "val_acc": val_acc, "lr": lr})
    state.next_epoch = epoch + 1
    log(f"epoch {epoch}/{run.config.epochs}: train loss {train_loss:.4f} acc {train_acc:.1%}"
        f" | val loss {val_loss:.4f} acc {val_acc:.1%} | lr {lr:.2g}"
        + (" *best*" if improved else ""))


def _checkpoint(run: _Run, state: _Progress, epoch: int) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT, "epoch": epoch, "spec": asdict(run.spec),
        "config": asdict(run.config), "data_fingerprint": run.fingerprint,
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "generator": run.generator.get_state(), "torch_rng": torch.get_rng_state(),
        "history": state.history, "best_loss": state.best_loss, "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs, "best_state": state.best_state,
        "init_info": run.init_info}


# ------------------------------------------------------------------- the result
def _final_report(run: _Run) -> dict[str, Any]:
    """The best model on the test split, or on the validation split when there is none."""
    eval_split = "test" if len(run.images["test"]) else "val"
    _, probs = evaluate(run.model, run.images[eval_split], run.targets[eval_split],
                        run.normalise, run.device)
    report = classification_report(run.targets[eval_split].numpy(), probs.argmax(1),
                                   run.spec.labels)
    report["split"] = eval_split
    if eval_split == "val":
        report["note"] = ("no test split: these numbers are on the validation set that "
                          "chose the best epoch, so they are optimistic")
    return report


def _training_record(run: _Run, state: _Progress, report: dict[str, Any],
                     stopped_early: bool) -> dict[str, Any]:
    """The provenance that goes into the model file and the report."""
    config, data = run.config, run.data
    return {
        "trained_by": "fer-ros train-emotion",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": {"source": data.source, "kind": data.kind, "counts": data.counts(),
                 "skipped_files": len(data.skipped), "fingerprint_sha256": run.fingerprint},
        "init": run.init_info, "augment": asdict(run.augment) if run.augment else None,
        "class_weights": {"mode": config.class_weights,
                          "values": [round(float(w), 4) for w in run.class_weights]},
        "hyperparameters": {k: getattr(config, k) for k in (
            "epochs", "batch_size", "lr", "weight_decay", "patience", "seed",
            "val_fraction", "test_fraction")},
        "epochs_run": len(state.history), "best_epoch": state.best_epoch,
        "stopped_early": stopped_early, "best_val_loss": state.best_loss,
        "best_val_acc": next((h["val_acc"] for h in state.history
                              if h["epoch"] == state.best_epoch), None),
        "evaluation": {k: report[k] for k in ("split", "samples", "accuracy",
                                              "balanced_accuracy")},
        "torch": str(torch.__version__),
    }


def _finish(run: _Run, state: _Progress, log: Callable[[str], None]) -> TrainResult:
    """Save the best epoch's model with its report, confusion matrix and maybe ONNX."""
    config, spec = run.config, run.spec
    stopped_early = state.bad_epochs >= config.patience
    run.model.load_state_dict(state.best_state)
    run.model.eval()
    report = _final_report(run)
    out = Path(config.out)
    report_dir = Path(config.report_dir) if config.report_dir else out.parent
    stem = out.name[:-len(out.suffix)] if out.suffix else out.name
    confusion_png = save_confusion_png(report, report_dir / f"{stem}.confusion.png",
                                       f"{spec.architecture}, {report['split']} set: "
                                       f"accuracy {report['accuracy']:.1%}")
    training = _training_record(run, state, report, stopped_early)
    model_path = save_emotion_model(out, run.model, spec, training)
    report_json = report_dir / f"{stem}.report.json"
    report_json.write_text(json.dumps({"model": str(model_path), **report,
                                       "history": state.history, "training": training},
                                      indent=1))
    log(format_report(report))
    if "note" in report:
        log(f"note: {report['note']}")
    onnx_path = export_onnx(run.model, spec, config.onnx, training) if config.onnx else None
    return TrainResult(model_path, spec, state.history, report, report_json, confusion_png,
                       onnx_path, state.best_epoch, stopped_early)


# ---------------------------------------------------------------------- train
def _log_start(run: _Run, log: Callable[[str], None]) -> None:
    spec = run.spec
    log(f"{spec.architecture}: {len(spec.labels)} classes {list(spec.labels)}, "
        f"{spec.input_size}x{spec.input_size}x{spec.channels}; "
        + ", ".join(f"{name} {len(run.images[name])}" for name in SPLITS
                    if len(run.images[name]))
        + f" images; device {run.device}")


def train(config: TrainConfig, progress: bool = True,
          log: Callable[[str], None] = print) -> TrainResult:
    """Run a whole training as configured; TrainError for problems the user must fix."""
    if config.epochs < 1 or config.batch_size < 2 or config.patience < 1:
        raise TrainError("epochs and patience must be >= 1, batch size >= 2")
    resumed = resume_config(config) if config.resume else None
    run = _prepare(config, resumed is None, log)
    state = (_restore(run, resumed, log) if resumed is not None
             else _Progress(best_state=_state_copy(run.model)))
    _log_start(run, log)
    for epoch in range(state.next_epoch, config.epochs + 1):
        if state.bad_epochs >= config.patience:
            break
        train_loss, train_acc = _train_epoch(run, epoch, progress)
        _validate(run, state, epoch, train_loss, train_acc, log)
        save_checkpoint(config.checkpoint_path(), _checkpoint(run, state, epoch))
        if state.bad_epochs >= config.patience:
            log(f"early stop: no better validation loss for {config.patience} epochs")
    return _finish(run, state, log)
