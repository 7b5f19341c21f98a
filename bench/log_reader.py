"""The container log reader on one huge line: maomao's splitter against one bytes.split.

    .venv/bin/python bench/log_reader.py [--mib 64] [--chunk-kib 32]

The baseline is the cheapest possible split of the same bytes (all of them joined, then
split once), measured in the same run; the ratio says how far the streaming splitter is
from it. The old reader re-split its whole buffer on every chunk: quadratic, 230 s here
for 64 MiB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from maomao_cli.adapters.loglines import split_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--chunk-kib", type=int, default=32)
    args = parser.parse_args()
    chunk = b"y" * (args.chunk_kib * 1024)
    chunks = [chunk] * (args.mib * 1024 // args.chunk_kib) + [b"\nend\n"]

    started = time.perf_counter()
    lines = list(split_lines(chunks))
    ours = time.perf_counter() - started

    started = time.perf_counter()
    baseline_lines = b"".join(chunks).split(b"\n")
    baseline = time.perf_counter() - started

    assert lines[-1] == b"end" and len(baseline_lines) == 3
    sys.stdout.write(
        f"{args.mib} MiB on one line in {args.chunk_kib} KiB chunks: split_lines {ours:.3f} s, "
        f"join+split {baseline:.3f} s, ratio {ours / baseline:.2f} (goal: linear, < 2 s)\n"
    )


if __name__ == "__main__":
    main()
