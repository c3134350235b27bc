"""How far away people are found and named (issue: see and name people at 4 metres):
the defaults find and name 20-px faces (a person 4.2 m from a 640x480 camera of 60
degrees), a small face keeps its track as it grows, and `fer-ros bench --range` reports
it (fer_ros/bench/distance.py)."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from conftest import data_path

from fer_ros.bench import distance
from fer_ros.bench.peers import ours_named_accuracy
from fer_ros.paths import fer_ros_command
from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.detection.detector import FaceDetector


@pytest.fixture(scope="module")
def stills() -> FacePipeline:
    """The still-photo defaults (`fer-ros identify`), the five people enrolled from their
    training photos."""
    data_path("celebrity", "train")
    pipe = FacePipeline(PipelineConfig.stills(device="cpu"))
    pipe.set_gallery(ours_named_accuracy(pipe)["gallery"])
    return pipe


@pytest.fixture(scope="module")
def people() -> list[distance.Portrait]:
    data_path("celebrity", "val")
    return distance.portraits(FaceDetector(min_face_size=40, search="mtcnn"))


@pytest.fixture(scope="module")
def scenes() -> list:
    data_path("scenes", distance.BACKGROUNDS[0])
    return distance.backgrounds()


def test_face_width_and_distance() -> None:
    # 640 px across 60 degrees: focal length 554 px; a 15-cm face.
    assert round(distance.distance_m(40), 2) == 2.08
    assert round(distance.distance_m(20), 2) == 4.16
    assert round(distance.face_px(1.0)) == 83
    assert distance.face_px(distance.distance_m(28)) == pytest.approx(28)


def test_defaults_find_and_name_people_at_four_metres(stills, people, scenes) -> None:
    result = distance.measure_range(stills, people, scenes, sizes=(20,))["20"]
    assert result["faces"] == 2 * len(people) == 50
    # The bar: at least 90% found and 80% named; nobody called someone else.
    assert result["found"] >= 45, result
    assert result["named"] >= 40, result
    assert result["wrong"] == 0, result


def test_a_small_face_keeps_its_track_as_it_grows(stills, people, scenes) -> None:
    # From 5 m (17 px) to 1 m (83 px) in 10 s, crossing the scene; tracked between
    # whole-image searches (every 5th image) by refining the face's box.
    portrait = max(people, key=lambda p: float(p.box[2] - p.box[0]))
    frames, distances = distance.approach_frames(portrait, scenes[0], 30.0)
    pipe = FacePipeline(PipelineConfig(device="cpu", full_detection_interval=5),
                        models=stills.models, gallery=stills.gallery)
    found_at = named_at = None
    ids: list[int] = []
    for i, (frame, d) in enumerate(zip(frames, distances, strict=True)):
        faces = pipe.process(frame, color="bgr", stamp=i / 30.0)
        if not math.isfinite(d):
            assert faces == [], i  # the empty scene
            continue
        if faces and found_at is None:
            found_at = d
        if named_at is None and any(f.name == portrait.person for f in faces):
            named_at = d
        if found_at is not None:
            assert len(faces) == 1, (i, d)  # in every image from then on
            ids.append(faces[0].track_id)
    assert found_at is not None and found_at >= 4.0
    assert named_at is not None and named_at >= 3.5
    assert len(set(ids)) == 1 and len(ids) >= 270


@pytest.mark.timeout(600)
def test_range_bench_reports_range_cost_and_approach(tmp_path) -> None:
    cmd = [*fer_ros_command(), "bench", "--range", "--json", "--out", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=580, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, result.stdout[-2000:]
    report = json.loads(lines[0])
    rows = report["range"]
    assert list(rows) == [str(s) for s in distance.SIZES]
    for size, row in rows.items():
        assert row["faces"] == 50 and 0 <= row["named"] <= row["found"] <= 50, size
        assert row["wrong"] == 0, (size, row)
        assert row["distance_m"] == round(distance.distance_m(int(size)), 2)
    assert rows["20"]["found"] >= 45 and rows["80"]["found"] >= 48, rows
    assert set(report["search_ms"]) == {"default", "default_as_is", "mtcnn_from_40px",
                                        "mtcnn_from_16px"}
    assert all(v > 0 for v in report["search_ms"].values())
    approach = report["approach"]
    # Found and named far away, one track id all the way in, nothing in the empty scene.
    assert approach["found_at_m"] >= 4.0 and approach["named_at_m"] >= 3.0, approach
    assert approach["track_ids"] == 1 and approach["faces_in_empty_scene"] == 0, approach
    assert approach["answered"] > 0.8 * approach["images"], approach
    assert approach["found_after_ms"] > 0, approach
    saved = json.loads((tmp_path / "range.json").read_text())
    assert saved["range"] == rows and (tmp_path / "range.png").stat().st_size > 10_000
