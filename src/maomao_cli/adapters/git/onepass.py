"""The one-pass first clone from a local source: copy its packs, index each with packindex.

Packs are immutable, so a fresh clone copies them, checks and indexes each copy with
`packindex` (which also keeps the trees and blobs for the checkout), and copies loose
objects as they are. Like git's local clone this may bring unreachable objects along,
and a shallow source gives a shallow clone (dulwich's own path fails on one).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dulwich.errors import GitProtocolError
from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

BytesProgress = Callable[[bytes], None]


def is_empty_store(objects: Path) -> bool:
    """True for the objects directory of a repository that was just initialised."""
    names = set(os.listdir(objects))
    return names <= {"info", "pack"} and not os.listdir(objects / "pack")


def copy_clone(
    source: Repo, dest: Path, progress: BytesProgress | None
) -> tuple[Any, dict[bytes, bytes]] | None:
    """Copy all of `source`'s objects into the empty objects directory `dest`.

    Returns the fetch result and the kept contents; None when the source is one dulwich
    must handle, or changed under our feet.
    """
    from dulwich.client import FetchPackResult
    from dulwich.protocol import agent_string

    src = Path(source.object_store.path)
    if source.object_format.name != "sha1" or (src / "info" / "alternates").exists():
        return None
    # Refs first: the objects copied after them are then sure to cover them.
    refs: dict[Ref, ObjectID | None] = dict(source.get_refs())
    symrefs = source.refs.get_symrefs()
    try:
        contents = _copy_objects(src, dest, progress)
    except FileNotFoundError:  # repacked while we copied: dulwich's way starts over
        _empty_objects(dest)
        return None
    return FetchPackResult(refs, symrefs, agent_string(), object_format="sha1"), contents


def _copy_objects(src: Path, dest: Path, progress: BytesProgress | None) -> dict[bytes, bytes]:
    contents = _copy_packs(src, dest, progress)
    fans = [fan for fan in src.iterdir() if len(fan.name) == 2 and fan.is_dir()]
    loose = [obj for fan in fans for obj in fan.iterdir()]
    for n, obj in enumerate(loose, 1):
        (dest / obj.parent.name).mkdir(exist_ok=True)
        shutil.copyfile(obj, dest / obj.parent.name / obj.name)
        if progress is not None and (n % 256 == 0 or n == len(loose)):
            pct = 100 * n // len(loose)
            progress(f"Copying objects: {pct}% ({n}/{len(loose)})\n".encode())
    return contents


def _copy_packs(src: Path, dest: Path, progress: BytesProgress | None) -> dict[bytes, bytes]:
    from maomao_cli.adapters import packindex

    contents: dict[bytes, bytes] = {}
    kept = 0  # each pack keeps up to the limit; many packs must not multiply it
    packs = sorted((src / "pack").glob("*.pack"))
    for n, pack in enumerate(packs, 1):
        if progress is not None:
            progress(f"Copying packs: {100 * n // len(packs)}% ({n}/{len(packs)})\n".encode())
        idx = pack.with_suffix(".idx")
        if not idx.exists():
            continue  # still being written; git skips it too
        tmp = dest / "pack" / f"tmp_pack_{pack.stem}"
        shutil.copyfile(pack, tmp)
        try:
            indexed = packindex.index_pack(tmp, dest / "pack", progress=progress)
            if kept < packindex.MAX_INFLATED:
                contents.update(indexed.contents)
                kept += sum(map(len, indexed.contents.values()))
        except packindex.Unsupported:
            shutil.copyfile(idx, dest / "pack" / idx.name)
            os.replace(tmp, dest / "pack" / pack.name)
        except packindex.CorruptPack as exc:
            raise GitProtocolError(f"the source has a corrupt pack {pack.name}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
    return contents


def _empty_objects(objects: Path) -> None:
    for entry in objects.iterdir():
        if entry.name == "pack":
            for f in entry.iterdir():
                f.unlink()
        elif entry.name != "info":
            shutil.rmtree(entry)
