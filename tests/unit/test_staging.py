"""The staging copies between a dataset's work tree and a tool's data directory: regular
files and folders only, never through a link, never .git; deletions only of what the run
was given."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from maomao_cli.errors import BadInput
from maomao_cli.services import staging

SECRET = "root:x:0:0:the sentinel:/root:/bin/sh\n"


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A 0600 file outside everything, like /etc/passwd: it must stay unread and unchanged."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "passwd"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A dataset work tree: .git, files, a nested folder."""
    root = tmp_path / "work"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    (root / "README.md").write_text("seed\n")
    (root / "obs" / "2024").mkdir(parents=True)
    (root / "obs" / "control-1.csv").write_text("1\n")
    (root / "obs" / "2024" / "deep.csv").write_text("deep\n")
    return root


@pytest.fixture
def importdir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def folder(importdir: Path) -> Iterator[int]:
    fd = staging.open_tool_dir(importdir, "tool")
    yield fd
    os.close(fd)


def files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and ".git" not in p.relative_to(root).parts
    }


def unchanged(sentinel: Path) -> bool:
    return sentinel.read_text() == SECRET and (sentinel.stat().st_mode & 0o777) == 0o600


# Where data lives ---------------------------------------------------------------------


def test_every_tool_lives_under_tools_even_one_named_datasets(importdir: Path) -> None:
    (importdir / "datasets" / "census" / ".git").mkdir(parents=True)
    path = staging.prepare_tool_dir(importdir, "datasets")
    assert path == importdir / "tools" / "datasets" and path.is_dir()
    assert (importdir / "datasets" / "census" / ".git").is_dir()  # not moved, not mounted
    with pytest.raises(BadInput):
        staging.tool_dir(importdir, "..")


def test_a_legacy_data_directory_is_moved_once_and_nothing_is_lost(
    importdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (importdir / "old").mkdir()
    (importdir / "old" / "control-1.csv").write_text("7\n")
    caplog.set_level("INFO", "maomao")
    path = staging.prepare_tool_dir(importdir, "old")
    assert (path / "control-1.csv").read_text() == "7\n"
    assert not (importdir / "old").exists()
    assert [r.getMessage() for r in caplog.records] == [
        f"tool old: moved its data directory {importdir / 'old'} to {path}"
    ]


def test_when_both_layouts_exist_the_old_one_stays(importdir: Path) -> None:
    (importdir / "both").mkdir()
    (importdir / "both" / "a.csv").write_text("old\n")
    (importdir / "tools" / "both").mkdir(parents=True)
    (importdir / "tools" / "both" / "b.csv").write_text("new\n")
    path = staging.prepare_tool_dir(importdir, "both")
    assert files(path) == {"b.csv": "new\n"}
    assert files(importdir / "both") == {"a.csv": "old\n"}


def test_a_linked_data_directory_is_refused(importdir: Path, sentinel: Path) -> None:
    (importdir / "tools").mkdir()
    (importdir / "tools" / "evil").symlink_to(sentinel.parent)
    with pytest.raises(BadInput, match="symbolic link"):
        staging.prepare_tool_dir(importdir, "evil")
    (importdir / "tools").rename(importdir / "elsewhere")
    (importdir / "tools").symlink_to(sentinel.parent)
    with pytest.raises(BadInput, match="symbolic link"):
        staging.prepare_tool_dir(importdir, "other")
    assert sorted(p.name for p in sentinel.parent.iterdir()) == ["passwd"]


# Mirror: work tree -> staging ---------------------------------------------------------------


def test_mirror_copies_files_and_folders_but_not_git(
    work: Path, importdir: Path, folder: int
) -> None:
    copied = staging.mirror(work, None, folder)
    staged = importdir / "tools" / "tool"
    assert files(staged) == files(work)
    assert not (staged / ".git").exists()
    assert copied.skipped == []
    assert set(copied.manifest.files) == {"README.md", "obs/control-1.csv", "obs/2024/deep.csv"}
    assert copied.manifest.dirs == {"obs", "obs/2024"}


def test_mirror_of_a_subdir_and_of_a_missing_one(work: Path, importdir: Path, folder: int) -> None:
    staging.mirror(work, "obs", folder)
    assert files(importdir / "tools" / "tool") == {
        "control-1.csv": "1\n",
        "2024/deep.csv": "deep\n",
    }
    copied = staging.mirror(work, "not/yet", folder)
    assert files(importdir / "tools" / "tool") == {} and copied.manifest == staging.Manifest()


def test_mirror_skips_the_datasets_links_and_special_files(
    work: Path, importdir: Path, folder: int, sentinel: Path
) -> None:
    (work / "obs" / "passwd").symlink_to(sentinel)
    (work / "obs" / "etc").symlink_to(sentinel.parent)
    os.mkfifo(work / "obs" / "pipe")
    copied = staging.mirror(work, None, folder)
    assert sorted(copied.skipped) == [
        ("obs/etc", "a symbolic link"),
        ("obs/passwd", "a symbolic link"),
        ("obs/pipe", "a fifo"),
    ]
    staged = importdir / "tools" / "tool"
    assert sorted(p.name for p in (staged / "obs").iterdir()) == ["2024", "control-1.csv"]
    assert unchanged(sentinel)


def test_a_linked_data_subdir_is_refused(work: Path, folder: int, sentinel: Path) -> None:
    (work / "linked").symlink_to(sentinel.parent)
    for subdir in ("linked", "linked/x"):
        with pytest.raises(BadInput, match="symbolic link"):
            staging.mirror(work, subdir, folder)
    with pytest.raises(BadInput, match="invalid data subdir"):
        staging.mirror(work, ".git", folder)


def test_mirror_resets_what_the_last_run_left_without_following_its_links(
    work: Path, importdir: Path, folder: int, sentinel: Path
) -> None:
    staged = importdir / "tools" / "tool"
    (staged / "obs").symlink_to(sentinel.parent)  # where the dataset has a folder
    (staged / "README.md").symlink_to(sentinel)  # where the dataset has a file
    (staged / ".git").mkdir()
    (staged / ".git" / "config").write_text("[core]\nworktree = /etc\n")
    (staged / "leftover").mkdir()
    (staged / "leftover" / "x").write_text("x\n")
    staging.mirror(work, None, folder)
    assert files(staged) == files(work)
    assert sorted(p.name for p in staged.iterdir()) == ["README.md", "obs"]
    assert not (staged / "obs").is_symlink() and not (staged / "README.md").is_symlink()
    assert unchanged(sentinel) and sorted(p.name for p in sentinel.parent.iterdir()) == ["passwd"]


def test_mirror_copies_only_what_changed(work: Path, importdir: Path, folder: int) -> None:
    staging.mirror(work, None, folder)
    staged = importdir / "tools" / "tool" / "README.md"
    before = staged.stat().st_ino
    staging.mirror(work, None, folder)
    assert staged.stat().st_ino == before
    (work / "README.md").write_text("seed, later\n")
    staging.mirror(work, None, folder)
    assert staged.read_text() == "seed, later\n"


# Copy back: staging -> work tree ------------------------------------------------------------


def test_new_changed_and_deleted_files_come_back(work: Path, importdir: Path, folder: int) -> None:
    manifest = staging.mirror(work, None, folder).manifest
    staged = importdir / "tools" / "tool"
    (staged / "obs" / "control-2.csv").write_text("2\n")
    (staged / "obs" / "new" / "deeper").mkdir(parents=True)
    (staged / "obs" / "new" / "deeper" / "x.csv").write_text("x\n")
    (staged / "README.md").write_text("changed by the run\n")
    (staged / "obs" / "control-1.csv").unlink()
    (staged / "obs" / "2024" / "deep.csv").unlink()
    (staged / "obs" / "2024").rmdir()
    copied = staging.copy_back(folder, work, None, manifest)
    assert copied.skipped == []
    assert files(work) == {
        "README.md": "changed by the run\n",
        "obs/control-2.csv": "2\n",
        "obs/new/deeper/x.csv": "x\n",
    }
    assert not (work / "obs" / "2024").exists()
    assert (work / ".git" / "config").read_text() == "[core]\n"


def test_the_runs_links_fifos_sockets_and_git_are_not_copied(
    work: Path, importdir: Path, folder: int, sentinel: Path, tmp_path: Path
) -> None:
    manifest = staging.mirror(work, "obs", folder).manifest
    staged = importdir / "tools" / "tool"
    (staged / "passwd").symlink_to(sentinel)
    (staged / "etc").symlink_to(sentinel.parent)
    (staged / "control-1.csv").unlink()
    (staged / "control-1.csv").symlink_to(sentinel)  # a link where a file was
    os.mkfifo(staged / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(staged / "sock"))
    (staged / ".git").mkdir()
    (staged / ".git" / "config").write_text("[core]\n\tworktree = /etc\n")
    (staged / ".GIT").mkdir()
    copied = staging.copy_back(folder, work, "obs", manifest)
    sock.close()
    assert sorted(copied.skipped) == [
        (".GIT", ".git is never copied"),
        (".git", ".git is never copied"),
        ("control-1.csv", "a symbolic link"),
        ("etc", "a symbolic link"),
        ("passwd", "a symbolic link"),
        ("pipe", "a fifo"),
        ("sock", "a socket"),
    ]
    assert sorted(p.name for p in (work / "obs").iterdir()) == ["2024", "control-1.csv"]
    assert (work / "obs" / "control-1.csv").read_text() == "1\n"  # the file stays
    assert SECRET not in "".join(files(work).values())
    assert unchanged(sentinel)


def test_a_linked_folder_of_the_run_is_not_entered(
    work: Path, importdir: Path, folder: int, sentinel: Path
) -> None:
    manifest = staging.mirror(work, None, folder).manifest
    staged = importdir / "tools" / "tool"
    for child in (staged / "obs").rglob("*"):
        if child.is_file():
            child.unlink()
    (staged / "obs" / "2024").rmdir()
    (staged / "obs").rmdir()
    (staged / "obs").symlink_to(sentinel.parent)  # the run swaps a folder for a link
    copied = staging.copy_back(folder, work, None, manifest)
    assert copied.skipped == [("obs", "a symbolic link")]
    assert files(work)["obs/control-1.csv"] == "1\n"  # kept: the run made a link, not nothing
    assert not (work / "obs" / "passwd").exists() and unchanged(sentinel)


def test_a_link_in_the_work_tree_is_replaced_never_written_through(
    work: Path, importdir: Path, folder: int, sentinel: Path
) -> None:
    (work / "obs" / "etc").symlink_to(sentinel.parent)  # the dataset's own links
    (work / "obs" / "out.csv").symlink_to(sentinel)
    manifest = staging.mirror(work, "obs", folder).manifest
    staged = importdir / "tools" / "tool"
    (staged / "etc").mkdir()
    (staged / "etc" / "passwd").write_text("written by the run\n")
    (staged / "out.csv").write_text("written by the run\n")
    staging.copy_back(folder, work, "obs", manifest)
    assert not (work / "obs" / "etc").is_symlink()
    assert (work / "obs" / "etc" / "passwd").read_text() == "written by the run\n"
    assert not (work / "obs" / "out.csv").is_symlink()
    assert unchanged(sentinel) and sorted(p.name for p in sentinel.parent.iterdir()) == ["passwd"]


def test_a_linked_component_of_the_subdir_in_the_work_tree_is_refused(
    work: Path, importdir: Path, folder: int, sentinel: Path
) -> None:
    manifest = staging.mirror(work, "later/obs", folder).manifest
    (importdir / "tools" / "tool" / "x.csv").write_text("x\n")
    (work / "later").symlink_to(sentinel.parent)  # appeared during the run
    with pytest.raises(BadInput, match="symbolic link"):
        staging.copy_back(folder, work, "later/obs", manifest)
    assert sorted(p.name for p in sentinel.parent.iterdir()) == ["passwd"]


def test_what_arrived_in_the_work_tree_during_the_run_is_kept(
    work: Path, importdir: Path, folder: int
) -> None:
    manifest = staging.mirror(work, None, folder).manifest
    (work / "pulled.csv").write_text("from a pull\n")  # e.g. `maomao dataset pull` meanwhile
    (work / "README.md").write_text("pulled change\n")
    (importdir / "tools" / "tool" / "mine.csv").write_text("mine\n")
    staging.copy_back(folder, work, None, manifest)
    assert files(work)["pulled.csv"] == "from a pull\n"
    assert files(work)["README.md"] == "pulled change\n"  # the run left it as it was
    assert files(work)["mine.csv"] == "mine\n"


def test_a_file_made_a_folder_and_back(work: Path, importdir: Path, folder: int) -> None:
    manifest = staging.mirror(work, None, folder).manifest
    staged = importdir / "tools" / "tool"
    (staged / "README.md").unlink()
    (staged / "README.md").mkdir()
    (staged / "README.md" / "inside.txt").write_text("in\n")
    for child in sorted((staged / "obs").rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    (staged / "obs").rmdir()
    (staged / "obs").write_text("now a file\n")
    staging.copy_back(folder, work, None, manifest)
    assert files(work) == {"README.md/inside.txt": "in\n", "obs": "now a file\n"}
