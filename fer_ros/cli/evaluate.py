"""``fer-ros evaluate --gallery G FOLDER``: how well the gallery and threshold do on
labelled photos, to choose a threshold from numbers instead of guessing one.

FOLDER holds one sub-folder per person: a sub-folder named after an enrolled person
holds photos of them (genuine attempts); ``unknown/``, and any sub-folder naming nobody
enrolled, holds photos of people who are not enrolled (strangers). The largest face of
each photo is matched against the gallery; photos without a face are listed, not fatal.
Figures: fer_ros.pipeline.recognition.openset.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fer_ros.assets import AssetError
from fer_ros.cli.common import add_pipeline_arguments, pipeline_from_args
from fer_ros.pipeline.images import expand_images, read_image_rgb
from fer_ros.pipeline.recognition import openset
from fer_ros.pipeline.recognition.gallery import Gallery, GalleryError
from fer_ros.pipeline.recognition.storage import open_storage
from fer_ros.pipeline.types import UNKNOWN

PROG = "fer-ros evaluate"


class EvaluateError(Exception):
    """A problem that ends the command: one line on stderr, exit status 1."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="FOLDER",
                        help="one sub-folder of photos per enrolled person, and unknown/ "
                             "for people who are not enrolled")
    parser.add_argument("--gallery", required=True,
                        help="gallery to evaluate (.json, .db or postgresql:// URL)")
    parser.add_argument("--far", type=float, default=0.01,
                        help="false-accept rate to find the threshold for (default 0.01)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the table")
    parser.add_argument("--plot", metavar="OUT.png", default="",
                        help="write histograms of genuine and stranger scores to this PNG")
    add_pipeline_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except EvaluateError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if not 0.0 < args.far < 1.0:
        raise EvaluateError(f"--far must lie between 0 and 1 (0.01 is 1%), not {args.far}")
    # Cheap checks first: a typo in a path should not wait for the models to load.
    folders = photo_folders(Path(args.folder))
    gallery, location = load_gallery(args.gallery)
    try:
        pipeline = pipeline_from_args(args, emotion=False)
        pipeline.set_gallery(gallery)  # refuses a gallery of another embedding space
    except (AssetError, GalleryError, ValueError) as exc:
        raise EvaluateError(str(exc)) from None
    # Only now: notes about folders would be noise above an error that ends the command.
    labelled = label_photos(folders, gallery)
    threshold, margin = pipeline.decision

    embeddings, labels, no_face, unreadable = [], [], [], []
    for path, label in tqdm(labelled, desc="evaluate", unit="photo", file=sys.stderr,
                            disable=None):  # None: no bar when stderr is not a terminal
        try:
            rgb = read_image_rgb(path)
        except ValueError as exc:
            unreadable.append(str(exc))
            continue
        try:
            _, embedding = pipeline.embed_largest_face(rgb)
        except ValueError:
            no_face.append(str(path))
            continue
        embeddings.append(embedding)
        labels.append(label)
    if not embeddings:
        raise EvaluateError(f"no face found in any of the {len(labelled)} photos")
    per_person, names = gallery.similarities(np.stack(embeddings))
    scores = openset.scores_from_similarities(per_person, names, labels)
    figures = openset.summary(scores, threshold, margin,
                              (*openset.FAR_TARGETS, args.far))
    chosen = next(p for p in figures["tar_at_far"] if p["far_target"] == args.far)
    report = {"model": pipeline.model_name, "gallery": location,
              "people_enrolled": len(gallery), "folder": args.folder, **figures,
              "far": args.far, "far_threshold": chosen["threshold"],
              "photos_without_face": no_face, "unreadable_photos": unreadable}

    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    if args.plot:
        try:
            plot(scores, report, args.plot)
        except (OSError, ValueError) as exc:
            raise EvaluateError(f"cannot write the plot {args.plot}: {exc}") from None
    return 0


def photo_folders(folder: Path) -> dict[str, list[Path]]:
    """Each sub-folder's name and its image files (sorted; searched recursively)."""
    if not folder.exists():
        raise EvaluateError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise EvaluateError(f"{folder}: not a folder (expected one sub-folder per person)")
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise EvaluateError(f"{folder} has no sub-folders: put each enrolled person's "
                            f"photos in a folder of their name, strangers' in unknown/")
    loose = [p for p in folder.iterdir() if p.is_file()]
    if loose:
        print(f"{PROG}: ignoring {len(loose)} file(s) directly in {folder}: only "
              f"sub-folders are labelled", file=sys.stderr)
    found = {sub.name: list(expand_images([str(sub)])) for sub in subs}
    if not any(found.values()):
        raise EvaluateError(f"no images in the sub-folders of {folder}")
    return found


def load_gallery(location: str) -> tuple[Gallery, str]:
    """The gallery, and its location fit to print (a database URL without its password)."""
    try:
        storage = open_storage(location)
        if not storage.exists():  # checked first: opening an SQLite path would create it
            raise EvaluateError(f"gallery {storage.location} does not exist")
        gallery = storage.load()
    except (GalleryError, OSError) as exc:
        raise EvaluateError(str(exc)) from None
    if not len(gallery):
        raise EvaluateError(f"gallery {storage.location} is empty: enrol people with "
                            f"`fer-ros enroll`")
    return gallery, storage.location


def label_photos(folders: dict[str, list[Path]], gallery: Gallery
                 ) -> list[tuple[Path, str | None]]:
    """(photo, enrolled person or None for a stranger), folder by folder."""
    labelled: list[tuple[Path, str | None]] = []
    for name, photos in folders.items():
        label = name if name in gallery.people else None
        if label is None and name.lower() != UNKNOWN and photos:
            # Most likely a person left out of the gallery (or a misspelt folder): say so.
            print(f"{PROG}: {name!r} is not enrolled; its {len(photos)} photo(s) count as "
                  f"strangers", file=sys.stderr)
        labelled.extend((photo, label) for photo in photos)
    return labelled


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _of(count: int, total: int) -> str:
    return f"{count}/{total} = {_percent(count / total)}" if total else "n/a (no photos)"


def _far_line(point: dict) -> str:
    if point["threshold"] is None:
        return "n/a (no strangers: add photos of people not enrolled under unknown/)"
    allowed = point["strangers_allowed"]
    rests = (f"no stranger of {point['strangers']} accepted" if allowed == 0
             else f"at most {allowed} of {point['strangers']} strangers accepted")
    return f"{_percent(point['tar'])} at threshold {point['threshold']:.4f} ({rests})"


def print_table(report: dict) -> None:
    counts = report["counts"]
    genuine, strangers = counts["genuine"], counts["strangers"]
    unreadable = report["unreadable_photos"]
    rows = [
        ("model", f"{report['model']}; threshold {report['threshold']:.4f}, "
                  f"margin {report['margin']:.4f} in effect"),
        ("photos", f"{genuine} of enrolled people, {strangers} of strangers, "
                   f"{len(report['photos_without_face'])} without a face"
                   + (f", {len(unreadable)} unreadable" if unreadable else "")),
        ("top-1", _of(report["top1_correct"], genuine)),
        ("named correctly", _of(report["named_correct_count"], genuine)),
        ("strangers called unknown", _of(strangers - report["false_accepts"], strangers)),
        ("false accepts", f"{report['false_accepts']}/{strangers}" if strangers else "n/a"),
    ]
    for point in report["tar_at_far"]:
        rows.append((f"TAR @ FAR {100 * point['far_target']:g}%", _far_line(point)))
    eer = report["eer"]
    rows.append(("EER", "n/a (needs genuine and stranger photos)" if eer is None
                 else f"{_percent(eer['rate'])} at threshold {eer['threshold']:.4f}"))
    gap = report["gap"]
    rows.append(("gap", "n/a" if gap is None else
                 f"{gap:+.4f} ({'one threshold separates them' if gap > 0 else 'overlap'})"))
    far_threshold = report["far_threshold"]
    rows.append((f"threshold for FAR {100 * report['far']:g}%",
                 "n/a (no strangers)" if far_threshold is None else f"{far_threshold:.4f}"))
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    for path in report["photos_without_face"]:
        print(f"no face: {path}")
    for message in unreadable:
        print(f"unreadable: {message}")


def plot(scores: openset.OpenSetScores, report: dict, out: str) -> None:
    """Histograms of right genuine and stranger best scores, with the thresholds."""
    import matplotlib  # only here: seconds to import, and only --plot needs it

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    genuine, strangers = scores.correct_best, scores.stranger_best
    # The thresholds belong in the range too (and keep it defined with no scores).
    both = np.concatenate([genuine, strangers, [report["threshold"]]])
    bins = np.linspace(both.min() - 0.01, both.max() + 0.01, 41)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    try:
        axes.hist(genuine, bins=bins, alpha=0.6, color="tab:green",
                  label=f"enrolled, right person ({len(genuine)})")
        axes.hist(strangers, bins=bins, alpha=0.6, color="tab:red",
                  label=f"strangers ({len(strangers)})")
        axes.axvline(report["threshold"], color="black", linestyle="-",
                     label=f"threshold in effect {report['threshold']:.4f}")
        if report["far_threshold"] is not None:
            axes.axvline(report["far_threshold"], color="tab:blue", linestyle="--",
                         label=f"threshold for FAR {100 * report['far']:g}% "
                               f"{report['far_threshold']:.4f}")
        axes.set_xlabel("best cosine similarity to the gallery")
        axes.set_ylabel("photos")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 photos
        axes.set_title(f"fer-ros evaluate: {report['model']}")
        axes.legend()
        figure.tight_layout()
        figure.savefig(out, format="png", dpi=100)
    finally:
        plt.close(figure)
