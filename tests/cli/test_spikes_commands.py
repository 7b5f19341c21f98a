"""`maomao spikes` on files and on a tool's history: CSVs, control folders, bad input,
recompute, the terminal chart and the PNG plot (in-process, on the memory store)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cli_harness import Cli, MakeCli


def stamp(i: int) -> str:
    return (datetime(2026, 1, 1) + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S")


def write_csv(path: Path, values: list[float], header: str = "timestamp,value") -> None:
    rows = [header] + [f"{stamp(i)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(rows) + "\n")


def noisy(n: int, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [100 + rng.gauss(0, 1) for _ in range(n)]


def test_csv_json_lists_the_planted_spike_and_dip(cli: Cli) -> None:
    values = noisy(20_000)
    values[5_000], values[15_000] = 160.0, 40.0
    csv = cli.root / "series.csv"
    write_csv(csv, values)
    result = cli.invoke("spikes", "--csv", str(csv), "--json")
    assert (result.code, result.err) == (0, ""), result.err
    found = result.json()
    assert {(s["index"], s["direction"]) for s in found} >= {(5_000, "up"), (15_000, "down")}
    spike = next(s for s in found if s["index"] == 5_000)
    assert spike["timestamp"] == stamp(5_000)  # the CSV's text, verbatim
    assert spike["value"] == 160.0 and spike["score"] > 5


def test_seed_method_with_a_threshold(cli: Cli) -> None:
    csv = cli.root / "series.csv"
    write_csv(csv, [10, 10, 13, 10, 10, 10.5])
    result = cli.invoke(
        "spikes", "--csv", str(csv), "--json", "--method", "seed", "--threshold", "0.2"
    )
    assert (result.code, result.err) == (0, ""), result.err
    assert [s["index"] for s in result.json()] == [2]


def test_control_folder(cli: Cli) -> None:
    folder = cli.root / "series"
    folder.mkdir()
    for i, value in enumerate([*noisy(30), 500.0]):
        (folder / f"control-2026-02-{i + 1:02d}.csv").write_text(f"{value}\n")
    (folder / "control-2026-01-01.csv").write_text("not a number\n")
    result = cli.invoke("spikes", "--dir", str(folder), "--json")
    assert result.code == 0, result.err
    assert [s["timestamp"] for s in result.json()] == ["2026-02-31"]
    assert "control-2026-01-01.csv" in result.err  # the broken file is named once
    assert result.err.count("control-2026-01-01.csv") == 1


@pytest.mark.parametrize(
    ("content", "expect_code"),
    [
        ("timestamp,value\n", 0),  # no rows: an empty result
        ("timestamp,value\n2026-01-01,5\n", 0),  # a single point
        ("timestamp,value\n" + "".join(f"2026-01-{i:02d},7\n" for i in range(1, 29)), 0),
        ("timestamp,value\n2026-01-01,nan\n2026-01-02,text\n", 0),
        ("time,reading\n2026-01-01,5\n", 2),  # without the columns: one line, exit 2
        ("", 2),
    ],
)
def test_bad_or_small_csvs_never_trace_back(cli: Cli, content: str, expect_code: int) -> None:
    csv = cli.root / "series.csv"
    csv.write_text(content)
    result = cli.invoke("spikes", "--csv", str(csv), "--json")
    assert result.code == expect_code, result.err
    assert "Traceback" not in result.err
    if expect_code == 0:
        assert result.json() == []
    else:  # with --json the one error is a JSON object on stdout
        assert result.err == ""
        error = result.json()["error"]
        assert error["code"] == "bad-input" and "timestamp" in error["message"]
        plain = cli.invoke("spikes", "--csv", str(csv))
        assert (plain.code, plain.out) == (2, "")
        assert len(plain.err_lines) == 1


def test_empty_or_missing_folder(cli: Cli) -> None:
    empty = cli.root / "empty"
    empty.mkdir()
    result = cli.invoke("spikes", "--dir", str(empty), "--json")
    assert (result.code, result.json(), result.err) == (0, [], "")
    missing = cli.invoke("spikes", "--dir", str(cli.root / "nope"), "--json")
    assert missing.code == 2 and "Traceback" not in missing.err
    assert "error" in missing.json()


def test_recompute_chart_and_plot_over_a_tools_history(cli: Cli) -> None:
    assert cli.invoke("register", "hist", "img").code == 0
    data = cli.importdir / "tools" / "hist"  # <importdir>/tools/<tool>, as runs lay it out
    data.mkdir(parents=True)
    for i, value in enumerate([*noisy(20), 900.0, *noisy(5, seed=9)]):
        (data / f"control-2026-03-{i + 1:02d}.csv").write_text(f"{value}\n")
    recomputed = cli.invoke("spikes", "--tool", "hist", "--recompute", "--json")
    assert (recomputed.code, recomputed.err) == (0, ""), recomputed.err
    report = recomputed.json()
    assert [s["sortable"] for s in report["found"]] == ["2026-03-21"]
    assert report["new"] == ["2026-03-21"] and report["gone"] == []  # nothing stored yet
    chart = cli.invoke("spikes", "--tool", "hist", "--chart")
    assert (chart.code, chart.err) == (0, ""), chart.err
    assert "▲" in chart.out and "26 points" in chart.out
    png = cli.root / "hist.png"
    pytest.importorskip("matplotlib")
    plotted = cli.invoke("spikes", "--tool", "hist", "--plot", str(png))
    assert (plotted.code, plotted.err) == (0, ""), plotted.err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_listing_needs_a_tool_or_all(cli: Cli) -> None:
    result = cli.invoke("spikes")
    assert (result.code, result.out) == (2, "")
    assert len(result.err_lines) == 1
    nothing = cli.invoke("spikes", "--all", "--json")
    assert (nothing.code, nothing.json(), nothing.err) == (0, [], "")


def demo_folder(root: Path, values: list[float]) -> Path:
    folder = root / "demo"
    folder.mkdir()
    for i, value in enumerate(values):
        (folder / f"control-2019-05-{i + 1:02d}.csv").write_text(f"{value}\n")
    return folder


@pytest.mark.parametrize(("last", "direction"), [(900.0, "up"), (300.0, "down")])
@pytest.mark.parametrize("method", [[], ["--method", "seed"]])
def test_the_2019_demo_is_found_with_defaults_both_ways(
    cli: Cli, last: float, direction: str, method: list[str]
) -> None:
    folder = demo_folder(cli.root, [630, 600, last])
    result = cli.invoke("spikes", "--dir", str(folder), "--json", *method)
    assert (result.code, result.err) == (0, ""), result.err
    [spike] = result.json()
    assert (spike["value"], spike["direction"], spike["rule"]) == (last, direction, "seed")
    assert spike["baseline"] == 615.0


def test_nothing_found_says_why_on_stderr(cli: Cli) -> None:
    folder = demo_folder(cli.root, [630, 600, 610])
    result = cli.invoke("spikes", "--dir", str(folder))
    assert (result.code, result.out) == (0, ""), result.err
    line = " ".join(result.err_lines)  # one note, wrapped to the terminal's width
    assert line.startswith("no spikes found")
    assert "no spikes found" in line and "3 points" in line and "seed rule" in line
    assert "threshold of 0.2" in line


def test_json_stays_an_array_and_explain_adds_the_verdict(cli: Cli) -> None:
    folder = demo_folder(cli.root, [630, 600, 610])
    plain = cli.invoke("spikes", "--dir", str(folder), "--json")
    assert (plain.code, plain.json(), plain.err) == (0, [], "")
    explained = cli.invoke("spikes", "--dir", str(folder), "--json", "--explain")
    assert (explained.code, explained.err) == (0, ""), explained.err
    report = explained.json()
    assert report["spikes"] == []
    verdict = report["explanation"]
    assert (verdict["points"], verdict["rule"], verdict["spike"]) == (3, "seed", False)
    assert verdict["threshold"] == pytest.approx(0.2)
    assert verdict["score"] == pytest.approx(5 / 615)


def test_a_tool_without_spikes_explains_its_local_series(cli: Cli) -> None:
    assert cli.invoke("register", "quiet", "img").code == 0
    data = cli.importdir / "tools" / "quiet"
    data.mkdir(parents=True)
    for i, value in enumerate([630, 600, 610]):
        (data / f"control-2019-05-{i + 1:02d}.csv").write_text(f"{value}\n")
    result = cli.invoke("spikes", "--tool", "quiet")
    assert (result.code, result.out) == (0, ""), result.err
    assert result.err_lines[0] == "no spikes stored for quiet"
    explanation = " ".join(result.err_lines[1:])
    assert "3 points" in explanation and "seed rule" in explanation
    as_json = cli.invoke("spikes", "--tool", "quiet", "--json")
    assert (as_json.code, as_json.json(), as_json.err) == (0, [], "")
    explained = cli.invoke("spikes", "--tool", "quiet", "--json", "--explain")
    assert explained.json()["spikes"] == []
    assert explained.json()["explanation"]["points"] == 3


def test_csv_and_dir_honour_the_config(make_cli: MakeCli) -> None:
    cli = make_cli(
        config_text='[data]\nimportdir = "{importdir}"\n[spikes]\nmethod = "seed"\n'
        "seed_threshold = 0.5\n"
    )
    folder = demo_folder(cli.root, [630, 600, 900])  # +46 %: below 50 %
    result = cli.invoke("spikes", "--dir", str(folder), "--json")
    assert (result.code, result.json()) == (0, []), result.err


def test_a_tools_own_detection_settings_decide_and_options_override_them(cli: Cli) -> None:
    # 25 % below the baseline: a spike for the 2019 rule at 20 %, none at 40 %.
    values = [100.0, 104.0, 97.0, 103.0, 99.0, 101.0, 75.0]
    data = cli.importdir / "tools" / "own"
    data.mkdir(parents=True)
    for i, value in enumerate(values):
        (data / f"control-2026-03-{i + 1:02d}.csv").write_text(f"{value}\n")

    def found(*options: str) -> list[str]:
        result = cli.invoke("spikes", "--tool", "own", "--recompute", "--json", *options)
        assert (result.code, result.err) == (0, ""), result.err
        return [s["sortable"] for s in result.json()["found"]]

    assert cli.invoke("register", "own", "img", "--spike-method", "seed").code == 0
    assert found() == ["2026-03-07"]
    assert found("--sensitivity", "0.5") == []  # the option beats the tool: 40 % needed
    assert cli.invoke("register", "own", "img", "--sensitivity", "0.5").code == 0
    assert found() == []  # the tool's sensitivity, its method kept by the update
    (tool,) = cli.invoke("tools", "--json").json()
    assert (tool["spike_method"], tool["sensitivity"], tool["min_history"]) == ("seed", 0.5, None)
