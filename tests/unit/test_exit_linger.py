"""A stopped worker leaves even when a library thread is stuck, and names the thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading
    from maomao_cli.processes import exit_when_threads_linger

    logging.basicConfig(stream=sys.stderr)
    stuck = threading.Event()
    threading.Thread(target=stuck.wait, name="stuck-in-a-call").start()  # never set
    threading.Thread(target=lambda: None, name="quick").start()
    print("shut down cleanly", flush=True)
    exit_when_threads_linger(grace={grace})
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


def test_without_lingering_threads_it_returns() -> None:
    done = run(5, stuck=False)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["shut down cleanly", "returned"]
    assert done.stderr == ""
