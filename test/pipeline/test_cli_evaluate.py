"""`fer-ros evaluate` on real photos: four of the packaged celebrities enrolled from their
training photos, their validation photos as genuine attempts, the fifth person's as
strangers. Its figures must agree with what Gallery.match decides photo by photo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from celebrities import PEOPLE, celebrity_gallery, rgb
from conftest import data_path

from fer_ros.cli import main
from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.recognition.storage import open_storage
from fer_ros.pipeline.types import UNKNOWN

torch.set_num_threads(2)

STRANGER = "ben_afflek"  # not enrolled: their photos are the strangers
ENROLLED = [p for p in PEOPLE if p != STRANGER]


def val_photos(person: str) -> list[Path]:
    return sorted(data_path("celebrity", "val", person).glob("*.jpg"))


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    # The configuration the CLI builds (stills, no emotion): the same embeddings.
    return FacePipeline(PipelineConfig.stills(device="cpu", emotion=False))


@pytest.fixture(scope="module")
def gallery_file(pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:
    gallery = celebrity_gallery(pipeline)
    gallery.remove(STRANGER)
    path = tmp_path_factory.mktemp("gallery") / "people.json"
    storage = open_storage(str(path), gallery.model, gallery.dim)
    for name, person in gallery.people.items():
        storage.add(name, person.embeddings, person.sources)
    return path


def photo_folder(root: Path, stranger_folder: str) -> Path:
    """Val photos of the enrolled people under their names, the stranger's under
    ``stranger_folder``; symlinks, not copies."""
    for person in PEOPLE:
        folder = root / (stranger_folder if person == STRANGER else person)
        folder.mkdir(parents=True)
        for photo in val_photos(person):
            (folder / photo.name).symlink_to(photo)
    return root


def expected(pipeline: FacePipeline, gallery_file: Path, threshold: float, margin: float
             ) -> tuple[int, int, int]:
    """(best person right, named right, strangers named), photo by photo with
    Gallery.match: what the pipeline itself would say."""
    gallery = open_storage(str(gallery_file)).load()
    top1 = named = false_accepts = 0
    for person in PEOPLE:
        for photo in val_photos(person):
            _, embedding = pipeline.embed_largest_face(rgb(photo))
            match = gallery.match(embedding[None], threshold, margin)[0]
            if person == STRANGER:
                false_accepts += match.name != UNKNOWN
            else:
                top1 += match.best == person
                named += match.name == person
    return top1, named, false_accepts


def test_evaluate_json_and_plot(pipeline: FacePipeline, gallery_file: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = photo_folder(tmp_path / "photos", UNKNOWN)
    # A photo without a face and a file that is no image: listed, not counted, not fatal.
    nobody = folder / UNKNOWN / "mountain.jpg"
    nobody.symlink_to(data_path("pyfeat", "free-mountain-vector-01.jpg"))
    broken = folder / ENROLLED[0] / "broken.jpg"
    broken.write_text("not an image")
    plot = tmp_path / "scores.png"
    code = main(["evaluate", "--gallery", str(gallery_file), str(folder), "--json",
                 "--plot", str(plot), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "not enrolled" not in err  # unknown/ is the strangers' folder: nothing to say
    report = json.loads(out)
    genuine = sum(len(val_photos(p)) for p in ENROLLED)
    strangers = len(val_photos(STRANGER))
    assert report["counts"] == {"genuine": genuine, "strangers": strangers}
    assert report["photos_without_face"] == [str(nobody)]
    assert report["unreadable_photos"] == [f"{broken}: not a readable image"]
    assert report["model"] == pipeline.model_name
    assert report["people_enrolled"] == len(ENROLLED)
    threshold, margin = pipeline.decision
    assert (report["threshold"], report["margin"]) == (round(threshold, 4), round(margin, 4))
    assert report["top1"] == 1.0 and report["top1_correct"] == genuine

    top1, named, false_accepts = expected(pipeline, gallery_file, threshold, margin)
    assert report["top1_correct"] == top1
    assert report["named_correct_count"] == named
    assert report["false_accepts"] == false_accepts
    assert report["strangers_unknown"] == round((strangers - false_accepts) / strangers, 4)

    points = {p["far_target"]: p for p in report["tar_at_far"]}
    assert set(points) == {0.01, 0.001}
    for point in points.values():  # 5 strangers: neither target allows one to be accepted
        assert point["strangers"] == strangers and point["strangers_allowed"] == 0
        assert point["far"] == 0.0
    assert report["far"] == 0.01 and report["far_threshold"] == points[0.01]["threshold"]
    assert report["eer"] is not None and 0.0 <= report["eer"]["rate"] <= 1.0
    assert report["gap"] is not None

    with plot.open("rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_table_threshold_and_unenrolled_folder(
        pipeline: FacePipeline, gallery_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A folder naming someone not enrolled counts as strangers, said on stderr; --threshold
    is the threshold in effect; the table names every figure."""
    folder = photo_folder(tmp_path / "photos", STRANGER)
    code = main(["evaluate", "--gallery", str(gallery_file), str(folder), "--device", "cpu",
                 "--threshold", "0.2", "--far", "0.2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    strangers = len(val_photos(STRANGER))
    assert (f"fer-ros evaluate: {STRANGER!r} is not enrolled; its {strangers} photo(s) count "
            f"as strangers") in err
    table = dict(line.split("  ", 1) for line in out.splitlines())
    table = {label.strip(): value.strip() for label, value in table.items()}
    assert list(table) == ["model", "photos", "top-1", "named correctly",
                           "strangers called unknown", "false accepts", "TAR @ FAR 1%",
                           "TAR @ FAR 0.1%", "TAR @ FAR 20%", "EER", "gap",
                           "threshold for FAR 20%"]
    _, margin = pipeline.decision
    assert table["model"] == (f"{pipeline.model_name}; threshold 0.2000, margin "
                              f"{margin:.4f} in effect")
    genuine = sum(len(val_photos(p)) for p in ENROLLED)
    assert table["top-1"] == f"{genuine}/{genuine} = 100.0%"
    _, named, false_accepts = expected(pipeline, gallery_file, 0.2, margin)
    assert table["named correctly"].startswith(f"{named}/{genuine} = ")
    assert table["false accepts"] == f"{false_accepts}/{strangers}"
    assert table["TAR @ FAR 1%"].endswith(f"(no stranger of {strangers} accepted)")
    # 20% of 5 strangers: one may be accepted.
    assert table["TAR @ FAR 20%"].endswith(f"(at most 1 of {strangers} strangers accepted)")


def test_plotting_library_is_loaded_only_for_a_plot() -> None:
    """matplotlib takes seconds to import: the command module must not pull it in."""
    code = ("import sys, fer_ros.cli.evaluate; "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_evaluate_errors(gallery_file: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    """Each mistake: one line naming it, exit status 1, before any model loads."""
    missing = tmp_path / "nowhere"
    assert main(["evaluate", "--gallery", str(gallery_file), str(missing)]) == 1
    assert capsys.readouterr().err == f"fer-ros evaluate: {missing}: no such folder\n"

    flat = tmp_path / "flat"
    flat.mkdir()
    assert main(["evaluate", "--gallery", str(gallery_file), str(flat)]) == 1
    assert capsys.readouterr().err.startswith(f"fer-ros evaluate: {flat} has no sub-folders")

    folder = photo_folder(tmp_path / "photos", UNKNOWN)
    no_gallery = tmp_path / "absent.db"
    assert main(["evaluate", "--gallery", str(no_gallery), str(folder)]) == 1
    assert capsys.readouterr().err == f"fer-ros evaluate: gallery {no_gallery} does not exist\n"
    assert not no_gallery.exists()  # not created by looking

    empty = tmp_path / "empty.json"
    storage = open_storage(str(empty), "test-model", 4)
    storage.add("ada", [[1.0, 0.0, 0.0, 0.0]], ["a.jpg"])
    storage.remove("ada")
    assert main(["evaluate", "--gallery", str(empty), str(folder)]) == 1
    assert capsys.readouterr().err.startswith(f"fer-ros evaluate: gallery {empty} is empty")

    assert main(["evaluate", "--gallery", str(gallery_file), str(folder), "--far", "1"]) == 1
    assert "--far must lie between 0 and 1" in capsys.readouterr().err

    # A gallery of another embedding space: refused once the model is known.
    foreign = tmp_path / "foreign.json"
    open_storage(str(foreign), "test-model", 4).add("ada", [[1.0, 0.0, 0.0, 0.0]], ["a.jpg"])
    assert main(["evaluate", "--gallery", str(foreign), str(folder), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fer-ros evaluate: ") and "'test-model'" in err
    assert len(err.splitlines()) == 1
