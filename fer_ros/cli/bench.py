"""``fer-ros bench``: fps, latency, CPU and memory of the live pipeline, beside its peers.

The benchmark itself is fer_ros.bench.run (see its docstring); ``--backends`` runs the
FaceNet backend comparison of fer_ros.bench.backends instead, and ``--gallery-scale``
matching, loading and enrolling at 100 to 100,000 people (fer_ros.bench.gallery_scale).
"""

from __future__ import annotations

import argparse

from fer_ros.bench import BAGS, RATE_HZ

PEERS = ["naive", "face_recognition", "ours"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/bench", help="output folder (default out/bench)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of each bag streamed to the node (default 10)")
    parser.add_argument("--rate", type=float, default=RATE_HZ,
                        help=f"camera rate in Hz (default {RATE_HZ:g})")
    parser.add_argument("--bags", nargs="+", choices=BAGS, default=None,
                        help="bags to stream (default all; with --streams: 1face, cycled "
                             "over the cameras)")
    parser.add_argument("--device", default="cpu",
                        help="the node's device for the live runs: cpu (default), cuda[:N] "
                             "or auto")
    parser.add_argument("--peer-frames", type=int, default=40,
                        help="frames per bag for the in-process runs (default 40)")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS,
                        help="in-process configurations to run (default all)")
    parser.add_argument("--id-limit", type=int, default=0,
                        help="images per person for the identity test (default 0 = all)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the in-process runs (default: the node's "
                             "torch_threads default)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra perception_node parameter for the live run")
    parser.add_argument("--no-live", action="store_true", help="skip the DDS run")
    parser.add_argument("--name-trials", type=int, default=4,
                        help="live: trials per scene of the time-to-name measurement on the "
                             "3faces bag (default 4; 0 = skip)")
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                        help="instead: images at --soak-rate Hz into the node for MINUTES, "
                             "sampling RSS and latency")
    parser.add_argument("--soak-rate", type=float, default=120.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--backends", action="store_true",
                        help="instead: FaceNet and the emotion model on one thread in PyTorch "
                             "and ONNX Runtime (needs `fer-ros models fetch`)")
    parser.add_argument("--gallery-scale", action="store_true",
                        help="instead: gallery matching, load, enrolment and memory at 100 to "
                             "100,000 people (SQLite, random embeddings)")
    parser.add_argument("--people", type=int, nargs="+", default=None,
                        help="gallery sizes for --gallery-scale (default 100 1000 10000 100000)")
    parser.add_argument("--streams", type=int, nargs="+", default=None, metavar="N",
                        help="instead: one node serving N cameras at --rate Hz each, for "
                             "each N given (fer_ros/bench/streams.py)")
    parser.add_argument("--transport", action="store_true",
                        help="instead: bytes per second and decode time of raw and JPEG images "
                             "at 480p, 720p and 1080p (fer_ros/bench/transport.py)")
    parser.add_argument("--identity", action="store_true",
                        help="instead: each embedding model on the packaged faces, open-set "
                             "(top-1, strangers called unknown, gap, TAR at FAR, EER, cost per "
                             "face; fer_ros/bench/openset.py); --id-limit enrols fewer photos")
    parser.add_argument("--idle", action="store_true",
                        help="instead: the node's CPU with nobody in view and the time to "
                             "detect a person who steps in (fer_ros/bench/idle.py)")
    parser.add_argument("--range", action="store_true",
                        help="instead: how far away people are found and named (faces of 20 "
                             "to 80 px in built 640x480 scenes) and a person walking from 5 m "
                             "to 1 m through the node (fer_ros/bench/distance.py; --no-live "
                             "skips the walk)")
    parser.add_argument("--idle-trials", type=int, default=8,
                        help="arrivals of a person measured for --idle (default 8)")
    parser.add_argument("--idle-baseline", action="store_true",
                        help="--idle: also stream with idle_detection_rate 0 (every image "
                             "searched), for comparison")
    parser.add_argument("--idle-rates", type=float, nargs="*", default=[], metavar="HZ",
                        help="--idle: also measure each idle_detection_rate given")
    parser.add_argument("--video", metavar="FILE", default=None,
                        help="instead: your own footage through the node at each --resolution "
                             "(fps, latency, CPU, id switches; fer_ros/bench/clips.py)")
    parser.add_argument("--video-people", type=int, default=1, metavar="N",
                        help="--video: people in view at once when someone is (default 1; "
                             "for its id switches)")
    parser.add_argument("--resolution", nargs="+", default=None, metavar="WxH",
                        help="sizes the real clips (or --video) are scaled to (default "
                             "640x480 1280x720 1920x1080)")
    parser.add_argument("--clip-seconds", type=float, default=15.0,
                        help="seconds each real clip is streamed at each resolution "
                             "(default 15; 0 = skip the clips)")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: torch and the pipeline take about 6 s to import and
    # `fer-ros bench --help` needs neither.
    if args.backends:
        from fer_ros.bench.backends import main

        return main()
    if args.gallery_scale:
        import json

        from fer_ros.bench import gallery_scale

        sizes = tuple(args.people) if args.people else gallery_scale.SIZES
        print(json.dumps({"gallery_scale": gallery_scale.run(sizes)}, indent=None if args.json
                         else 1))
        return 0
    if args.transport:
        import json

        from fer_ros.bench import transport

        print("transport:", json.dumps(transport.run(), indent=None if args.json else 1))
        return 0
    if args.identity:
        import json

        from fer_ros.bench import openset

        print(json.dumps({"embedding_models": openset.run(args.id_limit)},
                         indent=None if args.json else 1))
        return 0
    if args.idle:
        from fer_ros.bench.idle import run_idle

        return run_idle(args)
    from fer_ros.bench.run import run_bench

    return run_bench(args)
