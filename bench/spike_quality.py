"""Spike quality: the robust detector against the 2019 rule on labelled synthetic series.

(Real series, labelled by others: ../shared/spikes/nab_eval.py on the NAB series, and
bench/spike_ablation.py for the detector with one part taken out at a time.)

A seeded generator makes control-metric-like series: a positive level, noise (normal, or
heavy-tailed Student t), sometimes a weekly pattern, sometimes a trend, about 2 % missing
values (NaN), and labelled events:

- a single spike up or a single dip down of 6 to 15 noise sigmas (a dip never below 10 %
  of the level: the metric is a count or a size), labelled at its index;
- a level shift up or down of 6 to 12 noise sigmas, labelled at the first point of the
  new level.

Events sit at least 15 points apart and never in the first 40 points.

Scoring, per method over every series: a detection is a true positive when a labelled
event lies within +-1 index of it (TOLERANCE); precision = true-positive detections /
detections; recall = events with a detection within +-1 / events; F1 their harmonic mean.

Methods: "robust" with the default DetectorParams, and the 2019 "seed" rule (both
directions) at 0.20 and 0.06. The defaults were tuned on seeds 1-5 and are also reported
on held-out seeds:

    .venv/bin/python bench/spike_quality.py                 # seeds 1-5, 200 series each
    .venv/bin/python bench/spike_quality.py --seeds 101 102 103 --per-seed
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from maomao_cli.detect.detector import DetectorParams, spike_positions

TOLERANCE = 1
LENGTH = 400
WARMUP = 40
MIN_GAP = 15
MISSING = 0.02


@dataclass(frozen=True)
class Labelled:
    values: np.ndarray
    events: np.ndarray  # indices of labelled events


def generate(rng: np.random.Generator, length: int = LENGTH) -> Labelled:
    level = 10 ** rng.uniform(1, 4)
    sigma = level * rng.uniform(0.01, 0.08)
    t = np.arange(length)
    if rng.random() < 0.3:
        noise = rng.standard_t(5, length) * sigma / np.sqrt(5 / 3)  # unit variance
    else:
        noise = rng.normal(0.0, sigma, length)
    signal = np.full(length, level)
    if rng.random() < 0.5:  # weekly pattern, up to 2 sigmas
        signal += rng.uniform(0.5, 2.0) * sigma * np.sin(2 * np.pi * t / 7 + rng.uniform(0, 7))
    if rng.random() < 0.5:  # a trend of up to +-30 % over the series
        signal += rng.uniform(-0.3, 0.3) * level * t / length
    events: list[int] = []
    position = WARMUP + int(rng.integers(0, MIN_GAP))
    while position < length - 2:
        events.append(position)
        position += MIN_GAP + int(rng.integers(0, 40))
    spikes = np.zeros(length)
    for index in events:
        kind = rng.choice(["spike", "dip", "shift"])
        if kind == "shift":
            signal[index:] += rng.choice([-1, 1]) * rng.uniform(6, 12) * sigma
        elif kind == "spike":
            spikes[index] = rng.uniform(6, 15) * sigma
        else:
            spikes[index] = -rng.uniform(6, 15) * sigma
    values = signal + noise + spikes
    # A dip or a downward shift never takes the metric below 10 % of its level.
    values = np.maximum(values, 0.1 * level)
    missing = rng.random(length) < MISSING
    missing[events] = False  # an event that was never measured cannot be found
    values[missing] = np.nan
    return Labelled(values, np.asarray(events))


@dataclass
class Tally:
    detections: int = 0
    true_detections: int = 0
    events: int = 0
    found_events: int = 0

    def add(self, found: np.ndarray, events: np.ndarray) -> None:
        distance = np.abs(found[:, None] - events[None, :]) if len(found) else np.zeros((0, 0))
        near = distance <= TOLERANCE
        self.detections += len(found)
        self.true_detections += int(near.any(axis=1).sum()) if len(found) else 0
        self.events += len(events)
        self.found_events += int(near.any(axis=0).sum()) if len(found) else 0

    def scores(self) -> tuple[float, float, float]:
        precision = self.true_detections / self.detections if self.detections else 0.0
        recall = self.found_events / self.events if self.events else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1


METHODS = {
    "robust (defaults)": DetectorParams(),
    "seed 0.20 (2019)": DetectorParams(method="seed", seed_threshold=0.20),
    "seed 0.06 (2019)": DetectorParams(method="seed", seed_threshold=0.06),
}


def evaluate(seeds: list[int], series: int) -> dict[str, Tally]:
    tallies = {name: Tally() for name in METHODS}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for _ in range(series):
            labelled = generate(rng)
            for name, params in METHODS.items():
                tallies[name].add(spike_positions(labelled.values, params), labelled.events)
    return tallies


def table(tallies: dict[str, Tally]) -> str:
    lines = ["| method | precision | recall | F1 |", "|---|---:|---:|---:|"]
    for name, tally in tallies.items():
        precision, recall, f1 = tally.scores()
        lines.append(f"| {name} | {precision:.3f} | {recall:.3f} | {f1:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--series", type=int, default=200, help="series per seed")
    parser.add_argument("--per-seed", action="store_true", help="one table per seed too")
    args = parser.parse_args()
    if args.per_seed:
        for seed in args.seeds:
            print(f"seed {seed}:\n{table(evaluate([seed], args.series))}\n")
    tallies = evaluate(args.seeds, args.series)
    total = tallies["robust (defaults)"]
    print(
        f"seeds {' '.join(map(str, args.seeds))}, {args.series} series of {LENGTH} points "
        f"each, {total.events} labelled events, tolerance +-{TOLERANCE} index:\n"
    )
    print(table(tallies))
    robust = tallies["robust (defaults)"].scores()
    beaten = all(
        robust[2] > tally.scores()[2] for name, tally in tallies.items() if name.startswith("seed")
    )
    print(f"\nrobust beats seed on F1: {'yes' if beaten else 'NO'}")


if __name__ == "__main__":
    main()
