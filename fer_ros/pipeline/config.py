"""PipelineConfig: every setting of the face pipeline, written once.

Each field carries its default, its description and its limits (``Setting``). The
perception node's parameters are built from these fields (fer_ros/nodes/perception/
params.py), so `ros2 param describe`, config/perception.yaml and the library cannot
disagree. Two named presets say where a live camera and still photos differ:

* ``PipelineConfig.live()``: the perception node's settings. Faces are tracked, the
  whole-image search runs every few images on a worker thread, re-embeddings run in the
  background, and an empty unchanging scene is searched only now and then.
* ``PipelineConfig.stills()``: unrelated photos (``fer-ros identify``, enrolment). Every
  image is searched in full in the caller's thread and nothing is carried from one
  image to the next.

``PipelineConfig()`` is the plain, synchronous pipeline: every image searched in full,
faces tracked across calls; tests and library users who feed a sequence of images get
the same answer on every run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

# What FaceDetector can search the whole image with (the face_search setting).
FACE_SEARCHES = ("yunet", "mtcnn")

_SAME = object()


@dataclass(frozen=True)
class Setting:
    """What a PipelineConfig field means and may be.

    ``runtime``: may change between frames (FacePipeline.configure); the others choose
    or load models. ``param``: the perception node's parameter name when it differs from
    the field's, "" when the node does not expose the field. ``live``: the live preset's
    value when it differs from the default.
    """

    description: str
    limits: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    runtime: bool = False
    param: str | None = None
    live: Any = _SAME


def _setting(default: Any, description: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"setting": Setting(description, **kwargs)})


@dataclass
class PipelineConfig:
    device: str = _setting("auto", "auto (CUDA when present), cpu or cuda[:N].")
    backend: str = _setting(
        "auto", "Runtime of the FaceNet and emotion models: auto (ONNX Runtime on a CPU for "
        "the default models when `fer-ros models fetch` made their ONNX files, PyTorch "
        "otherwise; WARN when a file is missing or fails its checks), torch, or onnxruntime "
        "(fails instead of falling back). SFace always runs on ONNX Runtime (CPU).",
        choices=("auto", "torch", "onnxruntime"))
    half_precision: bool = _setting(
        False, "Run FaceNet and the emotion model in float16 (CUDA only; embeddings stay "
        "within cosine 0.999 of float32).")
    # detection
    face_search: str = _setting(
        "yunet", "What finds faces in the whole image: yunet (OpenCV Zoo YuNet, every face "
        "from about 16-20 px, a person 4 m from a 640x480 camera; MTCNN's O-Net then scores "
        "each and gives its landmarks; about 33-38 ms a 640x480 image on one core) or mtcnn "
        "(MTCNN's own pyramid down to min_face_size: about 47 ms from 40 px, 125 ms from "
        "16 px).",
        choices=FACE_SEARCHES)
    min_face_size: int = _setting(
        16, "Smallest face reported, in pixels of the input image (with face_search mtcnn "
        "also the smallest searched for, which sets its cost: 40 searches 640x480 in about "
        "47 ms).", limits=(10, 2000))
    detection_thresholds: tuple[float, float, float] = _setting(
        (0.6, 0.7, 0.7), "MTCNN P/R/O-Net stage thresholds (with face_search yunet, "
        "O-Net's applies to YuNet's candidates).")
    detection_min_score: float = _setting(
        0.9, "Faces scored below this are dropped.", limits=(0.0, 1.0), runtime=True)
    downscale: float = _setting(
        1.0, "Detect on the image scaled by this factor (faster; boxes are mapped back to "
        "full resolution).", limits=(0.1, 1.0))
    search_max_width: int = _setting(
        0, "Images wider than this are searched for faces on a copy scaled down to this "
        "width (at 1080p the search then costs what it costs at 720p); tracked faces, "
        "crops and embeddings keep the full resolution. 0 = search the full image.",
        limits=(0, 10000), live=1280)
    # stages
    recognition: bool = _setting(True, "Compute embeddings and names.",
                                 param="enable_recognition")
    emotion: bool = _setting(True, "Classify emotions.", param="enable_emotion")
    tracking: bool = _setting(
        True, "Track faces across images (stable track_id, name voting, emotion smoothing, "
        "fewer embeddings).", param="enable_tracking")
    # recognition
    embedding_model: str = _setting(
        "sface", "Face embedding model: sface (OpenCV Zoo SFace, 128-d, on ONNX Runtime; "
        "separates strangers from enrolled people best) or facenet (CASIA-WebFace FaceNet, "
        "512-d; galleries enrolled before SFace was added). A gallery holds one model's "
        "embeddings.", choices=("sface", "facenet"))
    facenet_weights: str = _setting(
        "", "FaceNet weights (.pt) for embedding_model facenet; empty = the converted "
        "CASIA-WebFace model from `fer-ros models fetch`.")
    recognition_threshold: float = _setting(
        -1.0, "Cosine similarity below which a face is 'unknown'; negative = the embedding "
        "model's calibrated value (sface 0.42, facenet 0.59).", limits=(-1.0, 1.0),
        runtime=True)
    recognition_margin: float = _setting(
        -1.0, "How much the best person must beat the second best; closer calls are "
        "'unknown'; negative = the embedding model's calibrated value (0.05 for both).",
        limits=(-1.0, 1.0), runtime=True)
    # emotion
    emotion_weights: str = _setting(
        "", "Emotion model (.pt from `fer-ros train-emotion`); empty = the FER2013 "
        "mini-Xception.")
    emotion_smoothing: float = _setting(
        0.5, "Weight of the past in the per-track moving average of emotion probabilities; "
        "0 = this image only.", limits=(0.0, 0.99), runtime=True)
    # tracking and the whole-image search
    full_detection_interval: int = _setting(
        1, "Search the whole image every N images; in between, only the tracked faces are "
        "re-located (much cheaper). New faces appear within N images. 1 = search every "
        "image.", limits=(1, 100), runtime=True, live=5)
    async_detection: bool = _setting(
        False, "Run that whole-image search on a worker thread while the tracked faces are "
        "re-located in every image, so no image waits for it; new faces join when it is "
        "done. False: the search runs in the image's own time.", live=True)
    blocking_search_max_width: int = _setting(
        640, "With async_detection: an image with nobody tracked, or whose tracked face "
        "was lost, waits for the whole-image search and is answered with its faces when it "
        "is at most this wide (at 640x480 a search takes about one camera period on one "
        "core) or came later after the previous image than the last search took. Otherwise "
        "it is answered at once and the faces join from the search on the worker thread "
        "(in the image's own time it would drop the images arriving meanwhile: 67 ms at "
        "1280x720). 0 = only that timing decides.", limits=(0, 10000))
    search_change_threshold: float = _setting(
        0.0, "With async_detection: when the image differs from the last searched one by "
        "more than this many grey levels in a thumbnail cell outside the tracked faces "
        "(someone may have come in), search at once instead of at full_detection_interval "
        "(at most twice per interval); 0 = only at the interval.", limits=(0.0, 255.0),
        runtime=True, live=40.0)
    iou_threshold: float = _setting(
        0.3, "Box overlap (IoU) below which a face is not its track's face.",
        limits=(0.0, 1.0), param="")
    track_max_age: float = _setting(
        1.0, "Seconds a face may go unseen before its track ends.", limits=(0.0, 60.0),
        runtime=True)
    reembed_interval: int = _setting(
        10, "A tracked face is embedded again every N images.", limits=(1, 1000),
        runtime=True)
    appearance_change: float = _setting(
        0.6, "A track whose face's grey patch correlates less than this with its reference "
        "may be someone else now (a cut, one person in front of another): with recognition "
        "the face is embedded at once and track_similarity decides; without, a new track "
        "starts.", limits=(-1.0, 1.0), param="")
    track_similarity: float = _setting(
        -1.0, "Cosine similarity to a track's recent embeddings at or above which a face "
        "whose look changed (a hand, tears, a turn), or a new face where a track ended "
        "within track_reid_window, is still that track's person and keeps its id; negative "
        "= the embedding model's calibrated value (sface 0.5, facenet 0.6).",
        limits=(-1.0, 1.0), runtime=True)
    track_reid_window: float = _setting(
        5.0, "Seconds after a face was last seen in which a new face of the same camera "
        "that matches its embeddings (track_similarity) continues its track id, name and "
        "emotion instead of starting anew; 0 = never.", limits=(0.0, 60.0), runtime=True)
    max_refine_gap: float = _setting(
        0.5, "Images further apart than this (seconds) are searched in full: too far apart "
        "for tracked boxes to be trusted.", limits=(0.0, 60.0), param="")
    vote_window: int = _setting(5, "Embeddings a track's name is voted over.",
                                limits=(1, 100))
    async_reembed: bool = _setting(
        False, "Re-embed already named faces on a background thread, so images never wait "
        "for a periodic re-embedding (new faces are still named before their image is "
        "published).", live=True)
    # nobody in view
    idle_detection_rate: float = _setting(
        0.0, "While no face is tracked, search the image for faces at most this often (Hz, "
        "on average; a change after a quiet spell is searched at once); images not searched "
        "are answered with no faces. Lower costs less in a changing empty scene, higher "
        "finds faces sooner there. 0 = search every image.", limits=(0.0, 1000.0),
        runtime=True, live=2.0)
    idle_change_threshold: float = _setting(
        12.0, "While no face is tracked, an image whose grey thumbnail (20x20-pixel cells at "
        "640x480) differs from the last searched one by at most this many grey levels in "
        "every cell is not searched; 0 = every image counts as changed.",
        limits=(0.0, 255.0), runtime=True)
    idle_refresh_period: float = _setting(
        5.0, "Seconds after which an unchanged scene is searched again while no face is "
        "tracked; 0 = never.", limits=(0.0, 3600.0), runtime=True)

    def __post_init__(self) -> None:
        self.detection_thresholds = tuple(float(v) for v in self.detection_thresholds)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> PipelineConfig:
        """A config from a flat mapping such as a node's parameters (other keys ignored;
        the node's own names, such as enable_tracking, are understood)."""
        by_param = {param_name(f.name): f.name for f in fields(cls) if param_name(f.name)}
        names = {f.name for f in fields(cls)}
        out = {}
        for key, value in values.items():
            name = key if key in names else by_param.get(key)
            if name is not None:
                out[name] = value
        return cls(**out)

    @classmethod
    def live(cls, **overrides: Any) -> PipelineConfig:
        """The perception node's settings: a live camera, tracked and searched in the
        background (see the module docstring)."""
        values = {name: s.live for name, s in settings() if s.live is not _SAME}
        return cls(**{**values, **overrides})

    @classmethod
    def stills(cls, **overrides: Any) -> PipelineConfig:
        """Unrelated photos: each searched in full, nothing carried between them."""
        return cls(**{"tracking": False, **overrides})

    def changed(self, **changes: Any) -> PipelineConfig:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


def settings() -> Iterator[tuple[str, Setting]]:
    """(field name, Setting) of every PipelineConfig field, in declaration order."""
    for f in fields(PipelineConfig):
        yield f.name, f.metadata["setting"]


def param_name(name: str) -> str:
    """The perception node's parameter for a field ("" when the node has none)."""
    setting = dict(settings())[name]
    return name if setting.param is None else setting.param


def live_default(name: str) -> Any:
    """A field's value in the live preset."""
    return getattr(PipelineConfig.live(), name)


# Settings that may change between frames; the others choose or load models.
RUNTIME_SETTINGS = frozenset(name for name, s in settings() if s.runtime)
