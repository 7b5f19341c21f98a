#!/usr/bin/env python3
"""How long maomao's read commands take, next to `import typer` and `etcdctl get --prefix`.

Starts its own etcd (on a free loopback port), stores what a small collaboration holds
(20 tools, 20 schedules, 2 runs and 5 spikes per tool, 3 live members), then runs each
command as a fresh process, interleaved with the baselines so that a busy machine slows
all of them alike: `python -c "import typer"` (the goal: each read at most 2 times it,
`maomao --help` at most 1.3 times) and `etcdctl get --prefix` of the whole prefix (what
reading the same data costs without Python). Bytecode caching is on for every process,
as in an installed copy. Prints each median, its range and its ratios; exits 1 when a
goal is missed.

    .venv/bin/python bench/cli_latency.py [--runs 15] [--src DIR] [--compare DIR (main's src/)]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from servers import EtcdCluster  # noqa: E402

READ_GOAL = 2.0
HELP_GOAL = 1.3
PREFIX = "/bench-cli"
TOOLS = 20
# Rich takes about 1.5 ms of CPU per table row: `runs` grows with the records kept.
RUNS_PER_TOOL = 2

READS = [
    ["tools"],
    ["runs"],
    ["schedule", "list"],
    ["status"],
    ["spikes", "--tool", "tool-07"],
]


def maomao() -> list[str]:
    # The installed console script beside this interpreter, else the module.
    script = Path(sys.executable).with_name("maomao")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "maomao_cli"]


def seed(endpoints: str) -> None:
    """What `maomao register`, `run --daily`, the workers' runs and detections write."""
    from maomao_cli.config import EtcdSettings
    from maomao_cli.keys import Keys
    from maomao_cli.models import Member, Run, Schedule, Spike, Tool
    from maomao_cli.store.etcd import EtcdStore

    keys = Keys(PREFIX)
    store = EtcdStore(EtcdSettings(endpoints=tuple(endpoints.split(",")), prefix=PREFIX))
    now = time.time()
    lease = store.grant_lease(3600)
    for m in range(3):
        member = Member(name=f"lab-{m}", host=f"lab-{m}", version="0.1.0", started=now)
        store.put(keys.member(member.name), member.to_json(), lease=lease.id)
    for t in range(TOOLS):
        name = f"tool-{t:02d}"
        tool = Tool(name=name, image=f"registry.example.org/lab/{name}:1.{t}", author="bench")
        store.put(keys.tool(name), tool.to_json())
        schedule = Schedule(name=name, tool=name, cron=f"{t} */2 * * *", created=now)
        store.put(keys.schedule(name), schedule.to_json())
        for r in range(RUNS_PER_TOOL):
            started = now - 7200 * (r + 1)
            run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{t:02d}{r:04d}"
            run = Run(
                id=run_id, tool=name, member=f"lab-{r % 3}", status="succeeded",
                trigger="schedule", schedule=name, image=tool.image, exit_code=0,
                started=started, finished=started + 12.5,
                log_tail=[f"collected {r * 17} rows", "done"],
            )  # fmt: skip
            store.put(keys.run(run_id), run.to_json())
        for s in range(5):
            sortable = f"2026-11-{s + 1:02d}T00:00:00"
            spike = Spike(
                tool=name, sortable=sortable, value=120.0 + s, baseline=100.0,
                deviation=20.0 + s, deviation_pct=20.0 + s, score=6.1, direction="up",
                member="lab-0", found=now,
            )  # fmt: skip
            store.put(keys.spike(name, sortable), spike.to_json())
    store.close()


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of `command`."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        failed = subprocess.run(command, capture_output=True, text=True, env=env)
        raise SystemExit(f"{' '.join(command)} exited {child.returncode}: {failed.stderr}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each (default 15)")
    parser.add_argument(
        "--src",
        type=Path,
        default=ROOT / "src",
        help="the maomao sources to measure (default: this tree's)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="another tree's src/ (e.g. main's): its commands are measured in the same run",
    )
    args = parser.parse_args()
    if shutil.which("etcdctl") is None:
        raise SystemExit("etcdctl is needed for the baseline: apt-get install etcd-client")
    etcd = EtcdCluster(1).start()
    work = Path(tempfile.mkdtemp(prefix="maomao-bench-cli-"))
    try:
        seed(etcd.endpoints)
        (work / "config.toml").write_text("")
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("MAOMAO_", "ETCDCTL_")) and k != "PYTHONDONTWRITEBYTECODE"
            },
            "PYTHONPATH": str(args.src.resolve()),
            "HOME": str(work),
            "MAOMAO_CONFIG": str(work / "config.toml"),
            "MAOMAO_ETCD_ENDPOINTS": etcd.endpoints,
            "MAOMAO_ETCD_PREFIX": PREFIX,
            "MAOMAO_IMPORTDIR": str(work / "data"),
            "ETCDCTL_API": "3",
        }
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "import typer": ([sys.executable, "-c", "import typer"], env),
            "etcdctl get --prefix": (["etcdctl", "--endpoints", etcd.endpoints, "get", "--prefix", PREFIX], env),
            "maomao --help": ([*maomao(), "--help"], env),
            **{f"maomao {' '.join(c)}": ([*maomao(), *c], env) for c in READS},
        }  # fmt: skip
        if args.compare is not None:
            other = {**env, "PYTHONPATH": str(args.compare.resolve())}
            cases["compared: maomao --help"] = ([*maomao(), "--help"], other)
            for c in READS:
                cases[f"compared: maomao {' '.join(c)}"] = ([*maomao(), *c], other)
        for command, command_env in cases.values():  # warm-up: page and bytecode caches
            timed(command, command_env)
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (command, command_env) in cases.items():
                wall, cpu = timed(command, command_env)
                walls[name].append(wall)
                cpus[name].append(cpu)
    finally:
        etcd.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.runs} runs of each, interleaved; {TOOLS} tools, local etcd; source {args.src}")
    if args.compare is not None:
        print(f"compared: the same commands from {args.compare} (no goal)")
    missed = report("wall clock", walls)
    report("CPU time (user + system; less sensitive to a busy machine)", cpus)
    print("missed (wall clock): " + (", ".join(missed) if missed else "none"))
    sys.exit(1 if missed else 0)


def report(title: str, times: dict[str, list[float]]) -> list[str]:
    """Print one table; return the commands whose median misses its goal."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    typer, etcdctl = medians["import typer"], medians["etcdctl get --prefix"]
    print(f"\n{title}")
    print(f"{'':38s} {'median':>8s} {'range':>15s} {'/typer':>7s} {'/etcdctl':>9s}  goal")
    missed = []
    for name, values in times.items():
        median = medians[name]
        goal = HELP_GOAL if name == "maomao --help" else READ_GOAL
        verdict = ""
        if name.startswith("maomao"):  # the compared tree's commands have no goal here
            ok = median / typer <= goal
            verdict = f"<= {goal} {'ok' if ok else 'MISSED'}"
            if not ok:
                missed.append(name)
        print(
            f"{name:38s} {median * 1000:6.0f}ms "
            f"{min(values) * 1000:6.0f}-{max(values) * 1000:<6.0f}ms "
            f"{median / typer:7.2f} {median / max(etcdctl, 1e-9):9.1f}  {verdict}"
        )
    return missed


if __name__ == "__main__":
    main()
