"""What ``fer-ros bench`` reports: fps ratios, the issue's floors, the table and the plot."""

from __future__ import annotations

import time
from pathlib import Path

from matplotlib.figure import Figure

from fer_ros.bench import RATE_HZ

# The floors on a 2-core CPU: (min fps, max p95 latency ms or None).
FLOORS = {"1face": (15.0, 150.0), "3faces": (15.0, 150.0), "5faces": (8.0, None)}


def _fps(entry: dict) -> float:
    return float(entry.get("fps", 0.0))


def fps_ratios(results: dict[str, dict]) -> dict:
    """fps of each of our rows over each peer's, per bag."""
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


def check_floors(live: dict) -> dict:
    """The live rows against FLOORS: met or not, with the numbers."""
    checks = {}
    for bag, (min_fps, max_p95) in FLOORS.items():
        if bag not in live:
            continue
        r = live[bag]
        ok = r["fps"] >= min_fps and (max_p95 is None or r["latency_ms"]["p95"] <= max_p95)
        checks[bag] = {"fps": r["fps"], "min_fps": min_fps, "p95_ms": r["latency_ms"]["p95"],
                       "max_p95_ms": max_p95, "met": bool(ok)}
    return checks


def without_series(report: dict) -> dict:
    """The report less its per-frame series (for --json on stdout)."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in ("series", "series_ms")}
        return obj

    return strip(report)


def print_table(report: dict) -> None:
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
        for bag, r in per_bag.items():
            if "time_to_name_ms" in r:
                t = r["time_to_name_ms"]
                print(f"  time to name on {bag} (ms, first image -> first message naming "
                      f"it): p50 {t['p50']}, max {t['max']} ({t['samples']} arrivals, "
                      f"{t['unnamed']} unnamed)")
    print("(live rows: latency = image stamp -> /faces/emotions received; in-process rows: "
          "per-frame time)")
    print("identity accuracy (top-1, 5-celebrity val):",
          {k: v.get("top1") for k, v in report["identity"].items()},
          "| ours with threshold:", report["identity"]["ours"].get("named_correct"))
    for model, row in report.get("embedding_models", {}).items():
        far = {f"FAR {p['far_target']:g}": p["tar"] for p in row["tar_at_far"]}
        print(f"embedding {model}: top-1 {row['top1']}, named correctly {row['named_correct']}"
              f", strangers unknown {row['strangers_unknown']} of {row['counts']['strangers']}"
              f", gap {row['gap']}, TAR {far}, EER {row['eer'] and row['eer']['rate']}, "
              f"{row['ms_per_face']} ms a face (one thread)")
    if report.get("clips"):
        print_clips(report["clips"])
    print("ratios (fps):", report["ratios"])
    print("floors:", report["floors"])


def print_clips(clips: dict[str, dict]) -> None:
    """Real footage through the node: one row per clip and resolution."""
    print(f"\n{'real clip':14} {'resolution':>10} {'fps':>6} {'p50':>7} {'p95':>7} {'max':>7} "
          f"{'drop':>5} {'CPU%':>6} {'ids':>4} {'switches':>8}")
    for name, per_size in clips.items():
        for size, r in per_size.items():
            lat = r["latency_ms"]
            print(f"{name:14} {size:>10} {r['fps']:6.1f} {lat['p50']:7.1f} {lat['p95']:7.1f} "
                  f"{lat['max']:7.1f} {r['dropped']:5d} {r.get('cpu_percent') or 0:6.0f} "
                  f"{r['track_ids']:4d} {r['id_switches']:8d}")


def plot(results: dict[str, dict], path: Path) -> None:
    """Latency over time and fps per configuration, side by side, as a PNG."""
    fig = Figure(figsize=(14, 5))  # no pyplot: no GUI backend to choose
    ax1, ax2 = fig.subplots(1, 2)
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
