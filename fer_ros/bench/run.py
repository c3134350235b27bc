"""``fer-ros bench``: fps, latency, CPU and memory of the live pipeline, beside its peers.

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
import time
from pathlib import Path

from fer_ros.bench.data import BAGS, RATE_HZ

# The floors on a 2-core CPU: (min fps, max p95 latency ms or None).
FLOORS = {"1face": (15.0, 150.0), "5faces": (8.0, None)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/bench", help="output folder (default out/bench)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of each bag streamed to the node (default 10)")
    parser.add_argument("--rate", type=float, default=RATE_HZ,
                        help=f"camera rate in Hz (default {RATE_HZ:g})")
    parser.add_argument("--bags", nargs="+", choices=BAGS, default=list(BAGS))
    parser.add_argument("--peer-frames", type=int, default=40,
                        help="frames per bag for the in-process runs (default 40)")
    parser.add_argument("--peers", nargs="*", default=["naive", "face_recognition", "ours"],
                        choices=["naive", "face_recognition", "ours"],
                        help="in-process configurations to run (default all)")
    parser.add_argument("--id-limit", type=int, default=0,
                        help="images per person for the identity test (default 0 = all)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the in-process runs (default: the node's "
                             "torch_threads default)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra perception_node parameter for the live run")
    parser.add_argument("--no-live", action="store_true", help="skip the DDS run")
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES",
                        help="instead: images at --soak-rate Hz into the node for MINUTES, "
                             "sampling RSS and latency")
    parser.add_argument("--soak-rate", type=float, default=120.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _log(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def _node_default(name: str):
    from fer_ros.nodes.perception_node import PARAMS

    return next(p.default for p in PARAMS if p.name == name)


def _check_dds() -> None:
    if "SHM" not in os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "") and \
            os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") != "LOCALHOST":
        raise SystemExit("fer-ros bench: DDS is not kept on this machine; run it as "
                         "`source scripts/local_dds.sh && fer-ros bench` (or `make bench`)")


def _parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if ":=" not in item:
            raise SystemExit(f"--param wants NAME:=VALUE, got {item!r}")
        key, value = item.split(":=", 1)
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    _check_dds()
    import cv2
    import torch

    from fer_ros.bench import data as bench_data, live as bench_live, peers as bench_peers

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or _node_default("torch_threads") or torch.get_num_threads()
    torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    report: dict = {"machine": bench_data.machine_info(), "command": " ".join(sys.argv)}
    m = report["machine"]
    _log(args, f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
               f"({threads} thread(s) in-process), OpenCV {m['opencv']}, load average "
               f"{' '.join(map(str, m['load_average']))}")

    bags = {}
    for name in args.bags:
        bag = bench_data.build_bag(out, name, args.seconds)
        bags[name] = bench_data.read_bag(bag)
        _log(args, f"bag {bag}: {len(bags[name])} frames 640x480 bgr8 at {RATE_HZ:g} Hz")
    overrides = {"device": "cpu", **_parse_params(args.param)}

    if args.soak > 0:
        frames = bags[args.bags[-1]]
        _log(args, f"soak: {args.soak:g} min at {args.soak_rate:g} Hz ({args.bags[-1]})")
        report["soak"] = bench_live.soak(frames, args.soak, args.soak_rate, overrides,
                                         out / "soak_node.log")
        (out / "soak.json").write_text(json.dumps(report, indent=1))
        s = report["soak"]
        _log(args, f"soak: RSS first quarter max {s['rss_mib_first_quarter_max']} MiB, last "
                   f"quarter max {s['rss_mib_last_quarter_max']} MiB: memory "
                   f"{'bounded' if s['memory_bounded'] else 'GROWING'}")
        if args.json:
            print(json.dumps(report))
        return 0 if s["memory_bounded"] else 1

    from fer_ros.pipeline import FacePipeline, PipelineConfig

    # The node's settings, but re-embedding in the frame's own time (in-process rows
    # time each frame's own work; a background thread would hide some of it).
    ours = FacePipeline(PipelineConfig(
        device="cpu", min_face_size=_node_default("min_face_size"),
        downscale=_node_default("downscale"),
        reembed_interval=_node_default("reembed_interval"),
        full_detection_interval=_node_default("full_detection_interval"),
        async_reembed=False))
    report["stages_ms"] = bench_peers.stage_times(ours, bags)
    _log(args, f"stages alone (ms, median): {report['stages_ms']}")
    _log(args, "identity: ours (enrol 5-celebrity train, identify val)")
    identity = {"ours": bench_peers.identity_accuracy(
        lambda rgb: bench_peers.Ours(ours).embed_largest(rgb), args.id_limit)}
    named = bench_peers.ours_named_accuracy(ours, args.id_limit)
    gallery = named.pop("gallery")
    identity["ours"].update(named)
    gallery_path = gallery.save(out / "gallery.json")
    overrides.setdefault("gallery_path", str(gallery_path))

    results: dict[str, dict] = {}
    if not args.no_live:
        _log(args, f"live: perception_node over DDS, {args.seconds:g} s per bag at "
                   f"{args.rate:g} Hz (+2 s warm-up), parameters {overrides}")
        live = bench_live.run_live(bags, args.seconds, args.rate, overrides,
                                   out / "node.log")
        report["node_exit_code"] = live.pop("_node_exit_code")
        results["ours (DDS)"] = live

    runners = {}
    if "naive" in args.peers:
        runners["naive (MTCNN+FaceNet+emotion, every face)"] = (
            lambda: bench_peers.Naive((ours.detector, ours.embedder, ours.classifier)))
    if "face_recognition" in args.peers:
        runners["face_recognition (HOG+dlib)"] = bench_peers.FaceRecognitionLib
    if "ours" in args.peers:
        runners["ours (in-process)"] = lambda: bench_peers.Ours(ours)
    for label, make in runners.items():
        try:
            runner = make()
        except bench_peers.PeerUnavailable as exc:
            _log(args, f"skipping {label}: {exc}")
            report.setdefault("skipped", {})[label] = str(exc)
            continue
        results[label] = {}
        for name, frames in bags.items():
            _log(args, f"in-process: {label} on {name} ({args.peer_frames} frames)")
            if isinstance(runner, bench_peers.Ours):
                ours.tracker.reset()
            results[label][name] = bench_peers.time_frames(runner, frames[:args.peer_frames])
        if isinstance(runner, bench_peers.Naive):
            _log(args, f"identity: {label}")
            identity["naive"] = bench_peers.identity_accuracy(runner.embed_largest,
                                                              args.id_limit)
        elif isinstance(runner, bench_peers.FaceRecognitionLib):
            _log(args, f"identity: {label}")
            identity["face_recognition"] = bench_peers.identity_accuracy(
                runner.embed_largest, args.id_limit, cosine=False)

    report["results"] = results
    report["identity"] = identity
    report["ratios"] = _ratios(results)
    report["floors"] = _floors(results.get("ours (DDS)", {}))
    report["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    try:
        _plot(results, out / "bench.png")
        report["plot"] = str(out / "bench.png")
    except Exception as exc:  # the numbers matter more than the picture
        _log(args, f"plot failed: {exc!r}")
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(_without_series(report)))
    else:
        _print_table(report)
        print(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0


def _fps(entry: dict) -> float:
    return float(entry.get("fps", 0.0))


def _ratios(results: dict[str, dict]) -> dict:
    ratios: dict[str, dict] = {}
    ours_keys = [k for k in ("ours (DDS)", "ours (in-process)") if k in results]
    peers = [k for k in results if not k.startswith("ours")]
    for ours in ours_keys:
        for peer in peers:
            for bag, entry in results[peer].items():
                if bag in results[ours] and _fps(entry) > 0:
                    ratios.setdefault(f"{ours} / {peer}", {})[bag] = round(
                        _fps(results[ours][bag]) / _fps(entry), 2)
    return ratios


def _floors(live: dict) -> dict:
    checks = {}
    for bag, (min_fps, max_p95) in FLOORS.items():
        if bag not in live:
            continue
        r = live[bag]
        ok = r["fps"] >= min_fps and (max_p95 is None or r["latency_ms"]["p95"] <= max_p95)
        checks[bag] = {"fps": r["fps"], "min_fps": min_fps, "p95_ms": r["latency_ms"]["p95"],
                       "max_p95_ms": max_p95, "met": bool(ok)}
    return checks


def _without_series(report: dict) -> dict:
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in ("series", "series_ms")}
        return obj

    return strip(report)


def _print_table(report: dict) -> None:
    print()
    print(f"{'configuration':44} {'bag':7} {'fps':>6} {'p50':>7} {'p95':>7} {'max':>7} "
          f"{'drop':>5} {'CPU%':>6} {'RSS MiB':>8}")
    for label, per_bag in report["results"].items():
        for bag, r in per_bag.items():
            if "latency_ms" in r:  # live: latency image stamp -> /faces/emotions
                lat = r["latency_ms"]
                print(f"{label:44} {bag:7} {r['fps']:6.1f} {lat['p50']:7.1f} {lat['p95']:7.1f} "
                      f"{lat['max']:7.1f} {r['dropped']:5d} {r.get('cpu_percent_mean', 0):6.0f} "
                      f"{r.get('rss_mib_max', 0):8.0f}")
            else:  # in-process: per-frame processing time
                print(f"{label:44} {bag:7} {r['fps']:6.1f} {r['ms_p50']:7.1f} {r['ms_p95']:7.1f} "
                      f"{r['ms_max']:7.1f} {'-':>5} {'-':>6} {'-':>8}")
        if per_bag and "stages_ms" in next(iter(per_bag.values())):
            for bag, r in per_bag.items():
                print(f"  stages on {bag} (ms, node diagnostics): {r.get('stages_ms')}")
    print("(live rows: latency = image stamp -> /faces/emotions received; in-process rows: "
          "per-frame time)")
    print("identity accuracy (top-1, 5-celebrity val):",
          {k: v.get("top1") for k, v in report["identity"].items()},
          "| ours with threshold:", report["identity"]["ours"].get("named_correct"))
    print("ratios (fps):", report["ratios"])
    print("floors:", report["floors"])


def _plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    for label, per_bag in results.items():
        for bag, r in per_bag.items():
            if "series" in r and r["series"]["t"]:
                ax1.plot(r["series"]["t"], r["series"]["latency_ms"], lw=1,
                         label=f"{label} {bag}: latency")
            elif "series_ms" in r:
                t = [i / RATE_HZ for i in range(len(r["series_ms"]))]
                ax1.plot(t, r["series_ms"], lw=1, ls="--", label=f"{label} {bag}: per-frame")
    ax1.axhline(150, color="red", lw=0.8, ls=":", label="150 ms p95 floor")
    ax1.set_xlabel("time (s; in-process runs at frame index / 30)")
    ax1.set_ylabel("ms")
    ax1.set_yscale("log")
    ax1.set_title("latency over time (live) / per-frame time (in-process)")
    ax1.legend(fontsize=7)
    labels, values = [], []
    for label, per_bag in results.items():
        for bag, r in per_bag.items():
            labels.append(f"{label}\n{bag}")
            values.append(_fps(r))
    ax2.barh(range(len(values)), values, color="tab:blue")
    ax2.set_yticks(range(len(values)), labels, fontsize=7)
    for bag, (min_fps, _) in FLOORS.items():
        ax2.axvline(min_fps, ls=":", lw=0.8, color="red")
        ax2.text(min_fps, len(values) - 0.5, f" {bag} floor", fontsize=7, color="red")
    ax2.set_xlabel("processed frames per second")
    ax2.set_title("fps per configuration")
    fig.suptitle(f"fer-ros bench ({time.strftime('%Y-%m-%d %H:%M')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
