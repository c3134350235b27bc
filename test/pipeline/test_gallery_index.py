"""The int8 index (gallery_index.py) gives exactly the float32 rule's matches."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fer_ros.pipeline.recognition import index as gallery_index
from fer_ros.pipeline.recognition.gallery import Gallery, Match, Person

DIM = 512


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(rng: np.random.Generator, rows: np.ndarray, noise: float) -> np.ndarray:
    v = rows + noise * unit(rng, len(rows))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def indexed(monkeypatch) -> None:
    """Any gallery with an embedding goes through the index (normally 8,192 or more)."""
    monkeypatch.setattr(gallery_index, "MIN_ROWS", 1)


def float32_matches(gallery: Gallery, faces: np.ndarray, threshold: float = 0.5,
                    margin: float = 0.05) -> list[Match]:
    """Today's rule: one float32 product over everyone."""
    plain = gallery.copy()
    plain._index, plain._plan = None, False
    return plain.match(faces, threshold, margin)


def assert_same(got: list[Match], want: list[Match]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert (a.name, a.best) == (b.name, b.best), (a, b)
        assert a.similarity == pytest.approx(b.similarity, abs=1e-6), (a, b)
        assert a.runner_up == pytest.approx(b.runner_up, abs=1e-6), (a, b)


def make_gallery(rng: np.random.Generator, people: int) -> Gallery:
    """2 or 3 embeddings each, a few with 12 (beyond the slots), and two twins."""
    gallery = Gallery("test-model", DIM)
    for i in range(people):
        count = 12 if i % 97 == 5 else 2 if i % 7 == 0 else 3
        gallery.people[f"p{i:04d}"] = Person(f"p{i:04d}", unit(rng, count))
    twin = gallery.people["p0010"].embeddings
    gallery.people["a-twin"] = Person("a-twin", twin.copy())  # ties go to the first name
    return gallery


def faces_for(rng: np.random.Generator, gallery: Gallery) -> np.ndarray:
    enrolled = np.stack([gallery.people[n].embeddings[0] for n in ("p0003", "p0021", "p0040")])
    return np.concatenate([unit(rng, 6), near(rng, enrolled, 0.4), near(rng, enrolled, 1.2),
                           gallery.people["p0010"].embeddings[:1]])


def test_index_matches_the_float32_rule_exactly(indexed) -> None:
    rng = np.random.default_rng(7)
    gallery = make_gallery(rng, 400)
    plan = gallery.prepare()
    assert plan is not None and plan.index.slots >= 2 and len(plan.index.overflow_owner) > 0
    faces = faces_for(rng, gallery)
    got = gallery.match(faces, 0.5, 0.05)
    assert_same(got, float32_matches(gallery, faces))
    assert got[-1].best == "a-twin" and got[-1].runner_up == pytest.approx(1.0)
    assert {m.name for m in got[6:9]} == {"p0003", "p0021", "p0040"}  # the close ones named


def test_error_bound_holds_for_every_person(indexed) -> None:
    rng = np.random.default_rng(8)
    gallery = make_gallery(rng, 300)
    index = gallery.prepare().index
    faces = np.concatenate([faces_for(rng, gallery), np.eye(DIM, dtype=np.float32)[:4]])
    best, unit_, error = index.approximate(faces)
    exact = index.exact(faces, np.arange(len(index.names)))
    assert np.all(np.abs(best * unit_[:, None] - exact) <= error[:, None])
    assert np.all(error < 0.05)  # and the bound is tight enough to prune


def aligned_faces(index: gallery_index.Int8Index) -> tuple[np.ndarray, int]:
    """Two faces that make each term of the bound (module docstring of index.py) nearly
    as large as it may be, for the indexed row with the largest quantisation residual:
    one along that residual, one whose own quantisation residual lies along the row."""
    matrix = index.matrix.astype(np.float64)
    scale = index.scale
    residuals = matrix - scale * np.rint(matrix / scale)
    row = int(np.argmax(np.linalg.norm(residuals, axis=1)))
    along_residual = residuals[row] / np.linalg.norm(residuals[row])
    # One large value that sets the face's scale, plus the row so small that it
    # quantises to zero: the face's residual is (nearly) the row itself.
    axis = int(np.argmin(np.abs(matrix[row])))
    small = 0.9 / (254 * np.abs(matrix[row]).max())
    along_row = small * matrix[row]
    along_row[axis] = 1.0
    faces = np.stack([along_residual, along_row / np.linalg.norm(along_row)])
    return faces.astype(np.float32), row


def test_error_bound_is_sound_and_tight_for_the_worst_faces(indexed) -> None:
    """Random faces stay far inside the bound; these two reach 70% of it. So a bound 30%
    too small misses their error, and one 20% too large (which would prune less) fails
    the second check."""
    rng = np.random.default_rng(14)
    gallery = Gallery("test-model", DIM)
    for i in range(64):
        gallery.people[f"p{i:02d}"] = Person(f"p{i:02d}", unit(rng, 1))
    index = gallery.prepare().index
    faces, row = aligned_faces(index)
    person = np.searchsorted(index.starts, row, side="right") - 1
    best, unit_, error = index.approximate(faces)
    exact = index.exact(faces, np.array([person]))[:, 0]
    deviation = np.abs(best[:, person] * unit_ - exact)
    assert np.all(deviation <= error)
    assert np.all(deviation >= 0.6 * error), (deviation, error)


def test_int8_products_are_exact_at_the_extremes() -> None:
    """uint8 x int8 saturates in ONNX Runtime on AVX2; the uint8 x uint8 product we use
    must not, even with every value at +-127."""
    rng = np.random.default_rng(9)
    weights = rng.choice(np.array([1, 255], np.uint8), size=(DIM, 300))
    session, _value = gallery_index._int8_product_session(weights)
    faces = rng.choice(np.array([1, 255], np.uint8), size=(4, DIM))
    products = session.run(None, {"faces": faces})[0]
    want = (faces.astype(np.int64) - 128) @ (weights.astype(np.int64) - 128)
    np.testing.assert_array_equal(products, want)


def test_changed_galleries_reuse_the_index_and_stay_exact(indexed) -> None:
    rng = np.random.default_rng(10)
    gallery = make_gallery(rng, 400)
    index = gallery.prepare().index
    faces = faces_for(rng, gallery)
    newcomer = near(rng, faces[6:7], 0.05)
    changed = gallery.with_changes({
        "p0021": None,  # removed: the face that matched them matches someone else now
        "p0040": Person("p0040", unit(rng, 2)),  # re-enrolled with other embeddings
        "newcomer": Person("newcomer", newcomer),
    })
    plan = changed.prepare()
    assert plan.index is index and plan.extra == ["newcomer", "p0040"]
    got = changed.match(faces, 0.5, 0.05)
    assert_same(got, float32_matches(changed, faces))
    assert got[6].best == "newcomer" and "p0021" not in {m.best for m in got}
    # An edit in place (enrolment without persistence) is seen as well.
    edited = changed.copy()
    edited.add("p0003", faces[8:9])
    assert_same(edited.match(faces, 0.5, 0.05), float32_matches(edited, faces))


def test_a_stale_index_is_rebuilt(indexed) -> None:
    rng = np.random.default_rng(11)
    gallery = make_gallery(rng, 200)
    index = gallery.prepare().index
    many = {f"new{i:03d}": Person(f"new{i:03d}", unit(rng, 3)) for i in range(40)}
    changed = gallery.with_changes(many)  # 120 new rows: over 5% of about 520
    plan = changed.prepare()
    assert plan.index is not index and plan.extra == []
    faces = faces_for(rng, gallery)
    assert_same(changed.match(faces, 0.5, 0.05), float32_matches(changed, faces))


def test_small_galleries_and_no_onnxruntime_use_float32(monkeypatch) -> None:
    rng = np.random.default_rng(12)
    gallery = make_gallery(rng, 50)
    assert gallery.prepare() is None  # far below MIN_ROWS
    rows = sum(len(p.embeddings) for p in gallery.people.values())
    monkeypatch.setattr(gallery_index, "MIN_ROWS", rows + 1)
    assert gallery.copy().prepare() is None
    monkeypatch.setattr(gallery_index, "MIN_ROWS", rows)  # from MIN_ROWS on: indexed
    assert gallery.copy().prepare() is not None
    monkeypatch.setattr(gallery_index, "MIN_ROWS", 1)
    monkeypatch.setattr(gallery_index, "int8_runtime_available", lambda: False)
    other = gallery.copy()
    assert other.prepare() is None
    faces = faces_for(rng, gallery)
    assert_same(other.match(faces, 0.5, 0.05), float32_matches(gallery, faces))


def test_two_people_and_a_person_without_embeddings(indexed) -> None:
    rng = np.random.default_rng(13)
    gallery = Gallery("test-model", DIM)
    gallery.people["ann"] = Person("ann", unit(rng, 2))
    gallery.people["bob"] = Person("bob", unit(rng, 1))
    gallery.people["cy"] = Person("cy", np.zeros((0, DIM), np.float32))
    faces = np.concatenate([near(rng, gallery.people["bob"].embeddings, 0.2), unit(rng, 3)])
    assert gallery.prepare() is not None
    assert_same(gallery.match(faces, 0.5, 0.05), float32_matches(gallery, faces))
    alone = gallery.with_changes({"bob": None, "cy": None})
    got = alone.match(faces, 0.5, 0.05)
    assert_same(got, float32_matches(alone, faces))
    assert all(m.best == "ann" and m.runner_up == -1.0 for m in got)


@pytest.mark.parametrize("seed", range(8))
def test_random_edits_reuse_the_index_and_stay_exact(indexed, seed: int) -> None:
    """Removals, re-enrolments (some with no embeddings left), newcomers (some empty): the
    index stays in use and every match is the float32 rule's, name, similarity and
    runner-up. (Not here: a newcomer with exactly an indexed person's embeddings. The two
    products round the last bit differently, so which of the two is `best` may differ;
    at any margin above 0 both are unknown either way.)"""
    rng = np.random.default_rng(200 + seed)
    gallery = make_gallery(rng, 300)
    gallery.people["empty-one"] = Person("empty-one", np.zeros((0, DIM), np.float32))
    index = gallery.prepare().index
    names = sorted(gallery.people)
    picked = [str(n) for n in rng.choice(names, 6, replace=False)]
    changes: dict[str, Person | None] = {name: None for name in picked[:3]}
    for name in picked[3:6]:
        changes[name] = Person(name, unit(rng, int(rng.integers(0, 3))))
    changes["new-empty"] = Person("new-empty", np.zeros((0, DIM), np.float32))
    changes["newcomer"] = Person("newcomer", unit(rng, 2))
    changed = gallery.with_changes(changes)
    plan = changed.prepare()
    assert plan.index is index  # a few rows changed: no rebuild
    kept = [n for n in names if n not in changes][:4]
    faces = np.concatenate([
        unit(rng, 4),
        near(rng, np.stack([changed.people[n].embeddings[0] for n in kept
                            if len(changed.people[n].embeddings)]), 0.3),
        changed.people["newcomer"].embeddings[:1],
        near(rng, changed.people["newcomer"].embeddings[1:], 0.8)])
    for threshold, margin in ((0.5, 0.05), (0.0, 0.0), (0.9, 0.2)):
        assert_same(changed.match(faces, threshold, margin),
                    float32_matches(changed, faces, threshold, margin))


def test_match_goes_through_the_index_and_scores_few_people_exactly(indexed,
                                                                     monkeypatch) -> None:
    """The index exists to score few people in float32: for these 13 faces, 59 of 401
    people (measured); without pruning it would be all of them for every face."""
    rng = np.random.default_rng(15)
    gallery = make_gallery(rng, 400)
    index = gallery.prepare().index
    calls, scored = [], []
    approximate, exact = index.approximate, index.exact
    monkeypatch.setattr(index, "approximate", lambda f: calls.append(len(f)) or approximate(f))
    monkeypatch.setattr(index, "exact", lambda f, p: scored.append(len(p)) or exact(f, p))
    faces = faces_for(rng, gallery)
    assert_same(gallery.match(faces, 0.5, 0.05), float32_matches(gallery, faces))
    assert calls == [len(faces)]
    assert sum(scored) <= 100, scored


def test_people_without_embeddings_score_minus_one_and_tie_by_name(indexed) -> None:
    """A person with no embeddings (all removed in a database) is scored -1, as in
    Gallery.similarities; at an exact tie the first name wins, as np.argmax gives."""
    axis = np.eye(DIM, dtype=np.float32)
    gallery = Gallery("test-model", DIM)
    gallery.people["aaa"] = Person("aaa", np.zeros((0, DIM), np.float32))
    gallery.people["ann"] = Person("ann", axis[:1])
    assert gallery.prepare() is not None
    faces = np.stack([axis[0], -axis[0], axis[1]])  # ann, her opposite (-1: a tie), neither
    got = gallery.match(faces, 0.5, 0.0)
    assert_same(got, float32_matches(gallery, faces, 0.5, 0.0))
    assert [(m.best, m.similarity, m.runner_up) for m in got] == [
        ("ann", 1.0, -1.0), ("aaa", -1.0, -1.0), ("ann", 0.0, -1.0)]
    # The same with the empty person outside the index (enrolled after it was built).
    changed = gallery.with_changes({"aaa": None, "new": Person("new", axis[:0])})
    assert changed.prepare().index is gallery.prepare().index
    got = changed.match(faces, 0.5, 0.0)
    assert_same(got, float32_matches(changed, faces, 0.5, 0.0))
    assert [(m.best, m.runner_up) for m in got] == [("ann", -1.0), ("ann", -1.0),
                                                   ("ann", -1.0)]


def test_first_two_over_pools() -> None:
    """The best over several pools, ties to the first name whatever its pool, and the
    best of everyone else (the winner's own pool included)."""
    names = lambda prefix: lambda j: f"{prefix}{j}"  # noqa: E731
    pools = [(np.array([0.5, 0.2, 0.9, 0.7], np.float32), names("z")),
             (np.array([0.9, 0.1], np.float32), names("a"))]
    assert gallery_index._first_two(pools) == ("a0", pytest.approx(0.9), pytest.approx(0.9))
    pools[1] = (np.array([0.3, 0.1], np.float32), names("a"))
    for order in ([0.5, 0.2, 0.9, 0.7], [0.7, 0.9, 0.2, 0.5], [0.2, 0.7, 0.5, 0.9],
                  [0.9, 0.5, 0.7, 0.2]):
        pools[0] = (np.array(order, np.float32), names("z"))
        assert gallery_index._first_two(pools) == (
            f"z{order.index(0.9)}", pytest.approx(0.9), pytest.approx(0.7)), order
    assert gallery_index._first_two([(np.array([0.4], np.float32), names("z")),
                                     (np.zeros(0, np.float32), names("a"))]) == (
        "z0", pytest.approx(0.4), -1.0)


def test_without_onnxruntime_there_is_no_int8_runtime(monkeypatch) -> None:
    assert gallery_index.int8_runtime_available()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import` raises ImportError
    assert not gallery_index.int8_runtime_available()


@pytest.mark.parametrize(("counts", "slots", "columns"), [
    ([1, 1, 1], 1, 3),
    ([3, 3, 3, 2, 12], 2, 23),  # 1 slot: 5 + 18 overflow; 2: 10 + 13; 3: 15 + 9 = 24
    ([2, 2, 2, 2], 2, 8),
    ([0, 4, 1], 1, 5),  # people without embeddings take no column
])
def test_slots_give_the_fewest_columns(counts: list[int], slots: int, columns: int) -> None:
    rng = np.random.default_rng(16)
    gallery = Gallery("test-model", DIM)
    for i, count in enumerate(counts):
        gallery.people[f"p{i}"] = Person(f"p{i}", unit(rng, count))
    matrix, starts, present, names = gallery._stacked()
    index = gallery_index.Int8Index(matrix, starts, present, names,
                                    [gallery.people[n] for n in names])
    assert (index.slots, len(index.layout)) == (slots, columns)
    assert set(index.layout.tolist()) == set(range(len(matrix)))  # every row has a column


def test_int8_weights_are_the_gallery_to_half_a_step_in_every_chunk() -> None:
    """9,000 rows: more than two of the 4,096-column chunks the quantisation works in."""
    rng = np.random.default_rng(17)
    gallery = Gallery("test-model", DIM)
    for i in range(3000):
        gallery.people[f"p{i:04d}"] = Person(f"p{i:04d}", unit(rng, 3))
    index = gallery.prepare().index  # 9,000 rows: above MIN_ROWS, the real threshold
    assert index is not None and len(index.layout) == 9000
    assert index.scale == pytest.approx(np.abs(index.matrix).max() / 127)
    restored = (index.weights.astype(np.float64) - 128) * index.scale
    assert np.abs(restored - index.matrix[index.layout].T).max() <= index.scale / 2 * 1.0001


def test_everyone_indexed_removed_leaves_the_newcomers(indexed) -> None:
    """Nobody left in the index (a fleet gallery emptied and refilled by one): the few
    newcomers are scored exactly, and the index is kept (they are under 5% of its rows)."""
    rng = np.random.default_rng(18)
    gallery = make_gallery(rng, 40)
    index = gallery.prepare().index
    changes: dict[str, Person | None] = {name: None for name in gallery.people}
    changes["newcomer"] = Person("newcomer", unit(rng, 2))
    changed = gallery.with_changes(changes)
    plan = changed.prepare()
    assert plan.index is index and not plan.searchable.any()
    faces = np.concatenate([near(rng, changed.people["newcomer"].embeddings, 0.3),
                            unit(rng, 2)])
    got = changed.match(faces, 0.5, 0.05)
    assert_same(got, float32_matches(changed, faces))
    assert [m.best for m in got] == ["newcomer"] * 4 and got[0].name == "newcomer"
    assert all(m.runner_up == -1.0 for m in got)
