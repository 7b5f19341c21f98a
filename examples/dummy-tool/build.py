#!/usr/bin/env python3
"""Build maomao/dummy-tool:latest offline: no registry, no base image, no network.

The image is FROM scratch with the host's static busybox (Debian: busybox-static)
copied in, so it builds on a machine that has never reached a registry.

    python3 examples/dummy-tool/build.py [--tag maomao/dummy-tool:latest] [--busybox /bin/busybox]

Talks to the engine through docker-py, at MAOMAO_DOCKER_HOST, else DOCKER_HOST, else the
local socket.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TAG = "maomao/dummy-tool:latest"


def find_busybox(explicit: str | None = None) -> Path:
    for candidate in (explicit, "/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if candidate and Path(candidate).is_file():
            path = Path(candidate)
            if shutil.which("file") is None:
                return path  # cannot check; a dynamic busybox fails at the first run
            kind = subprocess.run(["file", "-L", str(path)], capture_output=True, text=True)
            if kind.returncode == 0 and "dynamically linked" in kind.stdout:
                raise SystemExit(f"{path} is dynamically linked: install busybox-static")
            return path
    raise SystemExit("no busybox found: apt-get install -y busybox-static")


def make_context(target: Path, busybox: Path) -> None:
    """bin/busybox plus one link per applet, the Dockerfile and the collector script."""
    bin_dir = target / "bin"
    bin_dir.mkdir()
    shutil.copy2(busybox, bin_dir / "busybox")
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            (bin_dir / applet).symlink_to("busybox")
    for name in ("Dockerfile", "collect.sh"):
        shutil.copy2(HERE / name, target / name)


def build(
    tag: str = DEFAULT_TAG,
    *,
    host: str | None = None,
    busybox: str | None = None,
    quiet: bool = False,
) -> str:
    """Build the image and return its id."""
    import docker

    base_url = host or os.environ.get("MAOMAO_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    client = docker.APIClient(base_url=base_url or "unix:///var/run/docker.sock", timeout=300)
    try:
        with tempfile.TemporaryDirectory(prefix="maomao-dummy-") as tmp:
            make_context(Path(tmp), find_busybox(busybox))
            image_id = None
            events = client.build(
                path=tmp,
                tag=tag,
                rm=True,
                forcerm=True,
                pull=False,
                network_mode="none",
                decode=True,
            )
            for event in events:
                if "error" in event:
                    raise SystemExit(f"build failed: {event['error'].strip()}")
                if "stream" in event and not quiet:
                    text = event["stream"].rstrip()
                    if text:
                        print(text, flush=True)
                if "aux" in event and "ID" in event["aux"]:
                    image_id = event["aux"]["ID"]
            if image_id is None:
                image_id = client.inspect_image(tag)["Id"]
        if not quiet:
            print(f"built {tag} ({image_id[:19]})", flush=True)
        return str(image_id)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--host", help="Docker host (default: MAOMAO_DOCKER_HOST or DOCKER_HOST)")
    parser.add_argument("--busybox", help="path of a static busybox (default: /bin/busybox)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    build(args.tag, host=args.host, busybox=args.busybox, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
