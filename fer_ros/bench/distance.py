"""How far away people are found and named: ``fer-ros bench --range``.

A 640x480 camera with a 60-degree horizontal field of view has a focal length of
320 / tan(30 deg) = 554 px, so a face about 15 cm wide is 554 * 0.15 / d px wide at d
metres: 83 px at 1 m, 40 at 2.1 m, 28 at 3 m, 20 at 4.2 m (:func:`distance_m`).

``range``: each of the 25 validation photos of the 5-celebrity set, scaled so that its
face is W px wide, is pasted (the face and about two face widths around it) into a
640x480 scene, once into each of two backgrounds from scikit-image (a cluttered workshop
and an outdoor launch pad), at a random place. The five people are enrolled from their
training photos. The pipeline at its still-photo defaults (what ``fer-ros identify``
runs; ``--param NAME:=VALUE`` changes them, e.g. ``face_search:=mtcnn``) answers each
scene: ``found``, a face overlapping the pasted one (IoU > 0.3); ``named``, found and
given that person's name; ``wrong``, a face given someone else's
name. ``search_ms``: the whole-image search alone on the same scenes (median): the
default as a photo gets it (``default``: YuNet on the enlarged copy), as the cheaper turn
of a camera's searches (``default_as_is``), and MTCNN's own search from 40 px (before
YuNet) and from 16 px.

``approach``: one validation photo (the one whose face has the most pixels) walks from
5 m to 1 m in 10 s while crossing the scene, after 2 s of the empty scene, streamed at
the camera rate through perception_node (live defaults, the gallery above):
``found_at_m`` and ``named_at_m``, the distance at the first answer with a face and with
the right name, ``found_after_ms`` from sending the first image that shows them to that
first answer with a face (the first detection after a still empty scene), and
``track_ids``, the track ids it had from then on (1 = the small face's track kept as it
grew).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from fer_ros.assets.datasets import dataset_dir
from fer_ros.bench import live, peers
from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.detection.detector import FaceDetector
from fer_ros.pipeline.images import read_image_rgb
from fer_ros.pipeline.recognition import gallery_file
from fer_ros.pipeline.recognition.gallery import Gallery
from fer_ros.pipeline.types import UNKNOWN, iou_matrix

FRAME = (640, 480)
FOCAL_PX = FRAME[0] / 2 / math.tan(math.radians(30))  # 60-degree horizontal field of view
FACE_WIDTH_M = 0.15
SIZES = (20, 24, 28, 32, 40, 56, 80)
# scikit-image's data (fer-ros data fetch scenes): a cluttered workshop, an outdoor scene.
BACKGROUNDS = ("motorcycle_left.png", "rocket.jpg")
FOUND_IOU = 0.3
APPROACH_FROM_M, APPROACH_TO_M, APPROACH_S, EMPTY_S = 5.0, 1.0, 10.0, 2.0


def distance_m(face_px: float) -> float:
    """Distance of a 15-cm face ``face_px`` wide in a 640x480 image of 60 degrees."""
    return FOCAL_PX * FACE_WIDTH_M / face_px


def face_px(distance: float) -> float:
    return FOCAL_PX * FACE_WIDTH_M / distance


@dataclass(frozen=True)
class Portrait:
    person: str
    rgb: np.ndarray
    box: np.ndarray  # the face, in the photo's pixels


def portraits(detector: FaceDetector) -> list[Portrait]:
    """Each validation photo with its largest face (photos without one are skipped)."""
    out = []
    for person, paths in peers.celebrity_split()[1].items():
        for path in paths:
            rgb = read_image_rgb(path)
            faces = detector.detect(rgb)
            if faces:
                out.append(Portrait(person, rgb, max(faces, key=lambda d: d.area).box))
    return out


def backgrounds() -> list[np.ndarray]:
    folder = dataset_dir("scenes")
    out = []
    for name in BACKGROUNDS:
        bgr = cv2.imread(str(folder / name))
        if bgr is None:
            raise RuntimeError(f"{folder / name} is missing: run `fer-ros data fetch scenes`")
        out.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), FRAME,
                              interpolation=cv2.INTER_AREA))
    return out


def place(portrait: Portrait, width_px: float, scene: np.ndarray,
          centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``scene`` with the portrait's face scaled to ``width_px`` and centred at
    ``centre`` (the face and two face widths around it, three below); and the face's box."""
    x1, y1, x2, y2 = portrait.box
    side = x2 - x1
    scale = width_px / side
    h, w = portrait.rgb.shape[:2]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(max(0, cx - 2.5 * side)), int(max(0, cy - 2.5 * side))
    right, bottom = int(min(w, cx + 2.5 * side)), int(min(h, cy + 3.0 * side))
    crop = portrait.rgb[top:bottom, left:right]
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    patch = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1
                       else cv2.INTER_LINEAR)
    # Where the patch's top left goes so that the face centre lands on ``centre``.
    ox = round(centre[0] - (cx - left) * scale)
    oy = round(centre[1] - (cy - top) * scale)
    out = scene.copy()
    H, W = out.shape[:2]
    sx1, sy1 = max(0, ox), max(0, oy)
    sx2, sy2 = min(W, ox + patch.shape[1]), min(H, oy + patch.shape[0])
    if sx2 > sx1 and sy2 > sy1:
        out[sy1:sy2, sx1:sx2] = patch[sy1 - oy:sy2 - oy, sx1 - ox:sx2 - ox]
    box = (np.array([x1, y1, x2, y2]) - [cx, cy, cx, cy]) * scale + [*centre, *centre]
    return out, box.astype(np.float32)


def range_scenes(people: list[Portrait], scenes: list[np.ndarray], width_px: int,
                 seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(person, scene, face box) for every portrait in every background, at random
    places where the whole face is in view (the same for a given size and seed)."""
    rng = np.random.default_rng([seed, width_px])
    out = []
    for scene in scenes:
        for p in people:
            margin = 1.5 * width_px
            centre = (float(rng.uniform(margin, FRAME[0] - margin)),
                      float(rng.uniform(margin, FRAME[1] - margin)))
            out.append((p.person, *place(p, width_px, scene, centre)))
    return out


def score(results: list, truth: np.ndarray, person: str) -> tuple[bool, bool, int]:
    """found, named (found with ``person``'s name), faces given another person's name."""
    boxes = np.array([r.box for r in results], np.float32).reshape(-1, 4)
    hits = iou_matrix(boxes, truth[None])[:, 0] > FOUND_IOU if len(boxes) else []
    found = bool(np.any(hits))
    named = any(h and r.name == person for h, r in zip(hits, results, strict=True))
    wrong = sum(1 for h, r in zip(hits, results, strict=True)
                if r.name not in (UNKNOWN, "") and not (h and r.name == person))
    return found, named, wrong


def measure_range(pipeline: FacePipeline, people: list[Portrait], scenes: list[np.ndarray],
                  sizes: tuple[int, ...] = SIZES) -> dict[str, dict]:
    """{"<face px>": {"found", "named", "wrong", "faces", "distance_m"}} (the module
    docstring says how)."""
    out = {}
    for width in sizes:
        found = named = wrong = 0
        cases = range_scenes(people, scenes, width)
        for person, scene, truth in cases:
            f, n, w = score(pipeline.process(scene, color="rgb"), truth, person)
            found, named, wrong = found + f, named + n, wrong + w
        out[str(width)] = {"found": found, "named": named, "wrong": wrong,
                           "faces": len(cases), "distance_m": round(distance_m(width), 2)}
    return out


def search_ms(searches: dict[str, Callable[[np.ndarray], object]],
              images: list[np.ndarray]) -> dict:
    """Median ms of each whole-image search over ``images``."""
    out = {}
    for label, search in searches.items():
        search(images[0])  # first call: lazy set-up
        times = []
        for image in images:
            start = time.perf_counter()
            search(image)
            times.append((time.perf_counter() - start) * 1e3)
        out[label] = round(float(np.median(times)), 1)
    return out


def approach_frames(portrait: Portrait, scene: np.ndarray, rate_hz: float,
                    ) -> tuple[list[np.ndarray], list[float]]:
    """BGR frames of the empty scene, then of the portrait walking from APPROACH_FROM_M
    to APPROACH_TO_M while crossing it; and each frame's distance (inf: empty)."""
    empty = cv2.cvtColor(scene, cv2.COLOR_RGB2BGR)
    frames, distances = [empty] * round(EMPTY_S * rate_hz), [math.inf] * round(EMPTY_S * rate_hz)
    count = round(APPROACH_S * rate_hz)
    for i in range(count):
        t = i / max(1, count - 1)
        d = APPROACH_FROM_M + (APPROACH_TO_M - APPROACH_FROM_M) * t
        width = face_px(d)
        centre = (FRAME[0] * (0.2 + 0.6 * t), FRAME[1] * 0.4)
        frames.append(cv2.cvtColor(place(portrait, width, scene, centre)[0],
                                   cv2.COLOR_RGB2BGR))
        distances.append(d)
    return frames, distances


def run_approach(portrait: Portrait, scene: np.ndarray, rate_hz: float,
                 overrides: dict[str, object], log_path: Path) -> dict:
    """The approach through perception_node (the module docstring)."""
    frames, distances = approach_frames(portrait, scene, rate_hz)
    node = live.NodeProcess(log_path, overrides)
    client = None
    try:
        node.wait_ready()
        client = live.Client()
        if not client.wait_matched():
            raise RuntimeError("the perception node never subscribed to the bench's images")
        msgs = live.image_msgs(frames)
        # A warm-up pass of the empty scene: the first images of a fresh node are slow.
        live.play(client, msgs[:1], rate_hz, EMPTY_S)
        sent = live.play(client, msgs, rate_hz, len(msgs) / rate_hz)
        time.sleep(1.0)  # answers still in flight
        with client.lock:
            answers, names, ids = (dict(client.answers), dict(client.names),
                                   dict(client.track_ids))
    finally:
        if client is not None:
            client.close()
        node.stop()
    found_at = named_at = found_after = None
    track_ids: set[int] = set()
    answered = 0
    walking = next((wall for (_, wall), d in zip(sent, distances, strict=False)
                    if math.isfinite(d)), None)
    for (key, _), d in zip(sent, distances, strict=False):
        if key not in answers:
            continue
        answered += 1
        if answers[key][1] and found_at is None and math.isfinite(d) and walking is not None:
            found_at, found_after = d, (answers[key][0] - walking) * 1e3
        if portrait.person in names.get(key, ()) and named_at is None:
            named_at = d
        if found_at is not None:
            track_ids.update(ids.get(key, ()))
    false_faces = sum(1 for (key, _), d in zip(sent, distances, strict=False)
                      if not math.isfinite(d) and key in answers and answers[key][1])
    return {"found_at_m": None if found_at is None else round(found_at, 2),
            "named_at_m": None if named_at is None else round(named_at, 2),
            "found_after_ms": None if found_after is None else round(found_after, 1),
            "track_ids": len(track_ids), "person": portrait.person,
            "images": len(sent), "answered": answered, "faces_in_empty_scene": false_faces}


def plot(result: dict, path: Path) -> None:
    """found and named (share of faces) against face width and distance, as a PNG."""
    from matplotlib.figure import Figure

    sizes = sorted(int(k) for k in result["range"])
    rows = [result["range"][str(s)] for s in sizes]
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(sizes, [r["found"] / r["faces"] for r in rows], "o-", label="found")
    ax.plot(sizes, [r["named"] / r["faces"] for r in rows], "s-", label="named")
    ax.set_xlabel("face width (px, 640x480)")
    ax.set_ylabel("share of faces")
    ax.set_ylim(0, 1.05)
    ax.axhline(0.9, color="tab:blue", lw=0.6, ls=":")
    ax.axhline(0.8, color="tab:orange", lw=0.6, ls=":")
    top = ax.secondary_xaxis("top", functions=(lambda px: FOCAL_PX * FACE_WIDTH_M
                                               / np.maximum(px, 1e-3),
                                               lambda m: FOCAL_PX * FACE_WIDTH_M
                                               / np.maximum(m, 1e-3)))
    top.set_xlabel("distance (m; 15-cm face, 60-degree camera)")
    approach = result.get("approach") or {}
    for key, style in (("found_at_m", "--"), ("named_at_m", ":")):
        if approach.get(key):
            ax.axvline(face_px(approach[key]), color="grey", lw=0.8, ls=style,
                       label=f"approach: {key.split('_')[0]} at {approach[key]} m")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"fer-ros bench --range ({time.strftime('%Y-%m-%d %H:%M')})", fontsize=9)
    fig.savefig(path, dpi=100)


def stills_config(overrides: dict[str, object]) -> PipelineConfig:
    """The still-photo defaults with the bench's ``--param``/``--device`` values (strings
    as on a command line: ``min_face_size:=40`` is the number 40)."""
    values = {key: yaml.safe_load(value) if isinstance(value, str) else value
              for key, value in overrides.items()}
    return PipelineConfig.from_values(values).changed(tracking=False)


def run_range(args: argparse.Namespace, overrides: dict[str, object], out: Path,
              log) -> int:
    """``fer-ros bench --range``: range, search cost, approach; range.json and range.png."""
    stills = FacePipeline(stills_config(overrides))
    # Where the face is in each photo: MTCNN's own search, not the search under test.
    people = portraits(FaceDetector(min_face_size=40, search="mtcnn"))
    scenes = backgrounds()
    log(f"range: {len(people)} portraits in {len(scenes)} scenes at {', '.join(map(str, SIZES))} "
        "px faces (enrolled from the training photos)")
    gallery: Gallery = peers.ours_named_accuracy(stills)["gallery"]
    stills.set_gallery(gallery)
    result: dict = {"range": measure_range(stills, people, scenes)}
    images = [scene for w in (20, 40, 80) for _, scene, _ in range_scenes(people, scenes, w)]
    old, small = (FaceDetector(min_face_size=40, search="mtcnn"),
                  FaceDetector(min_face_size=16, search="mtcnn"))
    result["search_ms"] = search_ms({
        "default": lambda image: stills.detector.detect(image, enlarge=True),
        "default_as_is": stills.detector.detect,
        "mtcnn_from_40px": old.detect, "mtcnn_from_16px": small.detect}, images[::3])
    log(f"range: {json.dumps(result)}")
    if not args.no_live:
        saved = gallery_file.save(gallery, out / "range_gallery.json")
        portrait = max(people, key=lambda p: float(p.box[2] - p.box[0]))
        log(f"approach: {portrait.person} from {APPROACH_FROM_M:g} m to {APPROACH_TO_M:g} m "
            f"in {APPROACH_S:g} s through perception_node at {args.rate:g} Hz")
        result["approach"] = run_approach(portrait, scenes[0], args.rate,
                                          {**overrides, "gallery_path": str(saved)},
                                          out / "range_node.log")
        log(f"approach: {json.dumps(result['approach'])}")
    (out / "range.json").write_text(json.dumps(result, indent=1))
    try:
        plot(result, out / "range.png")
        result["plot"] = str(out / "range.png")
    except Exception as exc:  # the numbers matter more than the picture
        log(f"plot failed: {exc!r}")
    if args.json:
        print(json.dumps(result))
    else:
        print_range(result)
        print(f"wrote {out / 'range.json'} and {out / 'range.png'}", file=sys.stdout)
    return 0


def print_range(result: dict) -> None:
    print(f"{'face px':>8} {'distance':>9} {'found':>7} {'named':>7} {'wrong':>6}")
    for size, r in result["range"].items():
        print(f"{size:>8} {r['distance_m']:>8.1f}m {r['found']:>3}/{r['faces']:<3} "
              f"{r['named']:>3}/{r['faces']:<3} {r['wrong']:>6}")
    print("whole-image search, ms per 640x480 image:", result["search_ms"])
    if "approach" in result:
        print("approach 5 m -> 1 m:", result["approach"])
