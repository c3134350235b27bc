"""One ``fer-ros bench`` run: fps, latency, CPU and memory of the live pipeline and peers.

Replays two fixed 640x480 bags (1 face, 5 faces; built once into out/bench/) through the
real perception_node over DDS like a live camera, and on the same frames in-process runs
(a) the original system's naive loop (MTCNN + FaceNet + emotion on every face of every
frame, full resolution, no tracking), (b) the face_recognition library, (c') our
FacePipeline. Also the top-1 identity accuracy of each on the 5-celebrity set, so speed is
never bought with wrong names. Writes out/bench/bench.json and out/bench/bench.png.
Run it with DDS kept local (`make bench` does: `source scripts/local_dds.sh`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fer_ros.bench import (
    BAGS,
    RATE_HZ,
    clips,
    data,
    distance,
    live,
    naming,
    openset,
    peers,
    report,
    streams,
)
from fer_ros.nodes.perception.params import PARAMS
from fer_ros.pipeline import FacePipeline, PipelineConfig
from fer_ros.pipeline.emotion import EmotionClassifier
from fer_ros.pipeline.recognition import gallery_file
from fer_ros.pipeline.recognition.facenet import FaceEmbedder

NAIVE = "naive (MTCNN+FaceNet+emotion, every face)"
FACE_RECOGNITION = "face_recognition (HOG+dlib)"
OURS_IN_PROCESS = "ours (in-process)"


def check_dds() -> None:
    if "SHM" not in os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "") and \
            os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        raise SystemExit("fer-ros bench: DDS is not kept on this machine; run it as "
                         "`source scripts/local_dds.sh && fer-ros bench` (or `make bench`)")


def parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if ":=" not in item:
            raise SystemExit(f"--param wants NAME:=VALUE, got {item!r}")
        key, value = item.split(":=", 1)
        out[key] = value
    return out


def node_default(name: str) -> Any:
    """The perception node's default for parameter ``name``."""
    return next(p.default for p in PARAMS if p.name == name)


class BenchRun:
    """The steps of one run, sharing the arguments, the output folder and the report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out).resolve()
        self.report: dict = {}
        self.results: dict[str, dict] = {}
        self.identity: dict[str, dict] = {}
        self.bags: dict[str, list[np.ndarray]] = {}
        self.overrides: dict[str, Any] = {"device": args.device, **parse_params(args.param)}

    def log(self, text: str) -> None:
        # With --json, stdout carries only the JSON object.
        print(text, file=sys.stderr if self.args.json else sys.stdout, flush=True)

    def run(self) -> int:
        self.prepare()
        if self.args.streams:
            return streams.run_streams(self.args, self.overrides, self.out, self.log)
        if self.args.video:
            return self.video()
        if self.args.range:
            return distance.run_range(self.args, self.overrides, self.out, self.log)
        self.load_bags()
        if self.args.soak > 0:
            return self.soak()
        ours = self.our_pipeline()
        self.measure_identity(ours)
        if not self.args.no_live:
            self.run_live()
            if self.args.clip_seconds > 0:
                self.report["clips"] = self.run_clips(clips.packaged_clips())
        for label, make in self.peer_runners(ours).items():
            self.run_peer(label, make, ours)
        return self.finish()

    def prepare(self) -> None:
        """Output folder, thread counts and the machine's description."""
        self.out.mkdir(parents=True, exist_ok=True)
        threads = self.args.threads or node_default("torch_threads") or torch.get_num_threads()
        torch.set_num_threads(threads)
        cv2.setNumThreads(1)
        m = data.machine_info()
        self.report.update(machine=m, command=" ".join(sys.argv))
        self.log(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
                 f"({threads} thread(s) in-process), OpenCV {m['opencv']}, load average "
                 f"{' '.join(map(str, m['load_average']))}")

    def load_bags(self) -> None:
        for name in self.args.bags or BAGS:
            bag = data.build_bag(self.out, name, self.args.seconds)
            self.bags[name] = data.read_bag(bag)
            self.log(f"bag {bag}: {len(self.bags[name])} frames 640x480 bgr8 at {RATE_HZ:g} Hz")

    def soak(self) -> int:
        """--soak: images into the node for minutes; exit 1 when memory keeps growing."""
        name = list(self.bags)[-1]
        self.log(f"soak: {self.args.soak:g} min at {self.args.soak_rate:g} Hz ({name})")
        self.report["soak"] = s = live.soak(self.bags[name], self.args.soak,
                                            self.args.soak_rate, self.overrides,
                                            self.out / "soak_node.log")
        (self.out / "soak.json").write_text(json.dumps(self.report, indent=1))
        self.log(f"soak: RSS first quarter max {s['rss_mib_first_quarter_max']} MiB, last "
                 f"quarter max {s['rss_mib_last_quarter_max']} MiB: memory "
                 f"{'bounded' if s['memory_bounded'] else 'GROWING'}")
        if self.args.json:
            print(json.dumps(self.report))
        return 0 if s["memory_bounded"] else 1

    def our_pipeline(self) -> FacePipeline:
        """The node's settings, but re-embedding in the frame's own time (in-process rows
        time each frame's own work; a background thread would hide some of it)."""
        def setting(name: str) -> str:  # the live node's, so its gallery fits the node
            return str(self.overrides.get(name, node_default(name)))

        ours = FacePipeline(PipelineConfig(
            device="cpu", min_face_size=node_default("min_face_size"),
            downscale=node_default("downscale"),
            reembed_interval=node_default("reembed_interval"),
            full_detection_interval=node_default("full_detection_interval"),
            async_reembed=False, backend=setting("backend"),
            embedding_model=setting("embedding_model"),
            facenet_weights=setting("facenet_weights")))
        self.report["stages_ms"] = peers.stage_times(ours, self.bags)
        self.log(f"stages alone (ms, median): {self.report['stages_ms']}")
        return ours

    def measure_identity(self, ours: FacePipeline) -> None:
        """Our identity accuracy; the enrolled gallery is what the live node then uses."""
        self.log("identity: ours (enrol 5-celebrity train, identify val)")
        self.identity["ours"] = peers.identity_accuracy(
            lambda rgb: peers.Ours(ours).embed_largest(rgb), self.args.id_limit)
        named = peers.ours_named_accuracy(ours, self.args.id_limit)
        gallery = named.pop("gallery")
        self.identity["ours"].update(named)
        self.log("identity: each embedding model, open-set (strangers: packaged faces of "
                 "people not enrolled)")
        self.report["embedding_models"] = openset.measure(ours.detector, self.args.id_limit)
        saved = gallery_file.save(gallery, self.out / "gallery.json")
        self.overrides.setdefault("gallery_path", str(saved))

    def run_live(self) -> None:
        self.log(f"live: perception_node over DDS, {self.args.seconds:g} s per bag at "
                 f"{self.args.rate:g} Hz (+2 s warm-up), parameters {self.overrides}")
        result = live.run_live(self.bags, self.args.seconds, self.args.rate, self.overrides,
                               self.out / "node.log", after=self.time_to_name)
        self.report["node_exit_code"] = result.pop("_node_exit_code")
        self.results["ours (DDS)"] = result

    def sizes(self) -> list[tuple[int, int]]:
        try:
            return [clips.parse_resolution(t) for t in self.args.resolution
                    or [f"{w}x{h}" for w, h in clips.RESOLUTIONS]]
        except ValueError as exc:
            raise SystemExit(f"fer-ros bench: {exc}") from None

    def run_clips(self, footage: dict[str, tuple[Path, int]]) -> dict:
        """Real footage at each resolution through a fresh node (fer_ros/bench/clips.py)."""
        reid = (self.overrides["track_reid_window"] if "track_reid_window" in self.overrides
                else node_default("track_reid_window"))
        seconds = self.args.clip_seconds or self.args.seconds
        self.log(f"clips: {', '.join(footage)} through perception_node, {seconds:g} s each "
                 f"at {self.args.rate:g} Hz per resolution")
        return clips.run_clips(footage, self.sizes(), self.args.rate, seconds,
                               self.overrides, float(reid), self.out / "clips_node.log",
                               self.log)

    def video(self) -> int:
        """--video FILE: only that footage, at each --resolution."""
        path = Path(self.args.video)
        if not path.is_file():
            raise SystemExit(f"fer-ros bench: --video {path}: no such file")
        self.sizes()  # a bad --resolution or an unreadable file fails before the node starts
        try:
            data.read_video(path, 1)
        except RuntimeError as exc:
            raise SystemExit(f"fer-ros bench: --video: {exc}") from exc
        result = self.run_clips({path.name: (path, self.args.video_people)})
        self.report["clips"] = result
        (self.out / "video.json").write_text(json.dumps(self.report, indent=1))
        if self.args.json:
            print(json.dumps(report.without_series(self.report)))
        else:
            report.print_clips(result)
            print(f"wrote {self.out / 'video.json'}")
        return 0

    def time_to_name(self, client: live.Client, results: dict[str, dict]) -> None:
        """With the live node: how soon people who come into view are named (3faces)."""
        if "3faces" not in results or self.args.name_trials <= 0:
            return
        self.log(f"live: time to name, {self.args.name_trials} trials per scene")
        results["3faces"]["time_to_name_ms"] = naming.measure(client, self.args.rate,
                                                              self.args.name_trials)

    def peer_runners(self, ours: FacePipeline) -> dict[str, Callable[[], Any]]:
        """The in-process configurations asked for (--peers), as label -> constructor."""
        runners: dict[str, Callable[[], Any]] = {}
        if "naive" in self.args.peers:
            # The original system ran PyTorch: its loop keeps PyTorch whatever ours runs.
            runners[NAIVE] = lambda: peers.Naive((
                ours.detector, FaceEmbedder(device="cpu", backend="torch"),
                EmotionClassifier(device="cpu", backend="torch")))
        if "face_recognition" in self.args.peers:
            runners[FACE_RECOGNITION] = peers.FaceRecognitionLib
        if "ours" in self.args.peers:
            runners[OURS_IN_PROCESS] = lambda: peers.Ours(ours)
        return runners

    def run_peer(self, label: str, make: Callable[[], Any], ours: FacePipeline) -> None:
        """Per-frame times of one configuration on every bag, then its identity accuracy."""
        try:
            runner = make()
        except peers.PeerUnavailable as exc:
            self.log(f"skipping {label}: {exc}")
            self.report.setdefault("skipped", {})[label] = str(exc)
            return
        self.results[label] = {}
        for name, frames in self.bags.items():
            self.log(f"in-process: {label} on {name} ({self.args.peer_frames} frames)")
            if isinstance(runner, peers.Ours):
                ours.tracker.reset()
            self.results[label][name] = peers.time_frames(runner,
                                                          frames[:self.args.peer_frames])
        if isinstance(runner, peers.Naive):
            self.log(f"identity: {label}")
            self.identity["naive"] = peers.identity_accuracy(runner.embed_largest,
                                                             self.args.id_limit)
        elif isinstance(runner, peers.FaceRecognitionLib):
            self.log(f"identity: {label}")
            self.identity["face_recognition"] = peers.identity_accuracy(
                runner.embed_largest, self.args.id_limit, cosine=False)

    def finish(self) -> int:
        """Ratios and floors; bench.json, bench.png; the table or the JSON object."""
        rep = self.report
        rep.update(results=self.results, identity=self.identity,
                   ratios=report.fps_ratios(self.results),
                   floors=report.check_floors(self.results.get("ours (DDS)", {})))
        rep["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        (self.out / "bench.json").write_text(json.dumps(rep, indent=1))
        try:
            report.plot(self.results, self.out / "bench.png")
            rep["plot"] = str(self.out / "bench.png")
        except Exception as exc:  # the numbers matter more than the picture
            self.log(f"plot failed: {exc!r}")
        (self.out / "bench.json").write_text(json.dumps(rep, indent=1))
        if self.args.json:
            print(json.dumps(report.without_series(rep)))
        else:
            report.print_table(rep)
            print(f"wrote {self.out / 'bench.json'} and {self.out / 'bench.png'}")
        return 0


def run_bench(args: argparse.Namespace) -> int:
    """``fer-ros bench`` (without --backends)."""
    check_dds()
    return BenchRun(args).run()
