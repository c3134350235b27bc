"""Where a gallery lives: a JSON file, an SQLite file or a PostgreSQL database.

`open_storage(location)` picks the kind from the location:

* ``*.json``: our JSON format or the original system's face_embeddings_pytorch.json
  (read only). Every edit rewrites the whole file (atomically, mode 0600). Good for
  a few hundred people and for reading by eye.
* ``*.db``, ``*.sqlite``, ``*.sqlite3``: SQLite (the default for anything else too).
  Embeddings are float32 blobs; model name and schema version are in the file; one
  transaction per enrolment, so an edit costs milliseconds at any size; WAL, so
  readers never block the writer; mode 0600. Other processes' edits are picked up
  incrementally through a change log.
* ``postgresql://...`` or ``postgres://...``: one gallery for many robots on a
  database server (fer_ros.pipeline.recognition.storage.postgres).

Every kind answers the same questions: load it whole, add or remove a person in one
step, tell cheaply whether it changed (`version`), and say what changed since a
version (`changes_since`) so a reader never reloads 10,000 people for one new face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fer_ros.pipeline.recognition.storage.base import (
    POSTGRES_SCHEMES,
    DatabaseStorage,
    GalleryStorage,
    JsonStorage,
    SqliteStorage,
)

__all__ = ["Copied", "DatabaseStorage", "GalleryStorage", "JsonStorage", "SqliteStorage",
           "copy_gallery", "open_storage"]


def open_storage(location: str, model: str | None = None,
                 dim: int | None = None) -> GalleryStorage:
    """The storage ``location`` names (see the module docstring); nothing is opened yet."""
    if location.startswith(POSTGRES_SCHEMES):
        from fer_ros.pipeline.recognition.storage.postgres import (
            PostgresStorage,  # psycopg: fleets only
        )

        return PostgresStorage(location, model, dim)
    path = Path(location).expanduser()
    if path.suffix.lower() == ".json":
        return JsonStorage(path, model, dim)
    return SqliteStorage(path, model, dim)


@dataclass
class Copied:
    people: int  # written into the target
    refused: list[str]  # forgotten in the target: an old copy never brings them back
    forgotten: list[str]  # the source's tombstones, applied to the target


def copy_gallery(source: GalleryStorage, target: GalleryStorage) -> Copied:
    """Write every person of ``source`` into ``target`` (import/export), except people
    ``target`` has forgotten; ``source``'s own tombstones are applied to ``target`` too
    (erasing there what was enrolled before them)."""
    gallery = source.load()
    target.model, target.dim = gallery.model, gallery.dim
    tombstones = target.forgotten()
    refused = [name for name in gallery.names() if name in tombstones]
    people = [(name, gallery.people[name].embeddings, list(gallery.people[name].sources))
              for name in gallery.names() if name not in tombstones]
    if isinstance(target, DatabaseStorage):
        target.add_many(people)
    else:
        for name, embeddings, sources in people:
            target.add(name, embeddings, sources, on_existing="replace")
    for name, at in sorted(gallery.forgotten.items()):
        target.forget(name, at)
    return Copied(len(people), refused, sorted(gallery.forgotten))
