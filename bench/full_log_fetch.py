"""`maomao logs RUN --full` from another member, through a real etcd on loopback.

    .venv/bin/python bench/full_log_fetch.py [--mib 16] [--line 100]

Keeping: a run's lines written through FullLogWriter against the same lines written to a
plain buffered file (the ratio is the cost of the cap and the lock). Fetching: the whole
request/answer (a worker's LogAnswers thread on its own client, the asker's checks and
sha256) against the same bytes put and got as plain 256 KiB keys on the same etcd (the
ratio is the protocol's cost over moving the bytes at all).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from maomao_cli.clock import SystemClock  # noqa: E402
from maomao_cli.config import EtcdSettings  # noqa: E402
from maomao_cli.keys import Keys  # noqa: E402
from maomao_cli.models import Member, Run  # noqa: E402
from maomao_cli.services import logrequests  # noqa: E402
from maomao_cli.services.fulllogs import FullLogs  # noqa: E402
from maomao_cli.services.logrequests import CHUNK, chunks_of  # noqa: E402
from maomao_cli.services.worker.loganswers import LogAnswers  # noqa: E402
from maomao_cli.store.etcd import EtcdStore  # noqa: E402
from servers import EtcdCluster  # noqa: E402

RUN = "20300317T174640Z-bench0"


def keep(directory: Path, lines: list[bytes], cap: int) -> tuple[float, float]:
    logs = FullLogs(directory / "logs", cap, clock=time.time)
    started = time.perf_counter()
    writer = logs.open(RUN)
    assert writer is not None
    for line in lines:
        writer.write(line)
    writer.close()
    ours = time.perf_counter() - started
    started = time.perf_counter()
    with open(directory / "plain.log", "wb", buffering=64 * 1024) as plain:
        for line in lines:
            plain.write(line + b"\n")
    return ours, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--line", type=int, default=100, help="bytes a line")
    args = parser.parse_args()
    cap = args.mib * 1024 * 1024
    lines = [b"%08d " % n + b"x" * (args.line - 10) for n in range(cap // args.line)]
    cluster = EtcdCluster(1).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            keep_ours, keep_plain = keep(Path(tmp), lines, cap)
            fetch_ours, fetch_plain, size = fetch(cluster, Path(tmp), cap)
    finally:
        cluster.stop()
    sys.stdout.write(
        f"keep {len(lines)} lines ({args.mib} MiB): full log {keep_ours:.3f} s, plain file "
        f"{keep_plain:.3f} s, ratio {keep_ours / keep_plain:.2f}\n"
        f"fetch {size} bytes through etcd: request/answer {fetch_ours:.3f} s, plain put+get "
        f"of the same chunks {fetch_plain:.3f} s, ratio {fetch_ours / fetch_plain:.2f}; "
        f"largest etcd value {CHUNK} bytes\n"
    )


def fetch(cluster: EtcdCluster, directory: Path, cap: int) -> tuple[float, float, int]:
    settings = EtcdSettings(endpoints=(cluster.endpoints,), prefix="/bench-full-log")
    keys = Keys(settings.prefix)
    asker, member_store = EtcdStore(settings), EtcdStore(settings)
    logs = FullLogs(directory / "logs", cap, clock=time.time)
    data = logs.read(RUN)
    assert data is not None
    member_store.put(
        keys.run(RUN), Run(id=RUN, tool="t", member="w1", status="succeeded").to_json()
    )
    member_store.put(
        keys.member("w1"), Member(name="w1", host="h1", version="0", started=0.0).to_json()
    )
    answers = LogAnswers(
        store_factory=lambda: EtcdStore(settings),
        keys=keys,
        member="w1",
        logs=logs,
        clock=SystemClock(),
    )
    answers.start()
    try:
        started = time.perf_counter()
        got = logrequests.fetch(
            asker,
            keys,
            logrequests.Asked(RUN, "w1", "h1"),
            wait=60,
            limit=logs.read_limit,
            clock=SystemClock(),
        )
        ours = time.perf_counter() - started
        assert got == data
        started = time.perf_counter()
        for n, chunk in enumerate(chunks_of(data)):
            member_store.put(keys._p("plain", f"{n:06d}"), chunk)
        plain = b"".join(
            entry.value
            for n in range(len(chunks_of(data)))
            if (entry := asker.get(keys._p("plain", f"{n:06d}"))) is not None
        )
        baseline = time.perf_counter() - started
        assert plain == data
    finally:
        answers.stop()
        member_store.delete_prefix(keys._p(""))
        asker.close()
        member_store.close()
    return ours, baseline, len(data)


if __name__ == "__main__":
    main()
