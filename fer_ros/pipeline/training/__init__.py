"""Train an emotion classifier on your own faces (``fer-ros train-emotion``) and save
it as a fer_ros.emotion/1 model.

:mod:`.config` the options and result, :mod:`.data` the readers and splits,
:mod:`.augment` the batch augmentation, :mod:`.model_init` the spec and ``--init``
weights, :mod:`.checkpoint` checkpoints and ``--resume``, :mod:`.loop` :func:`train`
itself, :mod:`.report` the evaluation report. Nothing here imports rclpy.
"""

from fer_ros.pipeline.training.augment import FaceAugment
from fer_ros.pipeline.training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from fer_ros.pipeline.training.config import TrainConfig, TrainError, TrainResult
from fer_ros.pipeline.training.data import (
    FaceDataset,
    assign_splits,
    load_dataset,
    read_fer2013_csv,
    read_image_folder,
)
from fer_ros.pipeline.training.loop import class_weight_vector, evaluate, train
from fer_ros.pipeline.training.model_init import init_from
from fer_ros.pipeline.training.report import (
    classification_report,
    format_report,
    save_confusion_png,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "FaceAugment",
    "FaceDataset",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "assign_splits",
    "class_weight_vector",
    "classification_report",
    "evaluate",
    "format_report",
    "init_from",
    "load_checkpoint",
    "load_dataset",
    "read_fer2013_csv",
    "read_image_folder",
    "save_confusion_png",
    "train",
]
