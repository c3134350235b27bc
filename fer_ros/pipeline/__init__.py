"""The face pipeline as a plain Python library (no ROS): detect, embed, match,
classify and track faces in numpy images. The ROS nodes and the CLI are adapters."""

from fer_ros.pipeline.gallery import Gallery, GalleryError
from fer_ros.pipeline.pipeline import FacePipeline, PipelineConfig, resolve_device
from fer_ros.pipeline.types import Detection, FaceResult

__all__ = ["Detection", "FacePipeline", "FaceResult", "Gallery", "GalleryError",
           "PipelineConfig", "resolve_device"]
