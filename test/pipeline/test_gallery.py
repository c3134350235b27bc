"""Gallery files: our format, the original system's JSON, bad input, atomic saves."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fer_ros
from fer_ros.pipeline.recognition import gallery_file, spaces
from fer_ros.pipeline.recognition.gallery import (
    UNKNOWN,
    Gallery,
    GalleryError,
    Match,
    Person,
    checked_embeddings,
    validate_name,
)

DIM = 8


def unit(seed: int, n: int = 1) -> np.ndarray:
    vecs = np.random.default_rng(seed).normal(size=(n, DIM))
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def sample_gallery() -> Gallery:
    gallery = Gallery("model-a", DIM)
    gallery.add("ada", unit(1, 2))
    gallery.add("bob", unit(2))
    return gallery


def test_save_and_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = gallery_file.save(sample_gallery(), tmp_path / "g.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = gallery_file.load(path)
    assert loaded.names() == ["ada", "bob"] and loaded.model == "model-a"
    assert loaded.num_embeddings("ada") == 2
    assert np.allclose(loaded.people["ada"].embeddings, unit(1, 2), atol=1e-6)


def test_match_threshold_and_margin() -> None:
    gallery = sample_gallery()
    ada = unit(1)[0]
    noisy_ada = ada + 0.05 * unit(9)[0]
    stranger = unit(42)[0]
    matches = gallery.match(np.stack([noisy_ada, stranger]), threshold=0.8)
    assert matches[0].name == "ada" and matches[0].similarity > 0.9
    assert matches[1].name == UNKNOWN
    # An ambiguous face (equally close to two people) is unknown under a margin.
    twin = Gallery("model-a", DIM)
    twin.add("x", ada[None])
    twin.add("y", ada[None])
    assert twin.match(ada[None], threshold=0.5, margin=0.05)[0].name == UNKNOWN
    assert twin.match(ada[None], threshold=0.5, margin=0.0)[0].name in {"x", "y"}


def test_empty_gallery_matches_unknown() -> None:
    assert Gallery("m", DIM).match(unit(3, 2), 0.5) == [Match(UNKNOWN, 0.0, "", -1.0)] * 2
    assert Gallery("m", DIM).match(np.zeros((0, DIM)), 0.5) == []


def test_threshold_and_margin_are_inclusive() -> None:
    axis = np.eye(DIM)
    gallery = Gallery("m", DIM)
    gallery.add("ada", axis[:1])
    gallery.add("bob", axis[1:2])
    face = axis[:1]  # exactly ada: similarity 1.0, bob 0.0
    assert gallery.match(face, threshold=1.0, margin=1.0) == [Match("ada", 1.0, "ada", 0.0)]
    assert gallery.match(face, threshold=1.0001, margin=0.0)[0].name == UNKNOWN
    assert gallery.match(face, threshold=0.0, margin=1.0001)[0].name == UNKNOWN


def test_a_person_without_embeddings_is_scored_minus_one() -> None:
    """(A database gallery can hold a name whose embeddings were all removed.)"""
    gallery = Gallery("m", DIM)
    gallery.add("ada", unit(1))
    gallery.people["bob"] = Person("bob", np.zeros((0, DIM), np.float32))
    per_person, names = gallery.similarities(np.concatenate([unit(1), -unit(1)]))
    assert names == ["ada", "bob"]
    np.testing.assert_allclose(per_person, [[1.0, -1.0], [-1.0, -1.0]], atol=1e-6)
    assert gallery.match(unit(1), 0.5)[0].runner_up == -1.0
    only = Gallery("m", DIM)
    only.people["bob"] = Person("bob", np.zeros((0, DIM), np.float32))
    assert only.match(unit(1), 0.5) == [Match(UNKNOWN, -1.0, "bob", -1.0)]


def test_legacy_face_embeddings_pytorch_json(tmp_path: Path) -> None:
    path = tmp_path / "face_embeddings_pytorch.json"
    path.write_text(json.dumps({"ada": unit(1)[0].tolist(), "bob": unit(2, 2).tolist()}))
    gallery = gallery_file.load(path)
    assert gallery.names() == ["ada", "bob"] and gallery.num_embeddings("bob") == 2
    assert gallery.model == "facenet-pytorch-vggface2"
    assert gallery.dim == DIM and gallery.source_format == "face_embeddings_pytorch.json"
    assert gallery.people["bob"].sources == ["legacy:face_embeddings_pytorch.json"] * 2
    assert np.allclose(gallery.people["ada"].embeddings, unit(1))
    path.write_text(json.dumps({"embeddings": unit(4, 3).tolist(),
                                "labels": ["ada", "ada", "cy"]}))
    grouped = gallery_file.load(path, legacy_model="other-model")
    assert grouped.names() == ["ada", "cy"] and grouped.model == "other-model"
    assert np.allclose(grouped.people["ada"].embeddings, unit(4, 3)[:2])
    assert np.allclose(grouped.people["cy"].embeddings, unit(4, 3)[2:])
    path.write_text(json.dumps({"embeddings": unit(5, 2).tolist(), "names": ["dee", 7]}))
    assert gallery_file.load(path).names() == ["7", "dee"]  # names are strings


@pytest.mark.parametrize(("content", "problem"), [
    ({"embeddings": [[1.0, 0.0]], "labels": "ada"}, "'labels' must list one name per embedding"),
    ({"embeddings": [[1.0, 0.0]], "labels": ["ada", "bob"]},
     "'labels' must list one name per embedding"),
    ({"format": "other", "people": {}}, "unknown gallery format 'other'"),
    ({"schema_version": 2, "people": {}}, "unknown gallery format None"),
    ({}, "holds no embeddings"),
    ({"embeddings": [], "labels": []}, "embeddings of 'embeddings' must be a non-empty list"),
    ({"ada": [[1.0, 0.0]], "bob": []}, "embeddings of 'bob' must be a non-empty list"),
    ({"ada": [[1.0, 0.0]], "bob": [[0.0, 0.0]]}, "person 'bob': an embedding is all zeros"),
    ({"ada": [1.0, 0.0], "bob": [[1.0, 0.0, 0.0]]}, "embeddings of different lengths [2, 3]"),
])
def test_legacy_files_that_cannot_be_read(tmp_path: Path, content: dict, problem: str) -> None:
    path = tmp_path / "face_embeddings_pytorch.json"
    path.write_text(json.dumps(content))
    with pytest.raises(GalleryError) as info:
        gallery_file.load(path)
    assert str(info.value).endswith(problem), str(info.value)


def test_a_person_named_like_a_legacy_key_is_a_person(tmp_path: Path) -> None:
    """Only "embeddings" together with "labels" (or "names") is the grouped shape."""
    path = tmp_path / "face_embeddings_pytorch.json"
    path.write_text(json.dumps({"labels": unit(1)[0].tolist(), "names": unit(2)[0].tolist()}))
    assert gallery_file.load(path).names() == ["labels", "names"]
    path.write_text(json.dumps({"embeddings": unit(3)[0].tolist()}))
    assert gallery_file.load(path).names() == ["embeddings"]


def test_mixing_embedding_spaces_is_refused(tmp_path: Path) -> None:
    gallery = sample_gallery()
    with pytest.raises(GalleryError) as info:
        gallery.check_model("model-b")
    assert str(info.value) == (
        "the gallery holds embeddings of 'model-a', but faces are embedded with 'model-b'; "
        "similarities across two models mean nothing: enrol the people again with this "
        "model (`fer-ros enroll --gallery NEW --name NAME PHOTOS...`)")
    path = gallery_file.save(gallery, tmp_path / "g.json")
    with pytest.raises(GalleryError) as info:
        gallery_file.load(path).check_model("model-b")
    assert str(info.value).startswith(f"gallery {path} holds embeddings of 'model-a'")
    gallery.check_model("model-a")  # the same space: nothing to say


@pytest.mark.parametrize(("made_with", "choice"), [(spaces.FACENET, "facenet"),
                                                   (spaces.SFACE, "sface")])
def test_a_gallery_of_a_shipped_model_says_which_embedding_model_reads_it(
        made_with: str, choice: str) -> None:
    gallery = Gallery(made_with, 4)
    other = spaces.SFACE if made_with == spaces.FACENET else spaces.FACENET
    with pytest.raises(GalleryError) as info:
        gallery.check_model(other)
    assert (f"set embedding_model to {choice} (CLI: --embedding-model {choice}) to use it, "
            f"or enrol the people again") in str(info.value)


def test_file_format_is_stable(tmp_path: Path) -> None:
    """The file, byte for byte: other tools (and people) read it."""
    gallery = Gallery("model-a", 2)
    gallery.add("bob", [[3.0, 4.0]], ["cam"])
    gallery.add("ada", [[1.0, 0.0]])
    gallery.created, gallery.updated = "2026-01-02T03:04:05+00:00", "2026-01-03T00:00:00+00:00"
    gallery.people["bob"].added = ["2026-01-02T03:04:06+00:00"]
    gallery.people["ada"].added = ["2026-01-02T03:04:07+00:00"]
    gallery.people["bob"].embeddings[0, 0] = 0.123456789  # rounded to 7 digits
    path = gallery_file.save(gallery, tmp_path / "new" / "folder" / "g.json")
    assert gallery.path == path == tmp_path / "new" / "folder" / "g.json"
    assert path.read_text() == textwrap.dedent("""\
        {
         "format": "fer_ros.gallery",
         "schema_version": 1,
         "model": "model-a",
         "embedding_dim": 2,
         "created": "2026-01-02T03:04:05+00:00",
         "updated": "2026-01-03T00:00:00+00:00",
         "people": {
          "ada": {
           "embeddings": [
            [
             1.0,
             0.0
            ]
           ],
           "added": [
            "2026-01-02T03:04:07+00:00"
           ],
           "sources": [
            ""
           ]
          },
          "bob": {
           "embeddings": [
            [
             0.1234568,
             0.8
            ]
           ],
           "added": [
            "2026-01-02T03:04:06+00:00"
           ],
           "sources": [
            "cam"
           ]
          }
         }
        }""")
    loaded = gallery_file.load(path)
    assert (loaded.created, loaded.updated) == (gallery.created, gallery.updated)
    assert loaded.people["bob"].added == ["2026-01-02T03:04:06+00:00"]
    assert loaded.people["bob"].sources == ["cam"] and loaded.source_format == "fer_ros.gallery"


def test_a_gallery_made_in_memory_needs_a_path_to_be_saved() -> None:
    with pytest.raises(GalleryError, match=r"^no path to save the gallery to$"):
        gallery_file.save(sample_gallery())


def test_edits_say_what_is_wrong_and_stamp_the_change(monkeypatch) -> None:
    from fer_ros.pipeline.recognition import gallery as gallery_module

    ticks = iter(f"2026-01-01T00:00:0{i}+00:00" for i in range(10))
    monkeypatch.setattr(gallery_module, "_now", lambda: next(ticks))
    gallery = Gallery("model-a", DIM)
    assert gallery.created == gallery.updated == "2026-01-01T00:00:00+00:00"
    with pytest.raises(GalleryError) as info:
        gallery.remove("ada")
    assert str(info.value) == "'ada' is not in the gallery (enrolled: nobody)"
    gallery.add("bob", unit(1))
    gallery.add("ada", unit(2))
    assert gallery.updated == "2026-01-01T00:00:02+00:00"
    assert gallery.people["ada"].added == ["2026-01-01T00:00:02+00:00"]
    with pytest.raises(GalleryError) as info:
        gallery.remove("cy")
    assert str(info.value) == "'cy' is not in the gallery (enrolled: ada, bob)"
    gallery.remove("bob")
    assert gallery.updated == "2026-01-01T00:00:03+00:00" and gallery.names() == ["ada"]
    assert (gallery.num_embeddings("ada"), gallery.num_embeddings("bob")) == (1, 0)


@pytest.mark.parametrize("content, problem", [
    ('{"format": "fer_ros.gallery", "schema_version": 1, "model": "m", "embed', "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"format": "fer_ros.gallery", "schema_version": 99, "model": "m", "embedding_dim": 8, '
     '"people": {}}', "schema_version 99"),
    ('{"format": "fer_ros.gallery", "schema_version": 1, "model": "m", "embedding_dim": 8, '
     '"people": {"ada": {"embeddings": [[1, 2, 3]]}}}', "embedding length 3, expected 8"),
    ('{"ada": [NaN, 1.0, 2.0]}', "NaN or infinite"),
    ('{"ada": [Infinity, 1.0, 2.0]}', "NaN or infinite"),
    ('{"ada": [1.0, 2.0], "bob": [1.0, 2.0, 3.0]}', "different lengths"),
    ('{"format": "fer_ros.gallery", "schema_version": 1, "model": "m", "embedding_dim": 2, '
     '"people": {"ada": {"embeddings": [[1, 2], [1]]}}}', "embeddings of different lengths (1, 2)"),
    ('{"ada": "abc"}', "non-empty list"),
    ("", "not valid JSON"),
])
def test_bad_files_give_a_clear_error_naming_the_file(tmp_path: Path, content: str,
                                                      problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(GalleryError) as info:
        gallery_file.load(path)
    assert str(path) in str(info.value) and problem in str(info.value)


@pytest.mark.parametrize("name", ["", "   ", "unknown", "x" * 65, "a\nb"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(GalleryError):
        sample_gallery().add(name, unit(5))


def test_bad_embeddings_leave_the_gallery_as_it_was() -> None:
    gallery = sample_gallery()
    with pytest.raises(GalleryError):
        gallery.add("ada", np.full((1, DIM), np.nan))
    with pytest.raises(GalleryError):
        gallery.add("ada", unit(5)[:, :4])
    with pytest.raises(GalleryError, match="already enrolled"):
        gallery.add("ada", unit(5), on_existing="refuse")
    assert gallery.num_embeddings("ada") == 2


def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = gallery_file.save(sample_gallery(), tmp_path / "g.json")
    before = path.read_bytes()
    gallery = gallery_file.load(path)
    gallery.add("cy", unit(7))

    temporary = []

    def broken_replace(source, _target):
        temporary.append(Path(source))
        assert temporary[0].exists()
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        gallery_file.save(gallery)  # to the file it was read from
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.json"]  # no temp file left behind
    # It was written beside the target (a rename within one file system), hidden.
    assert temporary[0].parent == tmp_path
    assert temporary[0].name.startswith(".g.json.") and temporary[0].suffix == ".tmp"


@pytest.mark.processes
def test_kill_during_save_never_leaves_a_partial_gallery(tmp_path: Path) -> None:
    """SIGKILL a process that saves a large gallery over and over; the file stays whole."""
    path = tmp_path / "g.json"
    script = textwrap.dedent(f"""
        import numpy as np, sys
        from fer_ros.pipeline.recognition.gallery import Gallery
        from fer_ros.pipeline.recognition.gallery_file import save
        g = Gallery("m", 512)
        for i in range(40):
            g.add(f"p{{i}}", np.random.default_rng(i).normal(size=(5, 512)))
        save(g, {str(path)!r})
        print("saved", sys.modules["fer_ros"].__file__, flush=True)
        while True:
            save(g, {str(path)!r})
    """)
    for delay in (0.3, 0.55, 0.8):
        # Started outside the checkout: `python -c` puts its working folder first on the
        # path, and from the checkout's root it would import the source tree instead of
        # the installed package under test (the one this test process imports).
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                cwd=tmp_path)
        assert proc.stdout.readline().decode().split() == ["saved", fer_ros.__file__]
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        gallery = gallery_file.load(path)  # raises if truncated or corrupt
        assert len(gallery) == 40


def test_copies_keep_everything_but_share_no_edits(tmp_path: Path, monkeypatch) -> None:
    from fer_ros.pipeline.recognition import gallery as gallery_module

    path = gallery_file.save(sample_gallery(), tmp_path / "g.json")
    gallery = gallery_file.load(path)
    copy = gallery.copy()
    assert (copy.model, copy.dim, copy.path, copy.source_format) == (
        "model-a", DIM, path, "fer_ros.gallery")
    assert (copy.created, copy.updated) == (gallery.created, gallery.updated)
    assert copy.people["ada"] is gallery.people["ada"]  # shared, never changed in place
    copy.add("cy", unit(3))
    copy.remove("ada")
    assert gallery.names() == ["ada", "bob"] and copy.names() == ["bob", "cy"]
    monkeypatch.setattr(gallery_module, "_now", lambda: "2030-01-01T00:00:00+00:00")
    changed = gallery.with_changes({"nobody": None, "bob": None})  # absent: nothing to do
    assert changed.names() == ["ada"] and changed.updated == "2030-01-01T00:00:00+00:00"
    assert gallery.with_changes({}).updated == gallery.updated  # no change, no new time


OURS = {"format": "fer_ros.gallery", "schema_version": 1, "model": "m", "embedding_dim": 2,
        "people": {}}


@pytest.mark.parametrize(("change", "problem"), [
    ({"model": None}, "no embedding model name"),
    ({"model": ""}, "no embedding model name"),
    ({"embedding_dim": 0}, "bad embedding_dim 0"),
    ({"embedding_dim": "2"}, "bad embedding_dim '2'"),
    ({"people": []}, "'people' must be an object"),
    ({"people": {"ada": {"sources": []}}}, "person 'ada' has no embeddings"),
    ({"people": {"ada": [[1.0, 0.0]]}}, "person 'ada' has no embeddings"),
    ({"people": {"ada": {"embeddings": []}}}, "embeddings of 'ada' must be a non-empty list"),
])
def test_our_format_names_each_problem(tmp_path: Path, change: dict, problem: str) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({**OURS, **change}))
    with pytest.raises(GalleryError) as info:
        gallery_file.load(path)
    assert str(info.value) == f"gallery {path}: {problem}"


def test_our_format_without_its_optional_fields(tmp_path: Path) -> None:
    """created, updated, added and sources may be missing or unusable: defaults, no error."""
    path = tmp_path / "g.json"
    path.write_text(json.dumps({**OURS, "embedding_dim": 1, "people": {
        "ada": {"embeddings": [[2.0]]},
        "bob": {"embeddings": [[1.0], [-1.0]], "sources": ["one"], "added": "yesterday"}}}))
    gallery = gallery_file.load(path)
    assert gallery.dim == 1 and gallery.names() == ["ada", "bob"]
    assert gallery.created != "None" and gallery.updated == gallery.created
    assert gallery.people["bob"].sources == ["", ""]  # one source for two: left out
    assert gallery.people["bob"].added == [gallery.people["bob"].added[0]] * 2
    assert gallery.people["bob"].added[0] != "yesterday"
    path.write_text(json.dumps({**OURS, "created": "c", "people": {}}))
    assert (gallery_file.load(path).created, gallery_file.load(path).updated) == ("c", "c")


def test_a_gallery_that_cannot_be_read_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.json"
    folder.mkdir()
    with pytest.raises(GalleryError, match=rf"^gallery {folder} cannot be read: .*directory"):
        gallery_file.load(folder)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"José": [1.0]}'.encode("latin-1"))  # not UTF-8
    with pytest.raises(GalleryError, match=rf"^gallery {latin1} cannot be read: .*utf-8"):
        gallery_file.load(latin1)
    utf8 = tmp_path / "utf8.json"
    utf8.write_text(json.dumps({"José": [1.0, 0.0]}, ensure_ascii=False), encoding="utf-8")
    assert gallery_file.load(utf8).names() == ["José"]


@pytest.mark.parametrize(("name", "problem"), [
    (7, "name must be a string, not int"),
    ("", "name is empty"),
    ("   ", "name is empty"),
    ("x" * 65, "name is 65 characters long; at most 64 are allowed"),
    ("a\nb", "name 'a\\nb' holds control characters"),
    (" Unknown ", "'unknown' is reserved for faces that match nobody"),
])
def test_each_bad_name_is_named(name: object, problem: str) -> None:
    with pytest.raises(GalleryError) as info:
        validate_name(name)
    assert str(info.value) == problem
    assert validate_name(" " + "x" * 64 + " ") == "x" * 64  # 64 is allowed, spaces cut


@pytest.mark.parametrize(("values", "problem"), [
    ([[1.0, 0.0], [1.0]], "where: embeddings of different lengths (1, 2)"),
    ([["a", 0.0]], "where: embeddings are not numbers (could not convert string to float: 'a')"),
    # Rows of other lengths, one of them not a list: not numbers, whatever the lengths.
    ([[1.0, 0.0], "abc"], "where: embeddings are not numbers (setting an array element with "
     "a sequence. The requested array has an inhomogeneous shape after 1 dimensions. The "
     "detected shape was (2,) + inhomogeneous part.)"),
    (np.zeros((0, 2)), "where: expected a list of embeddings, got shape (0, 2)"),
    ([], "where: embedding length 0, expected 2"),
    ([[[1.0]]], "where: expected a list of embeddings, got shape (1, 1, 1)"),
    ([[1.0, 0.0, 0.0]], "where: embedding length 3, expected 2"),
    ([[1e-7, 0.0]], "where: an embedding is all zeros"),
])
def test_each_bad_embedding_is_named(values: object, problem: str) -> None:
    with pytest.raises(GalleryError) as info:
        checked_embeddings(values, 2, "where")
    assert str(info.value) == problem


def test_embeddings_become_float32_unit_rows() -> None:
    # 1e-6, the least norm that is not taken for all zeros, is still a direction.
    rows = checked_embeddings([[3.0, 4.0], [1e-6, 0.0]], 2, "where")
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, [[0.6, 0.8], [1.0, 0.0]], atol=1e-7)
    assert checked_embeddings([1.0, 0.0], None, "where").shape == (1, 2)  # one row


def test_appending_keeps_the_name_and_stamps_each_embedding(monkeypatch) -> None:
    from fer_ros.pipeline.recognition import gallery as gallery_module

    ticks = iter(["2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00",
                  "2026-01-01T00:00:02+00:00"])
    monkeypatch.setattr(gallery_module, "_now", lambda: next(ticks))
    gallery = Gallery("m", DIM)
    assert gallery.source_format == ""  # made in memory, not read from anywhere
    gallery.add("ada", unit(1), ["first"])
    person = gallery.add("ada", unit(2, 2), ["second", "third"])
    assert person.name == "ada" and person.sources == ["first", "second", "third"]
    assert person.added == ["2026-01-01T00:00:01+00:00"] + ["2026-01-01T00:00:02+00:00"] * 2
    with pytest.raises(GalleryError) as info:
        gallery.add("ada", [[1.0, 2.0]])
    assert str(info.value) == f"embeddings for 'ada': embedding length 2, expected {DIM}"
    with pytest.raises(GalleryError) as info:
        gallery.add("bob", unit(3), on_existing="merge")
    assert str(info.value) == ("unknown duplicate-name policy 'merge' (one of append, "
                               "replace, refuse)")


def test_times_are_utc_to_the_second() -> None:
    from fer_ros.pipeline.recognition.gallery import _now

    stamp = _now()
    assert stamp.endswith("+00:00") and len(stamp) == len("2026-01-01T00:00:00+00:00")
