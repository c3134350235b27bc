"""Exact matching against a large gallery, through an int8 copy of it.

Matching faces against 10,000 people (30,000 float32 embeddings, 61 MB) is bound by memory
bandwidth: one float32 product reads all of it, 12.6 ms on one thread here. An int8 copy is
a quarter of that, and ONNX Runtime's MatMulInteger on prepacked int8 weights reads it in
about 2 ms (torch's CPU int8 product took 124 ms). Int8 scores are approximate, but their
error has a bound that holds for every face and embedding, so they only choose candidates:
the people whose best similarity could still be first or second. Those are scored again in
float32, so the result is the gallery's rule exactly (`Gallery.match`).

The bound. One scale ``s`` for the whole gallery (``max |g| / 127``), ``g = s·q + r``
with ``q`` int8; each face ``x = t·p + u`` with its own scale ``t``. Then
``x·g - s·t·(p·q) = t·p·r + u·g``, and by Cauchy-Schwarz its size is at most
``t·|p|·max|r| + |u|·max|g|``: one number per face (``error``). A person's true best
similarity lies within ``error`` of their int8 best. So, per face: its two best by int8 are
scored exactly; the second largest of those exact scores is at most the true second
largest, and whoever's int8 best plus ``error`` is below it cannot be in the top two; the
rest are scored exactly too (`IndexPlan.top_two`).

A gallery that changed after its index was built (an enrolment, another robot's edit)
keeps the index: people whose embeddings changed are left out of it and scored exactly
(few), until they are a large share and the index is rebuilt (`IndexPlan.stale`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from fer_ros.pipeline.recognition.gallery import Person

MIN_ROWS = 8192  # below this the float32 product takes at most ~3 ms and needs no index
STALE_SHARE = 0.05  # rebuild once the people scored outside the index hold 5% of the rows
FALLBACK_SHARE = 0.05  # candidates above this share of rows: one float32 product instead
# Rounding, added to the bound: a float32 dot product of 512 terms is within 512 * 2**-24
# (3e-5) of the real one at worst, for the exact scores and for the float32 product that
# Gallery.similarities would compute; the quantisation's own float32 steps are ~1e-7.
SLACK = 1e-4
LOWEST = np.iinfo(np.int32).min  # an int8 best for "not searched through the index"


def int8_runtime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401  (optional for a ROS install: float32 then)
    except ImportError:
        return False
    return True


class Int8Index:
    """The int8 copy of a gallery's stacked embeddings, and an ONNX Runtime session
    whose weights are that copy, prepacked.

    Its columns are laid out in slots: slot k holds every person's k-th embedding, so a
    person's best is an elementwise maximum of K contiguous blocks (0.1 ms at 10,000
    people; a segmented np.maximum.reduceat took 1 ms). Embeddings beyond K (people with
    many) follow the slots and are reduced per person. K is the fewest embeddings anyone
    indexed has: that gives the fewest columns (a slot more would add a column for
    everyone and save one only for those with that many).
    """

    def __init__(self, matrix: np.ndarray, starts: np.ndarray, present: np.ndarray,
                 names: list[str], persons: list[Person]) -> None:
        self.matrix = matrix  # (rows, D) float32, person after person in name order
        self.names = names
        self.persons = persons  # Person objects as indexed: identity tells what changed
        self.position = {name: i for i, name in enumerate(names)}
        self.present = present
        self.starts = np.zeros(len(names), np.int64)
        self.starts[present] = starts
        self.counts = np.zeros(len(names), np.int64)
        self.counts[present] = np.diff(np.append(starts, len(matrix)))
        self._lay_out(self.counts[present], starts)
        # The session reads these in place: they live as long as it does.
        self.weights = self._quantize(matrix)
        self.session, self.weights_value = _int8_product_session(self.weights)

    def _quantize(self, matrix: np.ndarray) -> np.ndarray:
        """(D, columns) uint8 weights, column c = row layout[c] at one scale, plus 128;
        and the largest residual and row norm, for the bound."""
        self.scale = max(float(np.abs(matrix).max(initial=0.0)), 1e-12) / 127.0
        weights = np.empty((matrix.shape[1], len(self.layout)), np.uint8)
        self.residual, self.norm = 0.0, 0.0
        for first in range(0, len(self.layout), 4096):  # chunks: small temporaries
            block = matrix[self.layout[first:first + 4096]]
            q = np.rint(block * np.float32(1.0 / self.scale))
            weights[:, first:first + len(block)] = (q + 128).T
            # float32 rounding here is ~1e-7 of a residual of ~1e-2: within SLACK
            self.residual = max(self.residual, float(np.linalg.norm(
                block - np.float32(self.scale) * q, axis=1).max(initial=0.0)))
            self.norm = max(self.norm, float(np.linalg.norm(block, axis=1).max(initial=0.0)))
        return weights

    def _lay_out(self, counts: np.ndarray, starts: np.ndarray) -> None:
        """The slot layout (class docstring) of the present people's rows."""
        self.slots = int(counts.min())
        slots = [starts + k for k in range(self.slots)]
        many = np.flatnonzero(counts > self.slots)
        extra = counts[many] - self.slots
        self.overflow_owner = many  # positions among the present people
        self.overflow_at = np.cumsum(extra) - extra
        overflow = np.repeat(starts[many] + self.slots - self.overflow_at, extra) \
            + np.arange(extra.sum())
        self.layout = np.concatenate([*slots, overflow]).astype(np.int64)

    @property
    def rows(self) -> int:
        return len(self.matrix)

    def approximate(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each face's int8 best per person, as (N, people) int32 (LOWEST without
        embeddings) in units of the (N,) ``unit``, and the (N,) error bound (module
        docstring). Kept in int32 (exact in float32 too: below 2**24) to save passes."""
        faces = faces.astype(np.float64)
        face_scale = np.maximum(np.abs(faces).max(axis=1), 1e-12) / 127.0
        p = np.rint(faces / face_scale[:, None])
        face_error = np.linalg.norm(faces - face_scale[:, None] * p, axis=1)
        error = (face_scale * np.linalg.norm(p, axis=1) * self.residual
                 + face_error * self.norm + SLACK)
        products = self.session.run(None, {"faces": (p + 128).astype(np.uint8)})[0]
        people = len(self.present)
        best = products[:, :people]
        for k in range(1, self.slots):
            best = np.maximum(best, products[:, k * people:(k + 1) * people],
                              out=None if k == 1 else best)
        if self.slots == 1:
            best = best.copy()
        if len(self.overflow_owner):
            more = np.maximum.reduceat(products[:, self.slots * people:], self.overflow_at,
                                       axis=1)
            best[:, self.overflow_owner] = np.maximum(best[:, self.overflow_owner], more)
        if people < len(self.names):
            everyone = np.full((len(faces), len(self.names)), LOWEST, np.int32)
            everyone[:, self.present] = best
            best = everyone
        return best, face_scale * self.scale, error

    def exact(self, faces: np.ndarray, people: np.ndarray) -> np.ndarray:
        """(N, len(people)) float32 best similarity of each face to these people (index
        positions, each with embeddings), from the float32 rows."""
        counts = self.counts[people]
        offsets = np.cumsum(counts) - counts
        rows = np.repeat(self.starts[people] - offsets, counts) + np.arange(counts.sum())
        if not len(rows):
            return np.zeros((len(faces), 0), np.float32)
        if len(rows) > FALLBACK_SHARE * self.rows:
            sims = (self.matrix @ faces.T)[rows]  # one pass beats gathering this many
        else:
            sims = self.matrix[rows] @ faces.T
        # (rows, N) reduced along rows: ten times faster than along a row's columns
        return np.maximum.reduceat(sims, offsets, axis=0).T


def _int8_product_session(weights: np.ndarray) -> tuple[Any, Any]:
    """faces (N, D) times weights (D, columns), both uint8 around 128, exactly, in int32:
    an onnxruntime.InferenceSession and the OrtValue it reads the weights from.

    Both sides unsigned: ONNX Runtime's uint8 x int8 kernel on AVX2 without VNNI (this
    machine) sums pairs in int16 and saturates (measured: products off by up to 117,783),
    which would break the error bound; uint8 x uint8 is exact and as fast (2.2 ms against
    2.1 ms at 10,000 people). The weights are handed over as an external initializer, read
    in place: no protobuf copy of them (30 MB less resident memory at 10,000 people).
    """
    # Imported here: `fer-ros --help` and small galleries never pay ONNX Runtime's import.
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    # EXTERNAL: ONNX Runtime replaces only an external initializer with the one given in
    # the options (it needs no location, offset or length for it).
    placeholder = TensorProto(name="weights", data_type=TensorProto.UINT8,
                              dims=weights.shape, data_location=TensorProto.EXTERNAL)
    zero = numpy_helper.from_array(np.array(128, np.uint8), "zero")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["faces", "weights", "zero", "zero"],
                          ["products"])],
        "gallery_int8",
        [helper.make_tensor_value_info("faces", TensorProto.UINT8, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("products", TensorProto.INT32,
                                       [None, weights.shape[1]])],
        [placeholder, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the node's budget: one thread for matching
    options.inter_op_num_threads = 1
    value = ort.OrtValue.ortvalue_from_numpy(weights)  # wraps the array: no copy
    options.add_external_initializers(["weights"], [value])
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"]), value


class IndexPlan:
    """Matching for one gallery's people through an index built on an earlier state:
    people unchanged since are found through it, the others scored exactly."""

    def __init__(self, index: Int8Index, people: dict[str, Person]) -> None:
        self.index = index
        indexed = zip(index.names, index.persons, strict=True)
        self.valid = np.array([people.get(name) is person for name, person in indexed], bool)
        self.extra = sorted(name for name, person in people.items()
                            if name not in index.position
                            or index.persons[index.position[name]] is not person)
        mats = [people[name].embeddings for name in self.extra]
        counts = np.array([len(m) for m in mats], np.int64)
        self.extra_present = np.flatnonzero(counts)
        self.extra_starts = (np.cumsum(counts) - counts)[self.extra_present]
        self.extra_matrix = (np.concatenate(mats).astype(np.float32) if counts.sum()
                             else np.zeros((0, index.matrix.shape[1]), np.float32))
        self.searchable = self.valid & (index.counts > 0)
        self.empty = np.flatnonzero(self.valid & (index.counts == 0))  # scored -1, as ever

    @property
    def stale(self) -> bool:
        return len(self.extra_matrix) > STALE_SHARE * self.index.rows

    def _extra_scores(self, faces: np.ndarray) -> np.ndarray:
        """(N, extra people) exact best similarity; -1 for anyone without embeddings."""
        scores = np.full((len(faces), len(self.extra)), -1.0, np.float32)
        if len(self.extra_present):
            scores[:, self.extra_present] = np.maximum.reduceat(
                faces @ self.extra_matrix.T, self.extra_starts, axis=1)
        return scores

    def top_two(self, faces: np.ndarray) -> list[tuple[str, float, float]]:
        """(best person, their similarity, the best other person's) for each face."""
        best, unit, error = self.index.approximate(faces)
        if not self.searchable.all():
            best[:, ~self.searchable] = LOWEST
        extra = self._extra_scores(faces)
        # Round 1: each face's two best by int8, scored exactly. The second largest of
        # these exact scores and the others' is at most the true second largest, so
        # whoever's upper bound (int8 best + error) is below it cannot be in the top two.
        rows = np.arange(len(faces))
        first = best.argmax(axis=1)  # two passes of argmax: a third of argpartition's time
        kept, best[rows, first] = best[rows, first], LOWEST
        lead = np.stack([first, best.argmax(axis=1)], axis=1)
        best[rows, first] = kept
        people = np.unique(lead[self.searchable[lead]])
        exact = self.index.exact(faces, people)  # for every face: a superset is harmless
        known = np.concatenate([exact, extra], axis=1)
        second = (np.sort(known, axis=1)[:, -2] if known.shape[1] > 1
                  else np.full(len(faces), -np.inf))
        # Round 2: everyone else whose upper bound reaches that: best·unit + error >= second.
        reach = best >= ((second - error) / unit)[:, None]
        if not self.searchable.all():
            reach &= self.searchable
        reach[:, people] = False
        more = np.flatnonzero(reach.any(axis=0))
        if len(more):
            people = np.concatenate([people, more])
            order = np.argsort(people)  # name order, for ties as in Gallery.similarities
            people = people[order]
            exact = np.concatenate([exact, self.index.exact(faces, more)], axis=1)[:, order]
        names = self.index.names
        empty = np.full(len(self.empty), -1.0, np.float32)
        return [_first_two([(exact[i], lambda j: names[people[j]]),
                            (extra[i], self.extra.__getitem__),
                            (empty, lambda j: names[self.empty[j]])])
                for i in range(len(faces))]


def _first_two(pools: list) -> tuple[str, float, float]:
    """The best (score, name) over pools of scores in name order, ties to the first
    name as np.argmax over name order gives, and the best score of everyone else (-1
    if there is nobody else: with two people or more, round 1 scored two)."""
    firsts = [(float(scores[i]), name_of(i), k, i) for k, (scores, name_of) in enumerate(pools)
              if len(scores) for i in [int(np.argmax(scores))]]
    sim, name, pool, _ = min(firsts, key=lambda f: (-f[0], f[1]))
    # the best of the others: in the winner's pool its second-largest value (ties included)
    others = [float(np.sort(scores)[-2]) if k == pool else float(scores.max())
              for k, (scores, _) in enumerate(pools) if len(scores) > (k == pool)]
    return name, sim, (max(others) if others else -1.0)
