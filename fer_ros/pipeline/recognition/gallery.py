"""The gallery of enrolled people in memory: match faces against it, and edit it.

Matching rule: a face's similarity to a person is the best cosine similarity over
that person's embeddings. The face is named after the best person when that
similarity is at least ``threshold`` *and* beats the best *other* person by at least
``margin``; otherwise it is "unknown" (too far from everyone, or ambiguous).

Every embedding is checked (finite, not zero, of the gallery's length) and
L2-normalised as it comes in; names are checked by `validate_name`. A gallery in
another embedding space than the recogniser's is refused (`check_model`): cosine
similarities across spaces are meaningless. Files: gallery_file.py; databases: storage/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fer_ros.pipeline.recognition import index as gallery_index
from fer_ros.pipeline.recognition.index import IndexPlan, Int8Index
from fer_ros.pipeline.recognition.spaces import embedding_model_of
from fer_ros.pipeline.types import UNKNOWN

MAX_NAME_LENGTH = 64
ON_EXISTING = ("append", "replace", "refuse")  # what an enrolment of a known name does


class GalleryError(ValueError):
    """A gallery file or edit is invalid; the message names the file and the problem."""


class GalleryUnavailable(GalleryError):
    """The gallery cannot be reached right now (a database server that went away)."""


class ErasurePending(GalleryError):
    """People were forgotten (rows deleted, tombstones kept, committed), but the bytes they
    left could not be overwritten yet; ``removed``: embeddings erased, ``stale``: the
    people retention forgot."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.removed = 0
        self.stale: list[tuple[str, str]] = []


@dataclass
class Match:
    name: str  # best person, or UNKNOWN
    similarity: float  # cosine similarity to the best person (even when UNKNOWN)
    best: str  # best person regardless of the threshold ("" for an empty gallery)
    runner_up: float  # best similarity among the other people (-1 if none)


@dataclass
class Person:
    name: str
    embeddings: np.ndarray  # (K, D) float32, L2-normalised
    added: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def validate_name(name: str) -> str:
    """Return the cleaned name or raise GalleryError saying what is wrong with it."""
    if not isinstance(name, str):
        raise GalleryError(f"name must be a string, not {type(name).__name__}")
    cleaned = name.strip()
    if not cleaned:
        raise GalleryError("name is empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise GalleryError(f"name is {len(cleaned)} characters long; at most "
                           f"{MAX_NAME_LENGTH} are allowed")
    if not cleaned.isprintable():
        raise GalleryError(f"name {cleaned!r} holds control characters")
    if cleaned.lower() == UNKNOWN:
        raise GalleryError(f"{UNKNOWN!r} is reserved for faces that match nobody")
    return cleaned


def check_on_existing(on_existing: str) -> None:
    if on_existing not in ON_EXISTING:
        raise GalleryError(f"unknown duplicate-name policy {on_existing!r} (one of "
                           f"{', '.join(ON_EXISTING)})")


def checked_embeddings(values: object, dim: int | None, where: str) -> np.ndarray:
    """(K, dim) float32 L2-normalised rows, or GalleryError naming ``where`` and the
    problem (ragged rows, not numbers, another length, NaN, all zeros)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        # Rows of different lengths: name that, rather than numpy's "inhomogeneous shape"
        # (looked for only here, off the path of every good gallery load).
        if isinstance(values, list) and all(isinstance(v, list) for v in values):
            lengths = sorted({len(v) for v in values})
            if len(lengths) > 1:
                raise GalleryError(f"{where}: embeddings of different lengths "
                                   f"({', '.join(map(str, lengths))})") from None
        raise GalleryError(f"{where}: embeddings are not numbers ({exc})") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise GalleryError(f"{where}: expected a list of embeddings, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise GalleryError(f"{where}: embedding length {arr.shape[1]}, expected {dim}")
    if not np.all(np.isfinite(arr)):
        raise GalleryError(f"{where}: embeddings contain NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms < 1e-6):
        raise GalleryError(f"{where}: an embedding is all zeros")
    return (arr / norms).astype(np.float32)


class Gallery:
    """Enrolled people in one embedding space."""

    def __init__(self, model: str, dim: int, path: Path | None = None) -> None:
        self.model = model
        self.dim = dim
        self.path = path
        self.people: dict[str, Person] = {}
        # Tombstones: name -> when that person was forgotten (no biometric data). Copies
        # and imports never bring back what was added before it (storage.copy_gallery).
        self.forgotten: dict[str, str] = {}
        # name -> when someone last saw them (coarse: GallerySync writes it at most once a
        # minute); retention forgets people not seen for a while (storage.expire).
        self.last_seen: dict[str, str] = {}
        # When retention first ran on this gallery: nobody's last contact counts as
        # earlier (people enrolled before last-seen times were kept are not erased at once).
        self.retention_since = ""
        self.created = _now()
        self.updated = self.created
        self.source_format = ""  # the format it was read from ("": made in memory)
        self._matrix: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None = None
        self._index: Int8Index | None = None  # may be built on an earlier state: see IndexPlan
        self._plan: IndexPlan | bool | None = None  # None: not decided; False: no index

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.people)

    def names(self) -> list[str]:
        return sorted(self.people)

    def num_embeddings(self, name: str) -> int:
        person = self.people.get(name)
        return 0 if person is None else len(person.embeddings)

    def _stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """All embeddings in one matrix, person after person (in name order), with the
        first row of each person that has any and that person's column."""
        if self._matrix is None:
            names = sorted(self.people)
            mats = [self.people[n].embeddings for n in names]
            counts = np.array([len(m) for m in mats], dtype=np.int64)
            present = np.flatnonzero(counts)
            starts = (np.cumsum(counts) - counts)[present]
            matrix = np.concatenate([np.zeros((0, self.dim), np.float32), *mats])
            self._matrix = (np.ascontiguousarray(matrix, np.float32), starts, present, names)
        return self._matrix

    def adopt_matrix(self, matrix: np.ndarray, order: list[str]) -> None:
        """Match against ``matrix`` (every embedding, person after person in ``order``,
        as a database read gives them) instead of stacking a second copy, when ``order``
        is name order: half the memory for a large gallery."""
        names = sorted(self.people)
        if order != names:
            return
        counts = np.array([len(self.people[n].embeddings) for n in names], dtype=np.int64)
        if counts.sum() != len(matrix):
            return
        present = np.flatnonzero(counts)
        self._matrix = (matrix, (np.cumsum(counts) - counts)[present], present, names)

    def similarities(self, embeddings: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """(N, P) best cosine similarity of each face to each person, and the names.

        One matrix product over every embedding, then the maximum of each person's
        consecutive columns (np.maximum.reduceat): no per-person loop.
        """
        matrix, starts, present, names = self._stacked()
        emb = np.asarray(embeddings, np.float32).reshape(-1, self.dim)
        per_person = np.full((len(emb), len(names)), -1.0, np.float32)  # -1: no embeddings
        sims = emb @ matrix.T  # (N, total embeddings); both sides L2-normalised
        per_person[:, present] = np.maximum.reduceat(sims, starts, axis=1)
        return per_person, names

    def prepare(self) -> IndexPlan | None:
        """Decide how to match, and build what that needs: an int8 index for a large
        gallery (recognition/index.py; 0.2 s at 10,000 people), reused from the gallery this
        one was copied from while it is not stale. FacePipeline.set_gallery calls this, so
        no frame waits for it."""
        if self._plan is None:
            rows = sum(len(person.embeddings) for person in self.people.values())
            plan: IndexPlan | bool = False
            if rows >= gallery_index.MIN_ROWS and gallery_index.int8_runtime_available():
                plan = IndexPlan(self._index, self.people) if self._index is not None \
                    else False
                if plan is False or plan.stale:
                    matrix, starts, present, names = self._stacked()
                    self._index = Int8Index(matrix, starts, present, names,
                                            [self.people[name] for name in names])
                    plan = IndexPlan(self._index, self.people)
            self._plan = plan
        return self._plan or None

    def match(self, embeddings: np.ndarray, threshold: float, margin: float = 0.0) -> list[Match]:
        plan = self.prepare()
        if plan is not None and len(embeddings):
            emb = np.asarray(embeddings, np.float32).reshape(-1, self.dim)
            tops = plan.top_two(emb)
        else:
            per_person, names = self.similarities(embeddings)
            if not names:
                return [Match(UNKNOWN, 0.0, "", -1.0) for _ in range(len(per_person))]
            tops = _top_two(per_person, names)
        return [Match(best if sim >= threshold and sim - second >= margin else UNKNOWN,
                      sim, best, second) for best, sim, second in tops]

    # ------------------------------------------------------------------ edits
    def add(self, name: str, embeddings: np.ndarray | list, sources: list[str] | None = None,
            on_existing: str = "append") -> Person:
        """Add embeddings for ``name``. on_existing: append | replace | refuse."""
        name = validate_name(name)
        check_on_existing(on_existing)
        new = checked_embeddings(embeddings, self.dim, f"embeddings for {name!r}")
        sources = list(sources or [""] * len(new))
        stamp = _now()
        existing = self.people.get(name)
        if existing is not None and on_existing == "refuse":
            raise GalleryError(f"{name!r} is already enrolled "
                               f"({len(existing.embeddings)} embeddings); use append or replace")
        if existing is None or on_existing == "replace":
            person = Person(name, new, [stamp] * len(new), sources)
        else:
            person = Person(name, np.concatenate([existing.embeddings, new]),
                            existing.added + [stamp] * len(new), existing.sources + sources)
        self.people[name] = person
        self.updated = stamp
        self._matrix, self._plan = None, None
        return person

    def remove(self, name: str) -> None:
        if name not in self.people:
            raise GalleryError(f"{name!r} is not in the gallery (enrolled: "
                               f"{', '.join(self.names()) or 'nobody'})")
        del self.people[name]
        self.updated = _now()
        self._matrix, self._plan = None, None

    def forget(self, name: str, at: str | None = None) -> int:
        """Erase what ``name`` had enrolled up to ``at`` (default: now, everything) and
        keep a dated tombstone; how many embeddings went. A name that is not enrolled still
        gets its tombstone: an old copy must not bring that person back either."""
        name = validate_name(name)
        at = at or _now()
        removed = 0
        person = self.people.get(name)
        if person is not None:
            keep = [i for i, added in enumerate(person.added) if added > at]
            removed = len(person.embeddings) - len(keep)
            if keep:
                self.people[name] = Person(name, person.embeddings[keep],
                                           [person.added[i] for i in keep],
                                           [person.sources[i] for i in keep])
            else:
                del self.people[name]
        self.forgotten[name] = max(self.forgotten.get(name, ""), at)
        if name not in self.people:
            self.last_seen.pop(name, None)  # presence is personal data too
        self.updated = _now()
        self._matrix, self._plan = None, None
        return removed

    def last_contact(self, name: str) -> str:
        """When ``name`` was last seen, or else last enrolled ("" if unknown)."""
        person = self.people.get(name)
        enrolled = max(person.added) if person is not None and person.added else ""
        return max(self.last_seen.get(name, ""), enrolled)

    def copy(self) -> Gallery:
        """An independent gallery sharing the Person objects (edits replace a Person,
        never change one in place), so copying costs a dict, not the embeddings."""
        other = Gallery(self.model, self.dim, self.path)
        other.people = dict(self.people)
        other.forgotten = dict(self.forgotten)
        other.last_seen = dict(self.last_seen)
        other.retention_since = self.retention_since
        other.created, other.updated = self.created, self.updated
        other.source_format = self.source_format
        other._index = self._index  # read-only; the copy's own plan says what it can use
        return other

    def with_changes(self, changes: dict[str, Person | None]) -> Gallery:
        """A copy with these people replaced (None: removed), e.g. from another process."""
        other = self.copy()
        for name, person in changes.items():
            if person is None:
                other.people.pop(name, None)
            else:
                other.people[name] = person
        if changes:
            other.updated = _now()
        return other

    def check_model(self, model: str) -> None:
        """GalleryError unless the gallery holds embeddings of ``model``, saying how to
        get on: choose the gallery's model, or enrol the people again."""
        if self.model != model:
            where = f"gallery {self.path}" if self.path else "the gallery"
            choice = embedding_model_of(self.model)
            switch = (f"set embedding_model to {choice} (CLI: --embedding-model {choice}) "
                      f"to use it, or " if choice else "")
            raise GalleryError(
                f"{where} holds embeddings of {self.model!r}, but faces are embedded with "
                f"{model!r}; similarities across two models mean nothing: {switch}enrol "
                f"the people again with this model (`fer-ros enroll --gallery NEW --name NAME "
                f"PHOTOS...`)")


def _top_two(per_person: np.ndarray, names: list[str]) -> list[tuple[str, float, float]]:
    """(best person, their similarity, the best other person's; -1 if none) per row."""
    rows = np.arange(len(per_person))
    best = per_person.argmax(axis=1)
    best_sim = per_person[rows, best]
    if len(names) > 1:
        others = per_person.copy()
        others[rows, best] = -np.inf
        runner_up = others.max(axis=1)
    else:
        runner_up = np.full(len(per_person), -1.0)
    return [(names[j], float(best_sim[i]), float(runner_up[i])) for i, j in enumerate(best)]

