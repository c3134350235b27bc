"""``fer-ros bench --streams N [N ...]``: one perception_node serving N cameras over DDS.

For each N, a fresh node with ``streams: [s0 .. sN-1]`` and N simulated cameras, each
publishing a bench bag (``--bags``, cycled over the cameras; default the 1-face bag) at
``--rate`` Hz on /s<i>/image, stamped at send time, for a warm-up and ``--seconds``. Each
camera's /s<i>/faces/emotions is measured as ``fer-ros bench`` measures one: fps
processed, latency from stamp to receipt, dropped. Prints (``--json``) one object with
``streams``: {"n", "aggregate_fps", "per_stream": [{"fps", "latency_ms", ...}], ...} for
one N, or a list of them for several, and writes out/bench/streams.json and a plot of
aggregate fps and p95 latency against N (streams.png).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fer_ros.bench import data, live
from fer_ros.msg import FaceEmotionArray
from fer_ros.ros.background import BackgroundNode
from fer_ros.ros.qos import qos_profile


class Cameras(BackgroundNode):
    """N camera-like publishers and the listeners of their results."""

    def __init__(self, count: int) -> None:
        super().__init__("fer_ros_bench_streams")
        self.names = [f"s{i}" for i in range(count)]
        self.lock = threading.Lock()
        # (stream, stamp) -> receive wall time and faces
        self.answers: dict[tuple[str, int, int], tuple[float, int]] = {}
        sensor = qos_profile("sensor_data")
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = [self.node.create_publisher(Image, f"/{n}/image", sensor)
                     for n in self.names]
        for name in self.names:
            self.node.create_subscription(
                FaceEmotionArray, f"/{name}/faces/emotions",
                lambda msg, n=name: self._on_out(n, msg), reliable)

    def _on_out(self, name: str, msg: FaceEmotionArray) -> None:
        now = time.time()
        with self.lock:
            self.answers[(name, msg.header.stamp.sec, msg.header.stamp.nanosec)] = (
                now, len(msg.faces))

    def wait_matched(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self.pubs):
                time.sleep(0.3)  # let the other side match us too
                return True
            time.sleep(0.05)
        return False

    def play(self, msgs: list[list[Image]], rate_hz: float, warmup_s: float,
             seconds: float) -> list[list[tuple[tuple[int, int], float]]]:
        """Every camera publishes its next image each period; the measured (stamp, wall
        time) per camera (after the warm-up)."""
        sent: list[list] = [[] for _ in self.pubs]
        period = 1.0 / rate_hz
        start = time.monotonic()
        next_due, i = start, 0
        while (now := time.monotonic()) < start + warmup_s + seconds:
            if now < next_due:
                time.sleep(min(next_due - now, 0.005))
                continue
            for k, pub in enumerate(self.pubs):
                msg = msgs[k][i % len(msgs[k])]
                wall = time.time()
                msg.header.stamp.sec = int(wall)
                msg.header.stamp.nanosec = int((wall - int(wall)) * 1e9)
                pub.publish(msg)
                if now >= start + warmup_s:
                    sent[k].append(((msg.header.stamp.sec, msg.header.stamp.nanosec), wall))
            i += 1
            next_due += period
            if next_due < now - period:  # fell behind: do not burst to catch up
                next_due = now
        return sent


def measure(count: int, bags: dict[str, list[np.ndarray]], args: argparse.Namespace,
            overrides: dict, out: Path) -> dict:
    """One node, ``count`` cameras: per-stream and aggregate figures."""
    names = list(bags)
    node = live.NodeProcess(out / f"streams_{count}_node.log",
                            {**overrides, "streams": "[" + ",".join(
                                f"s{i}" for i in range(count)) + "]"})
    cams = None
    try:
        node.wait_ready()
        cams = Cameras(count)
        if not cams.wait_matched():
            raise RuntimeError("the perception node never subscribed to every /s<i>/image")
        msgs = [live.image_msgs(bags[names[k % len(names)]]) for k in range(count)]
        sampler = live.Sampler(node.popen.pid)
        sent = cams.play(msgs, args.rate, 3.0, args.seconds)
        time.sleep(1.0)  # answers still in flight
        samples = sampler.stop()
        with cams.lock:
            answers = dict(cams.answers)
    finally:
        if cams is not None:
            cams.close()
        code = node.stop()
    per_stream = []
    for k, name in enumerate(cams.names):
        lat, t_ans, faces = [], [], []
        for (sec, nsec), wall in sent[k]:
            hit = answers.get((name, sec, nsec))
            if hit is not None:
                lat.append((hit[0] - wall) * 1e3)
                t_ans.append(hit[0])
                faces.append(hit[1])
        row = live.summarise(sent[k], lat, t_ans, faces)
        row["bag"] = names[k % len(names)]
        per_stream.append(row)
    measured = samples[max(0, len(samples) - int(args.seconds / 0.5)):]
    all_lat = [row["latency_ms"]["p95"] for row in per_stream]
    return {"n": count, "aggregate_fps": round(sum(r["fps"] for r in per_stream), 2),
            "min_stream_fps": min(r["fps"] for r in per_stream),
            "max_stream_p95_ms": max(all_lat), "per_stream": per_stream,
            **live.resource_usage(measured), "node_exit_code": code}


def plot(runs: list[dict], path: Path, title: str) -> None:
    import matplotlib  # only here: the rest of the bench runs without a display

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in runs]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n, [r["aggregate_fps"] for r in runs], "o-", label="aggregate fps")
    ax.plot(n, [r["min_stream_fps"] for r in runs], "s--", label="slowest stream fps")
    ax.set_xticks(n)
    ax.set_xlabel("streams (cameras) into one perception node")
    ax.set_ylabel("frames per second")
    ax2 = ax.twinx()
    ax2.plot(n, [r["max_stream_p95_ms"] for r in runs], "^:", color="tab:red",
             label="worst stream p95 latency")
    ax2.set_ylabel("p95 latency (ms)")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_streams(args: argparse.Namespace, overrides: dict, out: Path, log) -> int:
    bag_names = args.bags or ["1face"]
    bags = {name: data.read_bag(data.build_bag(out, name, args.seconds))
            for name in bag_names}
    machine = data.machine_info()
    runs = []
    for count in args.streams:
        log(f"streams: {count} camera(s) at {args.rate:g} Hz ({', '.join(bag_names)})")
        run = measure(count, bags, args, overrides, out)
        runs.append(run)
        log(f"  aggregate {run['aggregate_fps']} fps, slowest stream {run['min_stream_fps']}"
            f" fps, worst p95 {run['max_stream_p95_ms']} ms, CPU "
            f"{run.get('cpu_percent_mean', '-')}%")
    device = overrides.get("device", "cpu")
    report = {"machine": machine, "command": " ".join(sys.argv), "device": device,
              "streams": runs[0] if len(runs) == 1 else runs}
    plot(runs, out / "streams.png", f"{machine['cpu']}, device {device}, bags "
         f"{', '.join(bag_names)} at {args.rate:g} Hz per camera")
    report["plot"] = str(out / "streams.png")
    (out / "streams.json").write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report))
    return 0 if all(r["node_exit_code"] == 0 for r in runs) else 1
