"""How long `maomao --help` takes next to `python -c "import typer"` (goal: ratio <= 1.3).

Both run as fresh subprocesses of the same interpreter, interleaved so that a busy
machine slows both alike; the figure is the ratio of the medians. Bytecode caching is
on for both (PYTHONDONTWRITEBYTECODE is dropped), as in any installed copy: otherwise
maomao's own modules would be compiled from source on every start while typer's,
installed by pip, would not.

    .venv/bin/python bench/cli_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL = 1.3


def maomao_command() -> list[str]:
    # The installed console script beside this interpreter, else the module.
    script = Path(sys.executable).with_name("maomao")
    if script.is_file():
        return [str(script), "--help"]
    found = shutil.which("maomao")
    if found:
        return [found, "--help"]
    return [sys.executable, "-m", "maomao_cli", "--help"]


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each (default 20)")
    args = parser.parse_args()
    maomao = maomao_command()
    typer = [sys.executable, "-c", "import typer"]
    # One warm-up each: fills the page cache and writes maomao's bytecode cache.
    timed(maomao)
    timed(typer)
    help_times: list[float] = []
    typer_times: list[float] = []
    for _ in range(args.runs):
        help_times.append(timed(maomao))
        typer_times.append(timed(typer))
    help_median = statistics.median(help_times)
    typer_median = statistics.median(typer_times)
    ratio = help_median / typer_median
    print(f"command: {' '.join(maomao)}  ({args.runs} runs each, interleaved)")
    print(f"median maomao --help: {help_median * 1000:.1f} ms")
    print(f"median import typer:  {typer_median * 1000:.1f} ms")
    print(f"maomao --help / import typer: {ratio:.2f} (goal <= {GOAL})")
    sys.exit(0 if ratio <= GOAL else 1)


if __name__ == "__main__":
    main()
