"""What GallerySync (fer_ros/pipeline/recognition/sync.py) talks to, without models: a
logger that keeps its lines and a stand-in for the face pipeline's gallery holder."""

from __future__ import annotations

from fer_ros.pipeline.recognition.gallery import Gallery


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, m: str) -> None:
        self.lines.append(("info", m))

    def warning(self, m: str) -> None:
        self.lines.append(("warning", m))

    def error(self, m: str) -> None:
        self.lines.append(("error", m))

    def take(self) -> list[tuple[str, str]]:
        """The lines logged since the last take."""
        lines, self.lines = self.lines, []
        return lines


class Embedder:
    def __init__(self, model_name: str, dim: int) -> None:
        self.model_name, self.dim = model_name, dim


class Holder:
    """What GallerySync needs of a FacePipeline, counting the galleries handed over."""

    def __init__(self, model: str, dim: int) -> None:
        self.embedder = Embedder(model, dim)
        self.gallery: Gallery | None = None
        self.set = 0

    def set_gallery(self, gallery: Gallery | None) -> None:
        self.gallery = gallery
        self.set += 1

    def new_gallery(self) -> Gallery:
        return Gallery(self.embedder.model_name, self.embedder.dim)
