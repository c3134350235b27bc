"""The storage kinds kept in files: the common interface (GalleryStorage), the
database rules shared with PostgreSQL (DatabaseStorage), JSON and SQLite."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fer_ros.pipeline.recognition import gallery_file
from fer_ros.pipeline.recognition.gallery import (
    ErasurePending,
    Gallery,
    GalleryError,
    Person,
    _now,
    check_on_existing,
    validate_name,
)

DB_FORMAT = "fer_ros.gallery.db"
DB_SCHEMA_VERSION = 1
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# More people changed than this since the last look: reading everything is simpler.
MAX_INCREMENTAL = 500
# How long an SQLite writer waits for others; an erasure's checkpoint waits less for
# readers (then it is said, and the next checkpoint finishes it).
BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_WAIT_MS = 2_000

# The tables of the database kinds (SQLite and PostgreSQL write the same rows).
# `changes` is the log that lets a reader catch up: one row per edit of a person.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS embeddings (id {serial} PRIMARY KEY, name TEXT NOT NULL, "
    "vector {blob} NOT NULL, added TEXT NOT NULL, source TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS embeddings_name ON embeddings (name)",
    "CREATE TABLE IF NOT EXISTS changes (seq {serial} PRIMARY KEY, name TEXT NOT NULL, "
    "at TEXT NOT NULL)",
    # Tombstones (Gallery.forgotten): added beside the others, so a gallery made before
    # them is read as one that has forgotten nobody (the schema version stays 1).
    "CREATE TABLE IF NOT EXISTS forgotten (name TEXT PRIMARY KEY, at TEXT NOT NULL)",
    # When each person was last seen (Gallery.last_seen): not logged in `changes`, since
    # it changes no match.
    "CREATE TABLE IF NOT EXISTS seen (name TEXT PRIMARY KEY, at TEXT NOT NULL)",
)


class GalleryStorage(ABC):
    """One gallery's persistent home. Methods raise GalleryError (or OSError) saying why."""

    location: str  # printable: never holds a password

    def __init__(self, model: str | None = None, dim: int | None = None) -> None:
        # The embedding space a new gallery is created in (None: only open existing ones).
        self.model, self.dim = model, dim

    @abstractmethod
    def exists(self) -> bool: ...

    def load(self) -> Gallery:
        return self.snapshot()[0]

    @abstractmethod
    def snapshot(self) -> tuple[Gallery, object | None]:
        """The whole gallery and its version, read consistently."""

    @abstractmethod
    def add(self, name: str, embeddings: np.ndarray, sources: list[str],
            on_existing: str = "append") -> Person: ...

    @abstractmethod
    def remove(self, name: str) -> None: ...

    @abstractmethod
    def forget(self, name: str, at: str | None = None) -> int:
        """Gallery.forget, stored: the embeddings erased from the storage itself (not
        only unlinked) and the tombstone kept; how many embeddings went."""

    def forgotten(self) -> dict[str, str]:
        """The tombstones ({} for a gallery that does not exist yet)."""
        return self.load().forgotten if self.exists() else {}

    @abstractmethod
    def mark_seen(self, names: list[str], at: str) -> tuple[object, object] | None:
        """Record that these enrolled people were seen at ``at`` (later times win). Kinds
        whose version this changes return (version before, version after) of the write."""

    @abstractmethod
    def expire(self, before: str, now: str) -> list[tuple[str, str]]:
        """Forget (tombstone at ``now``) everyone whose last contact (last seen, else last
        enrolled, and never earlier than when retention first ran here) is before
        ``before``; (name, last contact) of each, in name order. The first call only notes
        when retention began: people enrolled before anyone kept last-seen times get the
        whole retention period from then."""

    @abstractmethod
    def version(self) -> object | None:
        """Cheap: a value that changes whenever the gallery does (None: absent)."""

    def changes_since(self, version: object | None
                      ) -> tuple[dict[str, Person | None] | None, object | None]:
        """The people edited since ``version`` (None for removed) and the version they
        bring the reader to; (None, _) means: reload everything."""
        return None, None

    def listen(self, on_change) -> None:
        """Call ``on_change()`` (from another thread) when another process edits the
        gallery; kinds that cannot tell are polled through version() instead."""
        return None

    def close(self) -> None:
        """Release connections and stop listening."""
        return None

    def _new_gallery(self) -> Gallery:
        if self.model is None or self.dim is None:
            raise GalleryError(f"gallery {self.location} does not exist")
        return Gallery(self.model, self.dim)


class JsonStorage(GalleryStorage):
    def __init__(self, path: Path, model: str | None = None, dim: int | None = None) -> None:
        super().__init__(model, dim)
        self.path = path
        self.location = str(path)

    def exists(self) -> bool:
        return self.path.exists()

    def snapshot(self) -> tuple[Gallery, object | None]:
        # Version first: a write during the read shows up as a change at the next check.
        version = self.version()
        return gallery_file.load(self.path), version

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Every read-change-write of the file holds this lock: two processes editing the
        gallery at once (a node's last-seen write, `fer-ros gallery forget`) must not
        write back what the other has just removed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_CREAT | os.O_RDWR,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _current(self) -> Gallery:
        gallery = self.load() if self.exists() else self._new_gallery()
        gallery.path = self.path
        return gallery

    def add(self, name: str, embeddings: np.ndarray, sources: list[str],
            on_existing: str = "append") -> Person:
        with self._locked():
            gallery = self._current()
            if self.model is not None:
                gallery.check_model(self.model)
            person = gallery.add(name, embeddings, sources, on_existing=on_existing)
            gallery_file.save(gallery, self.path)
        return person

    def remove(self, name: str) -> None:
        with self._locked():
            gallery = self.load()
            gallery.remove(name)
            gallery_file.save(gallery)  # where it was read from

    def mark_seen(self, names: list[str], at: str) -> tuple[object, object] | None:
        with self._locked():
            before = self.version()
            gallery = self.load()
            if self.model is not None:  # another model's gallery: its people are never seen
                gallery.check_model(self.model)
            changed = False
            for name in names:
                if name in gallery.people and gallery.last_seen.get(name, "") < at:
                    gallery.last_seen[name] = at
                    changed = True
            if changed:
                gallery_file.save(gallery)
            return before, self.version()

    def forget(self, name: str, at: str | None = None) -> int:
        with self._locked():
            gallery = self._current()
            removed = gallery.forget(name, at)
            gallery_file.save(gallery, shred=True)
        return removed

    def expire(self, before: str, now: str) -> list[tuple[str, str]]:
        with self._locked():
            gallery = self._current()
            # A node of another model never names (so never sees) anyone in it: expiring
            # would erase everyone (the SQL storages refuse the same way, in _init_meta).
            if self.model is not None:
                gallery.check_model(self.model)
            if not gallery.retention_since:
                gallery.retention_since = now
                gallery_file.save(gallery)
                return []
            stale = [(name, gallery.last_contact(name)) for name in gallery.names()
                     if max(gallery.last_contact(name), gallery.retention_since) < before]
            for name, _ in stale:
                gallery.forget(name, now)
            if stale:
                gallery_file.save(gallery, shred=True)
        return stale

    def version(self) -> object | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class DatabaseStorage(GalleryStorage):
    """The SQL shared by SQLite and PostgreSQL; subclasses connect and name the types."""

    FORMAT = DB_FORMAT
    SCHEMA_VERSION = DB_SCHEMA_VERSION
    serial = "INTEGER"  # SQLite: an INTEGER PRIMARY KEY is the row id, ever increasing
    blob = "BLOB"
    param = "?"

    @abstractmethod
    def _transaction(self): ...

    def _sql(self, text: str) -> str:
        return text.replace("?", self.param)

    def _create_tables(self, cur) -> None:
        for statement in SCHEMA:
            cur.execute(statement.format(serial=self.serial, blob=self.blob))

    def _meta(self, cur) -> dict[str, str]:
        cur.execute("SELECT key, value FROM meta")
        return dict(cur.fetchall())

    def _check_meta(self, meta: dict[str, str]) -> tuple[str, int]:
        if meta.get("format") != self.FORMAT:
            raise GalleryError(f"gallery {self.location} is not a fer_ros gallery "
                               f"(format {meta.get('format')!r})")
        if meta.get("schema_version") != str(self.SCHEMA_VERSION):
            raise GalleryError(f"gallery {self.location}: schema_version "
                               f"{meta.get('schema_version')!r} is not supported (this "
                               f"fer_ros reads {self.SCHEMA_VERSION})")
        try:
            return meta["model"], int(meta["embedding_dim"])
        except (KeyError, ValueError):
            raise GalleryError(f"gallery {self.location}: no model or embedding_dim") from None

    def _init_meta(self, cur) -> tuple[str, int]:
        """Create the tables and meta rows of a new gallery; check an existing one's."""
        self._create_tables(cur)
        meta = self._meta(cur)
        if not meta:
            gallery = self._new_gallery()
            meta = {"format": self.FORMAT, "schema_version": str(self.SCHEMA_VERSION),
                    "model": gallery.model, "embedding_dim": str(gallery.dim),
                    "created": gallery.created}
            for key, value in meta.items():
                # Two writers may create the same gallery at once: the first one wins.
                cur.execute(self._sql("INSERT INTO meta (key, value) VALUES (?, ?) "
                                      "ON CONFLICT (key) DO NOTHING"), (key, value))
            meta = self._meta(cur)
        model, dim = self._check_meta(meta)
        if self.model is not None and model != self.model:
            known = Gallery(model, dim)
            known.path = self.location  # for the message
            known.check_model(self.model)
        return model, dim

    def _people(self, cur, names: list[str] | None, dim: int
                ) -> tuple[dict[str, Person], np.ndarray]:
        """The people (all, or these) and one matrix of their embeddings in row order;
        each Person's embeddings are a view into it. Rows are streamed into the matrix,
        so a large gallery is never held twice in memory."""
        where, args = "", ()
        if names is not None:
            where = f" WHERE name IN ({', '.join('?' * len(names))})"
            args = tuple(names)
        cur.execute(self._sql("SELECT count(*) FROM embeddings" + where), args)
        total = int(cur.fetchone()[0])
        matrix = np.empty((total, dim), np.float32)
        owners: list[str] = []
        added: list[str] = []
        sources: list[str] = []
        cur.execute(self._sql("SELECT name, vector, added, source FROM embeddings" + where +
                              " ORDER BY name, id"), args)
        row = 0
        while batch := cur.fetchmany(4096):
            for name, vector, stamp, source in batch:
                if row >= total or len(vector) != dim * 4:
                    raise GalleryError(f"gallery {self.location}: an embedding is not {dim} "
                                       f"float32s, or rows changed while reading")
                matrix[row] = np.frombuffer(vector, np.float32)
                owners.append(name)
                added.append(stamp)
                sources.append(source)
                row += 1
        matrix = matrix[:row]
        people: dict[str, Person] = {}
        start = 0
        for end in range(1, row + 1):
            if end == row or owners[end] != owners[start]:
                people[owners[start]] = Person(owners[start], matrix[start:end],
                                               added[start:end], sources[start:end])
                start = end
        return people, matrix

    def snapshot(self) -> tuple[Gallery, object | None]:
        with self._transaction() as cur:
            meta = self._meta(cur) if self._has_tables(cur) else {}
            if not meta:
                raise GalleryError(f"gallery {self.location} does not exist or is empty")
            model, dim = self._check_meta(meta)
            version = self._version(cur)  # first: see changes_since
            people, matrix = self._people(cur, None, dim)
            forgotten = self._forgotten(cur)
            last_seen = self._last_seen(cur)
        gallery = Gallery(model, dim)
        gallery.people = people
        gallery.forgotten = forgotten
        gallery.last_seen = last_seen
        gallery.adopt_matrix(matrix, list(people))
        gallery.created = meta.get("created", gallery.created)
        gallery.source_format = self.FORMAT
        return gallery, version

    def add(self, name: str, embeddings: np.ndarray, sources: list[str],
            on_existing: str = "append") -> Person:
        name = validate_name(name)
        check_on_existing(on_existing)
        with self._transaction(write=True) as cur:
            model, dim = self._init_meta(cur)
            check = Gallery(model, dim)  # validates and normalises like the JSON kind
            cur.execute(self._sql("SELECT count(*) FROM embeddings WHERE name = ?"), (name,))
            enrolled = cur.fetchone()[0]
            if enrolled and on_existing == "refuse":
                raise GalleryError(f"{name!r} is already enrolled ({enrolled} embeddings); "
                                   f"use append or replace")
            new = check.add(name, embeddings, sources)
            if on_existing == "replace":
                cur.execute(self._sql("DELETE FROM embeddings WHERE name = ?"), (name,))
            stamp = _now()
            for vector, source in zip(new.embeddings, new.sources, strict=True):
                cur.execute(self._sql("INSERT INTO embeddings (name, vector, added, source) "
                                      "VALUES (?, ?, ?, ?)"),
                            (name, vector.astype(np.float32).tobytes(), stamp, source))
            self._log_change(cur, name)
            return self._people(cur, [name], dim)[0][name]

    def add_many(self, people: list[tuple[str, np.ndarray, list[str]]]) -> None:
        """Enrol (replace) many people in one transaction: imports and benchmarks."""
        with self._transaction(write=True) as cur:
            model, dim = self._init_meta(cur)
            check = Gallery(model, dim)
            stamp = _now()
            for name, embeddings, sources in people:  # a name given twice: the last wins
                check.add(name, embeddings, sources, on_existing="replace")
            rows, changed = [], []
            for person in check.people.values():
                cur.execute(self._sql("DELETE FROM embeddings WHERE name = ?"), (person.name,))
                rows += [(person.name, v.astype(np.float32).tobytes(), stamp, src)
                         for v, src in zip(person.embeddings, person.sources, strict=True)]
                changed.append((person.name, stamp))
            cur.executemany(self._sql("INSERT INTO embeddings (name, vector, added, source) "
                                      "VALUES (?, ?, ?, ?)"), rows)
            cur.executemany(self._sql("INSERT INTO changes (name, at) VALUES (?, ?)"), changed)

    def remove(self, name: str) -> None:
        with self._transaction(write=True) as cur:
            cur.execute(self._sql("DELETE FROM embeddings WHERE name = ?"), (name,))
            if cur.rowcount == 0:
                raise GalleryError(f"{name!r} is not in the gallery {self.location}")
            self._log_change(cur, name)

    def forget(self, name: str, at: str | None = None) -> int:
        name = validate_name(name)
        at = at or _now()
        with self._transaction(write=True) as cur:
            self._init_meta(cur)
            cur.execute(self._sql("DELETE FROM embeddings WHERE name = ? AND added <= ?"),
                        (name, at))
            removed = cur.rowcount
            cur.execute(self._sql("INSERT INTO forgotten (name, at) VALUES (?, ?) ON CONFLICT "
                                  "(name) DO UPDATE SET at = excluded.at WHERE "
                                  "excluded.at > forgotten.at"), (name, at))
            self._log_change(cur, name)
            cur.execute(self._sql("DELETE FROM seen WHERE name = ? AND NOT EXISTS (SELECT 1 "
                                  "FROM embeddings WHERE name = ?)"), (name, name))
        try:
            self._erase_deleted()
        except ErasurePending as exc:
            exc.removed = removed
            raise
        return removed

    def expire(self, before: str, now: str) -> list[tuple[str, str]]:
        # One write transaction: a sighting or an enrolment from another process comes
        # before the read (and counts) or after the erasure, never in between.
        with self._transaction(write=True) as cur:
            self._init_meta(cur)
            since = self._meta(cur).get("retention_since")
            if not since:
                cur.execute(self._sql("INSERT INTO meta (key, value) VALUES (?, ?) "
                                      "ON CONFLICT (key) DO NOTHING"), ("retention_since", now))
                return []
            cur.execute("SELECT e.name, max(e.added), max(s.at) FROM embeddings e LEFT JOIN "
                        "seen s ON s.name = e.name GROUP BY e.name ORDER BY e.name")
            stale = []
            for name, enrolled, seen in cur.fetchall():
                last = max(enrolled or "", seen or "")
                if max(last, since) < before:
                    stale.append((name, last))
            for name, _ in stale:
                for statement in ("DELETE FROM embeddings WHERE name = ?",
                                  "DELETE FROM seen WHERE name = ?"):
                    cur.execute(self._sql(statement), (name,))
                cur.execute(self._sql("INSERT INTO forgotten (name, at) VALUES (?, ?) ON "
                                      "CONFLICT (name) DO UPDATE SET at = excluded.at"),
                            (name, now))
                self._log_change(cur, name)
        if stale:
            try:
                self._erase_deleted()
            except ErasurePending as exc:
                exc.stale = stale
                raise
        return stale

    def mark_seen(self, names: list[str], at: str) -> tuple[object, object] | None:
        with self._transaction(write=True) as cur:
            self._init_meta(cur)
            for name in names:
                cur.execute(self._sql("INSERT INTO seen (name, at) SELECT ?, ? WHERE EXISTS "
                                      "(SELECT 1 FROM embeddings WHERE name = ?) ON CONFLICT "
                                      "(name) DO UPDATE SET at = excluded.at WHERE "
                                      "excluded.at > seen.at"), (name, at, name))
        return None  # no change to the version: nobody's matches change

    @abstractmethod
    def _erase_deleted(self) -> None:
        """Overwrite what deleted rows left in the database's files."""

    def _forgotten(self, cur) -> dict[str, str]:
        if not self._has_table(cur, "forgotten"):
            return {}
        cur.execute("SELECT name, at FROM forgotten")
        return dict(cur.fetchall())

    def _last_seen(self, cur) -> dict[str, str]:
        if not self._has_table(cur, "seen"):
            return {}
        cur.execute("SELECT name, at FROM seen")
        return dict(cur.fetchall())

    def forgotten(self) -> dict[str, str]:
        if not self.exists():
            return {}
        with self._transaction() as cur:
            return self._forgotten(cur) if self._has_tables(cur) else {}

    def _log_change(self, cur, name: str) -> None:
        cur.execute(self._sql("INSERT INTO changes (name, at) VALUES (?, ?)"), (name, _now()))

    def _version(self, cur) -> int:
        cur.execute("SELECT coalesce(max(seq), 0) FROM changes")
        return int(cur.fetchone()[0])

    def version(self) -> object | None:
        with self._transaction() as cur:
            return self._version(cur) if self._has_tables(cur) else None

    def changes_since(self, version: object | None
                      ) -> tuple[dict[str, Person | None] | None, object | None]:
        if not isinstance(version, int):
            return None, None
        with self._transaction() as cur:
            meta = self._meta(cur) if self._has_tables(cur) else {}
            if not meta:
                return None, None
            _, dim = self._check_meta(meta)
            # The version first: PostgreSQL reads each statement afresh, and people
            # newer than the version are harmless (applied again next time).
            latest = self._version(cur)
            cur.execute(self._sql("SELECT DISTINCT name FROM changes WHERE seq > ? AND "
                                  "seq <= ?"), (version, latest))
            names = sorted(row[0] for row in cur.fetchall())
            if len(names) > MAX_INCREMENTAL:
                return None, None
            people = self._people(cur, names, dim)[0] if names else {}
        return {name: people.get(name) for name in names}, latest

    @abstractmethod
    def _has_tables(self, cur) -> bool: ...

    @abstractmethod
    def _has_table(self, cur, table: str) -> bool: ...


class SqliteStorage(DatabaseStorage):
    def __init__(self, path: Path, model: str | None = None, dim: int | None = None) -> None:
        super().__init__(model, dim)
        self.path = path
        self.location = str(path)
        self._conn: sqlite3.Connection | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def _connect(self, create: bool) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.exists():
                # Without an embedding space no gallery can be made: leave no empty file
                # behind that would look like one.
                if not create or self.model is None or self.dim is None:
                    raise GalleryError(f"gallery {self.path} does not exist")
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Create it 0600 before SQLite does: embeddings are biometric data. SQLite
                # gives its -wal and -shm files the database file's permissions.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                       isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                # Deleted rows are overwritten with zeros, not left in free pages (the
                # default of some builds, Debian's among them, but not of SQLite's own).
                conn.execute("PRAGMA secure_delete=ON")
            except sqlite3.DatabaseError as exc:
                raise GalleryError(f"gallery {self.path} is not an SQLite database or is "
                                   f"corrupt: {exc}") from None
            self._conn = conn
        return self._conn

    def _transaction(self, write: bool = False):
        return _SqliteTransaction(self, write)

    def _has_tables(self, cur) -> bool:
        return self._has_table(cur, "meta")

    def _has_table(self, cur, table: str) -> bool:
        cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return cur.fetchone() is not None

    def _erase_deleted(self) -> None:
        # The WAL still holds the pages as they were before the delete: copy the current
        # pages into the database and empty the WAL. A reader in the middle of a
        # transaction holds it up (for the connection's busy timeout, then it is said).
        conn = self._connect(create=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
            busy, log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"gallery {self.path}: {exc}") from None
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if busy or log != done:
            raise ErasurePending(
                f"gallery {self.path}: another process kept reading, so the erased rows "
                f"stay in {self.path.name}-wal until its next checkpoint")

    def version(self) -> object | None:
        if not self.path.exists():
            self.close()  # deleted: forget the connection to the old file
            return None
        return super().version()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _SqliteTransaction:
    """BEGIN (IMMEDIATE for writers, so two writers queue instead of failing) ... COMMIT."""

    def __init__(self, storage: SqliteStorage, write: bool) -> None:
        self.storage, self.write = storage, write

    def __enter__(self) -> sqlite3.Cursor:
        try:
            self.cur = self.storage._connect(create=self.write).cursor()
            self.cur.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
        except sqlite3.DatabaseError as exc:
            self.storage.close()
            raise GalleryError(f"gallery {self.storage.path}: {exc}") from None
        return self.cur

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            self.cur.execute("COMMIT" if kind is None else "ROLLBACK")
        except sqlite3.DatabaseError as error:
            if kind is None:
                raise GalleryError(f"gallery {self.storage.path}: {error}") from None
        if isinstance(exc, sqlite3.DatabaseError):
            raise GalleryError(f"gallery {self.storage.path}: {exc}") from None
        return False
