"""The face pipeline as a plain Python library (no ROS): detect, embed, match,
classify and track faces in numpy images. The ROS nodes and the CLI are adapters.

Data flows one way: FaceStreams / FacePipeline (engine/pipeline.py) -> the batch
(engine/batch.py) -> each camera's state (engine/camera.py) and the shared models
(engine/models.py) -> the stages (detection/, recognition/, emotion/, tracking/).
Settings and their defaults: config.py.
"""

from fer_ros.pipeline.config import RUNTIME_SETTINGS, PipelineConfig
from fer_ros.pipeline.device import resolve_device
from fer_ros.pipeline.engine.models import PipelineModels
from fer_ros.pipeline.engine.pipeline import FacePipeline, FaceStreams
from fer_ros.pipeline.recognition.gallery import Gallery, GalleryError
from fer_ros.pipeline.recognition.storage import open_storage
from fer_ros.pipeline.types import UNKNOWN, Detection, FaceResult, StageTimes

__all__ = ["RUNTIME_SETTINGS", "UNKNOWN", "Detection", "FacePipeline", "FaceResult",
           "FaceStreams", "Gallery", "GalleryError", "PipelineConfig", "PipelineModels",
           "StageTimes", "open_storage", "resolve_device"]
