"""GallerySync: the gallery the face pipeline matches against, and the storage behind it.

It loads the gallery (a JSON file, an SQLite file or a PostgreSQL database: see
recognition/storage/), notices when another process changes it, takes in what changed
(only the people edited, for the database kinds), enrols new people and persists
them. Every problem (a corrupt file, a gallery from another embedding space, a full
disk, a database that went away) is one log line naming the gallery and the cause,
and the gallery in use is kept: recognition never stops because of storage. No ROS
here; the perception node and tests drive it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import numpy as np

from fer_ros.pipeline.recognition.gallery import (
    ErasurePending,
    Gallery,
    GalleryError,
    GalleryUnavailable,
    Person,
    validate_name,
)
from fer_ros.pipeline.recognition.storage import GalleryStorage, open_storage

# Seconds between writes of who was seen (and retention checks): coarse on purpose, so
# the gallery is not rewritten for every image someone is in.
SEEN_PERIOD_S = 60.0


class GalleryHolder(Protocol):
    """What the sync hands galleries to: FacePipeline and FaceStreams both fit."""

    embedder: Any
    gallery: Gallery | None

    def set_gallery(self, gallery: Gallery | None) -> None: ...
    def new_gallery(self) -> Gallery: ...


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


class GallerySync:
    def __init__(self, pipeline: GalleryHolder, path: str, persist: bool,
                 logger: Logger) -> None:
        self.pipeline = pipeline
        self.persist = persist
        self._log = logger
        self._lock = threading.RLock()  # reloads, catch-ups and enrolments, one at a time
        self._storage: GalleryStorage | None = None
        self._version: object | None = None  # of the gallery in use
        self._failing = False  # a storage error was logged; say when it is over
        # What the last ERROR was about: the same problem again (an outage, or the same
        # bad file) is not logged again.
        self._last_error: object = None
        self._seen: set[str] = set()  # named since the last housekeeping
        self._seen_lock = threading.Lock()  # the inference thread adds, a timer takes
        self._open(path)

    @property
    def location(self) -> str:
        """The gallery's printable location ("" when none is set)."""
        return self._storage.location if self._storage is not None else ""

    def _open(self, path: str) -> None:
        if self._storage is not None:
            self._storage.close()
        self._storage = None
        self._version = None  # nothing read from the new storage yet
        if path:
            embedder = self.pipeline.embedder
            self._storage = open_storage(path, embedder.model_name if embedder else None,
                                         embedder.dim if embedder else None)
            self._storage.listen(self.watch)

    def set_path(self, path: str) -> tuple[bool, str]:
        """Use another gallery from now on (loaded at once)."""
        with self._lock:
            self._open(path)
            return self.reload()

    def reload(self) -> tuple[bool, str]:
        """(Re)load the whole gallery; on any problem keep the one in use and say why."""
        with self._lock:
            return self._reload_locked()

    def _reload_locked(self) -> tuple[bool, str]:
        storage = self._storage
        if storage is None:
            self.pipeline.set_gallery(None)
            return True, "no gallery_path set: every face is 'unknown'"
        try:
            if not storage.exists():
                # Deleted (or a new path): nobody is enrolled any more. Keeping the old
                # people would also write them back at the next enrolment.
                self._version = None
                self.pipeline.set_gallery(None)
                message = (f"gallery {storage.location} does not exist (yet); faces are "
                           f"'unknown' until someone is enrolled")
                self._log.warning(message)
                return False, message
            gallery, version = storage.snapshot()
            self.pipeline.set_gallery(gallery)
        except Exception as exc:
            # Whatever a storage from outside holds, it must not stop recognition
            # (GalleryError is the expected case; anything else is named too).
            return False, self._failed(exc)
        self._version = version
        if self._failing:
            self._failing = False
            self._log.info(f"gallery {storage.location} is readable again")
        names = gallery.names()
        shown = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)" if len(names) > 20
                                         else "")
        message = f"gallery {storage.location}: {len(gallery)} people ({shown})"
        self._log.info(message)
        return True, message

    def _failed(self, exc: Exception) -> str:
        """Log the problem (unless it is the one logged last) and say it. The version of
        the gallery in use is kept: what changed since is taken in once it can be read."""
        location = self.location
        try:
            seen = self._storage.version() if self._storage else None
        except Exception:
            seen = None  # unreachable
        text = str(exc) if isinstance(exc, GalleryError) else f"{exc!r}"
        if location not in text:
            text = f"gallery {location}: {text}"
        message = f"{text}; keeping the previous gallery"
        # The same text about the same state of the storage is the same problem.
        about = "unreachable" if isinstance(exc, GalleryUnavailable) else (text, seen)
        if not self._failing or about != self._last_error:
            self._log.error(message)
        self._failing, self._last_error = True, about
        return message

    def watch(self) -> None:
        """Take in what changed since the gallery in use was read (by anyone)."""
        with self._lock:
            storage = self._storage
            if storage is None:
                return
            try:
                version = storage.version()
                if version == self._version and not self._failing:
                    return
                changes, latest = storage.changes_since(self._version)
            except Exception as exc:
                self._failed(exc)
                return
            if changes is None or self.pipeline.gallery is None:
                self._reload_locked()
                return
            self.pipeline.set_gallery(self.pipeline.gallery.with_changes(changes))
            self._version = latest
            if self._failing:
                self._failing = False
                self._log.info(f"gallery {storage.location} is readable again")
            if changes:
                self._log.info(f"gallery {storage.location}: took in changes to "
                               f"{', '.join(sorted(changes))}")

    def enroll(self, name: str, embedding: np.ndarray, append: bool,
               source: str = "enroll service") -> Enrolment:
        """Add one embedding for ``name`` and persist it; GalleryError/OSError on refusal.

        The gallery in use changes only once the storage has taken the enrolment, so a
        failed write changes nothing, in memory or in storage.
        """
        name = validate_name(name)
        on_existing = "append" if append else "refuse"
        with self._lock:
            current = self.pipeline.gallery
            if not (self.persist and self._storage is not None):
                gallery = current.copy() if current is not None else self.pipeline.new_gallery()
                person = gallery.add(name, embedding[None, :], [source], on_existing)
                self.pipeline.set_gallery(gallery)
                return Enrolment(person, persisted=False)
            if current is not None and not append and name in current.people:
                raise GalleryError(f"{name!r} is already enrolled "
                                   f"({current.num_embeddings(name)} embeddings); use append")
            person = self._storage.add(name, embedding[None, :], [source], on_existing)
            self._catch_up(name, person)
        return Enrolment(person, persisted=True)

    def seen(self, names: Iterable[str]) -> None:
        """These enrolled people were just named (cheap: called for every image)."""
        with self._seen_lock:
            self._seen.update(names)

    def housekeeping(self, retention_days: float,
                     now: datetime | None = None) -> list[tuple[str, str]]:
        """Every SEEN_PERIOD_S, with ``retention_days`` > 0: write who was seen since the
        last call, then forget those whose last contact (StorageBase.expire) is more than
        ``retention_days`` ago. Returns (name, last contact) of each person forgotten.
        Nothing is written without retention (presence is personal data too) or without
        ``persist``."""
        with self._seen_lock:
            names, self._seen = sorted(self._seen), set()
        now = now or datetime.now(timezone.utc)
        stamp = now.isoformat(timespec="seconds")
        with self._lock:
            storage = self._storage
            if storage is None or not self.persist or retention_days <= 0:
                return []
            try:
                if not storage.exists():
                    return []
                if names:
                    versions = storage.mark_seen(names, stamp)
                    # Our own write of last-seen times changes no match: unless someone
                    # else wrote since we read, the gallery in use is still current.
                    if versions is not None and versions[0] == self._version:
                        self._version = versions[1]
                stale = storage.expire(
                    (now - timedelta(days=retention_days)).isoformat(timespec="seconds"), stamp)
            except ErasurePending as exc:
                stale = exc.stale
                self._log.warning(str(exc))
            except (GalleryError, OSError) as exc:
                with self._seen_lock:
                    self._seen.update(names)  # written at the next call instead
                self._failed(exc)
                return []
            for name, last in stale:
                self._log.info(f"gallery {storage.location}: retention: forgot {name!r}, "
                               f"last seen or enrolled {last or 'never'} (retention_days "
                               f"{retention_days:g})")
            if stale:
                self.watch()
            return stale

    def forget(self, name: str) -> tuple[int, str]:
        """Erase ``name`` from the storage (Gallery.forget: overwritten, tombstone kept) and
        from the gallery in use at once; (embeddings erased, where). When the storage
        refuses (GalleryError/OSError, raised), the person is still dropped from memory."""
        name = validate_name(name)
        with self._lock:
            try:
                if self._storage is None:
                    current = self.pipeline.gallery
                    return (current.num_embeddings(name) if current is not None else 0,
                            "this node's memory (no gallery_path)")
                try:
                    removed = self._storage.forget(name)
                except ErasurePending:
                    self._catch_up(name, None)  # forgotten in the storage all the same
                    raise
                self._catch_up(name, None)
                return removed, self._storage.location
            finally:
                # Enrolments kept in memory only, or a catch-up that could not read: the
                # person goes from the gallery in use whatever the storage said.
                current = self.pipeline.gallery
                if current is not None and name in current.people:
                    self.pipeline.set_gallery(current.with_changes({name: None}))

    def _catch_up(self, name: str, person: Person | None) -> None:
        """After our own write: take in it (and anything else that changed meanwhile)."""
        current = self.pipeline.gallery
        try:
            changes, latest = self._storage.changes_since(self._version)
        except Exception:
            changes, latest = None, None
        if changes is not None and current is not None:
            self.pipeline.set_gallery(current.with_changes({**changes, name: person}))
            self._version = latest
        else:
            self._reload_locked()

    def close(self) -> None:
        with self._lock:
            if self._storage is not None:
                self._storage.close()
