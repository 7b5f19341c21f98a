"""Control files are read without following links or blocking (issue 15): a container
wrote them and the host reads them, as root on some members."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from maomao_cli.detect.series import SeriesError, read_control_dir

SECRET = "424242.5"


def sentinel(tmp_path: Path) -> Path:
    secret = tmp_path / "root-sentinel"
    secret.write_text(f"{SECRET}\n")
    secret.chmod(0o600)
    return secret


def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "control-2026-01-01.csv").write_text("630\n")
    return folder


def assert_only_the_real_point(folder: Path, skipped_name: str) -> str:
    result = read_control_dir(folder)
    assert [p.value for p in result.points] == [630.0]
    assert [name for name, _ in result.skipped] == [skipped_name]
    assert SECRET not in repr(result)
    return result.skipped[0][1]


def test_a_link_to_a_secret_is_skipped_and_its_value_never_read(tmp_path: Path) -> None:
    folder = data_dir(tmp_path)
    (folder / "control-2026-01-02.csv").symlink_to(sentinel(tmp_path))
    reason = assert_only_the_real_point(folder, "control-2026-01-02.csv")
    assert "symbolic link" in reason


def test_a_fifo_is_skipped_without_hanging(tmp_path: Path) -> None:
    folder = data_dir(tmp_path)
    os.mkfifo(folder / "control-2026-01-02.csv")
    reason = assert_only_the_real_point(folder, "control-2026-01-02.csv")
    assert "not a regular file" in reason


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/tty", "/proc/kmsg"])
def test_a_link_to_a_device_or_kmsg_is_skipped(tmp_path: Path, device: str) -> None:
    folder = data_dir(tmp_path)
    (folder / "control-2026-01-02.csv").symlink_to(device)
    assert "symbolic link" in assert_only_the_real_point(folder, "control-2026-01-02.csv")


def test_a_character_device_itself_is_skipped(tmp_path: Path) -> None:
    folder = data_dir(tmp_path)
    node = folder / "control-2026-01-02.csv"
    try:  # /dev/zero's numbers (1, 5): reading it would never end without the cap
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    assert "not a regular file" in assert_only_the_real_point(folder, "control-2026-01-02.csv")


def test_an_oversized_file_is_skipped_by_its_size(tmp_path: Path) -> None:
    folder = data_dir(tmp_path)
    (folder / "control-2026-01-02.csv").write_text("1" * 70_000)
    assert "larger than" in assert_only_the_real_point(folder, "control-2026-01-02.csv")


def test_a_linked_folder_below_the_root_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "control-1.csv").write_text(f"{SECRET}\n")
    root = tmp_path / "importdir"
    (root / "dataset").mkdir(parents=True)
    (root / "dataset" / "sub").symlink_to(elsewhere)
    with pytest.raises(SeriesError, match="link") as caught:
        read_control_dir(root / "dataset" / "sub", root=root)
    assert SECRET not in str(caught.value)
    real = root / "dataset" / "real"
    real.mkdir()
    (real / "control-1.csv").write_text("5\n")
    assert [p.value for p in read_control_dir(real, root=root).points] == [5.0]


def test_a_folder_outside_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "importdir"
    root.mkdir()
    with pytest.raises(SeriesError, match="not inside"):
        read_control_dir(root / ".." / "other", root=root)
    with pytest.raises(SeriesError, match="not inside"):
        read_control_dir(tmp_path / "other", root=root)
