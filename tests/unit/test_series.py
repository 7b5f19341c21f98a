"""Reading control series: a folder of control-<sortable>.csv files, or one CSV."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from maomao_cli.detect.series import (
    Point,
    SeriesError,
    parse_control_text,
    read_control_dir,
    read_csv_series,
)


def write(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode())
    return path


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("12.5", 12.5),
        ("12.5\n", 12.5),
        ("  12.5  \n\n", 12.5),
        ("12.5\r\n", 12.5),
        ("value\n12.5\n", 12.5),
        ("value\r\n-3e2\r\n", -300.0),
        ('"7"\n', 7.0),
        ("\ufeff42\n", 42.0),
    ],
)
def test_control_file_forms_that_parse(tmp_path: Path, content: str, value: float) -> None:
    write(tmp_path, "control-2024-01-01.csv", content)
    assert read_control_dir(tmp_path) == read_control_dir(tmp_path)  # no side effects
    result = read_control_dir(tmp_path)
    assert result.points == [Point("2024-01-01", value)]
    assert result.skipped == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "empty file"),
        ("\n  \n", "empty file"),
        ("abc\n", "not a number: 'abc'"),
        ("nan\n", "not a finite number: 'nan'"),
        ("inf\n", "not a finite number: 'inf'"),
        ("1\n2\n", "expected one number, found two"),
        ("value\n1\n2\n", "expected one number, found 3 lines"),
        (b"\xff\xfe1\x00", "not UTF-8 text"),
    ],
)
def test_control_file_forms_that_are_skipped_and_named(
    tmp_path: Path, content: str | bytes, reason: str
) -> None:
    write(tmp_path, "control-2024-01-01.csv", "10")
    write(tmp_path, "control-2024-01-02.csv", content)
    write(tmp_path, "control-2024-01-03.csv", "11")
    result = read_control_dir(tmp_path)
    assert [p.value for p in result.points] == [10.0, 11.0]
    assert result.skipped == [("control-2024-01-02.csv", reason)]


def test_control_files_are_ordered_by_their_sortable_part(tmp_path: Path) -> None:
    for sortable, value in [
        ("2024-03-01T00:00:00Z", "3"),
        ("2024-01-15T12:00:00Z", "1"),
        ("2024-02-01T00:00:00Z", "2"),
        ("2024-01-15T09:30:00Z", "0"),
    ]:
        write(tmp_path, f"control-{sortable}.csv", value)
    write(tmp_path, "notes.txt", "5")  # not a control file
    write(tmp_path, "control-.csv", "5")  # no sortable part
    write(tmp_path, "data-2024-01-01.csv", "5")
    (tmp_path / "control-2024-04-01.csv").mkdir()  # a folder, not a run's file
    result = read_control_dir(tmp_path)
    assert [p.sortable for p in result.points] == [
        "2024-01-15T09:30:00Z",
        "2024-01-15T12:00:00Z",
        "2024-02-01T00:00:00Z",
        "2024-03-01T00:00:00Z",
    ]
    assert [p.value for p in result.points] == [0.0, 1.0, 2.0, 3.0]
    assert result.skipped == []


def test_an_oversized_control_file_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, "control-1.csv", "1" * 100_000)
    assert read_control_dir(tmp_path).skipped == [("control-1.csv", "larger than 65536 bytes")]


def test_missing_directory_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SeriesError, match="nope") as caught:
        read_control_dir(missing)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)
    afile = write(tmp_path, "afile", "1")
    with pytest.raises(SeriesError, match="not a directory"):
        read_control_dir(afile)


def test_empty_directory_is_an_empty_series(tmp_path: Path) -> None:
    result = read_control_dir(tmp_path)
    assert result.points == [] and result.skipped == []


@pytest.mark.parametrize(
    ("text", "value"),
    [("5", 5.0), ("metric\n5", 5.0), ("1\n5", None), ("", None), ("x", None)],
)
def test_parse_control_text(text: str, value: float | None) -> None:
    assert parse_control_text(text)[0] == value


def test_csv_with_reordered_and_extra_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "series.csv",
        "note,Value, TIMESTAMP ,other\r\n"
        "a,1.5,2024-01-01 00:00:00,x\r\n"
        "b,2.5,2024-01-02T00:00:00,y\r\n"
        "\r\n"
        "c,3.5,2024-01-03T00:00:00.5,z\r\n",
    )
    result = read_csv_series(path)
    assert result.points == [
        Point("2024-01-01 00:00:00", 1.5),
        Point("2024-01-02T00:00:00", 2.5),
        Point("2024-01-03T00:00:00.5", 3.5),
    ]
    assert result.skipped == []


def test_csv_rows_that_do_not_parse_are_skipped_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "series.csv",
        "timestamp,value\n"
        "2024-01-01,1\n"
        "2024-01-02,oops\n"
        "2024-01-03,nan\n"
        "yesterday,4\n"
        "2024-01-05\n"
        "2024-01-06,\n"
        "2024-01-07,7\n",
    )
    result = read_csv_series(path)
    assert [p.value for p in result.points] == [1.0, 7.0]
    assert result.skipped == [
        ("series.csv:3", "not a number: 'oops'"),
        ("series.csv:4", "not a finite number: 'nan'"),
        ("series.csv:5", "not a timestamp: 'yesterday'"),
        ("series.csv:6", "expected at least 2 columns, found 1"),
        ("series.csv:7", "empty value"),
    ]


def test_csv_out_of_order_is_sorted_by_time(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "series.csv",
        "timestamp,value\n2024-01-02T00:00:00,2\n2024-01-01 00:00:00,1\n2024-01-03,3\n",
    )
    assert [p.value for p in read_csv_series(path).points] == [1.0, 2.0, 3.0]


def test_csv_mixing_zoned_and_naive_times_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "series.csv", "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-02,2\n")
    with pytest.raises(SeriesError, match="time zone"):
        read_csv_series(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,value\n2024-01-01,1\n", "no 'timestamp' column"),
        ("timestamp,amount\n2024-01-01,1\n", "no 'value' column"),
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("timestamp,value,value\n2024-01-01,1,2\n", "'value' more than once"),
        (b"timestamp,value\n2024-01-01,\xff\n", "not UTF-8"),
    ],
)
def test_csv_that_cannot_be_a_series(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = write(tmp_path, "series.csv", content)
    with pytest.raises(SeriesError, match=message) as caught:
        read_csv_series(path)
    assert "series.csv" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_csv_is_named(tmp_path: Path) -> None:
    with pytest.raises(SeriesError, match=r"no such file: .*absent\.csv"):
        read_csv_series(tmp_path / "absent.csv")


def test_csv_of_fifty_thousand_rows_reads_every_row(tmp_path: Path) -> None:
    rows = "".join(
        f"2024-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d},{i}\n"
        for i in range(50_000)
    )
    path = write(tmp_path, "big.csv", "timestamp,value\n" + rows)
    result = read_csv_series(path)
    assert len(result.points) == 50_000 and result.skipped == []


def test_importing_series_does_not_import_scipy_or_numpy() -> None:
    code = (
        "import sys, maomao_cli.detect.series, maomao_cli.detect.detector; "
        "print(sorted(m for m in ('scipy', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
