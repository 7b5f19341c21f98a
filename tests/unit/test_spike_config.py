"""Every [spikes] setting is checked when the config loads, with the field named; a
tool's own settings and the command's options take precedence over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maomao_cli import config
from maomao_cli.errors import ConfigError
from maomao_cli.models import Tool
from maomao_cli.services.spikes import detector_params


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("min_history = 2", "min_history"),
        ("min_history = 20000", "min_history"),
        ("window = 1", "window"),
        ("sensitivity = 0", "sensitivity"),
        ("seed_threshold = 0.0", "seed_threshold"),
        ("hook_timeout = 0", "hook_timeout"),
        ('method = "zscore"', "method"),
        ("min_history = -1", "min_history"),
    ],
)
def test_a_bad_spike_setting_is_refused_at_load(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[spikes]\n{line}\n")
    with pytest.raises(ConfigError, match=rf"\[spikes\] {field}"):
        config.load(str(path), env={})


def test_good_spike_settings_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[spikes]\nmin_history = 3\nwindow = 50\nmethod = "seed"\n')
    spikes = config.load(str(path), env={}).spikes
    assert (spikes.min_history, spikes.window, spikes.method) == (3, 50, "seed")


def test_the_shipped_config_loads() -> None:
    shipped = Path(__file__).resolve().parents[2] / "config.toml"
    config.load(str(shipped), env={})


CONFIGURED = config.SpikeSettings(method="robust", sensitivity=1.0, min_history=4)
TUNED = Tool(name="t", image="img", spike_method="seed", sensitivity=2.0, min_history=9)


@pytest.mark.parametrize(
    ("tool", "options", "expected"),
    [
        (None, {}, ("robust", 1.0, 4)),
        (Tool(name="t", image="img"), {}, ("robust", 1.0, 4)),  # no settings of its own
        (TUNED, {}, ("seed", 2.0, 9)),
        (TUNED, {"method": "robust", "sensitivity": 0.5}, ("robust", 0.5, 9)),
        (None, {"sensitivity": 3.0}, ("robust", 3.0, 4)),
    ],
)
def test_detection_settings_come_from_the_options_then_the_tool_then_the_config(
    tool: Tool | None, options: dict[str, Any], expected: tuple[str, float, int]
) -> None:
    params = detector_params(CONFIGURED, tool, **options)
    assert (params.method, params.sensitivity, params.min_history) == expected
