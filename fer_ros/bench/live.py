"""The live part of the benchmark: the real perception_node process over DDS.

The bench process publishes frames like a live camera (header.stamp = now, sensor_data
QoS) and listens on /faces/emotions; latency = receive time - header stamp, dropped =
sent - answered. The node's CPU% and RSS are sampled with psutil and its per-stage times
come from its /diagnostics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from fer_ros.bench import TOPIC as IMAGE_TOPIC
from fer_ros.msg import FaceEmotionArray
from fer_ros.paths import share_dir
from fer_ros.ros.background import BackgroundNode
from fer_ros.ros.image_codec import image_to_compressed, image_to_msg
from fer_ros.ros.qos import qos_profile
from fer_ros.ros.status_names import stream_of


def node_executable() -> str:
    return str(Path(sys.prefix) / "lib" / "fer_ros" / "perception_node")


def params_file() -> Path:
    installed = share_dir() / "config" / "perception.yaml"
    return installed if installed.is_file() else Path("config/perception.yaml").resolve()


class NodeProcess:
    """perception_node started by the bench (signalled by its PID only)."""

    def __init__(self, log: Path, overrides: dict[str, object]) -> None:
        args = [node_executable(), "--ros-args", "--params-file", str(params_file()),
                "-r", f"image:={IMAGE_TOPIC}"]
        for key, value in overrides.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        self.log_path = log
        self._log = open(log, "wb")
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                      start_new_session=True)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "models loaded" in self.output():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("perception_node did not start:\n" + self.output()[-3000:])

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            code = self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait(5)
        self._log.close()
        return code


class Client(BackgroundNode):
    """The bench's own ROS node: camera-like publisher, result and diagnostics listener."""

    def __init__(self, transport: str = "raw") -> None:
        super().__init__("fer_ros_bench")
        # As a camera driver with compressed_image_transport publishes: JPEG beside raw.
        self.transport = transport
        kind, topic = ((CompressedImage, f"{IMAGE_TOPIC}/compressed") if transport == "compressed"
                       else (Image, IMAGE_TOPIC))
        self.pub = self.node.create_publisher(kind, topic, qos_profile("sensor_data"))
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        # stamp -> (t, faces, faces named: a name other than "unknown")
        self.answers: dict[tuple[int, int], tuple[float, int, int]] = {}
        self.track_ids: dict[tuple[int, int], tuple[int, ...]] = {}  # stamp -> faces' ids
        self.names: dict[tuple[int, int], tuple[str, ...]] = {}  # stamp -> faces' names
        self.diagnostics: list = []
        self.node.create_subscription(FaceEmotionArray, "/faces/emotions", self._on_out,
                                      reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_out(self, msg) -> None:
        now = time.time()
        named = sum(1 for face in msg.faces if face.name not in ("", "unknown"))
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            self.answers[stamp] = (now, len(msg.faces), named)
            self.track_ids[stamp] = tuple(face.track_id for face in msg.faces)
            self.names[stamp] = tuple(face.name for face in msg.faces)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if stream_of(status.name) is not None:
                with self.lock:
                    self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def wait_matched(self, timeout: float = 20.0) -> bool:
        """Both ways: the node takes our images and we hear its results (a node whose
        results publisher we have not discovered yet would answer into the void: seen
        once as 0 answers on a busy machine)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.pub.get_subscription_count() > 0
                    and self.node.count_publishers("/faces/emotions") > 0):
                time.sleep(0.3)  # let the other side match us too
                return True
            time.sleep(0.05)
        return False


# compressed_image_transport's default quality, as fer-ros bench --transport measures.
JPEG_QUALITY = 95


def image_msgs(frames: list[np.ndarray], transport: str = "raw") -> list:
    msgs = []
    for frame in frames:
        msg = (image_to_compressed(frame, "bgr8", "jpeg", JPEG_QUALITY)
               if transport == "compressed" else image_to_msg(frame, "bgr8"))
        msg.header.frame_id = "bench_camera"
        msgs.append(msg)
    return msgs


def _stamp_now(msg) -> tuple[int, int, float]:
    now = time.time()
    sec = int(now)
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, int((now - sec) * 1e9)
    return msg.header.stamp.sec, msg.header.stamp.nanosec, now


class Sampler:
    """CPU% and RSS of one process, sampled on a thread."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self.proc = psutil.Process(pid)
        self.period = period
        self.samples: list[tuple[float, float, float]] = []  # (t, cpu %, rss MiB)
        self._stop = threading.Event()
        self.proc.cpu_percent(None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                with self.proc.oneshot():
                    cpu = self.proc.cpu_percent(None)
                    rss = self.proc.memory_info().rss / 2**20
            except Exception:
                return
            self.samples.append((time.monotonic(), cpu, rss))

    def stop(self) -> list[tuple[float, float, float]]:
        self._stop.set()
        self._thread.join(timeout=2)
        return self.samples


def stream(client: Client, frames: list, rate_hz: float, seconds: float,
           warmup_s: float = 2.0, sampler: Sampler | None = None,
           tail_s: float = 1.0) -> dict:
    """Publish the frames (looping; images, or messages from ``image_msgs``) at
    ``rate_hz`` for warm-up + ``seconds``; measure. ``series`` holds each answer's time,
    latency and faces' track ids, in the order the frames were sent."""
    msgs = frames if frames and not isinstance(frames[0], np.ndarray) else \
        image_msgs(frames, client.transport)
    sent, sample_mark = _publish_frames(client, msgs, rate_hz, warmup_s, seconds, sampler)
    time.sleep(tail_s)  # answers still in flight
    with client.lock:
        answers = dict(client.answers)
        track_ids = dict(client.track_ids)
        diags = list(client.diagnostics)
    lat, t_ans, faces, ids = [], [], [], []
    for key, wall in sent:
        if key in answers:
            t, n, _ = answers[key]
            lat.append((t - wall) * 1e3)
            t_ans.append(t)
            faces.append(n)
            ids.append(list(track_ids.get(key, ())))
    result = summarise(sent, lat, t_ans, faces)
    if sampler is not None:
        result.update(resource_usage(sampler.samples[sample_mark:]))
    if diags:
        result.update(_node_reported(diags[-1]))
    result["series"] = {"t": [round(t - t_ans[0], 3) for t in t_ans] if t_ans else [],
                        "latency_ms": [round(v, 1) for v in lat], "track_ids": ids}
    return result


def _publish_frames(client: Client, msgs: list, rate_hz: float, warmup_s: float,
                    seconds: float, sampler: Sampler | None,
                    ) -> tuple[list[tuple[tuple[int, int], float]], int]:
    """Publish like a camera; returns the measured frames (stamp key, wall time) and the
    sampler index where measuring began (warm-up frames are sent but not measured)."""
    period = 1.0 / rate_hz
    sent: list[tuple[tuple[int, int], float]] = []
    start = time.monotonic()
    warm_until = start + warmup_s
    end = warm_until + seconds
    i = 0
    next_due = start
    sample_mark = None
    while (now := time.monotonic()) < end:
        if now < next_due:
            time.sleep(min(next_due - now, 0.01))
            continue
        sec, nsec, wall = _stamp_now(msgs[i % len(msgs)])
        client.pub.publish(msgs[i % len(msgs)])
        if now >= warm_until:
            if sample_mark is None:  # measuring starts: forget the warm-up's numbers
                sample_mark = len(sampler.samples) if sampler else 0
                with client.lock:
                    client.diagnostics.clear()
            sent.append(((sec, nsec), wall))
        i += 1
        next_due += period
        if next_due < now - period:  # fell behind (a stall): do not burst to catch up
            next_due = now
    return sent, sample_mark or 0


def play(client: Client, msgs: list, rate_hz: float,
         seconds: float) -> list[tuple[tuple[int, int], float]]:
    """Publish ``msgs`` (looping) like a camera for ``seconds``: (stamp key, wall time)s."""
    return _publish_frames(client, msgs, rate_hz, 0.0, seconds, None)[0]


def resource_usage(window: list[tuple[float, float, float]]) -> dict:
    """Mean and max CPU% and RSS of the node over the measured window."""
    if not window:
        return {}
    cpu = [s[1] for s in window]
    rss = [s[2] for s in window]
    return {"cpu_percent_mean": round(float(np.mean(cpu)), 1),
            "cpu_percent_max": round(float(np.max(cpu)), 1),
            "rss_mib_mean": round(float(np.mean(rss)), 1),
            "rss_mib_max": round(float(np.max(rss)), 1)}


def _node_reported(last: dict) -> dict:
    """Per-stage times and the node's own figures, from its last /diagnostics status."""
    return {
        "stages_ms": {k.split(" time")[0]: _num(last.get(k)) for k in
                      ("detect time (ms)", "embed time (ms)", "emotion time (ms)",
                       "total time (ms)")},
        "node_reported": {k: last.get(k) for k in
                          ("output rate (Hz)", "latency mean (ms)", "latency p95 (ms)",
                           "images dropped", "images received")},
    }


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def summarise(sent: list, lat: list[float], t_ans: list[float], faces: list[int]) -> dict:
    answered = len(lat)
    span = (t_ans[-1] - t_ans[0]) if answered > 1 else 0.0
    arr = np.asarray(lat) if lat else np.zeros(1)
    return {"sent": len(sent), "answered": answered, "dropped": len(sent) - answered,
            "fps": round((answered - 1) / span, 2) if span > 0 else 0.0,
            "latency_ms": {"p50": round(float(np.percentile(arr, 50)), 1),
                           "p95": round(float(np.percentile(arr, 95)), 1),
                           "max": round(float(arr.max()), 1)},
            "faces_mean": round(float(np.mean(faces)), 2) if faces else 0.0}


def run_live(frames_by_bag: dict[str, list[np.ndarray]], seconds: float, rate_hz: float,
             overrides: dict[str, object], log: Path,
             after: Callable[[Client, dict[str, dict]], None] | None = None) -> dict:
    """One node process; each bag streamed in turn (a fresh warm-up for each); then
    ``after(client, results)`` with the same node (further measurements)."""
    node = NodeProcess(log, overrides)
    client = None
    results: dict[str, dict] = {}
    try:
        node.wait_ready()
        client = Client(str(overrides.get("image_transport", "raw")))
        if not client.wait_matched():
            raise RuntimeError("the perception node never subscribed to " + IMAGE_TOPIC)
        sampler = Sampler(node.popen.pid)
        for name, frames in frames_by_bag.items():
            results[name] = stream(client, frames, rate_hz, seconds, sampler=sampler)
            time.sleep(1.5)  # tracks of this bag age out before the next one
        sampler.stop()
        if after is not None:
            after(client, results)
    finally:
        if client is not None:
            client.close()
        code = node.stop()
    results["_node_exit_code"] = code
    return results


def soak(frames: list[np.ndarray], minutes: float, rate_hz: float,
         overrides: dict[str, object], log: Path, sample_s: float = 5.0) -> dict:
    """Images at ``rate_hz`` for ``minutes``: RSS and latency over time."""
    node = NodeProcess(log, overrides)
    client = None
    rows = []
    try:
        node.wait_ready()
        client = Client()
        if not client.wait_matched():
            raise RuntimeError("the perception node never subscribed to " + IMAGE_TOPIC)
        sampler = Sampler(node.popen.pid, period=1.0)
        start = time.monotonic()
        total = minutes * 60.0
        while time.monotonic() - start < total:
            chunk = min(sample_s, total - (time.monotonic() - start))
            with client.lock:
                client.answers.clear()
            r = stream(client, frames, rate_hz, chunk, warmup_s=0.0, sampler=sampler,
                       tail_s=0.3)
            rss = sampler.samples[-1][2] if sampler.samples else 0.0
            rows.append({"t_s": round(time.monotonic() - start, 1), "rss_mib": round(rss, 1),
                         "fps": r["fps"], "latency_p50_ms": r["latency_ms"]["p50"],
                         "latency_p95_ms": r["latency_ms"]["p95"], "sent": r["sent"],
                         "answered": r["answered"]})
            print(f"  soak {rows[-1]['t_s']:7.1f} s: RSS {rss:7.1f} MiB, {r['fps']:5.1f} fps, "
                  f"p95 {r['latency_ms']['p95']:6.1f} ms", flush=True)
        sampler.stop()
    finally:
        if client is not None:
            client.close()
        code = node.stop()
    rss = np.array([r["rss_mib"] for r in rows]) if rows else np.zeros(1)
    quarter = max(1, len(rss) // 4)
    early, late = float(rss[:quarter].max()), float(rss[-quarter:].max())
    # Bounded: the last quarter's peak is within 5% (+20 MiB slack) of the first quarter's.
    bounded = late <= early * 1.05 + 20.0
    return {"minutes": minutes, "rate_hz": rate_hz, "rows": rows,
            "rss_mib_first_quarter_max": round(early, 1),
            "rss_mib_last_quarter_max": round(late, 1), "memory_bounded": bool(bounded),
            "node_exit_code": code}
