"""How much slower than plain scipy.signal.find_peaks is the spike detector?

Runs over one seeded series of 1,000,000 points (noise, a few planted spikes):

- plain `find_peaks(values)`, the floor nothing can beat;
- the detector core on the same array (robust baseline and scale, isolated blocks,
  find_peaks with prominence and width): `spike_positions(values, params)`;
- `detect(points)`, the whole public call on Point records (conversion included).

Each is repeated several times, interleaved so that machine noise hits all alike, and
the medians are compared. Goal: the core at most 20 x find_peaks.

    .venv/bin/python bench/detector_speed.py [--points N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy.signal import find_peaks

from maomao_cli.detect.detector import DetectorParams, detect, spike_positions
from maomao_cli.detect.series import Point

GOAL = 20.0


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(2019)
    values = 1000.0 + rng.normal(0.0, 10.0, args.points)
    planted = rng.choice(np.arange(100, args.points), size=args.points // 10_000, replace=False)
    values[planted] += rng.choice([-1.0, 1.0], size=len(planted)) * 100.0
    points = [Point(f"{i:08d}", float(v)) for i, v in enumerate(values)]
    params = DetectorParams()

    runs: dict[str, Callable[[], object]] = {
        "find_peaks": lambda: find_peaks(values),
        "detector core": lambda: spike_positions(values, params),
        "detect(points)": lambda: detect(points, params),
    }
    for run in runs.values():  # warm up imports and caches
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(timed(run))
    medians = {name: statistics.median(ts) for name, ts in times.items()}

    found = spike_positions(values, params)
    hits = len(np.intersect1d(found, planted))
    print(f"{args.points:,} points, {args.repeats} interleaved repeats, medians:")
    for name, median in medians.items():
        print(f"  {name:15s} {median * 1000:8.1f} ms")
    print(f"  planted spikes found: {hits}/{len(planted)}, detections: {len(found)}")
    core = medians["detector core"] / medians["find_peaks"]
    whole = medians["detect(points)"] / medians["find_peaks"]
    print(f"detect(points)/find_peaks ratio: {whole:.1f} (conversion from Point records included)")
    print(f"detector/find_peaks ratio: {core:.1f} (goal <= {GOAL:g})")


if __name__ == "__main__":
    main()
