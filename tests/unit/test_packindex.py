"""packindex: one-pass pack indexing, checked against `git index-pack` as the oracle.

Packs are made by git (with real deltas) or by hand below, so every corruption the
reader must refuse can be written exactly.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from dulwich.pack import create_delta

from gitservers import git
from maomao_cli.adapters import packindex as pi
from maomao_cli.gitprogress import parse_progress

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is the oracle")

COMMIT, TREE, BLOB, OFS, REF = 1, 2, 3, 6, 7


def _header(kind: int, size: int) -> bytes:
    out = bytearray([(kind << 4) | (size & 0x0F)])
    size >>= 4
    while size:
        out[-1] |= 0x80
        out.append(size & 0x7F)
        size >>= 7
    return bytes(out)


def _ofs(distance: int) -> bytes:
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.insert(0, 0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(out)


def blob_id(data: bytes) -> bytes:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).digest()


def delta(base: bytes, target: bytes) -> bytes:
    return b"".join(create_delta(base, target))


def make_pack(
    objects: Sequence[tuple[str, object, bytes]], *, version: int = 2, count: int | None = None
) -> bytes:
    """("full", kind, data) | ("ofs", index of base, delta) | ("ref", base raw id, delta)
    | ("far", distance back to the base, delta)."""
    body = bytearray(
        b"PACK" + struct.pack(">II", version, len(objects) if count is None else count)
    )
    starts: list[int] = []
    for how, arg, data in objects:
        starts.append(len(body))
        if how == "full":
            assert isinstance(arg, int)
            body += _header(arg, len(data))
        elif how == "ofs":
            assert isinstance(arg, int)
            body += _header(OFS, len(data)) + _ofs(starts[-1] - starts[arg])
        elif how == "far":
            assert isinstance(arg, int)
            body += _header(OFS, len(data)) + _ofs(arg)
        else:
            assert isinstance(arg, bytes)
            body += _header(REF, len(data)) + arg
        body += zlib.compress(data)
    return bytes(body) + hashlib.sha1(body).digest()


def index_with_git(pack: bytes, tmp_path: Path) -> bytes:
    path = tmp_path / "oracle.pack"
    path.write_bytes(pack)
    git("index-pack", "-o", str(tmp_path / "oracle.idx"), str(path))
    return (tmp_path / "oracle.idx").read_bytes()


def run_index(pack: bytes, tmp_path: Path, **kw: object) -> tuple[pi.IndexedPack, Path]:
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir(exist_ok=True)
    tmp = tmp_path / "tmp_pack_x"
    tmp.write_bytes(pack)
    return pi.index_pack(tmp, pack_dir, **kw), pack_dir  # type: ignore[arg-type]


BASE = b"".join(b"row %04d,%d\n" % (i, i * 7 % 100) for i in range(200))
V1 = BASE + b"row 0200,1\n"
V2 = V1.replace(b"row 0100,0\n", b"row 0100,99\n")
V3 = V2 + b"row 0201,2\n"


def test_hand_made_pack_with_a_delta_chain_and_a_ref_delta(tmp_path: Path) -> None:
    pack = make_pack(
        [
            ("full", BLOB, BASE),
            ("ofs", 0, delta(BASE, V1)),
            ("ofs", 1, delta(V1, V2)),
            ("ref", blob_id(V2), delta(V2, V3)),  # a REF_DELTA on a delta: resolved later
            ("full", BLOB, b""),
        ]
    )
    indexed, pack_dir = run_index(pack, tmp_path)
    assert indexed.objects == 5
    assert indexed.contents == {blob_id(v).hex().encode(): v for v in (BASE, V1, V2, V3, b"")}
    idx = Path(indexed.basename + ".idx").read_bytes()
    assert idx == index_with_git(pack, tmp_path)
    assert Path(indexed.basename).name == "pack-" + pack[-20:].hex()
    assert sorted(p.name for p in pack_dir.iterdir()) == [
        Path(indexed.basename).name + ext for ext in (".idx", ".pack")
    ]
    assert not (tmp_path / "tmp_pack_x").exists()


def test_git_made_pack_indexes_byte_for_byte_like_git(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", str(work))
    content = BASE
    for i in range(12):
        content = content.replace(b"row %04d," % (i * 9), b"row %04d,x" % (i * 9))
        (work / "data.csv").write_bytes(content)
        (work / f"f{i % 4}.txt").write_bytes(BASE[: 500 + 40 * i])
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"commit {i}", cwd=work)
    git("repack", "-q", "-a", "-d", "-f", "--depth=50", cwd=work)
    (made,) = (work / ".git" / "objects" / "pack").glob("*.pack")
    pack = made.read_bytes()
    listing = git("verify-pack", "-v", str(made.with_suffix(".idx"))).splitlines()
    assert sum(len(line.split()) == 7 for line in listing) >= 5  # deltas, some chained

    indexed, _ = run_index(pack, tmp_path)
    assert Path(indexed.basename + ".idx").read_bytes() == made.with_suffix(".idx").read_bytes()
    listed = git("cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)",
                 cwd=work)  # fmt: skip
    kept = [line.split()[0] for line in listed.splitlines() if line.endswith((" blob", " tree"))]
    assert set(indexed.contents) == {hex_id.encode() for hex_id in kept}
    # git's raw contents of each, from one `cat-file --batch`: "<id> <type> <size>\n<raw>\n"
    batch = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=work, input="\n".join(kept).encode(),
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    pos = 0
    for hex_id in kept:
        header_end = batch.index(b"\n", pos)
        size = int(batch[pos:header_end].split()[2])
        assert indexed.contents[hex_id.encode()] == batch[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1


def test_progress_lines_are_in_git_format(tmp_path: Path) -> None:
    pack = make_pack([("full", BLOB, b"x%d" % i) for i in range(5000)])
    lines: list[bytes] = []
    run_index(pack, tmp_path, progress=lines.append)
    parsed = [parse_progress(line.decode()) for line in lines]
    assert all(parsed), lines
    assert ("Unpacking objects", 5000, 5000) in parsed
    assert parsed[-1] == ("Resolving objects", 5000, 5000)


GOOD = [("full", BLOB, BASE), ("ofs", 0, delta(BASE, V1))]


def _edit(pack: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes and recompute the trailer, so the checks after the checksum see it."""
    body = pack[:-20].replace(old, new, 1)
    return body + hashlib.sha1(body).digest()


def _flip(pack: bytes, at: int) -> bytes:
    return pack[:at] + bytes([pack[at] ^ 0xFF]) + pack[at + 1 :]


CORRUPT = {
    "a flipped byte fails the checksum": (_flip(make_pack(GOOD), 40), "checksum"),
    "no PACK signature": (_edit(make_pack(GOOD), b"PACK", b"KCAP"), "signature"),
    "fewer objects than the header says": (make_pack(GOOD, count=3), "ends after 2 of 3"),
    "bytes after the last object": (make_pack(GOOD, count=1), "stray bytes"),
    "unknown object type 5": (make_pack([("full", 5, b"x")]), "unknown type 5"),
    "a delta base before the pack": (
        make_pack([("full", BLOB, BASE), ("far", 4000, delta(BASE, V1))]),
        "delta base outside",
    ),
    "a delta base that is no object's start": (
        make_pack([("full", BLOB, BASE), ("far", 1, delta(BASE, V1))]),
        "no base in the pack",
    ),
    "a delta that does not fit its base": (
        make_pack([("full", BLOB, b"abc"), ("ofs", 0, delta(BASE, V1))]),
        "does not apply",
    ),
    "data that is not zlib": (
        _edit(make_pack([("full", BLOB, b"abc")]), zlib.compress(b"abc"), b"\x00" * 11),
        "not valid zlib data",
    ),
    "a size header that lies": (
        _edit(make_pack([("full", BLOB, b"abc")]), _header(BLOB, 3), _header(BLOB, 4)),
        "inflates to 3 bytes, not 4",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_packs_are_refused_and_nothing_is_stored(case: str, tmp_path: Path) -> None:
    pack, message = CORRUPT[case]
    with pytest.raises(pi.CorruptPack, match=message):
        run_index(pack, tmp_path)
    assert list((tmp_path / "pack").iterdir()) == []
    assert (tmp_path / "tmp_pack_x").read_bytes() == pack


@pytest.mark.parametrize(
    ("pack", "kw", "message"),
    [
        (make_pack([("ref", blob_id(BASE), delta(BASE, V1))]), {}, "thin pack"),
        (make_pack(GOOD, version=4), {}, "version 4"),
        (make_pack(GOOD), {"max_inflated": len(BASE)}, "more than"),
    ],
    ids=["thin", "version", "too big to hold"],
)
def test_unusual_packs_are_left_to_dulwich(
    pack: bytes, kw: dict[str, object], message: str, tmp_path: Path
) -> None:
    with pytest.raises(pi.Unsupported, match=message):
        run_index(pack, tmp_path, **kw)
    assert list((tmp_path / "pack").iterdir()) == []
    assert (tmp_path / "tmp_pack_x").exists()


def test_index_writer_matches_dulwich_for_offsets_beyond_2_gib() -> None:
    import io

    from dulwich.pack import write_pack_index_v2

    entries = sorted(
        (hashlib.sha1(b"%d" % i).digest(), offset, zlib.crc32(b"%d" % i))
        for i, offset in enumerate([12, 2**31 - 1, 2**31, 2**33 + 7, 40])
    )
    oracle = io.BytesIO()
    write_pack_index_v2(oracle, entries, b"\x01" * 20)
    assert pi._index_v2(entries, b"\x01" * 20) == oracle.getvalue()


def test_contents_stop_at_the_limit_when_deltas_resolve_to_more_than_the_pack(
    tmp_path: Path,
) -> None:
    versions = [BASE]
    for i in range(10):
        versions.append(versions[-1] + b"row %04d,new\n" % (300 + i))
    objects: list[tuple[str, object, bytes]] = [("full", BLOB, BASE)]
    objects += [("ofs", 0, delta(BASE, v)) for v in versions[1:]]  # ten deltas on one base
    pack = make_pack(objects)
    limit = 3 * len(BASE)  # the pack inflates to less, its resolved objects to far more
    indexed, _ = run_index(pack, tmp_path, max_inflated=limit)

    assert indexed.objects == 11
    assert Path(indexed.basename + ".idx").read_bytes() == index_with_git(pack, tmp_path)
    assert 0 < sum(map(len, indexed.contents.values())) <= limit
    assert len(indexed.contents) < 11
    for hex_id, data in indexed.contents.items():
        assert hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest().encode() == hex_id
