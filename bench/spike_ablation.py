"""Why each part of the spike detector is there: the detector with one part taken out at a
time, on the NAB series in ../shared/spikes/nab-dev (scored by NAB's own sweeper, as
nab_eval.py does) and on the synthetic series of bench/spike_quality.py.

    .venv/bin/python bench/spike_ablation.py --nab ../shared/spikes/nab-dev

NAB is run in-process on `detect(points, DetectorParams(min_history=4))` with the CSV's
timestamps, which is what `maomao spikes --csv FILE --json` does with its defaults
(nab_eval.py runs that command and gives the same figures for the full detector). The
synthetic figures are the held-out seeds 101-103 of spike_quality.py.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from spike_quality import Tally, generate

from maomao_cli.detect import detector, judge
from maomao_cli.detect.detector import DetectorParams, detect, spike_positions
from maomao_cli.detect.series import Point


@contextlib.contextmanager
def patched(module: Any, **values: Any) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def every_candidate(z: Any, threshold: float, first: int) -> Any:
    first = max(first, 2)
    return np.flatnonzero(np.abs(z[first:]) >= threshold) + first


VARIANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "full detector": contextlib.nullcontext,
    "no routine rule": lambda: patched(judge, ROUTINE_COUNT=math.inf),
    "no events (a spike per point)": lambda: patched(judge, EVENT_END=math.inf),
    "no seasonal channel": lambda: patched(detector, _period=lambda points, params: None),
    "no far rule (sharp rises only)": lambda: patched(judge, FAR=math.inf),
    "no sharp-rise test": lambda: patched(judge, sharp_candidates=every_candidate),
}


Nab = tuple[Any, Path, list[Any], Any, dict[str, Any]]


def load_nab(root: Path) -> Nab:
    spec = importlib.util.spec_from_file_location("nab_eval", root.parent / "nab_eval.py")
    assert spec is not None and spec.loader is not None
    nab_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nab_eval)
    corpus, labels = nab_eval.load_corpus(str(root))
    profiles = json.loads((root / "config" / "profiles.json").read_text())
    return nab_eval, root, corpus, labels, {"standard": profiles["standard"]}


def nab_scores(nab: Nab) -> dict[str, Any]:
    nab_eval, root, corpus, labels, profiles = nab
    params = DetectorParams(min_history=4)
    per_file = []
    for df in corpus:
        points = [Point(t, float(v)) for t, v in zip(df.ts_str, df.val_str, strict=True)]
        per_file.append({"indices": [d.index for d in detect(points, params)]})
    result: dict[str, Any] = {"name": "x", "indices_by_file": [r["indices"] for r in per_file]}
    result.update(nab_eval.window_metrics(corpus, per_file))
    with contextlib.redirect_stdout(io.StringIO()):
        scores = nab_eval.nab_scores_sweeper(str(root), corpus, labels, profiles, [result])
    result["nab"] = scores["x"]["standard"]["normalized"]
    return result


def synthetic_f1(seeds: list[int], series: int) -> float:
    tally = Tally()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for _ in range(series):
            labelled = generate(rng)
            tally.add(spike_positions(labelled.values), labelled.events)
    return tally.scores()[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, required=True, help="the nab-dev folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103])
    parser.add_argument("--series", type=int, default=200)
    args = parser.parse_args()
    nab = load_nab(args.nab.resolve())
    print("| variant | NAB std | F1 | windows | FP | synthetic F1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, variant in VARIANTS.items():
        with variant():
            scored = nab_scores(nab)
            f1 = synthetic_f1(args.seeds, args.series)
        print(
            f"| {name} | {scored['nab']:.1f} | {scored['f1']:.3f} | "
            f"{scored['windows_detected']}/{scored['windows_total']} | "
            f"{scored['false_positives']} | {f1:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
