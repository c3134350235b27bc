"""The perception node's counters and its /diagnostics status (one DiagnosticStatus per
stream, named as fer_ros/ros/status_names.py says), kept apart from the node so the node
stays an adapter."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from fer_ros.pipeline import FaceStreams, StageTimes
from fer_ros.pipeline.engine.camera import CameraState
from fer_ros.ros.status_names import status_name

# Seconds of recent outputs that rates, latencies and stage times are computed over.
WINDOW_S = 5.0


@dataclass
class PerceptionStats:
    """Counters since start-up and the recent outputs (publish time, latency, stage times)."""

    counts: dict[str, int] = field(default_factory=lambda: {
        "received": 0, "dropped": 0, "published": 0, "bad": 0})
    window: deque = field(default_factory=lambda: deque(maxlen=300))
    last_received: float | None = None  # monotonic time of the last image
    _at_last_report: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def published(self, latency_s: float, times: StageTimes) -> None:
        with self.lock:
            self.counts["published"] += 1
            self.window.append((time.monotonic(), latency_s, times))

    def period(self) -> tuple[dict[str, int], dict[str, int], list]:
        """Totals, the change since the previous call, and the recent outputs."""
        now = time.monotonic()
        with self.lock:
            totals = dict(self.counts)
            recent = [w for w in self.window if now - w[0] <= WINDOW_S]
        delta = {k: totals[k] - self._at_last_report.get(k, 0) for k in totals}
        self._at_last_report = totals
        return totals, delta, recent

    def summary(self) -> str:
        c = self.counts
        return (f"received {c['received']}, published {c['published']}, dropped "
                f"{c['dropped']}, rejected {c['bad']}")


def _level(stats: PerceptionStats, delta: dict[str, int], latency_ms: np.ndarray,
           params: dict[str, Any]) -> tuple[int, str]:
    silent = (time.monotonic() - stats.last_received
              if stats.last_received is not None else None)
    drop_ratio = delta["dropped"] / delta["received"] if delta["received"] else 0.0
    if delta["bad"] and delta["published"] == 0:
        return DiagnosticStatus.ERROR, "every image was rejected"
    if silent is None:
        return DiagnosticStatus.WARN, "no images received"
    if silent > max(5.0, 2 * params["diagnostics_period"]):
        return DiagnosticStatus.WARN, f"no images for {silent:.0f} s"
    if latency_ms.size and latency_ms.mean() > params["latency_warn_ms"]:
        return (DiagnosticStatus.WARN,
                f"latency {latency_ms.mean():.0f} ms above {params['latency_warn_ms']} ms")
    if drop_ratio > params["drop_warn_ratio"]:
        return DiagnosticStatus.WARN, f"{drop_ratio:.0%} of images dropped: inference is too slow"
    return DiagnosticStatus.OK, "ok"


def perception_status(stats: PerceptionStats, faces: FaceStreams | None,
                      camera: CameraState | None, state: str,
                      params: dict[str, Any], load_seconds: float,
                      node_name: str = "perception", stream: str = "", image_topic: str = "",
                      intrinsics: str = "") -> DiagnosticStatus:
    """The status of one stream for one diagnostics period; ``state`` is the lifecycle
    state's label. A node named perception calls its default stream's status
    "perception: perception", stream cam1's "perception: perception cam1".
    ``image_topic``: the one it subscribes to, resolved; ``intrinsics``: where the last
    answer's head poses came from."""
    totals, delta, recent = stats.period()
    status = DiagnosticStatus(name=status_name(node_name, stream),
                              hardware_id=faces.device if faces else "")
    values: dict[str, Any] = {"lifecycle state": state, "image topic": image_topic}
    if state != "active" or faces is None or camera is None:
        status.level, status.message = DiagnosticStatus.OK, f"{state}: no inference"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        return status
    span = (recent[-1][0] - recent[0][0]) if len(recent) > 1 else 0.0
    latency_ms = np.array([w[1] for w in recent]) * 1e3 if recent else np.zeros(0)
    stages = {k: np.mean([getattr(w[2], k) for w in recent]) if recent else 0.0
              for k in ("detect", "embed", "emotion", "total")}
    searched = [w[2].searched for w in recent]  # False: idle skip
    status.level, status.message = _level(stats, delta, latency_ms, params)
    gallery = faces.gallery
    values.update({
        "images received": totals["received"], "images dropped": totals["dropped"],
        "images rejected": totals["bad"], "messages published": totals["published"],
        "background re-embedding errors": camera.reembed_errors,
        "searches skipped (idle)": camera.searches_skipped,
        "images searched (%)": f"{100 * np.mean(searched):.0f}" if searched else "",
        "output rate (Hz)": f"{(len(recent) - 1) / span if span > 0 else 0.0:.2f}",
        "latency mean (ms)": f"{latency_ms.mean():.1f}" if latency_ms.size else "",
        "latency p95 (ms)": f"{np.percentile(latency_ms, 95):.1f}" if latency_ms.size else "",
        "intrinsics": intrinsics,
        **{f"{k} time (ms)": f"{v:.1f}" for k, v in stages.items()},
        "device": faces.device, "embedding model": faces.model_name,
        "runtime": ", ".join(f"{k} {v}" for k, v in faces.backends.items()),
        "emotion labels": ",".join(faces.emotion_labels),
        "model load time (s)": f"{load_seconds:.1f}",
        "gallery people": len(gallery) if gallery is not None else 0,
    })
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status
