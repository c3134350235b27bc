"""The engine's frame path with stand-in models: one batch per model over every camera,
the uniform prepare/run spokes, and a gallery swapped while an image is in flight.

No real models: the stand-ins count their calls, so the batching is asserted exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from fer_ros.pipeline import FacePipeline, FaceStreams, Gallery, PipelineConfig
from fer_ros.pipeline.engine.batch import process_frames
from fer_ros.pipeline.types import UNKNOWN, Detection

pytestmark = pytest.mark.pipeline

DIM = 4


class BoxDetector:
    """A face wherever a 40x40 block of the image is brighter than 200 (one per block)."""

    min_score = 0.9

    def __init__(self) -> None:
        self.enlarged: list[bool] = []  # each whole-image search's ``enlarge``

    def detect(self, rgb: np.ndarray, known: np.ndarray | None = None,
               enlarge: bool = True) -> list[Detection]:
        self.enlarged.append(enlarge)
        return self._blocks(rgb)

    def refine(self, rgb: np.ndarray, boxes: np.ndarray) -> list[Detection]:
        return self._blocks(rgb)

    @staticmethod
    def _blocks(rgb: np.ndarray) -> list[Detection]:
        found = []
        for y in range(0, rgb.shape[0] - 39, 40):
            for x in range(0, rgb.shape[1] - 39, 40):
                if rgb[y:y + 40, x:x + 40].mean() > 200:
                    found.append(Detection(np.array([x, y, x + 40, y + 40], np.float32), 0.99))
        return found


class CountingModel:
    """prepare: one row per box (the block's column); run: counts its batches."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.batches: list[int] = []

    def prepare(self, image_rgb: np.ndarray, boxes: np.ndarray,
                landmarks: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(boxes, np.float32)[:, :1] // 40

    def run(self, inputs: np.ndarray) -> np.ndarray:
        self.batches.append(len(inputs))
        out = np.zeros((len(inputs), self.width), np.float32)
        out[np.arange(len(inputs)), inputs[:, 0].astype(int) % self.width] = 1.0
        return out


class Embedder(CountingModel):
    model_name = "stand-in"
    dim = DIM
    threshold = 0.5
    margin = 0.05
    same_person = 0.5

    def embed(self, rgb: np.ndarray, boxes: np.ndarray,
              landmarks: np.ndarray | None = None) -> np.ndarray:
        return self.run(self.prepare(rgb, boxes, landmarks))


class Classifier(CountingModel):
    labels = ("calm", "glad", "sad")


def image(*columns: int) -> np.ndarray:
    """A 120x160 image with a bright block in each of ``columns`` (0-3) of the top row."""
    rgb = np.zeros((120, 160, 3), np.uint8)
    texture = (200 + np.add.outer(np.arange(40), np.arange(40)) * 55 // 78).astype(np.uint8)
    for c in columns:  # textured: the tracker's appearance check needs a face with contrast
        rgb[0:40, 40 * c:40 * c + 40] = texture[:, :, None]
    return rgb


def people(*names: str) -> Gallery:
    gallery = Gallery("stand-in", DIM)
    for k, name in enumerate(names):
        gallery.add(name, np.eye(DIM, dtype=np.float32)[k][None])
    return gallery


def models() -> tuple[BoxDetector, Embedder, Classifier]:
    return BoxDetector(), Embedder(DIM), Classifier(3)


def test_every_camera_s_faces_go_through_each_model_in_one_batch() -> None:
    detector, embedder, classifier = models()
    faces = FaceStreams(PipelineConfig(device="cpu"), names=["a", "b", "c"],
                        models=(detector, embedder, classifier))
    faces.set_gallery(people("ada", "bob", "cy", "dee"))
    out = faces.process({"a": (image(0, 1), "rgb", 0.0), "b": (image(2), "rgb", 0.0),
                         "c": (image(), "rgb", 0.0)})
    assert embedder.batches == [3] and classifier.batches == [3]
    assert [f.name for f in out["a"]] == ["ada", "bob"] and [f.name for f in out["b"]] == ["cy"]
    assert out["c"] == []
    assert [f.emotion for f in out["a"]] == ["calm", "glad"]
    assert [f.track_id for f in out["a"]] == [1, 2] and [f.track_id for f in out["b"]] == [1]
    # Tracked faces are not embedded again on the next image; emotions still are.
    faces.process({"a": (image(0, 1), "rgb", 0.03), "b": (image(2), "rgb", 0.03)})
    assert embedder.batches == [3] and classifier.batches == [3, 3]


def test_a_gallery_swapped_while_an_image_is_in_flight_casts_no_stale_vote() -> None:
    """plan() saw gallery 1; the swap clears the tracks' votes; apply() names the image
    by the gallery it started with but leaves the new gallery's votes empty."""
    detector, embedder, classifier = models()
    pipe = FacePipeline(PipelineConfig(device="cpu"), gallery=people("ada"),
                        models=(detector, embedder, classifier))
    camera = pipe.camera
    job = camera.begin(image(0), "rgb", 0.0)
    camera.plan(job)
    assert job.to_embed == [0]
    pipe.set_gallery(people("zed"))
    rows = embedder.run(embedder.prepare(job.rgb, job.embed_boxes))
    camera.apply(job, rows, classifier.run(classifier.prepare(job.rgb, job.boxes)))
    assert [f.name for f in camera.finish(job)] == ["ada"]
    assert [list(t.votes) for t in camera.tracker.tracks.values()] == [[]]
    # The next image is embedded again and named from the new gallery.
    assert [f.name for f in pipe.process(image(0), stamp=0.03)] == ["zed"]
    assert embedder.batches == [1, 1]


def test_a_tracked_face_keeps_its_name_in_the_image_the_gallery_is_swapped_in() -> None:
    """A face not embedded in that image publishes the name it had, not 'unknown'."""
    detector, embedder, classifier = models()
    pipe = FacePipeline(PipelineConfig(device="cpu"), gallery=people("ada"),
                        models=(detector, embedder, classifier))
    assert [f.name for f in pipe.process(image(0), stamp=0.0)] == ["ada"]
    camera = pipe.camera
    job = camera.begin(image(0), "rgb", 0.03)
    camera.plan(job)
    assert job.to_embed == []  # tracked and named: not embedded again
    pipe.set_gallery(people("zed"))
    camera.apply(job, np.zeros((0, DIM), np.float32),
                 classifier.run(classifier.prepare(job.rgb, job.boxes)))
    assert [(f.name, f.similarity) for f in camera.finish(job)] == [("ada", 1.0)]


def test_cameras_with_other_models_are_refused() -> None:
    faces = FaceStreams(PipelineConfig(device="cpu"), names=["a"], models=models())
    other = FaceStreams(PipelineConfig(device="cpu"), names=["b"], models=models())
    with pytest.raises(ValueError, match="share these models"):
        process_frames(faces.models, [(other["b"], image(0), "rgb", 0.0)])


def test_without_the_swap_the_vote_is_cast() -> None:
    """The other side of the test above: the same steps without a swap keep the vote."""
    detector, embedder, classifier = models()
    pipe = FacePipeline(PipelineConfig(device="cpu"), gallery=people("ada"),
                        models=(detector, embedder, classifier))
    assert [f.name for f in pipe.process(image(0), stamp=0.0)] == ["ada"]
    assert [list(t.votes) for t in pipe.tracker.tracks.values()] == [[("ada", 1.0)]]


def test_a_bad_image_fails_alone_and_a_model_error_fails_every_searched_image() -> None:
    detector, embedder, classifier = models()
    faces = FaceStreams(PipelineConfig(device="cpu"), names=["a", "b"],
                        models=(detector, embedder, classifier))
    out = faces.process({"a": (image(0), "rgb", 0.0), "b": (np.zeros((4, 4)), "rgb", 0.0)})
    assert len(out["a"]) == 1 and isinstance(out["b"], ValueError)

    def broken(inputs: np.ndarray) -> np.ndarray:
        raise RuntimeError("model failed")

    classifier.run = broken
    jobs = [(faces["a"], image(1), "rgb", 0.5), (faces["b"], image(2), "rgb", 0.5)]
    assert [str(r) for r in process_frames(faces.models, jobs)] == ["model failed"] * 2


def test_models_off_leave_names_and_emotions_empty() -> None:
    pipe = FacePipeline(PipelineConfig(device="cpu", recognition=False, emotion=False),
                        models=(BoxDetector(), None, None))
    (face,) = pipe.process(image(3), stamp=0.0)
    assert (face.name, face.emotion, face.track_id) == ("", "", 1)
    assert pipe.model_name == "" and pipe.emotion_labels == () and pipe.backends == {}
    assert UNKNOWN == "unknown"


def test_which_searches_look_for_the_smallest_faces() -> None:
    """Every other background search while faces are followed (someone far away moves
    slowly: a search later is soon enough; the others cost about two thirds); with nobody
    followed the gate's first and refresh searches; every unrelated photo (no tracking, or
    images far apart); not the searches in the image's own time while following, nor those
    of a changing scene, of faces just lost or with the gate off (every image searched)."""
    detector = BoxDetector()
    pipe = FacePipeline(PipelineConfig(device="cpu", recognition=False, emotion=False,
                                       full_detection_interval=2),
                        models=(detector, None, None))
    for k in range(9):  # searched in the image's own time every other image
        assert len(pipe.process(image(1), stamp=k / 30)) == 1
    assert detector.enlarged == [False] * 5  # the gate off, then following

    background = BoxDetector()
    pipe = FacePipeline(PipelineConfig(device="cpu", recognition=False, emotion=False,
                                       full_detection_interval=2, async_detection=True),
                        models=(background, None, None))
    for k in range(9):  # the first image searched in its own time, then in the background
        assert len(pipe.process(image(1), stamp=k / 30)) == 1
        if pipe.search._job is not None:
            pipe.search._job.result(10)  # done before the next image: no race in the test
    assert background.enlarged == [False, True, False, True, False]

    idle = BoxDetector()
    pipe = FacePipeline(PipelineConfig(device="cpu", recognition=False, emotion=False,
                                       idle_detection_rate=2.0, idle_refresh_period=1.0),
                        models=(idle, None, None))
    scenes = [(0.0, ()), (0.1, (0,)), (0.2, ()), (0.25, ()), (0.3, ()), (0.35, ()),
              (0.6, ()), (0.85, ()), (1.15, ()), (1.4, ()), (1.65, ()), (1.9, ()), (2.15, ()),
              (2.4, ())]
    for stamp, columns in scenes:  # a camera: never more than 0.3 s between images
        pipe.process(image(*columns), stamp=stamp)
    # The gate's first search; a change (a face comes); the face lost (a search in the
    # image's own time while following it); every image searched while its track lives
    # (it ends in the image at 1.15 s), none following anything: the cheaper search; then
    # the gate's first search again, three unchanged images skipped, and its refresh.
    assert idle.enlarged == [True] + [False] * 8 + [True, True]

    replayed = BoxDetector()
    pipe = FacePipeline(PipelineConfig(device="cpu", recognition=False, emotion=False),
                        models=(replayed, None, None))
    for stamp in (5.0, 5.1, 1.0, 3.0):  # time runs backwards (a bag restarted), then a gap
        pipe.process(image(1), stamp=stamp)
    assert replayed.enlarged == [False, False, True, True]  # both: photos of their own

    stills = BoxDetector()
    pipe = FacePipeline(PipelineConfig.stills(device="cpu", recognition=False, emotion=False),
                        models=(stills, None, None))
    for k in range(3):
        pipe.process(image(k), stamp=k / 30)
    assert stills.enlarged == [True, True, True]
