"""A stopped worker's process ends: even when a library thread is stuck (named in the log),
and without the interpreter's finalization, where gRPC's teardown can hang."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import atexit, logging, sys, threading
    from maomao_cli.processes import end_stopped_worker

    logging.basicConfig(stream=sys.stderr)
    stuck = threading.Event()
    threading.Thread(target=stuck.wait, name="stuck-in-a-call").start()  # never set
    threading.Thread(target=lambda: None, name="quick").start()
    atexit.register(lambda: print("finalized"))  # what the interpreter's exit would run
    print("shut down cleanly", flush=True)
    end_stopped_worker(grace={grace})
    print("returned")
    """
)


def run(grace: float, *, stuck: bool) -> subprocess.CompletedProcess[str]:
    script = SCRIPT.format(grace=grace)
    if not stuck:
        script = script.replace("stuck.wait", "lambda: None")
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )


def test_a_lingering_thread_is_named_and_the_process_exits_0() -> None:
    done = run(0.2, stuck=True)
    assert done.returncode == 0
    assert done.stdout == "shut down cleanly\n"
    assert "stuck-in-a-call" in done.stderr and "quick" not in done.stderr


def test_without_lingering_threads_it_exits_0_at_once_skipping_finalization() -> None:
    done = run(5, stuck=False)
    assert done.returncode == 0
    assert done.stdout == "shut down cleanly\n"  # neither "returned" nor "finalized"
    assert done.stderr == ""
