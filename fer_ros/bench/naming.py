"""Time to name: how soon a person who comes into view is published with their name.

Run by ``fer-ros bench`` with the live node, after the bags. The bench's gallery holds the
five celebrities (enrolled from their training photos); the frames are the 3faces bag's
validation photos of three of them (fer_ros.bench.data.three_faces_frames). Two scenes,
``trials`` times each:

* ``joining``: two of them tracked, then the third steps in. It is found at the next
  whole-image search (up to full_detection_interval images later), then embedded;
* ``into_empty``: an empty scene, then all three at once (found at once, all embedded).

Time to name of a face = arrival of the first /faces/emotions naming it (the count of
faces with a name other than "unknown" reaches it) minus the send time of the first image
showing it. The pre-roll length varies by one image per trial, so arrivals meet the
search cycle at every phase. A face not named within ``window_s`` counts as unnamed.
"""

from __future__ import annotations

import time

import numpy as np

from fer_ros.bench import data
from fer_ros.bench.live import Client, image_msgs, play

PRE_ROLL_S = 1.6  # > track_max_age (1 s): the arriving person's old track has ended
WINDOW_S = 1.0


def trial(client: Client, before: list, after: list, rate_hz: float, before_s: float,
          shown_before: int, window_s: float = WINDOW_S) -> list[float | None]:
    """ms to name each face that arrives (None when not named within ``window_s``)."""
    play(client, before, rate_hz, before_s)
    sent = play(client, after, rate_hz, window_s)
    time.sleep(0.5)  # answers still in flight
    with client.lock:
        answers = dict(client.answers)
    named = [(answers[key][0], answers[key][2]) for key, _ in sent if key in answers]
    start = sent[0][1]
    delays: list[float | None] = []
    for count in range(shown_before + 1, len(data.THREE_PEOPLE) + 1):
        hits = [t for t, n in named if n >= count]
        delays.append(round((min(hits) - start) * 1e3, 1) if hits else None)
    return delays


def _stats(values: list[float | None]) -> dict:
    """p50 and max of the named faces (None when none was named), and the counts."""
    found = [v for v in values if v is not None]
    return {"p50": round(float(np.percentile(found, 50)), 1) if found else None,
            "max": round(float(max(found)), 1) if found else None,
            "samples": len(values), "unnamed": len(values) - len(found)}


def measure(client: Client, rate_hz: float, trials: int) -> dict:
    """p50/max time to name over both scenes, and per scene (with every sample)."""
    frames = max(1, round((PRE_ROLL_S + WINDOW_S) * rate_hz))
    three = image_msgs(data.three_faces_frames(frames))
    two = image_msgs(data.three_faces_frames(frames, shown=2))
    empty = image_msgs(data.three_faces_frames(1, shown=0))
    scenes = {"joining": (two, 2), "into_empty": (empty, 0)}
    out: dict = {}
    every: list[float | None] = []
    for scene, (before, shown) in scenes.items():
        values: list[float | None] = []
        for k in range(trials):
            values += trial(client, before, three, rate_hz, PRE_ROLL_S + k / rate_hz, shown)
        out[scene] = {**_stats(values), "all_ms": values}
        every += values
    return {**_stats(every), **out}
