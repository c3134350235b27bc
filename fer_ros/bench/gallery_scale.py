"""`fer-ros bench --gallery-scale`: matching, loading and enrolling at 100 to 100,000 people.

Each size is measured in a child process of its own, with one BLAS/torch thread (the
node's setting) and a fresh resident set: random unit embeddings, 3 per person, in an
SQLite gallery in a temporary folder; 5 faces matched per frame, as with a group.

Reported per size: match_ms (median of 5 faces against everyone), load_s (read the
whole gallery), index_s (build the int8 index of a gallery of 8,192 embeddings or more,
recognition/index.py; 0 below that), enrol_ms (one persisted enrolment: one transaction), take_in_ms
(what a node then spends taking it in: the change read back and the match matrix
rebuilt), rss_mib (resident memory of the loaded gallery above the process's start)
and raw_mib (the embeddings as float32, for comparison).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from fer_ros.pipeline.recognition.storage import open_storage

SIZES = (100, 1_000, 10_000, 100_000)
PER_PERSON = 3
DIM = 512
FACES = 5
MODEL = "bench-random"


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _median_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(people: int) -> dict[str, float]:
    """One size, in this process (run it in a fresh one: see `run`)."""
    rng = np.random.default_rng(people)
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "gallery.db")
        writer = open_storage(path, MODEL, DIM)
        for first in range(0, people, 5_000):  # in chunks: bounded memory while writing
            writer.add_many([(f"p{i:06d}", _unit(rng, PER_PERSON), ["bench"] * PER_PERSON)
                             for i in range(first, min(people, first + 5_000))])
        reader = open_storage(path, MODEL, DIM)
        base = process.memory_info().rss
        start = time.perf_counter()
        gallery, version = reader.snapshot()
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        indexed = gallery.prepare()  # the int8 index of a large gallery (as set_gallery does)
        index_s = time.perf_counter() - start if indexed is not None else 0.0  # none built
        faces = _unit(rng, FACES)
        gallery.match(faces, 0.5, 0.05)  # warm-up
        match_ms = _median_ms(lambda: gallery.match(faces, 0.5, 0.05), 9)
        rss_mib = (process.memory_info().rss - base) / 2**20
        enrol_ms = _median_ms(lambda: writer.add("newcomer", _unit(rng, 1), ["bench"]), 5)

        def take_in() -> None:
            changes, _ = reader.changes_since(version)
            gallery.with_changes(changes).match(faces, 0.5, 0.05)

        take_in_ms = max(0.0, _median_ms(take_in, 3) - match_ms)
        reader.close()
        writer.close()
    return {"match_ms": round(match_ms, 3), "load_s": round(load_s, 3),
            "index_s": round(index_s, 3),
            "enrol_ms": round(enrol_ms, 2), "take_in_ms": round(take_in_ms, 1),
            "rss_mib": round(rss_mib, 1),
            "raw_mib": round(people * PER_PERSON * DIM * 4 / 2**20, 1)}


def run(sizes: tuple[int, ...] = SIZES) -> dict[str, dict[str, float]]:
    """Every size in a child process with one thread; {"<people>": figures}."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    results = {}
    for people in sizes:
        # -P: import the installed fer_ros, never a source tree in the caller's cwd.
        out = subprocess.run([sys.executable, "-P", "-m", "fer_ros.bench.gallery_scale",
                              str(people)],
                             capture_output=True, text=True, env=env, check=True)
        results[str(people)] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
