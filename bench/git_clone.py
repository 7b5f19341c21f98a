"""Clone and pull a 5,000-file, 1,000-commit dataset with maomao's adapter and with git.

    .venv/bin/python bench/git_clone.py [--protocol git|file] [--rounds 3]

Builds the repository with `git fast-import` (seconds), serves it with `git daemon` on a
free loopback port (or as file://), then runs, interleaved in the same run so both see the
same machine state: `git clone` vs maomao clone, and `git pull --no-rebase` vs maomao pull
after the server gained 20 new commits. Prints median times and the ratios
(goal: maomao clone at most 2x git's time). Needs the `git` command line; maomao does not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from maomao_cli.adapters import git as g

FILES = 5000
COMMITS = 1000
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(*args: str, cwd: Path | None = None, data: bytes | None = None) -> None:
    subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=ENV, input=data,
                   check=True, capture_output=True)  # fmt: skip


def fast_import_stream(first: int, commits: int, files: int, parent: bool) -> bytes:
    """Commits that add files evenly and rewrite one existing file each time."""
    per = max(1, files // commits) if first == 0 else 0
    out: list[bytes] = []
    for i in range(first, first + commits):
        msg = f"commit {i}\n".encode()
        out.append(b"commit refs/heads/main\n")
        out.append(f"committer Bench <bench@example.invalid> {1700000000 + i} +0000\n".encode())
        out.append(b"data %d\n%s" % (len(msg), msg))
        if i == first and parent:
            out.append(b"from refs/heads/main^0\n")
        for j in range(per):
            n = (i - first) * per + j
            body = f"{n},{n * 7 % 1000},{'x' * 40}\n".encode()
            out.append(f"M 100644 inline data/{n % 50:02d}/file-{n:05d}.csv\n".encode())
            out.append(b"data %d\n%s\n" % (len(body), body))
        body = f"updated by commit {i}\n".encode()
        out.append(f"M 100644 inline data/{i % 50:02d}/file-{i % files:05d}.csv\n".encode())
        out.append(b"data %d\n%s\n" % (len(body), body))
    return b"".join(out)


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", choices=["git", "file"], default="git")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the server and the clones live (default: /dev/shm when present, as"
        " this machine's disk times vary 5x between runs and would swamp the ratio)",
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="maomao-bench-", dir=args.dir))
    daemon = None
    try:
        repo = tmp / "srv" / "dataset.git"
        t = timed(lambda: (
            git("init", "-q", "--bare", "-b", "main", str(repo)),
            git("fast-import", "--quiet", cwd=repo,
                data=fast_import_stream(0, COMMITS, FILES, parent=False)),
            git("gc", "-q", cwd=repo),
        ))  # fmt: skip
        print(f"built {FILES} files / {COMMITS} commits with fast-import in {t:.1f}s")
        if args.protocol == "git":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            daemon = subprocess.Popen(
                ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={repo.parent}",
                 "--listen=127.0.0.1", f"--port={port}", str(repo.parent)],
                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            for _ in range(100):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            url = f"git://127.0.0.1:{port}/dataset.git"
        else:
            url = f"file://{repo}"
        print(f"serving {url}")

        times: dict[str, list[float]] = {k: [] for k in ("git clone", "maomao clone",
                                                          "git pull", "maomao pull")}  # fmt: skip
        next_commit = COMMITS
        for r in range(args.rounds):
            gdir, mdir = tmp / f"git-{r}", tmp / f"mao-{r}"
            order = [("git", gdir), ("maomao", mdir)]
            if r % 2:
                order.reverse()  # alternate who goes first, so caches favour neither
            for who, dest in order:
                if who == "git":
                    times["git clone"].append(timed(lambda d=dest: git("clone", "-q", url, str(d))))
                else:
                    times["maomao clone"].append(
                        timed(lambda d=dest: g.clone(url, d, auth=g.GitAuth(), timeout=60))
                    )
            # The server moves on by 20 commits; both clones pull them.
            stream = fast_import_stream(next_commit, 20, FILES, parent=True)
            git("fast-import", "--quiet", cwd=repo, data=stream)
            next_commit += 20
            for who, dest in order:
                if who == "git":
                    times["git pull"].append(
                        timed(
                            lambda d=dest: git("pull", "-q", "--no-rebase", "origin", "main", cwd=d)
                        )
                    )
                else:
                    times["maomao pull"].append(
                        timed(lambda d=dest: g.pull(d, auth=g.GitAuth(), timeout=60))
                    )
            assert (gdir / "data").exists() and (mdir / "data").exists()
            files_g = sum(1 for _ in (gdir / "data").rglob("*.csv"))
            files_m = sum(1 for _ in (mdir / "data").rglob("*.csv"))
            assert files_g == files_m == FILES, (files_g, files_m)
            shutil.rmtree(gdir)
            shutil.rmtree(mdir)

        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in times.items():
            print(f"{k:13s} median {med[k]:7.3f}s  runs " + " ".join(f"{x:.3f}" for x in v))
        clone_ratio = med["maomao clone"] / med["git clone"]
        pull_ratio = med["maomao pull"] / med["git pull"]
        print(f"clone ratio maomao/git: {clone_ratio:.2f}x (goal <= 2.00x)"
              f" {'OK' if clone_ratio <= 2 else 'OVER GOAL'}")  # fmt: skip
        print(f"pull ratio  maomao/git: {pull_ratio:.2f}x")
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
