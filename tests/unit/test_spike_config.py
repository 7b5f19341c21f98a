"""Every [spikes] setting is checked when the config loads, with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao_cli import config
from maomao_cli.errors import ConfigError


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
