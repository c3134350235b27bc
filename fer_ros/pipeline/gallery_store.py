"""GalleryStore: the gallery a FacePipeline matches against, and the file behind it.

It loads the gallery file, notices when another process changes or deletes it,
reloads it, enrols new people and persists them. Every problem (a corrupt file, a
gallery from another embedding space, a full disk) is one log line naming the file
and the cause, and the gallery in use is kept: recognition never stops because of a
file from outside. No ROS here; the perception node and tests drive it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from fer_ros.pipeline.gallery import Gallery, GalleryError, Person, validate_name
from fer_ros.pipeline.pipeline import FacePipeline


class Logger(Protocol):
    """What the store logs through: rclpy's node logger and Python's logging both fit."""

    def info(self, message: str) -> object: ...
    def warning(self, message: str) -> object: ...
    def error(self, message: str) -> object: ...


@dataclass
class Enrolment:
    """What an enrolment did: the person as stored, and where it was kept."""

    person: Person
    persisted: bool


class GalleryStore:
    def __init__(self, pipeline: FacePipeline, path: str, persist: bool,
                 logger: Logger) -> None:
        self.pipeline = pipeline
        self.path_text = path
        self.persist = persist
        self._log = logger
        self._lock = threading.Lock()  # serialises reloads and enrolments
        self._mtime: float | None = None  # of the file as last loaded or written

    @property
    def path(self) -> Path | None:
        return Path(self.path_text).expanduser() if self.path_text else None

    def set_path(self, path: str) -> tuple[bool, str]:
        """Use another gallery file from now on (loaded at once)."""
        self.path_text = path
        return self.reload()

    def reload(self) -> tuple[bool, str]:
        """(Re)load the file; on any problem keep the gallery in use and say why."""
        with self._lock:
            return self._reload_locked()

    def _reload_locked(self) -> tuple[bool, str]:
        path = self.path
        if path is None:
            self.pipeline.set_gallery(None)
            return True, "no gallery_path set: every face is 'unknown'"
        if not path.exists():
            # Deleted (or a new path): nobody is enrolled any more. Keeping the old
            # people would also write them back at the next enrolment.
            self._mtime = None
            self.pipeline.set_gallery(None)
            message = (f"gallery {path} does not exist (yet); faces are 'unknown' until "
                       f"someone is enrolled")
            self._log.warning(message)
            return False, message
        try:
            mtime = path.stat().st_mtime
            gallery = Gallery.load(path)
            self.pipeline.set_gallery(gallery)
        except Exception as exc:
            # Whatever a file from outside holds, it must not stop recognition
            # (GalleryError is the expected case; anything else is named too).
            self._mtime = path.stat().st_mtime if path.exists() else None
            text = str(exc) if isinstance(exc, GalleryError) else f"{exc!r}"
            if str(path) not in text:
                text = f"gallery {path}: {text}"
            message = f"{text}; keeping the previous gallery"
            self._log.error(message)
            return False, message
        self._mtime = mtime
        message = f"gallery {path}: {len(gallery)} people ({', '.join(gallery.names())})"
        self._log.info(message)
        return True, message

    def watch(self) -> None:
        """Reload when the file changed on disk since it was last loaded or written."""
        path = self.path
        if path is None:
            return
        try:
            mtime: float | None = path.stat().st_mtime
        except OSError:
            mtime = None  # gone: unload it once
        if mtime != self._mtime:
            self.reload()

    def enroll(self, name: str, embedding: np.ndarray, append: bool,
               source: str = "enroll service") -> Enrolment:
        """Add one embedding for ``name`` and persist it; GalleryError/OSError on refusal.

        The new gallery replaces the one in use only once it has been written, so a
        failed write changes nothing, in memory or on disk.
        """
        name = validate_name(name)
        with self._lock:
            current = self.pipeline.gallery
            gallery = current.copy() if current is not None else self.pipeline.new_gallery()
            person = gallery.add(name, embedding[None, :], [source],
                                 on_existing="append" if append else "refuse")
            persisted = self.persist and self.path is not None
            if persisted:
                saved = gallery.save(self.path)
                self._mtime = saved.stat().st_mtime
            self.pipeline.set_gallery(gallery)
        return Enrolment(person, persisted)
