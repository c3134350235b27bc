"""`fer-ros` commands as a user runs them: enrolment policies and bad images, removing
people, copying galleries to and from PostgreSQL, and fetches that are idempotent and
never download what the cache already holds."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import data_path
from pgutil import PostgresCluster, postgres  # noqa: F401 (fixture)

from fer_ros.paths import cache_dir, fer_ros_command
from fer_ros.pipeline.recognition.storage import open_storage

# Their first four training images each hold one face the detector finds.
PERSON, OTHER = "mindy_kaling", "madonna"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*fer_ros_command(), *args], capture_output=True, text=True,
                          check=False, timeout=600, env={**os.environ, **(env or {})})


def enroll(gallery: Path | str, name: str, *images: Path, options: tuple[str, ...] = ()
           ) -> subprocess.CompletedProcess:
    return run_cli("enroll", "--gallery", str(gallery), "--name", name, "--device", "cpu",
                   *options, *map(str, images))


def contents(location: Path | str) -> dict[str, list[str]]:
    """Each enrolled name and the source image of each of its embeddings, in order."""
    gallery = open_storage(str(location)).load()
    for person in gallery.people.values():
        assert len(person.sources) == len(person.embeddings)
    return {name: list(gallery.people[name].sources) for name in gallery.names()}


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_enroll_policies_and_bad_images(tmp_path: Path) -> None:
    gallery = tmp_path / "people.db"
    good = sorted(data_path("celebrity", "train", PERSON).glob("*.jpg"))[:4]
    several = data_path("pyfeat", "multi_face.jpg")
    nobody = data_path("pyfeat", "free-mountain-vector-01.jpg")

    # --skip-bad: the good images are enrolled, each bad one refused by name.
    result = enroll(gallery, PERSON, good[0], several, good[1], nobody, options=("--skip-bad",))
    assert result.returncode == 0, result.stderr
    refused = [line for line in error_lines(result) if line.startswith("refused: ")]
    assert len(refused) == 2, result.stderr
    assert str(several) in refused[0] and "5 faces found" in refused[0]
    assert str(nobody) in refused[1] and "no face found" in refused[1]
    assert f"enrolled {PERSON!r}: 2 image(s) added, 2 embedding(s) in total" in result.stdout
    assert contents(gallery) == {PERSON: [str(good[0]), str(good[1])]}

    # --skip-bad with nothing usable: one clear error, nothing written.
    before = contents(gallery)
    result = enroll(gallery, OTHER, several, nobody, options=("--skip-bad",))
    assert result.returncode == 1
    assert error_lines(result)[-1] == "fer-ros enroll: no usable face; gallery left unchanged"
    assert contents(gallery) == before

    # append (the default) adds to the person; replace keeps only the new images.
    result = enroll(gallery, PERSON, good[2])
    assert result.returncode == 0, result.stderr
    assert contents(gallery) == {PERSON: [str(good[0]), str(good[1]), str(good[2])]}
    result = enroll(gallery, PERSON, good[3], options=("--on-existing", "replace"))
    assert result.returncode == 0, result.stderr
    assert "1 image(s) added, 1 embedding(s) in total" in result.stdout
    assert contents(gallery) == {PERSON: [str(good[3])]}

    # refuse: an enrolled name is an error naming it and the gallery, nothing changes;
    # a new name is enrolled as usual.
    other_images = sorted(data_path("celebrity", "train", OTHER).glob("*.jpg"))[:2]
    before = contents(gallery)
    result = enroll(gallery, PERSON, good[0], options=("--on-existing", "refuse"))
    assert result.returncode == 1
    assert error_lines(result) == [
        f"fer-ros enroll: {PERSON!r} is already enrolled in {gallery}"], result.stderr
    assert result.stdout == ""
    assert contents(gallery) == before
    result = enroll(gallery, OTHER, *other_images, options=("--on-existing", "refuse"))
    assert result.returncode == 0, result.stderr
    assert "2 people in" in result.stdout
    assert contents(gallery) == {PERSON: [str(good[3])],
                                 OTHER: [str(p) for p in other_images]}

    # Without --skip-bad a bad image stops the whole enrolment.
    result = enroll(gallery, OTHER, good[0], nobody)
    assert result.returncode == 1
    assert error_lines(result)[-1] == ("fer-ros enroll: 1 of 2 image(s) refused; gallery left "
                                       "unchanged (fix them or pass --skip-bad)")
    assert len(contents(gallery)[OTHER]) == 2


def write_gallery(location: str, people: dict[str, int], dim: int = 8) -> None:
    """A gallery of random unit embeddings: ``people`` maps names to embedding counts."""
    rng = np.random.default_rng(3)
    storage = open_storage(location, "test-model", dim)
    for name, count in people.items():
        vectors = rng.standard_normal((count, dim))
        storage.add(name, vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
                    [f"{name}_{i}.jpg" for i in range(count)])


def test_gallery_remove(tmp_path: Path) -> None:
    gallery = tmp_path / "people.json"
    write_gallery(str(gallery), {"ada": 2, "bob": 1, "cy": 3})
    result = run_cli("gallery", "remove", str(gallery), "ada", "cy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "removed ada, cy; 1 people left"
    assert contents(gallery) == {"bob": ["bob_0.jpg"]}
    # All or nothing: bob stays when another name asked for is not there.
    result = run_cli("gallery", "remove", str(gallery), "bob", "ada")
    assert result.returncode == 1
    assert error_lines(result) == [
        f"fer-ros gallery: 'ada' not in the gallery {gallery} (enrolled: bob); "
        "nobody removed"], result.stderr
    assert result.stdout == ""
    assert contents(gallery) == {"bob": ["bob_0.jpg"]}


def test_export_to_and_import_from_postgres(tmp_path: Path,
                                            postgres: PostgresCluster) -> None:  # noqa: F811
    local = tmp_path / "robot.db"
    people = {"ada": 3, "bob": 1}
    write_gallery(str(local), people)
    result = run_cli("gallery", "export", str(local), postgres.url)
    assert result.returncode == 0, result.stderr
    assert "copied 2 people from" in result.stdout
    shared = open_storage(postgres.url).load()
    original = open_storage(str(local)).load()
    assert (shared.model, shared.dim) == ("test-model", 8)
    assert shared.names() == ["ada", "bob"]
    for name, count in people.items():
        assert len(shared.people[name].embeddings) == count
        np.testing.assert_allclose(shared.people[name].embeddings,
                                   original.people[name].embeddings, atol=1e-6)
        assert shared.people[name].sources == original.people[name].sources
    listed = run_cli("gallery", "list", postgres.url)
    assert listed.returncode == 0, listed.stderr
    assert "ada: 3 embedding(s)" in listed.stdout and "bob: 1 embedding(s)" in listed.stdout

    # Another robot's gallery into the same database: its people are added, a person
    # in both takes the copied embeddings (no duplicates).
    other = tmp_path / "other.json"
    write_gallery(str(other), {"bob": 2, "cy": 1})
    result = run_cli("gallery", "import", postgres.url, str(other))
    assert result.returncode == 0, result.stderr
    assert {name: len(s) for name, s in contents(postgres.url).items()} == {
        "ada": 3, "bob": 2, "cy": 1}
    # And back out of PostgreSQL into a file.
    back = tmp_path / "back.json"
    result = run_cli("gallery", "import", str(back), postgres.url)
    assert result.returncode == 0, result.stderr
    assert contents(back) == contents(postgres.url)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


# pip may not reach any index: a fetch that tries to download fails instead of passing.
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}


@pytest.fixture
def cache_copy(tmp_path: Path) -> Path:
    """A copy of the filled cache, so fetching again cannot disturb other tests."""
    source = cache_dir()
    if not (source / "models").is_dir() or not (source / "data").is_dir():
        pytest.fail(f"{source} holds no models or data: run `make setup testdata` "
                    "(or `fer-ros models fetch` and `fer-ros data fetch`)")
    copy = tmp_path / "cache"
    shutil.copytree(source, copy)
    return copy


def test_models_fetch_again_changes_nothing(cache_copy: Path) -> None:
    before = snapshot(cache_copy)
    result = run_cli("models", "fetch", env={**OFFLINE, "FER_ROS_CACHE": str(cache_copy)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(cache_copy) == before
    # One line per model, each naming its file in the cache.
    lines = result.stdout.splitlines()
    labels = [line.split(": ")[1] for line in lines]
    assert labels == ["MTCNN detector", "YuNet face search", "FaceNet embedder",
                      "emotion classifier",
                      "FaceNet embedder (ONNX)", "emotion classifier (ONNX)",
                      "SFace embedder (ONNX)"], lines
    for line in lines[1:]:
        assert f": {cache_copy / 'models'}/" in line, line


def test_data_fetch_again_changes_nothing_and_a_missing_file_is_not_downloaded(
        cache_copy: Path) -> None:
    env = {**OFFLINE, "FER_ROS_CACHE": str(cache_copy)}
    before = snapshot(cache_copy)
    result = run_cli("data", "fetch", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(cache_copy) == before
    assert result.stdout.splitlines() == [
        f"data: {name}: {cache_copy / 'data' / name}"
        for name in ("pyfeat", "celebrity", "astronaut", "scenes", "insightface")]
    # A file gone from a fetched dataset is fetched again from its registry package: here
    # offline, so the command fails naming the package, and the other datasets stay.
    (cache_copy / "data" / "astronaut" / "astronaut.png").unlink()
    result = run_cli("data", "fetch", "astronaut", env=env)
    assert result.returncode == 1
    assert "could not download scikit-image==0.26.0" in result.stderr, result.stdout + result.stderr
    assert not (cache_copy / "data" / "astronaut" / "astronaut.png").exists()
